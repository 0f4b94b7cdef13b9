package kube

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/meshlab/meshlab/controlplane/registry"
)

func ptr[T any](v T) *T { return &v }

func service(name string, ip string, sel map[string]string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": name}},
		Spec: corev1.ServiceSpec{ClusterIP: ip, Selector: sel, Ports: ports}}
}

func pod(name, ip string, labels map[string]string, ready bool) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: labels},
		Spec:   corev1.PodSpec{ServiceAccountName: "bookinfo-" + labels["app"]},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}}}
}

type ep struct {
	ip    string
	pod   string
	ready *bool
}

func slice(svc string, ports []discoveryv1.EndpointPort, eps ...ep) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: svc + "-abc", Namespace: "default",
		Labels: map[string]string{discoveryv1.LabelServiceName: svc}}, AddressType: discoveryv1.AddressTypeIPv4, Ports: ports}
	for _, e := range eps {
		x := discoveryv1.Endpoint{Addresses: []string{e.ip}, Conditions: discoveryv1.EndpointConditions{Ready: e.ready}}
		if e.pod != "" {
			x.TargetRef = &corev1.ObjectReference{Kind: "Pod", Name: e.pod, Namespace: "default"}
		}
		s.Endpoints = append(s.Endpoints, x)
	}
	return s
}

func TestTranslate(t *testing.T) {
	reviews := map[string]string{"app": "reviews"}
	tests := []struct {
		name   string
		svcs   []*corev1.Service
		slices []*discoveryv1.EndpointSlice
		pods   []*corev1.Pod
		want   registry.Snapshot
	}{
		{
			name: "service ports: numeric, same, named target resolved through the slice, appProtocol, UDP",
			svcs: []*corev1.Service{service("reviews", "10.96.0.10", reviews,
				corev1.ServicePort{Name: "http", Port: 9080, TargetPort: intstr.FromInt32(9080)},
				corev1.ServicePort{Name: "grpc", Port: 80, TargetPort: intstr.FromString("grpc-port"), AppProtocol: ptr("grpc")},
				corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP})},
			slices: []*discoveryv1.EndpointSlice{slice("reviews", []discoveryv1.EndpointPort{{Name: ptr("grpc"), Port: ptr(int32(7070))}})},
			want: registry.Snapshot{Services: []registry.Service{{Name: "reviews", Namespace: "default", VIP: netip.MustParseAddr("10.96.0.10"),
				Selector: reviews, Labels: map[string]string{"app": "reviews"}, Ports: []registry.Port{
					{Name: "http", Port: 9080}, {Name: "grpc", Port: 80, TargetPort: 7070, AppProtocol: "grpc"}, {Name: "dns", Port: 53, Protocol: "UDP"}}}}},
		},
		{
			name: "headless service has no VIP",
			svcs: []*corev1.Service{service("mongodb", "None", nil)},
			want: registry.Snapshot{Services: []registry.Service{{Name: "mongodb", Namespace: "default", Labels: map[string]string{"app": "mongodb"}}}},
		},
		{
			name: "pods: readiness from the slice overrides the pod's; pods with no IP, finished or on the host network are left out",
			pods: []*corev1.Pod{
				pod("reviews-v1-1", "198.18.0.5", map[string]string{"app": "reviews", "version": "v1"}, false),
				pod("reviews-v2-1", "198.18.0.6", map[string]string{"app": "reviews", "version": "v2"}, true),
				pod("pending", "", reviews, false),
				func() *corev1.Pod {
					p := pod("done", "198.18.0.7", reviews, true)
					p.Status.Phase = corev1.PodSucceeded
					return p
				}(),
				func() *corev1.Pod { p := pod("host", "198.18.0.8", reviews, true); p.Spec.HostNetwork = true; return p }(),
			},
			slices: []*discoveryv1.EndpointSlice{slice("reviews", nil, ep{ip: "198.18.0.5", pod: "reviews-v1-1"}, ep{ip: "198.18.0.6", pod: "reviews-v2-1", ready: ptr(false)})},
			want: registry.Snapshot{Workloads: []registry.Workload{
				{Name: "reviews-v1-1", Namespace: "default", IP: netip.MustParseAddr("198.18.0.5"), Labels: map[string]string{"app": "reviews", "version": "v1"}, ServiceAccount: "bookinfo-reviews", Ready: true},
				{Name: "reviews-v2-1", Namespace: "default", IP: netip.MustParseAddr("198.18.0.6"), Labels: map[string]string{"app": "reviews", "version": "v2"}, ServiceAccount: "bookinfo-reviews", Ready: false},
			}},
		},
		{
			name: "endpoints of unknown pods carry the service's selector; a selectorless service's are left out",
			svcs: []*corev1.Service{service("reviews", "10.96.0.10", reviews), service("external", "10.96.0.11", nil)},
			slices: []*discoveryv1.EndpointSlice{
				slice("reviews", nil, ep{ip: "198.18.1.1", pod: "reviews-x"}, ep{ip: "198.18.1.2", ready: ptr(false)}),
				slice("external", nil, ep{ip: "198.18.9.9"}),
			},
			want: registry.Snapshot{
				Services: []registry.Service{
					{Name: "external", Namespace: "default", VIP: netip.MustParseAddr("10.96.0.11"), Labels: map[string]string{"app": "external"}},
					{Name: "reviews", Namespace: "default", VIP: netip.MustParseAddr("10.96.0.10"), Selector: reviews, Labels: map[string]string{"app": "reviews"}},
				},
				Workloads: []registry.Workload{
					{Name: "198-18-1-2", Namespace: "default", IP: netip.MustParseAddr("198.18.1.2"), Labels: reviews, Ready: false},
					{Name: "reviews-x", Namespace: "default", IP: netip.MustParseAddr("198.18.1.1"), Labels: reviews, Ready: true},
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Translate(tt.svcs, tt.slices, tt.pods)
			g, _ := json.MarshalIndent(got, "", " ")
			w, _ := json.MarshalIndent(tt.want, "", " ")
			if string(g) != string(w) {
				t.Fatalf("got\n%s\nwant\n%s", g, w)
			}
		})
	}
}

func TestSync(t *testing.T) {
	reg := registry.New()
	a := registry.Service{Name: "a", Namespace: "default"}
	b := registry.Service{Name: "b", Namespace: "default"}
	w := registry.Workload{Name: "w", Namespace: "default", IP: netip.MustParseAddr("198.18.0.1")}
	if !Sync(reg, registry.Snapshot{Services: []registry.Service{a, b}, Workloads: []registry.Workload{w}}) {
		t.Fatal("first sync reported no change")
	}
	if Sync(reg, registry.Snapshot{Services: []registry.Service{a, b}, Workloads: []registry.Workload{w}}) {
		t.Fatal("the same state again reported a change")
	}
	w.Ready = true
	if !Sync(reg, registry.Snapshot{Services: []registry.Service{a}, Workloads: []registry.Workload{w}}) {
		t.Fatal("a removed service and a changed workload reported no change")
	}
	snap := reg.Snapshot()
	if len(snap.Services) != 1 || snap.Services[0].Name != "a" || len(snap.Workloads) != 1 || !snap.Workloads[0].Ready {
		t.Fatalf("registry %+v", snap)
	}
}

func TestResource(t *testing.T) {
	tests := []struct {
		name, doc, err string
	}{
		{"valid, with the API server's bookkeeping", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default, resourceVersion: "42", uid: abc, generation: 1, creationTimestamp: "2026-03-01T12:00:05Z", managedFields: [{manager: kubectl}]}
spec: {hosts: [reviews], http: [{route: [{destination: {host: reviews, subset: v1}}]}]}
status: {}`, ""},
		{"invalid", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec: {hosts: [reviews], http: [{route: [{destination: {subset: v1}}]}]}`, "VirtualService default/reviews: spec.http[0].route[0].destination.host: required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j, err := yaml.YAMLToJSON([]byte(tt.doc))
			if err != nil {
				t.Fatal(err)
			}
			u := &unstructured.Unstructured{}
			if err := u.UnmarshalJSON(j); err != nil {
				t.Fatal(err)
			}
			r, _, err := Resource(u)
			if tt.err != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				if r.Key() != "VirtualService/default/reviews" {
					t.Fatalf("an invalid resource is not identified: %q", r.Key())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Key() != "VirtualService/default/reviews" || r.Revision != 0 || r.Spec == nil {
				t.Fatalf("resource %+v", r)
			}
			// The API server's creation time is kept: Istio picks the
			// oldest of conflicting policies by it.
			if want := time.Date(2026, 3, 1, 12, 0, 5, 0, time.UTC); !r.CreationTimestamp.Equal(want) {
				t.Fatalf("created %v, want the API server's %v", r.CreationTimestamp, want)
			}
		})
	}
}
