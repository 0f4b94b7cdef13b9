package rbac

import (
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"
)

// A node is one compiled Permission or Principal. It is a closed sum type
// evaluated by a switch rather than an interface, so the compiler can see
// that a *Request never escapes and evaluation stays off the heap.
type node struct {
	kind kind
	kids []node

	str    strMatcher // url_path, requested_server_name, principal_name
	hasStr bool       // authenticated without principal_name matches any peer
	hdr    *headerMatcher
	meta   *metaMatcher
	re     *regexp.Regexp // uri_template, anchored
	cidr   netip.Prefix
	lo, hi uint32 // destination_port (lo), destination_port_range [lo, hi)
}

type kind uint8

const (
	kAny kind = iota
	kAnd
	kOr
	kNot
	kHeader
	kURLPath
	kURITemplate
	kDestIP
	kDestPort
	kDestPortRange
	kSNI
	kMetadata
	kAuthenticated
	kSourceIP       // connection remote
	kDirectRemoteIP // downstream direct remote
	kRemoteIP       // downstream remote (XFF)
)

func (n *node) matches(r *eval) bool {
	switch n.kind {
	case kAny:
		return true
	case kAnd:
		for i := range n.kids {
			if !n.kids[i].matches(r) {
				return false
			}
		}
		return true
	case kOr:
		return anyMatch(n.kids, r)
	case kNot:
		return !n.kids[0].matches(r)
	case kHeader:
		return n.hdr.matches(r)
	case kURLPath:
		if r.Path == "" {
			return false
		}
		return n.str.match(r.path)
	case kURITemplate:
		return n.re.MatchString(r.path)
	case kDestIP:
		return inPrefix(n.cidr, r.Destination)
	case kDestPort:
		return r.Destination.IsValid() && uint32(r.Destination.Port()) == n.lo
	case kDestPortRange:
		if !r.Destination.IsValid() {
			return false
		}
		p := uint32(r.Destination.Port())
		return n.lo <= p && p < n.hi
	case kSNI:
		return n.str.match(r.SNI)
	case kMetadata:
		return n.meta.matches(r)
	case kAuthenticated:
		return n.authenticated(r)
	case kSourceIP, kDirectRemoteIP:
		return inPrefix(n.cidr, r.Source)
	case kRemoteIP:
		return inPrefix(n.cidr, r.remote())
	}
	return false
}

// authenticated is Envoy's AuthenticatedMatcher: a TLS connection, and the
// principal_name matching a URI SAN, a DNS SAN or else the subject.
func (n *node) authenticated(r *eval) bool {
	if !r.TLS {
		return false
	}
	if !n.hasStr {
		return true
	}
	for _, s := range r.PeerURISANs {
		if n.str.match(s) {
			return true
		}
	}
	for _, s := range r.PeerDNSSANs {
		if n.str.match(s) {
			return true
		}
	}
	return n.str.match(r.PeerSubject)
}

// inPrefix matches an address against a CIDR range of the same family. An
// IPv4-mapped IPv6 address counts as IPv4: Envoy would see the v6 form on a
// dual-stack socket and miss a v4 range, which would let such a client slip
// past a DENY; meshlab closes that gap.
func inPrefix(p netip.Prefix, ap netip.AddrPort) bool {
	if !ap.IsValid() {
		return false
	}
	return p.Contains(ap.Addr().Unmap())
}

// stripQuery is Envoy's PathUtil::removeQueryAndFragment.
func stripQuery(p string) string {
	for i := 0; i < len(p); i++ {
		if p[i] == '?' || p[i] == '#' {
			return p[:i]
		}
	}
	return p
}

// eval is one evaluation: the request and what is worth computing once for
// all of a filter's matchers.
type eval struct {
	*Request
	path string // Path without query and fragment
}

// strMatcher is a compiled envoy.type.matcher.v3.StringMatcher.
type strMatcher struct {
	kind       strKind
	s          string
	ignoreCase bool
	re         *regexp.Regexp // anchored: Envoy's safe_regex is a full match
	glob       *glob          // the same regex as a glob, when it is one
}

type strKind uint8

const (
	sExact strKind = iota
	sPrefix
	sSuffix
	sContains
	sRegex
)

func (m *strMatcher) match(v string) bool {
	switch m.kind {
	case sExact:
		if m.ignoreCase {
			return equalFoldASCII(v, m.s)
		}
		return v == m.s
	case sPrefix:
		if m.ignoreCase {
			return len(v) >= len(m.s) && equalFoldASCII(v[:len(m.s)], m.s)
		}
		return strings.HasPrefix(v, m.s)
	case sSuffix:
		if m.ignoreCase {
			return len(v) >= len(m.s) && equalFoldASCII(v[len(v)-len(m.s):], m.s)
		}
		return strings.HasSuffix(v, m.s)
	case sContains:
		if m.ignoreCase {
			return containsFoldASCII(v, m.s)
		}
		return strings.Contains(v, m.s)
	case sRegex:
		if m.glob != nil && strings.IndexByte(v, '\n') < 0 {
			return m.glob.match(v)
		}
		return m.re.MatchString(v)
	}
	return false
}

// equalFoldASCII is absl::EqualsIgnoreCase: ASCII letters only, unlike
// strings.EqualFold's Unicode folding (which would let "K" match the Kelvin
// sign).
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
}

func containsFoldASCII(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if equalFoldASCII(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

type pseudo uint8

const (
	pseudoNone pseudo = iota
	pseudoAuthority
	pseudoMethod
	pseudoPath
	pseudoScheme
	pseudoOther // a pseudo-header the proxy does not carry (:status, :protocol)
)

// headerMatcher is a compiled envoy.config.route.v3.HeaderMatcher.
type headerMatcher struct {
	key          string // http.Header canonical key
	pseudo       pseudo
	kind         hdrKind
	present      bool // present_match's value
	str          strMatcher
	exact        string // deprecated exact_match: empty matches any value
	lo, hi       int64  // range_match [lo, hi)
	invert       bool
	missingEmpty bool // treat_missing_header_as_empty
}

type hdrKind uint8

const (
	hPresent hdrKind = iota
	hString
	hExactLegacy
	hRange
)

// matches is Envoy's HeaderUtility: present_match compares presence (and
// inverts); every other matcher fails on a missing header unless
// treat_missing_header_as_empty, and inverts only a value it could test.
func (h *headerMatcher) matches(r *eval) bool {
	v, ok := r.header(h)
	if h.kind == hPresent {
		return (ok == h.present) != h.invert
	}
	if !ok {
		if !h.missingEmpty {
			return false
		}
		v = ""
	}
	var m bool
	switch h.kind {
	case hString:
		m = h.str.match(v)
	case hExactLegacy:
		m = h.exact == "" || v == h.exact
	case hRange:
		n, err := strconv.ParseInt(v, 10, 64)
		m = err == nil && h.lo <= n && n < h.hi
	}
	return m != h.invert
}

// metaMatcher is a compiled envoy.type.matcher.v3.MetadataMatcher over the
// stream's dynamic metadata.
type metaMatcher struct {
	filter string
	path   []string
	value  valueMatcher
	invert bool
}

func (m *metaMatcher) matches(r *eval) bool {
	var v *structpb.Value
	st := r.Metadata[m.filter]
	for i, k := range m.path {
		if st == nil {
			v = nil
			break
		}
		v = st.Fields[k]
		if i < len(m.path)-1 {
			st = v.GetStructValue()
		}
	}
	return m.value.match(v) != m.invert
}

// valueMatcher is a compiled envoy.type.matcher.v3.ValueMatcher; a nil value
// is Envoy's unset Value (a path that leads nowhere).
type valueMatcher struct {
	kind    valKind
	str     strMatcher
	b       bool
	exact   float64
	lo, hi  float64
	isRange bool
	oneOf   *valueMatcher
	or      []valueMatcher
}

type valKind uint8

const (
	vNull valKind = iota
	vDouble
	vString
	vBool
	vPresent
	vList
	vOr
)

func (m *valueMatcher) match(v *structpb.Value) bool {
	switch m.kind {
	case vNull:
		_, ok := v.GetKind().(*structpb.Value_NullValue)
		return ok
	case vDouble:
		k, ok := v.GetKind().(*structpb.Value_NumberValue)
		if !ok {
			return false
		}
		if m.isRange {
			return m.lo <= k.NumberValue && k.NumberValue < m.hi
		}
		return k.NumberValue == m.exact
	case vString:
		k, ok := v.GetKind().(*structpb.Value_StringValue)
		return ok && m.str.match(k.StringValue)
	case vBool:
		k, ok := v.GetKind().(*structpb.Value_BoolValue)
		return ok && k.BoolValue == m.b
	case vPresent:
		return m.b && v.GetKind() != nil
	case vList:
		k, ok := v.GetKind().(*structpb.Value_ListValue)
		if !ok {
			return false
		}
		for _, e := range k.ListValue.GetValues() {
			if m.oneOf.match(e) {
				return true
			}
		}
		return false
	case vOr:
		for i := range m.or {
			if m.or[i].match(v) {
				return true
			}
		}
		return false
	}
	return false
}
