package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshlab/meshlab/dataplane/router"
	"github.com/meshlab/meshlab/dataplane/telemetry"
	"github.com/meshlab/meshlab/dataplane/tracing"
	"github.com/meshlab/meshlab/dataplane/upstream"
)

// Envoy's local reply bodies.
const (
	bodyNoHealthy      = "no healthy upstream"
	bodyOverflow       = "upstream connect error or disconnect/reset before headers. reset reason: overflow"
	bodyConnectFailure = "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
	bodyReset          = "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
	bodyTimeout        = "upstream request timeout"
	bodyFaultAbort     = "fault filter abort"
	bodyProtocolError  = "upstream connect error or disconnect/reset before headers. reset reason: protocol error"
	bodyBadRequest     = "Bad Request"
)

// connInfo is what dispatch learned about a connection.
type connInfo struct {
	listener string
	// lis is the compiled listener the connection was accepted on, so
	// that a request can tell whether its listener has been replaced.
	lis   *listener
	chain *chain
	// cur is the chain resolved on the replacement of lis (current).
	cur    atomic.Pointer[chainRef]
	orig   netip.AddrPort
	local  netip.AddrPort
	remote netip.AddrPort
	// peer is the remote address as X-Forwarded-For carries it, set when
	// the connection manager uses the remote address (cap 1: an append
	// copies).
	peer []string
	// inbound: the listener's traffic is for this proxy's own workload.
	inbound bool
	// id is what the chain's TLS handshake established (nil: plaintext).
	id *peerIdentity
	// sni is the ClientHello's server name; hello what the inspectors
	// read, to find the connection's chain again after an update.
	sni   string
	hello helloInfo
	// tcp are a tcp_proxy connection's byte counts (tcp.go).
	tcp *tcpStats
}

type httpConn struct {
	net.Conn
	info *connInfo
}

type connKey struct{}

type stateKey struct{}

func connContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if hc, ok := c.(*httpConn); ok {
		return context.WithValue(ctx, connKey{}, hc.info)
	}
	return ctx
}

// exchange is one request's state, shared by the handler, the round
// tripper and the error handler; it also records the response.
type exchange struct {
	http.ResponseWriter
	status  int
	bytes   int64
	flags   responseFlags
	details string
	conn    *connInfo
	rt      *runtime
	// hcm is the connection manager the request runs through: its chain's
	// in rt, which may be newer than the one the connection was accepted
	// on (current).
	hcm      *hcm
	route    *router.Route
	weighted *router.WeightedCluster
	cluster  *upstream.Cluster
	endpoint *upstream.Endpoint
	// service is the cluster's destination service, peer the other side
	// of the call as the metadata exchange told it (nil: unknown).
	service     *telemetry.Service
	peer        *telemetry.Peer
	upstreamDur time.Duration
	// failure is how the last attempt failed without a response;
	// transportFailure is the TLS error of a failed upstream handshake
	// (%UPSTREAM_TRANSPORT_FAILURE_REASON%).
	failure          router.Failure
	transportFailure string
	// state is the context that carries the exchange to the proxy's hooks.
	state stateCtx
	// jwt is the dynamic metadata the jwt_authn filter wrote (the
	// verified payload), which the RBAC filters after it match.
	jwt *structpb.Struct
	// corsOrigin is set when the CORS filter added headers for it.
	corsOrigin string
	// authzResponse are headers an ext_authz filter that allowed the
	// request adds to its response (allowed_client_headers_on_success).
	authzResponse http.Header
	// upBody and reqBody wrap the upstream response body and the
	// downstream request body to learn how reading them ended; they live
	// here so that wrapping allocates nothing.
	upBody  upstreamBody
	reqBody downstreamBody
	// idleBody bounds the body's stalls on net/http-served requests.
	idleBody idleBody
	// upH2 is set when the response came over HTTP/2.
	upH2 bool
	// upTLS is the upstream connection's TLS state, when it was TLS and
	// the transport tells it (the HTTP/1.1 pool does).
	upTLS *tls.ConnectionState
	// writeErr is the first error writing the response downstream.
	writeErr error
	// abort: the response cannot be completed, so the downstream stream is
	// reset rather than ended (ServeHTTP).
	abort bool
	// interim counts the interim responses the reverse proxy forwarded;
	// past upstream.MaxInterimResponses, stopAttempt ends the attempt
	// (set only for attempts on net/http's transports, which call the
	// reverse proxy's hook from their own goroutines).
	interim     atomic.Int32
	stopAttempt context.CancelFunc
	// span is the request's span when its connection manager traces;
	// forceTrace: it came with x-envoy-force-trace (tracing.go).
	span       *tracing.Span
	forceTrace bool
}

func (e *exchange) WriteHeader(code int) {
	if code < 200 && code != http.StatusSwitchingProtocols {
		if e.interim.Add(1) > upstream.MaxInterimResponses {
			if e.stopAttempt != nil {
				e.stopAttempt()
			}
			return
		}
	}
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
	if err != nil && e.writeErr == nil {
		e.writeErr = err
	}
	return n, err
}

// upstreamBody is the upstream response body as the reverse proxy copies
// it; err is how the copy's reads ended, if not at the body's end.
type upstreamBody struct {
	rc  io.ReadCloser
	err error
}

func (b *upstreamBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	return n, err
}

func (b *upstreamBody) Close() error { return b.rc.Close() }

// downstreamBody is the client's request body as the transport sends it.
// A read that fails is the client's doing (a malformed chunk, a client
// that left); the transport asks DownstreamFailed so that outlier detection
// does not count it against the upstream. The transport may read on its
// own goroutine, hence the atomic: err is written before failed is set.
type downstreamBody struct {
	rc     io.ReadCloser
	err    error
	failed atomic.Bool
}

func (b *downstreamBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF && !b.failed.Load() {
		b.err = err
		b.failed.Store(true)
	}
	return n, err
}

func (b *downstreamBody) Close() error { return b.rc.Close() }

// DownstreamFailed implements upstream.DownstreamBody.
func (b *downstreamBody) DownstreamFailed() bool { return b.failed.Load() }

// readDeadliner is what http.ResponseController.SetReadDeadline calls on
// net/http's HTTP/1 and HTTP/2 response writers; asserting it directly on
// the writer ServeHTTP is handed saves the controller's allocation.
type readDeadliner interface {
	SetReadDeadline(time.Time) error
}

// idleBody bounds each wait for request body bytes by the connection
// manager's stream_idle_timeout on requests net/http serves (TLS, HTTP/2),
// as h1Body does for h1Server's: net/http only bounds a request's head, so
// a client could otherwise hold a stream forever by stalling its body. A
// stalled read fails with a timeout, which downstreamBodyError answers with
// 408 (flag SI), as Envoy does on every codec.
type idleBody struct {
	rc   io.ReadCloser
	dl   readDeadliner
	idle time.Duration
	// armed: a deadline is set on the stream; the transport may read on
	// its own goroutine, but one read at a time.
	armed bool
}

func (b *idleBody) Read(p []byte) (int, error) {
	if b.dl != nil {
		if err := b.dl.SetReadDeadline(time.Now().Add(b.idle)); err != nil {
			b.dl = nil // the stream cannot be bounded (http.ErrNotSupported)
		} else {
			b.armed = true
		}
	}
	n, err := b.rc.Read(p)
	if err != nil {
		b.disarm()
	}
	return n, err
}

// disarm lifts the deadline once the body is done, so that it does not cut
// a long response (HTTP/2) or the connection's next read (HTTP/1).
func (b *idleBody) disarm() {
	if b.armed {
		b.armed = false
		// The stream is ending or still good; a failure here changes
		// nothing the body's reader could act on.
		_ = b.dl.SetReadDeadline(time.Time{})
	}
}

func (b *idleBody) Close() error { return b.rc.Close() }

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
	// TLS and HTTP/2 requests come from net/http's server, which neither
	// counts headers nor bounds body stalls; h1Server does both itself.
	viaNetHTTP := r.TLS != nil || r.ProtoMajor == 2
	if viaNetHTTP && countHeaders(r.Header) > ci.chain.http.lim.maxHeaders {
		localReply(w, http.StatusRequestHeaderFieldsTooLarge, "Request Header Fields Too Large")
		return
	}
	// Headers the client nominates in Connection go now, as in Envoy's
	// codec, before the proxy adds its own.
	if !sanitizeConnection(r.Header) {
		localReply(w, http.StatusBadRequest, bodyBadRequest)
		return
	}
	if ci.chain.http.useRemoteAddress {
		// An edge connection manager (Istio's gateways, no
		// internal_address_config) takes every request as external and
		// sanitizes it as Envoy does: a request id of its own (no
		// preserve_external_request_id), so a client cannot pick the trace
		// decision packed in it, and no x-envoy-force-trace or
		// x-envoy-decorator-operation, which only the mesh may send.
		delete(r.Header, tracing.HeaderForceTrace)
		delete(r.Header, tracing.HeaderOperation)
		r.Header[tracing.HeaderRequestID] = []string{newRequestID()}
	} else if _, ok := r.Header[tracing.HeaderRequestID]; !ok {
		r.Header[tracing.HeaderRequestID] = []string{newRequestID()}
	}
	ex := &exchange{ResponseWriter: w, conn: ci}
	if viaNetHTTP && r.Body != nil && r.Body != http.NoBody {
		if idle := ci.chain.http.lim.streamIdle; idle > 0 {
			if dl, ok := w.(readDeadliner); ok {
				ex.idleBody = idleBody{rc: r.Body, dl: dl, idle: idle}
				r.Body = &ex.idleBody
			}
		}
	}
	if ci.inbound {
		ex.peer = p.metrics.TakePeer(r.Header)
	}
	p.route(ex, r)
	p.stats.requests.Add(1)
	p.record(ex, r, time.Since(start))
	if ex.span != nil {
		p.finishSpan(ex, r)
	}
	p.logHTTP(start, r, ex)
	if ex.abort {
		// What was received goes out, then the stream is reset rather
		// than ended, so that the client cannot take a cut response for a
		// whole one: net/http's servers close an HTTP/1 connection, or
		// reset an HTTP/2 stream, on this panic; h1Server closes the
		// connection without the last chunk. Envoy resets the downstream
		// stream likewise when the upstream one fails after the response
		// started.
		if f, ok := w.(http.Flusher); ok && ex.writeErr == nil && ex.status != 0 {
			f.Flush()
		}
		panic(http.ErrAbortHandler)
	}
}

// maxBufferedBody is Envoy's default per-connection buffer limit: a
// request body up to this size is buffered so that it can be retried and
// mirrored; a larger or chunked one is sent once and never mirrored.
const maxBufferedBody = 1 << 20

// route runs the request through what Envoy's filter chain does: route
// lookup, the fault filter, then the router (direct responses,
// redirects, upstream with retries, mirrors).
func (p *Proxy) route(ex *exchange, r *http.Request) {
	rt := p.rt.Load()
	ex.rt = rt
	fc, gone := current(rt, ex.conn)
	if gone {
		// The connection's chain is no longer in its listener (STRICT
		// replaced PERMISSIVE's plaintext chain, say): Envoy drains it, so
		// this response is its last.
		if c, ok := ex.ResponseWriter.(interface{ closeAfter() }); ok {
			c.closeAfter()
		}
	}
	h := fc.http
	ex.hcm = h
	table := h.inline
	if table == nil {
		table = rt.routes[h.rds]
	}
	if t := h.tracing; t != nil {
		// Envoy starts the span before its filters run, named by the
		// route matched then.
		p.startSpan(ex, r, t, h.egress, table.Match(r))
	}
	if len(h.authz) > 0 && !p.authorize(ex, r, h.authz, h.xffTrustedHops) {
		return
	}
	route := table.Match(r)
	if route == nil {
		ex.flags, ex.details = flagNR, "route_not_found"
		ex.WriteHeader(http.StatusNotFound)
		return
	}
	ex.route = route
	if f := route.Fault; f != nil && h.fault {
		if !p.fault(ex, r, f) {
			return
		}
	}
	if c := route.Cors; c != nil && h.cors {
		if !p.cors(ex, r, c) {
			return
		}
	}
	if d := route.Direct; d != nil {
		ex.details = "direct_response"
		route.Response.Apply(ex.Header())
		ex.Header().Set("Content-Type", "text/plain")
		ex.WriteHeader(d.Status)
		// A failed write is the client's leaving; ex records it.
		_, _ = io.WriteString(ex, d.Body)
		return
	}
	if rd := route.Redirect; rd != nil {
		ex.details = "direct_response"
		scheme := "http"
		if r.TLS != nil || ex.conn.id != nil {
			scheme = "https"
		}
		path := r.URL.EscapedPath()
		route.Response.Apply(ex.Header())
		ex.Header()["Location"] = []string{rd.Location(route, scheme, r.Host, path, r.URL.RawQuery)}
		ex.WriteHeader(rd.Code)
		return
	}
	name, wc := route.Pick()
	ex.weighted = wc
	cl := rt.clusters[name]
	ex.service = rt.services[name]
	if cl != nil {
		ex.cluster = cl
		h, hashed := upstream.RequestHash(route.HashPolicy, r, ex.conn.remote, ex.Header())
		ex.endpoint = cl.PickHash(ex.conn.orig, h, hashed)
	}
	if ex.endpoint == nil {
		if cl != nil {
			cl.NoHealthy.Add(1)
		}
		ex.flags, ex.details = ex.flags|flagUH, "no_healthy_upstream"
		localReply(ex, http.StatusServiceUnavailable, bodyNoHealthy)
		return
	}
	if (route.Retry != nil || route.Mirrors != nil) && r.GetBody == nil && r.ContentLength > 0 && r.ContentLength <= maxBufferedBody {
		if err := bufferBody(r); err != nil {
			downstreamBodyError(ex, ex, r, err)
			return
		}
	}
	cl.RequestsTotal.Add(1)
	ctx := ex.withState(r.Context())
	if route.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, route.Timeout)
		defer cancel()
	}
	p.forward(ex, r.WithContext(ctx))
	if err := ex.upBody.err; err != nil {
		p.resetAfterStart(ex, ctx, err)
	} else if ex.writeErr != nil {
		ex.abort = true
		ex.flags, ex.details = ex.flags|flagDC, "downstream_remote_disconnect"
	}
}

// forward runs the reverse proxy. Under net/http's server it panics with
// http.ErrAbortHandler when the body copy fails; the panic is taken here,
// so that the request is logged and counted, and raised again by
// ServeHTTP.
func (p *Proxy) forward(ex *exchange, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				panic(v)
			}
			ex.abort = true
		}
	}()
	p.rp.ServeHTTP(ex, r)
}

// resetAfterStart records an upstream response that failed after its head
// was forwarded, as Envoy's router does: the downstream stream is reset,
// the flag says why, and outlier detection counts a reset (503) or a
// timeout (504) against the endpoint. Envoy's HTTP/1 codec calls a body cut
// by the upstream's close a protocol error (UPE): it runs its parser to the
// end of the stream, which fails mid-body; on HTTP/2 the stream just ends
// (UC).
func (p *Proxy) resetAfterStart(ex *exchange, ctx context.Context, err error) {
	ex.abort = true
	code := http.StatusServiceUnavailable
	var ne net.Error
	switch {
	case ex.writeErr != nil || errors.Is(ctx.Err(), context.Canceled):
		ex.flags, ex.details = ex.flags|flagDC, "downstream_remote_disconnect"
		return
	case errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, &ne) && ne.Timeout():
		// The route's timeout, or the attempt's (the pool turns an ended
		// context into a passed read deadline).
		ex.flags, ex.details = ex.flags|flagUT, "response_timeout"
		code = http.StatusGatewayTimeout
	case ex.upH2:
		ex.flags, ex.details = ex.flags|flagUC, "upstream_reset_after_response_started{connection_termination}"
	default:
		ex.flags, ex.details = ex.flags|flagUPE, "upstream_reset_after_response_started{protocol_error}"
	}
	if ex.cluster != nil {
		ex.cluster.Observe(ex.endpoint, code)
	}
}

// fault is Envoy's fault filter: a sampled delay (DI), then a sampled
// abort (FI) answered locally. It reports whether the request goes on.
func (p *Proxy) fault(ex *exchange, r *http.Request, f *router.Fault) bool {
	if f.HasDelay && router.Sample(f.DelayPercent) {
		ex.flags |= flagDI
		if f.Delay > 0 {
			t := time.NewTimer(f.Delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				ex.flags, ex.details = ex.flags|flagDC, "downstream_remote_disconnect"
				ex.abort = true
				return false
			}
		}
	}
	if f.AbortStatus != 0 && router.Sample(f.AbortPercent) {
		ex.flags, ex.details = ex.flags|flagFI, "fault_filter_abort"
		localReply(ex, f.AbortStatus, bodyFaultAbort)
		return false
	}
	return true
}

// bufferBody reads r's body into memory so that attempts and mirrors can
// each send it.
func bufferBody(r *http.Request) error {
	b := make([]byte, r.ContentLength)
	if _, err := io.ReadFull(r.Body, b); err != nil {
		return fmt.Errorf("buffer request body: %w", err)
	}
	if err := r.Body.Close(); err != nil {
		return fmt.Errorf("buffer request body: %w", err)
	}
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	r.Body, _ = r.GetBody()
	return nil
}

func localReply(w http.ResponseWriter, code int, body string) {
	h := w.Header()
	h["Content-Type"] = []string{"text/plain"}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(code)
	// A failed write is the client's leaving, which the exchange records.
	_, _ = io.WriteString(w, body)
}

// rewrite shapes the upstream request as Envoy does: the Host is kept,
// x-forwarded-proto set, the route's rewrites and header mutations (the
// route's, then the chosen weighted cluster's) applied. The endpoint is
// filled in per attempt by the round tripper.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	ex := pr.In.Context().Value(stateKey{}).(*exchange)
	if !ex.conn.inbound && inMesh(ex.service) {
		p.node.AddMetadata(pr.Out.Header)
	}
	if b := pr.Out.Body; b != nil && b != http.NoBody && pr.Out.GetBody == nil {
		ex.reqBody.rc = b
		pr.Out.Body = &ex.reqBody
	}
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = ex.endpoint.Addr
	pr.Out.Host = pr.In.Host
	forwardedHeaders(pr.Out.Header, pr.In.Header, ex.conn.peer, pr.In.TLS != nil || ex.conn.id != nil)
	applyXFCC(pr.Out.Header, ex.hcm, ex.conn.id)
	rt := ex.route
	if rt.HostRewrite != "" {
		pr.Out.Host = rt.HostRewrite
	} else if wc := ex.weighted; wc != nil && wc.HostRewrite != "" {
		pr.Out.Host = wc.HostRewrite
	}
	if pfx := rt.PrefixRewrite; pfx != "" || rt.RegexRewrite != nil {
		path := pr.Out.URL.Path
		if rt.RegexRewrite != nil {
			path = rt.RegexRewrite.Rewrite(path)
		} else if m := rt.MatchedPrefix(); m != "" && strings.HasPrefix(path, m) {
			// The matched prefix is replaced; with a non-prefix match the
			// whole path is.
			path = pfx + path[len(m):]
		} else {
			path = pfx
		}
		pr.Out.Header["X-Envoy-Original-Path"] = []string{pr.In.URL.RequestURI()}
		pr.Out.URL.Path, pr.Out.URL.RawPath = path, ""
	}
	rt.Request.Apply(pr.Out.Header)
	if wc := ex.weighted; wc != nil {
		wc.Request.Apply(pr.Out.Header)
	}
	if ex.span != nil {
		// Last, as Envoy's upstream request injects the span's context
		// after the route's header mutations.
		ex.span.Inject(pr.Out.Header)
	}
}

// modifyResponse shapes the upstream response for the downstream: the
// metadata exchange, upstream service time, the route's header
// mutations, CORS, and the move of the headers to the downstream writer.
func (p *Proxy) modifyResponse(resp *http.Response) error {
	if ex, ok := resp.Request.Context().Value(stateKey{}).(*exchange); ok {
		if ex.conn.inbound {
			p.node.AddMetadata(resp.Header)
		} else {
			ex.peer = p.metrics.TakePeer(resp.Header)
			ex.upTLS = resp.TLS
		}
		resp.Header["X-Envoy-Upstream-Service-Time"] = serviceTime(ex.upstreamDur)
		if ex.span != nil || ex.forceTrace {
			traceResponse(ex, resp)
		}
		ex.route.Response.Apply(resp.Header)
		if wc := ex.weighted; wc != nil {
			wc.Response.Apply(resp.Header)
		}
		if ex.corsOrigin != "" {
			moveCorsHeaders(ex, resp.Header)
		}
		for k, vs := range ex.authzResponse {
			resp.Header[k] = append(resp.Header[k], vs...)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			if a, ok := ex.ResponseWriter.(headerAdopter); !ok || !a.adoptHeader(resp) {
				moveResponseHeaders(ex.Header(), resp.Header)
			}
			if resp.Body != nil && resp.Body != http.NoBody {
				ex.upBody.rc = resp.Body
				resp.Body = &ex.upBody
			}
			ex.upH2 = resp.ProtoMajor == 2
		}
	}
	return nil
}

// roundTripper sends a request to the endpoint the handler picked, on the
// cluster's pooled transport, retrying as the route's retry policy says
// and mirroring as its mirror policies say.
type roundTripper struct{ p *Proxy }

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	ex := req.Context().Value(stateKey{}).(*exchange)
	cl := ex.cluster
	if ex.route.Mirrors != nil {
		rt.p.mirror(ex, req)
	}
	retries := 0
	var policy *router.RetryPolicy
	if ex.route.Retry != nil && ex.route.Retry.NumRetries > 0 && (req.Body == nil || req.Body == http.NoBody || req.GetBody != nil) {
		policy = ex.route.Retry
		retries = policy.NumRetries
	}
	// tried holds the endpoints attempted, for the previous_hosts
	// predicate; a small array keeps it off the heap.
	var triedBuf [4]*upstream.Endpoint
	tried := triedBuf[:0]
	// retrying holds a slot of the cluster's max_retries while a retry is
	// in flight, as Envoy counts retries outstanding.
	retrying := false
	defer func() {
		if retrying {
			cl.ReleaseRetry()
		}
	}()
	for attempt := 0; ; attempt++ {
		ep := ex.endpoint
		tried = append(tried, ep)
		ep.Active.Add(1)
		ep.Total.Add(1)
		start := time.Now()
		areq := req
		var cancel context.CancelFunc
		var actx context.Context
		if policy != nil && policy.PerTry > 0 {
			actx, cancel = context.WithTimeout(req.Context(), policy.PerTry)
			areq = req.WithContext(actx)
		} else if !cl.Transport.Direct(req) {
			// net/http's transports pass every interim response to the
			// reverse proxy, which forwards it, and bound none: the attempt
			// must be stoppable (exchange.WriteHeader). The synchronous
			// path bounds them itself, at no cost.
			actx, cancel = context.WithCancel(req.Context())
			areq = req.WithContext(actx)
		}
		ex.stopAttempt = cancel
		resp, err := cl.Transport.RoundTrip(areq)
		ep.Active.Add(-1)
		ex.upstreamDur = time.Since(start)
		ex.failure = router.NoFailure
		if retrying {
			cl.ReleaseRetry()
			retrying = false
		}
		if err != nil && ex.reqBody.failed.Load() {
			// The client's body failed: nothing the upstream did, and
			// nothing a retry could send again.
			if cancel != nil {
				cancel()
			}
			return nil, err
		}
		if n := ex.interim.Load(); n > upstream.MaxInterimResponses {
			// Envoy's codec would have reset the stream: a protocol
			// error, counted against the host as a reset.
			if cancel != nil {
				cancel()
			}
			if resp != nil {
				_ = resp.Body.Close()
			}
			cl.Observe(ep, http.StatusServiceUnavailable)
			return nil, fmt.Errorf("%w: more than %d interim responses", upstream.ErrProtocol, upstream.MaxInterimResponses)
		}
		status, grpcStatus := 0, ""
		switch {
		case err == nil:
			status = resp.StatusCode
			if v, ok := resp.Header["Grpc-Status"]; ok && len(v) > 0 {
				grpcStatus = v[0]
			}
		case errors.Is(err, upstream.ErrOverflow):
			// A tripped circuit breaker is not retried, as in Envoy.
		case actx != nil && actx.Err() == context.DeadlineExceeded && req.Context().Err() == nil:
			ex.failure = router.PerTryTimeout
		case isConnectFailure(err):
			ex.failure = router.ConnectFailure
			var te *upstream.TransportError
			if errors.As(err, &te) {
				ex.transportFailure = te.Reason()
			}
		default:
			ex.failure = router.ResetFailure
		}
		// As Envoy, no retry once an interim response went downstream.
		retry := req.Context().Err() == nil && ex.interim.Load() == 0 && policy.Retryable(status, grpcStatus, ex.failure)
		if retry && attempt >= retries {
			ex.flags |= flagURX
			retry = false
		}
		if retry {
			// max_retries bounds the retries in flight: a tripped retry
			// circuit breaker means no retry, flag UO.
			if !cl.AcquireRetry() {
				ex.flags |= flagUO
				retry = false
			} else {
				retrying = true
			}
		}
		if !retry {
			if cancel != nil {
				switch {
				case err != nil:
					cancel()
				case resp.StatusCode == http.StatusSwitchingProtocols:
					// The reverse proxy needs the upgraded body as it is
					// (a ReadWriteCloser); the attempt's context ends with
					// the request's.
				default:
					resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
				}
			}
			return resp, err
		}
		if cancel != nil {
			cancel()
		}
		if resp != nil {
			// Draining a little lets a short answer keep its connection;
			// its errors only decide that.
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			_ = resp.Body.Close()
		}
		if d := policy.BackOff(attempt + 1); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-req.Context().Done():
				t.Stop()
				return nil, req.Context().Err()
			}
		}
		if req.GetBody != nil {
			b, gerr := req.GetBody()
			if gerr != nil {
				return nil, gerr
			}
			req = req.Clone(req.Context())
			req.Body = b
		}
		if next := pickRetryHost(cl, ex.conn.orig, policy, tried); next != nil {
			ex.endpoint = next
			req.URL.Host = next.Addr
		}
	}
}

// pickRetryHost picks the endpoint of a retry; with the previous_hosts
// predicate it re-picks, up to the policy's host selection attempts, an
// endpoint already tried.
func pickRetryHost(cl *upstream.Cluster, orig netip.AddrPort, p *router.RetryPolicy, tried []*upstream.Endpoint) *upstream.Endpoint {
	var ep *upstream.Endpoint
	for i := 0; i < max(p.HostSelectionAttempts, 1); i++ {
		if ep = cl.Pick(orig); ep == nil || !p.AvoidPrevious || !slices.Contains(tried, ep) {
			return ep
		}
	}
	return ep
}

// mirror sends fire-and-forget copies of the outgoing request to each
// mirror cluster its sample selects, with the authority suffixed
// "-shadow", as Envoy's shadow writer does; responses are discarded. A
// body that was not buffered is not mirrored. The copies belong to the
// proxy, which cancels them when it stops.
func (p *Proxy) mirror(ex *exchange, req *http.Request) {
	for _, m := range ex.route.Mirrors {
		if !router.Sample(m.Percent) {
			continue
		}
		cl := ex.rt.clusters[m.Cluster]
		if cl == nil {
			continue
		}
		ep := cl.Pick(ex.conn.orig)
		if ep == nil {
			continue
		}
		var body io.ReadCloser = http.NoBody
		if req.Body != nil && req.Body != http.NoBody {
			if req.GetBody == nil {
				continue
			}
			b, err := req.GetBody()
			if err != nil {
				continue
			}
			body = b
		}
		ctx, cancel := p.ctx, context.CancelFunc(func() {})
		if ex.route.Timeout > 0 {
			ctx, cancel = context.WithTimeout(ctx, ex.route.Timeout)
		}
		mreq := req.Clone(ctx)
		mreq.Host = router.ShadowHost(req.Host)
		mreq.URL.Host = ep.Addr
		mreq.Body = body
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer cancel()
			resp, err := cl.Transport.RoundTrip(mreq)
			if err == nil {
				// A shadow's response is dropped, errors and all.
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		}()
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

func isConnectFailure(err error) bool {
	var op *net.OpError
	var te *upstream.TransportError
	return err != nil && (errors.As(err, &op) && op.Op == "dial" || errors.As(err, &te))
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
	case ex.reqBody.failed.Load():
		downstreamBodyError(ex, w, r, ex.reqBody.err)
	case errors.Is(err, upstream.ErrOverflow):
		// A circuit breaker tripped (upstream.Transport).
		ex.flags, ex.details = ex.flags|flagUO, "upstream_reset_before_response_started{overflow}"
		if ex.status == 0 {
			localReply(w, http.StatusServiceUnavailable, bodyOverflow)
		}
	case errors.Is(r.Context().Err(), context.DeadlineExceeded) || ex.failure == router.PerTryTimeout:
		ex.flags, ex.details = ex.flags|flagUT, "response_timeout"
		if ex.status == 0 {
			localReply(w, http.StatusGatewayTimeout, bodyTimeout)
		}
	case r.Context().Err() != nil:
		// The client went away.
		ex.flags, ex.details = ex.flags|flagDC, "downstream_remote_disconnect"
		ex.abort = true
	case errors.Is(err, upstream.ErrProtocol):
		// A response head over Envoy's limits, or one that is not HTTP.
		ex.flags, ex.details = ex.flags|flagUPE, "upstream_reset_before_response_started{protocol_error}"
		if ex.status == 0 {
			localReply(w, http.StatusBadGateway, bodyProtocolError)
		}
	case ex.failure == router.ConnectFailure:
		ex.flags, ex.details = ex.flags|flagUF, "upstream_reset_before_response_started{connection_failure}"
		body := bodyConnectFailure
		if ex.transportFailure != "" {
			// Envoy's words for a TLS failure: Istio users read the reason
			// (CERTIFICATE_VERIFY_FAILED and the like) off this body.
			ex.details = "upstream_reset_before_response_started{connection_failure," + ex.transportFailure + "}"
			body += ", transport failure reason: " + ex.transportFailure
		}
		if ex.status == 0 {
			localReply(w, http.StatusServiceUnavailable, body)
		}
	default:
		ex.flags, ex.details = ex.flags|flagUC, "upstream_reset_before_response_started{connection_termination}"
		if ex.status == 0 {
			localReply(w, http.StatusServiceUnavailable, bodyReset)
		}
	}
}

// downstreamBodyError answers a request whose body could not be read
// from the client, as Envoy's connection manager does: a body that is not
// valid HTTP/1 gets 400 with flag DPE and the connection closes; a client
// that went silent past the stream idle timeout gets 408, flag SI; a client
// that left gets nothing, flag DC, and its stream is reset.
func downstreamBodyError(ex *exchange, w http.ResponseWriter, r *http.Request, err error) {
	var ne net.Error
	var mbe *http.MaxBytesError
	var code int
	var body string
	switch {
	case errors.As(err, &mbe):
		ex.flags, ex.details = ex.flags|flagDPE, "request_payload_too_large"
		code, body = http.StatusRequestEntityTooLarge, "Payload Too Large"
	case errors.As(err, &ne) && ne.Timeout():
		// The client went silent mid-body past the stream idle timeout:
		// Envoy answers 408 "stream timeout" (flag SI) if nothing was sent.
		ex.flags, ex.details = ex.flags|flagSI, "stream_idle_timeout"
		code, body = http.StatusRequestTimeout, "stream timeout"
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
		errors.As(err, &ne) || errors.Is(err, context.Canceled):
		// Nothing is answered: a client that only half-closed must not
		// read a response to a request it did not finish.
		ex.flags, ex.details = ex.flags|flagDC, "downstream_remote_disconnect"
		ex.abort = true
		return
	default:
		ex.flags, ex.details = ex.flags|flagDPE, "http1.codec_error"
		code, body = http.StatusBadRequest, bodyBadRequest
	}
	if ex.status == 0 {
		closeAfter(w, r)
		localReply(w, code, body)
	}
}

// closeAfter ends an HTTP/1 connection with the response: what follows a
// broken body cannot be framed.
func closeAfter(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 {
		w.Header()["Connection"] = []string{"close"}
	}
}

// newRequestID returns a random UUID (version 4), as Envoy generates.
// The bits come from the runtime's per-thread ChaCha8 generator (math/rand/v2's
// top-level functions), seeded from the system's entropy: an ID needs
// uniqueness, not secrecy (Envoy does not use a CSPRNG for it either), and
// this costs no system call or lock per request.
func newRequestID() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[0:8], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:16], rand.Uint64())
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

// current is the filter chain a connection's next request runs through:
// the latest configuration's, not the one the connection was accepted
// on. Envoy drains a connection whose filter chain changed (an HTTP/1 one
// closes after its next response), so a new policy or route table reaches
// a keep-alive client at once; resolving the chain per request gives the
// same without dropping the connection. A TLS connection is matched again
// with what its ClientHello said, and keeps its handshake: the workload
// certificate and roots are the proxy's, not the chain's. If the chain it
// now matches does not terminate TLS the same way, it is gone (drained).
func current(rt *runtime, ci *connInfo) (*chain, bool) {
	l := rt.listeners[ci.listener]
	if l == nil || l == ci.lis {
		// Unchanged (the common case, and no work) or gone (the
		// connection drains on what it had).
		return ci.chain, false
	}
	// Resolved once per replaced listener, not per request: matching a
	// chain allocates, and a long keep-alive connection outlives many
	// pushes. HTTP/2 streams may race here; each stores the same answer.
	if ref := ci.cur.Load(); ref != nil && ref.lis == l {
		return ref.chain, ref.gone
	}
	c := ci.rematch(l)
	gone := c == nil
	if gone {
		c = ci.chain
	}
	ci.cur.Store(&chainRef{lis: l, chain: c, gone: gone})
	return c, gone
}

// dest is the connection's destination: its original one when it was
// redirected to the proxy, else the address it was accepted on.
func (ci *connInfo) dest() netip.AddrPort {
	if ci.orig.IsValid() {
		return ci.orig
	}
	return ci.local
}

// rematch is the chain of l (a replacement of the connection's listener)
// that the connection would take now, found with what its inspectors read;
// nil when none would serve it the same way: no chain, one of the other
// kind (HTTP for TCP or back), or one that terminates TLS differently.
func (ci *connInfo) rematch(l *listener) *chain {
	c := l.chain(ci.dest(), ci.hello)
	if c == nil || (c.http == nil) != (ci.chain.http == nil) || (c.tls == nil) != (ci.chain.tls == nil) {
		return nil
	}
	return c
}

// chainRef is the chain a connection's requests use since its listener
// was replaced.
type chainRef struct {
	lis   *listener
	chain *chain
	// gone: the listener has no chain for the connection any more.
	gone bool
}
