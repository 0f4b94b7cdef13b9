package xds

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/registry"
)

// bigMesh is n services in 10 namespaces, each with 10 ready pods split
// over v1/v2, a DestinationRule with both subsets and, for every other
// service, a VirtualService splitting traffic 90/10.
func bigMesh(n int) (Input, Proxy) {
	var in Input
	for i := 0; i < n; i++ {
		ns := fmt.Sprintf("ns%d", i%10)
		name := fmt.Sprintf("svc%d", i)
		in.Registry.Services = append(in.Registry.Services, registry.Service{
			Name: name, Namespace: ns,
			VIP:      netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}),
			Ports:    []registry.Port{{Name: "http", Port: 8000 + uint32(i%20)}},
			Selector: map[string]string{"app": name},
		})
		for j := 0; j < 10; j++ {
			in.Registry.Workloads = append(in.Registry.Workloads, registry.Workload{
				Name: fmt.Sprintf("%s-%d", name, j), Namespace: ns,
				IP:     netip.AddrFrom4([4]byte{198, 18, byte((i*10 + j) >> 8), byte(i*10 + j)}),
				Labels: map[string]string{"app": name, "version": fmt.Sprintf("v%d", j%2+1)},
				Ready:  true,
			})
		}
		in.Config = append(in.Config, config.Resource{Kind: config.DestinationRule, Namespace: ns, Name: name, Spec: &networking.DestinationRule{
			Host:    name,
			Subsets: []*networking.Subset{{Name: "v1", Labels: map[string]string{"version": "v1"}}, {Name: "v2", Labels: map[string]string{"version": "v2"}}},
		}})
		if i%2 == 0 {
			in.Config = append(in.Config, config.Resource{Kind: config.VirtualService, Namespace: ns, Name: name, Spec: &networking.VirtualService{
				Hosts: []string{name},
				Http: []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{
					{Destination: &networking.Destination{Host: name, Subset: "v1"}, Weight: 90},
					{Destination: &networking.Destination{Host: name, Subset: "v2"}, Weight: 10},
				}}},
			}})
		}
	}
	w := in.Registry.Workloads[0]
	return in, Proxy{Type: SidecarProxy, ID: "sidecar~" + w.IP.String() + "~" + w.Name + "." + w.Namespace + "~" + w.Namespace + ".svc.cluster.local", IP: w.IP, Name: w.Name, Namespace: w.Namespace}
}

func TestBigMesh(t *testing.T) {
	in, p := bigMesh(1000)
	res, err := Build(in, p)
	if err != nil {
		t.Fatal(err)
	}
	checkValid(t, res)
	// 1,000 services × (1 + 2 subsets) + 4 fixed/inbound + the legacy
	// zipkin collector.
	if got := len(res["type.googleapis.com/envoy.config.cluster.v3.Cluster"]); got != 3005 {
		t.Errorf("%d clusters, want 3005", got)
	}
}

func BenchmarkBuildBookinfo(b *testing.B) {
	in, proxies := loadFixture(b, "testdata/cases/all-v1.json")
	p, err := ParseNodeID(proxies["productpage"])
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Build(in, p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBuild1000Services(b *testing.B) {
	in, p := bigMesh(1000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Build(in, p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUpdate100Proxies is what Server.Update does per push: one index,
// 100 sidecars in 10 namespaces sharing its memoized parts.
func BenchmarkUpdate100Proxies(b *testing.B) {
	in, _ := bigMesh(1000)
	var proxies []Proxy
	for i := 0; i < 100; i++ {
		w := in.Registry.Workloads[i*97]
		proxies = append(proxies, Proxy{Type: SidecarProxy, IP: w.IP, Name: w.Name, Namespace: w.Namespace})
	}
	b.ReportAllocs()
	for b.Loop() {
		x := newIndex(in)
		for _, p := range proxies {
			if _, err := x.build(p); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// bigRoutes is bookinfo with a VirtualService of n HTTP routes on reviews.
func bigRoutes(t testing.TB, n int) Input {
	in, _ := loadFixture(t, "testdata/cases/default.json")
	vs := &networking.VirtualService{Hosts: []string{"reviews"}}
	for i := range n {
		vs.Http = append(vs.Http, &networking.HTTPRoute{
			Name: fmt.Sprintf("r%d", i),
			Match: []*networking.HTTPMatchRequest{{
				Uri:     &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: fmt.Sprintf("/api/%d", i)}},
				Headers: map[string]*networking.StringMatch{"x-user": {MatchType: &networking.StringMatch_Exact{Exact: fmt.Sprintf("u%d", i)}}},
			}},
			Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "reviews"}}},
		})
	}
	in.Config = append(in.Config, config.Resource{Kind: config.VirtualService, Namespace: "default", Name: "big", Spec: vs})
	return in
}

// BenchmarkBuildBigVirtualService is translation's half of finding 14:
// linear in the routes, and measured with what a push adds per proxy
// (hashing and sizing the resources).
func BenchmarkBuildBigVirtualService(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		in := bigRoutes(b, n)
		p := Proxy{Type: SidecarProxy, ID: "sidecar~198.18.0.10~productpage-v1-0.default~default.svc.cluster.local",
			IP: netip.MustParseAddr("198.18.0.10"), Name: "productpage-v1-0", Namespace: "default"}
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s := NewServer(nil)
				x := newIndex(in)
				res, err := x.build(p)
				if err != nil {
					b.Fatal(err)
				}
				s.sums, s.sumsIndex = map[types.Resource]resourceSum{}, x
				if size, _ := s.sum(res[resource.RouteType]); size < n*50 {
					b.Fatalf("routes of %d bytes", size)
				}
			}
		})
	}
}
