package xds

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/meshconfig"
	"github.com/meshlab/meshlab/controlplane/registry"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// fixture is a test case: a registry (a shared file plus extras), Istio
// resources as JSON specs, and the proxies to build, by golden file name.
type fixture struct {
	Registry  string              `json:"registry"`
	Services  []registry.Service  `json:"services"`
	Workloads []registry.Workload `json:"workloads"`
	Config    []struct {
		Kind      config.Kind     `json:"kind"`
		Namespace string          `json:"namespace"`
		Name      string          `json:"name"`
		Spec      json.RawMessage `json:"spec"`
		// Annotations, e.g. istio.io/dry-run.
		Annotations map[string]string `json:"annotations"`
		// CreationTimestamp decides which of conflicting policies Istio
		// takes (the oldest); a fixture without it has every resource
		// created at once, so names decide.
		CreationTimestamp time.Time `json:"creationTimestamp"`
	} `json:"config"`
	// Mesh is the mesh config YAML (the istio ConfigMap's mesh key).
	Mesh    string            `json:"mesh"`
	Proxies map[string]string `json:"proxies"`
	// Secrets are TLS credentials, PEM as strings.
	Secrets []struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
		Cert      string `json:"cert"`
		Key       string `json:"key"`
		CA        string `json:"ca"`
	} `json:"secrets"`
}

func loadFixture(t testing.TB, path string) (Input, map[string]string) {
	t.Helper()
	var f fixture
	readJSON(t, path, &f)
	var in Input
	if f.Registry != "" {
		readJSON(t, filepath.Join("testdata", f.Registry), &in.Registry)
	}
	in.Registry.Services = append(in.Registry.Services, f.Services...)
	in.Registry.Workloads = append(in.Registry.Workloads, f.Workloads...)
	sort.Slice(in.Registry.Services, func(i, j int) bool { return in.Registry.Services[i].Key() < in.Registry.Services[j].Key() })
	sort.Slice(in.Registry.Workloads, func(i, j int) bool { return in.Registry.Workloads[i].Key() < in.Registry.Workloads[j].Key() })
	for _, c := range f.Config {
		var info *config.KindInfo
		for i := range config.Kinds {
			if config.Kinds[i].Kind == c.Kind {
				info = &config.Kinds[i]
			}
		}
		if info == nil {
			t.Fatalf("%s: unknown kind %q", path, c.Kind)
		}
		spec := info.NewSpec()
		if err := protojson.Unmarshal(c.Spec, spec); err != nil {
			t.Fatalf("%s: %s %s/%s: %v", path, c.Kind, c.Namespace, c.Name, err)
		}
		in.Config = append(in.Config, config.Resource{Kind: c.Kind, Namespace: c.Namespace, Name: c.Name, Spec: spec, APIVersion: info.Group + "/v1", Annotations: c.Annotations, CreationTimestamp: c.CreationTimestamp})
	}
	if f.Mesh != "" {
		mc, err := meshconfig.Apply([]byte(f.Mesh))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		in.Mesh = mc
	}
	for _, s := range f.Secrets {
		in.Secrets = append(in.Secrets, Secret{Namespace: s.Namespace, Name: s.Name, Cert: []byte(s.Cert), Key: []byte(s.Key), CA: []byte(s.CA)})
	}
	return in, f.Proxies
}

func readJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
}

var typeKeys = []struct{ url, key string }{
	{resource.ListenerType, "listeners"},
	{resource.RouteType, "routes"},
	{resource.ClusterType, "clusters"},
	{resource.EndpointType, "endpoints"},
	{resource.SecretType, "secrets"}, // rendered only when there are some
}

// render is the golden form: per type, the resources as protojson,
// re-indented because protojson's whitespace is deliberately unstable.
func render(t *testing.T, res Resources) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteString("{")
	for i, tk := range typeKeys {
		if tk.url == resource.SecretType && len(res[tk.url]) == 0 {
			continue
		}
		if i > 0 {
			buf.WriteString(",")
		}
		fmt.Fprintf(&buf, "%q:[", tk.key)
		for j, r := range res[tk.url] {
			if j > 0 {
				buf.WriteString(",")
			}
			b, err := protojson.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			buf.Write(b)
		}
		buf.WriteString("]")
	}
	buf.WriteString("}")
	var out bytes.Buffer
	if err := json.Indent(&out, buf.Bytes(), "", "  "); err != nil {
		t.Fatal(err)
	}
	out.WriteString("\n")
	return out.Bytes()
}

// checkValid asserts what a go-control-plane cache and Envoy need: every
// resource passes Validate, names are unique and sorted, and the snapshot
// is consistent (every RDS name and EDS cluster has its resource).
func checkValid(t *testing.T, res Resources) {
	t.Helper()
	for _, tk := range typeKeys {
		var prev string
		for i, r := range res[tk.url] {
			v, ok := r.(interface{ Validate() error })
			if !ok {
				t.Fatalf("%s %T has no Validate", tk.key, r)
			}
			if err := v.Validate(); err != nil {
				t.Errorf("%s %q: %v", tk.key, resourceName(r), err)
			}
			name := resourceName(r)
			if i > 0 && name <= prev {
				t.Errorf("%s not sorted/unique: %q after %q", tk.key, name, prev)
			}
			prev = name
		}
	}
	snap, err := cachev3.NewSnapshot("1", res)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Consistent(); err != nil {
		t.Errorf("inconsistent snapshot: %v", err)
	}
}

func TestBuildGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/cases/*.json")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, path := range cases {
		name := strings.TrimSuffix(filepath.Base(path), ".json")
		in, proxies := loadFixture(t, path)
		for pname, id := range proxies {
			t.Run(name+"/"+pname, func(t *testing.T) {
				p, err := ParseNodeID(id)
				if err != nil {
					t.Fatal(err)
				}
				p.Verified = verifiedAs(in, p)
				res, err := Build(in, p)
				if err != nil {
					t.Fatal(err)
				}
				checkValid(t, res)
				got := render(t, res)
				golden := filepath.Join("testdata", "golden", name, pname+".json")
				if *update {
					if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(golden, got, 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run go test ./controlplane/xds -update)", err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s differs from the build; diff with:\n  go test ./controlplane/xds -run 'TestBuildGolden/%s/%s' -update && git diff %s", golden, name, pname, golden)
				}
				// Deterministic: a second build from a fresh index is identical.
				again, err := Build(in, p)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(render(t, again), got) {
					t.Error("two builds of the same input differ")
				}
			})
		}
	}
}

func TestParseNodeID(t *testing.T) {
	tests := []struct {
		id      string
		want    Proxy
		wantErr bool
	}{
		{id: "sidecar~198.18.0.10~productpage-v1-0.default~default.svc.cluster.local",
			want: Proxy{Type: "sidecar", IP: netip.MustParseAddr("198.18.0.10"), Name: "productpage-v1-0", Namespace: "default"}},
		{id: "router~198.18.0.2~istio-ingressgateway-7d8f.istio-system~istio-system.svc.cluster.local",
			want: Proxy{Type: "router", IP: netip.MustParseAddr("198.18.0.2"), Name: "istio-ingressgateway-7d8f", Namespace: "istio-system"}},
		{id: "sidecar~198.18.0.10~pod.with.dots.ns~ns.svc.cluster.local",
			want: Proxy{Type: "sidecar", IP: netip.MustParseAddr("198.18.0.10"), Name: "pod.with.dots", Namespace: "ns"}},
		{id: "sidecar~198.18.0.10~productpage.default", wantErr: true},
		{id: "ingress~198.18.0.10~p.default~default.svc.cluster.local", wantErr: true},
		{id: "sidecar~not-an-ip~p.default~default.svc.cluster.local", wantErr: true},
		{id: "sidecar~198.18.0.10~p.other~default.svc.cluster.local", wantErr: true},
		{id: "sidecar~198.18.0.10~p.default~", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			got, err := ParseNodeID(tt.id)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseNodeID = %+v, want error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.want.ID = tt.id
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("ParseNodeID = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestHostMatching(t *testing.T) {
	tests := []struct{ a, b, want string }{
		{"*", "reviews.default.svc.cluster.local", "reviews.default.svc.cluster.local"},
		{"*", "*.example.com", "*.example.com"},
		{"*.example.com", "bookinfo.example.com", "bookinfo.example.com"},
		{"bookinfo.example.com", "*.example.com", "bookinfo.example.com"},
		{"*.example.com", "example.com", ""},
		{"other.org", "*.example.com", ""},
		{"*.a.example.com", "*.example.com", "*.a.example.com"},
	}
	for _, tt := range tests {
		if got := intersectHosts(tt.a, tt.b); got != tt.want {
			t.Errorf("intersectHosts(%q, %q) = %q, want %q", tt.a, tt.b, got, tt.want)
		}
	}
}

// verifiedAs is p authenticated on 15012 with a certificate of its own
// namespace and service account (its pod's in the registry): what the
// goldens show a gateway is what a gateway with its identity gets.
func verifiedAs(in Input, p Proxy) *Identity {
	sa := "default"
	for _, w := range in.Registry.Workloads {
		if w.IP == p.IP && w.ServiceAccount != "" {
			sa = w.ServiceAccount
		}
	}
	return &Identity{TrustDomain: "cluster.local", Namespace: p.Namespace, ServiceAccount: sa}
}
