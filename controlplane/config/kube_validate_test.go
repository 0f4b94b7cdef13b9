package config

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

var updateKube = flag.Bool("update-kube", false, "rewrite testdata/kube/bad/*.want from validateKube's output")

// kubeObject is the typed object of a document's apiVersion and kind.
func kubeObject(t *testing.T, doc []byte) runtime.Object {
	t.Helper()
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		t.Fatal(err)
	}
	var obj runtime.Object
	switch tm.APIVersion + "/" + tm.Kind {
	case "v1/Namespace":
		obj = &corev1.Namespace{}
	case "v1/ServiceAccount":
		obj = &corev1.ServiceAccount{}
	case "v1/Service":
		obj = &corev1.Service{}
	case "v1/ConfigMap":
		obj = &corev1.ConfigMap{}
	case "v1/Secret":
		obj = &corev1.Secret{}
	case "apps/v1/Deployment":
		obj = &appsv1.Deployment{}
	default:
		t.Fatalf("no kind %s %s", tm.APIVersion, tm.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		t.Fatalf("decode %s: %v", tm.Kind, err)
	}
	return obj
}

// kubeDocs are the documents of a YAML stream.
func kubeDocs(t *testing.T, file string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, doc)
	}
}

// validateFile is every problem validateKube finds in file, one a line.
func validateFile(t *testing.T, file string) string {
	t.Helper()
	var lines []string
	for _, doc := range kubeDocs(t, file) {
		for _, e := range validateKube(kubeObject(t, doc)) {
			lines = append(lines, e.Error())
		}
	}
	return strings.Join(lines, "\n")
}

// TestValidateKubeGood: the samples a sandbox user applies, and the
// manifests only the local runtime refuses, are valid Kubernetes.
func TestValidateKubeGood(t *testing.T) {
	files, _ := filepath.Glob("testdata/kube/good/*.yaml")
	local, _ := filepath.Glob("testdata/kube/local/*.yaml")
	if len(files) < 4 {
		t.Fatalf("found %d good manifests; the fixtures are missing", len(files))
	}
	for _, f := range append(files, local...) {
		t.Run(f, func(t *testing.T) {
			if got := validateFile(t, f); got != "" {
				t.Errorf("validateKube:\n%s\nwant no errors", got)
			}
		})
	}
}

// TestValidateKubeBad: each bad manifest breaks one rule and gets the API
// server's error for it, as written in the .want file beside it.
func TestValidateKubeBad(t *testing.T) {
	files, _ := filepath.Glob("testdata/kube/bad/*.yaml")
	if len(files) < 50 {
		t.Fatalf("found %d bad manifests; the fixtures are missing", len(files))
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			got := validateFile(t, f)
			wantFile := strings.TrimSuffix(f, ".yaml") + ".want"
			if *updateKube {
				if err := os.WriteFile(wantFile, []byte(got+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(wantFile)
			if err != nil {
				t.Fatal(err)
			}
			if got == "" {
				t.Fatalf("validateKube found nothing wrong; want\n%s", want)
			}
			if got != strings.TrimSuffix(string(want), "\n") {
				t.Errorf("validateKube:\n%s\nwant (%s):\n%s", got, wantFile, want)
			}
		})
	}
}

// TestFieldErrors: a field error reads, once stamped, as the lead's
// file/document/resource errors do.
func TestFieldErrors(t *testing.T) {
	docs := kubeDocs(t, "testdata/kube/bad/deployment-selector-mismatch.yaml")
	l := fieldErrors(validateKube(kubeObject(t, docs[0])))
	l.at("app.yaml", 2)
	l.about("Deployment", "foo", "web")
	want := "app.yaml: document 3 (Deployment foo/web): spec.template.metadata.labels: Invalid value: {\"app\":\"web\"}: `selector` does not match template `labels`"
	if got := l.Error(); got != want {
		t.Errorf("error:\n%s\nwant:\n%s", got, want)
	}
}
