package inject

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stypes "k8s.io/apimachinery/pkg/types"

	"github.com/meshlab/meshlab/controlplane/webhook"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

var testParams = Params{Image: "meshlab.local/meshlab:test"}

func TestDecide(t *testing.T) {
	enabled := map[string]string{NamespaceLabel: "enabled"}
	disabled := map[string]string{NamespaceLabel: "disabled"}
	tests := []struct {
		name     string
		ns       string
		nsLabels map[string]string
		known    bool
		labels   map[string]string
		ann      map[string]string
		spec     corev1.PodSpec
		want     bool
	}{
		{name: "namespace enabled", ns: "default", nsLabels: enabled, known: true, want: true},
		{name: "namespace unlabelled", ns: "default", known: true, want: false},
		{name: "namespace with istio.io/rev", ns: "foo", nsLabels: map[string]string{RevisionLabel: "default"}, known: true, want: true},
		{name: "istio-injection=disabled wins over istio.io/rev", ns: "foo", nsLabels: map[string]string{RevisionLabel: "default", NamespaceLabel: "disabled"}, known: true, want: false},
		{name: "namespace unknown: the webhook's selector chose", ns: "default", known: false, want: true},
		{name: "namespace disabled", ns: "default", nsLabels: disabled, known: true, want: false},
		{name: "namespace disabled beats the pod's true", ns: "default", nsLabels: disabled, known: true,
			labels: map[string]string{InjectKey: "true"}, want: false},
		{name: "pod label false", ns: "default", nsLabels: enabled, known: true,
			labels: map[string]string{InjectKey: "false"}, want: false},
		{name: "pod annotation false", ns: "default", nsLabels: enabled, known: true,
			ann: map[string]string{InjectKey: "false"}, want: false},
		{name: "pod label true in an unlabelled namespace", ns: "default", known: true,
			labels: map[string]string{InjectKey: "true"}, want: true},
		{name: "label wins over annotation", ns: "default", nsLabels: enabled, known: true,
			labels: map[string]string{InjectKey: "true"}, ann: map[string]string{InjectKey: "false"}, want: true},
		{name: "label false wins over annotation true", ns: "default", known: true,
			labels: map[string]string{InjectKey: "false"}, ann: map[string]string{InjectKey: "true"}, want: false},
		{name: "host network", ns: "default", nsLabels: enabled, known: true,
			spec: corev1.PodSpec{HostNetwork: true}, want: false},
		{name: "kube-system", ns: "kube-system", nsLabels: enabled, known: true, want: false},
		{name: "already injected (status annotation)", ns: "default", nsLabels: enabled, known: true,
			ann: map[string]string{StatusAnnotation: "{}"}, want: false},
		{name: "already injected (proxy container)", ns: "default", nsLabels: enabled, known: true,
			spec: corev1.PodSpec{Containers: []corev1.Container{{Name: ProxyContainer}}}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.ns, tt.nsLabels, tt.known, podMeta{Labels: tt.labels, Annotations: tt.ann}, &tt.spec)
			if d.Inject != tt.want || d.Reason == "" {
				t.Fatalf("Decide = %+v, want inject=%v with a reason", d, tt.want)
			}
		})
	}
}

func TestInjectIsIdempotent(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "ratings-v1-0", Labels: map[string]string{"app": "ratings", "version": "v1"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "ratings", Image: "ratings"}}}}
	if d := Pod(pod, "default", nil, false, testParams); !d.Inject {
		t.Fatalf("first injection: %s", d.Reason)
	}
	once, _ := json.Marshal(pod)
	if d := Pod(pod, "default", nil, false, testParams); d.Inject {
		t.Fatal("a second injection injected again")
	}
	twice, _ := json.Marshal(pod)
	if !bytes.Equal(once, twice) {
		t.Fatal("a second injection changed the pod")
	}
	if got := pod.Labels[CanonicalNameLabel] + "/" + pod.Labels[CanonicalRevisionLabel]; got != "ratings/v1" {
		t.Errorf("canonical name/revision %q, want ratings/v1", got)
	}
}

func TestFileGolden(t *testing.T) {
	inputs, _ := filepath.Glob("testdata/*.yaml")
	if len(inputs) == 0 {
		t.Fatal("no inputs in testdata")
	}
	for _, in := range inputs {
		t.Run(filepath.Base(in), func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			out, results, err := File(data, testParams)
			if err != nil {
				t.Fatal(err)
			}
			var notes bytes.Buffer
			for _, r := range results {
				notes.WriteString("# " + r.Kind + " " + r.Name + ": " + map[bool]string{true: "injected", false: "skipped"}[r.Decision.Inject] + " (" + r.Decision.Reason + ")\n")
			}
			got := append(notes.Bytes(), out...)
			golden := filepath.Join("testdata", "golden", filepath.Base(in))
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to write it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("File(%s) differs from %s (go test -update rewrites it):\n%s", in, golden, got)
			}
			// The output is itself input: injecting again changes nothing.
			again, _, err := File(out, testParams)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, out) {
				t.Fatalf("injecting the output again changed it:\n%s", again)
			}
		})
	}
}

func TestFileErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"bad YAML", "kind: Pod\n  metadata: [", "document 1: invalid YAML"},
		{"template not an object", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: 3\n", "document 1 (Deployment x)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := File([]byte(tt.in), testParams)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// review posts one AdmissionReview to the webhook over loopback and
// returns the response.
func review(t *testing.T, srv *httptest.Server, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	t.Helper()
	b, _ := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Request: req})
	resp, err := srv.Client().Post(srv.URL+webhook.PathInject, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("webhook answered %s: %s", resp.Status, body)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	if out.Response == nil || out.Response.UID != req.UID || out.Kind != "AdmissionReview" {
		t.Fatalf("response %s: want an AdmissionReview answering UID %s", body, req.UID)
	}
	return out.Response
}

func TestWebhook(t *testing.T) {
	nsLabels := map[string]map[string]string{
		"bookinfo": {NamespaceLabel: "enabled"},
		"plain":    {},
	}
	srv := httptest.NewServer(webhook.Serve(Webhook(testParams, func(ns string) (map[string]string, bool) {
		l, ok := nsLabels[ns]
		return l, ok
	})))
	defer srv.Close()

	pod := corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: "reviews-v2-5d8f7c-", Labels: map[string]string{"app": "reviews", "version": "v2", "pod-template-hash": "5d8f7c"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "reviews", Image: "reviews"}}},
	}
	raw, _ := json.Marshal(pod)
	podKind := metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	tests := []struct {
		name   string
		ns     string
		kind   metav1.GroupVersionKind
		op     admissionv1.Operation
		inject bool
	}{
		{"enabled namespace", "bookinfo", podKind, admissionv1.Create, true},
		{"unlabelled namespace", "plain", podKind, admissionv1.Create, false},
		{"namespace not yet known", "new", podKind, admissionv1.Create, true},
		{"update", "bookinfo", podKind, admissionv1.Update, false},
		{"not a pod", "bookinfo", metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, admissionv1.Create, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := review(t, srv, &admissionv1.AdmissionRequest{UID: k8stypes.UID("u-" + strings.ReplaceAll(tt.name, " ", "-")), Kind: tt.kind,
				Namespace: tt.ns, Operation: tt.op, Object: runtime.RawExtension{Raw: raw}})
			if !resp.Allowed {
				t.Fatalf("denied: %+v", resp.Result)
			}
			if !tt.inject {
				if resp.Patch != nil {
					t.Fatalf("patched: %s", resp.Patch)
				}
				return
			}
			if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
				t.Fatalf("patch type %v, want JSONPatch", resp.PatchType)
			}
			patch, err := jsonpatch.DecodePatch(resp.Patch)
			if err != nil {
				t.Fatal(err)
			}
			out, err := patch.Apply(raw)
			if err != nil {
				t.Fatalf("apply the patch: %v", err)
			}
			var got corev1.Pod
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			names := func(cs []corev1.Container) (n []string) {
				for _, c := range cs {
					n = append(n, c.Name)
				}
				return n
			}
			if g := strings.Join(names(got.Spec.InitContainers), ","); g != InitContainer {
				t.Errorf("init containers %s, want %s", g, InitContainer)
			}
			if g := strings.Join(names(got.Spec.Containers), ","); g != "reviews,"+ProxyContainer {
				t.Errorf("containers %s, want reviews,%s", g, ProxyContainer)
			}
			if got.Labels[TLSModeLabel] != "istio" || got.Labels[CanonicalNameLabel] != "reviews" || got.Labels["app"] != "reviews" {
				t.Errorf("labels %v", got.Labels)
			}
			if got.Annotations[StatusAnnotation] == "" || got.Annotations["prometheus.io/port"] != "15020" {
				t.Errorf("annotations %v", got.Annotations)
			}
			var vols []string
			for _, v := range got.Spec.Volumes {
				vols = append(vols, v.Name)
			}
			if strings.Join(vols, ",") != PodInfoVolume+","+TokenVolume+","+RootCertVolume {
				t.Errorf("volumes %v, want the pod info, the istio-ca token and the mesh root", vols)
			}
			if tok := got.Spec.Volumes[1].Projected; tok == nil || tok.Sources[0].ServiceAccountToken == nil || tok.Sources[0].ServiceAccountToken.Audience != TokenAudience {
				t.Errorf("the token volume is not a projected ServiceAccount token for %s: %+v", TokenAudience, got.Spec.Volumes[1])
			}
		})
	}
}

func TestWebhookRejectsGarbage(t *testing.T) {
	srv := httptest.NewServer(webhook.Serve(Webhook(testParams, nil)))
	defer srv.Close()
	for _, body := range []string{"", "{", `{"kind":"AdmissionReview"}`} {
		resp, err := srv.Client().Post(srv.URL, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("body %q: status %d, want 400", body, resp.StatusCode)
		}
	}
	resp := review(t, srv, &admissionv1.AdmissionRequest{UID: "bad", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Namespace: "x", Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: []byte(`{"spec": 3}`)}})
	if resp.Allowed || resp.Result == nil || !strings.Contains(resp.Result.Message, "decode pod") {
		t.Fatalf("an undecodable pod: %+v", resp)
	}
}

// The pod's proxy.istio.io/config reaches its proxy as PROXY_CONFIG, in
// JSON whether written as YAML or JSON; a pod without it gets none.
func TestInjectProxyConfigEnv(t *testing.T) {
	tests := []struct{ name, annotation, want string }{
		{name: "yaml", annotation: "tracing:\n  sampling: 50\n", want: `{"tracing":{"sampling":50}}`},
		{name: "json", annotation: `{"holdApplicationUntilProxyStarts": true}`, want: `{"holdApplicationUntilProxyStarts":true}`},
		{name: "none"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "ratings-v1-0", Labels: map[string]string{"app": "ratings"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "ratings", Image: "ratings"}}}}
			if tc.annotation != "" {
				pod.Annotations = map[string]string{ProxyConfigAnnotation: tc.annotation}
			}
			if d := Pod(pod, "default", nil, false, testParams); !d.Inject {
				t.Fatalf("not injected: %s", d.Reason)
			}
			var got string
			found := false
			for _, c := range pod.Spec.Containers {
				for _, e := range c.Env {
					if e.Name == "PROXY_CONFIG" {
						if c.Name != ProxyContainer {
							t.Errorf("PROXY_CONFIG on container %s", c.Name)
						}
						got, found = e.Value, true
					}
				}
			}
			if found != (tc.want != "") || got != tc.want {
				t.Errorf("PROXY_CONFIG = %q (set: %v), want %q", got, found, tc.want)
			}
		})
	}
}
