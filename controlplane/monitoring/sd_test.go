package monitoring

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/meshlab/meshlab/controlplane/registry"
)

// productpage is a bookinfo pod as the injector leaves it: the app's port,
// istio-proxy's http-envoy-prom, and istio-init as an init container.
func productpage(ready bool) registry.Workload {
	return registry.Workload{Name: "productpage-v1-5d9b-x1", Namespace: "default", IP: netip.MustParseAddr("198.18.0.7"),
		Labels: map[string]string{"app": "productpage", "version": "v1", "security.istio.io/tlsMode": "istio"}, Ready: ready,
		Pod: &registry.Pod{Annotations: map[string]string{"prometheus.io/port": "15020"}, Phase: "Running", NodeName: "node1",
			HostIP: "198.18.0.1", ControllerKind: "ReplicaSet", ControllerName: "productpage-v1-5d9b",
			Containers: []registry.Container{
				{Name: "productpage", Image: "bookinfo/productpage:1.20", Ports: []registry.ContainerPort{{ContainerPort: 9080, Protocol: "TCP"}}},
				{Name: "istio-proxy", Image: "meshlab", Ports: []registry.ContainerPort{{Name: "http-envoy-prom", ContainerPort: 15090}}},
			},
			InitContainers: []registry.Container{{Name: "istio-init", Image: "meshlab"}},
		}}
}

// podCommon is every label Prometheus gives each target of productpage's pod.
func podCommon(ready string) map[string]string {
	return map[string]string{
		"__meta_kubernetes_namespace":                                  "default",
		"__meta_kubernetes_pod_name":                                   "productpage-v1-5d9b-x1",
		"__meta_kubernetes_pod_ip":                                     "198.18.0.7",
		"__meta_kubernetes_pod_ready":                                  ready,
		"__meta_kubernetes_pod_phase":                                  "Running",
		"__meta_kubernetes_pod_node_name":                              "node1",
		"__meta_kubernetes_pod_host_ip":                                "198.18.0.1",
		"__meta_kubernetes_pod_uid":                                    "",
		"__meta_kubernetes_pod_controller_kind":                        "ReplicaSet",
		"__meta_kubernetes_pod_controller_name":                        "productpage-v1-5d9b",
		"__meta_kubernetes_pod_label_app":                              "productpage",
		"__meta_kubernetes_pod_labelpresent_app":                       "true",
		"__meta_kubernetes_pod_label_version":                          "v1",
		"__meta_kubernetes_pod_labelpresent_version":                   "true",
		"__meta_kubernetes_pod_label_security_istio_io_tlsMode":        "istio",
		"__meta_kubernetes_pod_labelpresent_security_istio_io_tlsMode": "true",
		"__meta_kubernetes_pod_annotation_prometheus_io_port":          "15020",
		"__meta_kubernetes_pod_annotationpresent_prometheus_io_port":   "true",
	}
}

func with(base map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range base {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

func TestTargets(t *testing.T) {
	svc := registry.Service{Name: "productpage", Namespace: "default", Selector: map[string]string{"app": "productpage"},
		Labels: map[string]string{"app": "productpage", "service": "productpage"},
		Ports:  []registry.Port{{Name: "http", Port: 9080}}}
	svcLabels := map[string]string{
		"__meta_kubernetes_namespace":                      "default",
		"__meta_kubernetes_endpoints_name":                 "productpage",
		"__meta_kubernetes_service_name":                   "productpage",
		"__meta_kubernetes_service_label_app":              "productpage",
		"__meta_kubernetes_service_labelpresent_app":       "true",
		"__meta_kubernetes_service_label_service":          "productpage",
		"__meta_kubernetes_service_labelpresent_service":   "true",
		"__meta_kubernetes_endpoints_label_app":            "productpage",
		"__meta_kubernetes_endpoints_labelpresent_app":     "true",
		"__meta_kubernetes_endpoints_label_service":        "productpage",
		"__meta_kubernetes_endpoints_labelpresent_service": "true",
	}
	merge := func(a, b map[string]string) map[string]string {
		out := with(a)
		for k, v := range b {
			out[k] = v
		}
		return out
	}
	failed := productpage(false)
	failed.Pod.Phase = "Failed"
	bare := registry.Workload{Name: "bare", Namespace: "other", IP: netip.MustParseAddr("198.18.0.9"), Ready: true}

	tests := []struct {
		name       string
		snap       registry.Snapshot
		role       string
		namespaces []string
		want       []TargetGroup
	}{{
		name: "pod: a target per container port, init containers included without ports",
		snap: registry.Snapshot{Workloads: []registry.Workload{productpage(true)}},
		role: RolePod,
		want: []TargetGroup{
			{Targets: []string{"198.18.0.7"}, Labels: with(podCommon("true"), "__meta_kubernetes_pod_container_name", "istio-init",
				"__meta_kubernetes_pod_container_id", "", "__meta_kubernetes_pod_container_image", "meshlab", "__meta_kubernetes_pod_container_init", "true")},
			{Targets: []string{"198.18.0.7:15090"}, Labels: with(podCommon("true"), "__meta_kubernetes_pod_container_name", "istio-proxy",
				"__meta_kubernetes_pod_container_id", "", "__meta_kubernetes_pod_container_image", "meshlab", "__meta_kubernetes_pod_container_init", "false",
				"__meta_kubernetes_pod_container_port_number", "15090", "__meta_kubernetes_pod_container_port_name", "http-envoy-prom",
				"__meta_kubernetes_pod_container_port_protocol", "TCP")},
			{Targets: []string{"198.18.0.7:9080"}, Labels: with(podCommon("true"), "__meta_kubernetes_pod_container_name", "productpage",
				"__meta_kubernetes_pod_container_id", "", "__meta_kubernetes_pod_container_image", "bookinfo/productpage:1.20", "__meta_kubernetes_pod_container_init", "false",
				"__meta_kubernetes_pod_container_port_number", "9080", "__meta_kubernetes_pod_container_port_name", "",
				"__meta_kubernetes_pod_container_port_protocol", "TCP")},
		},
	}, {
		name:       "pod: namespace filter",
		snap:       registry.Snapshot{Workloads: []registry.Workload{productpage(true), bare}},
		role:       RolePod,
		namespaces: []string{"elsewhere"},
	}, {
		name: "pod: a workload the runtime told nothing more of has no containers, so no targets",
		snap: registry.Snapshot{Workloads: []registry.Workload{bare}},
		role: RolePod,
	}, {
		name: "endpoints: the service port's target, then the pod's uncovered container ports",
		snap: registry.Snapshot{Services: []registry.Service{svc}, Workloads: []registry.Workload{productpage(true), bare}},
		role: RoleEndpoints,
		want: []TargetGroup{
			{Targets: []string{"198.18.0.7:15090"}, Labels: merge(svcLabels, with(podCommon("true"),
				"__meta_kubernetes_pod_container_name", "istio-proxy", "__meta_kubernetes_pod_container_image", "meshlab",
				"__meta_kubernetes_pod_container_port_number", "15090", "__meta_kubernetes_pod_container_port_name", "http-envoy-prom",
				"__meta_kubernetes_pod_container_port_protocol", "TCP"))},
			{Targets: []string{"198.18.0.7:9080"}, Labels: merge(svcLabels, with(podCommon("true"),
				"__meta_kubernetes_endpoint_port_name", "http", "__meta_kubernetes_endpoint_port_protocol", "TCP",
				"__meta_kubernetes_endpoint_ready", "true", "__meta_kubernetes_endpoint_address_target_kind", "Pod",
				"__meta_kubernetes_endpoint_address_target_name", "productpage-v1-5d9b-x1", "__meta_kubernetes_endpoint_node_name", "node1",
				"__meta_kubernetes_pod_container_name", "productpage", "__meta_kubernetes_pod_container_image", "bookinfo/productpage:1.20",
				"__meta_kubernetes_pod_container_port_number", "9080", "__meta_kubernetes_pod_container_port_name", "",
				"__meta_kubernetes_pod_container_port_protocol", "TCP"))},
		},
	}, {
		name: "endpoints: an unready pod is a not-ready address",
		snap: registry.Snapshot{Services: []registry.Service{{Name: "productpage", Namespace: "default", Selector: map[string]string{"app": "productpage"},
			Ports: []registry.Port{{Name: "http", Port: 80, TargetPort: 9080}}}}, Workloads: []registry.Workload{productpage(false)}},
		role: RoleEndpoints,
		want: []TargetGroup{
			{Targets: []string{"198.18.0.7:15090"}, Labels: with(podCommon("false"), "__meta_kubernetes_endpoints_name", "productpage", "__meta_kubernetes_service_name", "productpage",
				"__meta_kubernetes_pod_container_name", "istio-proxy", "__meta_kubernetes_pod_container_image", "meshlab",
				"__meta_kubernetes_pod_container_port_number", "15090", "__meta_kubernetes_pod_container_port_name", "http-envoy-prom",
				"__meta_kubernetes_pod_container_port_protocol", "TCP")},
			{Targets: []string{"198.18.0.7:9080"}, Labels: with(podCommon("false"), "__meta_kubernetes_endpoints_name", "productpage", "__meta_kubernetes_service_name", "productpage",
				"__meta_kubernetes_endpoint_port_name", "http", "__meta_kubernetes_endpoint_port_protocol", "TCP",
				"__meta_kubernetes_endpoint_ready", "false", "__meta_kubernetes_endpoint_address_target_kind", "Pod",
				"__meta_kubernetes_endpoint_address_target_name", "productpage-v1-5d9b-x1", "__meta_kubernetes_endpoint_node_name", "node1",
				"__meta_kubernetes_pod_container_name", "productpage", "__meta_kubernetes_pod_container_image", "bookinfo/productpage:1.20",
				"__meta_kubernetes_pod_container_port_number", "9080", "__meta_kubernetes_pod_container_port_name", "",
				"__meta_kubernetes_pod_container_port_protocol", "TCP")},
		},
	}, {
		name: "endpoints: a failed pod is no endpoint",
		snap: registry.Snapshot{Services: []registry.Service{svc}, Workloads: []registry.Workload{failed}},
		role: RoleEndpoints,
	}, {
		name: "endpoints: a Service without a selector has no controller-made Endpoints",
		snap: registry.Snapshot{Services: []registry.Service{{Name: "ext", Namespace: "default", Ports: []registry.Port{{Port: 80}}}}, Workloads: []registry.Workload{productpage(true)}},
		role: RoleEndpoints,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Targets(tt.snap, tt.role, tt.namespaces)
			if len(got) != len(tt.want) {
				t.Fatalf("%d groups, want %d: %+v", len(got), len(tt.want), got)
			}
			for i := range got {
				if !reflect.DeepEqual(got[i], tt.want[i]) {
					t.Errorf("group %d:\n got %v\nwant %v", i, got[i], tt.want[i])
					for k, v := range tt.want[i].Labels {
						if gv, ok := got[i].Labels[k]; !ok || gv != v {
							t.Errorf("  label %s = %q (present %v), want %q", k, gv, ok, v)
						}
					}
					for k, v := range got[i].Labels {
						if _, ok := tt.want[i].Labels[k]; !ok {
							t.Errorf("  extra label %s = %q", k, v)
						}
					}
				}
			}
		})
	}
}

func TestSanitizeLabelName(t *testing.T) {
	for in, want := range map[string]string{
		"app":                       "app",
		"security.istio.io/tlsMode": "security_istio_io_tlsMode",
		"app.kubernetes.io/name":    "app_kubernetes_io_name",
		"ünïcode-key":               "_n_code_key",
	} {
		if got := sanitize(in); got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
	}
}
