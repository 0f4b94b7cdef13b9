package jwtauthn

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	jose "github.com/go-jose/go-jose/v4"
)

// BenchmarkVerify: one request through Istio's single-provider config,
// per algorithm family, with a valid token and without one.
func BenchmarkVerify(b *testing.B) {
	for _, alg := range []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA, jose.HS256} {
		s := newSigner(b, alg, "k")
		f, err := Compile(istioConfig(&jwtv3.JwtProvider{Issuer: "iss", JwksSourceSpecifier: inline(s.jwks)}))
		if err != nil {
			b.Fatal(err)
		}
		tok := "Bearer " + s.sign(b, map[string]any{"iss": "iss", "sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		b.Run(string(alg), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r.Header.Set("Authorization", tok)
				if res := f.Verify(r, time.Now()); res.Status != Ok {
					b.Fatal(res.Status)
				}
			}
		})
	}
	b.Run("no-token", func(b *testing.B) {
		s := newSigner(b, jose.RS256, "k")
		f, _ := Compile(istioConfig(&jwtv3.JwtProvider{Issuer: "iss", JwksSourceSpecifier: inline(s.jwks)}))
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		b.ReportAllocs()
		for b.Loop() {
			f.Verify(r, time.Now())
		}
	})
}
