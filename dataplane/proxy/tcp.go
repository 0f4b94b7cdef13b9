package proxy

import (
	"crypto/tls"
	"io"
	"math/rand/v2"
	"net"
	"sync"
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
	var sent, received int64
	flags := "-"
	var series *telemetry.ConnSeries
	defer func() {
		if series == nil {
			// Never connected upstream: opened and closed at once, with
			// the flag that says why.
			series = p.openTCP(ci, rt.services[name], flags, nil)
		}
		// sent went upstream: it is what the downstream sent us.
		series.Received.Add(float64(sent))
		series.Sent.Add(float64(received))
		series.Closed.Inc()
		if p.accessLog != nil {
			p.accessLog.tcp(start, ci, name, ep, flags, received, sent)
		}
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
	series = p.openTCP(ci, rt.services[name], flags, up)
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
		sent = pipe(up, c)
	}()
	received = pipe(c, up)
	wg.Wait()
}

// openTCP counts a connection in the Istio TCP metrics and returns the
// series its bytes and close go to. Without mTLS there is no TCP metadata
// exchange, so the other side's workload is unknown; with mutual TLS its
// principal is known. The bytes are added when the connection ends (Istio
// also reports long connections periodically). up is the upstream
// connection, when there is one.
func (p *Proxy) openTCP(ci *connInfo, svc *telemetry.Service, flags string, up net.Conn) *telemetry.ConnSeries {
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
	return p.metrics.OpenConn(k)
}

// pipe copies src to dst until src ends, then half-closes dst so the
// other side sees the end of the stream while its replies keep flowing.
func pipe(dst, src net.Conn) int64 {
	n, err := io.Copy(dst, src)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok && err == nil {
		// It fails only on a broken dst, which the other direction's
		// read then reports, ending both.
		_ = cw.CloseWrite()
	} else {
		// An error on one direction ends both, as Envoy resets.
		_ = dst.Close()
		_ = src.Close()
	}
	return n
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
