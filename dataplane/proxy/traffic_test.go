package proxy

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlab/meshlab/dataplane/xdsclient"
)

// syncBuffer is an access log sink tests can read while the proxy writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startLoggingProxy is startProxy with an access log.
func startLoggingProxy(t testing.TB, cpAddr string) (*testProxy, *syncBuffer) {
	t.Helper()
	log := &syncBuffer{}
	return runProxy(t, cpAddr, Config{AccessLog: log}), log
}

// lastLog flushes the access log and returns its last line.
func (tp *testProxy) lastLog(log *syncBuffer) string {
	tp.flushLogs()
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	return lines[len(lines)-1]
}

// logFlags is the %RESPONSE_FLAGS% field of an access log line.
func logFlags(line string) string {
	_, rest, _ := strings.Cut(line, "\" ")
	f := strings.Fields(rest)
	if len(f) < 2 {
		return ""
	}
	return f[1]
}

// faultListener is a gateway listener whose connection manager has the
// fault filter before the router, as Istio emits it.
func faultListener(name, routes string) *listenerv3.Listener {
	h := &hcmv3.HttpConnectionManager{StatPrefix: "outbound_0.0.0.0_" + routes,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: ads(), RouteConfigName: routes}},
		HttpFilters: []*hcmv3.HttpFilter{
			{Name: wellknown.Fault, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&faultv3.HTTPFault{})}},
			{Name: wellknown.Router, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}},
		}}
	return &listenerv3.Listener{Name: name, Address: sockAddr("127.0.0.1", 0), FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{
		{Name: wellknown.HTTPConnectionManager, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(h)}}}}}}
}

// echoBackend is a loopback backend that answers with its name and reports what
// it saw (host, path, chosen headers) in X-Saw-* headers. fail, when set,
// decides per request (numbered from 1) a status to fail with, or 0.
type echoBackend struct {
	name  string
	addr  netip.AddrPort
	count atomic.Int64
	fail  func(n int64, r *http.Request) int
	seen  chan *http.Request // copies of requests, when set
}

func newEcho(t testing.TB, ip, name string, fail func(int64, *http.Request) int) *echoBackend {
	t.Helper()
	e := &echoBackend{name: name, fail: fail}
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatalf("listen backend: %v", err)
	}
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := e.count.Add(1)
		body, _ := io.ReadAll(r.Body)
		if e.seen != nil {
			c := r.Clone(context.Background())
			c.Body = io.NopCloser(bytes.NewReader(body))
			select {
			case e.seen <- c:
			default:
			}
		}
		if e.fail != nil {
			if code := e.fail(n, r); code == -1 {
				<-r.Context().Done() // hang until the proxy gives up
				return
			} else if code != 0 {
				w.WriteHeader(code)
				return
			}
		}
		h := w.Header()
		h.Set("X-Backend", name)
		h.Set("X-Saw-Host", r.Host)
		h.Set("X-Saw-Path", r.URL.RequestURI())
		h.Set("X-Saw-Body", string(body))
		for _, k := range []string{"X-Route", "X-Added", "X-Drop", "X-Subset", "X-Envoy-Original-Path"} {
			h[http.CanonicalHeaderKey("X-Saw-"+strings.TrimPrefix(k, "X-"))] = r.Header[k]
		}
		h.Set("Server", "echo")
		io.WriteString(w, name)
	}))
	s.Listener.Close()
	s.Listener = ln
	s.Start()
	t.Cleanup(s.Close)
	e.addr = netip.MustParseAddrPort(ln.Addr().String())
	return e
}

func exact(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

func hdr(name string, m *matcherv3.StringMatcher) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: m}}
}

func faultCfg(f *faultv3.HTTPFault) map[string]*anypb.Any {
	return map[string]*anypb.Any{wellknown.Fault: mustAny(f)}
}

func million(pct float64) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{Numerator: uint32(pct * 10000), Denominator: typev3.FractionalPercent_MILLION}
}

func retryRoute(cluster, on string, n uint32, perTry time.Duration, codes ...uint32) *routev3.Route_Route {
	a := toCluster(cluster)
	a.Route.RetryPolicy = &routev3.RetryPolicy{RetryOn: on, NumRetries: wrapperspb.UInt32(n), RetriableStatusCodes: codes,
		RetryBackOff: &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(time.Millisecond)}}
	if perTry > 0 {
		a.Route.RetryPolicy.PerTryTimeout = durationpb.New(perTry)
	}
	return a
}

// trafficSetup serves routes on a fault-enabled gateway listener with
// clusters named after the given backends.
func trafficSetup(t *testing.T, vhosts []*routev3.VirtualHost, backends ...*echoBackend) (string, *testProxy, *syncBuffer) {
	t.Helper()
	cp := newControlPlane(t, "127.0.0.1:0")
	res := []types.Resource{faultListener("0.0.0.0_8080", "http.8080"), &routev3.RouteConfiguration{Name: "http.8080", VirtualHosts: vhosts}}
	for _, b := range backends {
		res = append(res, edsCluster(b.name), cla(b.name, b.addr))
	}
	res = append(res, edsCluster("down"), cla("down", closedPort(t)))
	cp.set("1", res...)
	p, log := startLoggingProxy(t, cp.addr)
	addr := p.addr(t, "0.0.0.0_8080")
	p.waitVersion(t, xdsclient.EndpointType, "1")
	return addr, p, log
}

func TestMatches(t *testing.T) {
	a := newEcho(t, "127.0.0.2", "a", nil)
	b := newEcho(t, "127.0.0.3", "b", nil)
	routes := []*routev3.Route{
		{Name: "exact", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/exact"}}, Action: toCluster("b")},
		{Name: "icase", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/ICase"}, CaseSensitive: wrapperspb.Bool(false)}, Action: toCluster("b")},
		{Name: "regex", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/re/[0-9]+"}}}, Action: toCluster("b")},
		{Name: "method", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/m"}, Headers: []*routev3.HeaderMatcher{hdr(":method", exact("POST"))}}, Action: toCluster("b")},
		{Name: "authority", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/auth"}, Headers: []*routev3.HeaderMatcher{hdr(":authority", &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "www."}})}}, Action: toCluster("b")},
		{Name: "scheme", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/scheme"}, Headers: []*routev3.HeaderMatcher{hdr(":scheme", exact("https"))}}, Action: toCluster("b")},
		{Name: "header-regex", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/h"}, Headers: []*routev3.HeaderMatcher{hdr("x-v", &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "v[12]"}}})}}, Action: toCluster("b")},
		{Name: "without", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/without"}, Headers: []*routev3.HeaderMatcher{
			{Name: "x-mode", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exact("off")}, InvertMatch: true, TreatMissingHeaderAsEmpty: true},
			{Name: "x-safe", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}, InvertMatch: true}}}, Action: toCluster("b")},
		{Name: "query", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/q"}, QueryParameters: []*routev3.QueryParameterMatcher{
			{Name: "debug", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}},
			{Name: "v", QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "[0-9]+"}}}}}}}, Action: toCluster("b")},
		{Name: "first-wins", Match: prefix("/first"), Action: toCluster("b")},
		{Name: "never", Match: prefix("/first"), Action: toCluster("a")},
		{Name: "default", Match: prefix("/"), Action: toCluster("a")},
	}
	addr, _, _ := trafficSetup(t, []*routev3.VirtualHost{{Name: "any", Domains: []string{"*"}, Routes: routes}}, a, b)
	tests := []struct {
		name, method, host, path string
		hdr                      []string
		want                     string
	}{
		{"exact", "GET", "x", "/exact", nil, "b"},
		{"exact is exact", "GET", "x", "/exact/more", nil, "a"},
		{"ignore uri case", "GET", "x", "/icase/x", nil, "b"},
		{"regex", "GET", "x", "/re/12", nil, "b"},
		{"regex anchored", "GET", "x", "/re/12/x", nil, "a"},
		{"method", "POST", "x", "/m", nil, "b"},
		{"method mismatch", "GET", "x", "/m", nil, "a"},
		{"authority prefix", "GET", "www.example.com", "/auth", nil, "b"},
		{"authority mismatch", "GET", "example.com", "/auth", nil, "a"},
		{"scheme is http here", "GET", "x", "/scheme", nil, "a"},
		{"header regex", "GET", "x", "/h", []string{"x-v", "v2"}, "b"},
		{"header regex mismatch", "GET", "x", "/h", []string{"x-v", "v3"}, "a"},
		{"header missing", "GET", "x", "/h", nil, "a"},
		{"without: neither header", "GET", "x", "/without", nil, "b"},
		{"without: mode on", "GET", "x", "/without", []string{"x-mode", "on"}, "b"},
		{"without: mode off", "GET", "x", "/without", []string{"x-mode", "off"}, "a"},
		{"without: safe present", "GET", "x", "/without", []string{"x-safe", ""}, "a"},
		{"query both", "GET", "x", "/q?debug&v=42", nil, "b"},
		{"query regex mismatch", "GET", "x", "/q?debug&v=x", nil, "a"},
		{"query missing", "GET", "x", "/q?v=42", nil, "a"},
		{"first route wins", "GET", "x", "/first", nil, "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, "http://"+addr+tt.path, nil)
			req.Host = tt.host
			for i := 0; i+1 < len(tt.hdr); i += 2 {
				req.Header[http.CanonicalHeaderKey(tt.hdr[i])] = []string{tt.hdr[i+1]}
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != tt.want {
				t.Errorf("%s %s: routed to %q, want %q", tt.method, tt.path, body, tt.want)
			}
		})
	}
}

func TestActions(t *testing.T) {
	a := newEcho(t, "127.0.0.2", "a", nil)
	b := newEcho(t, "127.0.0.3", "b", nil)
	headersRoute := toCluster("a")
	split := weighted(map[string]uint32{"a": 100, "b": 0})
	first := split.Route.GetWeightedClusters().GetClusters()[0]
	first.RequestHeadersToAdd = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-subset", Value: "a"}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}}
	first.HostRewriteSpecifier = &routev3.WeightedCluster_ClusterWeight_HostRewriteLiteral{HostRewriteLiteral: "a.internal"}
	rewriteRoute := toCluster("b")
	rewriteRoute.Route.PrefixRewrite = "/v2/"
	rewriteRoute.Route.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: "b.internal"}
	regexRoute := toCluster("b")
	regexRoute.Route.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: "^/re/([a-z]+)/([0-9]+)$"}, Substitution: "/\\2/\\1"}
	routes := []*routev3.Route{
		{Name: "redirect", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/old"}}, Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{
			SchemeRewriteSpecifier: &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: "https"}, HostRedirect: "new.example.com", PortRedirect: 8443,
			PathRewriteSpecifier: &routev3.RedirectAction_PathRedirect{PathRedirect: "/new"}, ResponseCode: routev3.RedirectAction_FOUND}}},
		{Name: "redirect-path", Match: prefix("/moved"), Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{
			PathRewriteSpecifier: &routev3.RedirectAction_PathRedirect{PathRedirect: "/here"}}}},
		{Name: "direct", Match: prefix("/teapot"), Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 418,
			Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "short and stout"}}}}},
		{Name: "rewrite", Match: prefix("/api/"), Action: rewriteRoute},
		{Name: "regex-rewrite", Match: prefix("/re/"), Action: regexRoute},
		{Name: "headers", Match: prefix("/headers"), Action: headersRoute,
			RequestHeadersToAdd: []*corev3.HeaderValueOption{
				{Header: &corev3.HeaderValue{Key: "x-route", Value: "set"}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD},
				{Header: &corev3.HeaderValue{Key: "x-added", Value: "2"}, AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD}},
			RequestHeadersToRemove:  []string{"x-drop"},
			ResponseHeadersToAdd:    []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-served-by", Value: "mesh"}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}},
			ResponseHeadersToRemove: []string{"server"}},
		{Name: "split", Match: prefix("/split"), Action: split},
	}
	addr, _, _ := trafficSetup(t, []*routev3.VirtualHost{{Name: "any", Domains: []string{"*"}, Routes: routes}}, a, b)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(t *testing.T, path string, hdr ...string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		req.Host = "shop.example.com:8080"
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Add(hdr[i], hdr[i+1])
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	t.Run("redirect", func(t *testing.T) {
		resp, _ := do(t, "/old?x=1")
		if resp.StatusCode != 302 || resp.Header.Get("Location") != "https://new.example.com:8443/new?x=1" {
			t.Errorf("got %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		resp, _ = do(t, "/moved")
		if resp.StatusCode != 301 || resp.Header.Get("Location") != "http://shop.example.com:8080/here" {
			t.Errorf("got %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("direct response", func(t *testing.T) {
		resp, body := do(t, "/teapot")
		if resp.StatusCode != 418 || body != "short and stout" {
			t.Errorf("got %d %q", resp.StatusCode, body)
		}
	})
	t.Run("prefix and authority rewrite", func(t *testing.T) {
		resp, _ := do(t, "/api/items?id=3")
		if got := resp.Header.Get("X-Saw-Path"); got != "/v2/items?id=3" {
			t.Errorf("path at backend %q, want /v2/items?id=3", got)
		}
		if got := resp.Header.Get("X-Saw-Host"); got != "b.internal" {
			t.Errorf("host at backend %q, want b.internal", got)
		}
		if got := resp.Header.Get("X-Saw-Envoy-Original-Path"); got != "/api/items?id=3" {
			t.Errorf("x-envoy-original-path %q", got)
		}
	})
	t.Run("regex rewrite", func(t *testing.T) {
		resp, _ := do(t, "/re/abc/42")
		if got := resp.Header.Get("X-Saw-Path"); got != "/42/abc" {
			t.Errorf("path at backend %q, want /42/abc", got)
		}
	})
	t.Run("header operations", func(t *testing.T) {
		resp, _ := do(t, "/headers", "x-route", "client", "x-added", "1", "x-drop", "gone")
		if got := resp.Header["X-Saw-Route"]; len(got) != 1 || got[0] != "set" {
			t.Errorf("x-route at backend %q, want [set]", got)
		}
		if got := resp.Header["X-Saw-Added"]; len(got) != 2 || got[0] != "1" || got[1] != "2" {
			t.Errorf("x-added at backend %q, want [1 2]", got)
		}
		if got := resp.Header["X-Saw-Drop"]; len(got) != 0 {
			t.Errorf("x-drop reached the backend: %q", got)
		}
		if resp.Header.Get("X-Served-By") != "mesh" || resp.Header.Get("Server") != "" {
			t.Errorf("response headers: x-served-by %q, server %q", resp.Header.Get("X-Served-By"), resp.Header.Get("Server"))
		}
	})
	t.Run("weighted cluster headers", func(t *testing.T) {
		resp, _ := do(t, "/split")
		if resp.Header.Get("X-Saw-Subset") != "a" || resp.Header.Get("X-Saw-Host") != "a.internal" {
			t.Errorf("at backend: x-subset %q host %q", resp.Header.Get("X-Saw-Subset"), resp.Header.Get("X-Saw-Host"))
		}
	})
}

func TestRetries(t *testing.T) {
	// flaky fails its first two requests of each test with 503.
	var failFirst atomic.Int64
	flaky := newEcho(t, "127.0.0.2", "flaky", func(n int64, r *http.Request) int {
		if failFirst.Add(-1) >= 0 {
			return http.StatusServiceUnavailable
		}
		return 0
	})
	// slow hangs on its first request of each test.
	var hangFirst atomic.Int64
	slow := newEcho(t, "127.0.0.3", "slow", func(n int64, r *http.Request) int {
		if hangFirst.Add(-1) >= 0 {
			return -1
		}
		return 0
	})
	istioDefault := retryRoute("flaky", "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes", 2, 0, 503)
	vh := &routev3.VirtualHost{Name: "any", Domains: []string{"*"}, Routes: []*routev3.Route{
		{Name: "default-policy", Match: prefix("/default"), Action: istioDefault},
		{Name: "one-retry", Match: prefix("/one"), Action: retryRoute("flaky", "5xx", 1, 0)},
		{Name: "not-on-503", Match: prefix("/connect"), Action: retryRoute("flaky", "connect-failure", 3, 0)},
		{Name: "gateway-error", Match: prefix("/gw"), Action: retryRoute("flaky", "gateway-error", 3, 0)},
		{Name: "per-try", Match: prefix("/pertry"), Action: retryRoute("slow", "reset", 2, 100*time.Millisecond)},
		{Name: "per-try-exhausted", Match: prefix("/ptnone"), Action: retryRoute("slow", "connect-failure", 2, 100*time.Millisecond)},
		{Name: "down", Match: prefix("/down"), Action: retryRoute("down", "connect-failure", 2, 0)},
		{Name: "post", Match: prefix("/post"), Action: retryRoute("flaky", "5xx", 3, 0)},
	}}
	addr, p, log := trafficSetup(t, []*routev3.VirtualHost{vh}, flaky, slow)
	tests := []struct {
		name, method, path string
		failures, hangs    int64
		code               int
		attempts           int64 // at the flaky or slow backend
		flags              string
	}{
		{"default policy retries 503 twice", "GET", "/default", 2, 0, 200, 3, "-"},
		{"retry limit exceeded", "GET", "/one", 2, 0, 503, 2, "URX"},
		{"condition not met", "GET", "/connect", 2, 0, 503, 1, "-"},
		{"gateway-error", "GET", "/gw", 2, 0, 200, 3, "-"},
		{"buffered body is resent", "POST", "/post", 2, 0, 200, 3, "-"},
		{"per-try timeout retried", "GET", "/pertry", 0, 1, 200, 2, "-"},
		{"per-try timeout not retried", "GET", "/ptnone", 0, 1, 504, 1, "UT"},
		{"connect failure retries exhausted", "GET", "/down", 0, 0, 503, 0, "UF,URX"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			failFirst.Store(tt.failures)
			hangFirst.Store(tt.hangs)
			flaky.count.Store(0)
			slow.count.Store(0)
			var body io.Reader
			if tt.method == "POST" {
				body = strings.NewReader("payload")
			}
			req, _ := http.NewRequest(tt.method, "http://"+addr+tt.path, body)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.code {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.code)
			}
			if got := flaky.count.Load() + slow.count.Load(); got != tt.attempts {
				t.Errorf("%d attempts reached the backend, want %d", got, tt.attempts)
			}
			if tt.method == "POST" && resp.StatusCode == 200 && resp.Header.Get("X-Saw-Body") != "payload" {
				t.Errorf("body at backend after retries %q", resp.Header.Get("X-Saw-Body"))
			}
			if got := logFlags(p.lastLog(log)); got != tt.flags {
				t.Errorf("response flags %q, want %q (%s)", got, tt.flags, p.lastLog(log))
			}
		})
	}
}

func TestFaults(t *testing.T) {
	a := newEcho(t, "127.0.0.2", "a", nil)
	const delay = 120 * time.Millisecond
	vh := &routev3.VirtualHost{Name: "any", Domains: []string{"*"}, Routes: []*routev3.Route{
		{Name: "delay", Match: prefix("/delay"), Action: toCluster("a"), TypedPerFilterConfig: faultCfg(&faultv3.HTTPFault{
			Delay: &faultcommonv3.FaultDelay{FaultDelaySecifier: &faultcommonv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(delay)}, Percentage: million(100)}})},
		{Name: "abort", Match: prefix("/abort"), Action: toCluster("a"), TypedPerFilterConfig: faultCfg(&faultv3.HTTPFault{
			Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 500}, Percentage: million(50)}})},
		{Name: "abort-all", Match: prefix("/all"), Action: toCluster("a"), TypedPerFilterConfig: faultCfg(&faultv3.HTTPFault{
			Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 503}, Percentage: million(100)}})},
		{Name: "no-percentage", Match: prefix("/zero"), Action: toCluster("a"), TypedPerFilterConfig: faultCfg(&faultv3.HTTPFault{
			Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 500}}})},
	}}
	addr, p, log := trafficSetup(t, []*routev3.VirtualHost{vh}, a)

	t.Run("delay", func(t *testing.T) {
		start := time.Now()
		code, body, _ := get(t, http.DefaultClient, addr, "x", "/delay")
		if took := time.Since(start); took < delay {
			t.Errorf("answered after %v, before the %v delay", took, delay)
		}
		if code != 200 || body != "a" {
			t.Errorf("got %d %q", code, body)
		}
		if got := logFlags(p.lastLog(log)); got != "DI" {
			t.Errorf("flags %q, want DI", got)
		}
	})
	t.Run("abort all", func(t *testing.T) {
		before := a.count.Load()
		code, body, _ := get(t, http.DefaultClient, addr, "x", "/all")
		if code != 503 || body != "fault filter abort" {
			t.Errorf("got %d %q", code, body)
		}
		if a.count.Load() != before {
			t.Error("an aborted request reached the backend")
		}
		line := p.lastLog(log)
		if logFlags(line) != "FI" || !strings.Contains(line, "fault_filter_abort") {
			t.Errorf("log line %q, want FI and fault_filter_abort", line)
		}
	})
	t.Run("abort without percentage is 0%", func(t *testing.T) {
		for range 20 {
			if code, _, _ := get(t, http.DefaultClient, addr, "x", "/zero"); code != 200 {
				t.Fatalf("status %d, want 200", code)
			}
		}
	})
	t.Run("abort 50%", func(t *testing.T) {
		const n = 1000
		aborted := 0
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
		for range n {
			code, _, _ := get(t, client, addr, "x", "/abort")
			switch code {
			case 500:
				aborted++
			case 200:
			default:
				t.Fatalf("status %d", code)
			}
		}
		// 50% ± 7%: over 1000 draws that is more than 4 standard deviations.
		if aborted < 430 || aborted > 570 {
			t.Errorf("%d of %d aborted, want 50%% ± 7%%", aborted, n)
		}
	})
}

func TestMirror(t *testing.T) {
	primary := newEcho(t, "127.0.0.2", "primary", nil)
	shadow := newEcho(t, "127.0.0.3", "shadow", func(int64, *http.Request) int { return 500 })
	shadow.seen = make(chan *http.Request, 16)
	mirrored := toCluster("primary")
	mirrored.Route.RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{{Cluster: "shadow",
		RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 100}}}}
	none := toCluster("primary")
	none.Route.RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{{Cluster: "shadow",
		RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 0}}}}
	vh := &routev3.VirtualHost{Name: "any", Domains: []string{"*"}, Routes: []*routev3.Route{
		{Name: "none", Match: prefix("/none"), Action: none},
		{Name: "mirror", Match: prefix("/"), Action: mirrored},
	}}
	addr, _, _ := trafficSetup(t, []*routev3.VirtualHost{vh}, primary, shadow)

	req, _ := http.NewRequest("POST", "http://"+addr+"/orders", strings.NewReader("order-1"))
	req.Host = "shop.example.com:8080"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "primary" {
		t.Fatalf("got %d %q; the shadow's answer must be ignored", resp.StatusCode, body)
	}
	select {
	case got := <-shadow.seen:
		b, _ := io.ReadAll(got.Body)
		if got.Host != "shop.example.com-shadow:8080" || got.URL.Path != "/orders" || string(b) != "order-1" {
			t.Errorf("shadow saw Host %q path %q body %q", got.Host, got.URL.Path, b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the shadow backend received no copy")
	}
	for range 10 {
		get(t, http.DefaultClient, addr, "x", "/none")
	}
	get(t, http.DefaultClient, addr, "x", "/sync") // mirrored: a marker after the unmirrored ones
	select {
	case got := <-shadow.seen:
		if got.URL.Path != "/sync" {
			t.Errorf("0%% mirror sent %s", got.URL.Path)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no mirrored marker")
	}
}

func TestNoRouteAndNoHealthyFlags(t *testing.T) {
	a := newEcho(t, "127.0.0.2", "a", nil)
	vh := &routev3.VirtualHost{Name: "any", Domains: []string{"known"}, Routes: []*routev3.Route{
		{Name: "missing", Match: prefix("/missing"), Action: toCluster("nope")},
		{Name: "a", Match: prefix("/a"), Action: toCluster("a")},
	}}
	addr, p, log := trafficSetup(t, []*routev3.VirtualHost{vh}, a)
	for _, tt := range []struct{ host, path, flags string }{
		{"unknown", "/", "NR"},
		{"known", "/x", "NR"},
		{"known", "/missing", "UH"},
		{"known", "/a", "-"},
	} {
		get(t, http.DefaultClient, addr, tt.host, tt.path)
		if got := logFlags(p.lastLog(log)); got != tt.flags {
			t.Errorf("%s%s: flags %q, want %q", tt.host, tt.path, got, tt.flags)
		}
	}
}

// benchRoutes is a realistic matched, weighted and retried route and a
// plain one, for BenchmarkRoute.
func benchRoutes() []*routev3.Route {
	w := weighted(map[string]uint32{"a": 90, "b": 10})
	w.Route.RetryPolicy = &routev3.RetryPolicy{RetryOn: "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
		NumRetries: wrapperspb.UInt32(2), RetriableStatusCodes: []uint32{503}}
	return []*routev3.Route{
		{Name: "matched", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/matched"}, CaseSensitive: wrapperspb.Bool(true),
			Headers: []*routev3.HeaderMatcher{hdr("end-user", exact("jason"))}}, Action: w},
		{Name: "plain", Match: prefix("/"), Action: toCluster("a")},
	}
}

// BenchmarkRoute compares a request through a header-matched, 90/10
// weighted route with Istio's default retry policy against one through a
// plain prefix route, client and backends included.
func BenchmarkRoute(b *testing.B) {
	ea := newEcho(b, "127.0.0.2", "a", nil)
	eb := newEcho(b, "127.0.0.3", "b", nil)
	cp := newBenchControlPlane(b)
	cp.set("1", faultListener("0.0.0.0_8080", "http.8080"),
		&routev3.RouteConfiguration{Name: "http.8080", VirtualHosts: []*routev3.VirtualHost{{Name: "any", Domains: []string{"*"}, Routes: benchRoutes()}}},
		edsCluster("a"), cla("a", ea.addr), edsCluster("b"), cla("b", eb.addr))
	p := startProxy(b, cp.addr, nil)
	addr := p.addr(b, "0.0.0.0_8080")
	p.waitVersion(b, xdsclient.EndpointType, "1")
	for _, bc := range []struct{ name, path, user string }{{"plain", "/productpage", ""}, {"matched-weighted-retried", "/matched", "jason"}} {
		b.Run(bc.name, func(b *testing.B) {
			req, _ := http.NewRequest("GET", "http://"+addr+bc.path, nil)
			if bc.user != "" {
				req.Header.Set("End-User", bc.user)
			}
			getLoop(b, req)
		})
	}
}
