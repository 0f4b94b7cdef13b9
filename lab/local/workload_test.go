package local

import (
	"net/netip"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshlab/meshlab/controlplane/monitoring"
	"github.com/meshlab/meshlab/controlplane/registry"
)

// What the runtime tells the control plane of a pod is the pod as `get
// pods` shows it, so the control plane's Prometheus SD finds istio-proxy's
// http-envoy-prom port, with the pod's labels and owner, as Kubernetes SD would.
func TestRegistryPod(t *testing.T) {
	p := appPod("httpbin-5d8f7c-abcde", true)
	p.Annotations = map[string]string{"prometheus.io/port": "15020"}
	p.Spec = &corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "istio-init", Image: Image + ":v0.1.0"}},
		Containers: []corev1.Container{
			{Name: "httpbin", Image: Image + ":v0.1.0", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}},
			{Name: "istio-proxy", Image: Image + ":v0.1.0", Ports: []corev1.ContainerPort{{Name: "http-envoy-prom", ContainerPort: 15090, Protocol: corev1.ProtocolTCP}}},
		},
	}
	shown := toPod(p, "node1", t0)
	got := registryPod(&shown)
	want := &registry.Pod{
		Annotations: map[string]string{"prometheus.io/port": "15020"}, Phase: "Running", NodeName: "node1",
		HostIP: Network.Gateway.String(), ControllerKind: "ReplicaSet", ControllerName: "httpbin-5d8f7c",
		Containers: []registry.Container{
			{Name: "httpbin", Image: Image + ":v0.1.0", Ports: []registry.ContainerPort{{ContainerPort: 8080}}},
			{Name: "istio-proxy", Image: Image + ":v0.1.0", Ports: []registry.ContainerPort{{Name: "http-envoy-prom", ContainerPort: 15090, Protocol: "TCP"}}},
		},
		InitContainers: []registry.Container{{Name: "istio-init", Image: Image + ":v0.1.0"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("registryPod =\n %+v\nwant\n %+v", got, want)
	}
	w := registry.Workload{Name: p.Name, Namespace: p.Namespace, IP: netip.MustParseAddr(p.IP), Labels: p.Labels, Ready: true, Pod: got}
	var envoy []string
	for _, g := range monitoring.Targets(registry.Snapshot{Workloads: []registry.Workload{w}}, monitoring.RolePod, nil) {
		if g.Labels["__meta_kubernetes_pod_container_port_name"] == "http-envoy-prom" {
			envoy = append(envoy, g.Targets[0])
			if g.Labels["__meta_kubernetes_pod_controller_name"] != "httpbin-5d8f7c" || g.Labels["__meta_kubernetes_pod_node_name"] != "node1" {
				t.Errorf("envoy target labels %v", g.Labels)
			}
		}
	}
	if want := []string{p.IP + ":15090"}; !reflect.DeepEqual(envoy, want) {
		t.Errorf("envoy-prom targets %v, want %v", envoy, want)
	}
}
