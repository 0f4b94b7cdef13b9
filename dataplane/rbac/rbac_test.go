package rbac

import (
	"net/http"
	"net/netip"
	"testing"

	rbacpb "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbachttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	rbacnet "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

const (
	sleepFoo = "spiffe://cluster.local/ns/foo/sa/sleep"
	sleepBar = "spiffe://cluster.local/ns/bar/sa/sleep"
)

func mtls(uri string) Request {
	return Request{
		Authority: "httpbin.foo:8000", Method: "GET", Path: "/ip", Scheme: "http",
		Source:      netip.MustParseAddrPort("10.244.0.12:52784"),
		Destination: netip.MustParseAddrPort("10.244.0.14:8080"),
		TLS:         true, PeerURISANs: []string{uri},
	}
}

func plaintext() Request {
	r := mtls("")
	r.TLS, r.PeerURISANs = false, nil
	return r
}

func with(r Request, f func(*Request)) Request { f(&r); return r }

func jwt(claims map[string]any) map[string]*structpb.Struct {
	p, err := structpb.NewStruct(map[string]any{"payload": claims})
	if err != nil {
		panic(err)
	}
	return map[string]*structpb.Struct{"envoy.filters.http.jwt_authn": p}
}

// TestIstioShapedPolicies runs each AuthorizationPolicy shape of Istio's
// TestAuthz_* suite, as an ALLOW filter with one rule, against a request that
// must match and one that must not.
func TestIstioShapedPolicies(t *testing.T) {
	name := policyName("foo", "p", 0)
	cases := []struct {
		name     string
		perms    []*rbacpb.Permission
		ids      []*rbacpb.Principal
		match    Request
		notMatch Request
	}{
		{"principal", nil, []*rbacpb.Principal{principals("cluster.local/ns/foo/sa/sleep")},
			mtls(sleepFoo), mtls(sleepBar)},
		{"principal needs mTLS", nil, []*rbacpb.Principal{principals("*")},
			mtls(sleepBar), plaintext()},
		{"principal prefix", nil, []*rbacpb.Principal{principals("cluster.local/ns/foo/*")},
			mtls(sleepFoo), mtls(sleepBar)},
		{"principal suffix", nil, []*rbacpb.Principal{principals("*/sa/sleep")},
			mtls(sleepBar), mtls("spiffe://cluster.local/ns/foo/sa/httpbin")},
		{"namespace", nil, []*rbacpb.Principal{namespaces("foo")},
			mtls(sleepFoo), mtls(sleepBar)},
		{"not namespace", nil, []*rbacpb.Principal{idNot(namespaces("foo"))},
			mtls(sleepBar), mtls(sleepFoo)},
		{"namespace does not match a look-alike", nil, []*rbacpb.Principal{namespaces("foo")},
			mtls(sleepFoo), mtls("spiffe://cluster.local/ns/foobar/sa/sleep")},
		{"host, case-insensitive", []*rbacpb.Permission{hosts("HTTPBIN.foo:8000")}, nil,
			mtls(sleepFoo), with(mtls(sleepFoo), func(r *Request) { r.Authority = "other:8000" })},
		{"host suffix", []*rbacpb.Permission{hosts("*.example.com")}, nil,
			with(mtls(sleepFoo), func(r *Request) { r.Authority = "WWW.Example.com" }),
			with(mtls(sleepFoo), func(r *Request) { r.Authority = "example.com" })},
		{"not host", []*rbacpb.Permission{permNot(hosts("deny.example.com"))}, nil,
			mtls(sleepFoo), with(mtls(sleepFoo), func(r *Request) { r.Authority = "Deny.Example.Com" })},
		{"method", []*rbacpb.Permission{methods("GET", "HEAD")}, nil,
			mtls(sleepFoo), with(mtls(sleepFoo), func(r *Request) { r.Method = "POST" })},
		{"method is case-sensitive", []*rbacpb.Permission{methods("GET")}, nil,
			mtls(sleepFoo), with(mtls(sleepFoo), func(r *Request) { r.Method = "get" })},
		{"not method", []*rbacpb.Permission{permNot(methods("DELETE"))}, nil,
			mtls(sleepFoo), with(mtls(sleepFoo), func(r *Request) { r.Method = "DELETE" })},
		{"port", []*rbacpb.Permission{ports(8080)}, nil,
			mtls(sleepFoo), with(mtls(sleepFoo), func(r *Request) { r.Destination = netip.MustParseAddrPort("10.244.0.14:8090") })},
		{"not port", []*rbacpb.Permission{permNot(ports(8090))}, nil,
			mtls(sleepFoo), with(mtls(sleepFoo), func(r *Request) { r.Destination = netip.MustParseAddrPort("10.244.0.14:8090") })},
		{"path exact, query ignored", []*rbacpb.Permission{paths("/ip")}, nil,
			with(mtls(sleepFoo), func(r *Request) { r.Path = "/ip?x=/headers" }),
			with(mtls(sleepFoo), func(r *Request) { r.Path = "/ip/" })},
		{"path prefix", []*rbacpb.Permission{paths("/api/*")}, nil,
			with(mtls(sleepFoo), func(r *Request) { r.Path = "/api/v1/x" }),
			with(mtls(sleepFoo), func(r *Request) { r.Path = "/apiv1" })},
		{"path suffix", []*rbacpb.Permission{paths("*/info")}, nil,
			with(mtls(sleepFoo), func(r *Request) { r.Path = "/a/info#frag" }),
			with(mtls(sleepFoo), func(r *Request) { r.Path = "/a/info/x" })},
		{"path any", []*rbacpb.Permission{paths("*")}, nil,
			mtls(sleepFoo), with(mtls(sleepFoo), func(r *Request) { r.Path = "" })},
		{"path template {*}", []*rbacpb.Permission{paths("/store/{*}/info")}, nil,
			with(mtls(sleepFoo), func(r *Request) { r.Path = "/store/cart/info?q=1" }),
			with(mtls(sleepFoo), func(r *Request) { r.Path = "/store/a/b/info" })},
		{"path template {**}", []*rbacpb.Permission{paths("/store/{**}/info")}, nil,
			with(mtls(sleepFoo), func(r *Request) { r.Path = "/store/a/b/info" }),
			with(mtls(sleepFoo), func(r *Request) { r.Path = "/store/info" })},
		{"path template trailing {**}", []*rbacpb.Permission{paths("/store/{**}")}, nil,
			with(mtls(sleepFoo), func(r *Request) { r.Path = "/store/" }),
			with(mtls(sleepFoo), func(r *Request) { r.Path = "/storefront" })},
		{"not path", []*rbacpb.Permission{permNot(paths("/admin/*"))}, nil,
			mtls(sleepFoo), with(mtls(sleepFoo), func(r *Request) { r.Path = "/admin/x" })},
		{"ipBlocks", nil, []*rbacpb.Principal{ipBlocks("10.244.0.0/16")},
			mtls(sleepFoo), with(mtls(sleepFoo), func(r *Request) { r.Source = netip.MustParseAddrPort("192.168.1.1:1") })},
		{"ipBlocks, IPv4-mapped source", nil, []*rbacpb.Principal{ipBlocks("10.244.0.12/32")},
			with(mtls(sleepFoo), func(r *Request) { r.Source = netip.MustParseAddrPort("[::ffff:10.244.0.12]:1") }),
			with(mtls(sleepFoo), func(r *Request) { r.Source = netip.MustParseAddrPort("[fd00::1]:1") })},
		{"not ipBlocks", nil, []*rbacpb.Principal{idNot(ipBlocks("192.168.0.0/16"))},
			mtls(sleepFoo), with(mtls(sleepFoo), func(r *Request) { r.Source = netip.MustParseAddrPort("192.168.1.1:1") })},
		{"remoteIpBlocks use the forwarded client", nil, []*rbacpb.Principal{remoteIPBlocks("203.0.113.0/24")},
			with(mtls(sleepFoo), func(r *Request) { r.Remote = netip.MustParseAddrPort("203.0.113.9:0") }),
			mtls(sleepFoo)},
		{"requestPrincipals", nil, []*rbacpb.Principal{requestPrincipals("https://issuer.example/alice")},
			with(mtls(sleepFoo), func(r *Request) {
				r.Metadata = jwt(map[string]any{"iss": "https://issuer.example", "sub": "alice"})
			}),
			with(mtls(sleepFoo), func(r *Request) {
				r.Metadata = jwt(map[string]any{"iss": "https://issuer.example", "sub": "bob"})
			})},
		{"requestPrincipals * needs a token", nil, []*rbacpb.Principal{requestPrincipals("*")},
			with(mtls(sleepFoo), func(r *Request) { r.Metadata = jwt(map[string]any{"iss": "i", "sub": "s"}) }),
			mtls(sleepFoo)},
		{"not requestPrincipals (require a token, as a DENY)", nil, []*rbacpb.Principal{idNot(requestPrincipals("*"))},
			mtls(sleepFoo),
			with(mtls(sleepFoo), func(r *Request) { r.Metadata = jwt(map[string]any{"iss": "i", "sub": "s"}) })},
		{"audiences as a list", nil, []*rbacpb.Principal{claim("aud", "bookinfo")},
			with(mtls(sleepFoo), func(r *Request) { r.Metadata = jwt(map[string]any{"aud": []any{"x", "bookinfo"}}) }),
			with(mtls(sleepFoo), func(r *Request) { r.Metadata = jwt(map[string]any{"aud": []any{"x"}}) })},
		{"audiences as a string", nil, []*rbacpb.Principal{claim("aud", "bookinfo")},
			with(mtls(sleepFoo), func(r *Request) { r.Metadata = jwt(map[string]any{"aud": "bookinfo"}) }),
			with(mtls(sleepFoo), func(r *Request) { r.Metadata = jwt(map[string]any{"aud": "other"}) })},
		{"claim groups prefix", nil, []*rbacpb.Principal{claim("groups", "group*")},
			with(mtls(sleepFoo), func(r *Request) { r.Metadata = jwt(map[string]any{"groups": []any{"group1"}}) }),
			with(mtls(sleepFoo), func(r *Request) { r.Metadata = jwt(map[string]any{"groups": 7.0}) })},
		{"when request.headers", nil, []*rbacpb.Principal{requestHeader("X-Token", "admin")},
			with(mtls(sleepFoo), func(r *Request) { r.Headers = http.Header{"X-Token": {"admin"}} }),
			with(mtls(sleepFoo), func(r *Request) { r.Headers = http.Header{"X-Token": {"admin", "guest"}} })},
		{"when request.headers *", nil, []*rbacpb.Principal{requestHeader("x-token", "*")},
			with(mtls(sleepFoo), func(r *Request) { r.Headers = http.Header{"X-Token": {""}} }),
			mtls(sleepFoo)},
		{"when connection.sni", []*rbacpb.Permission{sni("*.foo.svc.cluster.local")}, nil,
			with(mtls(sleepFoo), func(r *Request) { r.SNI = "outbound_.8000_._.httpbin.foo.svc.cluster.local" }),
			mtls(sleepFoo)},
		{"when destination.ip", []*rbacpb.Permission{destIPs("10.244.0.0/24")}, nil,
			mtls(sleepFoo), with(mtls(sleepFoo), func(r *Request) { r.Destination = netip.MustParseAddrPort("10.245.0.14:8080") })},
		{"every field ANDed", []*rbacpb.Permission{methods("GET"), paths("/ip"), ports(8080)},
			[]*rbacpb.Principal{namespaces("foo")},
			mtls(sleepFoo), with(mtls(sleepFoo), func(r *Request) { r.Path = "/headers" })},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, err := Compile(httpFilter(rbacpb.RBAC_ALLOW, map[string]*rbacpb.Policy{name: rule(c.perms, c.ids)}))
			if err != nil {
				t.Fatal(err)
			}
			if d := e.Allowed(&c.match); !d.Allowed || d.Policy != name {
				t.Errorf("matching request: %+v, want allowed by %s", d, name)
			}
			if d := e.Allowed(&c.notMatch); d.Allowed || d.Policy != "" {
				t.Errorf("other request: %+v, want denied by none", d)
			}
		})
	}
}

// TestActions is Envoy's per-action semantics, including empty rule maps.
func TestActions(t *testing.T) {
	denyPlaintext := map[string]*rbacpb.Policy{"ns[foo]-policy[deny-plaintext]-rule[0]": rule(nil, []*rbacpb.Principal{idNot(principals("*"))})}
	fooOnly := map[string]*rbacpb.Policy{"ns[foo]-policy[p]-rule[0]": rule(nil, []*rbacpb.Principal{namespaces("foo")})}
	cases := []struct {
		name        string
		action      rbacpb.RBAC_Action
		policies    map[string]*rbacpb.Policy
		req         Request
		allowed     bool
		policy      string
		logged      bool
		wantDetails string
	}{
		{"ALLOW matched", rbacpb.RBAC_ALLOW, fooOnly, mtls(sleepFoo), true, "ns[foo]-policy[p]-rule[0]", false, ""},
		{"ALLOW unmatched", rbacpb.RBAC_ALLOW, fooOnly, mtls(sleepBar), false, "", false, "rbac_access_denied_matched_policy[none]"},
		{"ALLOW with no policies denies all", rbacpb.RBAC_ALLOW, nil, mtls(sleepFoo), false, "", false, "rbac_access_denied_matched_policy[none]"},
		{"allow-nothing (spec: {})", rbacpb.RBAC_ALLOW, map[string]*rbacpb.Policy{"ns[foo]-policy[none]-rule[0]": matchNever()},
			mtls(sleepFoo), false, "", false, "rbac_access_denied_matched_policy[none]"},
		{"allow-all (rules: [{}])", rbacpb.RBAC_ALLOW, map[string]*rbacpb.Policy{"ns[foo]-policy[all]-rule[0]": rule(nil, nil)},
			plaintext(), true, "ns[foo]-policy[all]-rule[0]", false, ""},
		{"DENY matched", rbacpb.RBAC_DENY, fooOnly, mtls(sleepFoo), false, "ns[foo]-policy[p]-rule[0]", false,
			"rbac_access_denied_matched_policy[ns[foo]-policy[p]-rule[0]]"},
		{"DENY unmatched", rbacpb.RBAC_DENY, fooOnly, mtls(sleepBar), true, "", false, ""},
		{"DENY with no policies allows all", rbacpb.RBAC_DENY, nil, mtls(sleepFoo), true, "", false, ""},
		{"deny plaintext (notPrincipals: [*]), plaintext", rbacpb.RBAC_DENY, denyPlaintext, plaintext(), false,
			"ns[foo]-policy[deny-plaintext]-rule[0]", false, "rbac_access_denied_matched_policy[ns[foo]-policy[deny-plaintext]-rule[0]]"},
		{"deny plaintext (notPrincipals: [*]), mTLS", rbacpb.RBAC_DENY, denyPlaintext, mtls(sleepBar), true, "", false, ""},
		{"LOG matched", rbacpb.RBAC_LOG, fooOnly, mtls(sleepFoo), true, "ns[foo]-policy[p]-rule[0]", true, ""},
		{"LOG unmatched", rbacpb.RBAC_LOG, fooOnly, mtls(sleepBar), true, "", false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, err := Compile(httpFilter(c.action, c.policies))
			if err != nil {
				t.Fatal(err)
			}
			d := e.Allowed(&c.req)
			if d.Allowed != c.allowed || d.Policy != c.policy || d.Logged != c.logged || !d.Enforced {
				t.Errorf("got %+v, want allowed=%v policy=%q logged=%v", d, c.allowed, c.policy, c.logged)
			}
			if !d.Allowed && d.ResponseDetail() != c.wantDetails {
				t.Errorf("detail %q, want %q", d.ResponseDetail(), c.wantDetails)
			}
		})
	}
}

// TestFirstMatchInNameOrder: Envoy reports the first matching policy in
// lexicographic order, whatever order the map arrives in.
func TestFirstMatchInNameOrder(t *testing.T) {
	ps := map[string]*rbacpb.Policy{}
	for _, n := range []string{"ns[foo]-policy[c]-rule[0]", "ns[foo]-policy[a]-rule[1]", "ns[foo]-policy[b]-rule[0]", "ns[foo]-policy[a]-rule[0]"} {
		ps[n] = rule(nil, nil)
	}
	ps["ns[foo]-policy[0]-rule[0]"] = rule([]*rbacpb.Permission{methods("POST")}, nil)
	for i := 0; i < 20; i++ {
		e, err := Compile(httpFilter(rbacpb.RBAC_DENY, ps))
		if err != nil {
			t.Fatal(err)
		}
		r := mtls(sleepFoo)
		if d := e.Allowed(&r); d.Policy != "ns[foo]-policy[a]-rule[0]" {
			t.Fatalf("matched %q, want ns[foo]-policy[a]-rule[0]", d.Policy)
		}
	}
}

// TestShadow is Istio's dry-run: the policy sits in shadow_rules and only
// the shadow result changes.
func TestShadow(t *testing.T) {
	deny := map[string]*rbacpb.Policy{"ns[foo]-policy[deny-path-headers]-rule[0]": rule([]*rbacpb.Permission{paths("/headers")}, nil)}
	cases := []struct {
		name          string
		rules         *rbacpb.RBAC
		path          string
		allowed       bool
		enforced      bool
		shadowAllowed bool
		shadowPolicy  string
	}{
		{"dry-run deny matches", nil, "/headers", true, false, false, "ns[foo]-policy[deny-path-headers]-rule[0]"},
		{"dry-run deny does not match", nil, "/ip", true, false, true, ""},
		{"enforced allow beside a dry-run deny", &rbacpb.RBAC{Action: rbacpb.RBAC_ALLOW,
			Policies: map[string]*rbacpb.Policy{"ns[foo]-policy[all]-rule[0]": rule(nil, nil)}},
			"/headers", true, true, false, "ns[foo]-policy[deny-path-headers]-rule[0]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, err := Compile(&rbachttp.RBAC{Rules: c.rules, ShadowRules: &rbacpb.RBAC{Action: rbacpb.RBAC_DENY, Policies: deny},
				ShadowRulesStatPrefix: "istio_dry_run_deny_"})
			if err != nil {
				t.Fatal(err)
			}
			r := with(mtls(sleepFoo), func(r *Request) { r.Path = c.path })
			d := e.Allowed(&r)
			if d.Allowed != c.allowed || d.Enforced != c.enforced ||
				d.Shadow != (Shadow{Evaluated: true, Allowed: c.shadowAllowed, Policy: c.shadowPolicy}) {
				t.Errorf("got %+v", d)
			}
			md := e.ShadowMetadata(d).AsMap()
			want := map[string]any{"istio_dry_run_deny_shadow_engine_result": map[bool]string{true: "allowed", false: "denied"}[c.shadowAllowed]}
			if c.shadowPolicy != "" {
				want["istio_dry_run_deny_shadow_effective_policy_id"] = c.shadowPolicy
			}
			if len(md) != len(want) || md["istio_dry_run_deny_shadow_engine_result"] != want["istio_dry_run_deny_shadow_engine_result"] ||
				md["istio_dry_run_deny_shadow_effective_policy_id"] != want["istio_dry_run_deny_shadow_effective_policy_id"] {
				t.Errorf("shadow metadata %v, want %v", md, want)
			}
			got := e.Counters("http.inbound_0.0.0.0_80.")
			if got.ShadowDenied != "http.inbound_0.0.0.0_80.rbac.istio_dry_run_deny_shadow_denied" ||
				got.Denied != "http.inbound_0.0.0.0_80.rbac.denied" {
				t.Errorf("counters %+v", got)
			}
		})
	}
}

// chain runs RBAC filters in order, as the proxy's filter chain must: the
// first deny ends the request.
func chain(req *Request, filters ...*Engine) (Decision, int) {
	for i, f := range filters {
		if d := f.Allowed(req); !d.Allowed {
			return d, i
		}
	}
	return Decision{Allowed: true}, len(filters)
}

// TestDenyBeforeAllow: a request both a DENY and an ALLOW policy match is
// denied, by the DENY filter, because Istio orders the filters AUDIT, DENY,
// ALLOW; precedence is the chain's, not one engine's.
func TestDenyBeforeAllow(t *testing.T) {
	audit, err := Compile(httpFilter(rbacpb.RBAC_LOG, map[string]*rbacpb.Policy{"ns[foo]-policy[audit]-rule[0]": rule(nil, nil)}))
	if err != nil {
		t.Fatal(err)
	}
	deny, err := Compile(httpFilter(rbacpb.RBAC_DENY, map[string]*rbacpb.Policy{
		"ns[foo]-policy[deny-delete]-rule[0]": rule([]*rbacpb.Permission{methods("DELETE")}, nil)}))
	if err != nil {
		t.Fatal(err)
	}
	allow, err := Compile(httpFilter(rbacpb.RBAC_ALLOW, map[string]*rbacpb.Policy{
		"ns[foo]-policy[allow-foo]-rule[0]": rule(nil, []*rbacpb.Principal{namespaces("foo")})}))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		req    Request
		denied int // index of the denying filter, 3 = allowed
		policy string
	}{
		{"DELETE from foo: DENY wins", with(mtls(sleepFoo), func(r *Request) { r.Method = "DELETE" }), 1, "ns[foo]-policy[deny-delete]-rule[0]"},
		{"GET from foo: allowed", mtls(sleepFoo), 3, ""},
		{"GET from bar: ALLOW denies", mtls(sleepBar), 2, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, at := chain(&c.req, audit, deny, allow)
			if at != c.denied || d.Policy != c.policy {
				t.Errorf("stopped at filter %d with %+v, want %d %q", at, d, c.denied, c.policy)
			}
		})
	}
}

// TestTCP: the network filter sees no HTTP fields, so an HTTP-only rule never
// matches: Istio relies on this for its TCP rules.
func TestTCP(t *testing.T) {
	e, err := CompileNetwork(&rbacnet.RBAC{StatPrefix: "tcp.", Rules: &rbacpb.RBAC{Action: rbacpb.RBAC_ALLOW,
		Policies: map[string]*rbacpb.Policy{
			"ns[foo]-policy[tcp]-rule[0]":  rule([]*rbacpb.Permission{ports(9000)}, []*rbacpb.Principal{namespaces("foo")}),
			"ns[foo]-policy[http]-rule[0]": rule([]*rbacpb.Permission{methods("*")}, nil),
		}}})
	if err != nil {
		t.Fatal(err)
	}
	conn := func(uri string, port uint16) Request {
		return Request{Source: netip.MustParseAddrPort("10.244.0.12:5000"),
			Destination: netip.AddrPortFrom(netip.MustParseAddr("10.244.0.14"), port), TLS: true, PeerURISANs: []string{uri}}
	}
	for _, c := range []struct {
		name    string
		req     Request
		allowed bool
	}{
		{"foo to 9000", conn(sleepFoo, 9000), true},
		{"foo to 9001", conn(sleepFoo, 9001), false},
		{"bar to 9000", conn(sleepBar, 9000), false},
	} {
		if d := e.Allowed(&c.req); d.Allowed != c.allowed {
			t.Errorf("%s: %+v, want allowed=%v", c.name, d, c.allowed)
		}
	}
	if !e.Network || e.MetadataNamespace() != "envoy.filters.network.rbac" || e.Counters("").Allowed != "tcp.rbac.allowed" {
		t.Errorf("network engine %+v counters %+v", e, e.Counters(""))
	}
}
