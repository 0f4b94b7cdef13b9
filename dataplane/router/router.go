// Package router owns HTTP route matching: it compiles an Envoy
// RouteConfiguration into a table that picks, for a request, the virtual
// host (by Host, with Envoy's domain rules) and the first route whose match
// fits, and resolves the route's cluster.
package router

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// DefaultTimeout is Envoy's route timeout when a route sets none.
const DefaultTimeout = 15 * time.Second

// Table is a compiled RouteConfiguration. It is immutable.
type Table struct {
	Name  string
	exact map[string]*VirtualHost
	// suffix and prefix wildcards, longest first as Envoy prefers them.
	suffix []wild
	prefix []wild
	any    *VirtualHost
}

type wild struct {
	part string
	vh   *VirtualHost
}

// VirtualHost is a compiled virtual host.
type VirtualHost struct {
	Name   string
	Routes []*Route
}

// Route is a compiled route.
type Route struct {
	Name string

	prefix, path  string
	regex         *regexp.Regexp
	caseSensitive bool
	headers       []headerMatcher
	query         []queryMatcher

	// Cluster, or Weighted when the route splits traffic.
	Cluster  string
	Weighted []WeightedCluster
	total    uint32
	// Timeout is the route timeout; zero means none.
	Timeout time.Duration
	Retry   *RetryPolicy
	// PrefixRewrite replaces the matched prefix when set.
	PrefixRewrite string
	RegexRewrite  *RegexRewrite
	HostRewrite   string
	Mirrors       []Mirror
	// Direct is a direct response, Redirect a redirect, when the route
	// has one.
	Direct   *DirectResponse
	Redirect *Redirect
	// Fault is the route's fault filter configuration; the proxy applies
	// it only where the connection manager has the fault filter.
	Fault *Fault
	// Cors is the route's CORS policy (cors.go); applied only where the
	// connection manager has the CORS filter.
	Cors *Cors
	// Request and Response are the route's header mutations.
	Request, Response HeaderOps
	// HashPolicy is the route's hash policy, for hashing load balancers
	// (see upstream.RequestHash).
	HashPolicy []*routev3.RouteAction_HashPolicy
	// Operation is the route decorator's operation, which names the
	// request's span (Istio's host:port/path); PropagateOperation whether
	// it travels in x-envoy-decorator-operation (decorator.propagate,
	// true by default).
	Operation          string
	PropagateOperation bool
}

// WeightedCluster is one destination of a split, with its own header
// mutations and host rewrite.
type WeightedCluster struct {
	Name              string
	Weight            uint32
	Request, Response HeaderOps
	HostRewrite       string
}

// DirectResponse is a route answering by itself.
type DirectResponse struct {
	Status int
	Body   string
}

type headerMatcher struct {
	name         string // canonical, or a pseudo-header
	invert       bool
	missingEmpty bool // treat_missing_header_as_empty
	present      *bool
	str          *stringMatcher
}

type queryMatcher struct {
	name    string
	present bool
	str     *stringMatcher
}

type stringMatcher struct {
	kind       int
	value      string
	ignoreCase bool
	re         *regexp.Regexp
}

const (
	smExact = iota
	smPrefix
	smSuffix
	smContains
	smRegex
)

// Compile builds a Table from rc. It fails on what the proxy cannot honour
// (an unsupported match or action, a regex that does not compile).
func Compile(rc *routev3.RouteConfiguration) (*Table, error) {
	t := &Table{Name: rc.GetName(), exact: map[string]*VirtualHost{}}
	for _, v := range rc.GetVirtualHosts() {
		vh := &VirtualHost{Name: v.GetName()}
		for i, r := range v.GetRoutes() {
			cr, err := compileRoute(r)
			if err != nil {
				return nil, fmt.Errorf("route config %q: virtual host %q: route %d (%q): %w", rc.GetName(), v.GetName(), i, r.GetName(), err)
			}
			vh.Routes = append(vh.Routes, cr)
		}
		for _, d := range v.GetDomains() {
			d = strings.ToLower(d)
			switch {
			case d == "*":
				if t.any != nil {
					return nil, fmt.Errorf("route config %q: domain %q in two virtual hosts", rc.GetName(), d)
				}
				t.any = vh
			case strings.HasPrefix(d, "*"):
				t.suffix = append(t.suffix, wild{part: d[1:], vh: vh})
			case strings.HasSuffix(d, "*"):
				t.prefix = append(t.prefix, wild{part: d[:len(d)-1], vh: vh})
			default:
				if _, dup := t.exact[d]; dup {
					return nil, fmt.Errorf("route config %q: domain %q in two virtual hosts", rc.GetName(), d)
				}
				t.exact[d] = vh
			}
		}
	}
	byLen := func(w []wild) {
		sort.SliceStable(w, func(i, j int) bool { return len(w[i].part) > len(w[j].part) })
	}
	byLen(t.suffix)
	byLen(t.prefix)
	return t, nil
}

func compileRoute(r *routev3.Route) (*Route, error) {
	m := r.GetMatch()
	cr := &Route{Name: r.GetName(), caseSensitive: true}
	if d := r.GetDecorator(); d != nil {
		cr.Operation = d.GetOperation()
		cr.PropagateOperation = d.GetPropagate() == nil || d.GetPropagate().GetValue()
	}
	if cs := m.GetCaseSensitive(); cs != nil {
		cr.caseSensitive = cs.GetValue()
	}
	switch p := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		cr.prefix = p.Prefix
	case *routev3.RouteMatch_Path:
		cr.path = p.Path
	case *routev3.RouteMatch_SafeRegex:
		re, err := regexp.Compile("^(?:" + p.SafeRegex.GetRegex() + ")$")
		if err != nil {
			return nil, fmt.Errorf("compile regex %q: %w", p.SafeRegex.GetRegex(), err)
		}
		cr.regex = re
	case *routev3.RouteMatch_PathSeparatedPrefix:
		cr.prefix = p.PathSeparatedPrefix
	default:
		return nil, fmt.Errorf("unsupported path match %T", p)
	}
	if !cr.caseSensitive {
		cr.prefix, cr.path = strings.ToLower(cr.prefix), strings.ToLower(cr.path)
	}
	for _, h := range m.GetHeaders() {
		hm, err := compileHeader(h)
		if err != nil {
			return nil, err
		}
		cr.headers = append(cr.headers, hm)
	}
	for _, q := range m.GetQueryParameters() {
		qm := queryMatcher{name: q.GetName()}
		switch s := q.GetQueryParameterMatchSpecifier().(type) {
		case *routev3.QueryParameterMatcher_PresentMatch:
			qm.present = s.PresentMatch
		case *routev3.QueryParameterMatcher_StringMatch:
			sm, err := compileString(s.StringMatch)
			if err != nil {
				return nil, fmt.Errorf("query parameter %q: %w", q.GetName(), err)
			}
			qm.str = sm
		case nil:
			// Envoy: no specifier means the parameter must be present.
			qm.present = true
		default:
			return nil, fmt.Errorf("query parameter %q: unsupported match %T", q.GetName(), s)
		}
		cr.query = append(cr.query, qm)
	}
	cr.Request = compileHeaderOps(r.GetRequestHeadersToAdd(), r.GetRequestHeadersToRemove())
	cr.Response = compileHeaderOps(r.GetResponseHeadersToAdd(), r.GetResponseHeadersToRemove())
	f, err := compileFault(r.GetTypedPerFilterConfig())
	if err != nil {
		return nil, err
	}
	cr.Fault = f
	if cr.Cors, err = compileCors(r.GetTypedPerFilterConfig()); err != nil {
		return nil, err
	}
	switch a := r.GetAction().(type) {
	case *routev3.Route_Route:
		ra := a.Route
		switch cs := ra.GetClusterSpecifier().(type) {
		case *routev3.RouteAction_Cluster:
			cr.Cluster = cs.Cluster
		case *routev3.RouteAction_WeightedClusters:
			for _, c := range cs.WeightedClusters.GetClusters() {
				cr.Weighted = append(cr.Weighted, WeightedCluster{
					Name: c.GetName(), Weight: c.GetWeight().GetValue(),
					Request:     compileHeaderOps(c.GetRequestHeadersToAdd(), c.GetRequestHeadersToRemove()),
					Response:    compileHeaderOps(c.GetResponseHeadersToAdd(), c.GetResponseHeadersToRemove()),
					HostRewrite: c.GetHostRewriteLiteral(),
				})
				cr.total += c.GetWeight().GetValue()
			}
			if tw := cs.WeightedClusters.GetTotalWeight(); tw != nil && tw.GetValue() > 0 { //nolint:staticcheck // SA1019: Envoy still honours total_weight and control planes still send it
				cr.total = tw.GetValue()
			}
			if cr.total == 0 {
				return nil, fmt.Errorf("weighted clusters with total weight 0")
			}
		default:
			return nil, fmt.Errorf("unsupported cluster specifier %T", cs)
		}
		cr.Timeout = DefaultTimeout
		if to := ra.GetTimeout(); to != nil {
			cr.Timeout = to.AsDuration()
		}
		if rp := ra.GetRetryPolicy(); rp != nil {
			if cr.Retry, err = compileRetry(rp); err != nil {
				return nil, err
			}
		}
		cr.PrefixRewrite = ra.GetPrefixRewrite()
		if cr.RegexRewrite, err = compileRegexRewrite(ra); err != nil {
			return nil, err
		}
		cr.HostRewrite = ra.GetHostRewriteLiteral()
		cr.Mirrors = compileMirrors(ra.GetRequestMirrorPolicies())
		cr.HashPolicy = ra.GetHashPolicy()
	case *routev3.Route_DirectResponse:
		body := a.DirectResponse.GetBody()
		cr.Direct = &DirectResponse{Status: int(a.DirectResponse.GetStatus()), Body: body.GetInlineString()}
		if b := body.GetInlineBytes(); b != nil {
			cr.Direct.Body = string(b)
		}
	case *routev3.Route_Redirect:
		cr.Redirect = compileRedirect(a.Redirect)
	default:
		return nil, fmt.Errorf("unsupported route action %T", a)
	}
	return cr, nil
}

func compileHeader(h *routev3.HeaderMatcher) (headerMatcher, error) {
	hm := headerMatcher{name: h.GetName(), invert: h.GetInvertMatch(), missingEmpty: h.GetTreatMissingHeaderAsEmpty()}
	if !strings.HasPrefix(hm.name, ":") {
		hm.name = http.CanonicalHeaderKey(hm.name)
	}
	var err error
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_PresentMatch:
		hm.present = &s.PresentMatch
	case *routev3.HeaderMatcher_StringMatch:
		hm.str, err = compileString(s.StringMatch)
	// The deprecated specifiers below: Envoy still honours them, and
	// control planes other than recent istiod (and older istiod) still
	// send them instead of string_match.
	case *routev3.HeaderMatcher_ExactMatch:
		hm.str = &stringMatcher{kind: smExact, value: s.ExactMatch} //nolint:staticcheck // SA1019: see above
	case *routev3.HeaderMatcher_PrefixMatch:
		hm.str = &stringMatcher{kind: smPrefix, value: s.PrefixMatch} //nolint:staticcheck // SA1019: see above
	case *routev3.HeaderMatcher_SuffixMatch:
		hm.str = &stringMatcher{kind: smSuffix, value: s.SuffixMatch} //nolint:staticcheck // SA1019: see above
	case *routev3.HeaderMatcher_ContainsMatch:
		hm.str = &stringMatcher{kind: smContains, value: s.ContainsMatch} //nolint:staticcheck // SA1019: see above
	case *routev3.HeaderMatcher_SafeRegexMatch:
		hm.str, err = compileString(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: s.SafeRegexMatch}}) //nolint:staticcheck // SA1019: see above
	case nil:
		t := true
		hm.present = &t
	default:
		return hm, fmt.Errorf("header %q: unsupported header match %T", h.GetName(), s)
	}
	if err != nil {
		return hm, fmt.Errorf("header %q: %w", h.GetName(), err)
	}
	return hm, nil
}

func compileString(m *matcherv3.StringMatcher) (*stringMatcher, error) {
	sm := &stringMatcher{ignoreCase: m.GetIgnoreCase()}
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		sm.kind, sm.value = smExact, p.Exact
	case *matcherv3.StringMatcher_Prefix:
		sm.kind, sm.value = smPrefix, p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		sm.kind, sm.value = smSuffix, p.Suffix
	case *matcherv3.StringMatcher_Contains:
		sm.kind, sm.value = smContains, p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := regexp.Compile("^(?:" + p.SafeRegex.GetRegex() + ")$")
		if err != nil {
			return nil, fmt.Errorf("compile regex %q: %w", p.SafeRegex.GetRegex(), err)
		}
		sm.kind, sm.re = smRegex, re
	default:
		return nil, fmt.Errorf("unsupported string match %T", p)
	}
	if sm.ignoreCase {
		sm.value = strings.ToLower(sm.value)
	}
	return sm, nil
}

func (s *stringMatcher) match(v string) bool {
	if s.ignoreCase && s.kind != smRegex {
		v = strings.ToLower(v)
	}
	switch s.kind {
	case smExact:
		return v == s.value
	case smPrefix:
		return strings.HasPrefix(v, s.value)
	case smSuffix:
		return strings.HasSuffix(v, s.value)
	case smContains:
		return strings.Contains(v, s.value)
	default:
		return s.re.MatchString(v)
	}
}

// VirtualHost picks the virtual host for host (the Host header or
// :authority) as Envoy does: exact domain, then the longest suffix
// wildcard, then the longest prefix wildcard, then `*`.
func (t *Table) VirtualHost(host string) *VirtualHost {
	if t == nil {
		return nil
	}
	host = lower(host)
	if vh, ok := t.exact[host]; ok {
		return vh
	}
	for _, w := range t.suffix {
		// The wildcard stands for at least one character.
		if len(host) > len(w.part) && strings.HasSuffix(host, w.part) {
			return w.vh
		}
	}
	for _, w := range t.prefix {
		if len(host) > len(w.part) && strings.HasPrefix(host, w.part) {
			return w.vh
		}
	}
	return t.any
}

// lower avoids allocating for hosts that are already lower case, the
// common case.
func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// Match finds the route for r: the virtual host by r.Host, then the first
// route that fits. It returns nil when nothing matches.
func (t *Table) Match(r *http.Request) *Route {
	vh := t.VirtualHost(r.Host)
	if vh == nil {
		return nil
	}
	return vh.Match(r)
}

// Match returns the first route of vh that fits r, or nil.
func (vh *VirtualHost) Match(r *http.Request) *Route {
	path := r.URL.Path
	if r.URL.RawPath != "" {
		path = r.URL.RawPath
	}
	for _, rt := range vh.Routes {
		if rt.matches(path, r) {
			return rt
		}
	}
	return nil
}

func (rt *Route) matches(path string, r *http.Request) bool {
	switch {
	case rt.regex != nil:
		if !rt.regex.MatchString(path) {
			return false
		}
	case rt.path != "":
		if rt.caseSensitive && path != rt.path || !rt.caseSensitive && !strings.EqualFold(path, rt.path) {
			return false
		}
	default:
		if rt.caseSensitive && !strings.HasPrefix(path, rt.prefix) ||
			!rt.caseSensitive && (len(path) < len(rt.prefix) || !strings.EqualFold(path[:len(rt.prefix)], rt.prefix)) {
			return false
		}
	}
	for i := range rt.headers {
		if !rt.headers[i].matches(r) {
			return false
		}
	}
	for i := range rt.query {
		if !rt.query[i].matches(r.URL.RawQuery) {
			return false
		}
	}
	return true
}

// matches looks the parameter up in the raw query, undecoded, as Envoy
// does; the first occurrence counts.
func (q *queryMatcher) matches(raw string) bool {
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(kv, "=")
		if k != q.name {
			continue
		}
		if q.str == nil {
			return q.present
		}
		return q.str.match(v)
	}
	return false
}

func (h *headerMatcher) matches(r *http.Request) bool {
	v, ok := headerValue(r, h.name)
	if !ok && h.missingEmpty {
		v, ok = "", true
	}
	if !ok {
		// Envoy (HeaderUtility::matchHeaders): a missing header matches
		// only a present_match that it negates; an inverted string match
		// needs treat_missing_header_as_empty to match a missing header.
		if h.invert {
			return h.present != nil && *h.present
		}
		return h.present != nil && !*h.present
	}
	var m bool
	if h.present != nil {
		m = *h.present
	} else {
		m = h.str.match(v)
	}
	return m != h.invert
}

func headerValue(r *http.Request, name string) (string, bool) {
	switch name {
	case ":authority":
		return r.Host, true
	case ":method":
		return r.Method, true
	case ":path":
		return r.URL.RequestURI(), true
	case ":scheme":
		if r.TLS != nil {
			return "https", true
		}
		return "http", true
	}
	vs, ok := r.Header[name]
	if !ok {
		return "", false
	}
	if len(vs) == 1 {
		return vs[0], true
	}
	return strings.Join(vs, ","), true
}

// PickCluster returns the route's cluster, choosing among weighted
// clusters at random by weight.
func (rt *Route) PickCluster() string {
	name, _ := rt.Pick()
	return name
}

// Pick returns the route's cluster and, for a split, the weighted
// cluster chosen at random by weight.
func (rt *Route) Pick() (string, *WeightedCluster) {
	if rt.Weighted == nil {
		return rt.Cluster, nil
	}
	n := rand.Uint32N(rt.total)
	for i := range rt.Weighted {
		w := &rt.Weighted[i]
		if n < w.Weight {
			return w.Name, w
		}
		n -= w.Weight
	}
	w := &rt.Weighted[len(rt.Weighted)-1]
	return w.Name, w
}

// MatchedPrefix is the route's prefix match, if it matches by prefix.
func (rt *Route) MatchedPrefix() string {
	if rt.regex != nil || rt.path != "" {
		return ""
	}
	return rt.prefix
}
