package config

import (
	"fmt"
	"maps"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
	networking "istio.io/api/networking/v1alpha3"
)

// Limits on regexes, as Istio's validation and the proxies apply them. A
// regex any proxy would reject must be refused here: a NACKed route
// configuration stops every later update of that proxy's routes.
const (
	// maxRegexLen is Istio's validateStringRegexp limit: istiod cannot
	// measure an RE2 program, so it bounds the source, which is always
	// smaller than the program.
	maxRegexLen = 1024
	// maxRegexProgram is the re2.max_program_size.error_level Istio's
	// bootstrap gives Envoy (Envoy's own default is 100). Go's regexp is a
	// port of RE2, and its compiled program is counted the same way.
	maxRegexProgram = 32768
)

// checkRegex says why a proxy would refuse re, or "" when it would not.
// The meshlab proxy compiles with Go's regexp, anchored as Envoy's
// full-match semantics require, so that is compiled too.
func checkRegex(re string) string {
	if re == "" {
		return "regex must not be empty"
	}
	if len(re) > maxRegexLen {
		return fmt.Sprintf("regex is too large: %d bytes, at most %d are allowed", len(re), maxRegexLen)
	}
	parsed, err := syntax.Parse(re, syntax.Perl)
	if err != nil {
		return fmt.Sprintf("invalid regex %q: %v; proxies use RE2 syntax (https://github.com/google/re2/wiki/Syntax)", re, err)
	}
	prog, err := syntax.Compile(parsed.Simplify())
	if err != nil {
		return fmt.Sprintf("invalid regex %q: %v", re, err)
	}
	if n := len(prog.Inst); n > maxRegexProgram {
		return fmt.Sprintf("regex %q is too complex: its program has %d instructions, proxies accept at most %d (re2.max_program_size)", re, n, maxRegexProgram)
	}
	if _, err := regexp.Compile("^(?:" + re + ")$"); err != nil {
		return fmt.Sprintf("invalid regex %q: %v", re, err)
	}
	return ""
}

// key writes a map key into a field path, quoted when it holds anything
// that would make the path unreadable (control characters, brackets).
func key(path, k string) string {
	for _, r := range k {
		if r < 0x21 || r > 0x7e || r == '[' || r == ']' {
			return path + "[" + strconv.Quote(k) + "]"
		}
	}
	return path + "[" + k + "]"
}

// stringMatch checks an Istio StringMatch the translation turns into an
// Envoy StringMatcher or RegexMatcher: a prefix must not be empty (Envoy's
// min_len), a regex must compile in every proxy. Istio's regex `*` means
// "present" and is not a regex.
func (v *validator) stringMatch(path string, sm *networking.StringMatch, presentOK bool) {
	switch m := sm.GetMatchType().(type) {
	case *networking.StringMatch_Prefix:
		if m.Prefix == "" {
			v.fail(path+".prefix", "must not be empty")
		}
	case *networking.StringMatch_Regex:
		if presentOK && m.Regex == "*" {
			return
		}
		if msg := checkRegex(m.Regex); msg != "" {
			v.fail(path+".regex", "%s", msg)
		}
	}
}

// headerName checks a header a route matches or changes: an HTTP token
// (RFC 9110 field-name), as Envoy and Go's net/http accept it. Pseudo
// headers are allowed where Istio allows them (pseudo is true).
func (v *validator) headerName(path, name string, pseudo bool) {
	switch {
	case name == "":
		v.fail(path, "header name must not be empty")
	case pseudo && strings.HasPrefix(name, ":") && httpguts.ValidHeaderFieldName(name[1:]):
	case !httpguts.ValidHeaderFieldName(name):
		v.fail(path, "invalid header name %q: must be an HTTP token (letters, digits and !#$%%&'*+-.^_`|~)", name)
	}
}

func (v *validator) headerValue(path, value string) {
	if !httpguts.ValidHeaderFieldValue(value) {
		v.fail(path, "invalid header value %q: control characters (CR, LF, NUL...) are not allowed", value)
		return
	}
	if msg := checkHeaderFormat(value); msg != "" {
		v.fail(path, "invalid header value %q: %s", value, msg)
	}
}

// checkHeaderFormat is Istio's validateHeaderValue: Envoy reads %...% in a
// header value it adds as a command, so a lone % must be written %%.
func checkHeaderFormat(value string) string {
	for i := 0; i < len(value); i++ {
		if value[i] != '%' {
			continue
		}
		if i+1 < len(value) && value[i+1] == '%' {
			i++
			continue
		}
		end := strings.IndexByte(value[i+1:], '%')
		if end < 0 {
			return "a % must start a %COMMAND% or be escaped as %%"
		}
		i += end + 1
	}
	return ""
}

func (v *validator) headers(path string, h *networking.Headers) {
	if h == nil {
		return
	}
	for _, op := range []struct {
		name string
		ops  *networking.Headers_HeaderOperations
	}{{"request", h.GetRequest()}, {"response", h.GetResponse()}} {
		p := path + "." + op.name
		for _, set := range []struct {
			name string
			m    map[string]string
		}{{"set", op.ops.GetSet()}, {"add", op.ops.GetAdd()}} {
			for _, k := range sortedMapKeys(set.m) {
				kp := key(p+"."+set.name, k)
				// :authority is how Istio rewrites the host; other pseudo
				// headers are dropped by the translation, as Istio does.
				v.headerName(kp, k, true)
				v.headerValue(kp, set.m[k])
			}
		}
		for i, k := range op.ops.GetRemove() {
			v.headerName(fmt.Sprintf("%s.remove[%d]", p, i), k, true)
		}
	}
}

func (v *validator) httpRoute(path string, h *networking.HTTPRoute) {
	for j, m := range h.GetMatch() {
		mp := fmt.Sprintf("%s.match[%d]", path, j)
		v.stringMatch(mp+".uri", m.GetUri(), false)
		v.stringMatch(mp+".scheme", m.GetScheme(), true)
		v.stringMatch(mp+".method", m.GetMethod(), true)
		v.stringMatch(mp+".authority", m.GetAuthority(), true)
		for _, hm := range []struct {
			name string
			m    map[string]*networking.StringMatch
		}{{"headers", m.GetHeaders()}, {"withoutHeaders", m.GetWithoutHeaders()}} {
			for _, k := range sortedMapKeys(hm.m) {
				kp := key(mp+"."+hm.name, k)
				v.headerName(kp, k, true)
				v.stringMatch(kp, hm.m[k], true)
			}
		}
		for _, k := range sortedMapKeys(m.GetQueryParams()) {
			kp := key(mp+".queryParams", k)
			if k == "" {
				v.fail(kp, "query parameter name must not be empty")
			}
			v.stringMatch(kp, m.GetQueryParams()[k], true)
		}
	}
	v.headers(path+".headers", h.GetHeaders())
	for j, d := range h.GetRoute() {
		v.headers(fmt.Sprintf("%s.route[%d].headers", path, j), d.GetHeaders())
	}
	if rw := h.GetRewrite().GetUriRegexRewrite(); rw != nil {
		if msg := checkRegex(rw.GetMatch()); msg != "" {
			v.fail(path+".rewrite.uriRegexRewrite.match", "%s", msg)
		}
	}
	if c := h.GetCorsPolicy(); c != nil {
		for j, o := range c.GetAllowOrigins() {
			v.stringMatch(fmt.Sprintf("%s.corsPolicy.allowOrigins[%d]", path, j), o, false)
		}
		for _, f := range []struct {
			name  string
			names []string
		}{{"allowHeaders", c.GetAllowHeaders()}, {"exposeHeaders", c.GetExposeHeaders()}} {
			for j, n := range f.names {
				if n != "*" {
					v.headerName(fmt.Sprintf("%s.corsPolicy.%s[%d]", path, f.name, j), n, false)
				}
			}
		}
		for j, m := range c.GetAllowMethods() {
			if m != "*" && !validMethod(m) {
				v.fail(fmt.Sprintf("%s.corsPolicy.allowMethods[%d]", path, j), "invalid method %q: must be an HTTP token", m)
			}
		}
	}
	if ab := h.GetFault().GetAbort(); ab != nil {
		if st, ok := ab.GetErrorType().(*networking.HTTPFaultInjection_Abort_HttpStatus); ok && (st.HttpStatus < 200 || st.HttpStatus > 599) {
			v.fail(path+".fault.abort.httpStatus", "must be an HTTP status between 200 and 599, got %d", st.HttpStatus)
		}
	}
	if dr := h.GetDirectResponse(); dr != nil && (dr.GetStatus() < 200 || dr.GetStatus() > 599) {
		v.fail(path+".directResponse.status", "must be an HTTP status between 200 and 599, got %d", dr.GetStatus())
	}
}

func validMethod(m string) bool {
	return m != "" && strings.IndexFunc(m, func(r rune) bool { return !httpguts.IsTokenRune(r) }) < 0
}

func sortedMapKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// ringHashMax is Envoy's upper bound on a ring hash's minimum_ring_size.
const ringHashMax = 8 << 20

// trafficPolicy is Istio's validateTrafficPolicy where the translation
// would otherwise hand proxies what they refuse (Envoy's outlier
// detection takes percentages up to 100, ring sizes up to 8M) or a
// negative count cast to a huge one.
func (v *validator) trafficPolicy(path string, tp *networking.TrafficPolicy) {
	if tp == nil {
		return
	}
	nonNegative := func(field string, n int32) {
		if n < 0 {
			v.fail(path+"."+field, "must not be negative, got %d", n)
		}
	}
	percent := func(field string, n int32) {
		if n < 0 || n > 100 {
			v.fail(path+"."+field, "must be a percentage between 0 and 100, got %d", n)
		}
	}
	if od := tp.GetOutlierDetection(); od != nil {
		nonNegative("outlierDetection.consecutiveErrors", od.GetConsecutiveErrors()) //nolint:staticcheck // Istio still honours it
		percent("outlierDetection.maxEjectionPercent", od.GetMaxEjectionPercent())
		percent("outlierDetection.minHealthPercent", od.GetMinHealthPercent())
	}
	if cp := tp.GetConnectionPool(); cp != nil {
		h := cp.GetHttp()
		nonNegative("connectionPool.http.http1MaxPendingRequests", h.GetHttp1MaxPendingRequests())
		nonNegative("connectionPool.http.http2MaxRequests", h.GetHttp2MaxRequests())
		nonNegative("connectionPool.http.maxRequestsPerConnection", h.GetMaxRequestsPerConnection())
		nonNegative("connectionPool.http.maxRetries", h.GetMaxRetries())
		nonNegative("connectionPool.http.maxConcurrentStreams", h.GetMaxConcurrentStreams())
		nonNegative("connectionPool.tcp.maxConnections", cp.GetTcp().GetMaxConnections())
	}
	if ch := tp.GetLoadBalancer().GetConsistentHash(); ch != nil {
		if n := ch.GetRingHash().GetMinimumRingSize(); n > ringHashMax {
			v.fail(path+".loadBalancer.consistentHash.ringHash.minimumRingSize", "must be at most %d, got %d", ringHashMax, n)
		}
		if n := ch.GetMinimumRingSize(); n > ringHashMax { //nolint:staticcheck // Istio still honours it
			v.fail(path+".loadBalancer.consistentHash.minimumRingSize", "must be at most %d, got %d", ringHashMax, n)
		}
	}
	v.clientTLS(path+".tls", tp.GetTls())
	for i, pl := range tp.GetPortLevelSettings() {
		pp := fmt.Sprintf("%s.portLevelSettings[%d]", path, i)
		if pl.GetPort() == nil {
			// Istio's validatePortTrafficPolicies: a port-level entry must name its port.
			v.fail(pp+".port", "required: a port-level traffic policy must have a port")
		}
		v.trafficPolicy(pp, &networking.TrafficPolicy{
			LoadBalancer: pl.GetLoadBalancer(), ConnectionPool: pl.GetConnectionPool(), OutlierDetection: pl.GetOutlierDetection(),
			Tls: pl.GetTls(),
		})
	}
}
