package xds

import (
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlab/meshlab/controlplane/registry"
)

func (dr *destinationRule) subsets() []*networking.Subset {
	if dr == nil {
		return nil
	}
	return dr.spec.GetSubsets()
}

// destination is a cluster a route names, with what is needed to build it.
type destination struct {
	host   string
	port   uint32
	subset string
}

// destinationCluster resolves a VirtualService destination as Istio does:
// a short host is relative to the VirtualService's namespace; the port is
// the one given, else the service's only port, else the port of the
// listener the route serves. need, when set, is told every cluster named.
func (x *index) destinationCluster(d *networking.Destination, vsNS string, listenerPort uint32, need func(destination)) string {
	host := resolveHost(d.GetHost(), vsNS)
	port := d.GetPort().GetNumber()
	if port == 0 {
		port = listenerPort
		if s := x.byHost[host]; s != nil && len(s.Ports) > 0 {
			if _, ok := s.port(listenerPort); len(s.Ports) == 1 || !ok {
				port = s.Ports[0].Port
			}
		}
	}
	if need != nil {
		need(destination{host: host, port: port, subset: d.GetSubset()})
	}
	return outboundClusterName(port, d.GetSubset(), host)
}

// normalizeWeights drops zero-weight destinations when others carry the
// traffic, as Istio does; a lone destination takes everything.
func normalizeWeights(ds []weighted) []weighted {
	if len(ds) == 1 {
		ds[0].weight = 100
		return ds
	}
	var out []weighted
	for _, d := range ds {
		if d.weight > 0 {
			out = append(out, d)
		}
	}
	if len(out) == 0 {
		// No weights at all: Istio rejects this; split evenly rather than
		// emit a route Envoy would reject.
		for _, d := range ds {
			d.weight = 1
			out = append(out, d)
		}
	}
	if len(out) == 1 {
		out[0].weight = 100
	}
	return out
}

// source is the proxy routes are built for, as sourceLabels and
// sourceNamespace see it: Istio evaluates those at translation time, so a
// route guarded by them exists only in the configuration of the proxies
// it selects.
type source struct {
	namespace string
	labels    map[string]string
}

func workloadSource(w registry.Workload) source {
	return source{namespace: w.Namespace, labels: w.Labels}
}

// sourceKey is what makes one sidecar's routes differ from another's:
// its namespace and labels, but only when some VirtualService matches on
// the source at all ("" otherwise), so that sidecars keep sharing routes
// in the common case.
func (x *index) sourceKey(src source) string {
	for _, vs := range x.virtualServices {
		var ms []interface {
			GetSourceLabels() map[string]string
			GetSourceNamespace() string
		}
		for _, hr := range vs.spec.GetHttp() {
			for _, m := range hr.GetMatch() {
				ms = append(ms, m)
			}
		}
		for _, r := range vs.spec.GetTcp() {
			for _, m := range r.GetMatch() {
				ms = append(ms, m)
			}
		}
		for _, r := range vs.spec.GetTls() {
			for _, m := range r.GetMatch() {
				ms = append(ms, m)
			}
		}
		{
			for _, m := range ms {
				if len(m.GetSourceLabels()) > 0 || m.GetSourceNamespace() != "" {
					var b strings.Builder
					b.WriteString(src.namespace)
					for _, k := range sortedKeys(src.labels) {
						b.WriteString("|" + k + "=" + src.labels[k])
					}
					return b.String()
				}
			}
		}
	}
	return ""
}

// sourceMatches is Istio's sourceMatchHTTP: a match naming gateways
// applies to those gateways (source labels are then not looked at); else
// its sourceLabels must be a subset of the proxy's labels and its
// sourceNamespace, if any, the proxy's namespace.
func sourceMatches(m *networking.HTTPMatchRequest, gw, vsNS string, src source) bool {
	if len(m.GetGateways()) > 0 {
		return slices.ContainsFunc(m.GetGateways(), func(g string) bool { return gatewayKey(g, vsNS) == gw })
	}
	for k, v := range m.GetSourceLabels() {
		if got, ok := src.labels[k]; !ok || got != v {
			return false
		}
	}
	return m.GetSourceNamespace() == "" || m.GetSourceNamespace() == src.namespace
}

// httpRoutes translates the http routes of vs, as seen from gateway gw
// ("mesh" for sidecars) on listenerPort by the proxy src, into Envoy
// routes in order, as Istio's BuildHTTPRoutesForVirtualService does: each
// Istio match block becomes its own Envoy route with the same action, a
// block that does not apply to this proxy or port is dropped, and nothing
// after a catch-all route is emitted.
func (x *index) httpRoutes(vs *virtualService, gw string, listenerPort uint32, src source, need func(destination)) []*routev3.Route {
	var out []*routev3.Route
	for _, hr := range vs.spec.GetHttp() {
		if len(hr.GetMatch()) == 0 {
			if r := x.translateRoute(vs, hr, nil, gw, listenerPort, src, need); r != nil {
				out = append(out, r)
			}
			break
		}
		catchAll := false
		for _, m := range hr.GetMatch() {
			if r := x.translateRoute(vs, hr, m, gw, listenerPort, src, need); r != nil {
				out = append(out, r)
				if isCatchAll(r) {
					catchAll = true
					break
				}
			}
		}
		if catchAll {
			break
		}
	}
	return out
}

// isCatchAll is Istio's IsCatchAllRoute: prefix `/` (or regex `.*`) and no
// header or query parameter condition.
func isCatchAll(r *routev3.Route) bool {
	m := r.GetMatch()
	all := false
	switch p := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		all = p.Prefix == "/"
	case *routev3.RouteMatch_SafeRegex:
		all = p.SafeRegex.GetRegex() == ".*"
	}
	return all && len(m.GetHeaders()) == 0 && len(m.GetQueryParameters()) == 0
}

// translateRoute is Istio's TranslateRoute for one match block (nil: the
// route has none); nil when the block does not apply here.
func (x *index) translateRoute(vs *virtualService, hr *networking.HTTPRoute, m *networking.HTTPMatchRequest, gw string, listenerPort uint32, src source, need func(destination)) *routev3.Route {
	if m != nil {
		if m.GetPort() != 0 && listenerPort != 0 && m.GetPort() != listenerPort {
			return nil
		}
		if !sourceMatches(m, gw, vs.res.Namespace, src) {
			return nil
		}
	}
	name := hr.GetName()
	if m.GetName() != "" {
		name += "." + m.GetName()
	}
	r := &routev3.Route{Name: name, Match: routeMatch(m)}
	var authority string
	if h := hr.GetHeaders(); h != nil {
		ops := headerOps(h)
		r.RequestHeadersToAdd, r.RequestHeadersToRemove = ops.reqAdd, ops.reqRemove
		r.ResponseHeadersToAdd, r.ResponseHeadersToRemove = ops.respAdd, ops.respRemove
		authority = ops.authority
	}
	switch {
	case hr.GetRedirect() != nil:
		a := redirectAction(hr.GetRedirect(), listenerPort)
		if a == nil {
			return nil // a redirect code Envoy cannot send: Istio drops the route
		}
		r.Action = &routev3.Route_Redirect{Redirect: a}
	case hr.GetDirectResponse() != nil:
		dr := &routev3.DirectResponseAction{Status: hr.GetDirectResponse().GetStatus()}
		if b := hr.GetDirectResponse().GetBody(); b != nil {
			dr.Body = dataSource(b)
		}
		r.Action = &routev3.Route_DirectResponse{DirectResponse: dr}
	default:
		a := x.routeDestination(vs, hr, r, authority, listenerPort, need)
		if a == nil {
			return nil
		}
		r.Action = &routev3.Route_Route{Route: a}
	}
	r.Decorator = &routev3.Decorator{Operation: routeOperation(r, vs.res.Name, listenerPort)}
	if f := faultConfig(hr.GetFault()); f != nil {
		r.TypedPerFilterConfig = map[string]*anypb.Any{wellknown.Fault: mustAny(f)}
	}
	if c := corsPolicy(hr.GetCorsPolicy()); c != nil {
		if r.TypedPerFilterConfig == nil {
			r.TypedPerFilterConfig = map[string]*anypb.Any{}
		}
		r.TypedPerFilterConfig[wellknown.CORS] = mustAny(c)
	}
	return r
}

// routeDestination is Istio's applyHTTPRouteDestination: destinations,
// timeout, rewrites, mirrors and the retry policy.
func (x *index) routeDestination(vs *virtualService, hr *networking.HTTPRoute, r *routev3.Route, authority string, listenerPort uint32, need func(destination)) *routev3.RouteAction {
	var dests []weighted
	for _, d := range hr.GetRoute() {
		dests = append(dests, weighted{
			cluster: x.destinationCluster(d.GetDestination(), vs.res.Namespace, listenerPort, need),
			weight:  uint32(d.GetWeight()),
			headers: d.GetHeaders(),
		})
	}
	if dests = normalizeWeights(dests); len(dests) == 0 {
		return nil
	}
	a := routeAction(dests)
	a.HashPolicy = x.hashPolicies(hr.GetRoute(), vs.res.Namespace) // DestinationRule consistentHash (clusters.go)
	if t := hr.GetTimeout(); t != nil {
		a.Timeout = t
	}
	if rw := hr.GetRewrite(); rw != nil {
		if rr := rw.GetUriRegexRewrite(); rr != nil {
			a.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{Pattern: &matcherv3.RegexMatcher{Regex: rr.GetMatch()}, Substitution: rr.GetRewrite()}
		} else if rw.GetUri() != "" {
			a.PrefixRewrite = rw.GetUri()
		}
		if rw.GetAuthority() != "" {
			authority = rw.GetAuthority()
		}
	}
	if len(dests) == 1 && dests[0].headers != nil {
		// A lone destination's header operations go on the route, after
		// the route's own, as Istio's processDestination does.
		ops := headerOps(dests[0].headers)
		r.RequestHeadersToAdd = append(r.RequestHeadersToAdd, ops.reqAdd...)
		r.RequestHeadersToRemove = append(r.RequestHeadersToRemove, ops.reqRemove...)
		r.ResponseHeadersToAdd = append(r.ResponseHeadersToAdd, ops.respAdd...)
		r.ResponseHeadersToRemove = append(r.ResponseHeadersToRemove, ops.respRemove...)
		if authority == "" {
			authority = ops.authority
		}
	}
	if authority != "" {
		a.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: authority}
	}
	if m := hr.GetMirror(); m != nil {
		if pct := mirrorPercent(hr.GetMirrorPercentage(), hr.GetMirrorPercent()); pct != nil { //nolint:staticcheck // SA1019: Istio still honours mirror_percent and users still write it
			a.RequestMirrorPolicies = append(a.RequestMirrorPolicies, mirrorPolicy(x.destinationCluster(m, vs.res.Namespace, listenerPort, need), pct))
		}
	}
	for _, m := range hr.GetMirrors() {
		if m.GetDestination() == nil {
			continue
		}
		if pct := mirrorPercent(m.GetPercentage(), nil); pct != nil {
			a.RequestMirrorPolicies = append(a.RequestMirrorPolicies, mirrorPolicy(x.destinationCluster(m.GetDestination(), vs.res.Namespace, listenerPort, need), pct))
		}
	}
	a.RetryPolicy = retryPolicy(hr.GetRetries())
	return a
}

// retryPolicy is Istio's retry.ConvertPolicy: no `retries` means Istio's
// default policy, `attempts: 0` none, else the default with the given
// attempts, conditions (status codes in retryOn become
// retriable_status_codes), per-try timeout and back-off.
func retryPolicy(in *networking.HTTPRetry) *routev3.RetryPolicy {
	out := defaultRetryPolicy()
	if in == nil {
		return out
	}
	if in.GetAttempts() <= 0 {
		return nil
	}
	out.NumRetries = wrapperspb.UInt32(uint32(in.GetAttempts()))
	if in.GetRetryOn() != "" {
		out.RetryOn, out.RetriableStatusCodes = parseRetryOn(in.GetRetryOn())
		if len(out.RetriableStatusCodes) > 0 && !strings.Contains(out.RetryOn, "retriable-status-codes") {
			out.RetryOn += ",retriable-status-codes"
		}
	}
	if in.GetPerTryTimeout() != nil {
		out.PerTryTimeout = in.GetPerTryTimeout()
	}
	if v := in.GetRetryIgnorePreviousHosts(); v != nil && !v.GetValue() {
		out.RetryHostPredicate = nil
	}
	if in.GetBackoff() != nil {
		out.RetryBackOff = &routev3.RetryPolicy_RetryBackOff{BaseInterval: in.GetBackoff()}
	}
	return out
}

var previousHostsPredicate = &routev3.RetryPolicy_RetryHostPredicate{
	Name:       "envoy.retry_host_predicates.previous_hosts",
	ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: mustAny(&previoushostsv3.PreviousHostsPredicate{})},
}

// defaultRetryPolicy is Istio's DefaultPolicy.
func defaultRetryPolicy() *routev3.RetryPolicy {
	return &routev3.RetryPolicy{
		RetryOn:                       "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
		NumRetries:                    wrapperspb.UInt32(2),
		RetriableStatusCodes:          []uint32{http.StatusServiceUnavailable},
		RetryHostPredicate:            []*routev3.RetryPolicy_RetryHostPredicate{previousHostsPredicate},
		HostSelectionRetryMaxAttempts: 5,
	}
}

func parseRetryOn(s string) (string, []uint32) {
	var codes []uint32
	var on []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if i, err := strconv.Atoi(part); err == nil && http.StatusText(i) != "" {
			codes = append(codes, uint32(i))
		} else {
			on = append(on, part)
		}
	}
	return strings.Join(on, ","), codes
}

// defaultOutboundRoute is the route of a service no VirtualService
// covers: Istio's BuildDefaultHTTPOutboundRoute, with the default retries.
func defaultOutboundRoute(cluster string) *routev3.Route {
	r := catchAllRoute("default", cluster)
	r.GetRoute().RetryPolicy = defaultRetryPolicy()
	return r
}

func mirrorPercent(pct *networking.Percent, legacy *wrapperspb.UInt32Value) *corev3.RuntimeFractionalPercent {
	switch {
	case pct != nil:
		if pct.GetValue() <= 0 {
			return nil // an explicit 0% mirrors nothing
		}
		return &corev3.RuntimeFractionalPercent{DefaultValue: percentMillion(pct)}
	case legacy != nil:
		if legacy.GetValue() == 0 {
			return nil
		}
		return &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: legacy.GetValue(), Denominator: typev3.FractionalPercent_HUNDRED}}
	}
	return &corev3.RuntimeFractionalPercent{DefaultValue: &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED}}
}

func mirrorPolicy(cluster string, pct *corev3.RuntimeFractionalPercent) *routev3.RouteAction_RequestMirrorPolicy {
	return &routev3.RouteAction_RequestMirrorPolicy{Cluster: cluster, RuntimeFraction: pct, TraceSampled: wrapperspb.Bool(false)}
}

func percentMillion(p *networking.Percent) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{Numerator: uint32(p.GetValue() * 10000), Denominator: typev3.FractionalPercent_MILLION}
}

// faultConfig is Istio's TranslateFault: the per-route configuration of
// envoy.filters.http.fault. A delay or abort without a percentage gets 0%
// (Istio's translation of the deprecated integer percent), as in Istio.
func faultConfig(in *networking.HTTPFaultInjection) *faultv3.HTTPFault {
	if in == nil {
		return nil
	}
	out := &faultv3.HTTPFault{}
	if d := in.GetDelay(); d != nil && d.GetFixedDelay() != nil {
		out.Delay = &faultcommonv3.FaultDelay{FaultDelaySecifier: &faultcommonv3.FaultDelay_FixedDelay{FixedDelay: d.GetFixedDelay()}}
		if d.GetPercentage() != nil {
			out.Delay.Percentage = percentMillion(d.GetPercentage())
		} else {
			out.Delay.Percentage = &typev3.FractionalPercent{Numerator: uint32(d.GetPercent()), Denominator: typev3.FractionalPercent_HUNDRED} //nolint:staticcheck // Istio still honours it
		}
	}
	if ab := in.GetAbort(); ab != nil {
		if st, ok := ab.GetErrorType().(*networking.HTTPFaultInjection_Abort_HttpStatus); ok {
			out.Abort = &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: uint32(st.HttpStatus)}}
			if ab.GetPercentage() != nil {
				out.Abort.Percentage = percentMillion(ab.GetPercentage())
			}
		}
	}
	if out.Delay == nil && out.Abort == nil {
		return nil
	}
	return out
}

// headerOperations are an Istio Headers block as Envoy route fields.
type headerOperations struct {
	reqAdd, respAdd       []*corev3.HeaderValueOption
	reqRemove, respRemove []string
	authority             string
}

// headerOps is Istio's TranslateHeadersOperations: `set` overwrites,
// `add` appends, each sorted by name; Host/:authority become a host
// rewrite rather than a header.
func headerOps(h *networking.Headers) headerOperations {
	var ops headerOperations
	var setAuth, addAuth string
	ops.reqAdd, setAuth = headerValues(h.GetRequest().GetSet(), false)
	add, addAuth := headerValues(h.GetRequest().GetAdd(), true)
	ops.reqAdd = append(ops.reqAdd, add...)
	ops.respAdd, _ = headerValues(h.GetResponse().GetSet(), false)
	add, _ = headerValues(h.GetResponse().GetAdd(), true)
	ops.respAdd = append(ops.respAdd, add...)
	ops.reqRemove = dropInternal(h.GetRequest().GetRemove())
	ops.respRemove = dropInternal(h.GetResponse().GetRemove())
	ops.authority = addAuth
	if setAuth != "" {
		ops.authority = setAuth
	}
	return ops
}

func headerValues(m map[string]string, appendValue bool) ([]*corev3.HeaderValueOption, string) {
	var out []*corev3.HeaderValueOption
	var authority string
	action := corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	if appendValue {
		action = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
	}
	for _, k := range sortedKeys(m) {
		if strings.EqualFold(k, ":authority") || strings.EqualFold(k, "host") {
			authority = m[k]
		}
		if internalHeader(k) {
			continue
		}
		out = append(out, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: m[k]}, AppendAction: action})
	}
	return out, authority
}

func internalHeader(k string) bool { return strings.HasPrefix(k, ":") || strings.EqualFold(k, "host") }

func dropInternal(keys []string) []string {
	var out []string
	for _, k := range keys {
		if !internalHeader(k) {
			out = append(out, k)
		}
	}
	return out
}

// routeMatch is Istio's TranslateRouteMatch: the path, case sensitivity
// always stated, header conditions sorted by name then :method,
// :authority and :scheme, and query parameters (sorted here, for stable
// output).
func routeMatch(m *networking.HTTPMatchRequest) *routev3.RouteMatch {
	rm := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	if m == nil {
		return rm
	}
	for _, k := range sortedKeys(m.GetHeaders()) {
		rm.Headers = append(rm.Headers, headerMatcher(k, m.GetHeaders()[k]))
	}
	for _, k := range sortedKeys(m.GetWithoutHeaders()) {
		sm := m.GetWithoutHeaders()[k]
		h := headerMatcher(k, sm)
		h.InvertMatch = true
		if !presentMatch(sm) {
			h.TreatMissingHeaderAsEmpty = true
		}
		rm.Headers = append(rm.Headers, h)
	}
	sort.SliceStable(rm.Headers, func(i, j int) bool { return rm.Headers[i].Name < rm.Headers[j].Name })
	switch u := m.GetUri().GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		rm.PathSpecifier = &routev3.RouteMatch_Path{Path: u.Exact}
	case *networking.StringMatch_Prefix:
		rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: u.Prefix}
	case *networking.StringMatch_Regex:
		rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: u.Regex}}
	}
	rm.CaseSensitive = wrapperspb.Bool(!m.GetIgnoreUriCase())
	if m.GetMethod() != nil {
		rm.Headers = append(rm.Headers, headerMatcher(":method", m.GetMethod()))
	}
	if m.GetAuthority() != nil {
		rm.Headers = append(rm.Headers, headerMatcher(":authority", m.GetAuthority()))
	}
	if m.GetScheme() != nil {
		rm.Headers = append(rm.Headers, headerMatcher(":scheme", m.GetScheme()))
	}
	for _, k := range sortedKeys(m.GetQueryParams()) {
		sm := m.GetQueryParams()[k]
		q := &routev3.QueryParameterMatcher{Name: k}
		if presentMatch(sm) {
			q.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}
		} else {
			q.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_StringMatch{StringMatch: stringMatcher(sm)}
		}
		rm.QueryParameters = append(rm.QueryParameters, q)
	}
	return rm
}

// presentMatch: an empty StringMatch, or the regex `*`, means "present"
// in Istio.
func presentMatch(sm *networking.StringMatch) bool {
	if sm.GetMatchType() == nil {
		return true
	}
	r, ok := sm.GetMatchType().(*networking.StringMatch_Regex)
	return ok && r.Regex == "*"
}

func headerMatcher(name string, sm *networking.StringMatch) *routev3.HeaderMatcher {
	if presentMatch(sm) {
		return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}
	}
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: stringMatcher(sm)}}
}

func stringMatcher(sm *networking.StringMatch) *matcherv3.StringMatcher {
	switch u := sm.GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: u.Exact}}
	case *networking.StringMatch_Prefix:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: u.Prefix}}
	case *networking.StringMatch_Regex:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: u.Regex}}}
	}
	return nil
}

// redirectAction is Istio's ApplyRedirect on a plaintext listener; nil
// for a redirect code Envoy has no value for.
func redirectAction(rd *networking.HTTPRedirect, listenerPort uint32) *routev3.RedirectAction {
	a := &routev3.RedirectAction{
		HostRedirect:         rd.GetAuthority(),
		PathRewriteSpecifier: &routev3.RedirectAction_PathRedirect{PathRedirect: rd.GetUri()},
	}
	if rd.GetScheme() != "" {
		a.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: rd.GetScheme()}
	}
	if rd.GetRedirectPort() != nil {
		switch {
		case rd.GetPort() != 0:
			a.PortRedirect = rd.GetPort()
		case rd.GetDerivePort() == networking.HTTPRedirect_FROM_REQUEST_PORT:
			// Envoy cannot derive the port; routes are per listener port.
			a.PortRedirect = listenerPort
		}
		scheme := rd.GetScheme()
		if scheme == "" {
			scheme = "http"
		}
		if a.PortRedirect == 80 && scheme == "http" || a.PortRedirect == 443 && scheme == "https" {
			a.PortRedirect = 0
		}
	}
	switch rd.GetRedirectCode() {
	case 0, 301:
		a.ResponseCode = routev3.RedirectAction_MOVED_PERMANENTLY
	case 302:
		a.ResponseCode = routev3.RedirectAction_FOUND
	case 303:
		a.ResponseCode = routev3.RedirectAction_SEE_OTHER
	case 307:
		a.ResponseCode = routev3.RedirectAction_TEMPORARY_REDIRECT
	case 308:
		a.ResponseCode = routev3.RedirectAction_PERMANENT_REDIRECT
	default:
		return nil
	}
	return a
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func portString(p uint32) string { return strconv.FormatUint(uint64(p), 10) }

// gatewayKey resolves a VirtualService's gateway reference: `mesh`, or
// `ns/name`, a bare name being in the VirtualService's namespace.
func gatewayKey(g, vsNS string) string {
	if g == "mesh" || strings.Contains(g, "/") {
		return g
	}
	return vsNS + "/" + g
}
