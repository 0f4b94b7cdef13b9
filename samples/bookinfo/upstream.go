package bookinfo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// forwardHeaders are copied from an inbound request to every upstream call.
// The mesh can only stitch a trace together, and route by end-user, if the
// application carries these across its own hop. The list is Istio's bookinfo
// one (reviews' LibertyRestEndpoint.java and details.rb; productpage.py the
// same with B3 through OpenTelemetry's propagator): the tracing headers of
// every tracer Istio supports, then the application's own — the session
// (cookie, authorization, jwt) included, so a user's request stays one
// user's all the way to ratings. Only the multi-header B3 form travels, as in
// Istio's: the sidecar in front of each app hands it the span's context in
// those headers.
var forwardHeaders = []string{
	"x-request-id",
	"x-ot-span-context",
	"x-datadog-trace-id",
	"x-datadog-parent-id",
	"x-datadog-sampling-priority",
	"traceparent",
	"tracestate",
	"x-cloud-trace-context",
	"grpc-trace-bin",
	"x-b3-traceid",
	"x-b3-spanid",
	"x-b3-parentspanid",
	"x-b3-sampled",
	"x-b3-flags",
	"sw8",
	"end-user",
	"user-agent",
	"cookie",
	"authorization",
	"jwt",
}

// propagate returns the headers of in that must travel to upstream calls.
func propagate(in http.Header) http.Header {
	out := make(http.Header, len(forwardHeaders))
	for _, name := range forwardHeaders {
		if v := in.Values(name); len(v) > 0 {
			out[http.CanonicalHeaderKey(name)] = append([]string(nil), v...)
		}
	}
	return out
}

// newClient returns the client a service shares for all its upstream calls.
// Timeouts are per call (Istio's apps use different ones per upstream), so
// they come from the request context; the client's own Timeout is a backstop.
// The environment's HTTP proxy is ignored: in the mesh the sidecar is the proxy.
func newClient() *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        100,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     90 * time.Second,
		},
		// Upstreams in Bookinfo never redirect; surfacing a 3xx as-is keeps
		// the caller's error handling honest.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// baseURL builds http://<host>[.<domain>]:9080 for an upstream. A host that
// already names a port (tests, or an operator pointing at a fixed address) is
// used as-is apart from the domain suffix.
func baseURL(host, domain string) string {
	name, port, err := net.SplitHostPort(host)
	if err != nil {
		name, port = host, "9080"
	}
	if domain != "" && net.ParseIP(name) == nil {
		name += "." + strings.TrimPrefix(domain, ".")
	}
	return "http://" + net.JoinHostPort(name, port)
}

// upstreamError carries the status an upstream answered with, so callers can
// report it as Istio's apps do (status of the upstream, else 500).
type upstreamError struct {
	status int
	err    error
}

func (e *upstreamError) Error() string { return e.err.Error() }
func (e *upstreamError) Unwrap() error { return e.err }

func statusOf(err error) int {
	if ue, ok := err.(*upstreamError); ok && ue.status != 0 {
		return ue.status
	}
	return http.StatusInternalServerError
}

// getJSON fetches url with headers within timeout and decodes a 200 answer
// into v. Any other status is an error carrying that status.
func getJSON(ctx context.Context, c *http.Client, url string, headers http.Header, timeout time.Duration, v any) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return &upstreamError{err: fmt.Errorf("build request for %s: %w", url, err)}
	}
	for k, vs := range headers {
		req.Header[k] = vs
	}
	if req.Header.Get("User-Agent") == "" {
		// Go would otherwise announce itself; an empty agent is what the
		// upstream saw from the original client.
		req.Header["User-Agent"] = nil
	}
	resp, err := c.Do(req)
	if err != nil {
		return &upstreamError{err: fmt.Errorf("get %s: %w", url, err)}
	}
	defer func() { _ = resp.Body.Close() }() // read: ReadAll reports its errors
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return &upstreamError{status: resp.StatusCode, err: fmt.Errorf("read response of %s: %w", url, err)}
	}
	if resp.StatusCode != http.StatusOK {
		return &upstreamError{status: resp.StatusCode, err: fmt.Errorf("get %s: status %d", url, resp.StatusCode)}
	}
	if err := json.Unmarshal(body, v); err != nil {
		return &upstreamError{status: http.StatusInternalServerError, err: fmt.Errorf("decode response of %s: %w", url, err)}
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b) // a failed write: the client is gone
}
