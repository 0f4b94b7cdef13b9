package xds

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlab/meshlab/controlplane/registry"
)

func (x *index) build(p Proxy) (Resources, error) {
	w := x.workload(p)
	switch p.Type {
	case SidecarProxy:
		return x.buildSidecar(p, w)
	case RouterProxy:
		authz, need, err := x.routerAuthz(w)
		if err != nil {
			return nil, err
		}
		res := x.buildRouter(w, authz, need, x.telemetryFor(p, w))
		if entitledToSecrets(p, w) {
			if sec := x.gatewaySecrets(w.Namespace, res[resource.ListenerType], res[resource.ClusterType]); len(sec) > 0 {
				res[resource.SecretType] = sec
			}
		}
		return res, nil
	}
	return nil, fmt.Errorf("build %s: unknown proxy type %q", p.ID, p.Type)
}

// entitledToSecrets is Istio's SDS rule for gateways (pilot/pkg/xds/sds.go):
// secrets only to a proxy whose certificate proved an identity of the
// secrets' namespace (the gateway pod's), nothing to an unauthenticated
// one (plaintext 15010). Where istiod then asks Kubernetes whether that
// service account may list Secrets (a SubjectAccessReview), the registry
// here says which service account the gateway pod runs as, and the
// certificate must be that one: another workload of the namespace
// claiming the gateway's node gets its listeners but not its keys.
func entitledToSecrets(p Proxy, w registry.Workload) bool {
	if p.Verified == nil || p.Verified.Namespace != w.Namespace {
		return false
	}
	return w.ServiceAccount == "" || w.ServiceAccount == p.Verified.ServiceAccount
}

// workload is the proxy's pod as the registry knows it (by IP, and name
// when the node ID names one), else as the node metadata describes it.
func (x *index) workload(p Proxy) registry.Workload {
	if w, ok := x.byIP[p.IP]; ok && (p.Name == "" || w.Name == p.Name) {
		return *w
	}
	return registry.Workload{Name: p.Name, Namespace: p.Namespace, IP: p.IP, Labels: p.Labels, Ready: true}
}

// outbound is the clusters and endpoints every sidecar in one namespace
// gets (subsets depend on which DestinationRule the namespace sees).
type outbound struct {
	clusters  []types.Resource // sorted by name
	endpoints []types.Resource // sorted by cluster name
}

func (x *index) buildSidecar(p Proxy, w registry.Workload) (Resources, error) {
	ob := x.outbound(w.Namespace)
	// The AuthorizationPolicies that apply to this workload, as Envoy RBAC
	// filters on every inbound chain (authz.go); a policy that cannot be
	// enforced fails the build rather than letting traffic through.
	authz, err := BuildAuthzFilters(x.authz, w.Namespace, w.Labels, x.authzOptions())
	if err != nil {
		return nil, fmt.Errorf("build sidecar %s/%s: %w", w.Namespace, w.Name, err)
	}
	// RequestAuthentication's jwt_authn runs before the RBAC filters, which
	// match what it verified (jwt.go).
	if f := BuildJWTFilter(RequestAuthnFor(x.reqAuthn, w.Namespace, w.Labels, rootNamespace), x.in.JWKS, false); f != nil {
		authz.HTTP = authz.WithAuthn(f)
	}

	// Everything below concatenates already-sorted groups whose names sort
	// in this order ("B" < "I" < "P" < "inbound|" < "outbound|", digits <
	// "virtual"), so the result is sorted without sorting it again.
	clusters := []types.Resource{
		staticCluster(blackHoleCluster),
		originalDstCluster(inboundPassthroughCluster),
		originalDstCluster(passthroughCluster),
	}
	inbound := x.inboundPorts(w)
	for _, ip := range inbound {
		c := staticCluster(inboundClusterName(ip.target), netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(ip.target)))
		c.Metadata = servicesMetadata(ip.services)
		if ip.h2 {
			setInboundH2(c)
		}
		clusters = append(clusters, c)
	}
	clusters = append(clusters, ob.clusters...)

	// The workload's PeerAuthentication decides which inbound chains
	// accept mTLS, plaintext or both (peerauthn.go).
	pp := x.peer.forWorkload(w.Namespace, w.Labels)
	listeners := append(slices.Clone(x.outboundListeners(workloadSource(w))), x.virtualInbound(inbound, authz, pp), virtualOutbound())
	// Tracing, access logs and metrics on every connection manager and
	// TCP proxy (telemetry_apply.go); the legacy `zipkin` cluster sorts
	// after every other.
	pt := x.telemetryFor(p, w)
	listeners = x.withTelemetry(listeners, pt)
	for _, c := range pt.legacyClusters() {
		clusters = append(clusters, c)
	}

	return Resources{
		resource.ListenerType: listeners,
		resource.RouteType:    x.outboundRoutes(workloadSource(w)),
		resource.ClusterType:  clusters,
		resource.EndpointType: ob.endpoints,
	}, nil
}

func virtualOutbound() *listenerv3.Listener {
	return &listenerv3.Listener{
		Name:             virtualOutboundListener,
		Address:          socketAddress("0.0.0.0", outboundCapturePort),
		UseOriginalDst:   wrapperspb.Bool(true),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		FilterChains: []*listenerv3.FilterChain{{
			Name:    virtualOutboundListener + "-catchall-tcp",
			Filters: []*listenerv3.Filter{tcpProxyFilter(passthroughCluster, []weighted{{cluster: passthroughCluster}})},
		}},
	}
}

type inboundPort struct {
	target uint32
	http   bool
	// h2: the port's protocol is HTTP/2 (gRPC): the app speaks only it.
	h2 bool
	// services select the workload on this target port, by hostname.
	services []*service
}

// inboundPorts are the target ports of the services selecting w, by port;
// the first service (by hostname) to name a target port decides its protocol.
func (x *index) inboundPorts(w registry.Workload) []inboundPort {
	var out []inboundPort
	seen := map[uint32]int{} // index in out
	for _, s := range x.services {
		if !s.Selects(w) {
			continue
		}
		for _, p := range s.Ports {
			t := p.Target()
			if i, ok := seen[t]; ok {
				if last := out[i].services; last[len(last)-1] != s {
					out[i].services = append(out[i].services, s)
				}
				continue
			}
			seen[t] = len(out)
			out = append(out, inboundPort{target: t, http: isHTTP(p), h2: isH2(p), services: []*service{s}})
		}
	}
	// By name, not number: the clusters named after them must sort as strings.
	sort.Slice(out, func(i, j int) bool { return portString(out[i].target) < portString(out[j].target) })
	return out
}

// inboundHCM is the connection manager of an inbound HTTP chain, routing
// everything to cluster, with Istio's sidecar inbound client certificate
// handling (buildSidecarInboundHTTPOpts): the app gets the client's
// identity in X-Forwarded-Client-Cert, appended to what came in.
func inboundHCM(authz AuthzFilters, statPrefix, cluster, vhost, operation string) *listenerv3.Filter {
	route := catchAllRoute("default", cluster)
	if operation != "" {
		route.Decorator = &routev3.Decorator{Operation: operation}
	}
	return hcmFilterWith(authz.HTTP, &hcmv3.HttpConnectionManager{
		StatPrefix: statPrefix,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name: cluster,
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    vhost,
				Domains: []string{"*"},
				Routes:  []*routev3.Route{route},
			}},
		}},
		ForwardClientCertDetails: hcmv3.HttpConnectionManager_APPEND_FORWARD,
		SetCurrentClientCertDetails: &hcmv3.HttpConnectionManager_SetCurrentClientCertDetails{
			Subject: wrapperspb.Bool(true), Dns: true, Uri: true,
		},
	})
}

// inboundOperation is the span name of an inbound port's route, Istio's
// TraceOperation of the first service's host and the service port that
// targets it.
func inboundOperation(p inboundPort) string {
	s := p.services[0]
	for _, sp := range s.Ports {
		if sp.Target() == p.target {
			return traceOperation(s.host, sp.Port)
		}
	}
	return traceOperation(s.host, p.target)
}

// virtualInbound is Istio's inbound listener (listener_inbound.go
// buildInboundListeners): per inbound (target) port, the filter chains
// its PeerAuthentication mode asks for (inboundChainOpts), each with the
// port's filters, then the pass-through chains for ports no Service
// names, in the workload's own mode, plus one set per portLevelMtls port
// no Service names (Istio's ForPassthrough). Every chain, TLS or
// plaintext, carries the AuthorizationPolicy filters.
func (x *index) virtualInbound(ports []inboundPort, authz AuthzFilters, pp peerPolicy) *listenerv3.Listener {
	l := &listenerv3.Listener{
		Name:             virtualInboundListener,
		Address:          socketAddress("0.0.0.0", inboundCapturePort),
		UseOriginalDst:   wrapperspb.Bool(true),
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		// Istio's: a client that sends nothing is not held up by the
		// inspector, it goes on as plaintext.
		ContinueOnListenerFiltersTimeout: true,
	}
	declared := map[uint32]bool{}
	for _, p := range ports {
		declared[p.target] = true
		name := inboundClusterName(p.target)
		statPrefix := "inbound_0.0.0.0_" + strconv.FormatUint(uint64(p.target), 10)
		var filters []*listenerv3.Filter
		if p.http {
			filters = []*listenerv3.Filter{inboundHCM(authz, statPrefix, name, "inbound|http|"+strconv.FormatUint(uint64(p.target), 10), inboundOperation(p))}
		} else {
			// Istio's network RBAC filters go before tcp_proxy.
			filters = append(slices.Clone(authz.TCP), tcpProxyFilter(name, []weighted{{cluster: name}}))
		}
		for _, o := range inboundChainOpts(pp.forPort(p.target), p.http) {
			l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{
				Name:             statPrefix,
				FilterChainMatch: o.match(p.target),
				TransportSocket:  o.transportSocket(),
				Filters:          filters,
			})
		}
	}
	// Ports no Service names are enforced too, as Istio's pass-through
	// chains (HTTP ones where the client's ALPN or the HTTP inspector
	// says HTTP, so HTTP rules apply); a portLevelMtls port no Service
	// names gets its own.
	tcpPassthrough := append(slices.Clone(authz.TCP), tcpProxyFilter(inboundPassthroughCluster, []weighted{{cluster: inboundPassthroughCluster}}))
	httpPassthrough := []*listenerv3.Filter{inboundHCM(authz, inboundPassthroughCluster, inboundPassthroughCluster, "inbound|http|0", "")}
	extra := []uint32{0}
	for port := range pp.perPort {
		if !declared[port] {
			extra = append(extra, port)
		}
	}
	slices.Sort(extra)
	for _, port := range extra {
		for _, o := range passthroughChainOpts(pp.forPort(port)) {
			fc := &listenerv3.FilterChain{
				Name:             virtualInboundListener + "-catchall-tcp",
				FilterChainMatch: o.match(port),
				TransportSocket:  o.transportSocket(),
				Filters:          tcpPassthrough,
			}
			if o.http {
				fc.Name, fc.Filters = virtualInboundListener+"-catchall-http", httpPassthrough
			}
			l.FilterChains = append(l.FilterChains, fc)
		}
	}
	l.ListenerFilters = inboundListenerFilters(l.FilterChains)
	return l
}

// outboundListeners are the sidecar listeners shared by every sidecar:
// 0.0.0.0_<port> per HTTP port and <vip>_<port> per TCP service port,
// with filter chains for the mesh VirtualService's tls and tcp routes
// (tcproute.go). Shared unless a tcp or tls match names source labels.
func (x *index) outboundListeners(src source) []types.Resource {
	key := x.sourceKey(src)
	x.mu.Lock()
	defer x.mu.Unlock()
	if l, ok := x.listenerMemo[key]; ok {
		return l
	}
	out := []types.Resource{}
	for _, port := range x.ports {
		ps := strconv.FormatUint(uint64(port), 10)
		httpPort := false
		for _, s := range x.byPort[port] {
			p, _ := s.port(port)
			if isHTTP(p) {
				httpPort = true
				continue
			}
			if !s.VIP.IsValid() {
				continue // headless: nothing to match on
			}
			def := outboundClusterName(port, "", s.host)
			chains := x.l4Chains(x.virtualServiceFor(s.host, "mesh"), "mesh", port, src, def, []weighted{{cluster: def, weight: 100}}, nil, nil)
			l := &listenerv3.Listener{
				Name:             s.VIP.String() + "_" + ps,
				Address:          socketAddress(s.VIP.String(), port),
				BindToPort:       wrapperspb.Bool(false),
				FilterChains:     chains,
				TrafficDirection: corev3.TrafficDirection_OUTBOUND,
			}
			if needsInspector(chains) {
				l.ListenerFilters = []*listenerv3.ListenerFilter{tlsInspector}
			}
			out = append(out, l)
		}
		if httpPort {
			out = append(out, &listenerv3.Listener{
				Name:             "0.0.0.0_" + ps,
				Address:          socketAddress("0.0.0.0", port),
				BindToPort:       wrapperspb.Bool(false),
				FilterChains:     []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{rdsFilter("outbound_0.0.0.0_"+ps, ps)}}},
				TrafficDirection: corev3.TrafficDirection_OUTBOUND,
			})
		}
	}
	sortByName(out)
	x.listenerMemo[key] = out
	return out
}

func (s *service) port(n uint32) (registry.Port, bool) {
	for _, p := range s.Ports {
		if p.Port == n {
			return p, true
		}
	}
	return registry.Port{}, false
}

// outboundRoutes are the route configurations, one per HTTP port, for
// sidecars in src's namespace (short domains depend on it), and with its
// labels when a VirtualService matches on source labels.
func (x *index) outboundRoutes(src source) []types.Resource {
	ns, srcKey := src.namespace, x.sourceKey(src)
	key := ns + "|" + srcKey
	x.mu.Lock()
	if r, ok := x.routesMemo[key]; ok {
		x.mu.Unlock()
		return r
	}
	x.mu.Unlock()

	out := []types.Resource{}
	for _, port := range x.ports {
		ps := strconv.FormatUint(uint64(port), 10)
		rc := &routev3.RouteConfiguration{Name: ps, ValidateClusters: wrapperspb.Bool(false)}
		claimed := map[string]bool{}
		for _, s := range x.byPort[port] {
			if p, _ := s.port(port); !isHTTP(p) {
				continue
			}
			if vh := uniqueDomains(x.virtualHost(s, port, s.Namespace == ns, src, srcKey), claimed); vh != nil {
				rc.VirtualHosts = append(rc.VirtualHosts, vh)
			}
		}
		if len(rc.VirtualHosts) == 0 {
			continue
		}
		// As Istio's outbound traffic policy ALLOW_ANY: a host no service
		// claims (a pod IP, an external name) passes through.
		rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{
			Name:    "allow_any",
			Domains: []string{"*"},
			Routes:  []*routev3.Route{catchAllRoute("allow_any", passthroughCluster)},
		})
		out = append(out, rc)
	}
	sortByName(out)

	x.mu.Lock()
	x.routesMemo[key] = out
	x.mu.Unlock()
	return out
}

// uniqueDomains is vh without the domains an earlier virtual host of the
// route configuration claimed, nil when none is left, as Istio's
// dedupeDomains: a proxy rejects a route configuration in which two
// virtual hosts share a domain (ignoring case), and hosts of different
// services can meet, e.g. a ServiceEntry host that is another service's
// VIP or short name. vh is shared, so it is copied when it loses any.
func uniqueDomains(vh *routev3.VirtualHost, claimed map[string]bool) *routev3.VirtualHost {
	var keep []string
	for i, d := range vh.GetDomains() {
		k := strings.ToLower(d)
		if claimed[k] {
			if keep == nil {
				keep = slices.Clone(vh.GetDomains()[:i])
			}
			continue
		}
		claimed[k] = true
		if keep != nil {
			keep = append(keep, d)
		}
	}
	switch {
	case keep == nil:
		return vh
	case len(keep) == 0:
		return nil
	}
	c := proto.Clone(vh).(*routev3.VirtualHost)
	c.Domains = keep
	return c
}

// virtualHost is the outbound virtual host of s on port, as seen from its
// own namespace or from another; memoized since only that changes it.
func (x *index) virtualHost(s *service, port uint32, sameNS bool, src source, srcKey string) *routev3.VirtualHost {
	key := vhostKey{s, port, sameNS, srcKey}
	x.mu.Lock()
	vh, ok := x.vhostMemo[key]
	x.mu.Unlock()
	if ok {
		return vh
	}
	vh = &routev3.VirtualHost{
		Name:    s.host + ":" + portString(port),
		Domains: serviceDomains(s, port, sameNS),
		Routes:  x.serviceRoutes(s, port, src, srcKey),
	}
	x.mu.Lock()
	x.vhostMemo[key] = vh
	x.mu.Unlock()
	return vh
}

// serviceDomains follows Istio: the FQDN everywhere, `name.ns` and
// `name.ns.svc` everywhere in the cluster, `name` only in the service's
// own namespace, the VIP; each also with `:port`.
func serviceDomains(s *service, port uint32, sameNS bool) []string {
	ps := ":" + strconv.FormatUint(uint64(port), 10)
	names := []string{s.host}
	// A ServiceEntry host has no short forms.
	if s.se == nil {
		if sameNS {
			names = append(names, s.Name)
		}
		names = append(names, s.Name+"."+s.Namespace, s.Name+"."+s.Namespace+".svc")
	}
	if s.VIP.IsValid() {
		names = append(names, s.VIP.String())
	}
	out := make([]string, 0, 2*len(names))
	for _, n := range names {
		out = append(out, n, n+ps)
	}
	return out
}

// serviceRoutes are the routes of the virtual host of s on port: the mesh
// VirtualService's http routes, else a default route to the service.
func (x *index) serviceRoutes(s *service, port uint32, src source, srcKey string) []*routev3.Route {
	key := s.host + "|" + strconv.FormatUint(uint64(port), 10) + "|" + srcKey
	x.mu.Lock()
	r, ok := x.vhRoutesMemo[key]
	x.mu.Unlock()
	if ok {
		return r
	}
	if vs := x.virtualServiceFor(s.host, "mesh"); vs != nil {
		r = x.httpRoutes(vs, "mesh", port, src, nil)
	}
	if len(r) == 0 {
		r = []*routev3.Route{defaultOutboundRoute(outboundClusterName(port, "", s.host))}
		r[0].GetRoute().HashPolicy = x.serviceHashPolicies(s, port)
		r[0].Decorator = &routev3.Decorator{Operation: traceOperation(s.host, port)}
	}
	x.mu.Lock()
	x.vhRoutesMemo[key] = r
	x.mu.Unlock()
	return r
}

func sortByName(rs []types.Resource) {
	sort.Slice(rs, func(i, j int) bool { return resourceName(rs[i]) < resourceName(rs[j]) })
}

func resourceName(r types.Resource) string {
	switch r := r.(type) {
	case *clusterv3.Cluster:
		return r.GetName()
	case *listenerv3.Listener:
		return r.GetName()
	case *routev3.RouteConfiguration:
		return r.GetName()
	case interface{ GetClusterName() string }:
		return r.GetClusterName()
	case interface{ GetName() string }:
		return r.GetName()
	}
	return ""
}

// selectorMatches is Istio's workload selector: every label must match; an
// empty selector matches every workload.
func selectorMatches(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// hostsOnServer strips the `ns/` prefix of a Gateway server host, keeping
// only hosts a VirtualService in vsNS may use (`*/` and `./` as Istio).
func hostOnServer(h, gwNS, vsNS string) (string, bool) {
	ns, host, ok := strings.Cut(h, "/")
	if !ok {
		return h, true
	}
	switch ns {
	case "*":
		return host, true
	case ".":
		return host, vsNS == gwNS
	}
	return host, ns == vsNS
}
