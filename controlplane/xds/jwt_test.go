package xds

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/encoding/protojson"
	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/meshlab/meshlab/controlplane/config"
)

const testJWKS = `{"keys":[{"kty":"RSA","e":"AQAB","n":"xAE7eB6qugXyCAG3yhh7pkDkT65pHymX-P7KfIupjf59vsdo91bSP9C8H07pSAGQO1MV_xFj9VswgsCg4R6otmg5PV2He95lZdHtOcU5DXIg_pbhLdKXbi66GlVeK6ABZOUW3WYtnNHD-91gVuoeJT_DwtGGcp4ignkgXfkiEm4sw-4sfb4qdt5oLbyVpmW6x9cfa7vs2WTfURiCrBoUqgBo_-4WTiULmmHSGZHOjzwa8WtrtOQGsAFjIbno85jp6MnGGGZPYZbDAa_b3y5u-YpW7ypZrvD8BgtKVjgtQgZhLAGezMt0ua3DRrWnKqTZ0BJ_EyxOGuHJrLsn00fnMQ"}]}`

// renderJWT is the golden form: the filter as protojson (its config
// unpacked), indented.
func renderJWT(t *testing.T, f *hcmv3.HttpFilter) []byte {
	t.Helper()
	b, err := protojson.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		t.Fatal(err)
	}
	out.WriteString("\n")
	return out.Bytes()
}

// TestJWTGolden: the jwt_authn filter is convertToEnvoyJwtConfig's for the
// same policies (providers origins-N sorted by issuer, requires_any with
// allow_missing, payload_in_metadata "payload", inline keys, fake keys
// for a failed fetch), it passes Envoy's proto validation, and two builds
// are byte-identical.
func TestJWTGolden(t *testing.T) {
	fetched := map[JWKSKey]string{
		{Issuer: "testing@secure.istio.io", URI: "https://raw.githubusercontent.com/istio/istio/release-1.24/security/tools/jwt/samples/jwks.json"}: testJWKS,
		{Issuer: "test-issuer-1@istio.io", URI: "https://example.com/jwks.json"}:                                                                    testJWKS,
		{Issuer: "test-issuer-2@istio.io", URI: "https://example.com/jwks.json"}:                                                                    testJWKS,
		// mesh-issuer's fetch failed: absent.
	}
	tests := []struct {
		name      string
		namespace string
		labels    map[string]string
		gateway   bool
		providers int
	}{
		{name: "single", namespace: "foo", labels: map[string]string{"app": "httpbin"}, providers: 1},
		{name: "locations", namespace: "foo", providers: 1},
		{name: "combined", namespace: "foo", labels: map[string]string{"app": "b"}, providers: 3},
		{name: "combined-gateway", namespace: "istio-system", labels: map[string]string{"istio": "ingressgateway"}, gateway: true, providers: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			input := tc.name
			if tc.gateway {
				input = "combined"
			}
			policies := loadPolicies(t, filepath.Join("testdata", "jwt", input+".yaml"))
			applied := RequestAuthnFor(policies, tc.namespace, tc.labels, "istio-system")
			f := BuildJWTFilter(applied, fetched, tc.gateway)
			if f == nil {
				t.Fatal("no filter")
			}
			validateDeep(t, "jwt_authn", f)
			var cfg jwtv3.JwtAuthentication
			if err := f.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
				t.Fatal(err)
			}
			if len(cfg.GetProviders()) != tc.providers {
				t.Errorf("%d providers, want %d", len(cfg.GetProviders()), tc.providers)
			}
			checkGolden(t, filepath.Join("testdata", "jwt", tc.name+".golden"), renderJWT(t, f))
			again := BuildJWTFilter(RequestAuthnFor(policies, tc.namespace, tc.labels, "istio-system"), fetched, tc.gateway)
			if !bytes.Equal(f.GetTypedConfig().GetValue(), again.GetTypedConfig().GetValue()) {
				t.Error("two builds differ (bytes must be deterministic for xDS versions)")
			}
		})
	}
}

// TestJWTFetchFailureInlinesFakeKeys: a jwksUri the control plane could
// not fetch is inlined as Istio's fake key set, never left out (which
// Envoy would refuse) and never dropped (which would pass any token).
func TestJWTFetchFailureInlinesFakeKeys(t *testing.T) {
	policies := loadPolicies(t, filepath.Join("testdata", "jwt", "single.yaml"))
	for _, jwks := range []map[JWKSKey]string{nil, {{Issuer: "testing@secure.istio.io", URI: "https://raw.githubusercontent.com/istio/istio/release-1.24/security/tools/jwt/samples/jwks.json"}: ""}} {
		f := BuildJWTFilter(policies, jwks, false)
		var cfg jwtv3.JwtAuthentication
		if err := f.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
			t.Fatal(err)
		}
		if got := cfg.GetProviders()["origins-0"].GetLocalJwks().GetInlineString(); got != FakeJWKS {
			t.Errorf("keys = %.40q, want the fake JWKS", got)
		}
	}
}

// TestJWTSelection: which RequestAuthentications apply, as
// GetJwtPoliciesForWorkload: namespace then root namespace, each oldest
// first (name order among equals), selector a subset of the labels,
// targetRef policies never on a sidecar.
func TestJWTSelection(t *testing.T) {
	ra := func(ns, name string, sel map[string]string, targetRef bool) config.Resource {
		s := &security.RequestAuthentication{JwtRules: []*security.JWTRule{{Issuer: name}}}
		if sel != nil {
			s.Selector = &typev1beta1.WorkloadSelector{MatchLabels: sel}
		}
		if targetRef {
			s.TargetRef = &typev1beta1.PolicyTargetReference{Kind: "Gateway", Name: "gw"}
		}
		return config.Resource{Kind: config.RequestAuthentication, Namespace: ns, Name: name, Spec: s}
	}
	all := []config.Resource{
		ra("istio-system", "mesh", nil, false),
		ra("foo", "ns", nil, false),
		ra("foo", "app-a", map[string]string{"app": "a"}, false),
		ra("foo", "app-b", map[string]string{"app": "b"}, false),
		ra("foo", "target", nil, true),
		ra("bar", "other", nil, false),
		ra("istio-system", "mesh-app-a", map[string]string{"app": "a"}, false),
	}
	// Created in list order, a second apart, so age and name disagree
	// ("ns" is older than "app-a").
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range all {
		all[i].CreationTimestamp = t0.Add(time.Duration(i) * time.Second)
	}
	names := func(rs []config.Resource) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.Name)
		}
		return out
	}
	for _, tt := range []struct {
		ns     string
		labels map[string]string
		want   []string
	}{
		{"foo", map[string]string{"app": "a", "v": "1"}, []string{"ns", "app-a", "mesh", "mesh-app-a"}},
		{"foo", nil, []string{"ns", "mesh"}},
		{"bar", map[string]string{"app": "b"}, []string{"other", "mesh"}},
		{"istio-system", map[string]string{"app": "a"}, []string{"mesh", "mesh-app-a"}},
	} {
		if got := names(RequestAuthnFor(all, tt.ns, tt.labels, "istio-system")); !slices.Equal(got, tt.want) {
			t.Errorf("%s %v: %v, want %v", tt.ns, tt.labels, got, tt.want)
		}
	}
	// Given youngest first, the order is still by age; created in the
	// same second (the API server's precision), by name.
	rev := slices.Clone(all)
	slices.Reverse(rev)
	if got, want := names(RequestAuthnFor(rev, "foo", map[string]string{"app": "a"}, "istio-system")), []string{"ns", "app-a", "mesh", "mesh-app-a"}; !slices.Equal(got, want) {
		t.Errorf("given youngest first: %v, want %v", got, want)
	}
	for i := range rev {
		rev[i].CreationTimestamp = t0
	}
	if got, want := names(RequestAuthnFor(rev, "foo", map[string]string{"app": "a"}, "istio-system")), []string{"app-a", "ns", "mesh", "mesh-app-a"}; !slices.Equal(got, want) {
		t.Errorf("created in the same second: %v, want %v", got, want)
	}
}

// TestJWTInChains: built for a sidecar, jwt_authn is the first HTTP filter
// of every inbound HTTP chain, before the RBAC filters that match what it
// verified; the gateway's HCMs carry it too (clear_route_cache on); the
// outbound HCMs never do (Istio: inbound and gateways only).
func TestJWTInChains(t *testing.T) {
	in, proxies := loadFixture(t, filepath.Join("testdata", "cases", "gateway.json"))
	in.Config = append(in.Config,
		config.Resource{Kind: config.RequestAuthentication, Namespace: "default", Name: "pp", Spec: &security.RequestAuthentication{
			Selector: &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "productpage"}},
			JwtRules: []*security.JWTRule{{Issuer: "iss", Jwks: testJWKS}},
		}},
		config.Resource{Kind: config.RequestAuthentication, Namespace: "istio-system", Name: "gw", Spec: &security.RequestAuthentication{
			Selector: &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"istio": "ingressgateway"}},
			JwtRules: []*security.JWTRule{{Issuer: "iss", Jwks: testJWKS}},
		}},
		config.Resource{Kind: config.AuthorizationPolicy, Namespace: "default", Name: "require-jwt", Spec: &security.AuthorizationPolicy{
			Selector: &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "productpage"}},
			Rules:    []*security.Rule{{From: []*security.Rule_From{{Source: &security.Source{RequestPrincipals: []string{"*"}}}}}},
		}},
	)
	filtersOf := func(t *testing.T, id string) (inbound, outbound [][]string, clear []bool) {
		t.Helper()
		p, err := ParseNodeID(id)
		if err != nil {
			t.Fatal(err)
		}
		res, err := Build(in, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res[resource.ListenerType] {
			l := r.(*listenerv3.Listener)
			for _, fc := range l.GetFilterChains() {
				for _, f := range fc.GetFilters() {
					if f.GetName() != wellknown.HTTPConnectionManager {
						continue
					}
					var h hcmv3.HttpConnectionManager
					if err := f.GetTypedConfig().UnmarshalTo(&h); err != nil {
						t.Fatal(err)
					}
					var names []string
					for _, hf := range h.GetHttpFilters() {
						names = append(names, hf.GetName())
						if hf.GetName() == jwtFilterName {
							var cfg jwtv3.JwtAuthentication
							if err := hf.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
								t.Fatal(err)
							}
							clear = append(clear, cfg.GetProviders()["origins-0"].GetClearRouteCache())
						}
					}
					if l.GetTrafficDirection().String() == "INBOUND" {
						inbound = append(inbound, names)
					} else {
						outbound = append(outbound, names)
					}
				}
			}
		}
		return inbound, outbound, clear
	}
	in1, out1, clear1 := filtersOf(t, proxies["productpage"])
	want := []string{jwtFilterName, wellknown.HTTPRoleBasedAccessControl, wellknown.Fault, wellknown.CORS, wellknown.Router}
	if len(in1) == 0 {
		t.Fatal("no inbound HTTP chain")
	}
	for _, names := range in1 {
		if !slices.Equal(names, want) {
			t.Errorf("sidecar inbound filters %v, want %v", names, want)
		}
	}
	for _, names := range out1 {
		if slices.Contains(names, jwtFilterName) {
			t.Errorf("sidecar outbound filters %v carry jwt_authn", names)
		}
	}
	if slices.Contains(clear1, true) {
		t.Error("sidecar jwt_authn clears the route cache; Istio sets it on gateways only")
	}
	_, gwOut, gwClear := filtersOf(t, proxies["gateway"])
	if len(gwOut) == 0 {
		t.Fatal("no gateway HCM")
	}
	for _, names := range gwOut {
		if len(names) == 0 || names[0] != jwtFilterName {
			t.Errorf("gateway filters %v, want jwt_authn first", names)
		}
	}
	if !slices.Contains(gwClear, true) || slices.Contains(gwClear, false) {
		t.Errorf("gateway clear_route_cache %v, want true", gwClear)
	}
	// Without a RequestAuthentication nothing changes.
	in.Config = slices.DeleteFunc(slices.Clone(in.Config), func(r config.Resource) bool { return r.Kind == config.RequestAuthentication })
	in2, _, _ := filtersOf(t, proxies["productpage"])
	for _, names := range in2 {
		if slices.Contains(names, jwtFilterName) {
			t.Errorf("no RequestAuthentication, yet %v", names)
		}
	}
}

// TestJWKSRequests: what the control plane must fetch: each rule without
// inline keys, once per (issuer, jwksUri), with its timeout.
func TestJWKSRequests(t *testing.T) {
	var all []config.Resource
	for _, f := range []string{"single", "locations", "combined"} {
		all = append(all, loadPolicies(t, filepath.Join("testdata", "jwt", f+".yaml"))...)
	}
	got := JWKSRequests(all)
	want := []JWKSRequest{
		{JWKSKey{"testing@secure.istio.io", "https://raw.githubusercontent.com/istio/istio/release-1.24/security/tools/jwt/samples/jwks.json"}, defaultJWKSTimeout},
		{JWKSKey{"test-issuer-2@istio.io", "https://example.com/jwks.json"}, defaultJWKSTimeout},
		{JWKSKey{"test-issuer-1@istio.io", "https://example.com/jwks.json"}, defaultJWKSTimeout},
		{JWKSKey{"mesh-issuer", "http://unreachable.example/jwks"}, defaultJWKSTimeout},
	}
	if !slices.Equal(got, want) {
		t.Errorf("JWKSRequests = %v, want %v", got, want)
	}
}
