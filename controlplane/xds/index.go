package xds

import (
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	meshv1 "istio.io/api/mesh/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/registry"
)

// index is an Input with the lookups translation needs, built once per
// Input and shared by every proxy built from it. What does not depend on
// the proxy is memoized here, so building N proxies costs one translation
// of the mesh plus N small per-proxy parts.
type index struct {
	in Input
	// mesh is in.Mesh, or Istio's defaults when there is none.
	mesh *meshv1.MeshConfig
	// tel are the Telemetry resources (telemetry.go).
	tel telemetries

	services []*service            // sorted by hostname
	byHost   map[string]*service   // FQDN → service
	byPort   map[uint32][]*service // service port → services, sorted by hostname
	ports    []uint32              // every service port, sorted
	byIP     map[netip.Addr]*registry.Workload

	virtualServices []*virtualService                      // sorted by namespace/name
	vsByHost        map[string][]*virtualService           // exact (non-wildcard) host → VirtualServices, in order
	vsWildcard      []*virtualService                      // those with a wildcard host, in order
	drByHost        map[string]map[string]*destinationRule // namespace → exact host → first DestinationRule
	drWildcard      map[string][]*destinationRule          // namespace → wildcard DestinationRules, in order
	gateways        []*gateway
	// authz are the AuthorizationPolicies, in store order, so that each
	// sidecar's build looks through them rather than all the config
	// (AuthzPoliciesFor puts a workload's in Istio's order).
	authz []config.Resource
	// peer are the PeerAuthentications, indexed once (peerauthn.go).
	peer peerAuthns
	// reqAuthn are the RequestAuthentications, in store order
	// (RequestAuthnFor puts a workload's in Istio's order).
	reqAuthn []config.Resource

	mu           sync.Mutex
	outboundMemo map[string]*outbound        // by proxy namespace
	routesMemo   map[string][]types.Resource // by namespace|sourceKey
	listenerMemo map[string][]types.Resource // by sourceKey
	vhRoutesMemo map[string][]*routev3.Route // by host|port|sourceKey
	clusterMemo  map[clusterKey]*outbound    // one service's clusters under one DestinationRule
	vhostMemo    map[vhostKey]*routev3.VirtualHost
	// telemetryMemo and decoratedMemo: each proxy's telemetry, and the
	// shared listeners with one telemetry applied (telemetry_apply.go).
	telemetryMemo map[string]*proxyTelemetry
	decoratedMemo map[decoratedKey]*listenerv3.Listener

	// tlsMu guards istioTLSMemo apart from mu: cluster TLS is built both
	// with mu held (sidecar clusters) and without (gateway clusters).
	tlsMu        sync.Mutex
	istioTLSMemo map[istioTLSKey][]byte
}

type clusterKey struct {
	svc *service
	dr  *destinationRule
}

type vhostKey struct {
	svc    *service
	port   uint32
	sameNS bool
	src    string // sourceKey
}

type service struct {
	registry.Service
	host      string
	endpoints []registry.Workload // ready, selected, sorted by name
	se        *serviceEntry       // nil for a Kubernetes Service (serviceentry.go)

	sansOnce sync.Once
	sans     []string // serviceAccounts, computed once (clustertls.go)
}

type virtualService struct {
	res      config.Resource
	spec     *networking.VirtualService
	hosts    []string // resolved to FQDN where short
	gateways []string // "mesh" or namespace/name
}

func (vs *virtualService) boundTo(gw string) bool {
	if len(vs.gateways) == 0 {
		return gw == "mesh"
	}
	return slices.Contains(vs.gateways, gw)
}

type destinationRule struct {
	res  config.Resource
	spec *networking.DestinationRule
	host string
}

type gateway struct {
	res  config.Resource
	spec *networking.Gateway
}

func newIndex(in Input) *index {
	x := &index{
		in:            in,
		mesh:          meshOrDefault(in.Mesh),
		tel:           newTelemetries(in.Config),
		telemetryMemo: map[string]*proxyTelemetry{},
		decoratedMemo: map[decoratedKey]*listenerv3.Listener{},
		byHost:        map[string]*service{},
		byPort:        map[uint32][]*service{},
		byIP:          map[netip.Addr]*registry.Workload{},
		vsByHost:      map[string][]*virtualService{},
		drByHost:      map[string]map[string]*destinationRule{},
		drWildcard:    map[string][]*destinationRule{},
		outboundMemo:  map[string]*outbound{},
		clusterMemo:   map[clusterKey]*outbound{},
		vhostMemo:     map[vhostKey]*routev3.VirtualHost{},
		routesMemo:    map[string][]types.Resource{},
		listenerMemo:  map[string][]types.Resource{},
		vhRoutesMemo:  map[string][]*routev3.Route{},
		istioTLSMemo:  map[istioTLSKey][]byte{},
	}

	// Label index of ready workloads, so selecting endpoints is linear in
	// the workloads a selector's first label names rather than in all.
	byLabel := map[string][]int{}
	for i := range in.Registry.Workloads {
		w := &in.Registry.Workloads[i]
		x.byIP[w.IP] = w
		if !w.Ready {
			continue
		}
		for k, v := range w.Labels {
			key := w.Namespace + "/" + k + "=" + v
			byLabel[key] = append(byLabel[key], i)
		}
	}
	for _, svc := range in.Registry.Services {
		s := &service{Service: svc, host: svc.Hostname()}
		if len(svc.Selector) > 0 {
			keys := make([]string, 0, len(svc.Selector))
			for k := range svc.Selector {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, i := range byLabel[svc.Namespace+"/"+keys[0]+"="+svc.Selector[keys[0]]] {
				if w := in.Registry.Workloads[i]; svc.Selects(w) {
					s.endpoints = append(s.endpoints, w)
				}
			}
			sort.Slice(s.endpoints, func(i, j int) bool { return s.endpoints[i].Key() < s.endpoints[j].Key() })
		}
		x.services = append(x.services, s)
		x.byHost[s.host] = s
	}
	x.addServiceEntries(in.Config, in.Registry.Workloads)
	sort.Slice(x.services, func(i, j int) bool { return x.services[i].host < x.services[j].host })
	for _, s := range x.services {
		for _, p := range s.Ports {
			if len(x.byPort[p.Port]) == 0 {
				x.ports = append(x.ports, p.Port)
			}
			if l := x.byPort[p.Port]; len(l) == 0 || l[len(l)-1] != s {
				x.byPort[p.Port] = append(l, s)
			}
		}
	}
	slices.Sort(x.ports)

	var drs []*destinationRule
	var pas []*peerAuthn
	for _, r := range in.Config {
		switch spec := r.Spec.(type) {
		case *networking.VirtualService:
			vs := &virtualService{res: r, spec: spec}
			for _, h := range spec.GetHosts() {
				vs.hosts = append(vs.hosts, resolveHost(h, r.Namespace))
			}
			for _, g := range spec.GetGateways() {
				vs.gateways = append(vs.gateways, gatewayKey(g, r.Namespace))
			}
			x.virtualServices = append(x.virtualServices, vs)
		case *networking.DestinationRule:
			drs = append(drs, &destinationRule{res: r, spec: spec, host: resolveHost(spec.GetHost(), r.Namespace)})
		case *networking.Gateway:
			x.gateways = append(x.gateways, &gateway{res: r, spec: spec})
		case *security.AuthorizationPolicy:
			x.authz = append(x.authz, r)
		case *security.PeerAuthentication:
			pas = append(pas, &peerAuthn{res: r, spec: spec})
		case *security.RequestAuthentication:
			x.reqAuthn = append(x.reqAuthn, r)
		}
	}
	x.peer = newPeerAuthns(pas)
	byKey := func(a, b config.Resource) int { return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name) }
	slices.SortFunc(x.virtualServices, func(a, b *virtualService) int { return byKey(a.res, b.res) })
	// Istio's initGateways and initDestinationRules take these oldest
	// first: the oldest Gateway decides a port's kind, the oldest
	// DestinationRule of a host in a namespace is the one that applies.
	slices.SortFunc(x.gateways, func(a, b *gateway) int { return oldestFirst(a.res, b.res) })
	slices.SortFunc(drs, func(a, b *destinationRule) int { return oldestFirst(a.res, b.res) })
	for _, vs := range x.virtualServices {
		wild := false
		for _, h := range vs.hosts {
			if strings.HasPrefix(h, "*") {
				wild = true
			} else if l := x.vsByHost[h]; len(l) == 0 || l[len(l)-1] != vs {
				x.vsByHost[h] = append(l, vs)
			}
		}
		if wild {
			x.vsWildcard = append(x.vsWildcard, vs)
		}
	}
	for _, dr := range drs {
		ns := dr.res.Namespace
		if strings.HasPrefix(dr.host, "*") {
			x.drWildcard[ns] = append(x.drWildcard[ns], dr)
			continue
		}
		if x.drByHost[ns] == nil {
			x.drByHost[ns] = map[string]*destinationRule{}
		}
		if _, ok := x.drByHost[ns][dr.host]; !ok {
			x.drByHost[ns][dr.host] = dr
		}
	}
	return x
}

// oldestFirst is Istio's sortConfigByCreationTime (pilot/pkg/model/config.go)
// as a comparison: older first; the API server keeps whole seconds, so
// ties are common and go by name, then namespace.
func oldestFirst(a, b config.Resource) int {
	if c := a.CreationTime().Compare(b.CreationTime()); c != 0 {
		return c
	}
	if c := strings.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	return strings.Compare(a.Namespace, b.Namespace)
}

// resolveHost is Istio's ResolveShortnameToFQDN: a name without dots is
// relative to the namespace of the resource naming it.
func resolveHost(h, namespace string) string {
	if h == "" || h == "*" || strings.Contains(h, ".") {
		return h
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return h
	}
	return h + "." + namespace + ".svc." + registry.ClusterDomain
}

// hostMatches reports whether pattern (a host, `*`, or `*.suffix`) covers host.
func hostMatches(pattern, host string) bool {
	if pattern == "*" {
		return true
	}
	if suffix, ok := strings.CutPrefix(pattern, "*"); ok {
		return strings.HasSuffix(host, suffix) && len(host) > len(suffix)
	}
	return pattern == host
}

// intersectHosts returns the more specific of two hosts when one covers
// the other (both may be wildcards), or "" when they are disjoint.
func intersectHosts(a, b string) string {
	switch {
	case hostMatches(a, b):
		return b
	case hostMatches(b, a):
		return a
	}
	return ""
}

// virtualServiceFor picks the VirtualService bound to gw that routes host:
// an exact host beats the longest wildcard; ties go to namespace/name order.
func (x *index) virtualServiceFor(host, gw string) *virtualService {
	for _, vs := range x.vsByHost[host] {
		if vs.boundTo(gw) {
			return vs
		}
	}
	var best *virtualService
	bestLen := -1
	for _, vs := range x.vsWildcard {
		if !vs.boundTo(gw) {
			continue
		}
		for _, h := range vs.hosts {
			if strings.HasPrefix(h, "*") && hostMatches(h, host) && len(h) > bestLen {
				best, bestLen = vs, len(h)
			}
		}
	}
	return best
}

// destinationRuleFor finds the DestinationRule for a service host as Istio
// does: the proxy's namespace first, then the service's, then the root
// namespace; an exact host beats the longest wildcard within a namespace.
func (x *index) destinationRuleFor(host, proxyNS, svcNS string) *destinationRule {
	for _, ns := range []string{proxyNS, svcNS, rootNamespace} {
		if dr := x.drByHost[ns][host]; dr != nil {
			return dr
		}
		var best *destinationRule
		for _, dr := range x.drWildcard[ns] {
			if hostMatches(dr.host, host) && (best == nil || len(dr.host) > len(best.host)) {
				best = dr
			}
		}
		if best != nil {
			return best
		}
	}
	return nil
}

// subsetEndpoints are the service's endpoints whose labels include the subset's.
func subsetEndpoints(eps []registry.Workload, labels map[string]string) []registry.Workload {
	var out []registry.Workload
	for _, w := range eps {
		ok := true
		for k, v := range labels {
			if w.Labels[k] != v {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, w)
		}
	}
	return out
}
