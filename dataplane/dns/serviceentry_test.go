package dns

import (
	"net/netip"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// ServiceEntry hosts are answered as Istio's DNS proxy answers them:
// with their (possibly auto-allocated) address, from HTTP virtual hosts
// and from TCP listeners whose routes split by weight; wildcard hosts and
// hosts without an address are not.
func TestServiceEntryNames(t *testing.T) {
	weighted, err := anypb.New(&tcpv3.TcpProxy{StatPrefix: "outbound|5432||db.internal.example", ClusterSpecifier: &tcpv3.TcpProxy_WeightedClusters{
		WeightedClusters: &tcpv3.TcpProxy_WeightedCluster{Clusters: []*tcpv3.TcpProxy_WeightedCluster_ClusterWeight{
			{Name: "outbound|5432|v1|db.internal.example", Weight: 1}, {Name: "outbound|5432|v2|db.internal.example", Weight: 1}}}}})
	if err != nil {
		t.Fatal(err)
	}
	routes := map[string]*routev3.RouteConfiguration{"80": {Name: "80", VirtualHosts: []*routev3.VirtualHost{
		{Name: "static.example.com:80", Domains: []string{"static.example.com", "static.example.com:80", "240.240.1.2", "240.240.1.2:80"}},
		{Name: "*.wikipedia.org:80", Domains: []string{"*.wikipedia.org", "*.wikipedia.org:80"}},
		{Name: "none.example.com:80", Domains: []string{"none.example.com", "none.example.com:80"}},
	}}}
	listeners := map[string]*listenerv3.Listener{"240.240.3.4_5432": {Name: "240.240.3.4_5432", FilterChains: []*listenerv3.FilterChain{{
		Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: weighted}}}}}}}
	table := BuildTable(routes, listeners)
	for _, tc := range []struct {
		name string
		want string
	}{
		{"static.example.com", "240.240.1.2"},
		{"db.internal.example", "240.240.3.4"},
		{"db", ""},
		{"en.wikipedia.org", ""},
		{"none.example.com", ""},
	} {
		got, ok := table[tc.name]
		if tc.want == "" {
			if ok {
				t.Errorf("%s = %v, want no answer", tc.name, got)
			}
			continue
		}
		if want := netip.MustParseAddr(tc.want); got != want {
			t.Errorf("%s = %v, want %v", tc.name, got, want)
		}
	}
}
