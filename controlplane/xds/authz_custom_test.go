package xds

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	extauthzhttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	rbachttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"

	"github.com/meshlab/meshlab/controlplane/meshconfig"
)

// testLookup knows one service, ext-authz in foo, as the registry would.
func testLookup(svc string, port uint32) (string, string, error) {
	const host = "ext-authz.foo.svc.cluster.local"
	if svc == host || svc == "foo/"+host {
		return host, outboundClusterName(port, "", host), nil
	}
	return "", "", fmt.Errorf("could not find service %s in Istio service registry", svc)
}

func TestAuthzCustomGolden(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "authz", "custom-mesh.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	mesh, err := meshconfig.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	opts := AuthzOptions{Mesh: mesh, LookupCluster: testLookup}
	tests := []struct {
		name string
		// the filter names expected, HTTP then TCP
		http, tcp []string
		note      string
	}{
		{name: "custom-http", http: []string{wellknown.HTTPRoleBasedAccessControl, wellknown.HTTPExternalAuthorization, wellknown.HTTPRoleBasedAccessControl},
			tcp: []string{wellknown.RoleBasedAccessControl}, note: "ignored CUSTOM action with HTTP provider on TCP filter chain"},
		{name: "custom-grpc", http: []string{wellknown.HTTPRoleBasedAccessControl, wellknown.HTTPExternalAuthorization},
			tcp: []string{wellknown.RoleBasedAccessControl, wellknown.ExternalAuthorization}},
		{name: "custom-unknown", http: []string{wellknown.HTTPRoleBasedAccessControl}, tcp: []string{wellknown.RoleBasedAccessControl},
			note: `available providers are [broken sample-ext-authz-grpc sample-ext-authz-http] but found "not-in-mesh-config"`},
		{name: "custom-broken", http: []string{wellknown.HTTPRoleBasedAccessControl}, tcp: []string{wellknown.RoleBasedAccessControl},
			note: "could not find service nowhere.foo.svc.cluster.local"},
		{name: "custom-two-providers", http: []string{wellknown.HTTPRoleBasedAccessControl}, tcp: []string{wellknown.RoleBasedAccessControl},
			note: "only 1 provider can be used per workload"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := filepath.Join("testdata", "authz", tc.name+".yaml")
			f, err := BuildAuthzFilters(loadPolicies(t, in), "foo", nil, opts)
			if err != nil {
				t.Fatal(err)
			}
			var gotHTTP, gotTCP []string
			for i, h := range f.HTTP {
				gotHTTP = append(gotHTTP, h.GetName())
				validateDeep(t, fmt.Sprintf("http[%d]", i), h)
			}
			for i, n := range f.TCP {
				gotTCP = append(gotTCP, n.GetName())
				validateDeep(t, fmt.Sprintf("tcp[%d]", i), n)
			}
			if fmt.Sprint(gotHTTP) != fmt.Sprint(tc.http) || fmt.Sprint(gotTCP) != fmt.Sprint(tc.tcp) {
				t.Errorf("filters http %v tcp %v, want %v %v", gotHTTP, gotTCP, tc.http, tc.tcp)
			}
			if tc.note != "" && !strings.Contains(strings.Join(f.Notes, "\n"), tc.note) {
				t.Errorf("notes %q lack %q", f.Notes, tc.note)
			}
			checkGolden(t, filepath.Join("testdata", "authz", tc.name+".golden"), renderAuthz(t, f))
		})
	}
}

// TestAuthzCustomNeverFailsOpen: whatever is wrong with the provider, the
// CUSTOM rules become an enforced DENY of what they match (Istio's
// "-deny-due-to-bad-CUSTOM-action"), never nothing.
func TestAuthzCustomNeverFailsOpen(t *testing.T) {
	for _, mesh := range []string{"", "extensionProviders: [{name: p, envoyExtAuthzHttp: {service: gone.foo.svc.cluster.local, port: 8000}}]"} {
		mc, err := meshconfig.Parse([]byte(mesh))
		if err != nil {
			t.Fatal(err)
		}
		f, err := BuildAuthzFilters(loadPolicies(t, filepath.Join("testdata", "authz", "custom-unknown.yaml")), "foo", nil, AuthzOptions{Mesh: mc, LookupCluster: testLookup})
		if err != nil {
			t.Fatal(err)
		}
		if len(f.HTTP) != 1 {
			t.Fatalf("mesh %q: %d HTTP filters, want the deny RBAC", mesh, len(f.HTTP))
		}
		var cfg rbachttp.RBAC
		if err := f.HTTP[0].GetTypedConfig().UnmarshalTo(&cfg); err != nil {
			t.Fatal(err)
		}
		if cfg.GetRules().GetAction().String() != "DENY" || cfg.GetRules().GetPolicies()["istio-ext-authz-ns[foo]-policy[ext-authz]-rule[0]-deny-due-to-bad-CUSTOM-action"] == nil {
			t.Errorf("mesh %q: rules %v, want the CUSTOM rule as DENY", mesh, cfg.GetRules())
		}
	}
}

func TestAuthzCustomProviderFields(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "authz", "custom-mesh.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	mesh, err := meshconfig.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	f, err := BuildAuthzFilters(loadPolicies(t, filepath.Join("testdata", "authz", "custom-http.yaml")), "foo", nil, AuthzOptions{Mesh: mesh, LookupCluster: testLookup})
	if err != nil {
		t.Fatal(err)
	}
	var ea extauthzhttp.ExtAuthz
	if err := f.HTTP[1].GetTypedConfig().UnmarshalTo(&ea); err != nil {
		t.Fatal(err)
	}
	svc := ea.GetHttpService()
	if svc.GetServerUri().GetCluster() != "outbound|8000||ext-authz.foo.svc.cluster.local" || svc.GetPathPrefix() != "/check" ||
		svc.GetServerUri().GetTimeout().AsDuration().Seconds() != 2 || ea.GetStatusOnError().GetCode() != 503 || ea.GetFailureModeAllow() {
		t.Errorf("ext_authz %v", &ea)
	}
	if f.CustomHTTP != 2 || f.CustomTCP != 0 {
		t.Errorf("CustomHTTP %d CustomTCP %d, want 2 0", f.CustomHTTP, f.CustomTCP)
	}
}
