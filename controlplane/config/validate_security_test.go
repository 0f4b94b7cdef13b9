package config

import (
	"strings"
	"testing"
)

// TestValidateRequestAuthentication: what Istio's webhook refuses is
// refused at apply, each error naming the file, document, resource and
// field; what it accepts passes (jwks and jwksUri together included).
func TestValidateRequestAuthentication(t *testing.T) {
	const head = "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: jwt, namespace: foo}\nspec:\n"
	const doc = "in.yaml: document 1 (RequestAuthentication foo/jwt): "
	tests := []struct {
		name, spec, wantErr string
	}{
		{"valid", "  jwtRules:\n  - issuer: iss\n    jwksUri: https://example.com/keys\n    fromHeaders: [{name: x-jwt, prefix: 'Bearer '}]\n    fromParams: [t]\n    fromCookies: [c]\n    outputClaimToHeaders: [{header: x-sub, claim: sub}]\n    timeout: 2s\n", ""},
		{"inline jwks and jwksUri together (Istio accepts)", "  jwtRules:\n  - issuer: iss\n    jwksUri: https://example.com/keys\n    jwks: '{\"keys\":[{\"kty\":\"oct\",\"k\":\"AA\"}]}'\n", ""},
		{"no issuer", "  jwtRules:\n  - jwksUri: https://example.com/keys\n", doc + "spec.jwtRules[0].issuer: issuer must be set"},
		{"empty audience", "  jwtRules:\n  - issuer: iss\n    audiences: [a, '']\n", doc + "spec.jwtRules[0].audiences[1]: audience must be non-empty string"},
		{"jwksUri scheme", "  jwtRules:\n  - issuer: iss\n    jwksUri: ftp://example.com/keys\n", doc + `spec.jwtRules[0].jwksUri: URI scheme "ftp" is not supported`},
		{"jwks not JSON", "  jwtRules:\n  - issuer: iss\n    jwks: 'not json'\n", doc + "spec.jwtRules[0].jwks: jwks parse error: invalid character 'o' in literal null (expecting 'u')"},
		{"empty header name", "  jwtRules:\n  - issuer: iss\n    fromHeaders: [{prefix: 'Bearer '}]\n", doc + "spec.jwtRules[0].fromHeaders[0].name: location header name must be non-empty string"},
		{"empty param", "  jwtRules:\n  - issuer: iss\n    fromParams: ['']\n", doc + "spec.jwtRules[0].fromParams[0]: location query must be non-empty string"},
		{"empty cookie", "  jwtRules:\n  - issuer: iss\n    fromCookies: ['']\n", doc + "spec.jwtRules[0].fromCookies[0]: cookie name must be non-empty string"},
		{"claim header", "  jwtRules:\n  - issuer: iss\n    outputClaimToHeaders: [{header: 'x sub', claim: sub}]\n", doc + "spec.jwtRules[0].outputClaimToHeaders[0].header: header name x sub is not a valid header name"},
		{"claim missing", "  jwtRules:\n  - issuer: iss\n    outputClaimToHeaders: [{header: x-sub}]\n", doc + "spec.jwtRules[0].outputClaimToHeaders[0]: outputClaimToHeaders header and claim value must be non-empty string"},
		{"timeout precision", "  jwtRules:\n  - issuer: iss\n    timeout: 1500us\n", doc + "spec.jwtRules[0].timeout: only durations to ms precision are supported"},
		{"selector and targetRef", "  selector: {matchLabels: {app: a}}\n  targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: gw}\n  jwtRules:\n  - issuer: iss\n", doc + "spec: only one of targetRefs or workloadSelector can be set"},
		{"wildcard selector", "  selector: {matchLabels: {app: 'a*'}}\n", doc + `spec.selector.matchLabels: wildcard is not supported in selector: "app=a*"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("in.yaml", []byte(head+tt.spec))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v\nwant %s", err, tt.wantErr)
			}
		})
	}
}
