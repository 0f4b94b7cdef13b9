package validation

import (
	"fmt"
	"net/netip"
	"testing"

	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	istiotype "istio.io/api/type/v1beta1"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/registry"
)

// bigMesh is n services in n/50 namespaces, three versions each (3n
// pods), each with a wizard's DestinationRule and VirtualService, a
// workload PeerAuthentication, and a namespace-wide STRICT one per namespace.
func bigMesh(n int) ([]config.Resource, []registry.Service, []registry.Workload) {
	var rs []config.Resource
	var svcs []registry.Service
	var wls []registry.Workload
	for i := range n {
		ns := fmt.Sprintf("ns%d", i/50)
		name := fmt.Sprintf("svc%d", i)
		svcs = append(svcs, registry.Service{Name: name, Namespace: ns, VIP: netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)}),
			Ports: []registry.Port{{Name: "http", Port: 9080}}, Selector: map[string]string{"app": name}})
		var subsets []*networking.Subset
		var dests []*networking.HTTPRouteDestination
		for _, v := range []string{"v1", "v2", "v3"} {
			wls = append(wls, registry.Workload{Name: name + "-" + v, Namespace: ns, Labels: map[string]string{"app": name, "version": v}})
			subsets = append(subsets, &networking.Subset{Name: v, Labels: map[string]string{"version": v}})
			dests = append(dests, &networking.HTTPRouteDestination{Destination: &networking.Destination{Host: name, Subset: v}, Weight: 33})
		}
		rs = append(rs,
			config.Resource{Kind: config.DestinationRule, Namespace: ns, Name: name, Spec: &networking.DestinationRule{Host: name, Subsets: subsets,
				TrafficPolicy: &networking.TrafficPolicy{Tls: &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_ISTIO_MUTUAL}}}},
			config.Resource{Kind: config.VirtualService, Namespace: ns, Name: name, Spec: &networking.VirtualService{Hosts: []string{name},
				Http: []*networking.HTTPRoute{{Route: dests}}}},
			config.Resource{Kind: config.PeerAuthentication, Namespace: ns, Name: name, Spec: &security.PeerAuthentication{
				Selector: nil, Mtls: &security.PeerAuthentication_MutualTLS{Mode: security.PeerAuthentication_MutualTLS_PERMISSIVE}}},
		)
		rs[len(rs)-1].Spec.(*security.PeerAuthentication).Selector = workloadSelector(name)
		if i%50 == 0 {
			rs = append(rs, config.Resource{Kind: config.PeerAuthentication, Namespace: ns, Name: "default", Spec: &security.PeerAuthentication{
				Mtls: &security.PeerAuthentication_MutualTLS{Mode: security.PeerAuthentication_MutualTLS_STRICT}}})
		}
	}
	return rs, svcs, wls
}

func BenchmarkValidate(b *testing.B) {
	for _, n := range []int{100, 1000} {
		rs, svcs, wls := bigMesh(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				res := Validate(rs, svcs, wls)
				if len(res) != len(rs) {
					b.Fatalf("%d results for %d resources", len(res), len(rs))
				}
			}
		})
	}
}

// The generated mesh is clean: the benchmark measures the checks, not
// the reporting of findings.
func TestBigMeshIsClean(t *testing.T) {
	rs, svcs, wls := bigMesh(100)
	if got := checks(Validate(rs, svcs, wls)); len(got) > 0 {
		t.Errorf("%d findings, first %s", len(got), got[0])
	}
}

func workloadSelector(app string) *istiotype.WorkloadSelector {
	return &istiotype.WorkloadSelector{MatchLabels: map[string]string{"app": app}}
}
