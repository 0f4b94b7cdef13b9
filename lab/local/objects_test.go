package local

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/meshlab/meshlab/controlplane"
	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/controlplane/registry"
	"github.com/meshlab/meshlab/lab"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/")

var t0 = time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)

func appPod(name string, ready bool, mods ...func(*lab.Pod)) lab.Pod {
	p := lab.Pod{
		Namespace: "foo", Name: name, Deployment: "httpbin",
		Labels: map[string]string{"app": "httpbin", appsv1.DefaultDeploymentUniqueLabelKey: "5d8f7c"},
		IP:     "198.18.0.7", Phase: "Running", Ready: ready, CreatedAt: t0, TemplateHash: "5d8f7c",
		Containers: []lab.Container{
			{Name: "istio-proxy", Running: true, UID: 1337, GID: 1337},
			{Name: "httpbin", Running: true, UID: 20001, GID: 20001},
		},
	}
	for _, m := range mods {
		m(&p)
	}
	return p
}

// kubectl's READY and STATUS columns, as `kubectl get pods` computes them
// from a pod (printers' printPod, shortened to what the lab shows).
func readyAndStatus(p corev1.Pod) (string, string) {
	ready := 0
	status := string(p.Status.Phase)
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Ready {
			ready++
		}
		if cs.State.Waiting != nil && cs.State.Waiting.Reason != "" {
			status = cs.State.Waiting.Reason
		}
		if cs.State.Terminated != nil && cs.State.Terminated.Reason != "" {
			status = cs.State.Terminated.Reason
		}
	}
	if p.DeletionTimestamp != nil {
		status = "Terminating"
	}
	return fmt.Sprintf("%d/%d", ready, len(p.Spec.Containers)), status
}

func TestToPod(t *testing.T) {
	now := t0.Add(time.Minute)
	tests := []struct {
		name         string
		pod          lab.Pod
		ready        string
		status       string
		restarts     int32
		podReady     corev1.ConditionStatus
		owner        string
		waitingReson string
	}{
		{"injected and ready", appPod("httpbin-5d8f7c-abcde", true), "2/2", "Running", 0, corev1.ConditionTrue, "httpbin-5d8f7c", ""},
		{"not injected", appPod("httpbin-5d8f7c-abcde", true, func(p *lab.Pod) { p.Containers = p.Containers[1:] }),
			"1/1", "Running", 0, corev1.ConditionTrue, "httpbin-5d8f7c", ""},
		{"running, not ready yet", appPod("httpbin-5d8f7c-abcde", false), "0/2", "Running", 0, corev1.ConditionFalse, "httpbin-5d8f7c", ""},
		{"app crash-looping", appPod("httpbin-5d8f7c-abcde", false, func(p *lab.Pod) {
			p.Containers[1].Running, p.Containers[1].Restarts, p.Containers[1].LastExit = false, 3, "exit status 2"
		}), "0/2", "CrashLoopBackOff", 3, corev1.ConditionFalse, "httpbin-5d8f7c", "CrashLoopBackOff"},
		{"terminating", appPod("httpbin-5d8f7c-abcde", true, func(p *lab.Pod) { p.Terminating = true }),
			"2/2", "Terminating", 0, corev1.ConditionTrue, "httpbin-5d8f7c", ""},
		{"starting", appPod("httpbin-5d8f7c-abcde", false, func(p *lab.Pod) {
			p.Phase = "Pending"
			p.Containers[1].Running = false
		}), "0/2", "ContainerCreating", 0, corev1.ConditionFalse, "httpbin-5d8f7c", "ContainerCreating"},
		{"older record: hash from the name", appPod("ratings-v1-0a1b2c3d-xk2lp", true, func(p *lab.Pod) {
			p.Deployment, p.TemplateHash, p.Labels = "ratings-v1", "", map[string]string{"app": "ratings"}
		}), "2/2", "Running", 0, corev1.ConditionTrue, "ratings-v1-0a1b2c3d", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := toPod(tt.pod, "node1", now)
			ready, status := readyAndStatus(pod)
			if ready != tt.ready || status != tt.status {
				t.Errorf("READY %s STATUS %s, want %s %s", ready, status, tt.ready, tt.status)
			}
			var restarts int32
			for _, cs := range pod.Status.ContainerStatuses {
				restarts += cs.RestartCount
			}
			if restarts != tt.restarts {
				t.Errorf("RESTARTS %d, want %d", restarts, tt.restarts)
			}
			for _, c := range pod.Status.Conditions {
				if (c.Type == corev1.PodReady || c.Type == corev1.ContainersReady) && c.Status != tt.podReady {
					t.Errorf("condition %s = %s, want %s", c.Type, c.Status, tt.podReady)
				}
			}
			if len(pod.OwnerReferences) != 1 || pod.OwnerReferences[0].Kind != "ReplicaSet" || pod.OwnerReferences[0].Name != tt.owner {
				t.Errorf("owner %+v, want ReplicaSet %s", pod.OwnerReferences, tt.owner)
			}
			if (pod.DeletionTimestamp != nil) != tt.pod.Terminating {
				t.Errorf("deletionTimestamp %v with terminating %v", pod.DeletionTimestamp, tt.pod.Terminating)
			}
			if pod.Status.HostIP != "198.18.0.1" || pod.Status.PodIP != tt.pod.IP || pod.Spec.NodeName != "node1" ||
				!pod.CreationTimestamp.Time.Equal(t0) || pod.Status.StartTime == nil {
				t.Errorf("hostIP %s podIP %s node %s created %v start %v", pod.Status.HostIP, pod.Status.PodIP, pod.Spec.NodeName, pod.CreationTimestamp, pod.Status.StartTime)
			}
			if tt.name == "app crash-looping" {
				last := pod.Status.ContainerStatuses[1].LastTerminationState.Terminated
				if last == nil || last.ExitCode != 2 {
					t.Errorf("lastState of the crashed container: %+v, want exit code 2", last)
				}
			}
		})
	}
}

// TestToPodGolden: the whole of an injected pod with its recorded spec, as
// `get pod -o yaml` would show it.
func TestToPodGolden(t *testing.T) {
	p := appPod("httpbin-5d8f7c-abcde", true)
	p.Annotations = map[string]string{"sidecar.istio.io/status": `{"containers":["istio-proxy"]}`}
	p.Spec = &corev1.PodSpec{
		ServiceAccountName: "httpbin",
		InitContainers:     []corev1.Container{{Name: "istio-init", Image: Image + ":v0.1.0"}},
		Containers: []corev1.Container{
			{Name: "istio-proxy", Image: Image + ":v0.1.0", Ports: []corev1.ContainerPort{{Name: "http-envoy-prom", ContainerPort: 15090}}},
			{Name: "httpbin", Image: Image + ":v0.1.0", Args: []string{"httpbin", "--port", "8080"}},
		},
	}
	got, err := yaml.Marshal(toPod(p, "node1", t0))
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "pod-injected.yaml")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("toPod differs from %s (go test -run TestToPodGolden -update rewrites it):\n%s", golden, got)
	}
}

func TestMinimalSpec(t *testing.T) {
	// A record without a spec still answers the walkthrough's jsonpath
	// {.spec.containers[*].ports[*].name} with http-envoy-prom.
	pod := toPod(appPod("httpbin-5d8f7c-abcde", true), "node1", t0)
	if len(pod.Spec.Containers) != 2 || pod.Spec.Containers[0].Ports[0].Name != "http-envoy-prom" || pod.Spec.Containers[1].Image != Image {
		t.Errorf("spec built from the containers: %+v", pod.Spec.Containers)
	}
}

func testDeployment(ns, name string, replicas int32, mods ...func(*appsv1.Deployment)) appsv1.Deployment {
	d := appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Generation: 2},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas,
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: Image}}}}},
	}
	for _, m := range mods {
		m(&d)
	}
	return d
}

func TestDeploymentStatus(t *testing.T) {
	d := testDeployment("foo", "httpbin", 2)
	cur := TemplateHash(&d.Spec.Template)
	pod := func(name, hash string, ready, terminating bool) lab.Pod {
		return lab.Pod{Namespace: "foo", Name: name, Deployment: "httpbin", TemplateHash: hash, Ready: ready, Terminating: terminating, CreatedAt: t0}
	}
	tests := []struct {
		name                                 string
		pods                                 []lab.Pod
		replicas, ready, available, upToDate int32
		unavailable                          int32
		availableCond                        corev1.ConditionStatus
		progressingReason                    string
	}{
		{"settled", []lab.Pod{pod("a", cur, true, false), pod("b", cur, true, false)}, 2, 2, 2, 2, 0, corev1.ConditionTrue, "NewReplicaSetAvailable"},
		{"none yet", nil, 0, 0, 0, 0, 2, corev1.ConditionFalse, "ReplicaSetUpdated"},
		{"mid rollout: one new pod not ready, old ones serving", []lab.Pod{pod("a", "old", true, false), pod("b", "old", true, false), pod("c", cur, false, false)},
			3, 2, 2, 1, 1, corev1.ConditionTrue, "ReplicaSetUpdated"},
		{"old pod draining does not count", []lab.Pod{pod("a", "old", true, true), pod("b", cur, true, false), pod("c", cur, true, false)},
			2, 2, 2, 2, 0, corev1.ConditionTrue, "NewReplicaSetAvailable"},
		{"one of two down", []lab.Pod{pod("a", cur, true, false), pod("b", cur, false, false)}, 2, 1, 1, 2, 1, corev1.ConditionFalse, "ReplicaSetUpdated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := deploymentStatus(d, cur, tt.pods)
			got := []int32{st.Replicas, st.ReadyReplicas, st.AvailableReplicas, st.UpdatedReplicas, st.UnavailableReplicas}
			want := []int32{tt.replicas, tt.ready, tt.available, tt.upToDate, tt.unavailable}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("replicas/ready/available/updated/unavailable = %v, want %v", got, want)
			}
			if st.ObservedGeneration != 2 {
				t.Errorf("observedGeneration %d, want the Deployment's generation 2", st.ObservedGeneration)
			}
			if st.Conditions[0].Type != appsv1.DeploymentAvailable || st.Conditions[0].Status != tt.availableCond {
				t.Errorf("Available condition %+v, want %s", st.Conditions[0], tt.availableCond)
			}
			if st.Conditions[1].Reason != tt.progressingReason {
				t.Errorf("Progressing reason %s, want %s", st.Conditions[1].Reason, tt.progressingReason)
			}
		})
	}
}

func TestTemplateHash(t *testing.T) {
	a := testDeployment("foo", "httpbin", 1).Spec.Template
	b := *a.DeepCopy()
	if TemplateHash(&a) != TemplateHash(&b) {
		t.Fatal("equal templates hash differently")
	}
	b.Annotations = map[string]string{RestartedAtAnnotation: "2026-12-06T10:00:00Z"}
	if TemplateHash(&a) == TemplateHash(&b) {
		t.Fatal("a restartedAt annotation leaves the hash as it was: rollout restart would change nothing")
	}
	c := *a.DeepCopy()
	c.Spec.Containers[0].Args = []string{"--port", "9090"}
	if TemplateHash(&a) == TemplateHash(&c) {
		t.Fatal("a changed container leaves the hash as it was")
	}
}

func TestDeployments(t *testing.T) {
	stored := []appsv1.Deployment{testDeployment("foo", "httpbin", 1), testDeployment("bar", "sleep", 1)}
	cur := TemplateHash(&stored[0].Spec.Template)
	pods := []lab.Pod{
		{Namespace: "foo", Name: "httpbin-x-1", Deployment: "httpbin", TemplateHash: cur, Ready: true, CreatedAt: t0},
		{Namespace: "istio-system", Name: "istiod-1", Deployment: "istiod", Ready: true, CreatedAt: t0,
			Labels: map[string]string{"app": "istiod", "istio": "pilot"}, Containers: []lab.Container{{Name: "discovery", Running: true}}},
		{Namespace: "istio-system", Name: "istio-ingressgateway-1", Deployment: "istio-ingressgateway", Ready: false, CreatedAt: t0,
			Labels: map[string]string{"app": "istio-ingressgateway", "istio": "ingressgateway"}, Containers: []lab.Container{{Name: "istio-proxy", Running: true}}},
	}
	tests := []struct {
		ns   string
		want []string // ns/name ready/replicas
	}{
		{"", []string{"bar/sleep 0/1", "foo/httpbin 1/1", "istio-system/istio-ingressgateway 0/1", "istio-system/istiod 1/1"}},
		{"istio-system", []string{"istio-system/istio-ingressgateway 0/1", "istio-system/istiod 1/1"}},
		{"foo", []string{"foo/httpbin 1/1"}},
	}
	for _, tt := range tests {
		t.Run("ns="+tt.ns, func(t *testing.T) {
			var in []appsv1.Deployment
			for _, d := range stored {
				if tt.ns == "" || d.Namespace == tt.ns {
					in = append(in, d)
				}
			}
			var got []string
			for _, d := range deployments(in, pods, tt.ns) {
				got = append(got, fmt.Sprintf("%s/%s %d/%d", d.Namespace, d.Name, d.Status.ReadyReplicas, *d.Spec.Replicas))
				if d.Name == "istiod" {
					if d.Spec.Selector.MatchLabels["istio"] != "pilot" || d.Spec.Template.Spec.Containers[0].Name != "discovery" || d.Kind != "Deployment" {
						t.Errorf("istiod's Deployment: %+v", d)
					}
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("deployments = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestServices(t *testing.T) {
	np := corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "reviews-nodeport", Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Ports: []corev1.ServicePort{{Name: "http", Port: 9080}}}}
	headless := corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "default"},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "tcp", Port: 5432}}}}
	reg := []registry.Service{
		{Name: "reviews-nodeport", Namespace: "default", VIP: netip.MustParseAddr("10.96.0.12"), Type: "NodePort",
			Ports: []registry.Port{{Name: "http", Port: 9080, NodePort: 30123}}},
		{Name: "db", Namespace: "default", Headless: true, Ports: []registry.Port{{Name: "tcp", Port: 5432}}},
		{Name: "istiod", Namespace: "istio-system", VIP: netip.MustParseAddr("10.96.0.2"), Selector: map[string]string{"app": "istiod"},
			Ports: []registry.Port{{Name: "grpc-xds", Port: 15010}, {Name: "http-monitoring", Port: 15014}}},
		{Name: "istio-ingressgateway", Namespace: "istio-system", VIP: netip.MustParseAddr("10.96.0.3"),
			Ports: []registry.Port{{Name: "http2", Port: 80, TargetPort: 8080}}},
	}
	tests := []struct {
		ns   string
		want []string
	}{
		{"", []string{"default/db None", "default/reviews-nodeport 10.96.0.12 9080:30123", "istio-system/istio-ingressgateway 10.96.0.3 80->8080",
			"istio-system/istiod 10.96.0.2 15010->15010 15014->15014"}},
		{"default", []string{"default/db None", "default/reviews-nodeport 10.96.0.12 9080:30123"}},
	}
	for _, tt := range tests {
		t.Run("ns="+tt.ns, func(t *testing.T) {
			var got []string
			for _, s := range services([]corev1.Service{np, headless}, reg, tt.ns) {
				row := s.Namespace + "/" + s.Name + " " + s.Spec.ClusterIP
				for _, p := range s.Spec.Ports {
					switch {
					case p.NodePort != 0:
						row += fmt.Sprintf(" %d:%d", p.Port, p.NodePort)
					case p.TargetPort.IntValue() != 0:
						row += fmt.Sprintf(" %d->%d", p.Port, p.TargetPort.IntValue())
					}
				}
				got = append(got, row)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("services =\n%v\nwant\n%v", got, tt.want)
			}
		})
	}
}

func TestNamespaces(t *testing.T) {
	tests := []struct {
		name   string
		stored []corev1.Namespace
		pods   []lab.Pod
		want   []string
	}{
		{"nothing stored", nil, nil, []string{"default", "istio-system", "kube-system"}},
		{"stored, with labels kept", []corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "foo", Labels: map[string]string{"istio-injection": "enabled"}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "default", Labels: map[string]string{"istio-injection": "enabled"}}}}, nil,
			[]string{"default", "foo", "istio-system", "kube-system"}},
		{"a namespace only pods name", nil, []lab.Pod{{Namespace: "book-demo"}}, []string{"book-demo", "default", "istio-system", "kube-system"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, n := range namespaces(tt.stored, tt.pods) {
				if n.Status.Phase != corev1.NamespaceActive {
					t.Errorf("namespace %s is %q, want Active", n.Name, n.Status.Phase)
				}
				if n.Name == "default" && len(tt.stored) > 0 && n.Labels["istio-injection"] != "enabled" {
					t.Errorf("the stored default namespace lost its labels: %v", n.Labels)
				}
				got = append(got, n.Name)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("namespaces = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseKeyAndExitCode(t *testing.T) {
	for key, want := range map[string]lab.ObjectRef{
		"VirtualService/default/reviews": {Group: "networking.istio.io", Kind: "VirtualService", Namespace: "default", Name: "reviews"},
		"Namespace//foo":                 {Kind: "Namespace", Name: "foo"},
		"Deployment/foo/web":             {Group: "apps", Kind: "Deployment", Namespace: "foo", Name: "web"},
	} {
		if got := lab.RefOfKey(key); got != want {
			t.Errorf("RefOfKey(%q) = %+v, want %+v", key, got, want)
		}
	}
	for s, want := range map[string]int32{"exit status 3": 3, "signal: killed": 137, "signal: terminated": 143, "start: no such file": 1} {
		if got := exitCode(s); got != want {
			t.Errorf("exitCode(%q) = %d, want %d", s, got, want)
		}
	}
}

func TestDefaultNamespace(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"kind":"Service","metadata":{"name":"a"}}`, "bar"},
		{`{"kind":"Service","metadata":{"name":"a","namespace":"foo"}}`, "foo"},
		{`{"kind":"Namespace","metadata":{"name":"a"}}`, ""},
	}
	for _, tt := range tests {
		out, err := defaultNamespace(json.RawMessage(tt.in), "bar")
		if err != nil {
			t.Fatal(err)
		}
		var u unstructured.Unstructured
		if err := u.UnmarshalJSON(out); err != nil {
			t.Fatal(err)
		}
		if u.GetNamespace() != tt.want {
			t.Errorf("%s in bar: namespace %q, want %q", tt.in, u.GetNamespace(), tt.want)
		}
	}
}

// fakeStore is a control plane API for Deployments only, with Kubernetes'
// optimistic concurrency: an apply must carry the stored resourceVersion.
// interfere changes the object behind the client's back before the first
// n applies, as another user's scale would.
type fakeStore struct {
	mu        sync.Mutex
	obj       map[string]any
	version   int
	interfere int
	applies   int
}

func (f *fakeStore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r.URL.Path {
	case api.PathResources:
		if f.obj == nil || r.URL.Query().Get("name") != "httpbin" {
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(api.Error{Message: "Deployment not found"})
			return
		}
		unstructured.SetNestedField(f.obj, fmt.Sprint(f.version), "metadata", "resourceVersion")
		b, _ := json.Marshal(f.obj)
		_ = json.NewEncoder(w).Encode(api.ResourceList{Items: []json.RawMessage{b}})
	case api.PathApply:
		var req api.ApplyRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Documents) != 1 {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		f.applies++
		if f.interfere > 0 {
			f.interfere--
			f.version++
		}
		var u unstructured.Unstructured
		if err := u.UnmarshalJSON(req.Documents[0].Object); err != nil || u.GetResourceVersion() != fmt.Sprint(f.version) {
			w.WriteHeader(http.StatusConflict)
			_ = json.NewEncoder(w).Encode(api.Error{Message: "nothing was applied: Deployment foo/httpbin has been modified"})
			return
		}
		f.obj = u.Object
		f.version++
		_ = json.NewEncoder(w).Encode(api.Result{Changes: []api.Change{{Key: "Deployment/foo/httpbin", Op: "configured"}}})
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func TestRolloutRestartAndScale(t *testing.T) {
	d := testDeployment("foo", "httpbin", 2)
	d.APIVersion, d.Kind = "apps/v1", "Deployment"
	d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: &intstr.IntOrString{Type: intstr.String, StrVal: "25%"}}
	obj, err := runtimeToMap(d)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		interfere int
		act       func(l *Lab) error
		check     func(t *testing.T, u unstructured.Unstructured)
		wantErr   string
	}{
		{"restart", 0, func(l *Lab) error { return l.RolloutRestart(context.Background(), "foo", "httpbin") },
			func(t *testing.T, u unstructured.Unstructured) {
				at, _, _ := unstructured.NestedString(u.Object, "spec", "template", "metadata", "annotations", RestartedAtAnnotation)
				if ts, err := time.Parse(time.RFC3339, at); err != nil || time.Since(ts) > time.Minute {
					t.Errorf("restartedAt = %q (%v), want now in RFC 3339", at, err)
				}
			}, ""},
		{"scale after two writes by someone else", 2, func(l *Lab) error { return l.Scale(context.Background(), "foo", "httpbin", 3) },
			func(t *testing.T, u unstructured.Unstructured) {
				if n, _, _ := unstructured.NestedInt64(u.Object, "spec", "replicas"); n != 3 {
					t.Errorf("replicas = %d, want 3", n)
				}
				if s, _, _ := unstructured.NestedString(u.Object, "spec", "strategy", "rollingUpdate", "maxSurge"); s != "25%" {
					t.Errorf("the rest of the spec changed: maxSurge %q", s)
				}
			}, ""},
		{"someone keeps writing", 100, func(l *Lab) error { return l.Scale(context.Background(), "foo", "httpbin", 3) }, nil, "has been modified"},
		{"missing", 0, func(l *Lab) error { return l.Scale(context.Background(), "foo", "nope", 3) }, nil,
			"deployment foo/nope not found; see `meshlab get deployments -n foo`"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeStore{obj: runtimeCopy(obj), interfere: tt.interfere}
			srv := httptest.NewServer(f)
			defer srv.Close()
			l, err := Open(t.TempDir(), WithControlPlane(srv.URL, "t"))
			if err != nil {
				t.Fatal(err)
			}
			err = tt.act(l)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if tt.interfere > 0 && f.applies != conflictRetries {
					t.Errorf("%d applies, want %d tries", f.applies, conflictRetries)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.applies != tt.interfere+1 {
				t.Errorf("%d applies, want %d (one per conflict, then the one that held)", f.applies, tt.interfere+1)
			}
			tt.check(t, unstructured.Unstructured{Object: f.obj})
		})
	}
}

func runtimeToMap(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(b, &m)
}

func runtimeCopy(m map[string]any) map[string]any {
	return runtime.DeepCopyJSON(m)
}

// TestApplyDeleteList: Apply, List and Delete against a real control plane:
// a document without a namespace lands in the request's, results carry the
// kind's group, and a bad document changes nothing and is named.
func TestApplyDeleteList(t *testing.T) {
	cpDir := t.TempDir()
	s, err := controlplane.New(controlplane.Options{StateDir: cpDir})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() { hs.Close(); s.Close() })
	token, err := lab.ReadAPIToken(cpDir)
	if err != nil {
		t.Fatal(err)
	}
	l, err := Open(t.TempDir(), WithControlPlane(hs.URL, token))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	vs := func(name, extra string) lab.Document {
		return lab.Document{Source: "vs.yaml", JSON: []byte(`{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"` + name + `"` + extra + `},"spec":{"hosts":["` + name + `"],"http":[{"route":[{"destination":{"host":"` + name + `"}}]}]}}`)}
	}
	res, err := l.Apply(ctx, lab.ApplyRequest{Namespace: "bar", Documents: []lab.Document{vs("reviews", ""), vs("ratings", `,"namespace":"foo"`)}})
	if err != nil {
		t.Fatal(err)
	}
	want := []lab.Change{
		{Ref: lab.ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Namespace: "bar", Name: "reviews"}, Op: "created"},
		{Ref: lab.ObjectRef{Group: "networking.istio.io", Kind: "VirtualService", Namespace: "foo", Name: "ratings"}, Op: "created"},
	}
	if fmt.Sprint(res.Changes) != fmt.Sprint(want) || res.Revision == 0 {
		t.Errorf("apply = %+v, want %+v and a revision", res, want)
	}
	items, err := l.List(ctx, "vs", "", "")
	if err != nil || len(items) != 2 {
		t.Fatalf("list = %d items, %v", len(items), err)
	}

	bad := vs("details", "")
	bad.Index = 1
	bad.JSON = []byte(strings.Replace(string(bad.JSON), `"hosts"`, `"hostz"`, 1))
	if _, err := l.Apply(ctx, lab.ApplyRequest{Namespace: "bar", Documents: []lab.Document{vs("productpage", ""), bad}}); err == nil ||
		!strings.Contains(err.Error(), "vs.yaml") || !strings.Contains(err.Error(), "hostz") {
		t.Errorf("apply of a bad document: %v; want an error naming the file and the field", err)
	}
	if items, _ := l.List(ctx, "vs", "", ""); len(items) != 2 {
		t.Errorf("a failed apply changed the store: %d VirtualServices", len(items))
	}

	res, err = l.Delete(ctx, []lab.ObjectRef{want[0].Ref})
	if err != nil || len(res.Changes) != 1 || res.Changes[0].Op != "deleted" || res.Changes[0].Ref != want[0].Ref {
		t.Errorf("delete = %+v, %v", res, err)
	}
	if _, err := l.Delete(ctx, []lab.ObjectRef{want[0].Ref}); err == nil {
		t.Error("delete of a missing object succeeded")
	}
}
