package xds

// RequestAuthentication → Envoy's envoy.filters.http.jwt_authn, as Istio
// 1.24.6 builds it (pilot/pkg/security/authn/policy_applier.go
// convertToEnvoyJwtConfig, pilot/pkg/networking/plugin/authn BuildHTTP,
// pilot/pkg/model/authentication.go for selection, jwks_resolver.go for
// the keys). One filter per workload, placed in front of the RBAC
// filters on every inbound HTTP chain and on the gateway's HCMs.
//
// Istio 1.24 has no istio_authn filter any more: the verified payload is
// written by jwt_authn itself under the "payload" key of its dynamic
// metadata, and the RBAC filters match request principals (iss/sub) and
// request.auth.* conditions against that (authz.go extendedPrincipal).

import (
	"fmt"
	"slices"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/emptypb"
	security "istio.io/api/security/v1beta1"

	"github.com/meshlab/meshlab/controlplane/config"
)

// JWKSKey names a public key set the control plane fetches: a rule's
// jwksUri, or, when it has none, its issuer's OpenID discovery document
// (URI empty), as Istio's JwksResolver keys its cache.
type JWKSKey struct {
	Issuer string
	URI    string
}

// JWKSRequest is one key set the translation needs and how long a fetch
// of it may take (the rule's timeout, Istio's 5 s default).
type JWKSRequest struct {
	JWKSKey
	Timeout time.Duration
}

// defaultJWKSTimeout is Istio's when a jwtRule sets no timeout.
const defaultJWKSTimeout = 5 * time.Second

// FakeJWKS is what the control plane inlines for a key set it could not
// fetch, as istiod inlines its FakeJwks (pilot/pkg/model/jwks_resolver.go):
// an RSA key set, so every token fails with "Jwt verification fails" and
// requests without one pass. meshlab differs in one respect: Istio's fake
// key ships its private half in Istio's source, so anyone can sign a token
// that verifies against it while a fetch is failing; this key's private
// half was discarded when it was generated.
const FakeJWKS = `{"keys":[{"e":"AQAB","kty":"RSA","n":"77hnx4_lSkFNcRktIYFKvwpWfoE0SnGcd0N9EMrY33mnxuMe3_OJX-AHaxEno9JrNDd63cwratF0ARLqO_x2rpZfVW0a46HLYqgCS52FLaEUD1_1KA3rurp9kgXlR7Mcygh5y4alFqafx8yLFctZUtlqBpcYE7kmTY0IlmhctIFTKPw1nGPKzEQSgSCQHHIlu-t6CsnVsjC6h9P7lCIh7jrGGTitLmJuk0mp9y31vrjPFDEuEmd6C42CiixK-xRgX145dpWcigAOT7bwquTTKhfh1-yLcyK8YliRDPJ3vjE3A9qxqUTsfauuOyO07KkY3cU92XUCVom70-ddMykbdw"}]}`

// JWKSRequests lists the key sets the RequestAuthentications in cfg need
// fetched: every rule without inline jwks. The control plane resolves
// them before a push and hands the result over in Input.JWKS.
func JWKSRequests(cfg []config.Resource) []JWKSRequest {
	var out []JWKSRequest
	seen := map[JWKSKey]bool{}
	for _, r := range cfg {
		ra, ok := r.Spec.(*security.RequestAuthentication)
		if !ok {
			continue
		}
		for _, rule := range ra.GetJwtRules() {
			if rule.GetJwks() != "" {
				continue
			}
			k := JWKSKey{Issuer: rule.GetIssuer(), URI: rule.GetJwksUri()}
			if seen[k] {
				continue
			}
			seen[k] = true
			out = append(out, JWKSRequest{JWKSKey: k, Timeout: jwtTimeout(rule)})
		}
	}
	return out
}

func jwtTimeout(rule *security.JWTRule) time.Duration {
	if rule.GetTimeout() != nil {
		return rule.GetTimeout().AsDuration()
	}
	return defaultJWKSTimeout
}

// RequestAuthnFor returns the RequestAuthentications that apply to a
// workload, as GetJwtPoliciesForWorkload does: the workload namespace's,
// then the root namespace's, each oldest first (initAuthenticationPolicies'
// sortConfigByCreationTime: creation time, then name) whatever order they
// are given in, which is the order of their JWT rules before Istio sorts
// those by issuer; a selector must be a subset of the labels;
// one with targetRef(s) never applies to a sidecar or a classic gateway.
func RequestAuthnFor(cfg []config.Resource, namespace string, labels map[string]string, rootNamespace string) []config.Resource {
	lookup := []string{namespace, rootNamespace}
	if namespace == rootNamespace {
		lookup = lookup[:1]
	}
	var out []config.Resource
	for _, ns := range lookup {
		from := len(out)
		for _, r := range cfg {
			ra, ok := r.Spec.(*security.RequestAuthentication)
			if !ok || r.Namespace != ns {
				continue
			}
			if len(ra.GetTargetRefs()) > 0 || ra.GetTargetRef() != nil {
				continue
			}
			if !selectorMatches(ra.GetSelector().GetMatchLabels(), labels) {
				continue
			}
			out = append(out, r)
		}
		slices.SortStableFunc(out[from:], oldestFirst)
	}
	return out
}

// BuildJWTFilter is the jwt_authn filter for a workload, nil when no
// RequestAuthentication applies. jwks holds the fetched key sets; a rule
// whose set is missing gets FakeJWKS, as istiod inlines when its fetch
// failed. clearRouteCache is Istio's: true on gateways (routes may match
// on claims there), false on sidecars.
func BuildJWTFilter(policies []config.Resource, jwks map[JWKSKey]string, clearRouteCache bool) *hcmv3.HttpFilter {
	var rules []*security.JWTRule
	for _, r := range policies {
		rules = append(rules, r.Spec.(*security.RequestAuthentication).GetJwtRules()...)
	}
	if len(rules) == 0 {
		return nil
	}
	// Istio sorts by issuer (slices.SortBy, not stable); a stable sort
	// keeps equal issuers in policy order, which Istio leaves undefined.
	slices.SortStableFunc(rules, func(a, b *security.JWTRule) int {
		switch {
		case a.GetIssuer() < b.GetIssuer():
			return -1
		case a.GetIssuer() > b.GetIssuer():
			return 1
		}
		return 0
	})
	return &hcmv3.HttpFilter{
		Name:       jwtFilterName,
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: deterministicAny(jwtConfig(rules, jwks, clearRouteCache))},
	}
}

// jwtConfig is convertToEnvoyJwtConfig: one provider "origins-N" per rule;
// each must verify a token it finds (a missing token is allowed), which
// is requires_any{provider, allow_missing} for one rule and, for several,
// requires_any{P0, P1, ..., requires_all{any{P0, allow_missing}, ...}}
// so that providers sharing a token location still pass.
func jwtConfig(rules []*security.JWTRule, jwks map[JWKSKey]string, clearRouteCache bool) *jwtv3.JwtAuthentication {
	providers := map[string]*jwtv3.JwtProvider{}
	var innerAnd, outerOr []*jwtv3.JwtRequirement
	for i, rule := range rules {
		p := &jwtv3.JwtProvider{
			Issuer:               rule.GetIssuer(),
			Audiences:            rule.GetAudiences(),
			Forward:              rule.GetForwardOriginalToken(),
			ForwardPayloadHeader: rule.GetOutputPayloadToHeader(),
			PayloadInMetadata:    jwtPayloadKey,
			NormalizePayloadInMetadata: &jwtv3.JwtProvider_NormalizePayload{
				SpaceDelimitedClaims: []string{"scope", "permission"},
			},
			ClearRouteCache: clearRouteCache,
		}
		for _, ch := range rule.GetOutputClaimToHeaders() {
			p.ClaimToHeaders = append(p.ClaimToHeaders, &jwtv3.JwtClaimToHeader{HeaderName: ch.GetHeader(), ClaimName: ch.GetClaim()})
		}
		for _, h := range rule.GetFromHeaders() {
			p.FromHeaders = append(p.FromHeaders, &jwtv3.JwtHeader{Name: h.GetName(), ValuePrefix: h.GetPrefix()})
		}
		p.FromParams = rule.GetFromParams()
		p.FromCookies = rule.GetFromCookies()
		// PILOT_JWT_ENABLE_REMOTE_JWKS=false (Istio's default): istiod
		// fetches jwksUri and inlines it; inline jwks go as written.
		keys := rule.GetJwks()
		if keys == "" {
			var ok bool
			if keys, ok = jwks[JWKSKey{Issuer: rule.GetIssuer(), URI: rule.GetJwksUri()}]; !ok || keys == "" {
				keys = FakeJWKS
			}
		}
		p.JwksSourceSpecifier = &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{
			Specifier: &corev3.DataSource_InlineString{InlineString: keys},
		}}
		name := fmt.Sprintf("origins-%d", i)
		providers[name] = p
		innerAnd = append(innerAnd, &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_RequiresAny{
			RequiresAny: &jwtv3.JwtRequirementOrList{Requirements: []*jwtv3.JwtRequirement{
				providerRequirement(name),
				{RequiresType: &jwtv3.JwtRequirement_AllowMissing{AllowMissing: &emptypb.Empty{}}},
			}},
		}})
		outerOr = append(outerOr, providerRequirement(name))
	}
	requires := innerAnd[0]
	if len(innerAnd) > 1 {
		requires = &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_RequiresAny{
			RequiresAny: &jwtv3.JwtRequirementOrList{Requirements: append(outerOr, &jwtv3.JwtRequirement{
				RequiresType: &jwtv3.JwtRequirement_RequiresAll{RequiresAll: &jwtv3.JwtRequirementAndList{Requirements: innerAnd}},
			})},
		}}
	}
	return &jwtv3.JwtAuthentication{
		Rules: []*jwtv3.RequirementRule{{
			Match:           &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			RequirementType: &jwtv3.RequirementRule_Requires{Requires: requires},
		}},
		Providers:           providers,
		BypassCorsPreflight: true,
	}
}

func providerRequirement(name string) *jwtv3.JwtRequirement {
	return &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_ProviderName{ProviderName: name}}
}
