// Package proxy owns the proxy's runtime: it turns an accepted xDS
// snapshot into bound listeners, filter chains, route tables and clusters,
// swaps that runtime atomically so that reconfiguration never disturbs
// requests in flight, and serves HTTP and TCP traffic through it.
package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/meshlab/meshlab/dataplane/capture"
	"github.com/meshlab/meshlab/dataplane/rbac"
	"github.com/meshlab/meshlab/dataplane/router"
	"github.com/meshlab/meshlab/dataplane/telemetry"
	"github.com/meshlab/meshlab/dataplane/upstream"
	"github.com/meshlab/meshlab/dataplane/xdsclient"
)

// Config configures a Proxy.
type Config struct {
	// Node is reported by /server_info and /config_dump.
	Node *corev3.Node
	// OriginalDst reads a redirected connection's original destination;
	// capture.OriginalDst by default. Tests inject their own.
	OriginalDst func(*net.TCPConn) (netip.AddrPort, error)
	// AccessLog is the proxy's stdout: where the access_log entries with
	// path /dev/stdout write (the container log). Which listeners log,
	// and how, is the control plane's to say (Istio's accessLogFile,
	// accessLogFormat, accessLogEncoding and Telemetry accessLogging); nil
	// drops the /dev/stdout entries. Writes are buffered and bounded.
	AccessLog io.Writer
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// WarmTimeout bounds how long a snapshot waits for the routes and
	// endpoints its listeners and clusters name (5s by default).
	WarmTimeout time.Duration
	// DrainTimeout bounds how long Run waits for requests in flight
	// when ctx ends (5s by default).
	DrainTimeout time.Duration
	// Resolver resolves the host names of STRICT_DNS and LOGICAL_DNS
	// clusters; the system resolver by default. Tests map names to
	// loopback with their own.
	Resolver upstream.Resolver
	// TraceFlushSpans and TraceFlushInterval override Envoy's Zipkin
	// reporter defaults (tracing.zipkin.min_flush_spans = 5,
	// flush_interval_ms = 5000), as Envoy's runtime keys do; tests shorten them.
	TraceFlushSpans    int
	TraceFlushInterval time.Duration
	// Identity is the workload's certificate and the mesh's roots: the
	// SDS secrets "default" and "ROOTCA". nil: they are not available,
	// and the filter chains and clusters that need them fail their
	// handshakes (closed, counted), never fall back to plaintext.
	Identity Identity
}

// Identity is the workload's own certificate and the mesh's trust roots,
// which Istio's agent serves the proxy over SDS as "default" and "ROOTCA".
type Identity interface {
	// Certificate is the certificate to present now; it changes on rotation.
	Certificate() (*tls.Certificate, error)
	// Roots are the trusted roots now.
	Roots() (*x509.CertPool, error)
}

// Proxy is the data plane runtime. Create it with New, feed it snapshots
// with Check and Apply (the xdsclient hooks), and run it with Run.
type Proxy struct {
	cfg   Config
	log   *slog.Logger
	start time.Time

	rt atomic.Pointer[runtime]

	// mu serializes Check/Apply and guards the fields below.
	mu      sync.Mutex
	pending *runtime
	// waiting is the newest snapshot still warming; warmTimer applies it
	// anyway when warming takes too long.
	waiting   *xdsclient.Snapshot
	warmTimer *time.Timer
	bound     map[string]*boundListener
	closed    bool
	ready     atomic.Bool
	// draining is set when Run's context ends: readiness answers 503 so
	// that load balancers and gateways stop sending.
	draining atomic.Bool

	ctx    context.Context // Run's; stops accept loops and TCP copies
	cancel context.CancelFunc
	wg     sync.WaitGroup // accept loops and TCP connections
	conns  connSet

	httpSrv *http.Server
	h1      *h1Server // plaintext HTTP/1.x connections (h1server.go)
	httpLn  *chanListener
	rp      *httputil.ReverseProxy
	// sinks are the access log destinations by path; logKick wakes
	// their flusher when one fills.
	sinks   logSinkSet
	logKick chan struct{}
	stats   stats
	creds   *credentials
	// node is what the proxy tells its peers of itself; metrics are its
	// Istio metrics.
	node    *telemetry.Node
	metrics *telemetry.Metrics
	// authz holds the gRPC connections of ext_authz filters (extauthz.go);
	// authzStats the RBAC filters' counters, by Envoy's stat name, kept
	// across configuration changes as Envoy keeps stats.
	authz      authzConns
	authzStats sync.Map // string → *atomic.Uint64
	// tlsStats are the ssl.* counters by listener and cluster name, kept
	// across configuration updates as Envoy's stats are.
	tlsStats tlsStatsSet
	// traces are the Zipkin reporters and their counters (tracing.go).
	traces traceSet
}

// New returns a proxy that serves nothing until it is given a snapshot.
func New(cfg Config) *Proxy {
	if cfg.OriginalDst == nil {
		cfg.OriginalDst = capture.OriginalDst
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.WarmTimeout <= 0 {
		cfg.WarmTimeout = 5 * time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 5 * time.Second
	}
	p := &Proxy{cfg: cfg, log: cfg.Logger, start: time.Now(), bound: map[string]*boundListener{}}
	p.creds = &credentials{rt: &p.rt, id: cfg.Identity}
	node, err := telemetry.NewNode(cfg.Node)
	if err != nil {
		// Only a node whose metadata cannot be serialized gets here; the
		// proxy then reports itself as unknown rather than not start.
		p.log.Warn("node metadata for the metadata exchange", "err", err)
		node = &telemetry.Node{Peer: telemetry.UnknownPeer}
	}
	p.node, p.metrics = node, telemetry.New()
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.rt.Store(&runtime{snap: emptySnapshot(), listeners: map[string]*listener{}, routes: map[string]*router.Table{}, clusters: map[string]*upstream.Cluster{}})
	p.sinks = logSinkSet{p: p, m: map[string]*logWriter{}}
	p.logKick = make(chan struct{}, 1)
	p.httpLn = newChanListener()
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      roundTripper{p},
		ErrorHandler:   p.proxyError,
		ModifyResponse: p.modifyResponse,
		BufferPool:     bufferPool{},
		ErrorLog:       log.New(io.Discard, "", 0),
	}
	// TLS and HTTP/2 connections are net/http's: one server for every
	// listener, so Envoy's defaults rather than each HCM's values bound
	// them (the plaintext HTTP/1 server reads the HCM's); only body stalls
	// take the HCM's stream_idle_timeout, set per stream (idleBody).
	p.httpSrv = &http.Server{
		Handler:           p,
		IdleTimeout:       defaultLimits.idle,
		ReadHeaderTimeout: defaultLimits.streamIdle,
		MaxHeaderBytes:    defaultLimits.maxHead,
		ConnContext:       connContext,
		// Requests still in flight when the drain ends are cancelled.
		BaseContext: func(net.Listener) context.Context { return p.ctx },
		Protocols:   new(http.Protocols),
		ErrorLog:    slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	p.httpSrv.Protocols.SetHTTP1(true)
	p.httpSrv.Protocols.SetHTTP2(true) // over TLS, when ALPN picks h2
	p.httpSrv.Protocols.SetUnencryptedHTTP2(true)
	p.h1 = &h1Server{p: p, conns: map[*h1Conn]struct{}{}}
	return p
}

func (p *Proxy) buildOptions() buildOptions {
	return buildOptions{creds: p.creds, resolver: p.cfg.Resolver, metrics: p.metrics, tls: &p.tlsStats, logs: &p.sinks, node: p.cfg.Node}
}

func emptySnapshot() *xdsclient.Snapshot {
	return xdsclient.New(xdsclient.Config{}).Snapshot()
}

// Ready reports whether the first listeners and clusters have been applied.
func (p *Proxy) Ready() bool { return p.ready.Load() }

// Snapshot returns the configuration being served.
func (p *Proxy) Snapshot() *xdsclient.Snapshot { return p.rt.Load().snap }

// Check builds the runtime for s, failing on what the proxy cannot serve;
// the built runtime is kept for the Apply of the same snapshot. It is the
// xdsclient.Config.Check hook.
func (p *Proxy) Check(s *xdsclient.Snapshot, typeURL string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	rt, err := build(s, p.rt.Load(), p.buildOptions())
	if err != nil {
		return err
	}
	p.pending = rt
	return nil
}

// Apply makes s the configuration being served: listeners are bound or
// closed, and new connections and requests use the new runtime while those
// in flight finish on what they started with. It is the
// xdsclient.Config.OnUpdate hook.
func (p *Proxy) Apply(s *xdsclient.Snapshot) {
	p.mu.Lock()
	defer p.mu.Unlock()
	rt := p.pending
	p.pending = nil
	if !warm(s, p.rt.Load().snap) {
		// As Envoy warms listeners and clusters, keep serving the previous
		// configuration until the routes and endpoints they name arrive,
		// or the warming timeout passes.
		p.waiting = s
		if p.warmTimer == nil {
			p.warmTimer = time.AfterFunc(p.cfg.WarmTimeout, p.applyWaiting)
		}
		return
	}
	p.apply(s, rt)
}

func (p *Proxy) applyWaiting() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.warmTimer = nil
	if s := p.waiting; s != nil {
		p.log.Warn("applying configuration before its routes or endpoints arrived")
		p.apply(s, nil)
	}
}

// apply swaps in s, built as rt unless rt was built for another snapshot.
// Requires p.mu.
func (p *Proxy) apply(s *xdsclient.Snapshot, rt *runtime) {
	p.waiting = nil
	if p.warmTimer != nil {
		p.warmTimer.Stop()
		p.warmTimer = nil
	}
	if rt == nil || rt.snap != s {
		var err error
		if rt, err = build(s, p.rt.Load(), p.buildOptions()); err != nil {
			p.log.Error("apply xds snapshot", "err", err)
			return
		}
	}
	rt.commit()
	old := p.rt.Swap(rt)
	p.sinks.applied(rt)
	for name, c := range old.clusters {
		if rt.clusters[name] != c {
			c.Close()
		}
	}
	if orphans := p.conns.orphans(rt); len(orphans) > 0 {
		// Envoy drains the connections of a filter chain an update
		// removed and closes what is left when the drain time is over
		// (Istio's drainDuration); here the proxy's drain timeout.
		time.AfterFunc(p.cfg.DrainTimeout, func() {
			for _, c := range orphans {
				_ = c.Close() // the chain is gone; the copy loops end with it
			}
		})
	}
	p.reconcileListeners(rt)
	if s.Has(xdsclient.ListenerType) && s.Has(xdsclient.ClusterType) {
		p.ready.Store(true)
	}
}

// warm reports whether every route configuration the listeners fetch and
// every EDS cluster's endpoints are present.
func warm(s, served *xdsclient.Snapshot) bool {
	// Envoy warms a listener until the SDS secrets it names arrive. Only
	// names the served configuration did not have are waited for, so a
	// credential that does not exist delays one update, not every one.
	var had map[string]bool
	for _, name := range xdsclient.SecretNames(s.Listeners) {
		if _, ok := s.Secrets[name]; ok {
			continue
		}
		if had == nil {
			had = map[string]bool{}
			for _, n := range xdsclient.SecretNames(served.Listeners) {
				had[n] = true
			}
		}
		if !had[name] {
			return false
		}
	}
	for _, name := range xdsclient.RouteNames(s.Listeners) {
		if _, ok := s.Routes[name]; !ok {
			return false
		}
	}
	for _, name := range xdsclient.EndpointNames(s.Clusters) {
		if _, ok := s.Endpoints[name]; !ok {
			return false
		}
	}
	return true
}

// ListenerAddr returns the address a bound listener listens on.
func (p *Proxy) ListenerAddr(name string) (net.Addr, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, ok := p.bound[name]
	if !ok {
		return nil, false
	}
	return b.ln.Addr(), true
}

type boundListener struct {
	name string
	addr string
	ln   net.Listener
}

// reconcileListeners binds the runtime's bound listeners that are not
// yet bound and closes those that are gone or moved. Requires p.mu.
func (p *Proxy) reconcileListeners(rt *runtime) {
	if p.closed {
		return
	}
	for name, b := range p.bound {
		if l, ok := rt.listeners[name]; !ok || !l.bind || l.addr != b.addr {
			_ = b.ln.Close() // unbinding: its accept loop sees net.ErrClosed
			delete(p.bound, name)
		}
	}
	for name, l := range rt.listeners {
		if !l.bind || p.bound[name] != nil {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			p.log.Error("bind listener", "listener", name, "address", l.addr, "err", err)
			continue
		}
		b := &boundListener{name: name, addr: l.addr, ln: ln}
		p.bound[name] = b
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.accept(b)
		}()
		p.log.Debug("listening", "listener", name, "address", ln.Addr())
	}
}

func (p *Proxy) accept(b *boundListener) {
	var delay time.Duration
	for {
		c, err := b.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off as net/http does.
			delay = min(max(delay*2, 5*time.Millisecond), time.Second)
			p.log.Warn("accept", "listener", b.name, "err", err)
			time.Sleep(delay)
			continue
		}
		delay = 0
		p.dispatch(b.name, c.(*net.TCPConn))
	}
}

// dispatch hands an accepted connection to the filter chain it belongs to,
// as Envoy does: a use_original_dst listener passes the connection to the
// listener of its original destination (<ip>_<port>, else 0.0.0.0_<port>),
// and the filter chain is picked by destination port.
func (p *Proxy) dispatch(name string, c *net.TCPConn) {
	rt := p.rt.Load()
	// A connection with nowhere to go is closed; its Close error says
	// nothing the client does not see anyway.
	l := rt.listeners[name]
	if l == nil {
		_ = c.Close()
		return
	}
	local, _ := netip.ParseAddrPort(c.LocalAddr().String())
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	dst := local
	target := l
	if l.origDst {
		orig, err := p.cfg.OriginalDst(c)
		if err != nil || orig == local {
			// Without an original destination the connection was sent to
			// the capture port itself; passing it on would loop.
			p.log.Debug("no original destination", "listener", name, "remote", c.RemoteAddr(), "err", err)
			_ = c.Close()
			return
		}
		dst = orig
		if l.name != virtualInbound {
			port := strconv.Itoa(int(orig.Port()))
			if t := rt.listeners[orig.Addr().String()+"_"+port]; t != nil {
				target = t
			} else if t := rt.listeners["0.0.0.0_"+port]; t != nil {
				target = t
			}
		}
	}
	if ins, sniff := target.needsInspect(dst); ins {
		// Reading the first bytes may take a while: not on the accept loop.
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			hello, replay, err := inspect(c, sniff)
			if err != nil {
				_ = c.Close()
				return
			}
			p.serve(target, target.chain(dst, hello), replay, dst, local, hello)
		}()
		return
	}
	p.serve(target, target.chain(dst, helloInfo{}), c, dst, local, helloInfo{})
}

// serve hands a connection to its filter chain, terminating TLS first
// when the chain says so.
func (p *Proxy) serve(l *listener, fc *chain, c net.Conn, dst, local netip.AddrPort, hello helloInfo) {
	if fc == nil {
		// No chain matches (STRICT mTLS and a plaintext client, say):
		// closed with nothing written, as Envoy does. Envoy's inspectors
		// only peek, so the client's unread bytes make the kernel answer
		// the close with a reset (curl: (56) Connection reset by peer);
		// this proxy read them, so it asks for the reset itself.
		reset(c)
		return
	}
	ci := &connInfo{listener: l.name, lis: l, chain: fc, orig: dst, local: local, inbound: l.inbound, sni: hello.sni, hello: hello}
	ci.remote, _ = netip.ParseAddrPort(c.RemoteAddr().String())
	if fc.http != nil && fc.http.useRemoteAddress {
		// Once per connection, so that no request allocates it.
		ci.peer = []string{ci.remote.Addr().Unmap().String()}
	}
	if fc.tls == nil {
		p.serveChain(fc, c, ci)
		return
	}
	// The handshake comes first, off the accept loop: the network RBAC
	// filters and every request need the peer's verified identity.
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		inner := c
		if fc.http != nil {
			inner = &httpConn{Conn: c, info: ci}
		}
		tc := tls.Server(inner, fc.tls.config)
		id, err := p.handshake(tc, fc)
		if err != nil {
			p.log.Debug("downstream tls handshake", "listener", l.name, "chain", fc.name, "remote", ci.remote, "err", err)
			_ = c.Close()
			return
		}
		ci.id = id
		p.serveChain(fc, tc, ci)
	}()
}

// serveChain runs a connection (past its TLS handshake) through the
// chain's network filters and to its terminal filter.
func (p *Proxy) serveChain(fc *chain, c net.Conn, ci *connInfo) {
	if len(fc.authz) > 0 && !p.authorizeConn(fc.authz, ci) {
		// Envoy's network RBAC filter: a denied connection is closed,
		// nothing sent.
		if tc, ok := c.(*tls.Conn); ok {
			c = tc.NetConn()
		}
		_ = rbac.CloseDenied(c)
		return
	}
	if fc.http != nil {
		if tc, ok := c.(*tls.Conn); ok && tc.ConnectionState().NegotiatedProtocol == "h2" {
			// HTTP/2 is net/http's: handed the *tls.Conn (handshake
			// done), it speaks h2 on it.
			if !p.httpLn.deliver(c) {
				_ = c.Close() // the HTTP server is stopping
			}
			return
		}
		// HTTP/1, plaintext or over TLS: the proxy's own server, which
		// allocates nothing per request; what the handshake established
		// is on ci.
		go p.h1.serve(&httpConn{Conn: c, info: ci})
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.serveTCP(c, ci)
	}()
}

const (
	virtualInbound  = "virtualInbound"
	virtualOutbound = "virtualOutbound"
)

// Run serves until ctx ends, then drains as Envoy does when Istio's agent
// gets SIGTERM: readiness answers 503, the listeners that take traffic in
// stop accepting (all of a gateway's; a sidecar's inbound ones, while its
// outbound ones serve the app, which may still call out to finish its own
// requests), responses close their connections (HTTP/1 Connection: close,
// HTTP/2 GOAWAY), and requests in flight get up to the drain timeout. It
// returns as soon as no connection is left, like Istio's
// EXIT_ON_ZERO_ACTIVE_CONNECTIONS, and flushes the access log.
func (p *Proxy) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- p.httpSrv.Serve(p.httpLn) }()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.reportTCP(p.ctx) // stop's cancel ends it
	}()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.runLogFlusher(p.ctx, p.logKick)
	}()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case err := <-errc:
			p.stop()
			return fmt.Errorf("serve http: %w", err)
		}
	}
	p.draining.Store(true)
	sidecar := strings.HasPrefix(p.cfg.Node.GetId(), "sidecar~")
	p.mu.Lock()
	p.closed = true
	if p.warmTimer != nil {
		p.warmTimer.Stop()
	}
	rt := p.rt.Load()
	for name, b := range p.bound {
		if l := rt.listeners[name]; sidecar && l != nil && !l.inbound {
			continue
		}
		_ = b.ln.Close()
		delete(p.bound, name)
	}
	p.mu.Unlock()
	p.log.Info("draining", "timeout", p.cfg.DrainTimeout)

	drain, cancel := context.WithTimeout(context.Background(), p.cfg.DrainTimeout)
	defer cancel()
	p.h1.shutdown()
	// Shutdown closes net/http's idle connections and GOAWAYs HTTP/2 ones;
	// it returns when the last is gone or the drain ends.
	httpDone := make(chan struct{})
	go func() {
		defer close(httpDone)
		if err := p.httpSrv.Shutdown(drain); err != nil {
			_ = p.httpSrv.Close() // the drain is over: cut what is left
		}
	}()
	// What is left of the drain is polled, as net/http's Shutdown does:
	// the TCP and HTTP/1 connection sets change all the time.
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for idle := false; !idle; {
		select {
		case <-drain.Done():
			idle = true
		case <-poll.C:
			select {
			case <-httpDone:
				idle = p.h1.active() == 0 && p.conns.len() == 0
			default:
			}
		}
	}
	p.stop()
	<-httpDone
	// Serve ends with Shutdown (ErrServerClosed) or, if stop closed its
	// listener first, net.ErrClosed; anything else is worth a line.
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		p.log.Warn("serve http", "err", err)
	}
	p.closeAuthzConns()
	for _, c := range p.rt.Load().clusters {
		c.Close()
	}
	p.closeLogs()
	return nil
}

// stop closes every listener and connection left and waits for the
// goroutines serving them.
func (p *Proxy) stop() {
	p.draining.Store(true)
	p.mu.Lock()
	p.closed = true
	if p.warmTimer != nil {
		p.warmTimer.Stop()
	}
	for name, b := range p.bound {
		_ = b.ln.Close()
		delete(p.bound, name)
	}
	p.mu.Unlock()
	_ = p.httpLn.Close()
	p.h1.closeAll()
	p.cancel()
	p.conns.closeAll()
	_ = p.httpSrv.Close()
	p.h1.wg.Wait()
	p.wg.Wait()
}

// connSet tracks TCP-proxied connections so that shutdown can close
// them; the downstream ones carry their connInfo (upstream ones nil).
type connSet struct {
	mu sync.Mutex
	m  map[net.Conn]*connInfo
}

func (s *connSet) add(c net.Conn, ci *connInfo) {
	s.mu.Lock()
	if s.m == nil {
		s.m = map[net.Conn]*connInfo{}
	}
	s.m[c] = ci
	s.mu.Unlock()
}

func (s *connSet) remove(c net.Conn) {
	s.mu.Lock()
	delete(s.m, c)
	s.mu.Unlock()
}

// orphans are the downstream connections whose filter chain rt's
// listeners no longer have: a plaintext connection once STRICT removed
// the plaintext chain, say.
func (s *connSet) orphans(rt *runtime) []net.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []net.Conn
	for c, ci := range s.m {
		if ci == nil {
			continue
		}
		l := rt.listeners[ci.listener]
		if l == ci.lis {
			continue
		}
		if l == nil || ci.rematch(l) == nil {
			out = append(out, c)
		}
	}
	return out
}

func (s *connSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	for c := range s.m {
		_ = c.Close() // forced: the drain is over
	}
	s.mu.Unlock()
}

// chanListener is a net.Listener fed by dispatch, so that one http.Server
// serves the connections of every HTTP filter chain.
type chanListener struct {
	ch     chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{} }

// reset closes c with a TCP reset rather than a FIN (SO_LINGER 0).
func reset(c net.Conn) {
	var tc *net.TCPConn
	switch c := c.(type) {
	case *net.TCPConn:
		tc = c
	case *replayConn:
		tc = c.TCPConn
	}
	if tc != nil {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
