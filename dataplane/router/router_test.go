package router

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

func to(c string) *routev3.Route_Route {
	return &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: c}}}
}

func pfx(p string, hs ...*routev3.HeaderMatcher) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: p}, Headers: hs}
}

func str(name string, m *matcherv3.StringMatcher, invert bool) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{Name: name, InvertMatch: invert, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: m}}
}

func vh(name string, domains ...string) *routev3.VirtualHost {
	return &routev3.VirtualHost{Name: name, Domains: domains, Routes: []*routev3.Route{{Name: name, Match: pfx("/"), Action: to(name)}}}
}

func TestVirtualHost(t *testing.T) {
	tbl, err := Compile(&routev3.RouteConfiguration{Name: "80", VirtualHosts: []*routev3.VirtualHost{
		vh("exact", "foo.com", "foo.com:80"),
		vh("suffix", "*.foo.com"),
		vh("longer-suffix", "*.bar.foo.com"),
		vh("prefix", "foo.*"),
		vh("any-port", "*:8080"),
		vh("any", "*"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]string{
		"foo.com":         "exact",
		"FOO.com":         "exact",
		"foo.com:80":      "exact",
		"a.foo.com":       "suffix",
		"x.bar.foo.com":   "longer-suffix",
		"foo.org":         "prefix",
		"other:8080":      "any-port",
		"other":           "any",
		".foo.com":        "any", // the wildcard stands for one character at least
		"foo.com:81":      "prefix",
		"bar.foo.com":     "suffix",
		"z.a.bar.foo.com": "longer-suffix",
	} {
		if got := tbl.VirtualHost(host); got == nil || got.Name != want {
			t.Errorf("host %q: got %v, want %s", host, got, want)
		}
	}
	none, _ := Compile(&routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{vh("exact", "foo.com")}})
	if got := none.VirtualHost("bar.com"); got != nil {
		t.Errorf("no wildcard: got %v, want nil", got.Name)
	}
}

func TestRouteMatch(t *testing.T) {
	exact := func(v string) *matcherv3.StringMatcher {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}}
	}
	routes := []*routev3.Route{
		{Name: "exact-header", Match: pfx("/", str("end-user", exact("jason"), false)), Action: to("v2")},
		{Name: "prefix-header", Match: pfx("/", str("x-p", &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "ab"}}, false)), Action: to("p")},
		{Name: "suffix-header", Match: pfx("/", str("x-s", &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: "yz"}}, false)), Action: to("s")},
		{Name: "contains-header", Match: pfx("/", str("x-c", &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Contains{Contains: "mid"}, IgnoreCase: true}, false)), Action: to("c")},
		{Name: "regex-header", Match: pfx("/", str("x-r", &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "v[0-9]"}}}, false)), Action: to("r")},
		{Name: "present", Match: pfx("/", &routev3.HeaderMatcher{Name: "x-present", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}), Action: to("present")},
		{Name: "inverted", Match: pfx("/inv", str("x-i", exact("no"), true)), Action: to("inverted")},
		{Name: "path", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/exact"}}, Action: to("path")},
		{Name: "regex", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/r/[a-z]+"}}}, Action: to("regex")},
		{Name: "authority", Match: pfx("/auth", &routev3.HeaderMatcher{Name: ":authority", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exact("h")}}), Action: to("auth")},
		{Name: "default", Match: pfx("/"), Action: to("default")},
	}
	tbl, err := Compile(&routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{{Name: "h", Domains: []string{"*"}, Routes: routes}}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		hdr  map[string]string
		want string
	}{
		{"/", map[string]string{"end-user": "jason"}, "exact-header"},
		{"/", map[string]string{"end-user": "json"}, "default"},
		{"/", map[string]string{"x-p": "abc"}, "prefix-header"},
		{"/", map[string]string{"x-s": "xyz"}, "suffix-header"},
		{"/", map[string]string{"x-c": "aMIDb"}, "contains-header"},
		{"/", map[string]string{"x-r": "v3"}, "regex-header"},
		{"/", map[string]string{"x-r": "v33"}, "default"},
		{"/", map[string]string{"x-present": ""}, "present"},
		// Envoy: a missing header never matches an inverted string match
		// (treat_missing_header_as_empty is what makes it).
		{"/inv", nil, "default"},
		{"/inv", map[string]string{"x-i": "no"}, "default"},
		{"/inv", map[string]string{"x-i": "yes"}, "inverted"},
		{"/exact", nil, "path"},
		{"/exact/", nil, "default"},
		{"/r/abc?q=1", nil, "regex"},
		{"/r/abc1", nil, "default"},
		{"/auth", nil, "authority"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", tt.path, nil)
		r.Host = "h"
		for k, v := range tt.hdr {
			r.Header.Set(k, v)
		}
		got := tbl.Match(r)
		if got == nil || got.Name != tt.want {
			t.Errorf("%s %v: got %v, want %s", tt.path, tt.hdr, got, tt.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	for name, rc := range map[string]*routev3.RouteConfiguration{
		"bad regex": {VirtualHosts: []*routev3.VirtualHost{{Name: "h", Domains: []string{"*"}, Routes: []*routev3.Route{
			{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "("}}}, Action: to("x")}}}}},
		"duplicate domain": {VirtualHosts: []*routev3.VirtualHost{vh("a", "x"), vh("b", "x")}},
		"zero weights": {VirtualHosts: []*routev3.VirtualHost{{Name: "h", Domains: []string{"*"}, Routes: []*routev3.Route{{Match: pfx("/"),
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{}}}}}}}}},
	} {
		if _, err := Compile(rc); err == nil {
			t.Errorf("%s: compiled, want an error", name)
		}
	}
}

func TestTimeout(t *testing.T) {
	tbl, _ := Compile(&routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{{Name: "h", Domains: []string{"*"}, Routes: []*routev3.Route{
		{Match: pfx("/none"), Action: &routev3.Route_Route{Route: &routev3.RouteAction{Timeout: durationpb.New(0), ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "a"}}}},
		{Match: pfx("/"), Action: to("a")},
	}}}})
	for path, want := range map[string]string{"/none": "0s", "/": DefaultTimeout.String()} {
		r := httptest.NewRequest("GET", path, nil)
		if got := tbl.Match(r).Timeout.String(); got != want {
			t.Errorf("%s: timeout %s, want %s", path, got, want)
		}
	}
}

// BenchmarkMatch routes among 50 virtual hosts of 5 routes each, as a
// mid-sized mesh's port route configuration.
func BenchmarkMatch(b *testing.B) {
	rc := &routev3.RouteConfiguration{Name: "9080"}
	for i := range 50 {
		host := fmt.Sprintf("svc%d.default.svc.cluster.local", i)
		v := &routev3.VirtualHost{Name: host, Domains: []string{host, host + ":9080", fmt.Sprintf("svc%d", i), fmt.Sprintf("svc%d:9080", i)}}
		for j := range 4 {
			v.Routes = append(v.Routes, &routev3.Route{Match: pfx(fmt.Sprintf("/api/v%d", j), str("end-user", &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "jason"}}, false)), Action: to("x")})
		}
		v.Routes = append(v.Routes, &routev3.Route{Match: pfx("/"), Action: to(host)})
		rc.VirtualHosts = append(rc.VirtualHosts, v)
	}
	tbl, err := Compile(rc)
	if err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/productpage?u=normal", nil)
	r.Host = "svc42:9080"
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if rt := tbl.Match(r); rt == nil || rt.Cluster != "svc42.default.svc.cluster.local" {
			b.Fatal("wrong route")
		}
	}
}

// BenchmarkHeaderOps applies a route's header mutations as a
// VirtualService's headers.request writes them (set, add, remove) to a
// request's headers.
func BenchmarkHeaderOps(b *testing.B) {
	o := compileHeaderOps([]*corev3.HeaderValueOption{
		{Header: &corev3.HeaderValue{Key: "x-mesh", Value: "meshlab"}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD},
		{Header: &corev3.HeaderValue{Key: "x-version", Value: "v2"}, AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD},
	}, []string{"x-debug"})
	h := http.Header{"Accept": {"*/*"}, "User-Agent": {"fortio.org/fortio-1.68.2"}, "X-Request-Id": {"5f1c0f5e-5b5a-4c3e-9b36-6d3f2c1f7a10"}}
	b.ReportAllocs()
	for b.Loop() {
		h["X-Debug"] = nil
		o.Apply(h)
		delete(h, "X-Version")
	}
	if h.Get("X-Mesh") != "meshlab" || h.Get("X-Debug") != "" {
		b.Fatalf("headers after the mutations: %v", h)
	}
}
