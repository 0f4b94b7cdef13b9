package kube

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/meshlab/meshlab/lab"
)

// TestPortForward picks the pod and port a forward to a Service goes to
// on a real apiserver (the Service's ready pod, its named targetPort),
// refuses what cannot be forwarded with the reason, and, as there is no
// kubelet here, reports the apiserver's refusal of the forward itself
// instead of hanging.
func TestPortForward(t *testing.T) {
	env := startEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kc, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	const ns = "istio-system"
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kiali", Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "kiali"},
			Ports: []corev1.ServicePort{{Name: "http-kiali", Port: 20001, TargetPort: intstr.FromString("http-kiali")}}},
	}
	if _, err := kc.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rt := ForConfig(env.Config)
	forward := func() (lab.Forward, error) {
		return rt.PortForward(ctx, lab.PortForwardOptions{Namespace: ns, Service: "kiali", Port: 20001, Address: "127.0.0.1", LocalPort: 0})
	}
	if _, err := forward(); err == nil || !strings.Contains(err.Error(), "service istio-system/kiali has no running, ready pod (0 selected") {
		t.Errorf("no pods: %v; want 'no running, ready pod'", err)
	}
	if _, err := rt.PortForward(ctx, lab.PortForwardOptions{Namespace: ns, Service: "kiali", Port: 9090}); err == nil || !strings.Contains(err.Error(), "has no port 9090 (it has [20001])") {
		t.Errorf("another port: %v; want 'has no port 9090'", err)
	}
	if _, err := rt.PortForward(ctx, lab.PortForwardOptions{Namespace: ns, Service: "grafana", Port: 3000}); err == nil || !strings.Contains(err.Error(), "service istio-system/grafana not found") {
		t.Errorf("no service: %v; want 'not found'", err)
	}

	mkPod := func(name string, ready bool, port int32) {
		t.Helper()
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "kiali"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "kiali", Image: "meshlab.local/meshlab:test",
				Ports: []corev1.ContainerPort{{Name: "http-kiali", ContainerPort: port}}}}},
		}
		p, err := kc.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		status := corev1.ConditionFalse
		if ready {
			status = corev1.ConditionTrue
		}
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.0.7",
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status, LastTransitionTime: metav1.Now()}}}
		if _, err := kc.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mkPod("kiali-unready", false, 20001)
	if _, err := forward(); err == nil || !strings.Contains(err.Error(), "no running, ready pod (1 selected") {
		t.Errorf("an unready pod: %v; want 'no running, ready pod (1 selected'", err)
	}
	mkPod("kiali-ready", true, 20002)
	pod, port, err := servicePod(ctx, kc, ns, "kiali", 20001)
	if err != nil || pod.Name != "kiali-ready" || port != 20002 {
		t.Fatalf("servicePod: %v port %d, %v; want kiali-ready's http-kiali, 20002", pod, port, err)
	}
	// No kubelet serves the pod: the apiserver refuses, and the forward
	// says so, naming the pod.
	_, err = forward()
	t.Logf("forward without a kubelet: %v", err)
	if err == nil || !strings.Contains(err.Error(), "pod istio-system/kiali-ready") {
		t.Errorf("forward without a kubelet: %v; want the apiserver's refusal, naming the pod", err)
	}
}

func TestContainerPort(t *testing.T) {
	p := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Ports: []corev1.ContainerPort{{Name: "http-kiali", ContainerPort: 20001}}}}}}
	for _, c := range []struct {
		target  intstr.IntOrString
		want    int
		wantErr bool
	}{
		{intstr.FromInt32(0), 9090, false},
		{intstr.FromInt32(8080), 8080, false},
		{intstr.FromString("http-kiali"), 20001, false},
		{intstr.FromString("http"), 0, true},
	} {
		got, err := containerPort(p, c.target, 9090)
		if got != c.want || (err != nil) != c.wantErr {
			t.Errorf("containerPort(%v) = %d, %v; want %d (error %v)", c.target, got, err, c.want, c.wantErr)
		}
	}
}
