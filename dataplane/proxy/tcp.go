package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshlab/meshlab/dataplane/telemetry"
	"github.com/meshlab/meshlab/dataplane/upstream"
)

// serveTCP proxies one connection of a tcp_proxy filter chain to an
// endpoint of its cluster, copying both ways and passing half-closes on.
func (p *Proxy) serveTCP(c net.Conn, ci *connInfo) {
	start := time.Now()
	p.conns.add(c, ci)
	defer p.conns.remove(c)
	// Both ends are closed once the copies are over: what was to be
	// passed on has been, and a Close error has no one to go to.
	defer func() { _ = c.Close() }()
	tp := ci.chain.tcp
	name := tp.pick()
	rt := p.rt.Load()
	cl := rt.clusters[name]
	var ep *upstream.Endpoint
	if cl != nil {
		ep = cl.Pick(ci.orig)
	}
	flags := "-"
	ts := &tcpStats{every: tp.reportEvery()}
	ci.tcp = ts
	defer func() {
		series := ts.series.Load()
		if series == nil {
			// Never connected upstream: opened and closed at once, with
			// the flag that says why.
			series = p.openTCP(ci, name, rt.services[name], flags, nil)
			ts.series.Store(series)
		}
		// What the ticker has not reported yet, then the close.
		ts.report()
		series.Close()
		p.logTCP(start, ci, name, ep, flags, ts.received.Load(), ts.sent.Load())
	}()
	p.stats.tcpConns.Add(1)
	if ep == nil {
		if cl != nil {
			cl.NoHealthy.Add(1)
		}
		flags = "UH"
		return
	}
	if !cl.AcquireConn() {
		// max_connections reached: Envoy's tcp_proxy closes the connection.
		flags = "UO"
		return
	}
	defer cl.ReleaseConn()
	up, err := cl.Dial(p.ctx, ep)
	if err != nil {
		flags = "UF"
		p.log.Debug("tcp proxy connect", "cluster", name, "endpoint", ep.Addr, "err", err)
		return
	}
	cl.RequestsTotal.Add(1)
	ts.series.Store(p.openTCP(ci, name, rt.services[name], flags, up))
	ep.Active.Add(1)
	ep.Total.Add(1)
	defer ep.Active.Add(-1)
	p.conns.add(up, nil)
	defer p.conns.remove(up)
	defer func() { _ = up.Close() }()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// What goes upstream is what the downstream sent: received.
		pipe(up, c, &ts.received)
	}()
	pipe(c, up, &ts.sent)
	wg.Wait()
}

// tcpStats are a proxied connection's byte counts as its copy loops move
// them, and what of them the Istio metrics have been told: Istio's stats
// filter reports a live TCP connection every tcp_reporting_duration
// (5s) and at its close, so a long connection shows in the counters
// while it lives. The proxy's one reporter (reportTCP) walks the live
// connections; nothing runs per connection.
type tcpStats struct {
	received, sent atomic.Int64
	series         atomic.Pointer[telemetry.ConnSeries]
	every          time.Duration

	mu               sync.Mutex
	next             time.Time
	reportedReceived int64
	reportedSent     int64
}

// report adds the bytes moved since the last report to the series.
func (s *tcpStats) report() {
	series := s.series.Load()
	if series == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.received.Load(); r > s.reportedReceived {
		series.AddReceived(r - s.reportedReceived)
		s.reportedReceived = r
	}
	if n := s.sent.Load(); n > s.reportedSent {
		series.AddSent(n - s.reportedSent)
		s.reportedSent = n
	}
}

// due reports whether s is to be reported at now, and schedules the next.
func (s *tcpStats) due(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.next.IsZero() {
		s.next = now.Add(s.every)
		return false
	}
	if now.Before(s.next) {
		return false
	}
	s.next = now.Add(s.every)
	return true
}

// defaultTCPReport is Istio's tcp_reporting_duration default.
const defaultTCPReport = 5 * time.Second

func (t *tcpProxy) reportEvery() time.Duration {
	if t.stats != nil && t.stats.tcpReport > 0 {
		return t.stats.tcpReport
	}
	return defaultTCPReport
}

// reportTCP reports the live TCP connections' bytes as their reporting
// intervals come due, until ctx ends: one goroutine for the proxy, its
// tick the shortest interval of the chains in the configuration served.
func (p *Proxy) reportTCP(ctx context.Context) {
	every := p.tcpTick()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			p.conns.mu.Lock()
			for _, ci := range p.conns.m {
				if ci != nil && ci.tcp != nil && ci.tcp.due(now) {
					ci.tcp.report()
				}
			}
			p.conns.mu.Unlock()
			if d := p.tcpTick(); d != every {
				every = d
				t.Reset(d)
			}
		}
	}
}

// tcpTick is the reporter's period: the shortest tcp_reporting_duration
// of the served configuration's TCP chains, at most the default.
func (p *Proxy) tcpTick() time.Duration {
	d := defaultTCPReport
	for _, l := range p.rt.Load().listeners {
		for _, c := range l.chains {
			if c.tcp != nil {
				d = min(d, c.tcp.reportEvery())
			}
		}
	}
	return d
}

// openTCP counts a connection in the Istio TCP metrics and returns the
// series its bytes and close go to. Without mTLS there is no TCP metadata
// exchange, so the other side's workload is unknown; with mutual TLS its
// principal is known. up is the upstream connection, when there is one.
func (p *Proxy) openTCP(ci *connInfo, cluster string, svc *telemetry.Service, flags string, up net.Conn) *telemetry.ConnSeries {
	k := telemetry.Conn{Service: svc, Flags: flags, Source: p.node.Peer, Destination: telemetry.UnknownPeer}
	if ci.inbound {
		k.Reporter, k.Source, k.Destination = telemetry.Destination, telemetry.UnknownPeer, p.node.Peer
		k.Security = telemetry.SecurityNone
		if id := ci.id; id.mutualTLS() {
			if id.peerURI != "" && id.localURI != "" {
				k.Security = telemetry.SecurityMutualTLS
			}
			k.Source = p.metrics.WithPrincipal(k.Source, id.peerURI)
			k.Destination = p.metrics.WithPrincipal(k.Destination, id.localURI)
		}
	} else if tc, ok := up.(*tls.Conn); ok {
		if cs := tc.ConnectionState(); len(cs.PeerCertificates) > 0 {
			k.Destination = p.metrics.WithCertPrincipal(k.Destination, cs.PeerCertificates[0])
			if cert, err := p.creds.Certificate(sdsDefault); err == nil {
				k.Source = p.metrics.WithPrincipal(k.Source, localURI(cert))
			}
		}
	}
	ci.chain.tcp.stats.tcpDims(&k, ci, cluster)
	return p.metrics.OpenConn(k)
}

// pipe copies src to dst until src ends, counting what it wrote in n
// as it goes, then half-closes dst so the other side sees the end of the
// stream while its replies keep flowing. The loop is its own rather than
// io.Copy's: a kernel splice would move the bytes without telling
// anyone until the connection ends, and Istio reports them while it
// lives (Envoy copies in user space too).
func pipe(dst, src net.Conn, n *atomic.Int64) {
	err := copyCounting(dst, src, n)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok && err == nil {
		// It fails only on a broken dst, which the other direction's
		// read then reports, ending both.
		_ = cw.CloseWrite()
	} else {
		// An error on one direction ends both, as Envoy resets.
		_ = dst.Close()
		_ = src.Close()
	}
}

// copyCounting is io.Copy's loop with a pooled buffer, adding each write
// to n. Its error is nil at src's EOF.
func copyCounting(dst io.Writer, src io.Reader, n *atomic.Int64) error {
	buf := bufferPool{}.Get()
	defer bufferPool{}.Put(buf)
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			n.Add(int64(nw))
			if werr != nil {
				return werr
			}
			if nw != nr {
				return io.ErrShortWrite
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

func (t *tcpProxy) pick() string {
	if t.weighted == nil {
		return t.cluster
	}
	n := rand.Uint32N(t.total)
	for _, w := range t.weighted {
		if n < w.Weight {
			return w.Name
		}
		n -= w.Weight
	}
	return t.weighted[len(t.weighted)-1].Name
}
