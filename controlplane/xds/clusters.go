package xds

import (
	"math"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlab/meshlab/controlplane/registry"
)

// httpProtocolOptionsKey names the upstream HTTP options in a cluster's
// typed_extension_protocol_options.
const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// outbound builds (once per namespace) every outbound cluster and its
// endpoints: one per service port and one per DestinationRule subset. A
// service's clusters depend only on which DestinationRule applies, so
// namespaces share them.
func (x *index) outbound(ns string) *outbound {
	x.mu.Lock()
	defer x.mu.Unlock()
	if o, ok := x.outboundMemo[ns]; ok {
		return o
	}
	o := &outbound{}
	for _, s := range x.services {
		so := x.serviceClusters(s, x.destinationRuleFor(s.host, ns, s.Namespace))
		o.clusters = append(o.clusters, so.clusters...)
		o.endpoints = append(o.endpoints, so.endpoints...)
	}
	sortByName(o.clusters)
	sortByName(o.endpoints)
	x.outboundMemo[ns] = o
	return o
}

// serviceClusters are one service's clusters and endpoints, each with the
// DestinationRule's traffic policy merged for its port and subset as
// Istio merges them; x.mu held.
func (x *index) serviceClusters(s *service, dr *destinationRule) *outbound {
	key := clusterKey{s, dr}
	if o, ok := x.clusterMemo[key]; ok {
		return o
	}
	o := &outbound{}
	var top *networking.TrafficPolicy
	if dr != nil {
		top = dr.spec.GetTrafficPolicy()
	}
	add := func(name string, p registry.Port, policy *networking.TrafficPolicy, eps []registry.Workload, subset string, labels map[string]string) {
		mark := x.tlsMarker(dr, subset, p)
		tlsOpts := clusterTLSOpts{svc: s, port: p, subset: subset, policy: policy, dr: dr}
		if s.se != nil {
			c, la := entryCluster(s, name, p, policy, labels, mark)
			x.applyClusterTLS(c, tlsOpts)
			o.clusters = append(o.clusters, c)
			if la != nil {
				o.endpoints = append(o.endpoints, la)
			}
			return
		}
		c := edsCluster(name)
		applyTrafficPolicy(c, policy)
		x.applyClusterTLS(c, tlsOpts)
		o.clusters = append(o.clusters, c)
		// A PASSTHROUGH policy makes the cluster ORIGINAL_DST: no EDS.
		if c.GetType() == clusterv3.Cluster_EDS {
			o.endpoints = append(o.endpoints, workloadAssignment(name, eps, p.Target(), mark))
		}
	}
	for _, p := range s.Ports {
		add(outboundClusterName(p.Port, "", s.host), p, portTrafficPolicy(top, p.Port), s.endpoints, "", nil)
		for _, ss := range dr.subsets() {
			add(outboundClusterName(p.Port, ss.GetName(), s.host), p,
				mergeSubsetTrafficPolicy(top, ss.GetTrafficPolicy(), p.Port),
				subsetEndpoints(s.endpoints, ss.GetLabels()), ss.GetName(), ss.GetLabels())
		}
	}
	x.clusterMemo[key] = o
	return o
}

// portTrafficPolicy is Istio's GetPortLevelTrafficPolicy: the settings of
// the portLevelSettings entry for port replace the policy's own wholesale
// (a field the entry omits falls back to the default, it is not
// inherited); hasPort reports whether there was such an entry.
func portTrafficPolicy(tp *networking.TrafficPolicy, port uint32) *networking.TrafficPolicy {
	p, _ := portLevel(tp, port)
	return p
}

func portLevel(tp *networking.TrafficPolicy, port uint32) (*networking.TrafficPolicy, bool) {
	for _, pls := range tp.GetPortLevelSettings() {
		if pls.GetPort().GetNumber() == port {
			return &networking.TrafficPolicy{
				ConnectionPool:   pls.GetConnectionPool(),
				LoadBalancer:     pls.GetLoadBalancer(),
				OutlierDetection: pls.GetOutlierDetection(),
				Tls:              pls.GetTls(),
			}, true
		}
	}
	return tp, false
}

// mergeSubsetTrafficPolicy is Istio's MergeSubsetTrafficPolicy: the
// destination-level policy for the port, overridden field by field by the
// subset's policy for the port (wholesale when the subset has a
// port-level entry for it).
func mergeSubsetTrafficPolicy(top, subset *networking.TrafficPolicy, port uint32) *networking.TrafficPolicy {
	original := portTrafficPolicy(top, port)
	if subset == nil {
		return original
	}
	sp, hasPort := portLevel(subset, port)
	if original == nil {
		return sp
	}
	merged := &networking.TrafficPolicy{
		ConnectionPool:   original.GetConnectionPool(),
		LoadBalancer:     original.GetLoadBalancer(),
		OutlierDetection: original.GetOutlierDetection(),
		Tls:              original.GetTls(),
	}
	if sp.GetConnectionPool() != nil || hasPort {
		merged.ConnectionPool = sp.GetConnectionPool()
	}
	if sp.GetOutlierDetection() != nil || hasPort {
		merged.OutlierDetection = sp.GetOutlierDetection()
	}
	if sp.GetLoadBalancer() != nil || hasPort {
		merged.LoadBalancer = sp.GetLoadBalancer()
	}
	if sp.GetTls() != nil || hasPort {
		merged.Tls = sp.GetTls()
	}
	return merged
}

// applyTrafficPolicy is Istio's applyTrafficPolicy for an outbound
// cluster (TLS aside): connection pool (always, so circuit breakers are
// always set), outlier detection, then load balancer.
func applyTrafficPolicy(c *clusterv3.Cluster, tp *networking.TrafficPolicy) {
	applyConnectionPool(c, tp.GetConnectionPool())
	applyOutlierDetection(c, tp.GetOutlierDetection())
	applyLoadBalancer(c, tp.GetLoadBalancer())
}

// defaultThresholds are Istio's: no limits (Envoy's own defaults, 1024
// and 3 retries, trip under ordinary load).
func defaultThresholds() *clusterv3.CircuitBreakers_Thresholds {
	return &clusterv3.CircuitBreakers_Thresholds{
		MaxRetries:         wrapperspb.UInt32(math.MaxUint32),
		MaxRequests:        wrapperspb.UInt32(math.MaxUint32),
		MaxConnections:     wrapperspb.UInt32(math.MaxUint32),
		MaxPendingRequests: wrapperspb.UInt32(math.MaxUint32),
		TrackRemaining:     true,
	}
}

// applyConnectionPool is Istio's applyConnectionPool. Zero means unset,
// as in Istio (the API cannot tell them apart).
func applyConnectionPool(c *clusterv3.Cluster, cp *networking.ConnectionPoolSettings) {
	th := defaultThresholds()
	var common corev3.HttpProtocolOptions
	haveCommon := false
	if h := cp.GetHttp(); h != nil {
		if h.GetHttp2MaxRequests() > 0 {
			th.MaxRequests = wrapperspb.UInt32(uint32(h.GetHttp2MaxRequests()))
		}
		if h.GetHttp1MaxPendingRequests() > 0 {
			th.MaxPendingRequests = wrapperspb.UInt32(uint32(h.GetHttp1MaxPendingRequests()))
		}
		if h.GetMaxRetries() > 0 {
			th.MaxRetries = wrapperspb.UInt32(uint32(h.GetMaxRetries()))
		}
		if h.GetIdleTimeout() != nil {
			common.IdleTimeout, haveCommon = h.GetIdleTimeout(), true
		}
		if h.GetMaxRequestsPerConnection() > 0 {
			common.MaxRequestsPerConnection, haveCommon = wrapperspb.UInt32(uint32(h.GetMaxRequestsPerConnection())), true
		}
	}
	if t := cp.GetTcp(); t != nil {
		if t.GetConnectTimeout() != nil {
			c.ConnectTimeout = t.GetConnectTimeout()
		}
		if t.GetMaxConnections() > 0 {
			th.MaxConnections = wrapperspb.UInt32(uint32(t.GetMaxConnections()))
		}
		if t.GetMaxConnectionDuration() != nil {
			common.MaxConnectionDuration, haveCommon = t.GetMaxConnectionDuration(), true
		}
		if common.IdleTimeout == nil && t.GetIdleTimeout() != nil {
			common.IdleTimeout, haveCommon = t.GetIdleTimeout(), true
		}
		if ka := t.GetTcpKeepalive(); ka != nil {
			// An empty tcp_keepalive sets SO_KEEPALIVE with the OS defaults.
			k := &corev3.TcpKeepalive{}
			if ka.GetProbes() > 0 {
				k.KeepaliveProbes = wrapperspb.UInt32(ka.GetProbes())
			}
			if ka.GetTime() != nil {
				k.KeepaliveTime = wrapperspb.UInt32(uint32(ka.GetTime().GetSeconds()))
			}
			if ka.GetInterval() != nil {
				k.KeepaliveInterval = wrapperspb.UInt32(uint32(ka.GetInterval().GetSeconds()))
			}
			c.UpstreamConnectionOptions = &clusterv3.UpstreamConnectionOptions{TcpKeepalive: k}
		}
	}
	c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{th}}
	var hpo *httpv3.HttpProtocolOptions
	if haveCommon {
		hpo = &httpv3.HttpProtocolOptions{CommonHttpProtocolOptions: &common}
	}
	if cp.GetHttp().GetUseClientProtocol() {
		// Istio's setUseDownstreamProtocol: HTTP/2 upstream for HTTP/2
		// downstream requests, HTTP/1.1 otherwise.
		if hpo == nil {
			hpo = &httpv3.HttpProtocolOptions{}
		}
		hpo.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_UseDownstreamProtocolConfig{UseDownstreamProtocolConfig: &httpv3.HttpProtocolOptions_UseDownstreamHttpConfig{
			HttpProtocolOptions:  &corev3.Http1ProtocolOptions{},
			Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
		}}
	}
	if cp.GetHttp().GetH2UpgradePolicy() == networking.ConnectionPoolSettings_HTTPSettings_UPGRADE {
		// Istio's applyH2Upgrade (outbound clusters only, as here): with
		// the mesh's default DO_NOT_UPGRADE only the rule's UPGRADE
		// upgrades, whatever the port's protocol, and it wins over
		// useClientProtocol.
		if hpo == nil {
			hpo = &httpv3.HttpProtocolOptions{}
		}
		hpo.UpstreamProtocolOptions = explicitHTTP2()
	}
	if hpo != nil {
		if hpo.UpstreamProtocolOptions == nil {
			// Envoy requires the upstream protocol be chosen alongside;
			// HTTP/1.1 is what these clusters speak.
			hpo.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}},
			}}
		}
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsKey: mustAny(hpo)}
	}
}

// applyOutlierDetection is Istio's: consecutive 5xx and gateway errors
// enforced at 100% when set, success rate never, and the panic threshold
// set to minHealthPercent (0, i.e. off, by default: with few pods per
// service, Envoy's 50% would send traffic to ejected hosts).
func applyOutlierDetection(c *clusterv3.Cluster, od *networking.OutlierDetection) {
	if od == nil {
		return
	}
	out := &clusterv3.OutlierDetection{EnforcingSuccessRate: wrapperspb.UInt32(0)}
	enforce := func(v uint32) *wrapperspb.UInt32Value {
		if v > 0 {
			v = 100
		}
		return wrapperspb.UInt32(v)
	}
	if e := od.GetConsecutive_5XxErrors(); e != nil {
		out.Consecutive_5Xx = wrapperspb.UInt32(e.GetValue())
		out.EnforcingConsecutive_5Xx = enforce(e.GetValue())
	}
	if e := od.GetConsecutiveGatewayErrors(); e != nil {
		out.ConsecutiveGatewayFailure = wrapperspb.UInt32(e.GetValue())
		out.EnforcingConsecutiveGatewayFailure = enforce(e.GetValue())
	}
	out.Interval = od.GetInterval()
	out.BaseEjectionTime = od.GetBaseEjectionTime()
	if p := od.GetMaxEjectionPercent(); p > 0 {
		out.MaxEjectionPercent = wrapperspb.UInt32(uint32(p))
	}
	if od.GetSplitExternalLocalOriginErrors() {
		out.SplitExternalLocalOriginErrors = true
		if v := od.GetConsecutiveLocalOriginFailures().GetValue(); v > 0 {
			out.ConsecutiveLocalOriginFailure = wrapperspb.UInt32(v)
			out.EnforcingConsecutiveLocalOriginFailure = wrapperspb.UInt32(100)
		}
		out.EnforcingLocalOriginSuccessRate = wrapperspb.UInt32(0)
	}
	c.OutlierDetection = out
	if p := od.GetMinHealthPercent(); p >= 0 {
		if c.CommonLbConfig == nil {
			c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{}
		}
		c.CommonLbConfig.HealthyPanicThreshold = &typev3.Percent{Value: float64(p)}
	}
}

// applyLoadBalancer is Istio's applyLoadBalancer (locality aside):
// LEAST_REQUEST by default, PASSTHROUGH as an ORIGINAL_DST cluster, and a
// consistent hash as RING_HASH (1024 points by default) or MAGLEV; the
// hash key itself goes on the routes (hashPolicy).
func applyLoadBalancer(c *clusterv3.Cluster, lb *networking.LoadBalancerSettings) {
	if c.GetType() == clusterv3.Cluster_ORIGINAL_DST {
		c.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
		return
	}
	slowStart := func() *clusterv3.Cluster_SlowStartConfig {
		if w := lb.GetWarmupDurationSecs(); w != nil {
			return &clusterv3.Cluster_SlowStartConfig{SlowStartWindow: w}
		}
		return nil
	}
	switch lb.GetSimple() {
	case networking.LoadBalancerSettings_RANDOM:
		c.LbPolicy = clusterv3.Cluster_RANDOM
	case networking.LoadBalancerSettings_ROUND_ROBIN:
		c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
		if ss := slowStart(); ss != nil {
			c.LbConfig = &clusterv3.Cluster_RoundRobinLbConfig_{RoundRobinLbConfig: &clusterv3.Cluster_RoundRobinLbConfig{SlowStartConfig: ss}}
		}
	case networking.LoadBalancerSettings_PASSTHROUGH:
		c.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}
		c.EdsClusterConfig = nil
		c.LoadAssignment = nil
	default: // UNSPECIFIED, LEAST_REQUEST, LEAST_CONN
		c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
		if ss := slowStart(); ss != nil {
			c.LbConfig = &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{SlowStartConfig: ss}}
		}
	}
	ch := lb.GetConsistentHash()
	if ch == nil {
		return
	}
	switch {
	case ch.GetMaglev() != nil:
		c.LbPolicy = clusterv3.Cluster_MAGLEV
		c.LbConfig = nil
		if n := ch.GetMaglev().GetTableSize(); n != 0 {
			c.LbConfig = &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{TableSize: wrapperspb.UInt64(n)}}
		}
	case ch.GetRingHash() != nil:
		c.LbPolicy = clusterv3.Cluster_RING_HASH
		c.LbConfig = nil
		if n := ch.GetRingHash().GetMinimumRingSize(); n != 0 {
			c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{MinimumRingSize: wrapperspb.UInt64(n)}}
		}
	default:
		size := uint64(1024)
		if n := ch.GetMinimumRingSize(); n != 0 { //nolint:staticcheck // Istio still honours the deprecated field.
			size = n
		}
		c.LbPolicy = clusterv3.Cluster_RING_HASH
		c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{MinimumRingSize: wrapperspb.UInt64(size)}}
	}
}

// hashPolicies are the hash policies Istio puts on a route action for its
// destinations (hashForVirtualService): one per destination whose
// DestinationRule asks for a consistent hash; zero-weight destinations of
// a split are left out, as their clusters are. The DestinationRule is the
// one the destination's service namespace sees (routes are shared by
// every client namespace here).
func (x *index) hashPolicies(dests []*networking.HTTPRouteDestination, vsNS string) []*routev3.RouteAction_HashPolicy {
	var out []*routev3.RouteAction_HashPolicy
	for _, d := range dests {
		if len(dests) > 1 && d.GetWeight() == 0 {
			continue
		}
		if hp := hashPolicy(x.destinationHash(d.GetDestination(), vsNS)); hp != nil {
			out = append(out, hp)
		}
	}
	return out
}

// serviceHashPolicies are the hash policies of the default route to a
// service port no VirtualService covers (Istio's hashForService).
func (x *index) serviceHashPolicies(s *service, port uint32) []*routev3.RouteAction_HashPolicy {
	dr := x.destinationRuleFor(s.host, s.Namespace, s.Namespace)
	if dr == nil {
		return nil
	}
	tp := dr.spec.GetTrafficPolicy()
	ch := tp.GetLoadBalancer().GetConsistentHash()
	for _, pls := range tp.GetPortLevelSettings() {
		if pls.GetPort().GetNumber() == port {
			if h := pls.GetLoadBalancer().GetConsistentHash(); h != nil {
				ch = h
			}
			break
		}
	}
	if hp := hashPolicy(ch); hp != nil {
		return []*routev3.RouteAction_HashPolicy{hp}
	}
	return nil
}

// destinationHash is Istio's hashForHTTPDestination: the subset's
// port-level hash, else the subset's, else the rule's port-level one,
// else the rule's (port-level entries only count when the destination
// names its port).
func (x *index) destinationHash(d *networking.Destination, vsNS string) *networking.LoadBalancerSettings_ConsistentHashLB {
	host := resolveHost(d.GetHost(), vsNS)
	svcNS := vsNS
	if s := x.byHost[host]; s != nil {
		svcNS = s.Namespace
	}
	dr := x.destinationRuleFor(host, svcNS, svcNS)
	if dr == nil {
		return nil
	}
	portHash := func(tp *networking.TrafficPolicy) *networking.LoadBalancerSettings_ConsistentHashLB {
		if d.GetPort() == nil {
			return nil
		}
		for _, pls := range tp.GetPortLevelSettings() {
			if pls.GetPort().GetNumber() == d.GetPort().GetNumber() {
				return pls.GetLoadBalancer().GetConsistentHash()
			}
		}
		return nil
	}
	top := dr.spec.GetTrafficPolicy()
	var subsetHash, subsetPortHash *networking.LoadBalancerSettings_ConsistentHashLB
	for _, ss := range dr.subsets() {
		if ss.GetName() == d.GetSubset() {
			subsetHash = ss.GetTrafficPolicy().GetLoadBalancer().GetConsistentHash()
			subsetPortHash = portHash(ss.GetTrafficPolicy())
			break
		}
	}
	switch {
	case subsetPortHash != nil:
		return subsetPortHash
	case subsetHash != nil:
		return subsetHash
	}
	if h := portHash(top); h != nil {
		return h
	}
	return top.GetLoadBalancer().GetConsistentHash()
}

// hashPolicy is Istio's consistentHashToHashPolicy.
func hashPolicy(ch *networking.LoadBalancerSettings_ConsistentHashLB) *routev3.RouteAction_HashPolicy {
	switch k := ch.GetHashKey().(type) {
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName:
		return &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
			Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: k.HttpHeaderName}}}
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpCookie:
		c := &routev3.RouteAction_HashPolicy_Cookie{Name: k.HttpCookie.GetName(), Ttl: k.HttpCookie.GetTtl(), Path: k.HttpCookie.GetPath()}
		for _, a := range k.HttpCookie.GetAttributes() {
			c.Attributes = append(c.Attributes, &routev3.RouteAction_HashPolicy_CookieAttribute{Name: a.GetName(), Value: a.GetValue()})
		}
		return &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{Cookie: c}}
	case *networking.LoadBalancerSettings_ConsistentHashLB_UseSourceIp:
		return &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{
			ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: k.UseSourceIp}}}
	case *networking.LoadBalancerSettings_ConsistentHashLB_HttpQueryParameterName:
		return &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_QueryParameter_{
			QueryParameter: &routev3.RouteAction_HashPolicy_QueryParameter{Name: k.HttpQueryParameterName}}}
	}
	return nil
}

// destinationClusterFor builds one cluster a gateway's routes name, with
// its traffic policy, and its endpoints (nil for a non-EDS cluster); ok
// is false when the subset does not exist.
func (x *index) destinationClusterFor(name string, s *service, p registry.Port, subset, proxyNS string) (*clusterv3.Cluster, *endpointv3.ClusterLoadAssignment, bool) {
	dr := x.destinationRuleFor(s.host, proxyNS, s.Namespace)
	var top *networking.TrafficPolicy
	if dr != nil {
		top = dr.spec.GetTrafficPolicy()
	}
	eps, policy := s.endpoints, portTrafficPolicy(top, p.Port)
	var labels map[string]string
	if subset != "" {
		i := slices.IndexFunc(dr.subsets(), func(ss *networking.Subset) bool { return ss.GetName() == subset })
		if i < 0 {
			return nil, nil, false
		}
		ss := dr.subsets()[i]
		eps, policy = subsetEndpoints(eps, ss.GetLabels()), mergeSubsetTrafficPolicy(top, ss.GetTrafficPolicy(), p.Port)
		labels = ss.GetLabels()
	}
	mark := x.tlsMarker(dr, subset, p)
	tlsOpts := clusterTLSOpts{svc: s, port: p, subset: subset, policy: policy, dr: dr, router: true}
	if s.se != nil {
		c, la := entryCluster(s, name, p, policy, labels, mark)
		x.applyClusterTLS(c, tlsOpts)
		return c, la, true
	}
	c := edsCluster(name)
	applyTrafficPolicy(c, policy)
	x.applyClusterTLS(c, tlsOpts)
	if c.GetType() != clusterv3.Cluster_EDS {
		return c, nil, true
	}
	return c, workloadAssignment(name, eps, p.Target(), mark), true
}
