package xds

import (
	"hash/fnv"
	"net/netip"
	"slices"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/registry"
)

// serviceEntry is what a ServiceEntry adds to one of its hosts: how the
// proxy finds its endpoints.
type serviceEntry struct {
	resolution networking.ServiceEntry_Resolution
	external   bool                        // MESH_EXTERNAL
	endpoints  []*networking.WorkloadEntry // static or DNS endpoints, as given
	// sans are the entry's subjectAltNames, the identities its servers
	// are verified against (Istio's ServiceAccounts for an entry).
	sans []string
}

// autoAllocPrefix is Istio's range for auto-allocated ServiceEntry VIPs
// (ISTIO_META_DNS_AUTO_ALLOCATE): class E, routed nowhere.
var autoAllocPrefix = netip.MustParsePrefix("240.240.0.0/16")

// dnsRefreshRate is Istio's default for DNS clusters (meshConfig
// dnsRefreshRate).
var dnsRefreshRate = durationpb.New(60 * time.Second)

// addServiceEntries adds a service per ServiceEntry host, as Istio's
// ServiceEntry registry does: ports and protocols from the entry, the
// first of its addresses as VIP or, for a non-wildcard host resolved by
// the proxy or the control plane (not NONE), an address auto-allocated
// from 240.240.0.0/16, stable for the host. A host a Kubernetes Service
// (or an earlier entry, by namespace/name) already has is skipped.
func (x *index) addServiceEntries(cfg []config.Resource, workloads []registry.Workload) {
	var entries []config.Resource
	for _, r := range cfg {
		if _, ok := r.Spec.(*networking.ServiceEntry); ok {
			entries = append(entries, r)
		}
	}
	slices.SortFunc(entries, func(a, b config.Resource) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	used := map[netip.Addr]bool{}
	var alloc []*service
	for _, r := range entries {
		spec := r.Spec.(*networking.ServiceEntry)
		var ports []registry.Port
		for _, p := range spec.GetPorts() {
			ports = append(ports, registry.Port{
				Name:        p.GetName(),
				Port:        p.GetNumber(),
				TargetPort:  p.GetTargetPort(),
				AppProtocol: appProtocol(p.GetProtocol()),
			})
		}
		var vip netip.Addr
		for _, a := range spec.GetAddresses() {
			if p, err := netip.ParsePrefix(a); err == nil && p.IsSingleIP() {
				vip = p.Addr()
			} else if ip, err := netip.ParseAddr(a); err == nil {
				vip = ip
			}
			if vip.IsValid() {
				break
			}
		}
		se := &serviceEntry{
			resolution: spec.GetResolution(),
			external:   spec.GetLocation() != networking.ServiceEntry_MESH_INTERNAL,
			endpoints:  spec.GetEndpoints(),
			sans:       spec.GetSubjectAltNames(),
		}
		for _, h := range spec.GetHosts() {
			if _, ok := x.byHost[h]; ok || h == "" {
				continue
			}
			s := &service{
				Service: registry.Service{Name: h, Namespace: r.Namespace, VIP: vip, Ports: ports},
				host:    h,
				se:      se,
			}
			if sel := spec.GetWorkloadSelector().GetLabels(); len(sel) > 0 {
				// Pods selected by labels, in the entry's namespace.
				s.Selector = sel
				for _, w := range workloads {
					if w.Ready && s.Selects(w) {
						s.endpoints = append(s.endpoints, w)
					}
				}
				slices.SortFunc(s.endpoints, func(a, b registry.Workload) int { return strings.Compare(a.Key(), b.Key()) })
			}
			if vip.IsValid() {
				used[vip] = true
			} else if !strings.HasPrefix(h, "*") && se.resolution != networking.ServiceEntry_NONE {
				alloc = append(alloc, s)
			}
			x.services = append(x.services, s)
			x.byHost[h] = s
		}
	}
	// Hash each host into the range and probe linearly, so that a host
	// keeps its address when other entries come and go.
	slices.SortFunc(alloc, func(a, b *service) int { return strings.Compare(a.host, b.host) })
	base := autoAllocPrefix.Addr().As4()
	for _, s := range alloc {
		h := fnv.New32a()
		h.Write([]byte(s.host))
		n := h.Sum32() % 65534
		for range 65534 {
			v := n + 1 // skip .0.0
			ip := netip.AddrFrom4([4]byte{base[0], base[1], byte(v >> 8), byte(v)})
			if !used[ip] {
				used[ip] = true
				s.VIP = ip
				break
			}
			n = (n + 1) % 65534
		}
	}
}

// appProtocol maps a ServiceEntry port protocol to the appProtocol that
// isHTTP reads (so that the port name is not looked at).
func appProtocol(p string) string {
	switch strings.ToUpper(p) {
	case "HTTP":
		return "http"
	case "HTTP2":
		return "http2"
	case "GRPC", "GRPC-WEB":
		return "grpc"
	case "HTTPS":
		return "https"
	case "TLS":
		return "tls"
	}
	return "tcp"
}

// entryCluster builds the cluster of a ServiceEntry host's port (or
// subset, whose labels select endpoints), as Istio's
// buildOutboundClusters does by resolution: NONE passes through to the
// original destination, STATIC is EDS over the endpoints' addresses, DNS
// is a STRICT_DNS cluster over the endpoints' names (or the host), which
// the proxy resolves, DNS_ROUND_ROBIN a LOGICAL_DNS one.
func entryCluster(s *service, name string, p registry.Port, policy *networking.TrafficPolicy, subset map[string]string, mark tlsMarker) (*clusterv3.Cluster, *endpointv3.ClusterLoadAssignment) {
	var c *clusterv3.Cluster
	var la *endpointv3.ClusterLoadAssignment
	switch s.se.resolution {
	case networking.ServiceEntry_NONE:
		c = originalDstCluster(name)
		c.CircuitBreakers = nil
	case networking.ServiceEntry_DNS, networking.ServiceEntry_DNS_ROUND_ROBIN:
		t := clusterv3.Cluster_STRICT_DNS
		if s.se.resolution == networking.ServiceEntry_DNS_ROUND_ROBIN {
			t = clusterv3.Cluster_LOGICAL_DNS
		}
		c = &clusterv3.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: t},
			ConnectTimeout:       connectTimeout,
			DnsLookupFamily:      clusterv3.Cluster_V4_ONLY,
			// As istiod's cluster builder sets them; Envoy still honours both.
			DnsRefreshRate: dnsRefreshRate, //nolint:staticcheck // SA1019: Envoy still honours it
			RespectDnsTtl:  true,           //nolint:staticcheck // SA1019: Envoy still honours it
		}
		eps := entryEndpoints(s, p, subset, mark)
		if len(eps) == 0 && len(s.se.endpoints) == 0 {
			eps = []hostPort{{host: s.host, port: p.Target()}} // the host itself
		}
		if t == clusterv3.Cluster_LOGICAL_DNS && len(eps) > 1 {
			eps = eps[:1] // Envoy takes exactly one
		}
		la = hostLoadAssignment(name, eps)
		c.LoadAssignment, la = la, nil
	default: // STATIC
		c = edsCluster(name)
		la = hostLoadAssignment(name, entryEndpoints(s, p, subset, mark))
	}
	applyTrafficPolicy(c, policy)
	if c.GetType() != clusterv3.Cluster_EDS {
		la = nil
	}
	return c, la
}

type hostPort struct {
	host string
	port uint32
	tls  bool // mTLS-capable: the tlsMode endpoint metadata
}

// entryEndpoints are a ServiceEntry's endpoints for port p whose labels
// include subset's: its workload entries (an entry's `ports` maps the
// port name to its own port) or the pods its workloadSelector selects.
func entryEndpoints(s *service, p registry.Port, subset map[string]string, mark tlsMarker) []hostPort {
	var out []hostPort
	for _, w := range subsetEndpoints(s.endpoints, subset) {
		out = append(out, hostPort{w.IP.String(), p.Target(), mark(w.Namespace, w.Labels, p.Target())})
	}
	for _, we := range s.se.endpoints {
		if !selectorMatches(subset, we.GetLabels()) || we.GetAddress() == "" || strings.HasPrefix(we.GetAddress(), "unix://") {
			continue
		}
		port := p.Target()
		if n, ok := we.GetPorts()[p.Name]; ok && n != 0 {
			port = n
		}
		out = append(out, hostPort{we.GetAddress(), port, mark(s.Namespace, we.GetLabels(), port)})
	}
	return out
}

func hostLoadAssignment(cluster string, eps []hostPort) *endpointv3.ClusterLoadAssignment {
	la := loadAssignment(cluster, nil)
	for _, ep := range eps {
		la.Endpoints[0].LbEndpoints = append(la.Endpoints[0].LbEndpoints, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(ep.host, ep.port)}},
			HealthStatus:   corev3.HealthStatus_HEALTHY,
			Metadata:       endpointMetadata(ep.tls),
		})
	}
	return la
}
