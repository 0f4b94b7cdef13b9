package xds

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	rbacpb "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbachttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	rbactcp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	security "istio.io/api/security/v1beta1"

	"github.com/meshlab/meshlab/controlplane/config"
)

func loadPolicies(t *testing.T, path string) []config.Resource {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := config.Parse(path, b)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// validateDeep runs Validate on a message and on every message packed in
// an Any below it (Validate stops at Any), as Envoy checks each typed
// config it loads.
func validateDeep(t *testing.T, what string, m proto.Message) {
	t.Helper()
	if v, ok := m.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			t.Errorf("%s: %T: %v", what, m, err)
		}
	} else if !strings.HasPrefix(string(m.ProtoReflect().Descriptor().FullName()), "istio.") {
		// Istio's own filter configs (istio.alpn) carry no PGV rules.
		t.Errorf("%s: %T has no Validate", what, m)
	}
	var walk func(protoreflect.Message)
	walk = func(r protoreflect.Message) {
		if a, ok := r.Interface().(*anypb.Any); ok {
			inner, err := a.UnmarshalNew()
			if err != nil {
				t.Errorf("%s: unpack %s: %v", what, a.GetTypeUrl(), err)
				return
			}
			validateDeep(t, what, inner)
			return
		}
		r.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.IsList() && fd.Message() != nil:
				for i := 0; i < v.List().Len(); i++ {
					walk(v.List().Get(i).Message())
				}
			case fd.IsMap() && fd.MapValue().Message() != nil:
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					walk(mv.Message())
					return true
				})
			case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
				walk(v.Message())
			}
			return true
		})
	}
	walk(m.ProtoReflect())
}

// renderAuthz is the golden form: the filters as protojson (Any expanded,
// map keys sorted), then the notes, indented.
func renderAuthz(t *testing.T, f AuthzFilters) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteString(`{"http":[`)
	for i, h := range f.HTTP {
		if i > 0 {
			buf.WriteString(",")
		}
		b, err := protojson.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(b)
	}
	buf.WriteString(`],"tcp":[`)
	for i, n := range f.TCP {
		if i > 0 {
			buf.WriteString(",")
		}
		b, err := protojson.Marshal(n)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(b)
	}
	buf.WriteString(`],"notes":`)
	notes, err := json.Marshal(append([]string{}, f.Notes...))
	if err != nil {
		t.Fatal(err)
	}
	buf.Write(notes)
	buf.WriteString("}")
	var out bytes.Buffer
	if err := json.Indent(&out, buf.Bytes(), "", "  "); err != nil {
		t.Fatal(err)
	}
	out.WriteString("\n")
	return out.Bytes()
}

// checkGolden compares with (or, under -update, rewrites) a golden file,
// as TestBuildGolden does.
func checkGolden(t *testing.T, golden string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./controlplane/xds -run %s -update)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs; diff with:\n  go test ./controlplane/xds -run '%s' -update && git diff %s", golden, t.Name(), golden)
	}
}

func TestAuthzGolden(t *testing.T) {
	tests := []struct {
		name      string
		input     string // default testdata/authz/NAME.yaml
		namespace string
		labels    map[string]string
		opts      AuthzOptions
	}{
		{name: "walkthrough", input: "../config/testdata/walkthrough/authorization-policy.yaml", namespace: "foo", labels: map[string]string{"app": "httpbin", "version": "v1"}},
		{name: "allow-nothing", namespace: "foo"},
		{name: "allow-all", namespace: "foo"},
		{name: "principal", namespace: "foo", labels: map[string]string{"app": "b"}},
		{name: "namespace", namespace: "foo"},
		{name: "not-host-method-port", namespace: "foo"},
		{name: "deny-plaintext", namespace: "legacy"},
		{name: "path-templates", namespace: "foo"},
		{name: "workload-selector", namespace: "foo", labels: map[string]string{"app": "b", "version": "v1", "extra": "x"}},
		{name: "conditions", namespace: "foo"},
		{name: "jwt", namespace: "foo"},
		{name: "dry-run", namespace: "foo"},
		{name: "http-only-on-tcp", namespace: "foo"},
		{name: "trust-domain", namespace: "foo", opts: AuthzOptions{TrustDomain: "td-new", TrustDomainAliases: []string{"td-old"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.input
			if in == "" {
				in = filepath.Join("testdata", "authz", tc.name+".yaml")
			}
			f, err := BuildAuthzFilters(loadPolicies(t, in), tc.namespace, tc.labels, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(f.HTTP) == 0 || len(f.HTTP) != len(f.TCP) {
				t.Fatalf("got %d HTTP and %d TCP filters; every case has policies", len(f.HTTP), len(f.TCP))
			}
			for i, h := range f.HTTP {
				validateDeep(t, fmt.Sprintf("http[%d]", i), h)
			}
			for i, n := range f.TCP {
				validateDeep(t, fmt.Sprintf("tcp[%d]", i), n)
			}
			got := renderAuthz(t, f)
			checkGolden(t, filepath.Join("testdata", "authz", tc.name+".golden"), got)
			again, err := BuildAuthzFilters(loadPolicies(t, in), tc.namespace, tc.labels, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			for i := range f.HTTP {
				if !proto.Equal(f.HTTP[i], again.HTTP[i]) || !bytes.Equal(f.HTTP[i].GetTypedConfig().GetValue(), again.HTTP[i].GetTypedConfig().GetValue()) {
					t.Errorf("http[%d]: two builds differ (bytes must be deterministic for xDS versions)", i)
				}
			}
		})
	}
}

// rbacOf unpacks the filters' RBAC configs in order.
func rbacOf(t *testing.T, f AuthzFilters) (http []*rbachttp.RBAC, tcp []*rbactcp.RBAC) {
	t.Helper()
	for _, h := range f.HTTP {
		if h.GetName() != "envoy.filters.http.rbac" {
			t.Fatalf("HTTP filter %q", h.GetName())
		}
		r := &rbachttp.RBAC{}
		if err := h.GetTypedConfig().UnmarshalTo(r); err != nil {
			t.Fatal(err)
		}
		http = append(http, r)
	}
	for _, n := range f.TCP {
		if n.GetName() != "envoy.filters.network.rbac" {
			t.Fatalf("TCP filter %q", n.GetName())
		}
		r := &rbactcp.RBAC{}
		if err := n.GetTypedConfig().UnmarshalTo(r); err != nil {
			t.Fatal(err)
		}
		tcp = append(tcp, r)
	}
	return http, tcp
}

func authzPolicy(ns, name string, spec string, annotations map[string]string) config.Resource {
	ap := &security.AuthorizationPolicy{}
	if err := protojson.Unmarshal([]byte(spec), ap); err != nil {
		panic(err)
	}
	return config.Resource{Kind: config.AuthorizationPolicy, Namespace: ns, Name: name, Spec: ap, Annotations: annotations}
}

// TestAuthzSemantics pins the behaviours Istio's builder testdata shows,
// independently of the golden files (compared by eye with
// istio/istio 1.24.6 pilot/pkg/security/authz/builder/testdata).
func TestAuthzSemantics(t *testing.T) {
	t.Run("order audit deny allow", func(t *testing.T) {
		f, err := BuildAuthzFilters([]config.Resource{
			authzPolicy("foo", "a", `{"rules":[{}]}`, nil),
			authzPolicy("foo", "d", `{"action":"DENY","rules":[{}]}`, nil),
			authzPolicy("foo", "l", `{"action":"AUDIT","rules":[{}]}`, nil),
		}, "foo", nil, AuthzOptions{})
		if err != nil {
			t.Fatal(err)
		}
		h, tc := rbacOf(t, f)
		want := []rbacpb.RBAC_Action{rbacpb.RBAC_LOG, rbacpb.RBAC_DENY, rbacpb.RBAC_ALLOW}
		for i, a := range want {
			if h[i].GetRules().GetAction() != a || tc[i].GetRules().GetAction() != a {
				t.Errorf("filter %d: http %v tcp %v, want %v", i, h[i].GetRules().GetAction(), tc[i].GetRules().GetAction(), a)
			}
			if tc[i].GetStatPrefix() != "tcp." {
				t.Errorf("tcp stat prefix %q", tc[i].GetStatPrefix())
			}
		}
	})
	t.Run("allow-nothing is match-never", func(t *testing.T) {
		f, err := BuildAuthzFilters([]config.Resource{authzPolicy("foo", "n", `{}`, nil)}, "foo", nil, AuthzOptions{})
		if err != nil {
			t.Fatal(err)
		}
		h, _ := rbacOf(t, f)
		p := h[0].GetRules().GetPolicies()["ns[foo]-policy[n]-rule[0]"]
		if !proto.Equal(p, matchNever) {
			t.Errorf("got %v", p)
		}
	})
	t.Run("allow with HTTP-only field is dropped on TCP", func(t *testing.T) {
		f, err := BuildAuthzFilters([]config.Resource{authzPolicy("foo", "a", `{"rules":[{"to":[{"operation":{"methods":["GET"]}}]}]}`, nil)}, "foo", nil, AuthzOptions{})
		if err != nil {
			t.Fatal(err)
		}
		h, tc := rbacOf(t, f)
		if len(h[0].GetRules().GetPolicies()) != 1 {
			t.Errorf("http policies %v", h[0].GetRules().GetPolicies())
		}
		// Istio: `rules: {}` — an ALLOW RBAC with no policies denies all TCP.
		if tc[0].GetRules() == nil || len(tc[0].GetRules().GetPolicies()) != 0 {
			t.Errorf("tcp rules %v, want empty ALLOW", tc[0].GetRules())
		}
		if len(f.Notes) != 1 || !strings.Contains(f.Notes[0], `":method" is HTTP only`) {
			t.Errorf("notes %q", f.Notes)
		}
	})
	t.Run("deny with HTTP-only field matches everything on TCP", func(t *testing.T) {
		f, err := BuildAuthzFilters([]config.Resource{authzPolicy("foo", "d", `{"action":"DENY","rules":[{"to":[{"operation":{"methods":["GET"]}}]}]}`, nil)}, "foo", nil, AuthzOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_, tc := rbacOf(t, f)
		p := tc[0].GetRules().GetPolicies()["ns[foo]-policy[d]-rule[0]"]
		if len(p.GetPermissions()) != 1 || !p.GetPermissions()[0].GetAndRules().GetRules()[0].GetAny() {
			t.Errorf("got %v, want permission any", p)
		}
	})
	t.Run("dry-run goes to shadow rules with Istio's prefixes", func(t *testing.T) {
		dry := map[string]string{"istio.io/dry-run": "true"}
		f, err := BuildAuthzFilters([]config.Resource{
			authzPolicy("foo", "d", `{"action":"DENY","rules":[{}]}`, dry),
			authzPolicy("foo", "a", `{"rules":[{}]}`, dry),
		}, "foo", nil, AuthzOptions{})
		if err != nil {
			t.Fatal(err)
		}
		h, tc := rbacOf(t, f)
		for i, want := range []string{"istio_dry_run_deny_", "istio_dry_run_allow_"} {
			if h[i].GetRules() != nil || h[i].GetShadowRules() == nil || h[i].GetShadowRulesStatPrefix() != want {
				t.Errorf("http[%d] = %v", i, h[i])
			}
			if tc[i].GetRules() != nil || tc[i].GetShadowRulesStatPrefix() != want {
				t.Errorf("tcp[%d] = %v", i, tc[i])
			}
		}
	})
	t.Run("targetRefs never apply to sidecars", func(t *testing.T) {
		f, err := BuildAuthzFilters([]config.Resource{
			authzPolicy("foo", "t", `{"targetRef":{"kind":"Gateway","group":"gateway.networking.k8s.io","name":"gw"},"rules":[{}]}`, nil),
		}, "foo", nil, AuthzOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if f.HTTP != nil || f.TCP != nil {
			t.Errorf("got filters %v", f)
		}
	})
}

func TestAuthzRefuses(t *testing.T) {
	tests := []struct {
		name, spec, want string
	}{
		{"custom without provider", `{"action":"CUSTOM","rules":[{}]}`, "`provider.name` must not be empty"},
		{"unknown when key", `{"action":"DENY","rules":[{"when":[{"key":"request.method","values":["GET"]}]}]}`, "unknown attribute: request.method"},
		{"bad ip", `{"rules":[{"from":[{"source":{"ipBlocks":["10.0.0.300"]}}]}]}`, "bad IP address or CIDR range (10.0.0.300)"},
		{"bad port", `{"rules":[{"to":[{"operation":{"ports":["http"]}}]}]}`, "bad port (http)"},
		{"bad header key", `{"rules":[{"when":[{"key":"request.headers","values":["x"]}]}]}`, "should have format a[b]"},
		{"any not last", `{"rules":[{"to":[{"operation":{"paths":["/{**}/a/{*}"]}}]}]}`, "{**} is not the last operator"},
		{"brace in segment", `{"rules":[{"to":[{"operation":{"paths":["/a{*}b"]}}]}]}`, "beyond a supported path template"},
		{"deny without rules", `{"action":"DENY"}`, "DENY action without `rules`"},
		{"empty source", `{"rules":[{"from":[{"source":{}}]}]}`, "`from.source` must not be empty"},
		{"provider on allow", `{"provider":{"name":"x"},"rules":[{}]}`, "`provider` must not be with non CUSTOM action"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := BuildAuthzFilters([]config.Resource{authzPolicy("foo", "p", tc.spec, nil)}, "foo", nil, AuthzOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), "authorization policy foo/p") {
				t.Errorf("err %q does not name the policy", err)
			}
		})
	}
}

// TestAuthzPolicyOrder: the policies that apply come as Istio's
// GetAuthorizationPolicies and ListAuthorizationPolicies give them: the
// root namespace's, then the workload namespace's, each oldest first
// (name order among those created in the same second), whatever order
// the caller holds them in.
func TestAuthzPolicyOrder(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ap := func(ns, name string, sec int) config.Resource {
		return config.Resource{Kind: config.AuthorizationPolicy, Namespace: ns, Name: name,
			Spec: &security.AuthorizationPolicy{}, CreationTimestamp: t0.Add(time.Duration(sec) * time.Second)}
	}
	all := []config.Resource{
		ap("foo", "a-newest", 9),
		ap("foo", "b", 2),
		ap("foo", "c-oldest", 1),
		ap("foo", "a-same-second-as-b", 2),
		ap("istio-system", "a-mesh-newer", 8),
		ap("istio-system", "z-mesh-older", 0),
		ap("bar", "other", 0),
	}
	want := []string{"istio-system/z-mesh-older", "istio-system/a-mesh-newer", "foo/c-oldest", "foo/a-same-second-as-b", "foo/b", "foo/a-newest"}
	rev := slices.Clone(all)
	slices.Reverse(rev)
	for _, in := range [][]config.Resource{all, rev} {
		var got []string
		for _, r := range AuthzPoliciesFor(in, "foo", nil, "istio-system") {
			got = append(got, r.Namespace+"/"+r.Name)
		}
		if !slices.Equal(got, want) {
			t.Errorf("policies for foo:\n got %v\nwant %v", got, want)
		}
	}
}
