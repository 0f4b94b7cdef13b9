package controlplane

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// TestWebhooksOverTLS serves the webhooks as the API server reaches them:
// over TLS, trusting only the root the API hands out, at 127.0.0.1.
func TestWebhooksOverTLS(t *testing.T) {
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s, err := New(Options{StateDir: dir, XDSAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", WebhookAddr: addr})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		s.Close()
	}()

	// The root, as the installer fetches it for caBundle.
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "http://localhost"+PathCARoot, nil))
	pool := x509.NewCertPool()
	if rec.Code != http.StatusOK || !pool.AppendCertsFromPEM(rec.Body.Bytes()) {
		t.Fatalf("GET %s: %d %q", PathCARoot, rec.Code, rec.Body.String())
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}

	vs := []byte(`{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"r","namespace":"default"},"spec":{"hosts":["r"],"htp":[]}}`)
	review, _ := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "1", Operation: admissionv1.Create, Namespace: "default", Name: "r",
			Kind: metav1.GroupVersionKind{Group: "networking.istio.io", Version: "v1", Kind: "VirtualService"}, Object: runtime.RawExtension{Raw: vs}},
	})
	var resp *http.Response
	for i := 0; i < 100; i++ { // the listener opens as Serve starts
		resp, err = client.Post(fmt.Sprintf("https://%s/validate", addr), "application/json", bytes.NewReader(review))
		if err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &out); err != nil || out.Response == nil {
		t.Fatalf("%s: %v", body, err)
	}
	want := `VirtualService default/r: spec.htp: unknown field "htp"; did you mean "http"?`
	if out.Response.Allowed || out.Response.Result.Message != want {
		t.Fatalf("response %+v, want denied with %q", out.Response, want)
	}
	if _, err := client.Get(fmt.Sprintf("https://%s/inject", addr)); err != nil {
		t.Fatalf("GET /inject over TLS: %v", err)
	}
}
