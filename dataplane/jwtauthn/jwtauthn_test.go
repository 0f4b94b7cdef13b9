package jwtauthn

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	jose "github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/types/known/emptypb"
)

// signer holds a key of one algorithm and the JWKS publishing it.
type signer struct {
	alg  jose.SignatureAlgorithm
	key  any // private key, or []byte for HS*
	pub  any
	kid  string
	jwks string
}

func newSigner(t testing.TB, alg jose.SignatureAlgorithm, kid string) *signer {
	t.Helper()
	s := &signer{alg: alg, kid: kid}
	switch {
	case strings.HasPrefix(string(alg), "RS"), strings.HasPrefix(string(alg), "PS"):
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		s.key, s.pub = k, &k.PublicKey
	case strings.HasPrefix(string(alg), "ES"):
		curve := map[jose.SignatureAlgorithm]elliptic.Curve{jose.ES256: elliptic.P256(), jose.ES384: elliptic.P384(), jose.ES512: elliptic.P521()}[alg]
		k, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		s.key, s.pub = k, &k.PublicKey
	case alg == jose.EdDSA:
		pub, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		s.key, s.pub = k, pub
	default: // HS*: go-jose wants at least the hash size
		k := make([]byte, 64)
		if _, err := rand.Read(k); err != nil {
			t.Fatal(err)
		}
		s.key, s.pub = k, k
	}
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: s.pub, KeyID: kid, Algorithm: string(alg), Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	s.jwks = string(b)
	return s
}

func (s *signer) sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: s.alg, Key: jose.JSONWebKey{Key: s.key, KeyID: s.kid}}, nil)
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

// istioConfig is what controlplane/xds BuildJWTFilter emits for one rule
// per provider (see its goldens): requires_any{provider, allow_missing},
// or for several the outer OR over the AND.
func istioConfig(providers ...*jwtv3.JwtProvider) *jwtv3.JwtAuthentication {
	cfg := &jwtv3.JwtAuthentication{Providers: map[string]*jwtv3.JwtProvider{}, BypassCorsPreflight: true}
	var and, or []*jwtv3.JwtRequirement
	for i, p := range providers {
		name := "origins-" + string(rune('0'+i))
		if p.PayloadInMetadata == "" {
			p.PayloadInMetadata = "payload"
		}
		cfg.Providers[name] = p
		pr := &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_ProviderName{ProviderName: name}}
		and = append(and, &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_RequiresAny{RequiresAny: &jwtv3.JwtRequirementOrList{
			Requirements: []*jwtv3.JwtRequirement{pr, {RequiresType: &jwtv3.JwtRequirement_AllowMissing{AllowMissing: &emptypb.Empty{}}}}}}})
		or = append(or, pr)
	}
	req := and[0]
	if len(and) > 1 {
		req = &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_RequiresAny{RequiresAny: &jwtv3.JwtRequirementOrList{
			Requirements: append(or, &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_RequiresAll{RequiresAll: &jwtv3.JwtRequirementAndList{Requirements: and}}})}}}
	}
	cfg.Rules = []*jwtv3.RequirementRule{{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		RequirementType: &jwtv3.RequirementRule_Requires{Requires: req}}}
	return cfg
}

func inline(jwks string) *jwtv3.JwtProvider_LocalJwks {
	return &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: jwks}}}
}

// TestAlgorithms: every algorithm Envoy supports verifies with its key and
// fails with another key of the same kind.
func TestAlgorithms(t *testing.T) {
	now := time.Now()
	for _, alg := range supportedAlgs {
		t.Run(string(alg), func(t *testing.T) {
			s := newSigner(t, alg, "k1")
			other := newSigner(t, alg, "k1")
			f, err := Compile(istioConfig(&jwtv3.JwtProvider{Issuer: "iss", JwksSourceSpecifier: inline(s.jwks)}))
			if err != nil {
				t.Fatal(err)
			}
			claims := map[string]any{"iss": "iss", "sub": "alice", "exp": now.Add(time.Hour).Unix()}
			for _, tc := range []struct {
				tok  string
				want Status
			}{{s.sign(t, claims), Ok}, {other.sign(t, claims), JwtVerificationFail}} {
				r := httptest.NewRequest(http.MethodGet, "/", nil)
				r.Header.Set("Authorization", "Bearer "+tc.tok)
				if got := f.Verify(r, now).Status; got != tc.want {
					t.Errorf("got %q, want %q", got, tc.want)
				}
			}
		})
	}
}

// TestVerifyMatrix: Envoy's statuses and their order (format, issuer,
// time with 60 s skew, audience, key), and the requirement semantics
// Istio relies on (missing token passes, every token must verify, shared
// locations across providers).
func TestVerifyMatrix(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	rs := newSigner(t, jose.RS256, "rsa-1")
	es := newSigner(t, jose.ES256, "ec-1")
	wrong := newSigner(t, jose.RS256, "rsa-1")
	kidless := newSigner(t, jose.RS256, "")
	claims := func(iss string, extra ...any) map[string]any {
		c := map[string]any{"iss": iss, "sub": "alice", "exp": now.Add(time.Hour).Unix()}
		for i := 0; i+1 < len(extra); i += 2 {
			c[extra[i].(string)] = extra[i+1]
		}
		return c
	}
	one := istioConfig(&jwtv3.JwtProvider{Issuer: "iss-1", Audiences: []string{"foo"}, JwksSourceSpecifier: inline(rs.jwks)})
	two := istioConfig(
		&jwtv3.JwtProvider{Issuer: "iss-1", JwksSourceSpecifier: inline(rs.jwks)},
		&jwtv3.JwtProvider{Issuer: "iss-2", JwksSourceSpecifier: inline(es.jwks)})
	params := istioConfig(&jwtv3.JwtProvider{Issuer: "iss-1", JwksSourceSpecifier: inline(rs.jwks), FromParams: []string{"token", "secondary_token"}})
	const fakeKeys = `{"keys":[{"kty":"RSA","e":"AQAB","n":"vqS7RN4b34i3_5YyhygtBe33gI6GK_0ldW8WMZaunS28T-WAzJOAoZ7E9Y0mHS8vcDES0eZIUpp6Ft9sRPhOlzQfo_7l-3DnaD9LxJVKdXjE1jugxfI9YX1qJpD9S9wRZxQIhPky9UzZDkpFh_KpL6pZUt4cbPtW0VCctjqvpI11yHNk4CEbzw-RRFLMJkLFJqgPa2JPzGZ-TqJdkSDQ7UtRiKzjRcWGnAdLsTq6WabDA1Fn1JVI9TWu-YDbLufDUDco46qyPgpxAqcRQG39cWZAQzMwNEZ-Yec_WiqDYqGTU6K8BBWeEIuMhiWfxGmtqX35rb9Qk_qeYDsqqT95Pw"}]}`
	fake := istioConfig(&jwtv3.JwtProvider{Issuer: "iss-1", JwksSourceSpecifier: inline(fakeKeys)})
	garbage := istioConfig(&jwtv3.JwtProvider{Issuer: "iss-1", JwksSourceSpecifier: inline(`not json`)})
	good := rs.sign(t, claims("iss-1", "aud", "foo"))
	tests := []struct {
		name   string
		cfg    *jwtv3.JwtAuthentication
		target string
		auth   string
		want   Status
	}{
		{"valid", one, "/", good, Ok},
		{"no token", one, "/", "", Ok},
		{"not a bearer", one, "/", "raw:Basic dXNlcjpwYXNz", Ok},
		{"bad format", one, "/", "deadbeef", JwtBadFormat},
		{"bad header base64", one, "/", "a.e30.AA", JwtHeaderParseErrorBadBase64},
		{"alg none", one, "/", b64json(`{"alg":"none"}`) + "." + b64json(`{"iss":"iss-1"}`) + ".", JwtHeaderNotImplementedAlg},
		{"unknown issuer", one, "/", rs.sign(t, claims("someone-else", "aud", "foo")), JwtUnknownIssuer},
		{"expired", one, "/", rs.sign(t, claims("iss-1", "aud", "foo", "exp", now.Add(-61*time.Second).Unix())), JwtExpired},
		{"expired within skew", one, "/", rs.sign(t, claims("iss-1", "aud", "foo", "exp", now.Add(-59*time.Second).Unix())), Ok},
		{"nbf in future", one, "/", rs.sign(t, claims("iss-1", "aud", "foo", "nbf", now.Add(2*time.Minute).Unix())), JwtNotYetValid},
		{"nbf within skew", one, "/", rs.sign(t, claims("iss-1", "aud", "foo", "nbf", now.Add(50*time.Second).Unix())), Ok},
		{"expired before audience", one, "/", rs.sign(t, claims("iss-1", "aud", "bar", "exp", now.Add(-time.Hour).Unix())), JwtExpired},
		{"bad audience", one, "/", rs.sign(t, claims("iss-1", "aud", "bar")), JwtAudienceNotAllowed},
		{"audience in a list", one, "/", rs.sign(t, claims("iss-1", "aud", []string{"bar", "foo"})), Ok},
		{"no audience", one, "/", rs.sign(t, claims("iss-1")), JwtAudienceNotAllowed},
		{"wrong key", one, "/", wrong.sign(t, claims("iss-1", "aud", "foo")), JwtVerificationFail},
		{"kid mismatch", one, "/", newSigner(t, jose.RS256, "rsa-2").sign(t, claims("iss-1", "aud", "foo")), JwksKidAlgMismatch},
		{"kidless token, key with kid", one, "/", kidless.sign(t, claims("iss-1", "aud", "foo")), JwtVerificationFail},
		{"alg of another key type", one, "/", es.sign(t, claims("iss-1", "aud", "foo")), JwksKidAlgMismatch},
		{"key without alg, of another type", istioConfig(&jwtv3.JwtProvider{Issuer: "iss-1", JwksSourceSpecifier: inline(fakeKeys)}), "/", es.sign(t, claims("iss-1")), JwtVerificationFail},
		{"fake JWKS: every token fails", fake, "/", rs.sign(t, claims("iss-1")), JwtVerificationFail},
		{"fake JWKS: no token passes", fake, "/", "", Ok},
		{"unreadable JWKS", garbage, "/", rs.sign(t, claims("iss-1")), JwksNoValidKeys},
		{"two providers: first", two, "/", rs.sign(t, claims("iss-1")), Ok},
		{"two providers: second", two, "/", es.sign(t, claims("iss-2")), Ok},
		{"two providers: none", two, "/", "", Ok},
		{"two providers: second expired", two, "/", es.sign(t, claims("iss-2", "exp", now.Add(-time.Hour).Unix())), JwtExpired},
		{"two providers: unknown issuer", two, "/", es.sign(t, claims("iss-3")), JwtUnknownIssuer},
		{"two providers: swapped keys", two, "/", es.sign(t, claims("iss-1")), JwksKidAlgMismatch},
		{"param", params, "/x?token=" + rs.sign(t, claims("iss-1")), "", Ok},
		{"param secondary", params, "/x?secondary_token=" + rs.sign(t, claims("iss-1")), "", Ok},
		{"param unknown name ignored", params, "/x?token_value=" + wrong.sign(t, claims("iss-1")), "", Ok},
		{"params: one good one expired", params, "/x?token=" + rs.sign(t, claims("iss-1")) + "&secondary_token=" + rs.sign(t, claims("iss-1", "exp", now.Add(-time.Hour).Unix())), "", JwtExpired},
		{"params: header not a location", params, "/x", wrong.sign(t, claims("iss-1")), Ok},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Compile(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest(http.MethodGet, tt.target, nil)
			if raw, ok := strings.CutPrefix(tt.auth, "raw:"); ok {
				r.Header.Set("Authorization", raw)
			} else if tt.auth != "" {
				r.Header.Set("Authorization", "Bearer "+tt.auth)
			}
			res := f.Verify(r, now)
			if res.Status != tt.want {
				t.Fatalf("status %q, want %q", res.Status, tt.want)
			}
			if tt.want == Ok && strings.Count(tt.auth, ".") == 2 && tt.cfg != params {
				if r.Header.Get("Authorization") != "" {
					t.Error("verified token still in the request (forward is off)")
				}
				if res.Metadata.GetFields()["payload"].GetStructValue().GetFields()["sub"].GetStringValue() != "alice" {
					t.Errorf("metadata %v lacks the payload", res.Metadata)
				}
			}
			if tt.want != Ok && tt.want.String() == "" {
				t.Error("no message for status")
			}
		})
	}
}

func b64json(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// TestReply: Envoy's refusal: 401 (403 for audiences), the library's
// message, the challenge with the original URI, the response detail.
func TestReply(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "http://httpbin.foo:8000/headers?a=1", nil)
	r.RequestURI = "/headers?a=1"
	res := Result{Status: JwtExpired}
	if res.Code() != 401 || res.Status.String() != "Jwt is expired" {
		t.Errorf("%d %q", res.Code(), res.Status)
	}
	if got, want := res.WWWAuthenticate(r), `Bearer realm="http://httpbin.foo:8000/headers?a=1", error="invalid_token"`; got != want {
		t.Errorf("WWW-Authenticate %q, want %q", got, want)
	}
	if got := res.ResponseDetail(); got != "jwt_authn_access_denied{Jwt_is_expired}" {
		t.Errorf("detail %q", got)
	}
	if (Result{Status: JwtAudienceNotAllowed}).Code() != 403 {
		t.Error("audiences not allowed must be 403")
	}
	if got := (Result{Status: JwtMissed}).WWWAuthenticate(r); strings.Contains(got, "error=") {
		t.Errorf("a missing token's challenge %q carries an error", got)
	}
}

// TestCompileRefuses: settings that would change what is accepted and
// that this filter does not implement make the config fail, never pass.
func TestCompileRefuses(t *testing.T) {
	for name, p := range map[string]*jwtv3.JwtProvider{
		"remote jwks":        {Issuer: "i", JwksSourceSpecifier: &jwtv3.JwtProvider_RemoteJwks{RemoteJwks: &jwtv3.RemoteJwks{}}},
		"no keys":            {Issuer: "i"},
		"require expiration": {Issuer: "i", RequireExpiration: true, JwksSourceSpecifier: inline(`{"keys":[]}`)},
		"max lifetime":       {Issuer: "i", MaxLifetime: nil, Subjects: nil, HeaderInMetadata: "h", JwksSourceSpecifier: inline(`{"keys":[]}`)},
	} {
		if _, err := Compile(istioConfig(p)); err == nil {
			t.Errorf("%s: compiled", name)
		}
	}
	if _, err := Compile(&jwtv3.JwtAuthentication{RequirementMap: map[string]*jwtv3.JwtRequirement{"a": {}}}); err == nil {
		t.Error("requirement_map compiled")
	}
}

// TestOutputs: payload and claims to headers, forwarding, sanitising of
// client-sent output headers, space-delimited scope in the metadata.
func TestOutputs(t *testing.T) {
	now := time.Now()
	s := newSigner(t, jose.RS256, "k")
	cfg := istioConfig(&jwtv3.JwtProvider{
		Issuer: "iss", JwksSourceSpecifier: inline(s.jwks), Forward: true,
		FromHeaders:                []*jwtv3.JwtHeader{{Name: "x-jwt-assertion", ValuePrefix: "Bearer "}},
		FromCookies:                []string{"session"},
		ForwardPayloadHeader:       "x-jwt-payload",
		ClaimToHeaders:             []*jwtv3.JwtClaimToHeader{{HeaderName: "x-jwt-sub", ClaimName: "sub"}, {HeaderName: "x-jwt-team", ClaimName: "org.team"}, {HeaderName: "x-jwt-groups", ClaimName: "groups"}},
		NormalizePayloadInMetadata: &jwtv3.JwtProvider_NormalizePayload{SpaceDelimitedClaims: []string{"scope", "permission"}},
	})
	f, err := Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tok := s.sign(t, map[string]any{"iss": "iss", "sub": "alice", "org": map[string]any{"team": "blue"}, "groups": []string{"a", "b"}, "scope": "read write"})
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("x-jwt-assertion", "Bearer "+tok)
	r.Header.Set("x-jwt-sub", "forged")
	res := f.Verify(r, now)
	if res.Status != Ok {
		t.Fatal(res.Status)
	}
	if got := r.Header.Get("x-jwt-assertion"); got != "Bearer "+tok {
		t.Errorf("forward: token header %q", got)
	}
	if got, want := r.Header.Get("x-jwt-payload"), strings.Split(tok, ".")[1]; got != want {
		t.Errorf("payload header %q, want %q", got, want)
	}
	for h, want := range map[string]string{"x-jwt-sub": "alice", "x-jwt-team": "blue", "x-jwt-groups": "WyJhIiwiYiJd"} /* base64 of ["a","b"], as Envoy */ {
		if got := r.Header.Values(h); len(got) != 1 || got[0] != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	scope := res.Metadata.GetFields()["payload"].GetStructValue().GetFields()["scope"].GetListValue().GetValues()
	if len(scope) != 2 || scope[1].GetStringValue() != "write" {
		t.Errorf("scope in metadata %v, want [read write]", scope)
	}
	// A cookie location, and a request without a token keeps no forged
	// output header either.
	r = httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(&http.Cookie{Name: "session", Value: tok})
	if res := f.Verify(r, now); res.Status != Ok || r.Header.Get("x-jwt-sub") != "alice" {
		t.Errorf("cookie: %q, x-jwt-sub %q", res.Status, r.Header.Get("x-jwt-sub"))
	}
	r = httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("x-jwt-payload", "forged")
	if res := f.Verify(r, now); res.Status != Ok || r.Header.Get("x-jwt-payload") != "" || res.Metadata != nil {
		t.Errorf("no token: %q, payload header %q, metadata %v", res.Status, r.Header.Get("x-jwt-payload"), res.Metadata)
	}
	// CORS preflight bypasses even a bad token (bypass_cors_preflight).
	r = httptest.NewRequest(http.MethodOptions, "/", nil)
	r.Header.Set("x-jwt-assertion", "Bearer deadbeef")
	r.Header.Set("Origin", "http://a")
	r.Header.Set("Access-Control-Request-Method", "GET")
	if res := f.Verify(r, now); res.Status != Ok {
		t.Errorf("preflight: %q", res.Status)
	}
	// Not a preflight without Access-Control-Request-Method (Istio's
	// expired-token-bad-cors-preflight-request-rejected).
	r.Header.Del("Access-Control-Request-Method")
	if res := f.Verify(r, now); res.Status != JwtBadFormat {
		t.Errorf("OPTIONS without Access-Control-Request-Method: %q, want the token checked", res.Status)
	}
}

// TestAllowMissingOrFailed: requires_any{allow_missing_or_failed} alone
// passes a bad token (without metadata) and keeps a good one's payload;
// allow_missing alone refuses the bad one (Envoy's semantics beyond what
// Istio emits).
func TestAllowMissingOrFailed(t *testing.T) {
	now := time.Now()
	s := newSigner(t, jose.ES256, "k")
	good := s.sign(t, map[string]any{"iss": "iss", "sub": "alice", "n": 3, "f": 1.5})
	bad := newSigner(t, jose.ES256, "k").sign(t, map[string]any{"iss": "iss"})
	build := func(r *jwtv3.JwtRequirement) *Filter {
		f, err := Compile(&jwtv3.JwtAuthentication{
			Providers: map[string]*jwtv3.JwtProvider{"p": {Issuer: "iss", JwksSourceSpecifier: inline(s.jwks), PayloadInMetadata: "payload",
				ClaimToHeaders: []*jwtv3.JwtClaimToHeader{{HeaderName: "x-n", ClaimName: "n"}, {HeaderName: "x-f", ClaimName: "f"}}}},
			Rules: []*jwtv3.RequirementRule{{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				RequirementType: &jwtv3.RequirementRule_Requires{Requires: &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_RequiresAny{
					RequiresAny: &jwtv3.JwtRequirementOrList{Requirements: []*jwtv3.JwtRequirement{r}}}}}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	orFailed := build(&jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_AllowMissingOrFailed{AllowMissingOrFailed: &emptypb.Empty{}}})
	missing := build(&jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_AllowMissing{AllowMissing: &emptypb.Empty{}}})
	for _, tc := range []struct {
		f        *Filter
		tok      string
		want     Status
		metadata bool
	}{{orFailed, bad, Ok, false}, {orFailed, good, Ok, true}, {orFailed, "", Ok, false}, {missing, bad, JwtVerificationFail, false}, {missing, good, Ok, true}, {missing, "", Ok, false}} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		if tc.tok != "" {
			r.Header.Set("Authorization", "Bearer "+tc.tok)
		}
		res := tc.f.Verify(r, now)
		if res.Status != tc.want || (res.Metadata != nil) != tc.metadata {
			t.Errorf("status %q metadata %v, want %q metadata %v", res.Status, res.Metadata, tc.want, tc.metadata)
		}
		if tc.tok == good && (r.Header.Get("x-n") != "3" || r.Header.Get("x-f") != "1.5") {
			t.Errorf("numeric claim headers x-n=%q x-f=%q", r.Header.Get("x-n"), r.Header.Get("x-f"))
		}
	}
}

// TestPEMKeys: local_jwks may hold PEM public keys instead of a JWKS, as
// Envoy's jwt_verify_lib reads them; a token signed by another key fails.
func TestPEMKeys(t *testing.T) {
	now := time.Now()
	for _, alg := range []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA} {
		t.Run(string(alg), func(t *testing.T) {
			s, other := newSigner(t, alg, ""), newSigner(t, alg, "")
			der, err := x509.MarshalPKIXPublicKey(s.pub)
			if err != nil {
				t.Fatal(err)
			}
			keys := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
			f, err := Compile(istioConfig(&jwtv3.JwtProvider{Issuer: "iss", JwksSourceSpecifier: inline(keys)}))
			if err != nil {
				t.Fatal(err)
			}
			claims := map[string]any{"iss": "iss", "sub": "alice", "exp": now.Add(time.Hour).Unix()}
			for _, tc := range []struct {
				tok  string
				want Status
			}{{s.sign(t, claims), Ok}, {other.sign(t, claims), JwtVerificationFail}} {
				r := httptest.NewRequest(http.MethodGet, "/", nil)
				r.Header.Set("Authorization", "Bearer "+tc.tok)
				if got := f.Verify(r, now).Status; got != tc.want {
					t.Errorf("got %q, want %q", got, tc.want)
				}
			}
		})
	}
}
