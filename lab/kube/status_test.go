package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestStatus: status of a kind lab reads the record and asks the API server
// (a real one; the pods' statuses are written as kubelets would).
func TestStatus(t *testing.T) {
	env := startEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kc := kubernetes.NewForConfigOrDie(env.Config)
	for _, ns := range []string{"istio-system", "bookinfo", "other"} {
		if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	svc, err := kc.CoreV1().Services(GatewayNamespace).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: GatewayService, Namespace: GatewayNamespace},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"istio": "ingressgateway"},
			Ports: []corev1.ServicePort{{Name: "http2", Port: 8080}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "172.18.255.200"}}
	if _, err := kc.CoreV1().Services(GatewayNamespace).UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	running := func(name string, ready bool, restarts int32) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: name, Ready: ready, RestartCount: restarts, Image: "x",
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
	}
	pods := []struct {
		ns, name string
		status   corev1.PodStatus
	}{
		{"istio-system", "istiod-5d9f", corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.0.5",
			ContainerStatuses: []corev1.ContainerStatus{running("app", true, 0), running("istio-proxy", true, 0)}}},
		{"bookinfo", "reviews-v2-7c", corev1.PodStatus{Phase: corev1.PodPending, PodIP: "10.244.0.9",
			ContainerStatuses: []corev1.ContainerStatus{running("app", true, 1), {Name: "istio-proxy", RestartCount: 2, Image: "x",
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff"}}}}}},
		{"other", "not-the-mesh", corev1.PodStatus{Phase: corev1.PodRunning}},
	}
	for _, p := range pods {
		pod, err := kc.CoreV1().Pods(p.ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: p.ns},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "x"}, {Name: "istio-proxy", Image: "x"}}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pod.Status = p.status
		if _, err := kc.CoreV1().Pods(p.ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	dir := t.TempDir()
	rec := Record{Runtime: "kind", Cluster: "meshlab", Context: "kubetest", Pool: "172.18.255.200-172.18.255.250",
		ExternalIP: "172.18.255.201", URL: "http://127.0.0.1:8080/productpage", BookinfoNamespace: "bookinfo", CreatedAt: time.Now()}
	writeRec := func() {
		b, _ := json.Marshal(rec)
		if err := os.WriteFile(filepath.Join(dir, RecordFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeRec()
	status := func() (string, []byte) {
		t.Helper()
		r, err := Open(dir, env.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		if r.Name() != "kind" {
			t.Errorf("Name() = %q with a kind record", r.Name())
		}
		st, err := r.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := st.Print(&out); err != nil {
			t.Fatal(err)
		}
		js, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		return out.String(), js
	}

	table, js := status()
	t.Logf("status:\n%s", table)
	for _, want := range []string{
		"Lab: Running (runtime kind, cluster meshlab, context kubetest",
		"MetalLB pool:  172.18.255.200-172.18.255.250",
		"external IP 172.18.255.200", // the Service's, not the record's
		"http://127.0.0.1:8080/productpage", "http://172.18.255.200:8080", "https://172.18.255.200:8443",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("status lacks %q:\n%s", want, table)
		}
	}
	for _, row := range [][]string{
		{"istio-system", "istiod-5d9f", "2/2", "Running", "0", "10.244.0.5"},
		{"bookinfo", "reviews-v2-7c", "1/2", "ImagePullBackOff", "3", "10.244.0.9"},
	} {
		found := false
		for _, line := range strings.Split(table, "\n") {
			found = found || strings.Join(strings.Fields(line), " ") == strings.Join(row, " ")
		}
		if !found {
			t.Errorf("status lacks the row %v:\n%s", row, table)
		}
	}
	if strings.Contains(table, "not-the-mesh") {
		t.Errorf("status shows a pod outside istio-system and bookinfo:\n%s", table)
	}

	// status -o json: the shape it had in lab/cmd.
	var got map[string]any
	if err := json.Unmarshal(js, &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"runtime", "phase", "cluster", "context", "pool", "externalIP", "startedAt", "urls", "pods"} {
		if _, ok := got[k]; !ok {
			t.Errorf("status -o json lacks %q: %s", k, js)
		}
	}
	var st Status
	if err := json.Unmarshal(js, &st); err != nil {
		t.Fatal(err)
	}
	if st.Runtime != "kind" || st.Phase != "Running" || st.ExternalIP != "172.18.255.200" || len(st.Pods) != 2 ||
		st.Pods[1].Ready != "1/2" || st.Pods[1].Restarts != 3 || st.URLs.Gateway != "http://172.18.255.200:8080" {
		t.Errorf("status -o json = %s", js)
	}
	if !strings.Contains(string(js), `"ready":"1/2","status":"ImagePullBackOff","restarts":3,"ip":"10.244.0.9","containers":2`) {
		t.Errorf("a pod of status -o json changed shape: %s", js)
	}

	// A cluster that is gone: the record still shows, with why.
	rec.Context = "no-such-context"
	writeRec()
	if out, _ := status(); !strings.Contains(out, "Lab: Unreachable") || !strings.Contains(out, "no-such-context") {
		t.Errorf("status of an unreachable cluster:\n%s", out)
	}

	// A cluster meshlab was installed on (no record): its current context,
	// and the pods of the namespaces labelled for injection.
	if _, err := kc.CoreV1().Namespaces().Patch(ctx, "other", "application/merge-patch+json",
		[]byte(`{"metadata":{"labels":{"istio-injection":"enabled"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	r, err := Open(t.TempDir(), env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := rep.Print(&out); err != nil {
		t.Fatal(err)
	}
	t.Logf("status of an installed cluster:\n%s", out.String())
	if s := out.String(); !strings.Contains(s, "Lab: Running (runtime kube, cluster kubetest, context kubetest)") ||
		!strings.Contains(s, "not-the-mesh") || strings.Contains(s, "reviews-v2-7c") || strings.Contains(s, "MetalLB") {
		t.Errorf("status of an installed cluster:\n%s", s)
	}
}
