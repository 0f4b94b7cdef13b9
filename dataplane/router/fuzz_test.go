package router

import (
	"net/http/httptest"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
)

// FuzzCompile feeds route configurations, as the wire carries them, to
// Compile: whatever passes Validate() must compile or fail with an error
// (the proxy's NACK), never panic, and a compiled table must route any
// request without panicking.
func FuzzCompile(f *testing.F) {
	seeds := []*routev3.RouteConfiguration{
		{Name: "80", VirtualHosts: []*routev3.VirtualHost{vh("exact", "foo.com", "foo.com:80"), vh("suffix", "*.foo.com"), vh("prefix", "foo.*"), vh("any", "*")}},
		{Name: "9080", VirtualHosts: []*routev3.VirtualHost{{Name: "r", Domains: []string{"reviews"}, Routes: []*routev3.Route{
			{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/api/v[0-9]+"}},
				Headers: []*routev3.HeaderMatcher{str("x-user", &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "a.*"}}}, true)}},
				Action: to("a")},
			{Match: pfx("/"), Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{
				WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{{Name: "v1"}, {Name: "v2"}}}}}}},
		}}}},
	}
	for _, rc := range seeds {
		b, err := proto.Marshal(rc)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "/api/v1/x", "reviews", "abc")
	}
	f.Fuzz(func(t *testing.T, wire []byte, path, host, header string) {
		rc := &routev3.RouteConfiguration{}
		if proto.Unmarshal(wire, rc) != nil || rc.Validate() != nil {
			return
		}
		tbl, err := Compile(rc)
		if err != nil {
			return
		}
		r := httptest.NewRequest("GET", "http://example.com/", nil)
		r.URL.Path, r.Host = "/"+path, host
		r.Header.Set("X-User", header)
		if rt := tbl.Match(r); rt != nil {
			rt.Pick()
			rt.MatchedPrefix()
		}
	})
}
