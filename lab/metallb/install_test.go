package metallb

import (
	"bytes"
	"context"
	"net/netip"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/meshlab/meshlab/lab/kube/kubetest"
)

// TestInstallAPIServer applies MetalLB and its pool to a real kube-apiserver:
// every object is accepted, the CRDs get established, the pool is stored as
// written, a second apply keeps the memberlist key, and the waits see the
// status a kubelet and MetalLB's controller would write. (No controllers run
// there: the statuses are written by the test.)
func TestInstallAPIServer(t *testing.T) {
	env := kubetest.Start(t)
	kube := kubernetes.NewForConfigOrDie(env.Config)
	dyn := dynamic.NewForConfigOrDie(env.Config)
	c := Clients{Kube: kube, Dynamic: dyn}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if err := Apply(ctx, c, Images{}); err != nil {
		t.Fatal(err)
	}
	r := Range{netip.MustParseAddr("172.18.255.200"), netip.MustParseAddr("172.18.255.250")}
	if err := ApplyPool(ctx, c, r); err != nil {
		t.Fatal(err)
	}
	pool, err := dyn.Resource(schema.GroupVersionResource{Group: Group, Version: "v1beta1", Resource: "ipaddresspools"}).Namespace(Namespace).Get(ctx, PoolName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if addrs, _, _ := unstructuredSlice(pool.Object, "spec", "addresses"); len(addrs) != 1 || addrs[0] != "172.18.255.200-172.18.255.250" {
		t.Errorf("stored pool addresses %v", addrs)
	}
	if _, err := dyn.Resource(schema.GroupVersionResource{Group: Group, Version: "v1beta1", Resource: "l2advertisements"}).Namespace(Namespace).Get(ctx, PoolName, metav1.GetOptions{}); err != nil {
		t.Errorf("L2Advertisement: %v", err)
	}
	// BGPPeer is served at both versions MetalLB reads.
	for _, v := range []string{"v1beta1", "v1beta2"} {
		if _, err := dyn.Resource(schema.GroupVersionResource{Group: Group, Version: v, Resource: "bgppeers"}).Namespace(Namespace).List(ctx, metav1.ListOptions{}); err != nil {
			t.Errorf("bgppeers %s: %v", v, err)
		}
	}

	secret, err := kube.CoreV1().Secrets(Namespace).Get(ctx, "memberlist", metav1.GetOptions{})
	if err != nil || len(secret.Data[MemberlistKey]) != 128 {
		t.Fatalf("memberlist secret: %v, %d-byte key", err, len(secret.Data[MemberlistKey]))
	}
	if err := Apply(ctx, c, Images{}); err != nil {
		t.Fatalf("second apply: %v", err)
	}
	again, _ := kube.CoreV1().Secrets(Namespace).Get(ctx, "memberlist", metav1.GetOptions{})
	if !bytes.Equal(again.Data[MemberlistKey], secret.Data[MemberlistKey]) {
		t.Error("a second apply changed the memberlist key")
	}

	// Not ready until the controller is available and every speaker ready.
	short, cancelShort := context.WithTimeout(ctx, 1500*time.Millisecond)
	err = WaitReady(short, kube)
	cancelShort()
	if err == nil {
		t.Fatal("WaitReady returned with no pod running")
	}
	d, _ := kube.AppsV1().Deployments(Namespace).Get(ctx, "controller", metav1.GetOptions{})
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1, AvailableReplicas: 1}
	if _, err := kube.AppsV1().Deployments(Namespace).UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	ds, _ := kube.AppsV1().DaemonSets(Namespace).Get(ctx, "speaker", metav1.GetOptions{})
	ds.Status = appsv1.DaemonSetStatus{ObservedGeneration: ds.Generation, DesiredNumberScheduled: 1, CurrentNumberScheduled: 1, UpdatedNumberScheduled: 1, NumberReady: 1, NumberAvailable: 1}
	if _, err := kube.AppsV1().DaemonSets(Namespace).UpdateStatus(ctx, ds, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := WaitReady(ctx, kube); err != nil {
		t.Fatal(err)
	}

	// A LoadBalancer Service: shared, then given its address.
	svc, err := kube.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "istio-ingressgateway"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "gw"},
			Ports: []corev1.ServicePort{{Name: "http2", Port: 8080}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ShareIP(ctx, kube, "default", svc.Name, "my-lb-service"); err != nil {
		t.Fatal(err)
	}
	svc, _ = kube.CoreV1().Services("default").Get(ctx, svc.Name, metav1.GetOptions{})
	if svc.Annotations[AllowSharedIP] != "my-lb-service" {
		t.Errorf("annotations %v", svc.Annotations)
	}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "172.18.255.200"}}
	if _, err := kube.CoreV1().Services("default").UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	ip, err := WaitExternalIP(ctx, kube, "default", svc.Name)
	if err != nil || ip != "172.18.255.200" {
		t.Errorf("WaitExternalIP = %q, %v", ip, err)
	}
}

func unstructuredSlice(m map[string]any, path ...string) ([]any, bool, error) {
	for _, p := range path[:len(path)-1] {
		m, _ = m[p].(map[string]any)
	}
	s, ok := m[path[len(path)-1]].([]any)
	return s, ok, nil
}
