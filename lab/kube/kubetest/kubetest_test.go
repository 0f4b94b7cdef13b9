package kubetest

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestVersion keeps KubernetesVersion in step with the client-go in go.mod.
func TestVersion(t *testing.T) {
	gomod, err := os.ReadFile("../../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*k8s\.io/client-go (v0\.\S+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod does not require k8s.io/client-go")
	}
	if want := "v1." + strings.TrimPrefix(string(m[1]), "v0."); want != KubernetesVersion {
		t.Errorf("KubernetesVersion = %s; client-go %s wants %s", KubernetesVersion, m[1], want)
	}
}

func TestStart(t *testing.T) {
	env := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != KubernetesVersion {
		t.Errorf("server version %s; want %s", v.GitVersion, KubernetesVersion)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kubetest"}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A pod is stored although no controller made the default service
	// account (the ServiceAccount admission plugin is off) and no node runs it.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "kubetest"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.invalid/none"}}},
	}
	if _, err := cs.CoreV1().Pods("kubetest").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// kubectl reaches the same apiserver through the kubeconfig.
	out, err := env.KubectlRun(ctx, nil, "get", "pods", "-n", "kubetest", "-o", "name")
	if err != nil || strings.TrimSpace(out) != "pod/p" {
		t.Errorf("kubectl get pods = %q, %v; want pod/p", out, err)
	}
	// The admission webhooks are called: one on loopback denies ConfigMaps.
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var review admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
			http.Error(w, "bad review", http.StatusBadRequest)
			return
		}
		review.Response = &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: false,
			Result: &metav1.Status{Message: "denied by the kubetest webhook"}}
		review.Request = nil
		_ = json.NewEncoder(w).Encode(&review)
	}))
	defer srv.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	none := admissionregistrationv1.SideEffectClassNone
	webhook := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "deny-configmaps"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    "deny.kubetest.meshlab.local",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: ptr(srv.URL + "/deny"), CABundle: ca},
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             &none,
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
			}},
		}},
	}
	if _, err := cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, webhook, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm", Namespace: "kubetest"}}
	// The apiserver picks the configuration up asynchronously.
	for i := 0; ; i++ {
		_, err = cs.CoreV1().ConfigMaps("kubetest").Create(ctx, cm, metav1.CreateOptions{})
		if err != nil && strings.Contains(err.Error(), "denied by the kubetest webhook") {
			break
		}
		if err == nil {
			_ = cs.CoreV1().ConfigMaps("kubetest").Delete(ctx, "cm", metav1.DeleteOptions{})
		}
		if i == 100 {
			t.Fatalf("creating a ConfigMap: %v; want it denied by the webhook", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func ptr[T any](v T) *T { return &v }
