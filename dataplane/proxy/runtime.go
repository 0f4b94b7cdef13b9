package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	extauthznetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"

	"github.com/meshlab/meshlab/dataplane/fieldcheck"
	"github.com/meshlab/meshlab/dataplane/jwtauthn"
	"github.com/meshlab/meshlab/dataplane/rbac"
	"github.com/meshlab/meshlab/dataplane/router"
	"github.com/meshlab/meshlab/dataplane/telemetry"
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
	// secrets are the SDS secrets, decoded (tls.go).
	secrets map[string]*secret
	// services are the destination services of the clusters, by cluster
	// name, for the metrics' labels.
	services map[string]*telemetry.Service

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
	// inbound: the listener takes traffic to its own workload, so its
	// requests are reported by the destination.
	inbound bool
	chains  []*chain
	// inspect: some chain matches on SNI or transport protocol, or
	// terminates TLS, so the first bytes are read before picking one.
	inspect bool
}

type chain struct {
	name string
	// port is the destination_port to match; 0 matches any.
	port     uint32
	prefixes []netip.Prefix
	http     *hcm
	tcp      *tcpProxy
	// authz are the chain's network RBAC and ext_authz filters, checked
	// in order on a new connection before its terminal filter sees it.
	authz []netAuthz
	// serverNames (exact or `*.suffix`) and transport ("tls",
	// "raw_buffer" or any) are the SNI match, alpn the ClientHello's
	// application protocols (any may match); tls terminates TLS.
	serverNames []string
	transport   string
	alpn        []string
	tls         *serverTLS
	// tlsStats are the ssl.* counters of the chain's listener.
	tlsStats *upstream.TLSStats
}

type hcm struct {
	statPrefix string
	rds        string
	inline     *router.Table
	// fault: the connection manager has envoy.filters.http.fault, so
	// routes' fault configurations apply (as in Envoy, a per-route
	// configuration does nothing without the filter).
	fault bool
	// cors: the connection manager has envoy.filters.http.cors.
	cors bool
	// authz are its HTTP jwt_authn, RBAC and ext_authz filters
	// (RequestAuthentication, AuthorizationPolicy), in the order Envoy
	// runs them: the first denial ends the request.
	authz []httpAuthz
	// useRemoteAddress: the peer is the client (an edge): it is appended
	// to X-Forwarded-For and sets X-Forwarded-Proto.
	useRemoteAddress bool
	// xffTrustedHops is xff_num_trusted_hops (Istio: the gateway's
	// numTrustedProxies): with useRemoteAddress, the client is the
	// address that many hops back in X-Forwarded-For, for remote.ip.
	xffTrustedHops int
	lim            h1Limits
	// fcc is forward_client_cert_details (SANITIZE by default, as
	// Envoy's), details set_current_client_cert_details.
	fcc     hcmv3.HttpConnectionManager_ForwardClientCertDetails
	details xfccDetails
	// tracing is the connection manager's tracing (nil: none); egress
	// says its spans are CLIENT spans: its listener's traffic_direction
	// is OUTBOUND (sidecar outbound, every gateway listener).
	tracing *hcmTracing
	egress  bool
	// logs are its access_log entries; stats its istio.stats filter
	// (nil: none, every metric as before it existed).
	logs  []*accessLogger
	stats *statsConfig
}

// h1Limits are a connection manager's bounds on what a client may send
// and how slowly, Envoy's defaults where the HCM leaves them unset.
type h1Limits struct {
	maxHead    int // max_request_headers_kb
	maxHeaders int // common_http_protocol_options.max_headers_count
	// requestHeaders (request_headers_timeout) and streamIdle
	// (stream_idle_timeout) bound a request from its first byte, the
	// second also each wait for body bytes; idle
	// (common_http_protocol_options.idle_timeout) bounds a connection
	// between requests. 0: no bound.
	requestHeaders, streamIdle, idle time.Duration
}

var defaultLimits = h1Limits{
	maxHead: defaultMaxHeadBytes, maxHeaders: defaultMaxHeaders,
	streamIdle: 5 * time.Minute, idle: time.Hour,
}

// limits are h's, Envoy's defaults for a connection without one.
func (h *hcm) limits() h1Limits {
	if h == nil {
		return defaultLimits
	}
	return h.lim
}

// headTimeout is what a request head may take from its first byte.
func (l h1Limits) headTimeout() time.Duration {
	if l.requestHeaders > 0 && (l.streamIdle == 0 || l.requestHeaders < l.streamIdle) {
		return l.requestHeaders
	}
	return l.streamIdle
}

// hcmLimits reads h's limits and timeouts, with Envoy's defaults for
// the fields it leaves unset (an explicit 0 disables a timeout).
func hcmLimits(h *hcmv3.HttpConnectionManager) h1Limits {
	l := defaultLimits
	if v := h.GetMaxRequestHeadersKb(); v != nil && v.GetValue() > 0 {
		l.maxHead = int(v.GetValue()) << 10
	}
	o := h.GetCommonHttpProtocolOptions()
	if v := o.GetMaxHeadersCount(); v != nil && v.GetValue() > 0 {
		l.maxHeaders = int(v.GetValue())
	}
	if d := o.GetIdleTimeout(); d != nil {
		l.idle = d.AsDuration()
	}
	if d := h.GetStreamIdleTimeout(); d != nil {
		l.streamIdle = d.AsDuration()
	}
	if d := h.GetRequestHeadersTimeout(); d != nil {
		l.requestHeaders = d.AsDuration()
	}
	return l
}

// accessLogs compiles access_log entries with o's destinations.
func (o buildOptions) accessLogs(entries []*accesslogv3.AccessLog) ([]*accessLogger, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	if o.logs == nil {
		return compileAccessLogs(entries, noSinks{}, o.node)
	}
	return compileAccessLogs(entries, o.logs, o.node)
}

// noSinks checks entries without opening anything.
type noSinks struct{}

func (noSinks) sink(string) (*logWriter, error) { return nil, nil }

type tcpProxy struct {
	statPrefix string
	cluster    string
	weighted   []router.WeightedCluster
	total      uint32
	// logs are its access_log entries; stats the chain's istio.stats
	// network filter (nil: none, every metric as before it existed).
	logs  []*accessLogger
	stats *statsConfig
}

// chain picks the filter chain for a destination as Envoy narrows its
// candidates, each step keeping the most specific match and falling back
// to chains that do not match on that criterion (never backtracking):
// destination port, (the address range must contain the destination),
// server name (exact, then the longest wildcard), transport protocol,
// application protocols. The first remaining chain wins; none: the
// connection is closed.
func (l *listener) chain(dst netip.AddrPort, hello helloInfo) *chain {
	var byPort, anyPort []*chain
	for _, c := range l.chains {
		if !c.matchesAddr(dst.Addr()) {
			continue
		}
		switch c.port {
		case uint32(dst.Port()):
			byPort = append(byPort, c)
		case 0:
			anyPort = append(anyPort, c)
		}
	}
	cands := byPort
	if len(cands) == 0 {
		cands = anyPort
	}
	if !l.inspect {
		if len(cands) == 0 {
			return nil
		}
		return cands[0]
	}
	// Server names.
	var best []*chain
	bestLen := -1
	var noNames []*chain
	for _, c := range cands {
		if len(c.serverNames) == 0 {
			noNames = append(noNames, c)
			continue
		}
		if n := matchServerName(c.serverNames, hello.sni); n > bestLen {
			best, bestLen = []*chain{c}, n
		} else if n >= 0 && n == bestLen {
			best = append(best, c)
		}
	}
	if bestLen < 0 {
		best = noNames
	}
	// Transport protocol.
	want := "raw_buffer"
	if hello.isTLS {
		want = "tls"
	}
	var exact, anyTransport []*chain
	for _, c := range best {
		switch c.transport {
		case want:
			exact = append(exact, c)
		case "":
			anyTransport = append(anyTransport, c)
		}
	}
	if len(exact) == 0 {
		exact = anyTransport
	}
	// Application protocols.
	var fallback *chain
	for _, c := range exact {
		if len(c.alpn) == 0 {
			if fallback == nil {
				fallback = c
			}
			continue
		}
		for _, p := range hello.alpn {
			if slices.Contains(c.alpn, p) {
				return c
			}
		}
	}
	return fallback
}

// needsInspect reports whether the chains a connection to dst may take
// match on what the TLS inspector reads, and (sniffHTTP) on the
// application protocol of plaintext, which Envoy's http_inspector
// reads. Istio disables its inspectors on the ports where no chain needs
// them (server-first protocols such as MySQL would otherwise wait for a
// client byte that never comes); the proxy decides the same per
// destination port from the chains.
func (l *listener) needsInspect(dst netip.AddrPort) (inspect, sniffHTTP bool) {
	if !l.inspect {
		return false, false
	}
	byPort := false
	for _, c := range l.chains {
		if c.port == uint32(dst.Port()) && c.matchesAddr(dst.Addr()) {
			byPort = true
			break
		}
	}
	for _, c := range l.chains {
		if byPort && c.port != uint32(dst.Port()) || !byPort && c.port != 0 || !c.matchesAddr(dst.Addr()) {
			continue
		}
		if len(c.serverNames) > 0 || c.transport != "" || len(c.alpn) > 0 || c.tls != nil {
			inspect = true
		}
		if c.transport != "tls" && len(c.alpn) > 0 {
			sniffHTTP = true
		}
	}
	return inspect, sniffHTTP
}

// matchServerName is how well names match sni: the length of the
// matching name (an exact match beats any wildcard), or -1.
func matchServerName(names []string, sni string) int {
	best := -1
	if sni == "" {
		return best
	}
	for _, n := range names {
		if strings.EqualFold(n, sni) {
			return 1 << 20
		}
		if suffix, ok := strings.CutPrefix(n, "*"); ok && len(sni) > len(suffix) && strings.HasSuffix(strings.ToLower(sni), strings.ToLower(suffix)) && len(n) > best {
			best = len(n)
		}
	}
	return best
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
// buildOptions are what building a runtime needs from the proxy.
type buildOptions struct {
	creds    *credentials
	resolver upstream.Resolver
	metrics  *telemetry.Metrics
	tls      *tlsStatsSet
	// logs opens the access logs' destinations; nil: none (tests of
	// building alone).
	logs logSinks
	// node is the proxy's, for CEL's xds.node.
	node *corev3.Node
}

func build(s *xdsclient.Snapshot, prev *runtime, o buildOptions) (*runtime, error) {
	rt := &runtime{
		snap:        s,
		listeners:   make(map[string]*listener, len(s.Listeners)),
		routes:      make(map[string]*router.Table, len(s.Routes)),
		clusters:    make(map[string]*upstream.Cluster, len(s.Clusters)),
		services:    make(map[string]*telemetry.Service, len(s.Clusters)),
		listenerSrc: s.Listeners,
		routeSrc:    s.Routes,
		assign:      map[*upstream.Cluster]*endpointv3.ClusterLoadAssignment{},
	}
	var errs []error
	var prevSecrets map[string]*secret
	if prev != nil {
		prevSecrets = prev.secrets
	}
	secrets, err := compileSecrets(s.Secrets, prevSecrets)
	if err != nil {
		errs = append(errs, err)
	}
	rt.secrets = secrets
	for name, rc := range s.Routes {
		if prev != nil && prev.routeSrc[name] == rc && prev.routes[name] != nil {
			rt.routes[name] = prev.routes[name]
			continue
		}
		t, err := router.Compile(redirectToTLS(rc))
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
		cl, err := compileListener(l, o)
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
			if cl, err = upstream.NewWithOptions(c, upstream.Options{Resolver: o.resolver, Secrets: o.creds, TLSStats: o.tls.get("cluster", name)}); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		rt.clusters[name] = cl
		if o.metrics != nil {
			rt.services[name] = clusterService(o.metrics, name, c)
		}
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

// redirectToTLS applies virtual hosts' require_tls: the proxy only
// serves RDS route configurations on plaintext chains (a TLS server's
// routes have their own configuration, as Istio names them), so a virtual
// host requiring TLS answers every request with Envoy's 301 to https.
func redirectToTLS(rc *routev3.RouteConfiguration) *routev3.RouteConfiguration {
	var out *routev3.RouteConfiguration
	for i, vh := range rc.GetVirtualHosts() {
		if vh.GetRequireTls() == routev3.VirtualHost_NONE {
			continue
		}
		if out == nil {
			out = proto.Clone(rc).(*routev3.RouteConfiguration)
		}
		out.VirtualHosts[i].Routes = []*routev3.Route{{
			Name:  "require_tls",
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{
				SchemeRewriteSpecifier: &routev3.RedirectAction_HttpsRedirect{HttpsRedirect: true},
			}},
		}}
	}
	if out == nil {
		return rc
	}
	return out
}

// commit sets the EDS endpoints of the runtime's clusters.
func (rt *runtime) commit() {
	for cl, la := range rt.assign {
		cl.SetEndpoints(la)
	}
	rt.assign = nil
}

func compileListener(l *listenerv3.Listener, o buildOptions) (*listener, error) {
	stats := o.tls
	out := &listener{
		name:    l.GetName(),
		bind:    l.GetBindToPort() == nil || l.GetBindToPort().GetValue(),
		origDst: l.GetUseOriginalDst().GetValue(),
		inbound: l.GetTrafficDirection() == corev3.TrafficDirection_INBOUND || l.GetName() == virtualInbound,
	}
	sa := l.GetAddress().GetSocketAddress()
	if sa == nil {
		return nil, fmt.Errorf("listener %q: only socket addresses are supported", l.GetName())
	}
	out.addr = net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))
	// Envoy names a listener's stats by its address (listener.0.0.0.0_15006.ssl.*).
	ls := stats.get("listener", sa.GetAddress()+"_"+strconv.FormatUint(uint64(sa.GetPortValue()), 10))
	for i, fc := range xdsclient.FilterChains(l) {
		c, ok, err := compileChain(fc, o, ls)
		if err != nil {
			return nil, fmt.Errorf("listener %q: filter chain %d (%q): %w", l.GetName(), i, fc.GetName(), err)
		}
		if ok {
			if c.http != nil {
				c.http.egress = l.GetTrafficDirection() == corev3.TrafficDirection_OUTBOUND
			}
			c.tlsStats = ls
			out.chains = append(out.chains, c)
			out.inspect = out.inspect || len(c.serverNames) > 0 || c.transport != "" || len(c.alpn) > 0 || c.tls != nil
		}
	}
	return out, nil
}

// compileChain builds a filter chain; ok is false for chains that can
// never match (an unknown transport protocol), which are skipped.
func compileChain(fc *listenerv3.FilterChain, o buildOptions, stats *upstream.TLSStats) (*chain, bool, error) {
	creds := o.creds
	m := fc.GetFilterChainMatch()
	// A criterion the proxy does not match on would make the chain take
	// connections it must not (a source range, say): refused.
	if err := fieldcheck.Only(m, "destination_port", "prefix_ranges", "server_names", "transport_protocol", "application_protocols"); err != nil {
		return nil, false, fmt.Errorf("filter_chain_match: %w", err)
	}
	c := &chain{name: fc.GetName(), port: m.GetDestinationPort().GetValue(), serverNames: m.GetServerNames(),
		transport: m.GetTransportProtocol(), alpn: m.GetApplicationProtocols()}
	switch c.transport {
	case "", "tls", "raw_buffer":
	default:
		return nil, false, nil
	}
	fs := fc.GetFilters()
	if len(fs) == 0 {
		return nil, false, fmt.Errorf("no filters")
	}
	if ts := fc.GetTransportSocket(); ts != nil {
		tc := ts.GetTypedConfig()
		switch {
		case tc == nil && (ts.GetName() == "" || ts.GetName() == wellknown.TransportSocketRawBuffer),
			tc != nil && strings.HasSuffix(tc.GetTypeUrl(), ".raw_buffer.v3.RawBuffer"):
			// Plaintext, spelt out.
		case tc != nil && tc.MessageIs((*tlsv3.DownstreamTlsContext)(nil)):
			var dtc tlsv3.DownstreamTlsContext
			if err := tc.UnmarshalTo(&dtc); err != nil {
				return nil, false, fmt.Errorf("transport socket %q: %w", ts.GetName(), err)
			}
			_, isHTTP := xdsclient.HCM(fs[len(fs)-1])
			st, err := compileServerTLS(&dtc, creds, isHTTP, stats)
			if err != nil {
				return nil, false, fmt.Errorf("transport socket %q: %w", ts.GetName(), err)
			}
			c.tls = st
		default:
			return nil, false, fmt.Errorf("transport socket %q (%s): only a DownstreamTlsContext or raw_buffer is supported", ts.GetName(), tc.GetTypeUrl())
		}
	}
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
	var netStats *statsConfig
	// The filters before the terminal one: the network RBAC and ext_authz
	// filters (AuthorizationPolicy on TCP), in order. Any other is refused, so
	// that a restriction the proxy does not implement is never skipped.
	for _, f := range fs[:len(fs)-1] {
		switch f.GetName() {
		case wellknown.RoleBasedAccessControl:
			var cfg rbacnetv3.RBAC
			if err := f.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
				return nil, false, fmt.Errorf("decode %s: %w", f.GetName(), err)
			}
			e, err := rbac.CompileNetwork(&cfg)
			if err != nil {
				return nil, false, fmt.Errorf("%s: %w", f.GetName(), err)
			}
			c.authz = append(c.authz, netAuthz{rbac: e, counters: e.Counters("")})
		case wellknown.ExternalAuthorization:
			var cfg extauthznetv3.ExtAuthz
			if err := f.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
				return nil, false, fmt.Errorf("decode %s: %w", f.GetName(), err)
			}
			x, err := compileNetExtAuthz(&cfg)
			if err != nil {
				return nil, false, fmt.Errorf("%s: %w", f.GetName(), err)
			}
			c.authz = append(c.authz, netAuthz{ext: x})
		case istioStatsFilter:
			m := o.metrics
			if m == nil {
				m = telemetry.New()
			}
			sc, err := compileStats(f.GetTypedConfig(), m, o.node)
			if err != nil {
				return nil, false, fmt.Errorf("network filter: %w", err)
			}
			netStats = sc
		default:
			return nil, false, fmt.Errorf("network filter %q is not one this proxy implements", f.GetName())
		}
	}
	last := fs[len(fs)-1]
	if h, ok := xdsclient.HCM(last); ok {
		if netStats != nil {
			// Envoy would count the HTTP connections as TCP ones; Istio
			// never puts the network filter before a connection manager.
			return nil, false, fmt.Errorf("network filter %s before http_connection_manager is not supported", istioStatsFilter)
		}
		c.http = &hcm{statPrefix: h.GetStatPrefix(), useRemoteAddress: h.GetUseRemoteAddress().GetValue(), lim: hcmLimits(h),
			xffTrustedHops: int(h.GetXffNumTrustedHops()),
			fcc:            h.GetForwardClientCertDetails(), details: xfccDetailsOf(h.GetSetCurrentClientCertDetails())}
		if err := c.http.filters(h.GetHttpFilters(), o.metrics, o.node); err != nil {
			return nil, false, err
		}
		t, err := compileTracing(h)
		if err != nil {
			return nil, false, err
		}
		c.http.tracing = t
		logs, err := o.accessLogs(h.GetAccessLog())
		if err != nil {
			return nil, false, fmt.Errorf("http_connection_manager: %w", err)
		}
		c.http.logs = logs
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
		c.tcp = &tcpProxy{statPrefix: tp.GetStatPrefix(), stats: netStats}
		logs, err := o.accessLogs(tp.GetAccessLog())
		if err != nil {
			return nil, false, fmt.Errorf("tcp_proxy: %w", err)
		}
		c.tcp.logs = logs
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

// filters reads a connection manager's HTTP filters as Envoy's chain: the
// fault and CORS filters switch on the routes' configurations, the RBAC
// filters are compiled in order, the router must be last. A filter the
// proxy does not implement is refused (the listener is NACKed) unless the
// config marks it optional, as Envoy does: a skipped authorization filter
// would fail open.
func (h *hcm) filters(fs []*hcmv3.HttpFilter, m *telemetry.Metrics, node *corev3.Node) error {
	for i, f := range fs {
		switch f.GetName() {
		case istioStatsFilter:
			if m == nil {
				m = telemetry.New() // checking alone: compiled, not recorded
			}
			sc, err := compileStats(f.GetTypedConfig(), m, node)
			if err != nil {
				return fmt.Errorf("http filter %d: %w", i, err)
			}
			h.stats = sc
		case wellknown.Fault:
			h.fault = true
		case wellknown.CORS:
			h.cors = true
		case wellknown.HTTPRoleBasedAccessControl:
			var cfg rbachttpv3.RBAC
			if err := f.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
				return fmt.Errorf("http filter %d (%s): %w", i, f.GetName(), err)
			}
			e, err := rbac.Compile(&cfg)
			if err != nil {
				return fmt.Errorf("http filter %d (%s): %w", i, f.GetName(), err)
			}
			h.authz = append(h.authz, httpAuthz{rbac: e, counters: e.Counters("http." + h.statPrefix + ".")})
		case wellknown.HTTPExternalAuthorization:
			var cfg extauthzv3.ExtAuthz
			if err := f.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
				return fmt.Errorf("http filter %d (%s): %w", i, f.GetName(), err)
			}
			x, err := compileExtAuthz(&cfg)
			if err != nil {
				return fmt.Errorf("http filter %d (%s): %w", i, f.GetName(), err)
			}
			h.authz = append(h.authz, httpAuthz{ext: x})
		case jwtauthn.FilterName:
			if err := h.jwtFilter(f); err != nil {
				return fmt.Errorf("http filter %d (%s): %w", i, f.GetName(), err)
			}
		case istioALPNFilter:
			// Istio's istio.alpn: its override (the upstream protocol next
			// to Istio's markers) is what the clusters' TLS sockets offer
			// on HTTP connections (upstream.ClientTLS), for every HCM.
		case wellknown.Router:
			if i != len(fs)-1 {
				return fmt.Errorf("http filter %d: the router must be the last filter", i)
			}
		default:
			if !f.GetIsOptional() {
				return fmt.Errorf("http filter %d: %q is not one this proxy implements (mark it is_optional to let it be skipped)", i, f.GetName())
			}
		}
	}
	if len(fs) == 0 || fs[len(fs)-1].GetName() != wellknown.Router {
		return fmt.Errorf("http filters: the last must be the router")
	}
	return nil
}
