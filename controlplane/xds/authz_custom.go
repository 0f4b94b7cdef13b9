package xds

// The CUSTOM action, as Istio 1.24 builds it
// (pilot/pkg/security/authz/builder/{builder,extauthz}.go): the policies'
// rules become the shadow rules of an RBAC filter (names prefixed
// "istio-ext-authz-", stat prefix "istio_ext_authz_"), which records the
// policy that matched in dynamic metadata, and an ext_authz filter for
// the workload's one provider runs only when that metadata says a rule
// matched. A provider that is unknown, broken, or not the same for every
// CUSTOM policy of the workload makes the rules an enforced DENY instead
// (names suffixed "-deny-due-to-bad-CUSTOM-action"): a CUSTOM policy never
// fails open.

import (
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacpb "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	extauthzhttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	rbachttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	extauthztcp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbactcp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/durationpb"
	meshv1 "istio.io/api/mesh/v1alpha1"
	security "istio.io/api/security/v1beta1"

	"github.com/meshlab/meshlab/controlplane/config"
)

const (
	extAuthzMatchPrefix            = "istio-ext-authz"
	extAuthzShadowStatPrefix       = "istio_ext_authz_"
	shadowEffectivePolicyID        = "shadow_effective_policy_id"
	badCustomActionSuffix          = "-deny-due-to-bad-CUSTOM-action"
	extAuthzDefaultTimeoutSeconds  = 600
	httpExternalAuthorizationName  = wellknown.HTTPExternalAuthorization
	networkExternalAuthorizationFN = wellknown.ExternalAuthorization
)

// builtExtAuthz is one resolved extension provider: the HTTP filter
// config, the network one (gRPC providers only), or why it is unusable.
type builtExtAuthz struct {
	http *extauthzhttp.ExtAuthz
	tcp  *extauthztcp.ExtAuthz
	err  error
}

// buildCustom returns the CUSTOM filters for the HTTP and TCP chains.
// Istio builds CUSTOM with the DENY action so that HTTP-only rules widen
// (match everything) on TCP rather than vanish; dry-run CUSTOM policies
// are dropped, as Istio's custom builder ignores its shadow rules.
func (b *authzBuilder) buildCustom(policies []config.Resource, opts AuthzOptions) ([]*hcmv3.HttpFilter, []*listenerv3.Filter) {
	var providers []string
	for _, r := range policies {
		providers = append(providers, r.Spec.(*security.AuthorizationPolicy).GetProvider().GetName())
	}
	ext, err := getExtAuthz(resolveExtAuthz(opts), providers)
	if err != nil {
		b.notes = append(b.notes, fmt.Sprintf("failed to process CUSTOM action, will generate deny configs for the specified rules: %v", err))
	}
	var httpOut []*hcmv3.HttpFilter
	var tcpOut []*listenerv3.Filter
	for _, forTCP := range []bool{false, true} {
		rules, _ := b.buildNamed(policies, rbacpb.RBAC_DENY, forTCP, extAuthzMatchPrefix+"-")
		switch {
		case err != nil && !forTCP:
			httpOut = append(httpOut, rbacHTTPFilter(&rbachttp.RBAC{Rules: badCustomDenyRules(rules)}))
		case err != nil:
			tcpOut = append(tcpOut, rbacTCPFilter(&rbactcp.RBAC{Rules: badCustomDenyRules(rules), StatPrefix: rbacTCPStatPrefix}))
		case !forTCP:
			httpOut = append(httpOut,
				rbacHTTPFilter(&rbachttp.RBAC{ShadowRules: rules, ShadowRulesStatPrefix: extAuthzShadowStatPrefix}),
				&hcmv3.HttpFilter{Name: httpExternalAuthorizationName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: deterministicAny(ext.http)}})
		case ext.tcp == nil:
			b.notes = append(b.notes, "ignored CUSTOM action with HTTP provider on TCP filter chain")
		default:
			tcpOut = append(tcpOut,
				rbacTCPFilter(&rbactcp.RBAC{ShadowRules: rules, StatPrefix: rbacTCPStatPrefix, ShadowRulesStatPrefix: extAuthzShadowStatPrefix}),
				&listenerv3.Filter{Name: networkExternalAuthorizationFN, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: deterministicAny(ext.tcp)}})
		}
	}
	return httpOut, tcpOut
}

func rbacHTTPFilter(cfg *rbachttp.RBAC) *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: wellknown.HTTPRoleBasedAccessControl, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: deterministicAny(cfg)}}
}

func rbacTCPFilter(cfg *rbactcp.RBAC) *listenerv3.Filter {
	return &listenerv3.Filter{Name: wellknown.RoleBasedAccessControl, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: deterministicAny(cfg)}}
}

func badCustomDenyRules(rules *rbacpb.RBAC) *rbacpb.RBAC {
	out := &rbacpb.RBAC{Action: rbacpb.RBAC_DENY, Policies: map[string]*rbacpb.Policy{}}
	for k, p := range rules.GetPolicies() {
		out.Policies[k+badCustomActionSuffix] = p
	}
	return out
}

// resolveExtAuthz is Istio's processExtensionProvider: every ext_authz
// provider of the mesh config, built or with the reason it cannot be.
func resolveExtAuthz(opts AuthzOptions) map[string]*builtExtAuthz {
	resolved := map[string]*builtExtAuthz{}
	lookup := opts.LookupCluster
	if lookup == nil {
		lookup = func(service string, _ uint32) (string, string, error) {
			return "", "", fmt.Errorf("could not find service %s in Istio service registry", service)
		}
	}
	for i, p := range opts.Mesh.GetExtensionProviders() {
		var built *builtExtAuthz
		switch pv := p.GetProvider().(type) {
		case *meshv1.MeshConfig_ExtensionProvider_EnvoyExtAuthzHttp:
			built = buildExtAuthzHTTP(pv.EnvoyExtAuthzHttp, lookup)
		case *meshv1.MeshConfig_ExtensionProvider_EnvoyExtAuthzGrpc:
			built = buildExtAuthzGRPC(pv.EnvoyExtAuthzGrpc, lookup)
		default:
			continue
		}
		switch {
		case p.GetName() == "":
			built.err = fmt.Errorf("extension provider name must not be empty, found empty at index: %d", i)
		case resolved[p.GetName()] != nil:
			built.err = fmt.Errorf("extension provider name must be unique, found duplicate: %s", p.GetName())
		case built.err != nil:
			built.err = fmt.Errorf("failed to parse extension provider %q: %w", p.GetName(), built.err)
		}
		resolved[p.GetName()] = built
	}
	return resolved
}

func getExtAuthz(resolved map[string]*builtExtAuthz, providers []string) (*builtExtAuthz, error) {
	if len(providers) < 1 {
		return nil, fmt.Errorf("no provider specified in authorization policy")
	}
	for _, p := range providers[1:] {
		if p != providers[0] {
			return nil, fmt.Errorf("only 1 provider can be used per workload, found multiple providers: %v", providers)
		}
	}
	ret, ok := resolved[providers[0]]
	if !ok {
		var names []string
		for n := range resolved {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("available providers are %v but found %q", names, providers[0])
	}
	if ret.err != nil {
		return nil, fmt.Errorf("found errors in provider %s: %w", providers[0], ret.err)
	}
	return ret, nil
}

func providerPort(port uint32) error {
	if port < 1 || port > 65535 {
		return fmt.Errorf("port must be in the range [1, 65535], found: %d", port)
	}
	return nil
}

func statusOnError(s string) (*typev3.HttpStatus, error) {
	if s == "" {
		return nil, nil
	}
	code, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("invalid statusOnError %q: %w", s, err)
	}
	if _, ok := typev3.StatusCode_name[int32(code)]; !ok {
		return nil, fmt.Errorf("unsupported statusOnError %s", s)
	}
	return &typev3.HttpStatus{Code: typev3.StatusCode(code)}, nil
}

func buildExtAuthzHTTP(c *meshv1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider, lookup func(string, uint32) (string, string, error)) *builtExtAuthz {
	var errs []string
	if err := providerPort(c.GetPort()); err != nil {
		errs = append(errs, err.Error())
	}
	host, cluster, err := lookup(c.GetService(), c.GetPort())
	if err != nil {
		errs = append(errs, err.Error())
	}
	status, err := statusOnError(c.GetStatusOnError())
	if err != nil {
		errs = append(errs, err.Error())
	}
	if pp := c.GetPathPrefix(); pp != "" {
		if _, err := url.Parse(pp); err != nil {
			errs = append(errs, fmt.Sprintf("invalid pathPrefix %q: %v", pp, err))
		}
		if !strings.HasPrefix(pp, "/") {
			errs = append(errs, fmt.Sprintf("pathPrefix must begin with `/`, found: %q", pp))
		}
	}
	for field, vals := range map[string][]string{
		"IncludeRequestHeadersInCheck": c.GetIncludeRequestHeadersInCheck(),
		"IncludeHeadersInCheck":        c.GetIncludeHeadersInCheck(), //nolint:staticcheck // deprecated, still read by Istio 1.24
		"HeadersToDownstreamOnDeny":    c.GetHeadersToDownstreamOnDeny(),
		"HeadersToDownstreamOnAllow":   c.GetHeadersToDownstreamOnAllow(),
		"HeadersToUpstreamOnAllow":     c.GetHeadersToUpstreamOnAllow(),
	} {
		if slices.Contains(vals, "*") {
			errs = append(errs, fmt.Sprintf("a single wildcard (\"*\") is not supported, change it to either prefix or suffix match: %s", field))
		}
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return &builtExtAuthz{err: fmt.Errorf("%s", strings.Join(errs, "; "))}
	}
	svc := &extauthzhttp.HttpService{
		PathPrefix: c.GetPathPrefix(),
		ServerUri: &corev3.HttpUri{
			Timeout:          timeoutOrDefault(c.GetTimeout()),
			Uri:              "http://" + host,
			HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: cluster},
		},
	}
	allowed := headerList(c.GetIncludeRequestHeadersInCheck())
	if allowed == nil {
		allowed = headerList(c.GetIncludeHeadersInCheck()) //nolint:staticcheck // deprecated, still read by Istio 1.24
	}
	var add []*corev3.HeaderValue
	keys := make([]string, 0, len(c.GetIncludeAdditionalHeadersInCheck()))
	for k := range c.GetIncludeAdditionalHeadersInCheck() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		add = append(add, &corev3.HeaderValue{Key: k, Value: c.GetIncludeAdditionalHeadersInCheck()[k]})
	}
	if allowed != nil || len(add) > 0 {
		svc.AuthorizationRequest = &extauthzhttp.AuthorizationRequest{AllowedHeaders: allowed, HeadersToAdd: add} //nolint:staticcheck // where Istio 1.24 puts them
	}
	if len(c.GetHeadersToUpstreamOnAllow()) > 0 || len(c.GetHeadersToDownstreamOnDeny()) > 0 || len(c.GetHeadersToDownstreamOnAllow()) > 0 {
		svc.AuthorizationResponse = &extauthzhttp.AuthorizationResponse{
			AllowedUpstreamHeaders:        headerList(c.GetHeadersToUpstreamOnAllow()),
			AllowedClientHeaders:          headerList(c.GetHeadersToDownstreamOnDeny()),
			AllowedClientHeadersOnSuccess: headerList(c.GetHeadersToDownstreamOnAllow()),
		}
	}
	return &builtExtAuthz{http: &extauthzhttp.ExtAuthz{
		StatusOnError:         status,
		FailureModeAllow:      c.GetFailOpen(),
		TransportApiVersion:   corev3.ApiVersion_V3,
		Services:              &extauthzhttp.ExtAuthz_HttpService{HttpService: svc},
		FilterEnabledMetadata: extAuthzFilterMatcher(wellknown.HTTPRoleBasedAccessControl),
		WithRequestBody:       bodySettings(c.GetIncludeRequestBodyInCheck()),
	}}
}

func buildExtAuthzGRPC(c *meshv1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationGrpcProvider, lookup func(string, uint32) (string, string, error)) *builtExtAuthz {
	var errs []string
	if err := providerPort(c.GetPort()); err != nil {
		errs = append(errs, err.Error())
	}
	_, cluster, err := lookup(c.GetService(), c.GetPort())
	if err != nil {
		errs = append(errs, err.Error())
	}
	status, err := statusOnError(c.GetStatusOnError())
	if err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return &builtExtAuthz{err: fmt.Errorf("%s", strings.Join(errs, "; "))}
	}
	// "|" is not valid in an :authority; Istio rewrites it so that the
	// authz server does not reject the connection.
	grpc := &corev3.GrpcService{
		TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{
			ClusterName: cluster, Authority: strings.ReplaceAll(cluster, "|", "_."),
		}},
		Timeout: timeoutOrDefault(c.GetTimeout()),
	}
	return &builtExtAuthz{
		http: &extauthzhttp.ExtAuthz{
			StatusOnError:         status,
			FailureModeAllow:      c.GetFailOpen(),
			Services:              &extauthzhttp.ExtAuthz_GrpcService{GrpcService: grpc},
			FilterEnabledMetadata: extAuthzFilterMatcher(wellknown.HTTPRoleBasedAccessControl),
			TransportApiVersion:   corev3.ApiVersion_V3,
			WithRequestBody:       bodySettings(c.GetIncludeRequestBodyInCheck()),
		},
		tcp: &extauthztcp.ExtAuthz{
			StatPrefix:            rbacTCPStatPrefix,
			FailureModeAllow:      c.GetFailOpen(),
			TransportApiVersion:   corev3.ApiVersion_V3,
			GrpcService:           grpc,
			FilterEnabledMetadata: extAuthzFilterMatcher(wellknown.RoleBasedAccessControl),
		},
	}
}

// headerList is Istio's generateHeaders: case-insensitive exact, "x*"
// prefix, "*x" suffix.
func headerList(hs []string) *matcherv3.ListStringMatcher {
	if len(hs) == 0 {
		return nil
	}
	l := &matcherv3.ListStringMatcher{}
	for _, h := range hs {
		m := &matcherv3.StringMatcher{IgnoreCase: true}
		switch {
		case strings.HasPrefix(h, "*"):
			m.MatchPattern = &matcherv3.StringMatcher_Suffix{Suffix: strings.TrimPrefix(h, "*")}
		case strings.HasSuffix(h, "*"):
			m.MatchPattern = &matcherv3.StringMatcher_Prefix{Prefix: strings.TrimSuffix(h, "*")}
		default:
			m.MatchPattern = &matcherv3.StringMatcher_Exact{Exact: h}
		}
		l.Patterns = append(l.Patterns, m)
	}
	return l
}

// extAuthzFilterMatcher runs the ext_authz filter only when the shadow
// RBAC filter before it matched a CUSTOM rule.
func extAuthzFilterMatcher(filter string) *matcherv3.MetadataMatcher {
	return &matcherv3.MetadataMatcher{
		Filter: filter,
		Path:   []*matcherv3.MetadataMatcher_PathSegment{pathKey(extAuthzShadowStatPrefix + shadowEffectivePolicyID)},
		Value:  stringValue(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: extAuthzMatchPrefix}}),
	}
}

func timeoutOrDefault(t *durationpb.Duration) *durationpb.Duration {
	if t == nil {
		return &durationpb.Duration{Seconds: extAuthzDefaultTimeoutSeconds}
	}
	return t
}

func bodySettings(c *meshv1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationRequestBody) *extauthzhttp.BufferSettings {
	if c == nil {
		return nil
	}
	return &extauthzhttp.BufferSettings{MaxRequestBytes: c.GetMaxRequestBytes(), AllowPartialMessage: c.GetAllowPartialMessage(), PackAsBytes: c.GetPackAsBytes()}
}
