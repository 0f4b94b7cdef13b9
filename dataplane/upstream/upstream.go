// Package upstream owns the proxy's clusters: their endpoints, load
// balancing (round robin, least request, random, ring hash, maglev,
// original destination), circuit breaking, outlier detection, connect
// timeouts and the pooled HTTP transports that carry requests to them, all
// with Envoy's semantics.
package upstream

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
)

// Istio's inbound passthrough cluster: the proxy connects to
// 127.0.0.1:<original port> rather than the original address.
const InboundPassthrough = "InboundPassthroughClusterIpv4"

const defaultConnectTimeout = 5 * time.Second

// Envoy's defaults for a cluster without a common_lb_config.
const (
	defaultPanicThreshold = 50.0
	defaultMinRingSize    = 1024
	defaultMaxRingSize    = 8 << 20
	defaultMaglevSize     = 65537
)

// Endpoint is one upstream host.
type Endpoint struct {
	// Addr is host:port, ready to dial.
	Addr string
	// Active counts requests and connections in flight.
	Active atomic.Int64
	// Total counts requests and connections made to it.
	Total atomic.Uint64
	// Fails counts connect failures.
	Fails atomic.Uint64

	// Outlier detection: the counters are touched per response; the rest
	// only under the cluster's mutex.
	consecutive5xx     atomic.Uint32
	consecutiveGateway atomic.Uint32
	ejected            atomic.Bool
	ejectedAt          time.Time
	backoff            uint32 // ejection time multiplier
	Ejections          atomic.Uint64
}

// Ejected reports whether outlier detection has ejected the endpoint.
func (e *Endpoint) Ejected() bool { return e.ejected.Load() }

// Options tune a cluster beyond its configuration; tests inject a clock.
type Options struct {
	// Now is the clock outlier detection reads; time.Now by default.
	Now func() time.Time
	// Resolver resolves the endpoint names of DNS clusters;
	// net.DefaultResolver by default.
	Resolver Resolver
	// Secrets resolves the SDS secrets the cluster's TLS contexts name,
	// at each handshake; nil fails the handshakes that need one.
	Secrets Secrets
	// TLSStats are the counters of the cluster's TLS handshakes (Envoy
	// keeps them by cluster name, across updates); nil: a fresh set.
	TLSStats *TLSStats
}

// Cluster is a runtime cluster. Its configuration is fixed; its endpoints
// change with EDS and its healthy set with outlier detection.
type Cluster struct {
	Name           string
	Config         *clusterv3.Cluster
	ConnectTimeout time.Duration
	// OriginalDst clusters dial the connection's original destination.
	OriginalDst bool
	HTTP2       bool
	policy      clusterv3.Cluster_LbPolicy
	// panicThreshold is the healthy percentage below which the cluster
	// balances over every host, ejected or not (0 disables it).
	panicThreshold float64
	minRing        uint64
	maxRing        uint64
	maglevSize     uint64
	choices        int // least request choice count

	mu        sync.Mutex // serializes endpoint and health changes
	endpoints atomic.Pointer[[]*Endpoint]
	lb        atomic.Pointer[lbSet]
	rr        atomic.Uint64

	// Limits are the circuit breaker thresholds of the default priority.
	Limits Thresholds
	cb     breaker
	od     *detector // nil without outlier detection
	now    func() time.Time

	// Transport pools HTTP connections to the cluster's endpoints, under
	// the cluster's circuit breakers, reporting to outlier detection.
	Transport *Transport
	dialer    net.Dialer
	dns       *dnsCache // STRICT_DNS and LOGICAL_DNS clusters only

	// tlsDefault is the transport socket of an endpoint no
	// transport_socket_matches entry selects (nil: plaintext); sockets
	// holds, by address, the endpoints whose socket is another (a nil
	// value: plaintext). nil when the cluster has no matches.
	tlsDefault *ClientTLS
	tlsMatches []socketMatch
	sockets    atomic.Pointer[map[string]*ClientTLS]
	// TLS counts the cluster's handshakes (ssl.*).
	TLS *TLSStats

	// Stats.
	RequestsTotal atomic.Uint64
	ConnectFails  atomic.Uint64
	NoHealthy     atomic.Uint64
}

// New builds a cluster from c (endpoints come from SetEndpoints).
func New(c *clusterv3.Cluster) (*Cluster, error) { return NewWithOptions(c, Options{}) }

// NewWithOptions is New with options.
func NewWithOptions(c *clusterv3.Cluster, o Options) (*Cluster, error) {
	cl := &Cluster{
		Name:           c.GetName(),
		Config:         c,
		ConnectTimeout: defaultConnectTimeout,
		policy:         c.GetLbPolicy(),
		panicThreshold: defaultPanicThreshold,
		minRing:        defaultMinRingSize,
		maxRing:        defaultMaxRingSize,
		maglevSize:     defaultMaglevSize,
		choices:        2,
		now:            o.Now,
	}
	if cl.now == nil {
		cl.now = time.Now
	}
	if ct := c.GetConnectTimeout(); ct != nil {
		cl.ConnectTimeout = ct.AsDuration()
	}
	switch c.GetType() {
	case clusterv3.Cluster_STATIC, clusterv3.Cluster_EDS:
	case clusterv3.Cluster_STRICT_DNS, clusterv3.Cluster_LOGICAL_DNS:
		cl.dns = newDNSCache(c, o.Resolver)
	case clusterv3.Cluster_ORIGINAL_DST:
		cl.OriginalDst = true
	default:
		return nil, fmt.Errorf("cluster %q: unsupported discovery type %s", c.GetName(), c.GetType())
	}
	if c.GetClusterType() != nil {
		return nil, fmt.Errorf("cluster %q: custom cluster types are not supported", c.GetName())
	}
	if err := cl.lbConfig(c); err != nil {
		return nil, fmt.Errorf("cluster %q: %w", c.GetName(), err)
	}
	cl.TLS = o.TLSStats
	if cl.TLS == nil {
		cl.TLS = &TLSStats{}
	}
	def, matches, err := compileSockets(cl, o.Secrets, cl.TLS)
	if err != nil {
		return nil, fmt.Errorf("cluster %q: %w", c.GetName(), err)
	}
	cl.tlsDefault, cl.tlsMatches = def, matches
	hpo, err := httpOptions(c)
	if err != nil {
		return nil, fmt.Errorf("cluster %q: %w", c.GetName(), err)
	}
	cl.HTTP2 = c.GetHttp2ProtocolOptions() != nil || hpo.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil //nolint:staticcheck // SA1019: Envoy still honours http2_protocol_options and many configs still set it
	cl.Limits = thresholds(c.GetCircuitBreakers())
	cl.cb.init(cl.Limits, !cl.HTTP2)
	if od := c.GetOutlierDetection(); od != nil {
		cl.od = newDetector(od, cl.now())
	}
	cl.dialer = net.Dialer{Timeout: cl.ConnectTimeout, KeepAlive: 30 * time.Second}
	if ka := c.GetUpstreamConnectionOptions().GetTcpKeepalive(); ka != nil {
		// An empty tcp_keepalive means SO_KEEPALIVE with the OS defaults.
		kc := net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}
		if v := ka.GetKeepaliveTime(); v != nil {
			kc.Idle = time.Duration(v.GetValue()) * time.Second
		}
		if v := ka.GetKeepaliveInterval(); v != nil {
			kc.Interval = time.Duration(v.GetValue()) * time.Second
		}
		if v := ka.GetKeepaliveProbes(); v != nil {
			kc.Count = int(v.GetValue())
		}
		cl.dialer.KeepAlive = 0
		cl.dialer.KeepAliveConfig = kc
	}
	cl.Transport = newTransport(cl, hpo.GetCommonHttpProtocolOptions(), hpo.GetUseDownstreamProtocolConfig() != nil)
	if la := c.GetLoadAssignment(); la != nil {
		cl.SetEndpoints(la)
	} else {
		cl.endpoints.Store(new([]*Endpoint))
		cl.lb.Store(&lbSet{})
	}
	return cl, nil
}

// lbConfig reads the load balancing policy and its settings.
func (cl *Cluster) lbConfig(c *clusterv3.Cluster) error {
	switch cl.policy {
	case clusterv3.Cluster_ROUND_ROBIN, clusterv3.Cluster_RANDOM, clusterv3.Cluster_CLUSTER_PROVIDED:
	case clusterv3.Cluster_LEAST_REQUEST:
		if n := c.GetLeastRequestLbConfig().GetChoiceCount(); n != nil && n.GetValue() >= 2 {
			cl.choices = int(n.GetValue())
		}
	case clusterv3.Cluster_RING_HASH:
		rh := c.GetRingHashLbConfig()
		if v := rh.GetMinimumRingSize(); v != nil {
			cl.minRing = v.GetValue()
		}
		if v := rh.GetMaximumRingSize(); v != nil {
			cl.maxRing = v.GetValue()
		}
		if cl.minRing == 0 || cl.minRing > cl.maxRing {
			return fmt.Errorf("ring hash: minimum ring size %d not within 1..%d", cl.minRing, cl.maxRing)
		}
	case clusterv3.Cluster_MAGLEV:
		if v := c.GetMaglevLbConfig().GetTableSize(); v != nil {
			cl.maglevSize = v.GetValue()
		}
		if !isPrime(cl.maglevSize) || cl.maglevSize > 5000011 {
			return fmt.Errorf("maglev: table size %d must be a prime up to 5000011", cl.maglevSize)
		}
	default:
		return fmt.Errorf("unsupported lb_policy %s", cl.policy)
	}
	if cl.OriginalDst && cl.policy != clusterv3.Cluster_CLUSTER_PROVIDED {
		return fmt.Errorf("ORIGINAL_DST needs lb_policy CLUSTER_PROVIDED, not %s", cl.policy)
	}
	if p := c.GetCommonLbConfig().GetHealthyPanicThreshold(); p != nil {
		cl.panicThreshold = p.GetValue()
	}
	return nil
}

// httpOptions decodes the envoy.extensions.upstreams.http.v3 options, if any.
func httpOptions(c *clusterv3.Cluster) (*httpv3.HttpProtocolOptions, error) {
	a, ok := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
	if !ok {
		return nil, nil
	}
	var o httpv3.HttpProtocolOptions
	if err := a.UnmarshalTo(&o); err != nil {
		return nil, fmt.Errorf("decode http protocol options: %w", err)
	}
	// auto falls back to HTTP/1.1 here.
	return &o, nil
}

// Same reports whether c would build the same cluster as cl.
func (cl *Cluster) Same(c *clusterv3.Cluster) bool {
	return proto.Equal(cl.Config, c)
}

// SetEndpoints replaces the endpoints from a load assignment, skipping
// hosts marked unhealthy, draining or timed out. Hosts that stay keep
// their statistics and outlier state, as Envoy's do.
func (cl *Cluster) SetEndpoints(la *endpointv3.ClusterLoadAssignment) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	old := cl.endpoints.Load()
	byAddr := map[string]*Endpoint{}
	if old != nil {
		for _, e := range *old {
			byAddr[e.Addr] = e
		}
	}
	var eps []*Endpoint
	var sockets map[string]*ClientTLS
	oldSockets := cl.sockets.Load()
	changed := false
	for _, le := range la.GetEndpoints() {
		for _, lb := range le.GetLbEndpoints() {
			switch lb.GetHealthStatus() {
			case corev3.HealthStatus_UNHEALTHY, corev3.HealthStatus_DRAINING, corev3.HealthStatus_TIMEOUT:
				continue
			}
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			if sa == nil {
				continue
			}
			addr := net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))
			e := byAddr[addr]
			if e == nil {
				e = &Endpoint{Addr: addr}
				byAddr[addr] = e
			}
			eps = append(eps, e)
			if cl.tlsMatches != nil {
				s := cl.matchSocket(lb.GetMetadata())
				if s != cl.tlsDefault {
					if sockets == nil {
						sockets = map[string]*ClientTLS{}
					}
					sockets[addr] = s
				}
				if cl.socketIn(oldSockets, addr) != s {
					changed = true
				}
			}
		}
	}
	cl.endpoints.Store(&eps)
	if sockets != nil {
		cl.sockets.Store(&sockets)
	} else {
		cl.sockets.Store(nil)
	}
	if changed && old != nil && cl.Transport != nil {
		// An endpoint now takes another transport socket: the pooled
		// connections to it were made with the old one. net/http's pools
		// are keyed by address only, so theirs go; the HTTP/1.1 pool checks
		// each connection's socket as it hands it out.
		cl.Transport.base.CloseIdleConnections()
		if cl.Transport.h2 != nil {
			cl.Transport.h2.CloseIdleConnections()
		}
	}
	cl.rebuild()
	if old != nil && cl.Transport != nil && cl.Transport.h1 != nil {
		kept := make(map[string]bool, len(eps))
		for _, e := range eps {
			kept[e.Addr] = true
		}
		for _, e := range *old {
			if !kept[e.Addr] {
				cl.Transport.h1.forget(e.Addr)
			}
		}
	}
}

// Endpoints returns the current endpoints.
func (cl *Cluster) Endpoints() []*Endpoint {
	return *cl.endpoints.Load()
}

// Healthy returns how many endpoints are not ejected.
func (cl *Cluster) Healthy() int {
	n := 0
	for _, e := range cl.Endpoints() {
		if !e.Ejected() {
			n++
		}
	}
	return n
}

// Pick chooses an endpoint by the cluster's policy, without a request
// hash (hashing policies then pick at random, as Envoy does). For original
// destination clusters it returns the original destination (orig), which
// must then be valid. It returns nil when there is no healthy upstream.
func (cl *Cluster) Pick(orig netip.AddrPort) *Endpoint {
	return cl.PickHash(orig, 0, false)
}

// PickHash is Pick with the request's hash (when hashed) for the ring hash
// and maglev policies; other policies ignore it.
func (cl *Cluster) PickHash(orig netip.AddrPort, hash uint64, hashed bool) *Endpoint {
	if cl.OriginalDst {
		if !orig.IsValid() {
			return nil
		}
		if cl.Name == InboundPassthrough {
			orig = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), orig.Port())
		}
		return &Endpoint{Addr: orig.String()}
	}
	if cl.od != nil {
		cl.sweep()
	}
	return cl.lb.Load().pick(cl, hash, hashed)
}

// Dial connects to e within the cluster's connect timeout. A failure
// counts against e's outlier detection as a gateway error, as Envoy
// counts locally originated failures when it does not split them.
func (cl *Cluster) Dial(ctx context.Context, e *Endpoint) (net.Conn, error) {
	c, err := cl.dial(ctx, "tcp", e.Addr)
	if err == nil {
		if sock := cl.Socket(e.Addr); sock != nil {
			c, err = cl.handshake(ctx, c, sock, false, false)
		}
	}
	if err != nil {
		cl.ConnectFails.Add(1)
		e.Fails.Add(1)
		cl.Observe(e, http.StatusServiceUnavailable)
		return nil, err
	}
	return c, nil
}

// matchSocket is the transport socket of an endpoint with metadata md:
// the first transport_socket_matches entry whose match is a subset of the
// endpoint's "envoy.transport_socket_match" metadata (an empty match
// takes any), else the cluster's transport_socket.
func (cl *Cluster) matchSocket(md *corev3.Metadata) *ClientTLS {
	have := md.GetFilterMetadata()[transportSocketMatchKey].GetFields()
next:
	for _, m := range cl.tlsMatches {
		for k, v := range m.match {
			if hv, ok := have[k]; !ok || !proto.Equal(hv, v) {
				continue next
			}
		}
		return m.tls
	}
	return cl.tlsDefault
}

func (cl *Cluster) socketIn(m *map[string]*ClientTLS, addr string) *ClientTLS {
	if m != nil {
		if s, ok := (*m)[addr]; ok {
			return s
		}
	}
	return cl.tlsDefault
}

// Socket is the transport socket connections to addr take (nil:
// plaintext). It allocates nothing: it is on every request's path.
func (cl *Cluster) Socket(addr string) *ClientTLS {
	return cl.socketIn(cl.sockets.Load(), addr)
}

// handshake runs the client TLS handshake of sock on c within the
// cluster's connect timeout (Envoy's connect_timeout covers the transport
// socket's connect too).
func (cl *Cluster) handshake(ctx context.Context, c net.Conn, sock *ClientTLS, http1, http2 bool) (net.Conn, error) {
	deadline := time.Now().Add(cl.ConnectTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.SetDeadline(deadline); err != nil {
		_ = c.Close()
		return nil, err
	}
	tc, err := sock.Client(c, http1, http2)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		_ = c.Close()
		return nil, err
	}
	return tc, nil
}

// dial connects to addr, resolving its host first in a DNS cluster.
func (cl *Cluster) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if cl.dns != nil {
		ctx, cancel := context.WithTimeout(ctx, cl.ConnectTimeout)
		defer cancel()
		a, err := cl.dns.addr(ctx, addr)
		if err != nil {
			return nil, err
		}
		addr = a
	}
	return cl.dialer.DialContext(ctx, network, addr)
}

// Close drops the cluster's idle pooled connections; requests in flight
// finish on theirs.
func (cl *Cluster) Close() {
	cl.Transport.CloseIdleConnections()
}

func isPrime(n uint64) bool {
	if n < 2 {
		return false
	}
	for d := uint64(2); d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// unlimited is how Istio spells "no limit" in circuit breakers.
const unlimited = math.MaxUint32
