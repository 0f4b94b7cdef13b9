package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/meshlab/meshlab/controlplane/config"
)

const configTestdata = "../config/testdata"

// applyText is what `meshlab apply` says about a file, without the file and
// document it names: the webhook names the resource instead.
func applyText(t *testing.T, file string, data []byte) string {
	t.Helper()
	_, err := config.Parse(file, data)
	if err == nil {
		return ""
	}
	var list config.ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("Parse returned %T, want an ErrorList", err)
	}
	for _, e := range list {
		e.File = ""
	}
	return list.Error()
}

func post(t *testing.T, srv *httptest.Server, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	t.Helper()
	b, _ := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Request: req})
	resp, err := srv.Client().Post(srv.URL+PathValidate, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &out); err != nil || out.Response == nil {
		t.Fatalf("response %s %s: %v", resp.Status, body, err)
	}
	if out.Response.UID != req.UID {
		t.Fatalf("response UID %q, want %q", out.Response.UID, req.UID)
	}
	return out.Response
}

func TestValidateFixtures(t *testing.T) {
	srv := httptest.NewServer(Serve(Validate))
	defer srv.Close()
	var files []string
	for _, dir := range []string{"valid", "invalid", "walkthrough"} {
		f, _ := filepath.Glob(filepath.Join(configTestdata, dir, "*.yaml"))
		files = append(files, f...)
	}
	if len(files) < 10 {
		t.Fatalf("found %d fixtures under %s", len(files), configTestdata)
	}
	checked := 0
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		docs, err := config.Split(data)
		if err != nil || len(docs) != 1 || !config.IsIstioKind(docs[0].APIVersion, docs[0].Kind) {
			continue // the webhook sees one Istio object at a time
		}
		t.Run(filepath.Base(filepath.Dir(file))+"/"+filepath.Base(file), func(t *testing.T) {
			var obj struct {
				Metadata struct{ Name, Namespace string }
			}
			json.Unmarshal(docs[0].JSON, &obj)
			group, version, _ := strings.Cut(docs[0].APIVersion, "/")
			resp := post(t, srv, &admissionv1.AdmissionRequest{UID: "1", Operation: admissionv1.Create,
				Kind:      metav1.GroupVersionKind{Group: group, Version: version, Kind: docs[0].Kind},
				Namespace: obj.Metadata.Namespace, Name: obj.Metadata.Name,
				Object: runtime.RawExtension{Raw: docs[0].JSON}})
			want := applyText(t, file, data)
			if want == "" {
				if !resp.Allowed {
					t.Fatalf("denied a resource apply accepts: %s", resp.Result.Message)
				}
				return
			}
			if resp.Allowed {
				t.Fatalf("admitted a resource apply refuses with: %s", want)
			}
			if resp.Result.Message != want {
				t.Fatalf("message\n%s\nwant (apply's)\n%s", resp.Result.Message, want)
			}
			if !strings.HasPrefix(resp.Result.Message, docs[0].Kind+" ") {
				t.Fatalf("message %q does not start by naming the resource", resp.Result.Message)
			}
		})
		checked++
	}
	if checked == 0 {
		t.Fatal("no single-document Istio fixture was checked")
	}
}

func TestValidateRequests(t *testing.T) {
	srv := httptest.NewServer(Serve(Validate))
	defer srv.Close()
	vs := func(hosts string) []byte {
		j, _ := yaml.YAMLToJSON([]byte("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec: {hosts: " + hosts + ", http: [{route: [{destination: {subset: v1}}]}]}\n"))
		return j
	}
	vsKind := metav1.GroupVersionKind{Group: "networking.istio.io", Version: "v1", Kind: "VirtualService"}
	tests := []struct {
		name    string
		op      admissionv1.Operation
		kind    metav1.GroupVersionKind
		ns      string
		obj     []byte
		allowed bool
		msg     string
	}{
		{"the namespace comes from the request", admissionv1.Create, vsKind, "book-demo", vs("[reviews]"), false,
			"VirtualService book-demo/r: spec.http[0].route[0].destination.host: required: a route destination needs a host"},
		{"update", admissionv1.Update, vsKind, "default", vs("[]"), false, "VirtualService default/r: spec.hosts: required"},
		{"delete is not checked", admissionv1.Delete, vsKind, "default", nil, true, ""},
		{"not Istio's", admissionv1.Create, metav1.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, "default", []byte(`{"data":{}}`), true, ""},
		{"not an object", admissionv1.Create, vsKind, "default", []byte(`[1]`), false, "decode VirtualService"},
		{"a security policy is admitted", admissionv1.Create, metav1.GroupVersionKind{Group: "security.istio.io", Version: "v1", Kind: "PeerAuthentication"},
			"book-demo", []byte(`{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"r"},"spec":{"mtls":{"mode":"STRICT"}}}`), true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := post(t, srv, &admissionv1.AdmissionRequest{UID: "x", Operation: tt.op, Kind: tt.kind, Namespace: tt.ns,
				Name: "r", Object: runtime.RawExtension{Raw: tt.obj}})
			if resp.Allowed != tt.allowed {
				t.Fatalf("allowed=%v (%+v), want %v", resp.Allowed, resp.Result, tt.allowed)
			}
			if !tt.allowed && !strings.HasPrefix(resp.Result.Message, tt.msg) {
				t.Fatalf("message %q, want it to start with %q", resp.Result.Message, tt.msg)
			}
		})
	}
}

func TestServeRejectsNonReviews(t *testing.T) {
	srv := httptest.NewServer(Serve(Validate))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + PathValidate)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", resp.StatusCode)
	}
}
