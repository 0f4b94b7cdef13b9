package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// Errors a request to a cluster can end with before reaching a host. The
// proxy answers both with 503: ErrOverflow with response flag UO (a
// circuit breaker tripped), ErrNoHealthy with UH and Envoy's body
// "no healthy upstream".
var (
	ErrOverflow  = errors.New("upstream connect error or disconnect/reset before headers. reset reason: overflow")
	ErrNoHealthy = errors.New("no healthy upstream")
)

// Thresholds are Envoy's circuit breaker thresholds.
type Thresholds struct {
	MaxConnections     uint32
	MaxPendingRequests uint32
	MaxRequests        uint32
	MaxRetries         uint32
}

// Envoy's defaults for a threshold left unset.
var defaultThresholds = Thresholds{MaxConnections: 1024, MaxPendingRequests: 1024, MaxRequests: 1024, MaxRetries: 3}

// thresholds reads the DEFAULT priority's thresholds.
func thresholds(cb *clusterv3.CircuitBreakers) Thresholds {
	t := defaultThresholds
	for _, th := range cb.GetThresholds() {
		if th.GetPriority() != corev3.RoutingPriority_DEFAULT {
			continue
		}
		if v := th.GetMaxConnections(); v != nil {
			t.MaxConnections = v.GetValue()
		}
		if v := th.GetMaxPendingRequests(); v != nil {
			t.MaxPendingRequests = v.GetValue()
		}
		if v := th.GetMaxRequests(); v != nil {
			t.MaxRequests = v.GetValue()
		}
		if v := th.GetMaxRetries(); v != nil {
			t.MaxRetries = v.GetValue()
		}
	}
	return t
}

// breaker enforces the thresholds. HTTP/1.1 carries one request per
// connection, so a request needs one of max_connections connection slots
// and waits for one as a pending request (at most max_pending_requests of
// them) when all are busy; HTTP/2 multiplexes and only max_requests applies.
type breaker struct {
	limits  Thresholds
	slots   chan struct{} // HTTP/1.1 connection slots; nil when unlimited
	pending atomic.Int64
	active  atomic.Int64
	retries atomic.Int64
	conns   atomic.Int64

	// Overflow counters, as Envoy's upstream_rq_pending_overflow,
	// upstream_rq_retry_overflow and upstream_cx_overflow; requests
	// overflowing max_requests count as pending overflow too, as in Envoy.
	PendingOverflow atomic.Uint64
	RetryOverflow   atomic.Uint64
	CxOverflow      atomic.Uint64
}

func (b *breaker) init(t Thresholds, http1 bool) {
	b.limits = t
	if http1 && t.MaxConnections != unlimited {
		b.slots = make(chan struct{}, t.MaxConnections)
	}
}

// Overflows is the number of requests and connections the cluster's
// circuit breakers refused.
func (cl *Cluster) Overflows() uint64 {
	return cl.cb.PendingOverflow.Load() + cl.cb.CxOverflow.Load() + cl.cb.RetryOverflow.Load()
}

// acquire admits one upstream request: it returns ErrOverflow when a
// threshold is reached, waits (as a pending request) for a connection slot,
// or returns ctx's error if ctx ends first. Each successful acquire needs
// one release.
func (b *breaker) acquire(ctx context.Context) error {
	if n := b.active.Add(1); b.limits.MaxRequests != unlimited && n > int64(b.limits.MaxRequests) {
		b.active.Add(-1)
		b.PendingOverflow.Add(1)
		return ErrOverflow
	}
	if b.slots == nil {
		return nil
	}
	select {
	case b.slots <- struct{}{}:
		return nil
	default:
	}
	if n := b.pending.Add(1); b.limits.MaxPendingRequests != unlimited && n > int64(b.limits.MaxPendingRequests) {
		b.pending.Add(-1)
		b.active.Add(-1)
		b.PendingOverflow.Add(1)
		return ErrOverflow
	}
	defer b.pending.Add(-1)
	select {
	case b.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		b.active.Add(-1)
		return ctx.Err()
	}
}

func (b *breaker) release() {
	if b.slots != nil {
		<-b.slots
	}
	b.active.Add(-1)
}

// AcquireRetry admits a retry under max_retries (concurrent retries);
// false means the retry overflows and must not be made. Each true needs
// one ReleaseRetry.
func (cl *Cluster) AcquireRetry() bool {
	b := &cl.cb
	if n := b.retries.Add(1); b.limits.MaxRetries != unlimited && n > int64(b.limits.MaxRetries) {
		b.retries.Add(-1)
		b.RetryOverflow.Add(1)
		return false
	}
	return true
}

// ReleaseRetry ends a retry AcquireRetry admitted.
func (cl *Cluster) ReleaseRetry() { cl.cb.retries.Add(-1) }

// AcquireConn admits one TCP proxy connection under max_connections;
// false means it overflows (Envoy closes it with flag UO). Each true needs
// one ReleaseConn.
func (cl *Cluster) AcquireConn() bool {
	b := &cl.cb
	if n := b.conns.Add(1); b.limits.MaxConnections != unlimited && n > int64(b.limits.MaxConnections) {
		b.conns.Add(-1)
		b.CxOverflow.Add(1)
		return false
	}
	return true
}

// ReleaseConn ends a connection AcquireConn admitted.
func (cl *Cluster) ReleaseConn() { cl.cb.conns.Add(-1) }

// Transport sends HTTP requests to a cluster's hosts on pooled
// connections: each request passes the circuit breakers first, and its
// outcome feeds outlier detection.
type Transport struct {
	cl   *Cluster
	base *http.Transport
}

func newTransport(cl *Cluster, common *corev3.HttpProtocolOptions) *Transport {
	t := &Transport{cl: cl, base: &http.Transport{
		DialContext:           cl.dialHTTP,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       time.Hour,
		ResponseHeaderTimeout: 0,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		Protocols:             new(http.Protocols),
	}}
	if cl.HTTP2 {
		t.base.Protocols.SetUnencryptedHTTP2(true)
	} else {
		t.base.Protocols.SetHTTP1(true)
		if m := cl.Limits.MaxConnections; m != unlimited {
			t.base.MaxConnsPerHost = int(m)
		}
	}
	if d := common.GetIdleTimeout(); d != nil {
		// Envoy's idle_timeout closes a connection without requests for
		// that long; 0 disables it.
		if v := d.AsDuration(); v > 0 {
			t.base.IdleConnTimeout = v
		} else {
			t.base.IdleConnTimeout = 0
		}
	}
	if v := common.GetMaxRequestsPerConnection(); v != nil && v.GetValue() == 1 {
		// One request per connection: no keep-alive. Larger limits are not
		// enforced (Go's pool cannot retire a connection after N requests).
		t.base.DisableKeepAlives = true
	}
	return t
}

// RoundTrip sends req to the endpoint its URL names, under the cluster's
// circuit breakers. It returns ErrOverflow when they trip.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	cl := t.cl
	if err := cl.cb.acquire(req.Context()); err != nil {
		return nil, err
	}
	resp, err := t.base.RoundTrip(req)
	if cl.od != nil {
		if ep := cl.endpointByAddr(req.URL.Host); ep != nil {
			cl.observeResult(ep, resp, err)
		}
	}
	if err != nil {
		cl.cb.release()
		return nil, err
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// The reverse proxy needs the upgraded body as it is; the
		// connection leaves the pool.
		cl.cb.release()
		return resp, nil
	}
	resp.Body = &releaseBody{ReadCloser: resp.Body, b: &cl.cb}
	return resp, nil
}

// CloseIdleConnections closes pooled connections not in use.
func (t *Transport) CloseIdleConnections() { t.base.CloseIdleConnections() }

// releaseBody frees the request's circuit breaker slot when the response
// is done with, as Envoy's active request ends with its stream.
type releaseBody struct {
	io.ReadCloser
	b    *breaker
	done atomic.Bool
}

func (r *releaseBody) Close() error {
	err := r.ReadCloser.Close()
	if r.done.CompareAndSwap(false, true) {
		r.b.release()
	}
	return err
}

func (cl *Cluster) dialHTTP(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := cl.dial(ctx, network, addr)
	if err != nil {
		cl.ConnectFails.Add(1)
		return nil, err
	}
	cl.cb.conns.Add(1)
	return &countedConn{Conn: c, b: &cl.cb}, nil
}

// countedConn keeps the cluster's open connection count.
type countedConn struct {
	net.Conn
	b      *breaker
	closed atomic.Bool
}

func (c *countedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.b.conns.Add(-1)
	}
	return c.Conn.Close()
}

// PendingRequests is how many requests wait for a connection.
func (cl *Cluster) PendingRequests() int64 { return cl.cb.pending.Load() }
