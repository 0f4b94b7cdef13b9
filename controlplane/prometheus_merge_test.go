package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meshlab/meshlab/controlplane/api"
)

// The injection webhook follows the mesh config's enablePrometheusMerge
// as it is when each pod comes: on by default, off once the istio
// ConfigMap says so.
func TestInjectionFollowsPrometheusMerge(t *testing.T) {
	dir := t.TempDir()
	s, cl := newTestServer(t, dir)
	wh := httptest.NewServer(s.WebhookHandler())
	defer wh.Close()
	patch := func() string {
		t.Helper()
		pod := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"app","namespace":"default",` +
			`"annotations":{"prometheus.io/port":"8080"}},"spec":{"containers":[{"name":"app","image":"app"}]}}`)
		body, _ := json.Marshal(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{UID: "1", Operation: admissionv1.Create, Namespace: "default", Name: "app",
				Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Object: runtime.RawExtension{Raw: pod}},
		})
		resp, err := http.Post(wh.URL+"/inject", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out admissionv1.AdmissionReview
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Response == nil {
			t.Fatalf("decode review: %v", err)
		}
		return string(out.Response.Patch)
	}
	if p := patch(); !strings.Contains(p, `"prometheus.io/port":"15020"`) || !strings.Contains(p, "ISTIO_PROMETHEUS_ANNOTATIONS") {
		t.Fatalf("default mesh config: patch does not merge: %s", p)
	}
	docs, err := api.Documents("mesh.yaml", []byte(`apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    enablePrometheusMerge: false
`), "default")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Apply(context.Background(), api.ApplyRequest{Documents: docs}); err != nil {
		t.Fatal(err)
	}
	if p := patch(); strings.Contains(p, "15020") || strings.Contains(p, "ISTIO_PROMETHEUS_ANNOTATIONS") {
		t.Fatalf("enablePrometheusMerge: false: patch still merges: %s", p)
	}
}
