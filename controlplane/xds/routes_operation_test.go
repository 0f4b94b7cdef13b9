package xds

import (
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// The span names Istio gives routes (route.go getRouteOperation).
func TestRouteOperation(t *testing.T) {
	to := func(cluster string) *routev3.Route_Route {
		return &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}}
	}
	weighted := &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{}}}}
	tests := []struct {
		name string
		r    *routev3.Route
		want string
	}{
		{"default prefix", &routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}, Action: to("outbound|9080||productpage.default.svc.cluster.local")}, "productpage.default.svc.cluster.local:9080/*"},
		{"prefix with subset", &routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/static"}}, Action: to("outbound|9080|v1|productpage.default.svc.cluster.local")}, "productpage.default.svc.cluster.local:9080/static*"},
		{"exact", &routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/productpage"}}, Action: to("outbound|9080||productpage.default.svc.cluster.local")}, "productpage.default.svc.cluster.local:9080/productpage"},
		{"regex", &routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/api/v[0-9]+/.*"}}}, Action: to("outbound|9080||reviews.default.svc.cluster.local")}, "reviews.default.svc.cluster.local:9080/api/v[0-9]+/.*"},
		{"weighted", &routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}, Action: weighted}, "reviews:8080/*"},
		{"redirect", &routev3.Route{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/old"}}, Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{}}}, "reviews:8080/old"},
	}
	for _, tc := range tests {
		if got := routeOperation(tc.r, "reviews", 8080); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
