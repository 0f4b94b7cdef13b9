package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/meshlab/meshlab/dataplane/router"
	"github.com/meshlab/meshlab/dataplane/upstream"
)

// Envoy's local reply bodies.
const (
	bodyNoHealthy      = "no healthy upstream"
	bodyConnectFailure = "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
	bodyReset          = "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
	bodyTimeout        = "upstream request timeout"
)

// connInfo is what dispatch learned about a connection.
type connInfo struct {
	listener string
	chain    *chain
	orig     netip.AddrPort
	local    netip.AddrPort
	remote   netip.AddrPort
}

type httpConn struct {
	net.Conn
	info *connInfo
}

type connKey struct{}

type stateKey struct{}

func connContext(ctx context.Context, c net.Conn) context.Context {
	if hc, ok := c.(*httpConn); ok {
		return context.WithValue(ctx, connKey{}, hc.info)
	}
	return ctx
}

// exchange is one request's state, shared by the handler, the round
// tripper and the error handler; it also records the response.
type exchange struct {
	http.ResponseWriter
	status      int
	bytes       int64
	flags       string
	details     string
	conn        *connInfo
	route       *router.Route
	cluster     *upstream.Cluster
	endpoint    *upstream.Endpoint
	upstreamDur time.Duration
}

func (e *exchange) WriteHeader(code int) {
	if e.status == 0 && code >= 200 {
		e.status = code
	}
	e.ResponseWriter.WriteHeader(code)
}

func (e *exchange) Write(b []byte) (int, error) {
	if e.status == 0 {
		e.status = http.StatusOK
	}
	n, err := e.ResponseWriter.Write(b)
	e.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's writer
// (flushes, hijacks for upgrades).
func (e *exchange) Unwrap() http.ResponseWriter { return e.ResponseWriter }

// ServeHTTP routes and forwards one request of an HTTP filter chain.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ci, _ := r.Context().Value(connKey{}).(*connInfo)
	if ci == nil || ci.chain.http == nil {
		http.Error(w, "not a proxied connection", http.StatusInternalServerError)
		return
	}
	if _, ok := r.Header["X-Request-Id"]; !ok {
		r.Header["X-Request-Id"] = []string{newRequestID()}
	}
	ex := &exchange{ResponseWriter: w, conn: ci}
	p.route(ex, r)
	p.stats.requests.Add(1)
	if p.accessLog != nil {
		p.accessLog.http(start, r, ex)
	}
}

func (p *Proxy) route(ex *exchange, r *http.Request) {
	rt := p.rt.Load()
	h := ex.conn.chain.http
	table := h.inline
	if table == nil {
		table = rt.routes[h.rds]
	}
	route := table.Match(r)
	if route == nil {
		ex.flags, ex.details = "NR", "route_not_found"
		ex.WriteHeader(http.StatusNotFound)
		return
	}
	ex.route = route
	if d := route.Direct; d != nil {
		ex.details = "direct_response"
		ex.Header().Set("Content-Type", "text/plain")
		ex.WriteHeader(d.Status)
		io.WriteString(ex, d.Body)
		return
	}
	name := route.PickCluster()
	cl := rt.clusters[name]
	if cl != nil {
		ex.cluster = cl
		ex.endpoint = cl.Pick(ex.conn.orig)
	}
	if ex.endpoint == nil {
		if cl != nil {
			cl.NoHealthy.Add(1)
		}
		ex.flags, ex.details = "UH", "no_healthy_upstream"
		localReply(ex, http.StatusServiceUnavailable, bodyNoHealthy)
		return
	}
	cl.RequestsTotal.Add(1)
	ctx := context.WithValue(r.Context(), stateKey{}, ex)
	if route.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, route.Timeout)
		defer cancel()
	}
	p.rp.ServeHTTP(ex, r.WithContext(ctx))
}

func localReply(w http.ResponseWriter, code int, body string) {
	h := w.Header()
	h["Content-Type"] = []string{"text/plain"}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(code)
	io.WriteString(w, body)
}

// rewrite shapes the upstream request as Envoy does: the Host is kept,
// x-forwarded-proto set, the route's rewrites applied. The endpoint is
// filled in per attempt by the round tripper.
func rewrite(pr *httputil.ProxyRequest) {
	ex := pr.In.Context().Value(stateKey{}).(*exchange)
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = ex.endpoint.Addr
	pr.Out.Host = pr.In.Host
	if v, ok := pr.In.Header["X-Forwarded-For"]; ok {
		pr.Out.Header["X-Forwarded-For"] = v
	}
	if v, ok := pr.In.Header["X-Forwarded-Proto"]; ok {
		pr.Out.Header["X-Forwarded-Proto"] = v
	} else {
		pr.Out.Header["X-Forwarded-Proto"] = []string{"http"}
	}
	if rt := ex.route; rt.PrefixRewrite != "" || rt.HostRewrite != "" {
		if rt.HostRewrite != "" {
			pr.Out.Host = rt.HostRewrite
		}
		if pfx := rt.PrefixRewrite; pfx != "" {
			// The matched prefix is replaced; with a non-prefix match the
			// whole path is.
			path := pr.Out.URL.Path
			if m := rt.MatchedPrefix(); m != "" && strings.HasPrefix(path, m) {
				path = pfx + path[len(m):]
			} else {
				path = pfx
			}
			pr.Out.Header["X-Envoy-Original-Path"] = []string{pr.In.URL.RequestURI()}
			pr.Out.URL.Path, pr.Out.URL.RawPath = path, ""
		}
	}
}

func modifyResponse(resp *http.Response) error {
	if ex, ok := resp.Request.Context().Value(stateKey{}).(*exchange); ok {
		resp.Header["X-Envoy-Upstream-Service-Time"] = []string{strconv.FormatInt(ex.upstreamDur.Milliseconds(), 10)}
	}
	return nil
}

// roundTripper sends a request to the endpoint the handler picked, on the
// cluster's pooled transport, retrying as the route's retry policy says.
type roundTripper struct{ p *Proxy }

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	ex := req.Context().Value(stateKey{}).(*exchange)
	cl := ex.cluster
	retries := 0
	var policy *router.RetryPolicy
	if ex.route.Retry != nil && ex.route.Retry.NumRetries > 0 && (req.Body == nil || req.Body == http.NoBody || req.GetBody != nil) {
		policy = ex.route.Retry
		retries = policy.NumRetries
	}
	for attempt := 0; ; attempt++ {
		ep := ex.endpoint
		ep.Active.Add(1)
		ep.Total.Add(1)
		start := time.Now()
		areq := req
		var cancel context.CancelFunc
		if policy != nil && policy.PerTry > 0 {
			var ctx context.Context
			ctx, cancel = context.WithTimeout(req.Context(), policy.PerTry)
			areq = req.WithContext(ctx)
		}
		resp, err := cl.Transport.RoundTrip(areq)
		ep.Active.Add(-1)
		ex.upstreamDur = time.Since(start)
		if attempt >= retries || !retryable(policy, resp, err) || req.Context().Err() != nil {
			if cancel != nil {
				if err != nil {
					cancel()
				} else {
					resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
				}
			}
			return resp, err
		}
		if cancel != nil {
			cancel()
		}
		if resp != nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		if req.GetBody != nil {
			b, gerr := req.GetBody()
			if gerr != nil {
				return nil, gerr
			}
			req = req.Clone(req.Context())
			req.Body = b
		}
		if next := cl.Pick(ex.conn.orig); next != nil {
			ex.endpoint = next
			req.URL.Host = next.Addr
		}
	}
}

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// retryable applies Envoy's retry_on conditions that make sense here.
func retryable(p *router.RetryPolicy, resp *http.Response, err error) bool {
	if p == nil {
		return false
	}
	for _, on := range strings.Split(p.RetryOn, ",") {
		switch strings.TrimSpace(on) {
		case "5xx":
			if err != nil || resp.StatusCode >= 500 {
				return true
			}
		case "gateway-error":
			if err != nil || resp.StatusCode == 502 || resp.StatusCode == 503 || resp.StatusCode == 504 {
				return true
			}
		case "connect-failure":
			if isConnectFailure(err) {
				return true
			}
		case "reset":
			if err != nil {
				return true
			}
		case "retriable-status-codes", "unavailable":
			if err == nil && resp.StatusCode == 503 {
				return true
			}
		}
	}
	return false
}

func isConnectFailure(err error) bool {
	var op *net.OpError
	return err != nil && errors.As(err, &op) && op.Op == "dial"
}

// proxyError answers for a request that got no upstream response, with
// Envoy's local replies and response flags.
func (p *Proxy) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	ex, _ := r.Context().Value(stateKey{}).(*exchange)
	if ex == nil {
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	switch {
	case errors.Is(r.Context().Err(), context.DeadlineExceeded):
		ex.flags, ex.details = "UT", "response_timeout"
		if ex.status == 0 {
			localReply(w, http.StatusGatewayTimeout, bodyTimeout)
		}
	case r.Context().Err() != nil:
		// The client went away.
		ex.flags, ex.details = "DC", "downstream_remote_disconnect"
	case isConnectFailure(err):
		ex.flags, ex.details = "UF", "upstream_reset_before_response_started{connection_failure}"
		if ex.status == 0 {
			localReply(w, http.StatusServiceUnavailable, bodyConnectFailure)
		}
	default:
		ex.flags, ex.details = "UC", "upstream_reset_before_response_started{connection_termination}"
		if ex.status == 0 {
			localReply(w, http.StatusServiceUnavailable, bodyReset)
		}
	}
}

// newRequestID returns a random UUID (version 4), as Envoy generates.
func newRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *buffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }
