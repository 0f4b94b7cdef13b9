package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlab/meshlab/dataplane/xdsclient"
)

// corsListener is a gateway listener whose connection manager has the
// CORS filter (when cors is set) before the router, as Istio emits it.
func corsListener(name, routes string, cors bool) *listenerv3.Listener {
	filters := []*hcmv3.HttpFilter{{Name: wellknown.Router, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}}}
	if cors {
		filters = append([]*hcmv3.HttpFilter{{Name: wellknown.CORS, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&corsv3.Cors{})}}}, filters...)
	}
	h := &hcmv3.HttpConnectionManager{StatPrefix: "outbound_0.0.0.0_" + routes,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: ads(), RouteConfigName: routes}},
		HttpFilters:    filters}
	return &listenerv3.Listener{Name: name, Address: sockAddr("127.0.0.1", 0), FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{
		{Name: wellknown.HTTPConnectionManager, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(h)}}}}}}
}

// corsCfg is the policy Istio's TranslateCORSPolicy makes of a
// corsPolicy with allowOrigins exact, prefix and regex.
func corsCfg(forward bool) map[string]*anypb.Any {
	return map[string]*anypb.Any{wellknown.CORS: mustAny(&corsv3.CorsPolicy{
		AllowOriginStringMatch: []*matcherv3.StringMatcher{
			exact("https://example.com"),
			{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "https://app."}},
			{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: `https://[a-z]+\.corp\.example`}}},
		},
		AllowMethods: "POST,GET", AllowHeaders: "X-Foo,X-Bar", ExposeHeaders: "X-Exposed", MaxAge: "86400",
		AllowCredentials:             wrapperspb.Bool(true),
		ForwardNotMatchingPreflights: wrapperspb.Bool(forward),
		FilterEnabled:                &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 100}},
	})}
}

func TestCORS(t *testing.T) {
	a := newEcho(t, "127.0.0.2", "a", func(_ int64, r *http.Request) int {
		if r.Method == http.MethodOptions {
			return http.StatusNoContent // a preflight that reached the backend
		}
		return 0
	})
	routes := func(name string) *routev3.RouteConfiguration {
		return &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{{Name: "any", Domains: []string{"*"}, Routes: []*routev3.Route{
			{Name: "ignore", Match: prefix("/ignore"), Action: toCluster("a"), TypedPerFilterConfig: corsCfg(false)},
			{Name: "direct", Match: prefix("/direct"), Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 418}},
				TypedPerFilterConfig: corsCfg(true)},
			{Name: "cors", Match: prefix("/"), Action: toCluster("a"), TypedPerFilterConfig: corsCfg(true)},
		}}}}
	}
	cp := newControlPlane(t, "127.0.0.1:0")
	cp.set("1", corsListener("0.0.0.0_8080", "http.8080", true), routes("http.8080"),
		corsListener("0.0.0.0_8081", "http.8081", false), routes("http.8081"),
		edsCluster("a"), cla("a", a.addr))
	p, _ := startLoggingProxy(t, cp.addr)
	withFilter, without := p.addr(t, "0.0.0.0_8080"), p.addr(t, "0.0.0.0_8081")
	p.waitVersion(t, xdsclient.EndpointType, "1")

	preflight := []string{"Origin", "", "Access-Control-Request-Method", "PUT", "Access-Control-Request-Headers", "X-Foo"}
	withOrigin := func(h []string, origin string) []string {
		out := append([]string(nil), h...)
		out[1] = origin
		return out
	}
	tests := []struct {
		name, addr, method, path string
		hdr                      []string
		wantCode                 int
		wantBackend              bool
		want                     map[string]string // "" means absent
	}{
		{name: "preflight exact origin", addr: withFilter, method: "OPTIONS", path: "/", hdr: withOrigin(preflight, "https://example.com"), wantCode: 200,
			want: map[string]string{"Access-Control-Allow-Origin": "https://example.com", "Access-Control-Allow-Methods": "POST,GET",
				"Access-Control-Allow-Headers": "X-Foo,X-Bar", "Access-Control-Max-Age": "86400", "Access-Control-Allow-Credentials": "true",
				"Access-Control-Expose-Headers": "", "X-Backend": ""}},
		{name: "preflight prefix origin", addr: withFilter, method: "OPTIONS", path: "/", hdr: withOrigin(preflight, "https://app.example.org"), wantCode: 200,
			want: map[string]string{"Access-Control-Allow-Origin": "https://app.example.org"}},
		{name: "preflight regex origin", addr: withFilter, method: "OPTIONS", path: "/", hdr: withOrigin(preflight, "https://dev.corp.example"), wantCode: 200,
			want: map[string]string{"Access-Control-Allow-Origin": "https://dev.corp.example"}},
		{name: "preflight other origin goes upstream", addr: withFilter, method: "OPTIONS", path: "/", hdr: withOrigin(preflight, "https://evil.example"),
			wantCode: 204, wantBackend: true, want: map[string]string{"Access-Control-Allow-Origin": ""}},
		{name: "preflight other origin not forwarded", addr: withFilter, method: "OPTIONS", path: "/ignore", hdr: withOrigin(preflight, "https://evil.example"),
			wantCode: 200, want: map[string]string{"Access-Control-Allow-Origin": "", "Access-Control-Allow-Methods": ""}},
		{name: "OPTIONS without request method goes upstream", addr: withFilter, method: "OPTIONS", path: "/", hdr: []string{"Origin", "https://example.com"},
			wantCode: 204, wantBackend: true, want: map[string]string{"Access-Control-Allow-Origin": "https://example.com"}},
		{name: "simple request", addr: withFilter, method: "GET", path: "/", hdr: []string{"Origin", "https://example.com"}, wantCode: 200, wantBackend: true,
			want: map[string]string{"Access-Control-Allow-Origin": "https://example.com", "Access-Control-Allow-Credentials": "true",
				"Access-Control-Expose-Headers": "X-Exposed", "Access-Control-Allow-Methods": ""}},
		{name: "simple request other origin", addr: withFilter, method: "GET", path: "/", hdr: []string{"Origin", "https://evil.example"}, wantCode: 200, wantBackend: true,
			want: map[string]string{"Access-Control-Allow-Origin": "", "Access-Control-Expose-Headers": ""}},
		{name: "no origin", addr: withFilter, method: "GET", path: "/", wantCode: 200, wantBackend: true,
			want: map[string]string{"Access-Control-Allow-Origin": ""}},
		{name: "direct response", addr: withFilter, method: "GET", path: "/direct", hdr: []string{"Origin", "https://example.com"}, wantCode: 418,
			want: map[string]string{"Access-Control-Allow-Origin": "https://example.com"}},
		{name: "without the filter the policy is idle", addr: without, method: "OPTIONS", path: "/", hdr: withOrigin(preflight, "https://example.com"),
			wantCode: 204, wantBackend: true, want: map[string]string{"Access-Control-Allow-Origin": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := a.count.Load()
			req, err := http.NewRequest(tt.method, "http://"+tt.addr+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = "x"
			for i := 0; i+1 < len(tt.hdr); i += 2 {
				req.Header.Set(tt.hdr[i], tt.hdr[i+1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantCode {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.wantCode)
			}
			if reached := a.count.Load() != before; reached != tt.wantBackend {
				t.Errorf("backend reached: %v, want %v", reached, tt.wantBackend)
			}
			for k, want := range tt.want {
				if got := strings.Join(resp.Header.Values(k), "|"); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

// The CORS filter replaces an upstream's own allow-origin rather than
// adding a second value.
func TestCORSReplacesUpstreamHeaders(t *testing.T) {
	b := newEcho(t, "127.0.0.2", "b", nil)
	cp := newControlPlane(t, "127.0.0.1:0")
	cp.set("1", corsListener("0.0.0.0_8080", "http.8080", true),
		&routev3.RouteConfiguration{Name: "http.8080", VirtualHosts: []*routev3.VirtualHost{{Name: "any", Domains: []string{"*"}, Routes: []*routev3.Route{
			{Name: "cors", Match: prefix("/"), Action: toCluster("b"), TypedPerFilterConfig: corsCfg(true),
				ResponseHeadersToAdd: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "access-control-allow-origin", Value: "*"}}}},
		}}}}, edsCluster("b"), cla("b", b.addr))
	p, _ := startLoggingProxy(t, cp.addr)
	addr := p.addr(t, "0.0.0.0_8080")
	p.waitVersion(t, xdsclient.EndpointType, "1")
	_, _, h := get(t, http.DefaultClient, addr, "x", "/", "Origin", "https://example.com")
	if got := h.Values("Access-Control-Allow-Origin"); len(got) != 1 || got[0] != "https://example.com" {
		t.Errorf("Access-Control-Allow-Origin = %q, want only the request's origin", got)
	}
}
