package rbac

import (
	"fmt"
	"net/netip"
	"net/textproto"
	"regexp"
	"slices"
	"strings"

	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacpb "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routepb "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbachttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	rbacnet "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	uritpl "github.com/envoyproxy/go-control-plane/envoy/extensions/path/match/uri_template/v3"
	matcherpb "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/meshlab/meshlab/dataplane/fieldcheck"
)

// Filter names and the type URL of the only uri_template extension known.
const (
	HTTPFilterName    = "envoy.filters.http.rbac"
	NetworkFilterName = "envoy.filters.network.rbac"
	uriTemplateType   = "type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig"
)

// Compile compiles an envoy.filters.http.rbac config. An error means the
// config uses something the engine cannot enforce; NACK it.
func Compile(cfg *rbachttp.RBAC) (*Engine, error) {
	if cfg == nil {
		return nil, fmt.Errorf("compile %s: no config", HTTPFilterName)
	}
	if err := fieldcheck.Only(cfg, "rules", "shadow_rules", "shadow_rules_stat_prefix", "rules_stat_prefix", "track_per_rule_stats"); err != nil {
		return nil, fmt.Errorf("compile %s: %w", HTTPFilterName, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("compile %s: %w", HTTPFilterName, err)
	}
	e := &Engine{ShadowStatPrefix: cfg.GetShadowRulesStatPrefix(), RulesStatPrefix: cfg.GetRulesStatPrefix()}
	if err := e.compileRules(cfg.GetRules(), cfg.GetShadowRules()); err != nil {
		return nil, fmt.Errorf("compile %s: %w", HTTPFilterName, err)
	}
	return e, nil
}

// CompileNetwork compiles an envoy.filters.network.rbac config.
func CompileNetwork(cfg *rbacnet.RBAC) (*Engine, error) {
	if cfg == nil {
		return nil, fmt.Errorf("compile %s: no config", NetworkFilterName)
	}
	if err := fieldcheck.Only(cfg, "rules", "shadow_rules", "shadow_rules_stat_prefix", "stat_prefix", "enforcement_type", "delay_deny"); err != nil {
		return nil, fmt.Errorf("compile %s: %w", NetworkFilterName, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("compile %s: %w", NetworkFilterName, err)
	}
	e := &Engine{
		ShadowStatPrefix: cfg.GetShadowRulesStatPrefix(),
		StatPrefix:       cfg.GetStatPrefix(),
		Network:          true,
		Continuous:       cfg.GetEnforcementType() == rbacnet.RBAC_CONTINUOUS,
		DelayDeny:        cfg.GetDelayDeny().AsDuration(),
	}
	if err := e.compileRules(cfg.GetRules(), cfg.GetShadowRules()); err != nil {
		return nil, fmt.Errorf("compile %s: %w", NetworkFilterName, err)
	}
	return e, nil
}

// CompileRules compiles one bare config/rbac/v3.RBAC as the filter's enforced
// rules (no shadow rules).
func CompileRules(rules *rbacpb.RBAC) (*Engine, error) {
	if rules == nil {
		return nil, fmt.Errorf("compile rbac rules: no rules")
	}
	if err := rules.Validate(); err != nil {
		return nil, fmt.Errorf("compile rbac rules: %w", err)
	}
	e := &Engine{}
	if err := e.compileRules(rules, nil); err != nil {
		return nil, fmt.Errorf("compile rbac rules: %w", err)
	}
	return e, nil
}

func (e *Engine) compileRules(rules, shadow *rbacpb.RBAC) error {
	var err error
	if rules != nil {
		if e.rules, err = compileSet(rules, "rules"); err != nil {
			return err
		}
	}
	if shadow != nil {
		if e.shadow, err = compileSet(shadow, "shadow_rules"); err != nil {
			return err
		}
	}
	return nil
}

func compileSet(r *rbacpb.RBAC, where string) (*ruleSet, error) {
	if err := fieldcheck.Only(r, "action", "policies"); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	switch r.GetAction() {
	case rbacpb.RBAC_ALLOW, rbacpb.RBAC_DENY, rbacpb.RBAC_LOG:
	default:
		return nil, fmt.Errorf("%s: action %v is not supported", where, r.GetAction())
	}
	s := &ruleSet{action: r.GetAction()}
	for name, p := range r.GetPolicies() {
		at := fmt.Sprintf("%s: policy %q", where, name)
		if err := fieldcheck.Only(p, "permissions", "principals"); err != nil {
			return nil, fmt.Errorf("%s: %w", at, err)
		}
		cp := policy{name: name}
		for i, perm := range p.GetPermissions() {
			n, err := compilePermission(perm, fmt.Sprintf("%s: permissions[%d]", at, i))
			if err != nil {
				return nil, err
			}
			cp.permissions = append(cp.permissions, n)
		}
		for i, prin := range p.GetPrincipals() {
			n, err := compilePrincipal(prin, fmt.Sprintf("%s: principals[%d]", at, i))
			if err != nil {
				return nil, err
			}
			cp.principals = append(cp.principals, n)
		}
		s.policies = append(s.policies, cp)
	}
	// Envoy keeps policies in a std::map: the first match in name order is
	// the effective policy.
	slices.SortFunc(s.policies, func(a, b policy) int { return strings.Compare(a.name, b.name) })
	return s, nil
}

func compilePermission(p *rbacpb.Permission, at string) (node, error) {
	if err := fieldcheck.Only(p, "and_rules", "or_rules", "any", "header", "url_path", "uri_template",
		"destination_ip", "destination_port", "destination_port_range", "metadata", "not_rule",
		"requested_server_name", "sourced_metadata"); err != nil {
		return node{}, fmt.Errorf("%s: %w", at, err)
	}
	var err error
	n := node{}
	switch r := p.GetRule().(type) {
	case *rbacpb.Permission_Any:
		n.kind = kAny
	case *rbacpb.Permission_AndRules, *rbacpb.Permission_OrRules:
		n.kind = kAnd
		set := p.GetAndRules()
		name := "and_rules"
		if set == nil {
			n.kind, set, name = kOr, p.GetOrRules(), "or_rules"
		}
		if err := fieldcheck.Only(set, "rules"); err != nil {
			return node{}, fmt.Errorf("%s.%s: %w", at, name, err)
		}
		for i, k := range set.GetRules() {
			c, err := compilePermission(k, fmt.Sprintf("%s.%s[%d]", at, name, i))
			if err != nil {
				return node{}, err
			}
			n.kids = append(n.kids, c)
		}
	case *rbacpb.Permission_NotRule:
		c, err := compilePermission(r.NotRule, at+".not_rule")
		if err != nil {
			return node{}, err
		}
		n.kind, n.kids = kNot, []node{c}
	case *rbacpb.Permission_Header:
		n.kind = kHeader
		n.hdr, err = compileHeader(r.Header)
	case *rbacpb.Permission_UrlPath:
		n.kind = kURLPath
		n.str, err = compilePath(r.UrlPath)
	case *rbacpb.Permission_UriTemplate:
		n.kind = kURITemplate
		n.re, err = compileURITemplateExt(r.UriTemplate)
	case *rbacpb.Permission_DestinationIp:
		n.kind = kDestIP
		n.cidr, err = compileCIDR(r.DestinationIp)
	case *rbacpb.Permission_DestinationPort:
		n.kind, n.lo = kDestPort, r.DestinationPort
	case *rbacpb.Permission_DestinationPortRange:
		if err := fieldcheck.Only(r.DestinationPortRange, "start", "end"); err != nil {
			return node{}, fmt.Errorf("%s: %w", at, err)
		}
		lo, hi := r.DestinationPortRange.GetStart(), r.DestinationPortRange.GetEnd()
		if lo < 0 || hi > 65536 || lo >= hi {
			return node{}, fmt.Errorf("%s: destination_port_range [%d, %d) is not a port range", at, lo, hi)
		}
		n.kind, n.lo, n.hi = kDestPortRange, uint32(lo), uint32(hi)
	case *rbacpb.Permission_RequestedServerName:
		n.kind = kSNI
		n.str, err = compileString(r.RequestedServerName)
	case *rbacpb.Permission_Metadata:
		n.kind = kMetadata
		n.meta, err = compileMetadata(r.Metadata) //nolint:staticcheck // Istio 1.24 emits metadata, not sourced_metadata
	case *rbacpb.Permission_SourcedMetadata:
		n.kind = kMetadata
		n.meta, err = compileSourced(r.SourcedMetadata)
	default:
		return node{}, fmt.Errorf("%s: permission has no rule", at)
	}
	if err != nil {
		return node{}, fmt.Errorf("%s: %w", at, err)
	}
	return n, nil
}

func compilePrincipal(p *rbacpb.Principal, at string) (node, error) {
	if err := fieldcheck.Only(p, "and_ids", "or_ids", "any", "authenticated", "source_ip", "direct_remote_ip",
		"remote_ip", "header", "url_path", "metadata", "not_id", "sourced_metadata"); err != nil {
		return node{}, fmt.Errorf("%s: %w%s", at, err, principalHint(p))
	}
	var err error
	n := node{}
	switch id := p.GetIdentifier().(type) {
	case *rbacpb.Principal_Any:
		n.kind = kAny
	case *rbacpb.Principal_AndIds, *rbacpb.Principal_OrIds:
		n.kind = kAnd
		set := p.GetAndIds()
		name := "and_ids"
		if set == nil {
			n.kind, set, name = kOr, p.GetOrIds(), "or_ids"
		}
		if err := fieldcheck.Only(set, "ids"); err != nil {
			return node{}, fmt.Errorf("%s.%s: %w", at, name, err)
		}
		for i, k := range set.GetIds() {
			c, err := compilePrincipal(k, fmt.Sprintf("%s.%s[%d]", at, name, i))
			if err != nil {
				return node{}, err
			}
			n.kids = append(n.kids, c)
		}
	case *rbacpb.Principal_NotId:
		c, err := compilePrincipal(id.NotId, at+".not_id")
		if err != nil {
			return node{}, err
		}
		n.kind, n.kids = kNot, []node{c}
	case *rbacpb.Principal_Authenticated_:
		n.kind = kAuthenticated
		if err := fieldcheck.Only(id.Authenticated, "principal_name"); err != nil {
			return node{}, fmt.Errorf("%s: %w", at, err)
		}
		if pn := id.Authenticated.GetPrincipalName(); pn != nil {
			n.hasStr = true
			n.str, err = compileString(pn)
		}
	case *rbacpb.Principal_SourceIp:
		n.kind = kSourceIP
		n.cidr, err = compileCIDR(id.SourceIp) //nolint:staticcheck // Envoy still enforces source_ip
	case *rbacpb.Principal_DirectRemoteIp:
		n.kind = kDirectRemoteIP
		n.cidr, err = compileCIDR(id.DirectRemoteIp)
	case *rbacpb.Principal_RemoteIp:
		n.kind = kRemoteIP
		n.cidr, err = compileCIDR(id.RemoteIp)
	case *rbacpb.Principal_Header:
		n.kind = kHeader
		n.hdr, err = compileHeader(id.Header)
	case *rbacpb.Principal_UrlPath:
		n.kind = kURLPath
		n.str, err = compilePath(id.UrlPath)
	case *rbacpb.Principal_Metadata:
		n.kind = kMetadata
		n.meta, err = compileMetadata(id.Metadata) //nolint:staticcheck // Istio 1.24 emits metadata, not sourced_metadata
	case *rbacpb.Principal_SourcedMetadata:
		n.kind = kMetadata
		n.meta, err = compileSourced(id.SourcedMetadata)
	default:
		return node{}, fmt.Errorf("%s: principal has no identifier", at)
	}
	if err != nil {
		return node{}, fmt.Errorf("%s: %w", at, err)
	}
	return n, nil
}

// principalHint explains the one unsupported principal Istio does emit.
func principalHint(p *rbacpb.Principal) string {
	if p.GetFilterState() != nil {
		return " (Istio emits filter_state io.istio.peer_principal only for waypoints and HBONE, which meshlab does not run)"
	}
	return ""
}

func compileString(m *matcherpb.StringMatcher) (strMatcher, error) {
	if err := fieldcheck.Only(m, "exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case"); err != nil {
		return strMatcher{}, err
	}
	s := strMatcher{ignoreCase: m.GetIgnoreCase()}
	switch p := m.GetMatchPattern().(type) {
	case *matcherpb.StringMatcher_Exact:
		s.kind, s.s = sExact, p.Exact
	case *matcherpb.StringMatcher_Prefix:
		s.kind, s.s = sPrefix, p.Prefix
	case *matcherpb.StringMatcher_Suffix:
		s.kind, s.s = sSuffix, p.Suffix
	case *matcherpb.StringMatcher_Contains:
		s.kind, s.s = sContains, p.Contains
	case *matcherpb.StringMatcher_SafeRegex:
		if s.ignoreCase {
			// Envoy rejects this combination rather than ignore it.
			return strMatcher{}, fmt.Errorf("string matcher: ignore_case has no effect for safe_regex")
		}
		re, err := compileRegex(p.SafeRegex)
		if err != nil {
			return strMatcher{}, err
		}
		s.kind, s.re = sRegex, re
		s.glob, _ = globOf(p.SafeRegex.GetRegex())
	default:
		return strMatcher{}, fmt.Errorf("string matcher has no pattern")
	}
	return s, nil
}

// compileRegex anchors the pattern: Envoy's safe_regex is a full match
// (RE2::FullMatch), and Go's regexp is RE2 syntax.
func compileRegex(m *matcherpb.RegexMatcher) (*regexp.Regexp, error) {
	if err := fieldcheck.Only(m, "regex", "google_re2"); err != nil {
		return nil, err
	}
	re, err := regexp.Compile(`^(?:` + m.GetRegex() + `)$`)
	if err != nil {
		return nil, fmt.Errorf("safe_regex %q: %w", m.GetRegex(), err)
	}
	return re, nil
}

func compilePath(m *matcherpb.PathMatcher) (strMatcher, error) {
	if err := fieldcheck.Only(m, "path"); err != nil {
		return strMatcher{}, err
	}
	if m.GetPath() == nil {
		return strMatcher{}, fmt.Errorf("url_path has no path matcher")
	}
	return compileString(m.GetPath())
}

func compileHeader(m *routepb.HeaderMatcher) (*headerMatcher, error) {
	if err := fieldcheck.Only(m, "name", "exact_match", "safe_regex_match", "range_match", "present_match",
		"prefix_match", "suffix_match", "contains_match", "string_match", "invert_match",
		"treat_missing_header_as_empty"); err != nil {
		return nil, err
	}
	name := strings.ToLower(m.GetName())
	h := &headerMatcher{invert: m.GetInvertMatch(), missingEmpty: m.GetTreatMissingHeaderAsEmpty()}
	switch name {
	case ":authority", "host": // Envoy's header map looks "host" up as :authority
		h.pseudo = pseudoAuthority
	case ":method":
		h.pseudo = pseudoMethod
	case ":path":
		h.pseudo = pseudoPath
	case ":scheme":
		h.pseudo = pseudoScheme
	default:
		if strings.HasPrefix(name, ":") {
			h.pseudo = pseudoOther
		} else {
			h.key = textproto.CanonicalMIMEHeaderKey(name)
		}
	}
	var err error
	switch s := m.GetHeaderMatchSpecifier().(type) {
	case nil:
		// Envoy: no specifier is a presence match.
		h.kind, h.present = hPresent, true
	case *routepb.HeaderMatcher_PresentMatch:
		h.kind, h.present = hPresent, s.PresentMatch
	case *routepb.HeaderMatcher_ExactMatch:
		h.kind, h.exact = hExactLegacy, s.ExactMatch //nolint:staticcheck // older control planes emit the legacy header fields
	case *routepb.HeaderMatcher_PrefixMatch:
		h.kind, h.str = hString, strMatcher{kind: sPrefix, s: s.PrefixMatch} //nolint:staticcheck // older control planes emit the legacy header fields
	case *routepb.HeaderMatcher_SuffixMatch:
		h.kind, h.str = hString, strMatcher{kind: sSuffix, s: s.SuffixMatch} //nolint:staticcheck // older control planes emit the legacy header fields
	case *routepb.HeaderMatcher_ContainsMatch:
		h.kind, h.str = hString, strMatcher{kind: sContains, s: s.ContainsMatch} //nolint:staticcheck // older control planes emit the legacy header fields
	case *routepb.HeaderMatcher_SafeRegexMatch:
		h.kind, h.str.kind = hString, sRegex
		h.str.re, err = compileRegex(s.SafeRegexMatch)      //nolint:staticcheck // older control planes emit the legacy header fields
		h.str.glob, _ = globOf(s.SafeRegexMatch.GetRegex()) //nolint:staticcheck // older control planes emit the legacy header fields
	case *routepb.HeaderMatcher_StringMatch:
		h.kind = hString
		h.str, err = compileString(s.StringMatch)
	case *routepb.HeaderMatcher_RangeMatch:
		if err := fieldcheck.Only(s.RangeMatch, "start", "end"); err != nil {
			return nil, err
		}
		h.kind, h.lo, h.hi = hRange, s.RangeMatch.GetStart(), s.RangeMatch.GetEnd()
	}
	if err != nil {
		return nil, fmt.Errorf("header %q: %w", m.GetName(), err)
	}
	return h, nil
}

func compileCIDR(c *corepb.CidrRange) (netip.Prefix, error) {
	if err := fieldcheck.Only(c, "address_prefix", "prefix_len"); err != nil {
		return netip.Prefix{}, err
	}
	a, err := netip.ParseAddr(c.GetAddressPrefix())
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("cidr %q: %w", c.GetAddressPrefix(), err)
	}
	a = a.Unmap()
	// An unset prefix_len is 0, as in Envoy: the whole address family.
	bits := int(c.GetPrefixLen().GetValue())
	if bits > a.BitLen() {
		return netip.Prefix{}, fmt.Errorf("cidr %s/%d: prefix longer than the address", a, bits)
	}
	// Envoy masks the address to the prefix (10.1.2.3/8 is 10.0.0.0/8).
	return netip.PrefixFrom(a, bits).Masked(), nil
}

func compileMetadata(m *matcherpb.MetadataMatcher) (*metaMatcher, error) {
	if err := fieldcheck.Only(m, "filter", "path", "value", "invert"); err != nil {
		return nil, err
	}
	mm := &metaMatcher{filter: m.GetFilter(), invert: m.GetInvert()}
	for _, seg := range m.GetPath() {
		if err := fieldcheck.Only(seg, "key"); err != nil {
			return nil, fmt.Errorf("metadata %s: %w", m.GetFilter(), err)
		}
		mm.path = append(mm.path, seg.GetKey())
	}
	if len(mm.path) == 0 {
		return nil, fmt.Errorf("metadata %s: empty path", m.GetFilter())
	}
	v, err := compileValue(m.GetValue())
	if err != nil {
		return nil, fmt.Errorf("metadata %s%v: %w", m.GetFilter(), mm.path, err)
	}
	mm.value = v
	return mm, nil
}

// compileSourced admits only dynamic metadata: route metadata needs the
// route, which the proxy's filter chain does not hand to RBAC.
func compileSourced(s *rbacpb.SourcedMetadata) (*metaMatcher, error) {
	if err := fieldcheck.Only(s, "metadata_matcher", "metadata_source"); err != nil {
		return nil, err
	}
	if s.GetMetadataSource() != rbacpb.MetadataSource_DYNAMIC {
		return nil, fmt.Errorf("sourced_metadata: metadata_source %v is not supported", s.GetMetadataSource())
	}
	return compileMetadata(s.GetMetadataMatcher())
}

func compileValue(m *matcherpb.ValueMatcher) (valueMatcher, error) {
	if err := fieldcheck.Only(m, "null_match", "double_match", "string_match", "bool_match", "present_match", "list_match", "or_match"); err != nil {
		return valueMatcher{}, err
	}
	var v valueMatcher
	switch p := m.GetMatchPattern().(type) {
	case *matcherpb.ValueMatcher_NullMatch_:
		v.kind = vNull
	case *matcherpb.ValueMatcher_DoubleMatch:
		if err := fieldcheck.Only(p.DoubleMatch, "range", "exact"); err != nil {
			return valueMatcher{}, err
		}
		v.kind = vDouble
		if r := p.DoubleMatch.GetRange(); r != nil {
			if err := fieldcheck.Only(r, "start", "end"); err != nil {
				return valueMatcher{}, err
			}
			v.isRange, v.lo, v.hi = true, r.GetStart(), r.GetEnd()
		} else {
			v.exact = p.DoubleMatch.GetExact()
		}
	case *matcherpb.ValueMatcher_StringMatch:
		s, err := compileString(p.StringMatch)
		if err != nil {
			return valueMatcher{}, err
		}
		v.kind, v.str = vString, s
	case *matcherpb.ValueMatcher_BoolMatch:
		v.kind, v.b = vBool, p.BoolMatch
	case *matcherpb.ValueMatcher_PresentMatch:
		v.kind, v.b = vPresent, p.PresentMatch
	case *matcherpb.ValueMatcher_ListMatch:
		if err := fieldcheck.Only(p.ListMatch, "one_of"); err != nil {
			return valueMatcher{}, err
		}
		one, err := compileValue(p.ListMatch.GetOneOf())
		if err != nil {
			return valueMatcher{}, fmt.Errorf("list_match: %w", err)
		}
		v.kind, v.oneOf = vList, &one
	case *matcherpb.ValueMatcher_OrMatch:
		if err := fieldcheck.Only(p.OrMatch, "value_matchers"); err != nil {
			return valueMatcher{}, err
		}
		v.kind = vOr
		for _, k := range p.OrMatch.GetValueMatchers() {
			c, err := compileValue(k)
			if err != nil {
				return valueMatcher{}, fmt.Errorf("or_match: %w", err)
			}
			v.or = append(v.or, c)
		}
	default:
		return valueMatcher{}, fmt.Errorf("value matcher has no pattern")
	}
	return v, nil
}

func compileURITemplateExt(tc *corepb.TypedExtensionConfig) (*regexp.Regexp, error) {
	if err := fieldcheck.Only(tc, "name", "typed_config"); err != nil {
		return nil, err
	}
	if url := tc.GetTypedConfig().GetTypeUrl(); url != uriTemplateType {
		return nil, fmt.Errorf("uri_template %q: extension %s is not supported (only %s)", tc.GetName(), url, uriTemplateType)
	}
	var cfg uritpl.UriTemplateMatchConfig
	if err := tc.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
		return nil, fmt.Errorf("uri_template %q: %w", tc.GetName(), err)
	}
	if err := fieldcheck.Only(&cfg, "path_template"); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("uri_template %q: %w", tc.GetName(), err)
	}
	return compileURITemplate(cfg.GetPathTemplate())
}
