package xds

import (
	"slices"
	"sort"
	"strconv"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
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

func l4Matches(ms []*networking.L4MatchAttributes, port uint32) bool {
	if len(ms) == 0 {
		return true
	}
	for _, m := range ms {
		if m.GetPort() == 0 || m.GetPort() == port {
			return true
		}
	}
	return false
}

// httpRoutes translates the http routes of vs, as seen from gateway gw
// ("mesh" for sidecars) on listenerPort, into Envoy routes in order. Each
// Istio match block becomes its own Envoy route with the same action.
func (x *index) httpRoutes(vs *virtualService, gw string, listenerPort uint32, need func(destination)) []*routev3.Route {
	var out []*routev3.Route
	for _, hr := range vs.spec.GetHttp() {
		var matches []*routev3.RouteMatch
		if len(hr.GetMatch()) == 0 {
			matches = []*routev3.RouteMatch{{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}}
		}
		for _, m := range hr.GetMatch() {
			if len(m.GetGateways()) > 0 && !slices.ContainsFunc(m.GetGateways(), func(g string) bool { return gatewayKey(g, vs.res.Namespace) == gw }) {
				continue
			}
			if m.GetPort() != 0 && listenerPort != 0 && m.GetPort() != listenerPort {
				continue
			}
			matches = append(matches, routeMatch(m))
		}
		if len(matches) == 0 {
			continue
		}
		r := &routev3.Route{Name: hr.GetName()}
		switch {
		case hr.GetDirectResponse() != nil:
			dr := &routev3.DirectResponseAction{Status: hr.GetDirectResponse().GetStatus()}
			if b := hr.GetDirectResponse().GetBody(); b != nil {
				dr.Body = dataSource(b)
			}
			r.Action = &routev3.Route_DirectResponse{DirectResponse: dr}
		case hr.GetRedirect() != nil:
			r.Action = &routev3.Route_Redirect{Redirect: redirectAction(hr.GetRedirect())}
		default:
			var dests []weighted
			for _, d := range hr.GetRoute() {
				dests = append(dests, weighted{cluster: x.destinationCluster(d.GetDestination(), vs.res.Namespace, listenerPort, need), weight: uint32(d.GetWeight())})
			}
			if dests = normalizeWeights(dests); len(dests) == 0 {
				continue
			}
			a := routeAction(dests)
			if t := hr.GetTimeout(); t != nil {
				a.Timeout = t
			}
			if rt := hr.GetRetries(); rt != nil && rt.GetAttempts() > 0 {
				on := rt.GetRetryOn()
				if on == "" {
					on = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
				}
				a.RetryPolicy = &routev3.RetryPolicy{RetryOn: on, NumRetries: wrapperspb.UInt32(uint32(rt.GetAttempts())), PerTryTimeout: rt.GetPerTryTimeout()}
			}
			if rw := hr.GetRewrite(); rw != nil {
				a.PrefixRewrite = rw.GetUri()
				if rw.GetAuthority() != "" {
					a.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: rw.GetAuthority()}
				}
			}
			r.Action = &routev3.Route_Route{Route: a}
		}
		for _, m := range matches {
			rr := &routev3.Route{Name: r.Name, Match: m, Action: r.Action}
			out = append(out, rr)
		}
	}
	return out
}

func routeMatch(m *networking.HTTPMatchRequest) *routev3.RouteMatch {
	rm := &routev3.RouteMatch{}
	switch u := m.GetUri().GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		rm.PathSpecifier = &routev3.RouteMatch_Path{Path: u.Exact}
	case *networking.StringMatch_Prefix:
		rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: u.Prefix}
	case *networking.StringMatch_Regex:
		rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: u.Regex}}
	default:
		rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: "/"}
	}
	if m.GetIgnoreUriCase() {
		rm.CaseSensitive = wrapperspb.Bool(false)
	}
	add := func(name string, sm *networking.StringMatch, invert bool) {
		if h := headerMatcher(name, sm); h != nil {
			h.InvertMatch = invert
			rm.Headers = append(rm.Headers, h)
		}
	}
	add(":method", m.GetMethod(), false)
	add(":authority", m.GetAuthority(), false)
	add(":scheme", m.GetScheme(), false)
	for _, k := range sortedKeys(m.GetHeaders()) {
		add(k, m.GetHeaders()[k], false)
	}
	for _, k := range sortedKeys(m.GetWithoutHeaders()) {
		add(k, m.GetWithoutHeaders()[k], true)
	}
	for _, k := range sortedKeys(m.GetQueryParams()) {
		if sm := stringMatcher(m.GetQueryParams()[k]); sm != nil {
			rm.QueryParameters = append(rm.QueryParameters, &routev3.QueryParameterMatcher{
				Name: k, QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{StringMatch: sm},
			})
		}
	}
	return rm
}

func headerMatcher(name string, sm *networking.StringMatch) *routev3.HeaderMatcher {
	if sm == nil {
		return nil
	}
	m := stringMatcher(sm)
	if m == nil {
		// An empty StringMatch in Istio means "the header is present".
		return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}
	}
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: m}}
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

func redirectAction(rd *networking.HTTPRedirect) *routev3.RedirectAction {
	a := &routev3.RedirectAction{HostRedirect: rd.GetAuthority()}
	if rd.GetUri() != "" {
		a.PathRewriteSpecifier = &routev3.RedirectAction_PathRedirect{PathRedirect: rd.GetUri()}
	}
	if rd.GetScheme() != "" {
		a.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: rd.GetScheme()}
	}
	if p := rd.GetPort(); p != 0 {
		a.PortRedirect = p
	}
	switch rd.GetRedirectCode() {
	case 302:
		a.ResponseCode = routev3.RedirectAction_FOUND
	case 303:
		a.ResponseCode = routev3.RedirectAction_SEE_OTHER
	case 307:
		a.ResponseCode = routev3.RedirectAction_TEMPORARY_REDIRECT
	case 308:
		a.ResponseCode = routev3.RedirectAction_PERMANENT_REDIRECT
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
