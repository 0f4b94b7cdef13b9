package values

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/meshlab/meshlab/controlplane/meshconfig"
)

func TestSet(t *testing.T) {
	tests := []struct {
		arg  string
		want string // the tree as YAML
		err  string
	}{
		{arg: "a=1", want: "a: 1\n"},
		{arg: "a.b=true,a.c=x", want: "a:\n  b: true\n  c: x\n"},
		{arg: "a.b=100.0", want: "a:\n  b: \"100.0\"\n"},
		{arg: `a\.b=1`, want: "a.b: 1\n"},
		{arg: `a=x\,y`, want: "a: x,y\n"},
		{arg: "l[1].k=z", want: "l:\n- null\n- k: z\n"},
		{arg: "l={a,b,3}", want: "l:\n- a\n- b\n- 3\n"},
		{arg: "a=1,a=null", want: "{}\n"},
		{arg: "a[x]=1", err: "list index"},
		{arg: "a", err: "want KEY=VALUE"},
		{arg: "a=1,a.b=2", err: "not a map"},
	}
	for _, tt := range tests {
		t.Run(tt.arg, func(t *testing.T) {
			tree := map[string]any{}
			err := Set(tree, tt.arg)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Set(%q) = %v, want an error containing %q", tt.arg, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := yaml.Marshal(tree)
			if string(got) != tt.want {
				t.Errorf("Set(%q):\n%s\nwant:\n%s", tt.arg, got, tt.want)
			}
		})
	}
}

// The walkthrough's istiod values, given as a file, and the same set
// with --set, both reach the mesh config istiod reads.
func TestLoadWalkthrough(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "values.yaml")
	if err := os.WriteFile(f, []byte(`meshConfig:
  enablePrometheusMerge: true
  enableTracing: true
  defaultConfig: # envoy default config
    tracing:
      zipkin:
        address: tempo.tempo.svc.cluster.local:9411
      sampling: 100.0
pilot:
  resources: {requests: {cpu: 10m}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := Load([]string{f}, []string{"meshConfig.defaultConfig.tracing.sampling=50", "meshConfig.accessLogEncoding=JSON"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(v.Ignored, []string{"pilot"}) {
		t.Errorf("Ignored = %v, want [pilot]", v.Ignored)
	}
	y, err := v.MeshConfig()
	if err != nil {
		t.Fatal(err)
	}
	mc, err := meshconfig.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	tr := mc.GetDefaultConfig().GetTracing()
	if got := tr.GetZipkin().GetAddress(); got != "tempo.tempo.svc.cluster.local:9411" {
		t.Errorf("zipkin address = %q", got)
	}
	if got := tr.GetSampling(); got != 50 {
		t.Errorf("sampling = %v, want 50 (--set after the file)", got)
	}
	if !mc.GetEnableTracing() || mc.GetAccessLogFile() != "/dev/stdout" || mc.GetAccessLogEncoding().String() != "JSON" {
		t.Errorf("mesh config lost a default or a --set: %v", mc)
	}
}

func TestDefaultsAreTheWalkthroughs(t *testing.T) {
	v, err := Load(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	y, err := v.MeshConfig()
	if err != nil {
		t.Fatal(err)
	}
	mc, err := meshconfig.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if !mc.GetEnableTracing() || mc.GetDefaultConfig().GetTracing().GetSampling() != 100 ||
		mc.GetDefaultConfig().GetTracing().GetZipkin().GetAddress() != "zipkin.istio-system:9411" {
		t.Errorf("defaults = %s", y)
	}
}

func TestBadMeshConfigNamesTheField(t *testing.T) {
	for _, tt := range []struct{ set, want string }{
		{"meshConfig.enableTracingg=true", "enableTracingg"},
		{"meshConfig.defaultConfig.tracing.sampling=lots", "sampling"},
		{"meshConfig=3", "want a map"},
	} {
		v, err := Load(nil, []string{tt.set})
		if err == nil {
			_, err = v.MeshConfig()
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "meshConfig") {
			t.Errorf("--set %s: err = %v, want one naming meshConfig and %q", tt.set, err, tt.want)
		}
	}
	if _, err := Load([]string{"/nonexistent/values.yaml"}, nil); err == nil || !strings.Contains(err.Error(), "/nonexistent/values.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

// FuzzSet: whatever a --set argument holds, Set answers with a tree or an
// error, never a panic, and a tree it built marshals.
func FuzzSet(f *testing.F) {
	for _, s := range []string{"a=1", "a.b[0].c=x,d={1,2}", `a\.b=c\,d`, "a[3]=", "=", "a[x]=1", "a=1,a.b=2", "a[0][1]=z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		tree := map[string]any{}
		if err := Set(tree, arg); err != nil {
			return
		}
		if _, err := yaml.Marshal(tree); err != nil {
			t.Fatalf("Set(%q) built a tree that does not marshal: %v", arg, err)
		}
	})
}
