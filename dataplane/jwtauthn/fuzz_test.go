package jwtauthn

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	jose "github.com/go-jose/go-jose/v4"
)

// FuzzVerify feeds the filter what any client controls — the bearer
// token — and requires an answer, never a panic: a token that verifies
// only if it was signed by the provider's key, and a status otherwise.
func FuzzVerify(f *testing.F) {
	s := newSigner(f, jose.RS256, "k1")
	now := time.Unix(1_800_000_000, 0)
	good := s.sign(f, map[string]any{"iss": "iss", "sub": "alice", "aud": "a", "exp": now.Add(time.Hour).Unix()})
	flt, err := Compile(istioConfig(&jwtv3.JwtProvider{Issuer: "iss", Audiences: []string{"a"}, JwksSourceSpecifier: inline(s.jwks)}))
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{good, "", "a.b.c", "..", "eyJhbGciOiJub25lIn0.e30.", good + "x", "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJpc3MifQ.AAAA"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header["Authorization"] = []string{"Bearer " + tok}
		res := flt.Verify(r, now)
		if res.Status == Ok && tok != good {
			t.Fatalf("a token not signed by the provider verified: %q", tok)
		}
	})
}
