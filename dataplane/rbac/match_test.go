package rbac

import (
	"net/http"
	"net/http/httptest"
	"testing"

	rbacpb "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routepb "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherpb "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// evalPrincipal compiles one principal into an ALLOW filter and reports
// whether req matches it.
func evalPrincipal(t *testing.T, id *rbacpb.Principal, req Request) bool {
	t.Helper()
	e, err := Compile(httpFilter(rbacpb.RBAC_ALLOW, map[string]*rbacpb.Policy{"p": {
		Permissions: []*rbacpb.Permission{permAny()}, Principals: []*rbacpb.Principal{id}}}))
	if err != nil {
		t.Fatal(err)
	}
	return e.Allowed(&req).Allowed
}

func header(h *routepb.HeaderMatcher) *rbacpb.Principal {
	return &rbacpb.Principal{Identifier: &rbacpb.Principal_Header{Header: h}}
}

// TestHeaderMatcher is Envoy's HeaderUtility semantics, each matcher kind
// both matching and not.
func TestHeaderMatcher(t *testing.T) {
	sm := func(m *matcherpb.StringMatcher) *routepb.HeaderMatcher_StringMatch {
		return &routepb.HeaderMatcher_StringMatch{StringMatch: m}
	}
	hdr := func(vs ...string) Request {
		r := mtls(sleepFoo)
		if vs != nil {
			r.Headers = http.Header{"X-Env": vs}
		}
		return r
	}
	cases := []struct {
		name string
		h    *routepb.HeaderMatcher
		req  Request
		want bool
	}{
		{"exact", &routepb.HeaderMatcher{Name: "x-env", HeaderMatchSpecifier: sm(exact("prod"))}, hdr("prod"), true},
		{"exact other", &routepb.HeaderMatcher{Name: "x-env", HeaderMatchSpecifier: sm(exact("prod"))}, hdr("dev"), false},
		{"name is case-insensitive", &routepb.HeaderMatcher{Name: "X-ENV", HeaderMatchSpecifier: sm(exact("prod"))}, hdr("prod"), true},
		{"repeated header joined with ,", &routepb.HeaderMatcher{Name: "x-env", HeaderMatchSpecifier: sm(exact("a,b"))}, hdr("a", "b"), true},
		{"contains", &routepb.HeaderMatcher{Name: "x-env", HeaderMatchSpecifier: sm(&matcherpb.StringMatcher{
			MatchPattern: &matcherpb.StringMatcher_Contains{Contains: "ROD"}, IgnoreCase: true})}, hdr("prod"), true},
		{"contains other", &routepb.HeaderMatcher{Name: "x-env", HeaderMatchSpecifier: sm(&matcherpb.StringMatcher{
			MatchPattern: &matcherpb.StringMatcher_Contains{Contains: "ROD"}})}, hdr("prod"), false},
		{"ignore_case is ASCII only", &routepb.HeaderMatcher{Name: "x-env", HeaderMatchSpecifier: sm(&matcherpb.StringMatcher{
			MatchPattern: &matcherpb.StringMatcher_Exact{Exact: "k"}, IgnoreCase: true})}, hdr("\u212a"), false},
		{"regex is a full match", &routepb.HeaderMatcher{Name: "x-env", HeaderMatchSpecifier: sm(regex("pro"))}, hdr("prod"), false},
		{"regex", &routepb.HeaderMatcher{Name: "x-env", HeaderMatchSpecifier: sm(regex("pro."))}, hdr("prod"), true},
		{"missing header never matches a value", &routepb.HeaderMatcher{Name: "x-env", HeaderMatchSpecifier: sm(regex(".*"))}, hdr(), false},
		{"missing header is not inverted", &routepb.HeaderMatcher{Name: "x-env", InvertMatch: true, HeaderMatchSpecifier: sm(exact("prod"))}, hdr(), false},
		{"invert", &routepb.HeaderMatcher{Name: "x-env", InvertMatch: true, HeaderMatchSpecifier: sm(exact("prod"))}, hdr("dev"), true},
		{"treat missing as empty", &routepb.HeaderMatcher{Name: "x-env", TreatMissingHeaderAsEmpty: true,
			HeaderMatchSpecifier: sm(exact(""))}, hdr(), true},
		{"present", &routepb.HeaderMatcher{Name: "x-env", HeaderMatchSpecifier: &routepb.HeaderMatcher_PresentMatch{PresentMatch: true}}, hdr(""), true},
		{"present, absent", &routepb.HeaderMatcher{Name: "x-env", HeaderMatchSpecifier: &routepb.HeaderMatcher_PresentMatch{PresentMatch: true}}, hdr(), false},
		{"present false matches absence", &routepb.HeaderMatcher{Name: "x-env", HeaderMatchSpecifier: &routepb.HeaderMatcher_PresentMatch{}}, hdr(), true},
		{"present inverted", &routepb.HeaderMatcher{Name: "x-env", InvertMatch: true,
			HeaderMatchSpecifier: &routepb.HeaderMatcher_PresentMatch{PresentMatch: true}}, hdr(), true},
		{"no specifier is presence", &routepb.HeaderMatcher{Name: "x-env"}, hdr("x"), true},
		{"no specifier, absent", &routepb.HeaderMatcher{Name: "x-env"}, hdr(), false},
		{"legacy exact_match", &routepb.HeaderMatcher{Name: ":method", HeaderMatchSpecifier: &routepb.HeaderMatcher_ExactMatch{ExactMatch: "GET"}}, hdr(), true},         //nolint:staticcheck // the legacy fields older control planes emit
		{"legacy exact_match other", &routepb.HeaderMatcher{Name: ":method", HeaderMatchSpecifier: &routepb.HeaderMatcher_ExactMatch{ExactMatch: "POST"}}, hdr(), false}, //nolint:staticcheck // the legacy fields older control planes emit
		{"legacy prefix_match", &routepb.HeaderMatcher{Name: ":path", HeaderMatchSpecifier: &routepb.HeaderMatcher_PrefixMatch{PrefixMatch: "/i"}}, hdr(), true},         //nolint:staticcheck // the legacy fields older control planes emit
		{"legacy suffix_match", &routepb.HeaderMatcher{Name: ":authority", HeaderMatchSpecifier: &routepb.HeaderMatcher_SuffixMatch{SuffixMatch: ":8000"}}, hdr(), true}, //nolint:staticcheck // the legacy fields older control planes emit
		{"legacy safe_regex_match", &routepb.HeaderMatcher{Name: ":scheme", HeaderMatchSpecifier: &routepb.HeaderMatcher_SafeRegexMatch{
			SafeRegexMatch: &matcherpb.RegexMatcher{Regex: "https?"}}}, hdr(), true}, //nolint:staticcheck // the legacy fields older control planes emit
		{":path header sees the query", &routepb.HeaderMatcher{Name: ":path", HeaderMatchSpecifier: sm(exact("/ip?a=1"))},
			with(hdr(), func(r *Request) { r.Path = "/ip?a=1" }), true},
		{"range", &routepb.HeaderMatcher{Name: "x-env", HeaderMatchSpecifier: &routepb.HeaderMatcher_RangeMatch{
			RangeMatch: &typev3.Int64Range{Start: 10, End: 20}}}, hdr("19"), true},
		{"range end is open", &routepb.HeaderMatcher{Name: "x-env", HeaderMatchSpecifier: &routepb.HeaderMatcher_RangeMatch{
			RangeMatch: &typev3.Int64Range{Start: 10, End: 20}}}, hdr("20"), false},
		{"host is :authority, as in Envoy's header map", &routepb.HeaderMatcher{Name: "Host", HeaderMatchSpecifier: sm(exact("httpbin.foo:8000"))}, hdr(), true},
		{"unknown pseudo-header is absent", &routepb.HeaderMatcher{Name: ":status"}, hdr(), false},
		{"TCP has no :method", &routepb.HeaderMatcher{Name: ":method", HeaderMatchSpecifier: sm(regex(".*"))}, Request{}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := evalPrincipal(t, header(c.h), c.req); got != c.want {
				t.Errorf("matched %v, want %v", got, c.want)
			}
		})
	}
}

// TestMetadataMatcher covers the value matchers over dynamic metadata.
func TestMetadataMatcher(t *testing.T) {
	md := func(filter string, path []string, v *matcherpb.ValueMatcher, invert bool) *rbacpb.Principal {
		m := &matcherpb.MetadataMatcher{Filter: filter, Value: v, Invert: invert}
		for _, k := range path {
			m.Path = append(m.Path, &matcherpb.MetadataMatcher_PathSegment{Segment: &matcherpb.MetadataMatcher_PathSegment_Key{Key: k}})
		}
		return &rbacpb.Principal{Identifier: &rbacpb.Principal_Metadata{Metadata: m}} //nolint:staticcheck // the field Istio 1.24 emits
	}
	st, err := structpb.NewStruct(map[string]any{"c": "v", "n": 3.0, "b": true, "z": nil, "nested": map[string]any{"k": []any{"a", "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	req := with(mtls(sleepFoo), func(r *Request) { r.Metadata = map[string]*structpb.Struct{"envoy.filters.a.b": st} })
	vm := func(p any) *matcherpb.ValueMatcher {
		switch p := p.(type) {
		case *matcherpb.ValueMatcher_StringMatch:
			return &matcherpb.ValueMatcher{MatchPattern: p}
		case *matcherpb.ValueMatcher_DoubleMatch:
			return &matcherpb.ValueMatcher{MatchPattern: p}
		case *matcherpb.ValueMatcher_BoolMatch:
			return &matcherpb.ValueMatcher{MatchPattern: p}
		case *matcherpb.ValueMatcher_PresentMatch:
			return &matcherpb.ValueMatcher{MatchPattern: p}
		case *matcherpb.ValueMatcher_NullMatch_:
			return &matcherpb.ValueMatcher{MatchPattern: p}
		case *matcherpb.ValueMatcher_ListMatch:
			return &matcherpb.ValueMatcher{MatchPattern: p}
		}
		panic("value matcher")
	}
	dbl := func(x float64) *matcherpb.ValueMatcher_DoubleMatch {
		return &matcherpb.ValueMatcher_DoubleMatch{DoubleMatch: &matcherpb.DoubleMatcher{MatchPattern: &matcherpb.DoubleMatcher_Exact{Exact: x}}}
	}
	list := func(s string) *matcherpb.ValueMatcher_ListMatch {
		return &matcherpb.ValueMatcher_ListMatch{ListMatch: &matcherpb.ListMatcher{MatchPattern: &matcherpb.ListMatcher_OneOf{OneOf: strValue(exact(s))}}}
	}
	const f = "envoy.filters.a.b"
	cases := []struct {
		name string
		id   *rbacpb.Principal
		want bool
	}{
		{"string", md(f, []string{"c"}, strValue(exact("v")), false), true},
		{"string other", md(f, []string{"c"}, strValue(exact("w")), false), false},
		{"string on a number", md(f, []string{"n"}, strValue(regex(".*")), false), false},
		{"invert", md(f, []string{"c"}, strValue(exact("w")), true), true},
		{"missing key, inverted (Istio's not-values)", md(f, []string{"nope"}, strValue(exact("v")), true), true},
		{"other filter", md("envoy.filters.x", []string{"c"}, strValue(exact("v")), false), false},
		{"double", md(f, []string{"n"}, vm(dbl(3)), false), true},
		{"double other", md(f, []string{"n"}, vm(dbl(4)), false), false},
		{"double range", md(f, []string{"n"}, vm(&matcherpb.ValueMatcher_DoubleMatch{DoubleMatch: &matcherpb.DoubleMatcher{
			MatchPattern: &matcherpb.DoubleMatcher_Range{Range: &typev3.DoubleRange{Start: 3, End: 4}}}}), false), true},
		{"bool", md(f, []string{"b"}, vm(&matcherpb.ValueMatcher_BoolMatch{BoolMatch: true}), false), true},
		{"bool other", md(f, []string{"b"}, vm(&matcherpb.ValueMatcher_BoolMatch{BoolMatch: false}), false), false},
		{"present", md(f, []string{"c"}, vm(&matcherpb.ValueMatcher_PresentMatch{PresentMatch: true}), false), true},
		{"present, missing", md(f, []string{"nope"}, vm(&matcherpb.ValueMatcher_PresentMatch{PresentMatch: true}), false), false},
		{"null", md(f, []string{"z"}, vm(&matcherpb.ValueMatcher_NullMatch_{NullMatch: &matcherpb.ValueMatcher_NullMatch{}}), false), true},
		{"null, missing is not null", md(f, []string{"nope"}, vm(&matcherpb.ValueMatcher_NullMatch_{NullMatch: &matcherpb.ValueMatcher_NullMatch{}}), false), false},
		{"nested list", md(f, []string{"nested", "k"}, vm(list("b")), false), true},
		{"nested list other", md(f, []string{"nested", "k"}, vm(list("c")), false), false},
		{"path through a non-struct", md(f, []string{"c", "k"}, vm(&matcherpb.ValueMatcher_PresentMatch{PresentMatch: true}), false), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := evalPrincipal(t, c.id, req); got != c.want {
				t.Errorf("matched %v, want %v", got, c.want)
			}
		})
	}
}

// TestAuthenticated is Envoy's order: URI SANs, DNS SANs, then the subject;
// and no principal_name means any TLS peer.
func TestAuthenticated(t *testing.T) {
	anyPeer := &rbacpb.Principal{Identifier: &rbacpb.Principal_Authenticated_{Authenticated: &rbacpb.Principal_Authenticated{}}}
	cases := []struct {
		name string
		id   *rbacpb.Principal
		req  Request
		want bool
	}{
		{"any TLS peer", anyPeer, mtls(sleepFoo), true},
		{"any peer needs TLS", anyPeer, plaintext(), false},
		{"second URI SAN", authenticated(exact(sleepBar)), with(mtls(sleepFoo), func(r *Request) { r.PeerURISANs = append(r.PeerURISANs, sleepBar) }), true},
		{"DNS SAN", authenticated(exact("httpbin.foo")), with(mtls(sleepFoo), func(r *Request) { r.PeerDNSSANs = []string{"httpbin.foo"} }), true},
		{"subject", authenticated(exact("CN=legacy")), with(mtls(sleepFoo), func(r *Request) { r.PeerSubject = "CN=legacy" }), true},
		{"TLS without a client certificate", authenticated(regex(".+")), with(plaintext(), func(r *Request) { r.TLS = true }), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := evalPrincipal(t, c.id, c.req); got != c.want {
				t.Errorf("matched %v, want %v", got, c.want)
			}
		})
	}
}

// TestURITemplate is Envoy's uri_template grammar and matching.
func TestURITemplate(t *testing.T) {
	cases := []struct {
		tpl     string
		err     bool
		match   []string
		nomatch []string
	}{
		{tpl: "/store/*/info", match: []string{"/store/cart/info", "/store/a%20b/info"},
			nomatch: []string{"/store/info", "/store/a/b/info", "/store//info", "/store/cart/info/"}},
		{tpl: "/store/**/info", match: []string{"/store/a/b/info", "/store//info"}, nomatch: []string{"/store/info"}},
		{tpl: "/**", match: []string{"/", "/a/b/c"}, nomatch: []string{""}},
		{tpl: "/*", match: []string{"/a"}, nomatch: []string{"/", "/a/b"}},
		{tpl: "/a/", match: []string{"/a/"}, nomatch: []string{"/a"}},
		{tpl: "/*.txt", match: []string{"/notes.txt"}, nomatch: []string{"/a/notes.txt", "/notesXtxt"}},
		{tpl: "/{id}/x", match: []string{"/42/x"}, nomatch: []string{"/4/2/x"}},
		{tpl: "/{rest=**}", match: []string{"/a/b"}},
		{tpl: "/{p=a/*}/z", match: []string{"/a/b/z"}, nomatch: []string{"/a/z"}},
		{tpl: "/a+b.c", match: []string{"/a+b.c"}, nomatch: []string{"/aab.c", "/a+bxc"}},
		{tpl: "/**/*", err: true},
		{tpl: "/**/{x}", err: true},
		{tpl: "a/b", err: true},
		{tpl: "/a//b", err: true},
		{tpl: "/a b", err: true},
		{tpl: "/a/*b/c", err: true},
		{tpl: "/{1x}", err: true},
		{tpl: "/{a}/{a}", err: true},
		{tpl: "/{a}/{b}/{c}/{d}/{e}/{f}", err: true},
		{tpl: "/{abcdefghijklmnopq}", err: true},
		{tpl: "/{a=}", err: true},
		{tpl: "/{a", err: true},
	}
	for _, c := range cases {
		t.Run(c.tpl, func(t *testing.T) {
			re, err := compileURITemplate(c.tpl)
			if (err != nil) != c.err {
				t.Fatalf("error %v, want error %v", err, c.err)
			}
			for _, p := range c.match {
				if !re.MatchString(p) {
					t.Errorf("%q does not match %s", p, re)
				}
			}
			for _, p := range c.nomatch {
				if re.MatchString(p) {
					t.Errorf("%q matches %s", p, re)
				}
			}
		})
	}
}

func TestResponseDetail(t *testing.T) {
	for in, want := range map[string]string{
		"":                          "rbac_access_denied_matched_policy[none]",
		"ns[foo]-policy[p]-rule[0]": "rbac_access_denied_matched_policy[ns[foo]-policy[p]-rule[0]]",
		"a b\tc":                    "rbac_access_denied_matched_policy[a_b_c]",
	} {
		if got := ResponseDetail(in); got != want {
			t.Errorf("ResponseDetail(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWriteDenied(t *testing.T) {
	w := httptest.NewRecorder()
	WriteDenied(w)
	if w.Code != 403 || w.Body.String() != "RBAC: access denied" || w.Header().Get("Content-Length") != "19" ||
		w.Header().Get("Content-Type") != "text/plain" {
		t.Errorf("got %d %q %v", w.Code, w.Body.String(), w.Header())
	}
}
