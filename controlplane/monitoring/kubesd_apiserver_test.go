package monitoring

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshlab/meshlab/controlplane/registry"
	"github.com/meshlab/meshlab/lab/kube/kubetest"
)

// TestAgainstKubernetesSD compares the HTTP SD with Prometheus v2.42's own
// Kubernetes SD (testdata/kubesd, the version Debian ships) discovering
// the same Pod, Service and Endpoints from a real API server: the same
// targets, with the same labels, for role=pod and role=endpoints.
func TestAgainstKubernetesSD(t *testing.T) {
	env := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// Prometheus's discovery is a module of its own; the Go build cache
	// keeps it after the first build.
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal("the go command is needed to build testdata/kubesd: put it on PATH")
	}
	bin := filepath.Join(t.TempDir(), "kubesd")
	build := exec.CommandContext(ctx, goBin, "build", "-o", bin, ".")
	build.Dir = filepath.Join("testdata", "kubesd")
	build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build testdata/kubesd: %v\n%s", err, out)
	}

	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "productpage-v1-5d9b-x1", Namespace: "default",
			Labels:      map[string]string{"app": "productpage", "version": "v1", "security.istio.io/tlsMode": "istio"},
			Annotations: map[string]string{"prometheus.io/port": "15020", "prometheus.io/scrape": "true"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "productpage-v1-5d9b",
				UID: "0c9a1f4e-0000-4000-8000-000000000001", Controller: &yes}}},
		Spec: corev1.PodSpec{NodeName: "node1",
			InitContainers: []corev1.Container{{Name: "istio-init", Image: "meshlab"}},
			Containers: []corev1.Container{
				{Name: "productpage", Image: "bookinfo/productpage:1.20", Ports: []corev1.ContainerPort{{ContainerPort: 9080}}},
				{Name: "istio-proxy", Image: "meshlab", Ports: []corev1.ContainerPort{{Name: "http-envoy-prom", ContainerPort: 15090}}},
			}},
	}
	created, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "198.18.0.7", PodIPs: []corev1.PodIP{{IP: "198.18.0.7"}}, HostIP: "198.18.0.1",
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	if _, err := cs.CoreV1().Pods("default").UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "productpage", Namespace: "default", Labels: map[string]string{"app": "productpage", "service": "productpage"}},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "productpage"}, Ports: []corev1.ServicePort{{Name: "http", Port: 9080}}}}
	if _, err := cs.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// What the endpoints controller (not run by the test API server) keeps.
	// Endpoints, deprecated for EndpointSlice, is what the walkthrough's
	// role: endpoints reads.
	node := "node1"
	eps := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "productpage", Namespace: "default", Labels: svc.Labels}, //nolint:staticcheck // role: endpoints reads Endpoints
		Subsets: []corev1.EndpointSubset{{ //nolint:staticcheck // as above
			Addresses: []corev1.EndpointAddress{{IP: "198.18.0.7", NodeName: &node,
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: pod.Name, UID: created.UID}}},
			Ports: []corev1.EndpointPort{{Name: "http", Port: 9080, Protocol: corev1.ProtocolTCP}},
		}}}
	if _, err := cs.CoreV1().Endpoints("default").Create(ctx, eps, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The same pod and Service as the local runtime registers them.
	snap := registry.Snapshot{
		Services: []registry.Service{{Name: "productpage", Namespace: "default", Selector: svc.Spec.Selector, Labels: svc.Labels,
			Ports: []registry.Port{{Name: "http", Port: 9080}}}},
		Workloads: []registry.Workload{{Name: pod.Name, Namespace: "default", IP: netip.MustParseAddr("198.18.0.7"), Labels: pod.Labels, Ready: true,
			Pod: &registry.Pod{Annotations: pod.Annotations, Phase: "Running", NodeName: "node1", HostIP: "198.18.0.1", UID: string(created.UID),
				ControllerKind: "ReplicaSet", ControllerName: "productpage-v1-5d9b",
				InitContainers: []registry.Container{{Name: "istio-init", Image: "meshlab"}},
				Containers: []registry.Container{
					{Name: "productpage", Image: "bookinfo/productpage:1.20", Ports: []registry.ContainerPort{{ContainerPort: 9080}}},
					{Name: "istio-proxy", Image: "meshlab", Ports: []registry.ContainerPort{{Name: "http-envoy-prom", ContainerPort: 15090}}},
				}}}},
	}

	for _, tt := range []struct {
		role string
		want int
	}{{RolePod, 3}, {RoleEndpoints, 2}} {
		t.Run(tt.role, func(t *testing.T) {
			cmd := exec.CommandContext(ctx, bin, "--kubeconfig", env.Kubeconfig, "--role", tt.role, "--namespaces", "default", "--want", itoa(tt.want))
			cmd.Stderr = os.Stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("kubesd: %v", err)
			}
			var theirs []TargetGroup
			if err := json.Unmarshal(out, &theirs); err != nil {
				t.Fatalf("decode %s: %v", out, err)
			}
			ours := Targets(snap, tt.role, []string{"default"})
			key := func(g TargetGroup) string { return g.Targets[0] + " " + g.Labels[labelCName] }
			sort.Slice(theirs, func(i, j int) bool { return key(theirs[i]) < key(theirs[j]) })
			sort.Slice(ours, func(i, j int) bool { return key(ours[i]) < key(ours[j]) })
			if len(ours) != len(theirs) {
				t.Fatalf("%d targets, Prometheus's Kubernetes SD found %d:\nours   %v\ntheirs %v", len(ours), len(theirs), ours, theirs)
			}
			for i := range ours {
				if key(ours[i]) != key(theirs[i]) {
					t.Errorf("target %d: %s, Kubernetes SD: %s", i, key(ours[i]), key(theirs[i]))
					continue
				}
				for k, v := range theirs[i].Labels {
					if got, ok := ours[i].Labels[k]; !ok || got != v {
						t.Errorf("%s: %s = %q (present %v), Kubernetes SD: %q", key(ours[i]), k, got, ok, v)
					}
				}
				for k, v := range ours[i].Labels {
					if _, ok := theirs[i].Labels[k]; !ok {
						t.Errorf("%s: %s = %q, which Kubernetes SD does not give", key(ours[i]), k, v)
					}
				}
			}
		})
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
