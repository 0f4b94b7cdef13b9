package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"

	"github.com/meshlab/meshlab/dataplane/router"
	"github.com/meshlab/meshlab/dataplane/upstream"
	"github.com/meshlab/meshlab/dataplane/xdsclient"
)

// runtime is everything one snapshot configures. It is immutable once
// stored, except for cluster endpoints, which commit sets.
type runtime struct {
	snap      *xdsclient.Snapshot
	listeners map[string]*listener
	routes    map[string]*router.Table
	clusters  map[string]*upstream.Cluster

	// Sources, so that the next build reuses what did not change.
	listenerSrc map[string]*listenerv3.Listener
	routeSrc    map[string]*routev3.RouteConfiguration
	// assignments to set on commit, by cluster.
	assign map[*upstream.Cluster]*endpointv3.ClusterLoadAssignment
}

type listener struct {
	name    string
	addr    string
	bind    bool
	origDst bool
	chains  []*chain
}

type chain struct {
	name string
	// port is the destination_port to match; 0 matches any.
	port     uint32
	prefixes []netip.Prefix
	http     *hcm
	tcp      *tcpProxy
}

type hcm struct {
	statPrefix string
	rds        string
	inline     *router.Table
	// fault: the connection manager has envoy.filters.http.fault, so
	// routes' fault configurations apply (as in Envoy, a per-route
	// configuration does nothing without the filter).
	fault bool
}

type tcpProxy struct {
	statPrefix string
	cluster    string
	weighted   []router.WeightedCluster
	total      uint32
}

// chain picks the filter chain for a destination: the first chain whose
// match names the port (and address range, if any), else the first chain
// without a port match.
func (l *listener) chain(dst netip.AddrPort) *chain {
	var fallback *chain
	for _, c := range l.chains {
		if !c.matchesAddr(dst.Addr()) {
			continue
		}
		if c.port == 0 {
			if fallback == nil {
				fallback = c
			}
			continue
		}
		if c.port == uint32(dst.Port()) {
			return c
		}
	}
	return fallback
}

func (c *chain) matchesAddr(a netip.Addr) bool {
	if len(c.prefixes) == 0 {
		return true
	}
	for _, p := range c.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// build compiles s, reusing from prev the listeners, route tables and
// clusters whose configuration is unchanged. It has no effect on prev.
func build(s *xdsclient.Snapshot, prev *runtime) (*runtime, error) {
	rt := &runtime{
		snap:        s,
		listeners:   make(map[string]*listener, len(s.Listeners)),
		routes:      make(map[string]*router.Table, len(s.Routes)),
		clusters:    make(map[string]*upstream.Cluster, len(s.Clusters)),
		listenerSrc: s.Listeners,
		routeSrc:    s.Routes,
		assign:      map[*upstream.Cluster]*endpointv3.ClusterLoadAssignment{},
	}
	var errs []error
	for name, rc := range s.Routes {
		if prev != nil && prev.routeSrc[name] == rc && prev.routes[name] != nil {
			rt.routes[name] = prev.routes[name]
			continue
		}
		t, err := router.Compile(rc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rt.routes[name] = t
	}
	for name, l := range s.Listeners {
		if prev != nil && prev.listenerSrc[name] == l && prev.listeners[name] != nil {
			rt.listeners[name] = prev.listeners[name]
			continue
		}
		cl, err := compileListener(l)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rt.listeners[name] = cl
	}
	for name, c := range s.Clusters {
		var cl *upstream.Cluster
		if prev != nil {
			if old := prev.clusters[name]; old != nil && old.Same(c) {
				cl = old
			}
		}
		if cl == nil {
			var err error
			if cl, err = upstream.New(c); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		rt.clusters[name] = cl
		if c.GetType() == clusterv3.Cluster_EDS {
			svc := c.GetEdsClusterConfig().GetServiceName()
			if svc == "" {
				svc = name
			}
			if la, ok := s.Endpoints[svc]; ok {
				rt.assign[cl] = la
			} else {
				rt.assign[cl] = &endpointv3.ClusterLoadAssignment{ClusterName: svc}
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return rt, nil
}

// commit sets the EDS endpoints of the runtime's clusters.
func (rt *runtime) commit() {
	for cl, la := range rt.assign {
		cl.SetEndpoints(la)
	}
	rt.assign = nil
}

func compileListener(l *listenerv3.Listener) (*listener, error) {
	out := &listener{
		name:    l.GetName(),
		bind:    l.GetBindToPort() == nil || l.GetBindToPort().GetValue(),
		origDst: l.GetUseOriginalDst().GetValue(),
	}
	sa := l.GetAddress().GetSocketAddress()
	if sa == nil {
		return nil, fmt.Errorf("listener %q: only socket addresses are supported", l.GetName())
	}
	out.addr = net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))
	chains := l.GetFilterChains()
	if d := l.GetDefaultFilterChain(); d != nil {
		chains = append(chains[:len(chains):len(chains)], d)
	}
	for i, fc := range chains {
		c, ok, err := compileChain(fc)
		if err != nil {
			return nil, fmt.Errorf("listener %q: filter chain %d (%q): %w", l.GetName(), i, fc.GetName(), err)
		}
		if ok {
			out.chains = append(out.chains, c)
		}
	}
	return out, nil
}

// compileChain builds a filter chain; ok is false for chains that can never
// match plaintext traffic (TLS, SNI), which are skipped.
func compileChain(fc *listenerv3.FilterChain) (*chain, bool, error) {
	m := fc.GetFilterChainMatch()
	if m.GetTransportProtocol() == "tls" || len(m.GetServerNames()) > 0 || fc.GetTransportSocket() != nil {
		return nil, false, nil
	}
	c := &chain{name: fc.GetName(), port: m.GetDestinationPort().GetValue()}
	for _, r := range m.GetPrefixRanges() {
		a, err := netip.ParseAddr(r.GetAddressPrefix())
		if err != nil {
			return nil, false, fmt.Errorf("prefix range %q: %w", r.GetAddressPrefix(), err)
		}
		bits := a.BitLen()
		if r.GetPrefixLen() != nil {
			bits = int(r.GetPrefixLen().GetValue())
		}
		p, err := a.Prefix(bits)
		if err != nil {
			return nil, false, fmt.Errorf("prefix range %q/%d: %w", r.GetAddressPrefix(), bits, err)
		}
		c.prefixes = append(c.prefixes, p)
	}
	fs := fc.GetFilters()
	if len(fs) == 0 {
		return nil, false, fmt.Errorf("no filters")
	}
	// Only the terminal filter matters here; filters before it (stats,
	// metadata exchange) have no effect on routing.
	last := fs[len(fs)-1]
	if h, ok := xdsclient.HCM(last); ok {
		c.http = &hcm{statPrefix: h.GetStatPrefix()}
		for _, f := range h.GetHttpFilters() {
			if f.GetName() == wellknown.Fault {
				c.http.fault = true
			}
		}
		switch {
		case h.GetRds() != nil:
			c.http.rds = h.GetRds().GetRouteConfigName()
		case h.GetRouteConfig() != nil:
			t, err := router.Compile(h.GetRouteConfig())
			if err != nil {
				return nil, false, err
			}
			c.http.inline = t
		default:
			return nil, false, fmt.Errorf("http_connection_manager without rds or route_config")
		}
		return c, true, nil
	}
	tc := last.GetTypedConfig()
	if tc != nil && tc.MessageIs((*tcpv3.TcpProxy)(nil)) {
		var tp tcpv3.TcpProxy
		if err := tc.UnmarshalTo(&tp); err != nil {
			return nil, false, fmt.Errorf("decode tcp_proxy: %w", err)
		}
		c.tcp = &tcpProxy{statPrefix: tp.GetStatPrefix()}
		switch cs := tp.GetClusterSpecifier().(type) {
		case *tcpv3.TcpProxy_Cluster:
			c.tcp.cluster = cs.Cluster
		case *tcpv3.TcpProxy_WeightedClusters:
			for _, w := range cs.WeightedClusters.GetClusters() {
				c.tcp.weighted = append(c.tcp.weighted, router.WeightedCluster{Name: w.GetName(), Weight: w.GetWeight()})
				c.tcp.total += w.GetWeight()
			}
			if c.tcp.total == 0 {
				return nil, false, fmt.Errorf("tcp_proxy weighted clusters with total weight 0")
			}
		default:
			return nil, false, fmt.Errorf("tcp_proxy: unsupported cluster specifier %T", cs)
		}
		return c, true, nil
	}
	return nil, false, fmt.Errorf("unsupported terminal filter %q (%s)", last.GetName(), tc.GetTypeUrl())
}
