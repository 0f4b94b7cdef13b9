package proxy

import (
	"net/http"
	"net/http/httptest"
	"testing"

	rbacpb "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/meshlab/meshlab/dataplane/rbac"
)

// TestAuthorizeNormalisesPath: a DENY on GET /headers, as Istio's builder
// emits it, also denies the spellings a server reads as /headers (an
// encoded letter, dot segments, doubled slashes), as Envoy's path
// normalisation before RBAC does; other paths pass.
func TestAuthorizeNormalisesPath(t *testing.T) {
	e, err := rbac.CompileRules(&rbacpb.RBAC{Action: rbacpb.RBAC_DENY, Policies: map[string]*rbacpb.Policy{
		"ns[foo]-policy[deny-headers]-rule[0]": {
			Permissions: []*rbacpb.Permission{{Rule: &rbacpb.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{
				Rule: &matcherv3.PathMatcher_Path{Path: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "/headers"}}}}}}},
			Principals: []*rbacpb.Principal{{Identifier: &rbacpb.Principal_Any{Any: true}}},
		}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		target string
		denied bool
	}{
		{"/headers", true},
		{"/headers?x=1", true},
		{"/%68eaders", true},
		{"/./headers", true},
		{"/ip/../headers", true},
		{"//headers", true},
		{"/ip", false},
		{"/headers/x", false},
	} {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, "http://httpbin.foo:8000"+tt.target, nil)
		ex := &exchange{ResponseWriter: rec, conn: &connInfo{}}
		if allowed := New(Config{}).authorize(ex, r, []httpAuthz{{rbac: e}}, 0); allowed == tt.denied {
			t.Errorf("GET %s: allowed %v, want denied %v", tt.target, allowed, tt.denied)
		}
		if tt.denied && (rec.Code != http.StatusForbidden || rec.Body.String() != "RBAC: access denied") {
			t.Errorf("GET %s: %d %q, want Envoy's 403 RBAC: access denied", tt.target, rec.Code, rec.Body.String())
		}
	}
}
