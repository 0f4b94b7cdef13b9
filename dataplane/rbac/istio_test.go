package rbac

import (
	"net/netip"
	"strings"

	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacpb "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routepb "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbachttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	uritpl "github.com/envoyproxy/go-control-plane/envoy/extensions/path/match/uri_template/v3"
	matcherpb "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Builders for RBAC protos in the shapes Istio 1.24's authz builder emits
// (pilot/pkg/security/authz/model): each rule is one policy named
// ns[NS]-policy[NAME]-rule[i] whose single permission and single principal are
// and_rules/and_ids over the rule's fields, each field an or of its values and
// each not-field a not of an or.

func policyName(ns, name string, rule int) string {
	return "ns[" + ns + "]-policy[" + name + "]-rule[" + string(rune('0'+rule)) + "]"
}

func exact(s string) *matcherpb.StringMatcher {
	return &matcherpb.StringMatcher{MatchPattern: &matcherpb.StringMatcher_Exact{Exact: s}}
}

func prefix(s string) *matcherpb.StringMatcher {
	return &matcherpb.StringMatcher{MatchPattern: &matcherpb.StringMatcher_Prefix{Prefix: s}}
}

func suffix(s string) *matcherpb.StringMatcher {
	return &matcherpb.StringMatcher{MatchPattern: &matcherpb.StringMatcher_Suffix{Suffix: s}}
}

func regex(s string) *matcherpb.StringMatcher {
	return &matcherpb.StringMatcher{MatchPattern: &matcherpb.StringMatcher_SafeRegex{
		SafeRegex: &matcherpb.RegexMatcher{Regex: s}}}
}

// istioString is matcher.StringMatcherWithPrefix: "*" is ".+", "*x" a suffix
// (or a regex once a prefix is added), "x*" a prefix, else exact.
func istioString(v, pre string) *matcherpb.StringMatcher {
	switch {
	case v == "*":
		return regex(".+")
	case strings.HasPrefix(v, "*"):
		if pre == "" {
			return suffix(v[1:])
		}
		return regex(pre + ".*" + v[1:])
	case strings.HasSuffix(v, "*"):
		return prefix(pre + strings.TrimSuffix(v, "*"))
	}
	return exact(pre + v)
}

func permAnd(ps ...*rbacpb.Permission) *rbacpb.Permission {
	return &rbacpb.Permission{Rule: &rbacpb.Permission_AndRules{AndRules: &rbacpb.Permission_Set{Rules: ps}}}
}

func permOr(ps ...*rbacpb.Permission) *rbacpb.Permission {
	return &rbacpb.Permission{Rule: &rbacpb.Permission_OrRules{OrRules: &rbacpb.Permission_Set{Rules: ps}}}
}

func permNot(p *rbacpb.Permission) *rbacpb.Permission {
	return &rbacpb.Permission{Rule: &rbacpb.Permission_NotRule{NotRule: p}}
}

func permAny() *rbacpb.Permission {
	return &rbacpb.Permission{Rule: &rbacpb.Permission_Any{Any: true}}
}

func idAnd(ps ...*rbacpb.Principal) *rbacpb.Principal {
	return &rbacpb.Principal{Identifier: &rbacpb.Principal_AndIds{AndIds: &rbacpb.Principal_Set{Ids: ps}}}
}

func idOr(ps ...*rbacpb.Principal) *rbacpb.Principal {
	return &rbacpb.Principal{Identifier: &rbacpb.Principal_OrIds{OrIds: &rbacpb.Principal_Set{Ids: ps}}}
}

func idNot(p *rbacpb.Principal) *rbacpb.Principal {
	return &rbacpb.Principal{Identifier: &rbacpb.Principal_NotId{NotId: p}}
}

func idAny() *rbacpb.Principal {
	return &rbacpb.Principal{Identifier: &rbacpb.Principal_Any{Any: true}}
}

// principals: ["cluster.local/ns/foo/sa/sleep"] → spiffe:// prepended.
func principals(vs ...string) *rbacpb.Principal {
	var or []*rbacpb.Principal
	for _, v := range vs {
		or = append(or, authenticated(istioString(v, "spiffe://")))
	}
	return idOr(or...)
}

func authenticated(m *matcherpb.StringMatcher) *rbacpb.Principal {
	return &rbacpb.Principal{Identifier: &rbacpb.Principal_Authenticated_{
		Authenticated: &rbacpb.Principal_Authenticated{PrincipalName: m}}}
}

// namespaces: ["foo"] → regex .*/ns/foo/.* on the peer's URI SAN.
func namespaces(vs ...string) *rbacpb.Principal {
	var or []*rbacpb.Principal
	for _, v := range vs {
		or = append(or, authenticated(regex(".*/ns/"+strings.ReplaceAll(v, "*", ".*")+"/.*")))
	}
	return idOr(or...)
}

func cidr(s string) *corepb.CidrRange {
	p := netip.MustParsePrefix(s)
	return &corepb.CidrRange{AddressPrefix: p.Addr().String(), PrefixLen: wrapperspb.UInt32(uint32(p.Bits()))}
}

// ipBlocks → direct_remote_ip; remoteIpBlocks → remote_ip.
func ipBlocks(vs ...string) *rbacpb.Principal {
	var or []*rbacpb.Principal
	for _, v := range vs {
		or = append(or, &rbacpb.Principal{Identifier: &rbacpb.Principal_DirectRemoteIp{DirectRemoteIp: cidr(v)}})
	}
	return idOr(or...)
}

func remoteIPBlocks(vs ...string) *rbacpb.Principal {
	var or []*rbacpb.Principal
	for _, v := range vs {
		or = append(or, &rbacpb.Principal{Identifier: &rbacpb.Principal_RemoteIp{RemoteIp: cidr(v)}})
	}
	return idOr(or...)
}

// jwtClaim is MetadataStringMatcherForJWTClaim: envoy.filters.http.jwt_authn
// [payload][claim].
func jwtClaim(claim string, m *matcherpb.ValueMatcher) *rbacpb.Principal {
	return &rbacpb.Principal{Identifier: &rbacpb.Principal_Metadata{Metadata: &matcherpb.MetadataMatcher{ //nolint:staticcheck // the field Istio 1.24 emits
		Filter: "envoy.filters.http.jwt_authn",
		Path: []*matcherpb.MetadataMatcher_PathSegment{
			{Segment: &matcherpb.MetadataMatcher_PathSegment_Key{Key: "payload"}},
			{Segment: &matcherpb.MetadataMatcher_PathSegment_Key{Key: claim}},
		},
		Value: m,
	}}}
}

func strValue(m *matcherpb.StringMatcher) *matcherpb.ValueMatcher {
	return &matcherpb.ValueMatcher{MatchPattern: &matcherpb.ValueMatcher_StringMatch{StringMatch: m}}
}

// requestPrincipals: "iss/sub" → and(iss, sub) on the JWT payload.
func requestPrincipals(vs ...string) *rbacpb.Principal {
	var or []*rbacpb.Principal
	for _, v := range vs {
		mi, ms := regex(".+"), regex(".+")
		if v != "*" {
			i := strings.LastIndex(v, "/")
			mi, ms = exact(v[:i]), exact(v[i+1:])
		}
		or = append(or, idAnd(jwtClaim("iss", strValue(mi)), jwtClaim("sub", strValue(ms))))
	}
	if len(or) == 1 {
		return or[0]
	}
	return idOr(or...)
}

// claim is request.auth.claims[NAME] (and audiences with "aud"): a list whose
// element matches, or a string that does.
func claim(name string, vs ...string) *rbacpb.Principal {
	var ors []*matcherpb.ValueMatcher
	for _, v := range vs {
		ors = append(ors, strValue(istioString(v, "")))
	}
	any := ors[0]
	if len(ors) > 1 {
		any = &matcherpb.ValueMatcher{MatchPattern: &matcherpb.ValueMatcher_OrMatch{OrMatch: &matcherpb.OrMatcher{ValueMatchers: ors}}}
	}
	list := &matcherpb.ValueMatcher{MatchPattern: &matcherpb.ValueMatcher_ListMatch{ListMatch: &matcherpb.ListMatcher{
		MatchPattern: &matcherpb.ListMatcher_OneOf{OneOf: any}}}}
	return jwtClaim(name, &matcherpb.ValueMatcher{MatchPattern: &matcherpb.ValueMatcher_OrMatch{OrMatch: &matcherpb.OrMatcher{
		ValueMatchers: []*matcherpb.ValueMatcher{list, any}}}})
}

// requestHeader: when request.headers[NAME] → principal header matcher.
func requestHeader(name string, vs ...string) *rbacpb.Principal {
	var or []*rbacpb.Principal
	for _, v := range vs {
		or = append(or, &rbacpb.Principal{Identifier: &rbacpb.Principal_Header{Header: headerMatcherFor(name, v, false)}})
	}
	return idOr(or...)
}

func headerMatcherFor(name, v string, ignoreCase bool) *routepb.HeaderMatcher {
	if v == "*" {
		return &routepb.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routepb.HeaderMatcher_PresentMatch{PresentMatch: true}}
	}
	m := istioString(v, "")
	m.IgnoreCase = ignoreCase
	return &routepb.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routepb.HeaderMatcher_StringMatch{StringMatch: m}}
}

// hosts → :authority, case-insensitive.
func hosts(vs ...string) *rbacpb.Permission {
	var or []*rbacpb.Permission
	for _, v := range vs {
		or = append(or, &rbacpb.Permission{Rule: &rbacpb.Permission_Header{Header: headerMatcherFor(":authority", v, true)}})
	}
	return permOr(or...)
}

func methods(vs ...string) *rbacpb.Permission {
	var or []*rbacpb.Permission
	for _, v := range vs {
		or = append(or, &rbacpb.Permission{Rule: &rbacpb.Permission_Header{Header: headerMatcherFor(":method", v, false)}})
	}
	return permOr(or...)
}

func ports(ps ...uint32) *rbacpb.Permission {
	var or []*rbacpb.Permission
	for _, p := range ps {
		or = append(or, &rbacpb.Permission{Rule: &rbacpb.Permission_DestinationPort{DestinationPort: p}})
	}
	return permOr(or...)
}

// paths: templates ({*}, {**}) become uri_template, the rest url_path.
func paths(vs ...string) *rbacpb.Permission {
	var or []*rbacpb.Permission
	for _, v := range vs {
		if strings.Contains(v, "{*}") || strings.Contains(v, "{**}") {
			t := strings.ReplaceAll(strings.ReplaceAll(v, "{**}", "**"), "{*}", "*")
			or = append(or, uriTemplate(t))
			continue
		}
		or = append(or, &rbacpb.Permission{Rule: &rbacpb.Permission_UrlPath{UrlPath: &matcherpb.PathMatcher{
			Rule: &matcherpb.PathMatcher_Path{Path: istioString(v, "")}}}})
	}
	return permOr(or...)
}

func uriTemplate(t string) *rbacpb.Permission {
	a, err := anypb.New(&uritpl.UriTemplateMatchConfig{PathTemplate: t})
	if err != nil {
		panic(err)
	}
	return &rbacpb.Permission{Rule: &rbacpb.Permission_UriTemplate{UriTemplate: &corepb.TypedExtensionConfig{
		Name: "uri-template", TypedConfig: a}}}
}

func sni(vs ...string) *rbacpb.Permission {
	var or []*rbacpb.Permission
	for _, v := range vs {
		or = append(or, &rbacpb.Permission{Rule: &rbacpb.Permission_RequestedServerName{RequestedServerName: istioString(v, "")}})
	}
	return permOr(or...)
}

func destIPs(vs ...string) *rbacpb.Permission {
	var or []*rbacpb.Permission
	for _, v := range vs {
		or = append(or, &rbacpb.Permission{Rule: &rbacpb.Permission_DestinationIp{DestinationIp: cidr(v)}})
	}
	return permOr(or...)
}

// rule is one Istio rule: and of the to-fields, and of the from-fields
// (Istio adds any when a side is empty).
func rule(perms []*rbacpb.Permission, ids []*rbacpb.Principal) *rbacpb.Policy {
	if len(perms) == 0 {
		perms = []*rbacpb.Permission{permAny()}
	}
	if len(ids) == 0 {
		ids = []*rbacpb.Principal{idAny()}
	}
	return &rbacpb.Policy{Permissions: []*rbacpb.Permission{permAnd(perms...)}, Principals: []*rbacpb.Principal{idAnd(ids...)}}
}

// matchNever is the policy Istio emits for spec: {} (allow-nothing).
func matchNever() *rbacpb.Policy {
	return &rbacpb.Policy{
		Permissions: []*rbacpb.Permission{permNot(permAny())},
		Principals:  []*rbacpb.Principal{idNot(idAny())},
	}
}

func httpFilter(action rbacpb.RBAC_Action, policies map[string]*rbacpb.Policy) *rbachttp.RBAC {
	return &rbachttp.RBAC{Rules: &rbacpb.RBAC{Action: action, Policies: policies}}
}
