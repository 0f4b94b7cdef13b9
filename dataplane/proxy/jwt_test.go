package proxy

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	jose "github.com/go-jose/go-jose/v4"
	security "istio.io/api/security/v1beta1"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/xds"
)

// rsaSigner signs tokens with an RSA key and publishes it as a JWKS.
type rsaSigner struct {
	key  *rsa.PrivateKey
	jwks string
}

func newRSASigner(t *testing.T) *rsaSigner {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return &rsaSigner{key: k, jwks: string(b)}
}

func (s *rsaSigner) sign(t *testing.T, claims map[string]any) string {
	t.Helper()
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: s.key, KeyID: "k1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := sg.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// istioFakeSigner signs with the private key of Istio's FakeJwks.
func istioFakeSigner(t *testing.T) *rsaSigner {
	t.Helper()
	b, err := os.ReadFile("testdata/istio-fake-jwks-private.json")
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	k, ok := set.Keys[0].Key.(*rsa.PrivateKey)
	if !ok {
		t.Fatalf("Istio's fake key is a %T", set.Keys[0].Key)
	}
	return &rsaSigner{key: k}
}

// filteredListener is a loopback listener whose connection manager runs
// filters, then the router, on route config "r".
func filteredListener(name string, filters []*hcmv3.HttpFilter) *listenerv3.Listener {
	h := &hcmv3.HttpConnectionManager{StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: ads(), RouteConfigName: "r"}}}
	h.HttpFilters = append(append([]*hcmv3.HttpFilter{}, filters...),
		&hcmv3.HttpFilter{Name: wellknown.Router, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}})
	return &listenerv3.Listener{Name: name, Address: sockAddr("127.0.0.1", 0),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{Name: wellknown.HTTPConnectionManager,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(h)}}}}}}
}

// TestJWTMatrix is Istio's JWT matrix (tests/integration/security/jwt_test.go
// and the authn-policy task) through a real proxy on loopback: the HTTP
// filters are what controlplane/xds translates RequestAuthentication and
// AuthorizationPolicy into, tokens are signed here, and the app behind
// the proxy reports what reached it.
func TestJWTMatrix(t *testing.T) {
	const iss = "testing@secure.istio.io"
	const uri = "https://jwks.example/keys" // "fetched" into Input.JWKS
	signer := newRSASigner(t)
	stranger := newRSASigner(t)
	now := time.Now()
	claims := func(extra ...any) map[string]any {
		c := map[string]any{"iss": iss, "sub": "alice", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
		for i := 0; i+1 < len(extra); i += 2 {
			c[extra[i].(string)] = extra[i+1]
		}
		return c
	}
	valid := signer.sign(t, claims())
	// Istio's fake JWKS ships its private key (pilot/pkg/model/jwks_resolver.go,
	// copied to testdata): a token signed with it passes Istio while a
	// jwksUri fetch fails; meshlab's fake key set must refuse it.
	istioFake := istioFakeSigner(t)

	ra := func(name string, rule *security.JWTRule) config.Resource {
		return config.Resource{Kind: config.RequestAuthentication, Namespace: "foo", Name: name,
			Spec: &security.RequestAuthentication{JwtRules: []*security.JWTRule{rule}}}
	}
	ap := func(name string, rule *security.Rule) config.Resource {
		return config.Resource{Kind: config.AuthorizationPolicy, Namespace: "foo", Name: name,
			Spec: &security.AuthorizationPolicy{Rules: []*security.Rule{rule}}}
	}
	fetched := map[xds.JWKSKey]string{{Issuer: iss, URI: uri}: signer.jwks}
	filters := func(policies ...config.Resource) []*hcmv3.HttpFilter {
		t.Helper()
		var out []*hcmv3.HttpFilter
		if f := xds.BuildJWTFilter(xds.RequestAuthnFor(policies, "foo", nil, "istio-system"), fetched, false); f != nil {
			out = append(out, f)
		}
		az, err := xds.BuildAuthzFilters(policies, "foo", nil, xds.AuthzOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return append(out, az.HTTP...)
	}
	base := &security.JWTRule{Issuer: iss, JwksUri: uri}
	listeners := map[string][]*hcmv3.HttpFilter{
		"authn": filters(ra("jwt", base)),
		"authn-authz": filters(ra("jwt", base), ap("require-jwt", &security.Rule{From: []*security.Rule_From{{Source: &security.Source{
			RequestPrincipals: []string{iss + "/*"}}}}})),
		"aud":  filters(ra("jwt", &security.JWTRule{Issuer: iss, JwksUri: uri, Audiences: []string{"foo"}})),
		"fake": filters(ra("jwt", &security.JWTRule{Issuer: iss, JwksUri: "https://unreachable.example/keys"})),
		"locations": filters(ra("jwt", &security.JWTRule{Issuer: iss, JwksUri: uri,
			FromHeaders:           []*security.JWTHeader{{Name: "x-jwt-assertion", Prefix: "Bearer "}},
			FromParams:            []string{"my_token"},
			FromCookies:           []string{"session"},
			OutputPayloadToHeader: "x-jwt-payload",
			OutputClaimToHeaders:  []*security.ClaimToHeader{{Header: "x-jwt-sub", Claim: "sub"}, {Header: "x-jwt-team", Claim: "org.team"}},
		})),
		"forward": filters(ra("jwt", &security.JWTRule{Issuer: iss, JwksUri: uri, ForwardOriginalToken: true})),
		"claims": filters(ra("jwt", base), ap("admins", &security.Rule{
			From: []*security.Rule_From{{Source: &security.Source{RequestPrincipals: []string{iss + "/alice"}, NotRequestPrincipals: []string{iss + "/mallory"}}}},
			When: []*security.Condition{{Key: "request.auth.claims[groups]", Values: []string{"admin"}}, {Key: "request.auth.audiences", NotValues: []string{"untrusted"}}},
		})),
	}
	for name, fs := range listeners {
		if len(fs) == 0 || fs[0].GetName() != "envoy.filters.http.jwt_authn" {
			t.Fatalf("%s: translation gave %d filters, want jwt_authn first", name, len(fs))
		}
	}

	seen := make(chan http.Header, 1)
	app := handlerBackend(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) {
		select {
		case seen <- r.Header.Clone():
		default:
		}
		_, _ = w.Write([]byte("app"))
	})
	cp := newControlPlane(t, "127.0.0.1:0")
	res := []types.Resource{
		&routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "app", Domains: []string{"*"},
			Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster("app")}}}}},
		staticCluster("app", app),
	}
	for name, fs := range listeners {
		res = append(res, filteredListener(name, fs))
	}
	cp.set("1", res...)
	tp := startGateway(t, cp.addr, nil)
	addr := map[string]string{}
	for name := range listeners {
		addr[name] = tp.addr(t, name)
	}
	if r := cp.nacked("type.googleapis.com/envoy.config.listener.v3.Listener"); r != nil {
		t.Fatalf("proxy NACKed the listeners: %v", r.GetErrorDetail())
	}

	bearer := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }
	tests := []struct {
		name, listener, path string
		hdr                  []string
		code                 int
		body                 string
		check                func(t *testing.T, app http.Header)
	}{
		{name: "valid token", listener: "authn", hdr: bearer(valid), code: 200, body: "app", check: func(t *testing.T, h http.Header) {
			if h.Get("Authorization") != "" {
				t.Error("the verified token reached the app; Envoy removes it unless forwardOriginalToken")
			}
		}},
		{name: "expired token", listener: "authn", hdr: bearer(signer.sign(t, claims("exp", now.Add(-2*time.Minute).Unix()))), code: 401, body: "Jwt is expired"},
		{name: "expired within the 60 s skew", listener: "authn", hdr: bearer(signer.sign(t, claims("exp", now.Add(-30*time.Second).Unix()))), code: 200, body: "app"},
		{name: "nbf in the future", listener: "authn", hdr: bearer(signer.sign(t, claims("nbf", now.Add(5*time.Minute).Unix()))), code: 401, body: "Jwt not yet valid"},
		{name: "no token", listener: "authn", code: 200, body: "app"},
		{name: "bad format", listener: "authn", hdr: bearer("deadbeef"), code: 401, body: "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"},
		{name: "wrong key", listener: "authn", hdr: bearer(stranger.sign(t, claims())), code: 401, body: "Jwt verification fails"},
		{name: "unknown issuer", listener: "authn", hdr: bearer(signer.sign(t, claims("iss", "someone@else"))), code: 401, body: "Jwt issuer is not configured"},
		{name: "no token, policy requires a principal", listener: "authn-authz", code: 403, body: "RBAC: access denied"},
		{name: "valid token, policy requires a principal", listener: "authn-authz", hdr: bearer(valid), code: 200, body: "app"},
		{name: "expired token, policy requires a principal", listener: "authn-authz", hdr: bearer(signer.sign(t, claims("exp", now.Add(-time.Hour).Unix()))), code: 401, body: "Jwt is expired"},
		{name: "bad audience", listener: "aud", hdr: bearer(signer.sign(t, claims("aud", "bar"))), code: 403, body: "Audiences in Jwt are not allowed"},
		{name: "good audience", listener: "aud", hdr: bearer(signer.sign(t, claims("aud", []string{"bar", "foo"}))), code: 200, body: "app"},
		{name: "failed jwksUri fetch: valid token", listener: "fake", hdr: bearer(valid), code: 401, body: "Jwt verification fails"},
		{name: "failed jwksUri fetch: no token", listener: "fake", code: 200, body: "app"},
		{name: "failed jwksUri fetch: token signed with Istio's published fake key", listener: "fake", hdr: bearer(istioFake.sign(t, claims())), code: 401, body: "Jwt verification fails"},
		{name: "header with prefix", listener: "locations", hdr: []string{"X-Jwt-Assertion", "Bearer " + signer.sign(t, claims("org", map[string]any{"team": "blue"}))}, code: 200, body: "app",
			check: func(t *testing.T, h http.Header) {
				if h.Get("X-Jwt-Assertion") != "" {
					t.Error("token header reached the app")
				}
				if h.Get("X-Jwt-Sub") != "alice" || h.Get("X-Jwt-Team") != "blue" {
					t.Errorf("claim headers sub=%q team=%q", h.Get("X-Jwt-Sub"), h.Get("X-Jwt-Team"))
				}
				if p := h.Get("X-Jwt-Payload"); p == "" || strings.Contains(p, ".") {
					t.Errorf("payload header %q", p)
				}
			}},
		{name: "header without the prefix", listener: "locations", hdr: []string{"X-Jwt-Assertion", valid}, code: 200, body: "app", check: func(t *testing.T, h http.Header) {
			if h.Get("X-Jwt-Sub") != "" {
				t.Error("a token without the prefix was taken")
			}
		}},
		{name: "bad token in the header location", listener: "locations", hdr: []string{"X-Jwt-Assertion", "Bearer " + stranger.sign(t, claims())}, code: 401, body: "Jwt verification fails"},
		{name: "query parameter", listener: "locations", path: "/?my_token=" + valid, code: 200, body: "app", check: func(t *testing.T, h http.Header) {
			if h.Get("X-Jwt-Sub") != "alice" {
				t.Error("query token not verified")
			}
		}},
		{name: "bad query parameter", listener: "locations", path: "/?my_token=" + stranger.sign(t, claims()), code: 401, body: "Jwt verification fails"},
		{name: "cookie", listener: "locations", hdr: []string{"Cookie", "a=b; session=" + valid}, code: 200, body: "app", check: func(t *testing.T, h http.Header) {
			if h.Get("X-Jwt-Sub") != "alice" {
				t.Error("cookie token not verified")
			}
		}},
		{name: "Authorization is not a configured location", listener: "locations", hdr: bearer(stranger.sign(t, claims())), code: 200, body: "app"},
		{name: "forged output headers are dropped", listener: "locations", hdr: []string{"X-Jwt-Sub", "admin"}, code: 200, body: "app", check: func(t *testing.T, h http.Header) {
			if h.Get("X-Jwt-Sub") != "" {
				t.Error("a client-sent x-jwt-sub reached the app")
			}
		}},
		{name: "forwardOriginalToken", listener: "forward", hdr: bearer(valid), code: 200, body: "app", check: func(t *testing.T, h http.Header) {
			if h.Get("Authorization") != "Bearer "+valid {
				t.Error("token not forwarded")
			}
		}},
		{name: "claims condition met", listener: "claims", hdr: bearer(signer.sign(t, claims("groups", []string{"dev", "admin"}))), code: 200, body: "app"},
		{name: "claims condition not met", listener: "claims", hdr: bearer(signer.sign(t, claims("groups", []string{"dev"}))), code: 403, body: "RBAC: access denied"},
		{name: "claims condition on a string claim", listener: "claims", hdr: bearer(signer.sign(t, claims("groups", "admin"))), code: 200, body: "app"},
		{name: "notValues on audiences", listener: "claims", hdr: bearer(signer.sign(t, claims("groups", "admin", "aud", "untrusted"))), code: 403, body: "RBAC: access denied"},
		{name: "another subject", listener: "claims", hdr: bearer(signer.sign(t, claims("groups", "admin", "sub", "bob"))), code: 403, body: "RBAC: access denied"},
		{name: "claims: no token", listener: "claims", code: 403, body: "RBAC: access denied"},
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			select {
			case <-seen:
			default:
			}
			path := tt.path
			if path == "" {
				path = "/headers"
			}
			code, body, h := get(t, client, addr[tt.listener], "httpbin.foo:8000", path, tt.hdr...)
			if code != tt.code || body != tt.body {
				t.Fatalf("%d %q, want %d %q", code, body, tt.code, tt.body)
			}
			if code == 401 || (code == 403 && tt.body != "RBAC: access denied") {
				want := `Bearer realm="http://httpbin.foo:8000` + path + `", error="invalid_token"`
				if got := h.Get("Www-Authenticate"); got != want {
					t.Errorf("WWW-Authenticate %q, want %q", got, want)
				}
			}
			if tt.check != nil {
				select {
				case app := <-seen:
					tt.check(t, app)
				case <-time.After(5 * time.Second):
					t.Fatal("the app saw no request")
				}
			}
		})
	}
}
