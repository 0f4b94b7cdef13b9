package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/meshlab/meshlab/controlplane/registry"
)

// Client talks to one control plane.
type Client struct {
	// Base is the API's base URL, e.g. http://127.0.0.1:15014.
	Base string
	HTTP *http.Client
	// Token is sent as `Authorization: Bearer`; the API's calls need it.
	Token string
}

// NewClient returns a client for the control plane at addr (host:port or URL).
func NewClient(addr string) *Client {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return &Client{Base: strings.TrimRight(addr, "/"), HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// ErrUnreachable wraps failures to reach the control plane at all, so the
// CLI can say what to do about it.
var ErrUnreachable = errors.New("control plane unreachable")

// APIError is a non-2xx answer.
type APIError struct {
	Status int
	Error_ Error
}

func (e *APIError) Error() string {
	if len(e.Error_.Details) == 0 {
		return e.Error_.Message
	}
	return e.Error_.Message + ":\n  " + strings.Join(e.Error_.Details, "\n  ")
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		if len(b) > MaxRequestBytes {
			return fmt.Errorf("%s %s: the request is %.1f MiB, over the API's limit of %d MiB; send it in smaller batches", method, path, float64(len(b))/(1<<20), MaxRequestBytes>>20)
		}
		body = bytes.NewReader(b)
	}
	u := c.Base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("%w at %s: %v", ErrUnreachable, c.Base, err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read answer of %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(data, &e.Error_) != nil || e.Error_.Message == "" {
			e.Error_.Message = fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(data)))
		}
		return e
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = data
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode answer of %s %s: %w", method, path, err)
	}
	return nil
}

// Apply stores documents atomically (or only validates them with DryRun).
func (c *Client) Apply(ctx context.Context, req ApplyRequest) (Result, error) {
	var r Result
	return r, c.do(ctx, http.MethodPost, PathApply, nil, req, &r)
}

// Delete removes resources by key, atomically.
func (c *Client) Delete(ctx context.Context, keys []string) (Result, error) {
	var r Result
	return r, c.do(ctx, http.MethodPost, PathDelete, nil, DeleteRequest{Keys: keys}, &r)
}

// List returns resources of a kind ("" for all kinds) in a namespace ("" for
// all), or one by name.
func (c *Client) List(ctx context.Context, kind, namespace, name string) (ResourceList, error) {
	q := url.Values{}
	for k, v := range map[string]string{"kind": kind, "namespace": namespace, "name": name} {
		if v != "" {
			q.Set(k, v)
		}
	}
	var l ResourceList
	return l, c.do(ctx, http.MethodGet, PathResources, q, nil, &l)
}

// Proxies lists connected proxies and their sync state.
func (c *Client) Proxies(ctx context.Context) ([]ProxyStatus, error) {
	var p []ProxyStatus
	return p, c.do(ctx, http.MethodGet, PathProxies, nil, nil, &p)
}

// ConfigDump returns what the control plane last sent a proxy, as Envoy's
// config_dump JSON.
func (c *Client) ConfigDump(ctx context.Context, proxyID string) ([]byte, error) {
	var b []byte
	return b, c.do(ctx, http.MethodGet, PathConfigDump, url.Values{"proxy": {proxyID}}, nil, &b)
}

// PutService registers a service and returns it with its VIP.
func (c *Client) PutService(ctx context.Context, s registry.Service) (registry.Service, error) {
	var out registry.Service
	return out, c.do(ctx, http.MethodPut, PathServices, nil, s, &out)
}

// PutWorkload registers or updates a workload.
func (c *Client) PutWorkload(ctx context.Context, w registry.Workload) error {
	return c.do(ctx, http.MethodPut, PathWorkloads, nil, w, nil)
}

// DeleteWorkload removes a workload.
func (c *Client) DeleteWorkload(ctx context.Context, namespace, name string) error {
	return c.do(ctx, http.MethodDelete, PathWorkloads, url.Values{"namespace": {namespace}, "name": {name}}, nil, nil)
}

// DeleteAllWorkloads removes every workload: what a runtime does when it
// starts, so that no pod of an earlier run stays an endpoint.
func (c *Client) DeleteAllWorkloads(ctx context.Context) error {
	return c.do(ctx, http.MethodDelete, PathWorkloads, nil, nil, nil)
}

// Registry returns every service and workload the control plane knows.
func (c *Client) Registry(ctx context.Context) (Registry, error) {
	var r Registry
	return r, c.do(ctx, http.MethodGet, PathRegistry, nil, nil, &r)
}

// Version returns the control plane's version and store revision.
func (c *Client) Version(ctx context.Context) (Version, error) {
	var v Version
	return v, c.do(ctx, http.MethodGet, PathVersion, nil, nil, &v)
}

// WaitSynced blocks until every proxy whose configuration store revision
// rev changed has ACKed it; the error names the proxies that NACKed it,
// could not be sent it, or had not ACKed it by the control plane's deadline.
func (c *Client) WaitSynced(ctx context.Context, rev uint64) error {
	return c.do(ctx, http.MethodGet, PathWaitSync, url.Values{"revision": {fmt.Sprint(rev)}}, nil, nil)
}

// WaitRevision blocks until the store's revision is past since, or the
// control plane's watch timeout passes, and returns the revision then.
func (c *Client) WaitRevision(ctx context.Context, since uint64) (uint64, error) {
	var v Version
	err := c.do(ctx, http.MethodGet, PathWatch, url.Values{"revision": {fmt.Sprint(since)}}, nil, &v)
	return v.Revision, err
}
