package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshlab/meshlab/lab/kube"
	"github.com/meshlab/meshlab/lab/kube/kubetest"
)

// TestStatusKind: status of a kind lab reads the record and asks the API
// server (a real one; the pods' statuses are written as kubelets would).
func TestStatusKind(t *testing.T) {
	env := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kc := kubernetes.NewForConfigOrDie(env.Config)
	for _, ns := range []string{"istio-system", "bookinfo", "other"} {
		if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	svc, err := kc.CoreV1().Services(kube.GatewayNamespace).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: kube.GatewayService, Namespace: kube.GatewayNamespace},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"istio": "ingressgateway"},
			Ports: []corev1.ServicePort{{Name: "http2", Port: 8080}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "172.18.255.200"}}
	if _, err := kc.CoreV1().Services(kube.GatewayNamespace).UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
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
	rec := kube.Record{Runtime: "kind", Cluster: "meshlab", Context: "kubetest", Pool: "172.18.255.200-172.18.255.250",
		ExternalIP: "172.18.255.201", URL: "http://127.0.0.1:8080/productpage", BookinfoNamespace: "bookinfo", CreatedAt: time.Now()}
	b, _ := json.Marshal(rec)
	if err := os.WriteFile(filepath.Join(dir, kube.RecordFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		app := &cli.App{Writer: &out, ErrWriter: &out, Commands: []*cli.Command{Status()}, ExitErrHandler: func(*cli.Context, error) {}}
		if err := app.RunContext(ctx, append([]string{"meshlab", "status", "--state-dir", dir, "--kubeconfig", env.Kubeconfig}, args...)); err != nil {
			t.Fatalf("status %q: %v\n%s", args, err, out.String())
		}
		return out.String()
	}

	table := run()
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

	var js kindStatus
	if err := json.Unmarshal([]byte(run("-o", "json")), &js); err != nil {
		t.Fatal(err)
	}
	if js.Runtime != "kind" || js.Phase != "Running" || js.ExternalIP != "172.18.255.200" || len(js.Pods) != 2 ||
		js.Pods[1].Ready != "1/2" || js.Pods[1].Restarts != 3 || js.URLs.Gateway != "http://172.18.255.200:8080" {
		t.Errorf("status -o json = %+v", js)
	}

	// A cluster that is gone: the record still shows, with why.
	rec.Context = "no-such-context"
	b, _ = json.Marshal(rec)
	os.WriteFile(filepath.Join(dir, kube.RecordFile), b, 0o644)
	if out := run(); !strings.Contains(out, "Lab: Unreachable") || !strings.Contains(out, "no-such-context") {
		t.Errorf("status of an unreachable cluster:\n%s", out)
	}
}
