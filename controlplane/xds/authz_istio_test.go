package xds

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// TestAuthzMatchesIstio builds every input of Istio's own builder golden
// tests and compares with Istio's output, proto for proto. Istio's files
// are not copied here: point the variable at a checkout, e.g.
//
//	git -C istio checkout 1.24.6
//	MESHLAB_ISTIO_AUTHZ_TESTDATA=$PWD/istio/pilot/pkg/security/authz/builder/testdata go test ./controlplane/xds -run TestAuthzMatchesIstio -v
//
// Known differences: allow-host-before-111 is for proxies older than
// Istio 1.11 (regex host matching), which meshlab's proxy is not; the
// CUSTOM inputs need the mesh config and services of Istio's
// builder_test.go, so they are covered by TestAuthzCustomGolden instead.
func TestAuthzMatchesIstio(t *testing.T) {
	dir := os.Getenv("MESHLAB_ISTIO_AUTHZ_TESTDATA")
	if dir == "" {
		t.Skip("MESHLAB_ISTIO_AUTHZ_TESTDATA is not set (istio/istio pilot/pkg/security/authz/builder/testdata at 1.24.6)")
	}
	compared := 0
	for _, kind := range []string{"http", "tcp"} {
		ins, err := filepath.Glob(filepath.Join(dir, kind, "*-in.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range ins {
			base := strings.TrimSuffix(in, "-in.yaml")
			outs, err := filepath.Glob(base + "-out*.yaml")
			if err != nil {
				t.Fatal(err)
			}
			name := kind + "/" + filepath.Base(base)
			if len(outs) == 0 || filepath.Base(base) == "allow-host-before-111" {
				continue
			}
			rs := loadPolicies(t, in)
			opts := AuthzOptions{}
			switch filepath.Base(base) {
			case "simple-policy-td-aliases":
				opts = AuthzOptions{TrustDomain: "td1", TrustDomainAliases: []string{"cluster.local"}}
			case "simple-policy-multiple-td-aliases":
				opts = AuthzOptions{TrustDomain: "td1", TrustDomainAliases: []string{"cluster.local", "some-td"}}
			case "simple-policy-principal-with-wildcard":
				opts = AuthzOptions{TrustDomain: "td1", TrustDomainAliases: []string{"foobar"}}
			case "td-aliases-source-principal":
				opts = AuthzOptions{TrustDomain: "new-td", TrustDomainAliases: []string{"old-td", "some-trustdomain"}}
			}
			f, err := BuildAuthzFilters(rs, "foo", map[string]string{"app": "httpbin", "version": "v1"}, opts)
			if strings.HasPrefix(filepath.Base(base), "custom-") {
				continue
			}
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			var got []proto.Message
			if kind == "http" {
				for _, h := range f.HTTP {
					got = append(got, h)
				}
			} else {
				for _, h := range f.TCP {
					got = append(got, h)
				}
			}
			if len(got) != len(outs) {
				t.Errorf("%s: %d filters, istio %d", name, len(got), len(outs))
				continue
			}
			for i, o := range outs {
				b, err := os.ReadFile(o)
				if err != nil {
					t.Fatal(err)
				}
				j, err := yaml.YAMLToJSON(b)
				if err != nil {
					t.Fatal(err)
				}
				var want proto.Message = &hcmv3.HttpFilter{}
				if kind == "tcp" {
					want = &listenerv3.Filter{}
				}
				if err := protojson.Unmarshal(j, want); err != nil {
					t.Fatalf("%s: %v", o, err)
				}
				if !proto.Equal(got[i], want) {
					gj, err := protojson.Marshal(got[i])
					if err != nil {
						t.Fatal(err)
					}
					t.Errorf("%s[%d] differs:\n got %s\nwant %s", name, i, gj, j)
				}
				compared++
			}
		}
	}
	if compared == 0 {
		t.Fatalf("no Istio cases found under %s", dir)
	}
	t.Logf("%d filters identical to Istio's", compared)
}
