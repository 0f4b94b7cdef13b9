package xds

// AuthorizationPolicy → Envoy RBAC, as Istio 1.24.6 builds it
// (pilot/pkg/security/authz/{builder,model,matcher}, pilot/pkg/security/trustdomain,
// pilot/pkg/model/authorization.go and policyattachment.go for selection).
// The generated protos are meant to be byte-for-byte what istiod sends a
// sidecar for the same policies; where meshlab differs it says so here.
//
// Not wired yet. The lead wires it per workload (BuildAuthzFilters with
// Input.Config, the proxy's namespace and labels): in build.go
// virtualInbound, HTTP filters go into each port's HCM in front of
// fault/cors/router (Istio's inbound order: CUSTOM, jwt_authn/istio_authn,
// then these, then fault, cors, router), and TCP filters in front of
// tcp_proxy on each TCP port chain and on the catch-all passthrough chain
// (Istio enforces pass-through ports too); in gateway.go, the router's
// HCMs (gateway namespace and labels) get the same HTTP filters.

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacpb "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbachttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbactcp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	uritemplate "github.com/envoyproxy/go-control-plane/envoy/extensions/path/match/uri_template/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	meshv1 "istio.io/api/mesh/v1alpha1"
	security "istio.io/api/security/v1beta1"

	"github.com/meshlab/meshlab/controlplane/config"
)

// Names and prefixes Istio uses (pilot/pkg/security/authz/model/model.go,
// pilot/pkg/xds/filters/filters.go, pkg/config/constants).
const (
	dryRunAnnotation         = "istio.io/dry-run"
	rbacTCPStatPrefix        = "tcp."
	dryRunAllowStatPrefix    = "istio_dry_run_allow_"
	dryRunDenyStatPrefix     = "istio_dry_run_deny_"
	jwtFilterName            = "envoy.filters.http.jwt_authn"
	jwtPayloadKey            = "payload"
	spiffePrefix             = "spiffe://"
	defaultTrustDomain       = "cluster.local"
	pathTemplateMatchOne     = "{*}"
	pathTemplateMatchAny     = "{**}"
	authorityHeader          = ":authority"
	methodHeader             = ":method"
	uriTemplateExtensionName = "uri-template"
)

// AuthzOptions is the mesh-wide input to the translation.
type AuthzOptions struct {
	// RootNamespace holds mesh-wide policies ("istio-system").
	RootNamespace string
	// TrustDomain and TrustDomainAliases are meshConfig's; principals in
	// a policy naming cluster.local or any of them are expanded to all of
	// them (trust domain migration).
	TrustDomain        string
	TrustDomainAliases []string
	// Mesh is the mesh config (extensionProviders for CUSTOM); nil is
	// none, which makes every CUSTOM provider unknown.
	Mesh *meshv1.MeshConfig
	// LookupCluster resolves an extension provider's service and port to
	// its hostname and outbound cluster as Istio's LookupCluster does; nil
	// finds nothing.
	LookupCluster func(service string, port uint32) (host, cluster string, err error)
}

// AuthzFilters is the translation for one workload.
type AuthzFilters struct {
	// HTTP filters for an inbound (or gateway) HCM, in Istio's order:
	// CUSTOM (shadow RBAC + ext_authz, authz_custom.go), then AUDIT,
	// DENY, ALLOW — one envoy.filters.http.rbac each, when the workload
	// has policies of that action. Nil when none apply.
	HTTP []*hcmv3.HttpFilter
	// TCP network filters for an inbound TCP filter chain, same order,
	// envoy.filters.network.rbac with stat prefix "tcp." (and the
	// network ext_authz for a gRPC CUSTOM provider).
	TCP []*listenerv3.Filter
	// CustomHTTP and CustomTCP count the leading filters of HTTP and TCP
	// that are the CUSTOM action's (shadow RBAC + ext_authz): a JWT filter
	// goes after them and before the rest, as in Istio.
	CustomHTTP, CustomTCP int
	// Notes are what istiod would log at debug level: rules skipped or
	// narrowed on the TCP chain, unparsable dry-run annotations.
	Notes []string
}

// WithAuthn is the HTTP filters with authn (the jwt_authn filter of the
// workload's RequestAuthentications, or nil) in Istio's place: after the
// CUSTOM action's filters, before DENY and ALLOW (Istio's
// buildHTTPConnectionManager: authzCustom, authn, authz).
func (a AuthzFilters) WithAuthn(authn *hcmv3.HttpFilter) []*hcmv3.HttpFilter {
	if authn == nil {
		return a.HTTP
	}
	out := make([]*hcmv3.HttpFilter, 0, len(a.HTTP)+1)
	out = append(out, a.HTTP[:a.CustomHTTP]...)
	out = append(out, authn)
	return append(out, a.HTTP[a.CustomHTTP:]...)
}

// AuthzPoliciesFor returns the AuthorizationPolicies that apply to a
// sidecar workload, as ListAuthorizationPolicies does: the root
// namespace's first, then the workload namespace's, each oldest first
// (GetAuthorizationPolicies' sortConfigByCreationTime: creation time,
// then name), whatever order they are given in.
// A policy with targetRef(s) never applies to a sidecar (Istio 1.24
// attaches those only to Gateway API gateways and waypoints, which meshlab
// has neither of); a selector must be a subset of the workload's labels.
// `meshlab x authz check POD` lists these, as istioctl does.
func AuthzPoliciesFor(policies []config.Resource, namespace string, labels map[string]string, rootNamespace string) []config.Resource {
	lookup := []string{rootNamespace, namespace}
	if namespace == rootNamespace {
		lookup = lookup[:1]
	}
	var out []config.Resource
	for _, ns := range lookup {
		from := len(out)
		for _, r := range policies {
			ap, ok := r.Spec.(*security.AuthorizationPolicy)
			if r.Kind != config.AuthorizationPolicy || !ok || r.Namespace != ns {
				continue
			}
			if len(ap.GetTargetRefs()) > 0 || ap.GetTargetRef() != nil {
				continue
			}
			if !selectorMatches(ap.GetSelector().GetMatchLabels(), labels) {
				continue
			}
			out = append(out, r)
		}
		slices.SortStableFunc(out[from:], oldestFirst)
	}
	return out
}

// BuildAuthzFilters translates the AuthorizationPolicies that apply to the
// workload (namespace, labels) into RBAC filters. It fails, rather than
// emitting something weaker, for what Istio's validation webhook would
// have refused (unknown `when` keys, bad IPs or ports, bad path templates)
// CUSTOM policies become an ext_authz filter behind a shadow RBAC filter,
// or deny what they match when the provider is unknown or broken.
func BuildAuthzFilters(policies []config.Resource, namespace string, labels map[string]string, opts AuthzOptions) (AuthzFilters, error) {
	if opts.RootNamespace == "" {
		opts.RootNamespace = "istio-system"
	}
	if opts.TrustDomain == "" {
		opts.TrustDomain = defaultTrustDomain
	}
	var out AuthzFilters
	var byAction [4][]config.Resource // index: audit, deny, allow, custom
	for _, r := range AuthzPoliciesFor(policies, namespace, labels, opts.RootNamespace) {
		ap := r.Spec.(*security.AuthorizationPolicy)
		if err := validateAuthz(ap); err != nil {
			return AuthzFilters{}, fmt.Errorf("authorization policy %s/%s: %w", r.Namespace, r.Name, err)
		}
		switch ap.GetAction() {
		case security.AuthorizationPolicy_AUDIT:
			byAction[0] = append(byAction[0], r)
		case security.AuthorizationPolicy_DENY:
			byAction[1] = append(byAction[1], r)
		case security.AuthorizationPolicy_ALLOW:
			byAction[2] = append(byAction[2], r)
		case security.AuthorizationPolicy_CUSTOM:
			byAction[3] = append(byAction[3], r)
		default:
			return AuthzFilters{}, fmt.Errorf("authorization policy %s/%s: action %s is not supported", r.Namespace, r.Name, ap.GetAction())
		}
	}
	b := authzBuilder{trustDomains: append([]string{opts.TrustDomain}, opts.TrustDomainAliases...)}
	// CUSTOM goes first (Istio's inbound order: CUSTOM, then the JWT and
	// authn filters, then AUDIT, DENY, ALLOW); authz_custom.go.
	if len(byAction[3]) > 0 {
		out.HTTP, out.TCP = b.buildCustom(byAction[3], opts)
		out.CustomHTTP, out.CustomTCP = len(out.HTTP), len(out.TCP)
	}
	for i, action := range []rbacpb.RBAC_Action{rbacpb.RBAC_LOG, rbacpb.RBAC_DENY, rbacpb.RBAC_ALLOW} {
		if len(byAction[i]) == 0 {
			continue
		}
		enforce, shadow := b.build(byAction[i], action, false)
		out.HTTP = append(out.HTTP, &hcmv3.HttpFilter{
			Name: wellknown.HTTPRoleBasedAccessControl,
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: deterministicAny(&rbachttp.RBAC{
				Rules: enforce, ShadowRules: shadow, ShadowRulesStatPrefix: shadowStatPrefix(shadow),
			})},
		})
		enforce, shadow = b.build(byAction[i], action, true)
		out.TCP = append(out.TCP, &listenerv3.Filter{
			Name: wellknown.RoleBasedAccessControl,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: deterministicAny(&rbactcp.RBAC{
				Rules: enforce, StatPrefix: rbacTCPStatPrefix, ShadowRules: shadow, ShadowRulesStatPrefix: shadowStatPrefix(shadow),
			})},
		})
	}
	out.Notes = b.notes
	return out, nil
}

// deterministicAny packs with sorted map keys: the RBAC policies are a map,
// and xDS versions hash these bytes.
func deterministicAny(m proto.Message) *anypb.Any {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		panic(fmt.Sprintf("marshal %T: %v", m, err))
	}
	return a
}

// shadowStatPrefix mirrors Istio exactly, including a quirk: without
// dry-run rules GetAction() of nil is ALLOW, so every non-dry-run filter
// carries "istio_dry_run_allow_" (harmless: there are no shadow rules).
func shadowStatPrefix(shadow *rbacpb.RBAC) string {
	switch shadow.GetAction() {
	case rbacpb.RBAC_ALLOW:
		return dryRunAllowStatPrefix
	case rbacpb.RBAC_DENY:
		return dryRunDenyStatPrefix
	}
	return ""
}

type authzBuilder struct {
	trustDomains []string
	notes        []string
}

// matchNever is the policy of `spec: {}` (no rules): Istio emits it so an
// ALLOW policy without rules allows nothing.
var matchNever = &rbacpb.Policy{
	Permissions: []*rbacpb.Permission{{Rule: &rbacpb.Permission_NotRule{NotRule: permAny()}}},
	Principals:  []*rbacpb.Principal{{Identifier: &rbacpb.Principal_NotId{NotId: princAny()}}},
}

// build returns the enforced and the dry-run RBAC of one action (either nil
// when no policy of that kind exists).
func (b *authzBuilder) build(policies []config.Resource, action rbacpb.RBAC_Action, forTCP bool) (enforce, shadow *rbacpb.RBAC) {
	return b.buildNamed(policies, action, forTCP, "")
}

// buildNamed is build with Istio's policy name prefix (the CUSTOM
// builder's "istio-ext-authz-", which the ext_authz filter's metadata
// match looks for).
func (b *authzBuilder) buildNamed(policies []config.Resource, action rbacpb.RBAC_Action, forTCP bool, prefix string) (enforce, shadow *rbacpb.RBAC) {
	chain := "HTTP"
	if forTCP {
		chain = "TCP"
	}
	for _, r := range policies {
		ap := r.Spec.(*security.AuthorizationPolicy)
		target := &enforce
		if b.dryRun(r, forTCP) {
			target = &shadow
		}
		if *target == nil {
			*target = &rbacpb.RBAC{Action: action, Policies: map[string]*rbacpb.Policy{}}
		}
		for i, rule := range ap.GetRules() {
			name := fmt.Sprintf("%sns[%s]-policy[%s]-rule[%d]", prefix, r.Namespace, r.Name, i)
			if rule == nil {
				continue
			}
			m := newAuthzModel(rule)
			m.migrateTrustDomain(b.trustDomains)
			p, err := m.generate(forTCP, action)
			if err != nil {
				b.notes = append(b.notes, fmt.Sprintf("skipped rule %s on %s filter chain: %v", name, chain, err))
				continue
			}
			(*target).Policies[name] = p
		}
		if len(ap.GetRules()) == 0 {
			(*target).Policies[fmt.Sprintf("%sns[%s]-policy[%s]-rule[0]", prefix, r.Namespace, r.Name)] = matchNever
		}
	}
	return enforce, shadow
}

// dryRun parses the annotation as istiod does (strconv.ParseBool; a bad
// value is logged and the policy enforced).
func (b *authzBuilder) dryRun(r config.Resource, forTCP bool) bool {
	v, ok := r.Annotations[dryRunAnnotation]
	if !ok {
		return false
	}
	d, err := strconv.ParseBool(v)
	if err != nil && !forTCP {
		b.notes = append(b.notes, fmt.Sprintf("%s/%s: failed to parse the value of %s: %v", r.Namespace, r.Name, dryRunAnnotation, err))
	}
	return d
}

// Attribute keys of `when` (istio/api conditions reference).
const (
	attrRequestHeader    = "request.headers"
	attrSrcIP            = "source.ip"
	attrRemoteIP         = "remote.ip"
	attrSrcNamespace     = "source.namespace"
	attrSrcPrincipal     = "source.principal"
	attrRequestPrincipal = "request.auth.principal"
	attrRequestAudiences = "request.auth.audiences"
	attrRequestPresenter = "request.auth.presenter"
	attrRequestClaims    = "request.auth.claims"
	attrDestIP           = "destination.ip"
	attrDestPort         = "destination.port"
	attrConnSNI          = "connection.sni"
	attrEnvoyFilter      = "experimental.envoy.filters."
	keyPath              = "path-matcher"
	keyHost              = ":authority"
	keyMethod            = ":method"
)

// attrRule is one key of a rule with its values (ORed) and notValues
// (NOT of the OR). Extended keys (JWT ones, envoy filter metadata) turn
// the whole value list into a single matcher instead.
type attrRule struct {
	key       string
	values    []string
	notValues []string
	extended  bool
}

// authzModel is one rule: an OR of principal lists (one per `from`, each an
// AND of its keys) and an OR of permission lists (one per `to`).
type authzModel struct {
	principals  [][]*attrRule
	permissions [][]*attrRule
}

func newAuthzModel(r *security.Rule) *authzModel {
	var basePerm, basePrinc []*attrRule
	add := func(list *[]*attrRule, key string, values, notValues []string, extended bool) {
		if len(values) == 0 && len(notValues) == 0 {
			return
		}
		*list = append(*list, &attrRule{key: key, values: values, notValues: notValues, extended: extended})
	}
	// when conditions go last, in order; validateAuthz has refused
	// unknown keys.
	for _, w := range r.GetWhen() {
		k := w.GetKey()
		switch {
		case k == attrDestIP, k == attrDestPort, k == attrConnSNI:
			add(&basePerm, k, w.GetValues(), w.GetNotValues(), false)
		case strings.HasPrefix(k, attrEnvoyFilter):
			add(&basePerm, k, w.GetValues(), w.GetNotValues(), true)
		case k == attrSrcIP, k == attrRemoteIP, k == attrSrcNamespace, k == attrSrcPrincipal, strings.HasPrefix(k, attrRequestHeader):
			add(&basePrinc, k, w.GetValues(), w.GetNotValues(), false)
		case k == attrRequestPrincipal, k == attrRequestAudiences, k == attrRequestPresenter, strings.HasPrefix(k, attrRequestClaims):
			add(&basePrinc, k, w.GetValues(), w.GetNotValues(), true)
		}
	}
	// Source and operation fields go in front, in the reverse of the
	// order Istio inserts them, which yields this order.
	m := &authzModel{}
	for _, from := range r.GetFrom() {
		var front []*attrRule
		if s := from.GetSource(); s != nil {
			add(&front, attrSrcPrincipal, s.GetPrincipals(), s.GetNotPrincipals(), false)
			add(&front, attrRequestPrincipal, s.GetRequestPrincipals(), s.GetNotRequestPrincipals(), true)
			add(&front, attrSrcNamespace, s.GetNamespaces(), s.GetNotNamespaces(), false)
			add(&front, attrRemoteIP, s.GetRemoteIpBlocks(), s.GetNotRemoteIpBlocks(), false)
			add(&front, attrSrcIP, s.GetIpBlocks(), s.GetNotIpBlocks(), false)
		}
		m.principals = append(m.principals, append(front, basePrinc...))
	}
	if len(r.GetFrom()) == 0 {
		m.principals = append(m.principals, basePrinc)
	}
	for _, to := range r.GetTo() {
		var front []*attrRule
		if o := to.GetOperation(); o != nil {
			add(&front, keyHost, o.GetHosts(), o.GetNotHosts(), false)
			add(&front, keyMethod, o.GetMethods(), o.GetNotMethods(), false)
			add(&front, keyPath, o.GetPaths(), o.GetNotPaths(), false)
			add(&front, attrDestPort, o.GetPorts(), o.GetNotPorts(), false)
		}
		m.permissions = append(m.permissions, append(front, basePerm...))
	}
	if len(r.GetTo()) == 0 {
		m.permissions = append(m.permissions, basePerm)
	}
	return m
}

// migrateTrustDomain expands source principals to every trust domain of
// the mesh (trustdomain.Bundle.ReplaceTrustDomainAliases). The rules are
// copied, since the same model never outlives one build but the slices
// come from the policy.
func (m *authzModel) migrateTrustDomain(tds []string) {
	for _, list := range m.principals {
		for i, r := range list {
			if r.key != attrSrcPrincipal {
				continue
			}
			c := *r
			c.values = replaceTrustDomainAliases(r.values, tds)
			c.notValues = replaceTrustDomainAliases(r.notValues, tds)
			list[i] = &c
		}
	}
}

func replaceTrustDomainAliases(principals, tds []string) []string {
	if len(principals) == 0 {
		return principals
	}
	out := []string{}
	for _, p := range principals {
		parts := strings.Split(p, "/")
		// "*/ns/x/sa/y" and malformed principals do not enforce a trust
		// domain, so they stay as written.
		if len(parts) != 5 || parts[0] == "*" {
			out = append(out, p)
			continue
		}
		td := parts[0]
		if !tdMatchAny(td, tds) && td != defaultTrustDomain {
			out = append(out, p)
			continue
		}
		var mine []string
		for _, t := range tds {
			np := p
			if !suffixMatch(t, td) {
				np = t + "/" + strings.Join(parts[1:], "/")
			}
			if !contains(mine, np) {
				mine = append(mine, np)
			}
		}
		out = append(out, mine...)
	}
	return out
}

func tdMatchAny(a string, list []string) bool {
	for _, s := range list {
		if a == s || s == "*" || prefixMatch(a, s) || prefixMatch(s, a) || suffixMatch(a, s) || suffixMatch(s, a) {
			return true
		}
	}
	return false
}

func prefixMatch(a, pattern string) bool {
	p, ok := strings.CutSuffix(pattern, "*")
	return ok && strings.HasPrefix(a, p)
}

func suffixMatch(a, pattern string) bool {
	p, ok := strings.CutPrefix(pattern, "*")
	return ok && strings.HasSuffix(a, p)
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

func (m *authzModel) generate(forTCP bool, action rbacpb.RBAC_Action) (*rbacpb.Policy, error) {
	p := &rbacpb.Policy{}
	for _, list := range m.permissions {
		var and []*rbacpb.Permission
		for _, r := range list {
			ps, err := r.permission(forTCP, action)
			if err != nil {
				return nil, err
			}
			and = append(and, ps...)
		}
		if len(and) == 0 {
			and = append(and, permAny())
		}
		p.Permissions = append(p.Permissions, &rbacpb.Permission{Rule: &rbacpb.Permission_AndRules{AndRules: &rbacpb.Permission_Set{Rules: and}}})
	}
	for _, list := range m.principals {
		var and []*rbacpb.Principal
		for _, r := range list {
			ps, err := r.principal(forTCP, action)
			if err != nil {
				return nil, err
			}
			and = append(and, ps...)
		}
		if len(and) == 0 {
			and = append(and, princAny())
		}
		p.Principals = append(p.Principals, princAnd(and))
	}
	return p, nil
}

// checkError is how Istio treats a value it cannot put on this chain
// (an HTTP-only key on TCP): for ALLOW the whole rule is dropped (a
// smaller allow); for DENY and AUDIT only that value is dropped, so the
// rule matches more (a wider deny). With every value of a rule's keys
// dropped, a DENY rule matches every connection — as Istio documents.
func checkError(action rbacpb.RBAC_Action, err error) error {
	if action == rbacpb.RBAC_ALLOW {
		return err
	}
	return nil
}

func (r *attrRule) permission(forTCP bool, action rbacpb.RBAC_Action) ([]*rbacpb.Permission, error) {
	var out []*rbacpb.Permission
	for neg, vals := range [][]string{r.values, r.notValues} {
		if len(vals) == 0 {
			continue
		}
		var p *rbacpb.Permission
		if r.extended {
			ep, err := extendedPermission(r.key, vals)
			if err := checkError(action, err); err != nil {
				return nil, err
			}
			p = ep
		} else {
			var or []*rbacpb.Permission
			for _, v := range vals {
				vp, err := valuePermission(r.key, v, forTCP)
				if err := checkError(action, err); err != nil {
					return nil, err
				}
				if vp != nil {
					or = append(or, vp)
				}
			}
			if len(or) > 0 {
				p = &rbacpb.Permission{Rule: &rbacpb.Permission_OrRules{OrRules: &rbacpb.Permission_Set{Rules: or}}}
			}
		}
		if p == nil {
			continue
		}
		if neg == 1 {
			p = &rbacpb.Permission{Rule: &rbacpb.Permission_NotRule{NotRule: p}}
		}
		out = append(out, p)
	}
	return out, nil
}

func (r *attrRule) principal(forTCP bool, action rbacpb.RBAC_Action) ([]*rbacpb.Principal, error) {
	var out []*rbacpb.Principal
	for neg, vals := range [][]string{r.values, r.notValues} {
		if len(vals) == 0 {
			continue
		}
		var p *rbacpb.Principal
		if r.extended {
			ep, err := extendedPrincipal(r.key, vals, forTCP)
			if err := checkError(action, err); err != nil {
				return nil, err
			}
			p = ep
		} else {
			var or []*rbacpb.Principal
			for _, v := range vals {
				vp, err := valuePrincipal(r.key, v, forTCP)
				if err := checkError(action, err); err != nil {
					return nil, err
				}
				if vp != nil {
					or = append(or, vp)
				}
			}
			if len(or) > 0 {
				p = &rbacpb.Principal{Identifier: &rbacpb.Principal_OrIds{OrIds: &rbacpb.Principal_Set{Ids: or}}}
			}
		}
		if p == nil {
			continue
		}
		if neg == 1 {
			p = &rbacpb.Principal{Identifier: &rbacpb.Principal_NotId{NotId: p}}
		}
		out = append(out, p)
	}
	return out, nil
}

func httpOnly(key string) error { return fmt.Errorf("%q is HTTP only", key) }

func valuePermission(key, v string, forTCP bool) (*rbacpb.Permission, error) {
	switch key {
	case attrDestIP:
		c, err := cidrRange(v)
		if err != nil {
			return nil, err
		}
		return &rbacpb.Permission{Rule: &rbacpb.Permission_DestinationIp{DestinationIp: c}}, nil
	case attrDestPort:
		p, err := authzPort(v)
		if err != nil {
			return nil, err
		}
		return &rbacpb.Permission{Rule: &rbacpb.Permission_DestinationPort{DestinationPort: p}}, nil
	case attrConnSNI:
		return &rbacpb.Permission{Rule: &rbacpb.Permission_RequestedServerName{RequestedServerName: authzString(v, "")}}, nil
	case keyHost:
		if forTCP {
			return nil, httpOnly(key)
		}
		return &rbacpb.Permission{Rule: &rbacpb.Permission_Header{Header: authzHeader(authorityHeader, v, true)}}, nil
	case keyMethod:
		if forTCP {
			return nil, httpOnly(key)
		}
		return &rbacpb.Permission{Rule: &rbacpb.Permission_Header{Header: authzHeader(methodHeader, v, false)}}, nil
	case keyPath:
		if forTCP {
			return nil, httpOnly(key)
		}
		if strings.Contains(v, pathTemplateMatchOne) || strings.Contains(v, pathTemplateMatchAny) {
			tmpl := strings.NewReplacer(pathTemplateMatchOne, "*", pathTemplateMatchAny, "**").Replace(v)
			return &rbacpb.Permission{Rule: &rbacpb.Permission_UriTemplate{UriTemplate: &corev3.TypedExtensionConfig{
				Name:        uriTemplateExtensionName,
				TypedConfig: deterministicAny(&uritemplate.UriTemplateMatchConfig{PathTemplate: tmpl}),
			}}}, nil
		}
		return &rbacpb.Permission{Rule: &rbacpb.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{
			Rule: &matcherv3.PathMatcher_Path{Path: authzString(v, "")},
		}}}, nil
	}
	return nil, errors.New("unimplemented")
}

func valuePrincipal(key, v string, forTCP bool) (*rbacpb.Principal, error) {
	switch {
	case key == attrSrcIP, key == attrRemoteIP:
		c, err := cidrRange(v)
		if err != nil {
			return nil, err
		}
		if key == attrSrcIP {
			return &rbacpb.Principal{Identifier: &rbacpb.Principal_DirectRemoteIp{DirectRemoteIp: c}}, nil
		}
		return &rbacpb.Principal{Identifier: &rbacpb.Principal_RemoteIp{RemoteIp: c}}, nil
	case key == attrSrcNamespace:
		// Istio does not escape the namespace; "*" becomes ".*".
		re := fmt.Sprintf(".*/ns/%s/.*", strings.ReplaceAll(v, "*", ".*"))
		return authenticated(regexMatcher(re)), nil
	case key == attrSrcPrincipal:
		return authenticated(authzString(v, spiffePrefix)), nil
	case strings.HasPrefix(key, attrRequestHeader):
		if forTCP {
			return nil, httpOnly(key)
		}
		name, err := nameInBrackets(strings.TrimPrefix(key, attrRequestHeader))
		if err != nil {
			return nil, err
		}
		return &rbacpb.Principal{Identifier: &rbacpb.Principal_Header{Header: authzHeader(name, v, false)}}, nil
	}
	return nil, errors.New("unimplemented")
}

// authenticated matches the peer certificate's URI SAN. Sidecars use
// `authenticated` (Istio's filter-state variant is for HBONE/waypoints).
func authenticated(m *matcherv3.StringMatcher) *rbacpb.Principal {
	return &rbacpb.Principal{Identifier: &rbacpb.Principal_Authenticated_{Authenticated: &rbacpb.Principal_Authenticated{PrincipalName: m}}}
}

func extendedPermission(key string, values []string) (*rbacpb.Permission, error) {
	if !strings.HasPrefix(key, attrEnvoyFilter) {
		return nil, errors.New("unimplemented")
	}
	// "experimental.envoy.filters.a.b[c]" → filter "envoy.filters.a.b", key "c".
	parts := strings.SplitN(strings.TrimSuffix(strings.TrimPrefix(key, "experimental."), "]"), "[", 2)
	if len(parts) != 2 {
		return nil, fmt.Errorf("invalid key: %v", key)
	}
	var ms []*matcherv3.ValueMatcher
	for _, v := range values {
		if strings.HasPrefix(v, "[") && strings.HasSuffix(v, "]") {
			ms = append(ms, &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_ListMatch{ListMatch: &matcherv3.ListMatcher{
				MatchPattern: &matcherv3.ListMatcher_OneOf{OneOf: stringValue(authzString(strings.Trim(v, "[]"), ""))},
			}}})
			continue
		}
		ms = append(ms, stringValue(authzString(v, "")))
	}
	return &rbacpb.Permission{Rule: &rbacpb.Permission_Metadata{Metadata: &matcherv3.MetadataMatcher{ //nolint:staticcheck // Istio 1.24 emits the deprecated metadata field, not sourced_metadata
		Filter: parts[0],
		Path:   []*matcherv3.MetadataMatcher_PathSegment{pathKey(parts[1])},
		Value:  orValue(ms),
	}}}, nil
}

var matchAnyValue = regexMatcher(".+")

func extendedPrincipal(key string, values []string, forTCP bool) (*rbacpb.Principal, error) {
	if strings.HasPrefix(key, attrEnvoyFilter) {
		return nil, errors.New("unimplemented")
	}
	if forTCP {
		return nil, httpOnly(key)
	}
	switch {
	case key == attrRequestPrincipal:
		// "<iss>/<sub>" split at the last "/" (issuers are URLs), each part
		// matched against the JWT payload the jwt_authn filter stores.
		var or []*rbacpb.Principal
		for _, v := range values {
			idx := strings.LastIndex(v, "/")
			found := idx >= 0
			iss, sub := v, ""
			if found {
				iss, sub = v[:idx], v[idx+1:]
			}
			var mi, ms *matcherv3.StringMatcher
			switch {
			case v == "*":
				mi, ms = matchAnyValue, matchAnyValue
			case strings.HasPrefix(v, "*"):
				if found {
					if iss == "*" {
						mi = matchAnyValue
					} else {
						mi = suffixMatcher(strings.TrimPrefix(iss, "*"), false)
					}
					ms = exactMatcher(sub, false)
				} else {
					mi, ms = matchAnyValue, suffixMatcher(strings.TrimPrefix(v, "*"), false)
				}
			case strings.HasSuffix(v, "*"):
				if found {
					mi = exactMatcher(iss, false)
					if sub == "*" {
						ms = matchAnyValue
					} else {
						ms = prefixMatcher(strings.TrimSuffix(sub, "*"), false)
					}
				} else {
					mi, ms = prefixMatcher(strings.TrimSuffix(v, "*"), false), matchAnyValue
				}
			default:
				mi, ms = exactMatcher(iss, false), exactMatcher(sub, false)
			}
			or = append(or, princAnd([]*rbacpb.Principal{jwtClaimString("iss", mi), jwtClaimString("sub", ms)}))
		}
		if len(or) == 1 {
			return or[0], nil
		}
		return &rbacpb.Principal{Identifier: &rbacpb.Principal_OrIds{OrIds: &rbacpb.Principal_Set{Ids: or}}}, nil
	case key == attrRequestAudiences:
		return jwtClaimList([]string{"aud"}, values), nil
	case key == attrRequestPresenter:
		return jwtClaimList([]string{"azp"}, values), nil
	case strings.HasPrefix(key, attrRequestClaims):
		claims, err := nameInNestedBrackets(strings.TrimPrefix(key, attrRequestClaims))
		if err != nil {
			return nil, err
		}
		return jwtClaimList(claims, values), nil
	}
	return nil, errors.New("unimplemented")
}

func jwtClaimString(claim string, m *matcherv3.StringMatcher) *rbacpb.Principal {
	return &rbacpb.Principal{Identifier: &rbacpb.Principal_Metadata{Metadata: &matcherv3.MetadataMatcher{ //nolint:staticcheck // as Istio 1.24
		Filter: jwtFilterName,
		Path:   []*matcherv3.MetadataMatcher_PathSegment{pathKey(jwtPayloadKey), pathKey(claim)},
		Value:  stringValue(m),
	}}}
}

// jwtClaimList matches a claim that is either a list containing one of the
// values or a string equal to one (Istio's "extended JWT" matcher).
func jwtClaimList(claims, values []string) *rbacpb.Principal {
	var vs []*matcherv3.ValueMatcher
	for _, v := range values {
		vs = append(vs, stringValue(authzString(v, "")))
	}
	value := orValue(vs)
	path := []*matcherv3.MetadataMatcher_PathSegment{pathKey(jwtPayloadKey)}
	for _, c := range claims {
		path = append(path, pathKey(c))
	}
	return &rbacpb.Principal{Identifier: &rbacpb.Principal_Metadata{Metadata: &matcherv3.MetadataMatcher{ //nolint:staticcheck // as Istio 1.24
		Filter: jwtFilterName,
		Path:   path,
		Value: &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_OrMatch{OrMatch: &matcherv3.OrMatcher{ValueMatchers: []*matcherv3.ValueMatcher{
			{MatchPattern: &matcherv3.ValueMatcher_ListMatch{ListMatch: &matcherv3.ListMatcher{MatchPattern: &matcherv3.ListMatcher_OneOf{OneOf: value}}}},
			value,
		}}}},
	}}}
}

func pathKey(k string) *matcherv3.MetadataMatcher_PathSegment {
	return &matcherv3.MetadataMatcher_PathSegment{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: k}}
}

func stringValue(m *matcherv3.StringMatcher) *matcherv3.ValueMatcher {
	return &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: m}}
}

func orValue(ms []*matcherv3.ValueMatcher) *matcherv3.ValueMatcher {
	if len(ms) == 1 {
		return ms[0]
	}
	return &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_OrMatch{OrMatch: &matcherv3.OrMatcher{ValueMatchers: ms}}}
}

// authzString is Istio's StringMatcherWithPrefix: "*" is any non-empty
// value (regex ".+"), "*x" a suffix (a regex when there is a prefix to
// keep), "x*" a prefix, else exact.
func authzString(v, prefix string) *matcherv3.StringMatcher {
	switch {
	case v == "*":
		return regexMatcher(".+")
	case strings.HasPrefix(v, "*"):
		if prefix == "" {
			return suffixMatcher(strings.TrimPrefix(v, "*"), false)
		}
		return regexMatcher(prefix + ".*" + strings.TrimPrefix(v, "*"))
	case strings.HasSuffix(v, "*"):
		return prefixMatcher(prefix+strings.TrimSuffix(v, "*"), false)
	}
	return exactMatcher(prefix+v, false)
}

// authzHeader is Istio's HeaderMatcher (ignoreCase false) and
// HostMatcher (true): "*" means present. Istio 1.24 matches `hosts`
// against :authority as written — "example.com" does not match
// "example.com:80"; list both to allow both.
func authzHeader(name, v string, ignoreCase bool) *routev3.HeaderMatcher {
	h := &routev3.HeaderMatcher{Name: name}
	switch {
	case v == "*":
		h.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
	case strings.HasPrefix(v, "*"):
		h.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: suffixMatcher(v[1:], ignoreCase)}
	case strings.HasSuffix(v, "*"):
		h.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: prefixMatcher(v[:len(v)-1], ignoreCase)}
	default:
		h.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: exactMatcher(v, ignoreCase)}
	}
	return h
}

func regexMatcher(re string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}
}

func exactMatcher(s string, ic bool) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{IgnoreCase: ic, MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

func prefixMatcher(s string, ic bool) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{IgnoreCase: ic, MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s}}
}

func suffixMatcher(s string, ic bool) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{IgnoreCase: ic, MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: s}}
}

func permAny() *rbacpb.Permission { return &rbacpb.Permission{Rule: &rbacpb.Permission_Any{Any: true}} }

func princAny() *rbacpb.Principal {
	return &rbacpb.Principal{Identifier: &rbacpb.Principal_Any{Any: true}}
}

func princAnd(ids []*rbacpb.Principal) *rbacpb.Principal {
	return &rbacpb.Principal{Identifier: &rbacpb.Principal_AndIds{AndIds: &rbacpb.Principal_Set{Ids: ids}}}
}

// cidrRange is Istio's AddrStrToCidrRange: a bare IP is a /32 or /128; the
// address of a CIDR is kept as written (not masked).
func cidrRange(s string) (*corev3.CidrRange, error) {
	var p netip.Prefix
	var err error
	if strings.Contains(s, "/") {
		p, err = netip.ParsePrefix(s)
	} else {
		var a netip.Addr
		a, err = netip.ParseAddr(s)
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if err != nil {
		return nil, err
	}
	return &corev3.CidrRange{AddressPrefix: p.Addr().String(), PrefixLen: wrapperspb.UInt32(uint32(p.Bits()))}, nil
}

func authzPort(v string) (uint32, error) {
	p, err := strconv.ParseUint(v, 10, 32)
	if err != nil || p > 65535 {
		return 0, fmt.Errorf("invalid port %s: %v", v, err)
	}
	return uint32(p), nil
}

func nameInBrackets(s string) (string, error) {
	if !strings.HasPrefix(s, "[") || !strings.HasSuffix(s, "]") {
		return "", fmt.Errorf("expecting format [<NAME>], but found %s", s)
	}
	return strings.TrimPrefix(strings.TrimSuffix(s, "]"), "["), nil
}

// nameInNestedBrackets splits "[a][b]" into [a b]; anything else is one
// bracketed name ("[a.b]" → [a.b]).
func nameInNestedBrackets(s string) ([]string, error) {
	var claims []string
	for begin := 0; begin < len(s); {
		end := -1
		if s[begin] == '[' {
			for i := begin + 1; i < len(s); i++ {
				if s[i] == '[' {
					break
				}
				if s[i] == ']' {
					end = i
					break
				}
			}
		}
		if end == -1 {
			n, err := nameInBrackets(s)
			if err != nil {
				return nil, err
			}
			return []string{n}, nil
		}
		claims = append(claims, s[begin+1:end])
		begin = end + 1
	}
	return claims, nil
}

var validPathLiteral = regexp.MustCompile(`^[a-zA-Z0-9-._~%!$&'()+,;:@=]+$`)

// validateAuthz refuses what Istio's validation webhook
// (pkg/config/validation ValidateAuthorizationPolicy) refuses and the
// builder would otherwise silently skip or widen: meshlab has no webhook
// in front of this translation, and a skipped DENY rule fails open.
func validateAuthz(ap *security.AuthorizationPolicy) error {
	var errs []error
	if ap.GetProvider() != nil && ap.GetAction() != security.AuthorizationPolicy_CUSTOM {
		errs = append(errs, fmt.Errorf("`provider` must not be with non CUSTOM action, found %s", ap.GetAction()))
	}
	if ap.GetAction() == security.AuthorizationPolicy_CUSTOM && ap.GetProvider().GetName() == "" {
		errs = append(errs, errors.New("`provider.name` must not be empty"))
	}
	if ap.GetAction() == security.AuthorizationPolicy_DENY && ap.GetRules() == nil {
		errs = append(errs, errors.New("DENY action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request"))
	}
	ips := func(vals []string) {
		for _, v := range vals {
			if _, err := cidrRange(v); err != nil {
				errs = append(errs, fmt.Errorf("bad IP address or CIDR range (%s)", v))
			}
		}
	}
	ports := func(vals []string) {
		for _, v := range vals {
			if _, err := authzPort(v); err != nil {
				errs = append(errs, fmt.Errorf("bad port (%s)", v))
			}
		}
	}
	nonEmpty := func(field string, vals ...[]string) {
		for _, vs := range vals {
			for _, v := range vs {
				if v == "" {
					errs = append(errs, fmt.Errorf("empty value not allowed, found in %s", field))
				}
			}
		}
	}
	for i, rule := range ap.GetRules() {
		if rule == nil {
			errs = append(errs, fmt.Errorf("`rule` must not be nil, found at rule %d", i))
			continue
		}
		if rule.From != nil && len(rule.From) == 0 {
			errs = append(errs, fmt.Errorf("`from` must not be empty, found at rule %d", i))
		}
		for _, from := range rule.GetFrom() {
			s := from.GetSource()
			if s == nil {
				errs = append(errs, fmt.Errorf("`from.source` must not be nil, found at rule %d", i))
				continue
			}
			if !proto.Equal(s, &security.Source{}) {
				ips(s.GetIpBlocks())
				ips(s.GetNotIpBlocks())
				ips(s.GetRemoteIpBlocks())
				ips(s.GetNotRemoteIpBlocks())
				nonEmpty(fmt.Sprintf("rule %d from.source", i), s.GetPrincipals(), s.GetNotPrincipals(), s.GetRequestPrincipals(), s.GetNotRequestPrincipals(), s.GetNamespaces(), s.GetNotNamespaces())
			} else {
				errs = append(errs, fmt.Errorf("`from.source` must not be empty, found at rule %d", i))
			}
		}
		if rule.To != nil && len(rule.To) == 0 {
			errs = append(errs, fmt.Errorf("`to` must not be empty, found at rule %d", i))
		}
		for _, to := range rule.GetTo() {
			o := to.GetOperation()
			if o == nil || proto.Equal(o, &security.Operation{}) {
				errs = append(errs, fmt.Errorf("`to.operation` must not be nil or empty, found at rule %d", i))
				continue
			}
			ports(o.GetPorts())
			ports(o.GetNotPorts())
			nonEmpty(fmt.Sprintf("rule %d to.operation", i), o.GetHosts(), o.GetNotHosts(), o.GetMethods(), o.GetNotMethods(), o.GetPaths(), o.GetNotPaths())
			for _, paths := range [][]string{o.GetPaths(), o.GetNotPaths()} {
				for _, p := range paths {
					if err := checkPathTemplate(p); err != nil {
						errs = append(errs, fmt.Errorf("rule %d: %w", i, err))
					}
				}
			}
		}
		for _, w := range rule.GetWhen() {
			if err := validateCondition(w); err != nil {
				errs = append(errs, fmt.Errorf("rule %d: %w", i, err))
			}
		}
	}
	return errors.Join(errs...)
}

func validateCondition(w *security.Condition) error {
	k := w.GetKey()
	if len(w.GetValues()) == 0 && len(w.GetNotValues()) == 0 {
		return fmt.Errorf("condition %q: at least one of values or notValues must be set", k)
	}
	all := append(append([]string{}, w.GetValues()...), w.GetNotValues()...)
	for _, v := range all {
		if v == "" {
			return fmt.Errorf("condition %q: empty value not allowed", k)
		}
	}
	mapKey := func() error {
		open := strings.Index(k, "[")
		if strings.HasSuffix(k, "]") && open > 0 && open < len(k)-2 {
			return nil
		}
		return fmt.Errorf("bad key (%s): should have format a[b]", k)
	}
	switch {
	case strings.HasPrefix(k, attrRequestHeader), strings.HasPrefix(k, attrRequestClaims), strings.HasPrefix(k, attrEnvoyFilter):
		return mapKey()
	case k == attrSrcIP, k == attrRemoteIP, k == attrDestIP:
		for _, v := range all {
			if _, err := cidrRange(v); err != nil {
				return fmt.Errorf("condition %q: bad IP address or CIDR range (%s)", k, v)
			}
		}
	case k == attrDestPort:
		for _, v := range all {
			if _, err := authzPort(v); err != nil {
				return fmt.Errorf("condition %q: bad port (%s)", k, v)
			}
		}
	case k == attrSrcNamespace, k == attrSrcPrincipal, k == attrRequestPrincipal, k == attrRequestAudiences, k == attrRequestPresenter, k == attrConnSNI:
	default:
		return fmt.Errorf("unknown attribute: %s (see https://istio.io/latest/docs/reference/config/security/conditions/)", k)
	}
	return nil
}

// checkPathTemplate is Istio's CheckValidPathTemplate: {*} and {**} must be
// whole segments, {**} only last, and with a template every segment must
// be a valid URI literal.
func checkPathTemplate(path string) error {
	tmpl := strings.Contains(path, pathTemplateMatchOne) || strings.Contains(path, pathTemplateMatchAny)
	sawAny := false
	for _, glob := range strings.Split(strings.Trim(path, "/"), "/") {
		switch {
		case (glob == pathTemplateMatchOne || glob == pathTemplateMatchAny) && sawAny:
			return fmt.Errorf("invalid or unsupported path %s: {**} is not the last operator", path)
		case glob == pathTemplateMatchOne:
			continue
		case glob == pathTemplateMatchAny:
			sawAny = true
			continue
		}
		if strings.ContainsAny(glob, "{}") {
			return fmt.Errorf("invalid or unsupported path %s: contains '{' or '}' beyond a supported path template", path)
		}
		if tmpl && !validPathLiteral.MatchString(glob) {
			return fmt.Errorf("invalid or unsupported path %s: contains segment %s with invalid string literal", path, glob)
		}
	}
	return nil
}

// CheckAuthorizationPolicy refuses, at apply, an AuthorizationPolicy the
// proxies could not enforce (what Istio's validation refuses): built for one workload it selects, it would fail
// that proxy's build and leave it on its last configuration. Other kinds
// pass.
func CheckAuthorizationPolicy(r config.Resource) error {
	ap, ok := r.Spec.(*security.AuthorizationPolicy)
	if !ok {
		return nil
	}
	labels := ap.GetSelector().GetMatchLabels()
	_, err := BuildAuthzFilters([]config.Resource{r}, r.Namespace, labels, AuthzOptions{RootNamespace: r.Namespace})
	return err
}
