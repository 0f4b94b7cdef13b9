package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/meshconfig"
	"github.com/meshlab/meshlab/controlplane/xds"
	"github.com/meshlab/meshlab/samples/extauthz"
)

const extAuthzHost = "ext-authz.foo.svc.cluster.local"

// startExtAuthz runs the project's own ext-authz sample (HTTP and gRPC) on
// loopback until the test ends.
func startExtAuthz(t testing.TB) (httpAddr, grpcAddr netip.AddrPort) {
	t.Helper()
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- extauthz.Run(ctx, extauthz.Options{HTTPListener: hl, GRPCListener: gl, Drain: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ext-authz: %v", err)
		}
	})
	return netip.MustParseAddrPort(hl.Addr().String()), netip.MustParseAddrPort(gl.Addr().String())
}

// authzGateway translates policies and a mesh config with the control
// plane's own translation and serves them on a gateway listener in front
// of app; clusters maps the provider ports to loopback addresses.
func authzGateway(t testing.TB, policies, mesh string, app netip.AddrPort, clusters map[uint32]netip.AddrPort) (string, *testProxy) {
	t.Helper()
	rs, err := config.Parse("policies.yaml", []byte(policies))
	if err != nil {
		t.Fatal(err)
	}
	mc, err := meshconfig.Parse([]byte(mesh))
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(svc string, port uint32) (string, string, error) {
		if svc != extAuthzHost {
			return "", "", fmt.Errorf("could not find service %s", svc)
		}
		return svc, fmt.Sprintf("outbound|%d||%s", port, svc), nil
	}
	f, err := xds.BuildAuthzFilters(rs, "istio-system", map[string]string{"istio": "ingressgateway"}, xds.AuthzOptions{Mesh: mc, LookupCluster: lookup})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Notes) > 0 {
		t.Logf("notes: %q", f.Notes)
	}
	filters := append(f.HTTP, &hcmv3.HttpFilter{Name: wellknown.Router, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}})
	hcm := &hcmv3.HttpConnectionManager{StatPrefix: "outbound_0.0.0.0_8080", HttpFilters: filters, UseRemoteAddress: wrapperspb.Bool(true),
		XffNumTrustedHops: mc.GetDefaultConfig().GetGatewayTopology().GetNumTrustedProxies(),
		RouteSpecifier:    &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: ads(), RouteConfigName: "http.8080"}}}
	l := &listenerv3.Listener{Name: "0.0.0.0_8080", Address: sockAddr("127.0.0.1", 0), FilterChains: []*listenerv3.FilterChain{{
		Filters: []*listenerv3.Filter{{Name: wellknown.HTTPConnectionManager, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)}}}}}}
	res := []types.Resource{l,
		&routev3.RouteConfiguration{Name: "http.8080", VirtualHosts: []*routev3.VirtualHost{{Name: "app", Domains: []string{"*"},
			Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster("app")}}}}},
		staticCluster("app", app)}
	for p, a := range clusters {
		res = append(res, staticCluster(fmt.Sprintf("outbound|%d||%s", p, extAuthzHost), a))
	}
	cp := newControlPlane(t, "127.0.0.1:0")
	cp.set("1", res...)
	tp := startGateway(t, cp.addr, nil)
	return tp.addr(t, "0.0.0.0_8080"), tp
}

const customPolicy = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: CUSTOM
  provider: {name: %s}
  rules: [{to: [{operation: {paths: ["/headers", "/slow"]}}]}]
`

// appEcho answers with what it saw of the ext_authz headers.
func appEcho(t testing.TB) netip.AddrPort {
	return handlerBackend(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Saw-Result", r.Header.Get(extauthz.ResultHeader))
		w.Header().Set("X-Saw-Check", r.Header.Get(extauthz.CheckHeader))
		_, _ = fmt.Fprint(w, "app")
	})
}

// TestExtAuthz: CUSTOM through the control plane's translation and the
// proxy's ext_authz filter to the ext-authz sample on loopback, over both
// of Istio's provider kinds: allowed with the header (and the server's
// headers reach the app when the provider lets them), denied without it
// with the server's 403, headers and body passed through, and paths the
// CUSTOM rules do not match never checked.
func TestExtAuthz(t *testing.T) {
	httpA, grpcA := startExtAuthz(t)
	mesh := `extensionProviders:
- name: http
  envoyExtAuthzHttp:
    service: ` + extAuthzHost + `
    port: 8000
    includeRequestHeadersInCheck: ["x-ext-authz"]
    headersToUpstreamOnAllow: ["x-ext-authz-check-result"]
    headersToDownstreamOnAllow: ["x-ext-authz-check-received"]
    headersToDownstreamOnDeny: ["x-ext-authz-check-result", "content-type"]
- name: grpc
  envoyExtAuthzGrpc:
    service: ` + extAuthzHost + `
    port: 9000
`
	for _, provider := range []string{"http", "grpc"} {
		t.Run(provider, func(t *testing.T) {
			addr, _ := authzGateway(t, fmt.Sprintf(customPolicy, provider), mesh, appEcho(t), map[uint32]netip.AddrPort{8000: httpA, 9000: grpcA})
			c := &http.Client{Timeout: 10 * time.Second}

			code, body, h := get(t, c, addr, "app.example.com", "/headers", "x-ext-authz", "allow")
			if code != 200 || body != "app" || h.Get("X-Saw-Check") != "allow" || h.Get("X-Saw-Result") != extauthz.ResultAllowed {
				t.Errorf("allowed: %d %q saw-check %q saw-result %q, want 200 from app with the server's x-ext-authz-check-result", code, body, h.Get("X-Saw-Check"), h.Get("X-Saw-Result"))
			}
			if provider == "http" && !strings.Contains(h.Get(extauthz.ReceivedHeader), "/headers") {
				t.Errorf("allowed: %s = %q, want the server's header (headersToDownstreamOnAllow)", extauthz.ReceivedHeader, h.Get(extauthz.ReceivedHeader))
			}
			code, body, h = get(t, c, addr, "app.example.com", "/headers", "x-ext-authz", "deny")
			if code != 403 || h.Get(extauthz.ResultHeader) != extauthz.ResultDenied || !strings.Contains(body, "denied by ext_authz for not found header `x-ext-authz: allow`") {
				t.Errorf("denied: %d %q result %q, want the server's 403 passed through", code, body, h.Get(extauthz.ResultHeader))
			}
			if h.Get(extauthz.ReceivedHeader) != "" && provider == "http" {
				t.Errorf("denied: %s reached the client though not in headersToDownstreamOnDeny", extauthz.ReceivedHeader)
			}
			code, body, h = get(t, c, addr, "app.example.com", "/ip")
			if code != 200 || body != "app" || h.Get("X-Saw-Result") != "" {
				t.Errorf("unmatched path: %d %q saw-result %q, want 200 without a check", code, body, h.Get("X-Saw-Result"))
			}
		})
	}
}

// TestExtAuthzErrors: a provider that does not answer in time, or cannot
// be reached, denies with statusOnError (403 when unset) unless failOpen.
func TestExtAuthzErrors(t *testing.T) {
	var mu sync.Mutex
	release := make(chan struct{})
	slow := handlerBackend(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { mu.Lock(); close(release); mu.Unlock() })
	dead := closedPort(t)
	app := appEcho(t)
	tests := []struct {
		name, provider string
		want           int
	}{
		{"http timeout fail closed", `envoyExtAuthzHttp: {service: ` + extAuthzHost + `, port: 8000, timeout: 0.2s}`, 403},
		{"http timeout statusOnError", `envoyExtAuthzHttp: {service: ` + extAuthzHost + `, port: 8000, timeout: 0.2s, statusOnError: "503"}`, 503},
		{"http timeout fail open", `envoyExtAuthzHttp: {service: ` + extAuthzHost + `, port: 8000, timeout: 0.2s, failOpen: true}`, 200},
		{"grpc unreachable fail closed", `envoyExtAuthzGrpc: {service: ` + extAuthzHost + `, port: 9000, timeout: 0.5s}`, 403},
		{"grpc unreachable statusOnError", `envoyExtAuthzGrpc: {service: ` + extAuthzHost + `, port: 9000, timeout: 0.5s, statusOnError: "500"}`, 500},
		{"grpc unreachable fail open", `envoyExtAuthzGrpc: {service: ` + extAuthzHost + `, port: 9000, timeout: 0.5s, failOpen: true}`, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mesh := "extensionProviders: [{name: p, " + tc.provider + "}]"
			addr, _ := authzGateway(t, fmt.Sprintf(customPolicy, "p"), mesh, app, map[uint32]netip.AddrPort{8000: slow, 9000: dead})
			c := &http.Client{Timeout: 10 * time.Second}
			start := time.Now()
			code, body, _ := get(t, c, addr, "app.example.com", "/slow", "x-ext-authz", "allow")
			if code != tc.want {
				t.Errorf("%d %q, want %d", code, body, tc.want)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("took %v: the provider's timeout was not applied", d)
			}
		})
	}
}

// TestExtAuthzTCP: for a gRPC provider Istio also puts the network
// ext_authz on TCP chains; a connection the CUSTOM rules match is checked
// with the source and destination only, so the sample (which needs the
// header or the allowed account) denies it and the proxy closes it; one
// they do not match passes unchecked; an unreachable provider closes it
// unless failOpen.
func TestExtAuthzTCP(t *testing.T) {
	_, grpcA := startExtAuthz(t)
	dead := closedPort(t)
	app := appEcho(t)
	tests := []struct {
		name, rules, provider string
		server                netip.AddrPort
		wantOK                bool
	}{
		{"matched, denied by the server", "[{}]", "{service: " + extAuthzHost + ", port: 9000}", grpcA, false},
		{"not matched, unchecked", `[{to: [{operation: {ports: ["1"]}}]}]`, "{service: " + extAuthzHost + ", port: 9000}", grpcA, true},
		{"unreachable, fail closed", "[{}]", "{service: " + extAuthzHost + ", port: 9000, timeout: 0.3s}", dead, false},
		{"unreachable, fail open", "[{}]", "{service: " + extAuthzHost + ", port: 9000, timeout: 0.3s, failOpen: true}", dead, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := config.Parse("p.yaml", []byte(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz, namespace: foo}
spec: {action: CUSTOM, provider: {name: p}, rules: `+tc.rules+`}
`))
			if err != nil {
				t.Fatal(err)
			}
			mc, err := meshconfig.Parse([]byte("extensionProviders: [{name: p, envoyExtAuthzGrpc: " + tc.provider + "}]"))
			if err != nil {
				t.Fatal(err)
			}
			lookup := func(svc string, port uint32) (string, string, error) {
				return svc, fmt.Sprintf("outbound|%d||%s", port, svc), nil
			}
			f, err := xds.BuildAuthzFilters(rs, "foo", nil, xds.AuthzOptions{Mesh: mc, LookupCluster: lookup})
			if err != nil {
				t.Fatal(err)
			}
			if len(f.TCP) != 2 || f.TCP[1].GetName() != wellknown.ExternalAuthorization {
				t.Fatalf("TCP filters %v, want shadow RBAC and ext_authz", f.TCP)
			}
			l := &listenerv3.Listener{Name: "tcp", Address: sockAddr("127.0.0.1", 0), FilterChains: []*listenerv3.FilterChain{{
				Filters: append(f.TCP, tcpFilter("app"))}}}
			cp := newControlPlane(t, "127.0.0.1:0")
			cp.set("1", l, staticCluster("app", app), staticCluster("outbound|9000||"+extAuthzHost, tc.server))
			tp := startGateway(t, cp.addr, nil)
			c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			resp, err := c.Get("http://" + tp.addr(t, "tcp") + "/")
			if err == nil {
				_ = resp.Body.Close()
			}
			if ok := err == nil && resp.StatusCode == 200; ok != tc.wantOK {
				t.Errorf("request through the TCP chain: err %v, want ok %v", err, tc.wantOK)
			}
		})
	}
}

// BenchmarkExtAuthz: one request through the gateway with a CUSTOM rule
// checked by the ext-authz sample over each provider kind, and with no
// policy, on loopback.
func BenchmarkExtAuthz(b *testing.B) {
	httpA, grpcA := startExtAuthz(b)
	mesh := "extensionProviders: [{name: http, envoyExtAuthzHttp: {service: " + extAuthzHost + ", port: 8000, includeRequestHeadersInCheck: [x-ext-authz]}}, " +
		"{name: grpc, envoyExtAuthzGrpc: {service: " + extAuthzHost + ", port: 9000}}]"
	for _, provider := range []string{"none", "http", "grpc"} {
		b.Run(provider, func(b *testing.B) {
			policies := fmt.Sprintf(customPolicy, provider)
			if provider == "none" {
				policies = ""
			}
			addr, _ := authzGateway(b, policies, mesh, appEcho(b), map[uint32]netip.AddrPort{8000: httpA, 9000: grpcA})
			c := &http.Client{Timeout: 10 * time.Second}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if code, _, _ := get(b, c, addr, "app.example.com", "/headers", "x-ext-authz", "allow"); code != 200 {
					b.Fatalf("%d", code)
				}
			}
		})
	}
}
