package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
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

// ErrProtocol wraps what makes an upstream response unusable as HTTP: a
// head over the limits, too many interim responses, a malformed or cut
// head. The proxy answers 502 with response flag UPE, as Envoy answers a
// stream reset with reason protocol_error.
var ErrProtocol = errors.New("upstream protocol error")

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
	// h2 carries the HTTP/2 requests of a use_downstream_protocol
	// cluster, whose base speaks HTTP/1.1; nil in other clusters.
	h2 *http.Transport
	// Envoy's max_requests_per_connection (above 1) and
	// max_connection_duration on HTTP/1.1 connections; 0 when unset. Go's
	// pool cannot retire a connection itself, so requests to a cluster
	// with either set learn their connection (httptrace.GotConn) and
	// retire it when it is due.
	maxRequests uint32
	maxDuration time.Duration
	// h1 is the synchronous HTTP/1.1 path (h1.go); nil in HTTP/2 clusters.
	h1 *h1Pool
}

func newTransport(cl *Cluster, common *corev3.HttpProtocolOptions, downstream bool) *Transport {
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
		// One request per connection: no keep-alive.
		t.base.DisableKeepAlives = true
		if !cl.HTTP2 {
			t.maxRequests = 1 // how the synchronous path learns it
		}
	} else if v != nil && v.GetValue() > 1 && !cl.HTTP2 {
		t.maxRequests = v.GetValue()
	}
	if d := common.GetMaxConnectionDuration(); d != nil && d.AsDuration() > 0 && !cl.HTTP2 {
		t.maxDuration = d.AsDuration()
	}
	// Envoy's response head limits (h1.go): 80 KiB on HTTP/1, 60 KiB on
	// HTTP/2, whose codec takes max_response_headers_kb's default.
	t.base.MaxResponseHeaderBytes = h1MaxHead
	if cl.HTTP2 {
		t.base.MaxResponseHeaderBytes = h2MaxHead
	}
	if !cl.HTTP2 {
		t.h1 = &h1Pool{t: t, idle: map[string][]*h1Conn{}}
	}
	if downstream && !cl.HTTP2 {
		t.h2 = t.base.Clone()
		t.h2.MaxResponseHeaderBytes = h2MaxHead
		t.h2.DialContext = cl.dialH2
		t.h2.Protocols = new(http.Protocols)
		t.h2.Protocols.SetUnencryptedHTTP2(true)
		t.h2.MaxConnsPerHost = 0
		t.h2.DisableKeepAlives = false
	}
	return t
}

// connUse follows one request on the connection it gets, for connection
// retirement; nil for clusters that retire none.
type connUse struct {
	t      *Transport
	header http.Header // the request's own copy, sent after GotConn
	conn   *countedConn
	last   bool // the connection's last request
}

func (u *connUse) gotConn(info httptrace.GotConnInfo) {
	c, ok := info.Conn.(*countedConn)
	if !ok {
		return
	}
	u.conn = c
	c.inflight.Add(1)
	if n := c.served.Add(1); u.t.maxRequests != 0 && n >= u.t.maxRequests {
		c.retire.Store(true)
	}
	if c.retire.Load() {
		// The upstream closes after answering, so the pool never hands
		// the connection out again.
		u.last = true
		u.header["Connection"] = []string{"close"}
	}
}

// done ends the request's use of its connection, closing it if retired:
// the last request's (in case the upstream kept it open), or one that
// max_connection_duration retired while busy, once idle. Go's pool takes
// a connection back as the response body ends, a moment before done, so
// a request picking it up just then may find it closed, as when an
// upstream closes an idle connection (Go retries the replayable ones).
func (u *connUse) done() {
	c := u.conn
	if c == nil {
		return
	}
	u.conn = nil
	if c.inflight.Add(-1) == 0 && c.retire.Load() || u.last {
		closeConn(c)
	}
}

// tlsTrace learns the TLS state of the connection a request got.
type tlsTrace struct{ state *tls.ConnectionState }

func (t *tlsTrace) gotConn(info httptrace.GotConnInfo) {
	if c, ok := info.Conn.(*countedConn); ok {
		t.state = c.tls
	}
}

// RoundTrip sends req to the endpoint its URL names, under the cluster's
// circuit breakers. It returns ErrOverflow when they trip.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	cl := t.cl
	if err := cl.cb.acquire(req.Context()); err != nil {
		return nil, err
	}
	base := t.base
	if t.h2 != nil && req.ProtoMajor == 2 {
		base = t.h2
	} else if t.h1 != nil && h1Eligible(req) {
		return t.roundTripH1(req)
	}
	var use *connUse
	if (t.maxRequests != 0 || t.maxDuration != 0) && base == t.base {
		use = &connUse{t: t, header: req.Header.Clone()}
		if use.header == nil {
			use.header = http.Header{}
		}
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{GotConn: use.gotConn}))
		req.Header = use.header
	}
	var tlsConn *tlsTrace
	if use == nil && cl.Socket(req.URL.Host) != nil {
		// net/http does not tell which connection answered: a TLS
		// endpoint's requests learn it, so that the response carries the
		// peer's identity (plaintext requests pay nothing for it).
		tlsConn = &tlsTrace{}
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{GotConn: tlsConn.gotConn}))
	}
	resp, err := base.RoundTrip(req)
	if err == nil && resp.TLS == nil {
		switch {
		case tlsConn != nil:
			resp.TLS = tlsConn.state
		case use != nil && use.conn != nil:
			resp.TLS = use.conn.tls
		}
	}
	if n := 0; err == nil {
		if n = headerLines(resp.Header); n > h1MaxHeaders {
			closeConn(resp.Body)
			resp, err = nil, fmt.Errorf("%w: %d response headers, over %d", ErrProtocol, n, h1MaxHeaders)
		}
	} else if err != nil && strings.Contains(err.Error(), "net/http: server response headers exceeded") {
		// net/http's error for MaxResponseHeaderBytes has no type.
		err = fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	if cl.od != nil {
		if ep := cl.endpointByAddr(req.URL.Host); ep != nil {
			cl.observeResult(ep, req, resp, err)
		}
	}
	if err != nil {
		if use != nil {
			use.done()
		}
		cl.cb.release()
		return nil, err
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// The reverse proxy needs the upgraded body as it is; the
		// connection leaves the pool, and retirement.
		if use != nil && use.conn != nil {
			use.conn.upgraded.Store(true)
		}
		cl.cb.release()
		return resp, nil
	}
	resp.Body = &releaseBody{ReadCloser: resp.Body, b: &cl.cb, use: use}
	return resp, nil
}

// Direct reports whether req takes the synchronous HTTP/1.1 path (h1.go)
// rather than one of net/http's transports.
func (t *Transport) Direct(req *http.Request) bool {
	return t.h1 != nil && (t.h2 == nil || req.ProtoMajor != 2) && h1Eligible(req)
}

// roundTripH1 is RoundTrip on the synchronous HTTP/1.1 path (h1.go), with
// the same outlier detection and circuit-breaker accounting.
func (t *Transport) roundTripH1(req *http.Request) (*http.Response, error) {
	cl := t.cl
	resp, err := t.h1.roundTrip(req)
	if cl.od != nil {
		if ep := cl.endpointByAddr(req.URL.Host); ep != nil {
			cl.observeResult(ep, req, resp, err)
		}
	}
	if err != nil {
		cl.cb.release()
		return nil, err
	}
	resp.Body = &releaseBody{ReadCloser: resp.Body, b: &cl.cb}
	return resp, nil
}

// CloseIdleConnections closes pooled connections not in use.
func (t *Transport) CloseIdleConnections() {
	if t.h1 != nil {
		t.h1.close()
	}
	t.base.CloseIdleConnections()
	if t.h2 != nil {
		t.h2.CloseIdleConnections()
	}
}

// releaseBody frees the request's circuit breaker slot when the response
// is done with, as Envoy's active request ends with its stream.
type releaseBody struct {
	io.ReadCloser
	b    *breaker
	use  *connUse
	done atomic.Bool
}

func (r *releaseBody) Close() error {
	err := r.ReadCloser.Close()
	if r.done.CompareAndSwap(false, true) {
		if r.use != nil {
			r.use.done()
		}
		r.b.release()
	}
	return err
}

func (cl *Cluster) dialHTTP(ctx context.Context, network, addr string) (net.Conn, error) {
	return cl.dialCounted(ctx, network, addr, cl.Transport.maxDuration, cl.HTTP2)
}

// dialH2 dials for the HTTP/2 requests of a use_downstream_protocol
// cluster, whose connections retirement leaves alone.
func (cl *Cluster) dialH2(ctx context.Context, network, addr string) (net.Conn, error) {
	return cl.dialCounted(ctx, network, addr, 0, true)
}

// dialCounted dials a connection the cluster counts, closed at maxAge
// unless 0, over the endpoint's transport socket (h2: for HTTP/2). A TLS
// connection is handed to net/http wrapped, so that it speaks HTTP/1.1 or
// prior-knowledge HTTP/2 over it as over TCP, the protocol ALPN agreed.
func (cl *Cluster) dialCounted(ctx context.Context, network, addr string, maxAge time.Duration, h2 bool) (net.Conn, error) {
	c, err := cl.dial(ctx, network, addr)
	if err == nil {
		if sock := cl.Socket(addr); sock != nil {
			c, err = cl.handshake(ctx, c, sock, !h2, h2)
		}
	}
	if err != nil {
		cl.ConnectFails.Add(1)
		return nil, err
	}
	cl.cb.conns.Add(1)
	cc := &countedConn{Conn: c, b: &cl.cb}
	if tc, ok := c.(*tls.Conn); ok {
		cs := tc.ConnectionState()
		cc.tls = &cs
	}
	if maxAge > 0 {
		// Armed once assigned: expire reads cc.timer.
		cc.timer = time.AfterFunc(math.MaxInt64, cc.expire)
		cc.timer.Reset(maxAge)
	}
	return cc, nil
}

// countedConn keeps the cluster's open connection count and, for
// retirement, how many requests it served and has in flight.
type countedConn struct {
	net.Conn
	b        *breaker
	closed   atomic.Bool
	served   atomic.Uint32
	inflight atomic.Int32
	retire   atomic.Bool
	upgraded atomic.Bool // left the pool with a 101 response
	timer    *time.Timer // max_connection_duration; nil without
	// tls is the connection's TLS state (nil: plaintext), which its
	// responses carry (http.Response.TLS) for the peer's identity.
	tls *tls.ConnectionState
}

// expireRecheck is how often a connection past max_connection_duration
// with a request in flight is looked at again.
const expireRecheck = 100 * time.Millisecond

// expire retires the connection at max_connection_duration, as Envoy
// drains it: the next request on it is its last, and it is closed as
// soon as it has none in flight.
func (c *countedConn) expire() {
	if c.upgraded.Load() || c.closed.Load() {
		return
	}
	c.retire.Store(true)
	if c.inflight.Load() == 0 {
		closeConn(c)
		return
	}
	c.timer.Reset(expireRecheck)
}

func (c *countedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.b.conns.Add(-1)
		if c.timer != nil {
			c.timer.Stop()
		}
	}
	return c.Conn.Close()
}

// PendingRequests is how many requests wait for a connection.
func (cl *Cluster) PendingRequests() int64 { return cl.cb.pending.Load() }
