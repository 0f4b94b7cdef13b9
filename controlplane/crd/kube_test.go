package crd

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensions "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshlab/meshlab/lab/kube/kubetest"
)

// TestKubectl installs the CRDs on a real apiserver and applies the
// walkthrough's documents with kubectl's defaults (--validate=strict, that is
// server-side field validation): the valid ones are accepted, the invalid
// VirtualServices rejected with the field named.
func TestKubectl(t *testing.T) {
	env := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	install(ctx, t, env)
	for _, ns := range []string{"foo", "spring", "book-demo", "bookinfo", "istio-system"} {
		if out, err := env.KubectlRun(ctx, nil, "create", "namespace", ns); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}

	valid, _ := filepath.Glob("../config/testdata/walkthrough/*.yaml")
	more, _ := filepath.Glob("../config/testdata/valid/*.yaml")
	valid = append(valid, more...)
	if len(valid) < 8 {
		t.Fatalf("found only %d valid fixtures", len(valid))
	}
	for _, f := range valid {
		t.Run(filepath.Base(filepath.Dir(f))+"/"+filepath.Base(f), func(t *testing.T) {
			out, err := env.KubectlRun(ctx, nil, "apply", "-f", f)
			if err != nil {
				t.Errorf("kubectl apply -f %s: %v\n%s", f, err, out)
			}
		})
	}

	invalid := []struct {
		file string
		want []string // all must appear in kubectl's output
	}{
		{"reviews-vs-header.yaml", []string{`unknown field "spec.http[0].match[1].header"`}},
		// The strict decoder meets the list item before the type check does.
		{"reviews-vs-headers-list.yaml", []string{`unknown field "spec.http[0].match[0].headers[0]`}},
	}
	for _, tt := range invalid {
		t.Run("invalid/"+tt.file, func(t *testing.T) {
			f := filepath.Join("../config/testdata/invalid", tt.file)
			out, err := env.KubectlRun(ctx, nil, "apply", "-f", f)
			if err == nil {
				t.Fatalf("kubectl apply -f %s succeeded; want it rejected:\n%s", f, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("kubectl apply -f %s said:\n%s\nwant it to mention %q", f, out, w)
				}
			}
		})
	}

	// Every served version reads the same object (they share one schema),
	// and the short names resolve.
	for _, args := range [][]string{
		{"get", "virtualservices.v1alpha3.networking.istio.io", "-n", "book-demo", "reviews"},
		{"get", "virtualservices.v1beta1.networking.istio.io", "-n", "book-demo", "reviews"},
		{"get", "vs", "-n", "book-demo", "reviews"},
		{"get", "dr", "-n", "book-demo"},
		{"get", "pa", "-n", "book-demo"},
		{"get", "ap", "-n", "foo"},
	} {
		if out, err := env.KubectlRun(ctx, nil, args...); err != nil {
			t.Errorf("%v\n%s", err, out)
		}
	}
}

// install creates the CRDs and waits until they are established.
func install(ctx context.Context, t *testing.T, env *kubetest.Env) {
	t.Helper()
	cs, err := apiextensions.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	crds := cs.ApiextensionsV1().CustomResourceDefinitions()
	for _, c := range CRDs() {
		if _, err := crds.Create(ctx, c, metav1.CreateOptions{FieldValidation: "Strict"}); err != nil {
			t.Fatalf("creating CRD %s: %v", c.Name, err)
		}
	}
	for _, c := range CRDs() {
		for {
			got, err := crds.Get(ctx, c.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if established(got) {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("CRD %s not established: %+v", c.Name, got.Status.Conditions)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

func established(c *apiextensionsv1.CustomResourceDefinition) bool {
	for _, cond := range c.Status.Conditions {
		if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
			return true
		}
	}
	return false
}
