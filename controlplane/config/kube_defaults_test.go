package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

func TestImageTag(t *testing.T) {
	digest := "@sha256:" + strings.Repeat("a", 64)
	tests := map[string]string{
		"nginx":                            "latest",
		"nginx:latest":                     "latest",
		"nginx:1.27":                       "1.27",
		"docker.io/library/nginx":          "latest",
		"localhost:5000/nginx":             "latest",
		"localhost:5000/nginx:v1":          "v1",
		"meshlab.local/meshlab:dev":        "dev",
		"nginx" + digest:                   "",
		"nginx:1.27" + digest:              "1.27",
		"localhost:5000/team/app" + digest: "",
	}
	for image, want := range tests {
		if got := imageTag(image); got != want {
			t.Errorf("imageTag(%q) = %q; want %q", image, got, want)
		}
	}
}

// TestDefaultKubeGolden: what `get -o yaml` shows of Istio's httpbin once
// stored (the apiserver test proves the same values are Kubernetes').
func TestDefaultKubeGolden(t *testing.T) {
	var out []string
	for _, doc := range kubeDocs(t, "testdata/kube/good/httpbin.yaml") {
		obj := kubeObject(t, doc)
		defaultKube(obj)
		b, err := yaml.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	got := strings.Join(out, "---\n")
	const golden = "testdata/kube/golden/httpbin-defaulted.yaml"
	if *updateKube {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("defaulted httpbin:\n%s\nwant (%s):\n%s", got, golden, want)
	}
}

// TestDefaultKubeIdempotent: defaulting a stored object again changes
// nothing, so a re-apply or a restart of the store keeps what it shows.
func TestDefaultKubeIdempotent(t *testing.T) {
	files, _ := filepath.Glob("testdata/kube/*/*.yaml")
	for _, f := range files {
		for i, doc := range kubeDocs(t, f) {
			once := kubeObject(t, doc)
			defaultKube(once)
			twice := once.DeepCopyObject()
			defaultKube(twice)
			if !reflect.DeepEqual(once, twice) {
				t.Errorf("%s document %d: defaulting twice differs from once", f, i+1)
			}
		}
	}
}

// TestValidateKubeLeavesItsInput: validation defaults a copy, never the
// object the caller stores.
func TestValidateKubeLeavesItsInput(t *testing.T) {
	docs := kubeDocs(t, "testdata/kube/good/httpbin.yaml")
	obj := kubeObject(t, docs[2])
	before := obj.DeepCopyObject()
	if errs := validateKube(obj); len(errs) > 0 {
		t.Fatal(errs)
	}
	if !reflect.DeepEqual(obj, before) {
		t.Error("validateKube changed its input")
	}
}

// TestValidateKubeSize: a ConfigMap's or Secret's values hold 1 MiB at
// most, counted over data, binaryData and stringData together.
func TestValidateKubeSize(t *testing.T) {
	half := strings.Repeat("x", maxDataSize/2)
	meta := metav1.ObjectMeta{Name: "big", Namespace: "foo"}
	check := func(name string, errs []string, want string) {
		t.Helper()
		got := strings.Join(errs, "\n")
		if got != want {
			t.Errorf("%s: validateKube:\n%s\nwant:\n%s", name, got, want)
		}
	}
	lines := func(obj runtime.Object) []string {
		var out []string
		for _, e := range validateKube(obj) {
			out = append(out, e.Error())
		}
		return out
	}
	check("ConfigMap of exactly 1 MiB", lines(&corev1.ConfigMap{ObjectMeta: meta,
		Data: map[string]string{"a": half}, BinaryData: map[string][]byte{"b": []byte(half)}}), "")
	check("ConfigMap one byte over", lines(&corev1.ConfigMap{ObjectMeta: meta,
		Data: map[string]string{"a": half, "c": "x"}, BinaryData: map[string][]byte{"b": []byte(half)}}),
		"data: Too long: may not be more than 1048576 bytes")
	check("Secret one byte over, stringData counted", lines(&corev1.Secret{ObjectMeta: meta,
		Data: map[string][]byte{"a": []byte(half)}, StringData: map[string]string{"b": half + "x"}}),
		"data: Too long: may not be more than 1048576 bytes")
}
