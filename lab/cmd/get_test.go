package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshlab/meshlab/lab"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/get/*.golden from the output")

// testNow is the fixed "now" every AGE and RESTARTS is measured against.
var testNow = time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)

func agoAt(d time.Duration) metav1.Time { return metav1.NewTime(testNow.Add(-d)) }

// fakeRuntime is a lab.Runtime holding objects in memory: a unit test of the
// CLI's logic (arguments, filtering, printing) needs no lab.
type fakeRuntime struct {
	lab.Runtime // the methods the CLI under test never calls panic
	pods        []corev1.Pod
	deployments []appsv1.Deployment
	services    []corev1.Service
	namespaces  []corev1.Namespace
	istio       []string // stored Istio resources as JSON

	listErr  error
	restarts []string // ns/name
	scales   []string // ns/name=replicas
}

func inNS[T any](items []T, ns string, nsOf func(*T) string) []T {
	var out []T
	for i := range items {
		if ns == "" || nsOf(&items[i]) == ns {
			out = append(out, items[i])
		}
	}
	return out
}

func (f *fakeRuntime) Name() string { return "fake" }

func (f *fakeRuntime) Pods(_ context.Context, ns string) ([]corev1.Pod, error) {
	return inNS(f.pods, ns, func(p *corev1.Pod) string { return p.Namespace }), f.listErr
}

func (f *fakeRuntime) Deployments(_ context.Context, ns string) ([]appsv1.Deployment, error) {
	return inNS(f.deployments, ns, func(d *appsv1.Deployment) string { return d.Namespace }), f.listErr
}

func (f *fakeRuntime) Services(_ context.Context, ns string) ([]corev1.Service, error) {
	return inNS(f.services, ns, func(s *corev1.Service) string { return s.Namespace }), f.listErr
}

func (f *fakeRuntime) Namespaces(context.Context) ([]corev1.Namespace, error) {
	return append([]corev1.Namespace(nil), f.namespaces...), f.listErr
}

// List does what the runtimes' List does for Istio kinds: kind by any of
// its names, "all" for every one, "" namespace or name for every one.
func (f *fakeRuntime) List(_ context.Context, kind, ns, name string) ([]json.RawMessage, error) {
	var out []json.RawMessage
	for _, s := range f.istio {
		var obj struct {
			Kind     string `json:"kind"`
			Metadata struct{ Name, Namespace string }
		}
		if err := json.Unmarshal([]byte(s), &obj); err != nil {
			return nil, err
		}
		k := strings.ToLower(obj.Kind)
		short := map[string]string{"virtualservice": "vs", "destinationrule": "dr"}[k]
		if kind != "all" && kind != k && kind != k+"s" && kind != short {
			continue
		}
		if (ns != "" && obj.Metadata.Namespace != ns) || (name != "" && obj.Metadata.Name != name) {
			continue
		}
		out = append(out, json.RawMessage(s))
	}
	return out, f.listErr
}

func (f *fakeRuntime) hasDeployment(ns, name string) bool {
	for _, d := range f.deployments {
		if d.Namespace == ns && d.Name == name {
			return true
		}
	}
	return false
}

func (f *fakeRuntime) RolloutRestart(_ context.Context, ns, name string) error {
	if !f.hasDeployment(ns, name) {
		return fmt.Errorf("deployments.apps %q not found", name)
	}
	f.restarts = append(f.restarts, ns+"/"+name)
	return nil
}

func (f *fakeRuntime) Scale(_ context.Context, ns, name string, replicas int32) error {
	if !f.hasDeployment(ns, name) {
		return fmt.Errorf("deployments.apps %q not found", name)
	}
	f.scales = append(f.scales, fmt.Sprintf("%s/%s=%d", ns, name, replicas))
	return nil
}

func ptrTo[T any](v T) *T { return &v }

func runningStatus(name string, ready bool, started time.Duration) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, Ready: ready, Started: ptrTo(true),
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: agoAt(started)}}}
}

// sidecarPod is an injected pod as the runtimes report one: istio-init
// done, the app and istio-proxy running and ready.
func sidecarPod(ns, name, app, ip string, created time.Duration) corev1.Pod {
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: agoAt(created),
			Labels:      map[string]string{"app": app, "version": "v1", "security.istio.io/tlsMode": "istio"},
			Annotations: map[string]string{"sidecar.istio.io/status": `{"containers":["istio-proxy"]}`}},
		Spec: corev1.PodSpec{
			NodeName:       "meshlab",
			InitContainers: []corev1.Container{{Name: "istio-init", Image: "meshlab.local/meshlab"}},
			Containers: []corev1.Container{
				{Name: app, Image: "docker.io/istio/examples-bookinfo-" + app + "-v1:1.20.3",
					Ports: []corev1.ContainerPort{{ContainerPort: 9080, Protocol: corev1.ProtocolTCP}}},
				{Name: "istio-proxy", Image: "meshlab.local/meshlab",
					Ports: []corev1.ContainerPort{{Name: "http-envoy-prom", ContainerPort: 15090, Protocol: corev1.ProtocolTCP}}},
			},
		},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodInitialized, Status: corev1.ConditionTrue},
				{Type: corev1.PodReady, Status: corev1.ConditionTrue},
			},
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "istio-init", Ready: true,
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}}}},
			ContainerStatuses: []corev1.ContainerStatus{runningStatus(app, true, created), runningStatus("istio-proxy", true, created)},
		},
	}
}

// getFixture is a lab with pods in and out of the mesh, one restarting, one
// going away and one still initializing, and every type of Service.
func getFixture() *fakeRuntime {
	productpage := sidecarPod("default", "productpage-v1-6d7f9c8b5-x7k2p", "productpage", "10.88.0.5", 5*time.Minute)

	terminating := sidecarPod("default", "reviews-v1-58b8c4f7d9-old01", "reviews", "10.88.0.7", 26*time.Hour)
	terminating.DeletionTimestamp = ptrTo(agoAt(3 * time.Second))

	crash := sidecarPod("default", "ratings-v1-7c9d7f8b6-crash", "ratings", "10.88.0.9", 90*time.Minute)
	crash.Status.Conditions[1].Status = corev1.ConditionFalse
	crash.Status.ContainerStatuses[0] = corev1.ContainerStatus{Name: "ratings", RestartCount: 4,
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
			Message: "back-off 40s restarting failed container"}},
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: 1, Reason: "Error", FinishedAt: agoAt(42 * time.Second)}},
	}

	initializing := sidecarPod("foo", "httpbin-5f6f7b7d8c-init1", "httpbin", "", 4*time.Second)
	initializing.Status.Phase = corev1.PodPending
	initializing.Status.PodIP, initializing.Status.PodIPs = "", nil
	initializing.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodInitialized, Status: corev1.ConditionFalse}}
	initializing.Status.InitContainerStatuses[0].State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	for i := range initializing.Status.ContainerStatuses {
		initializing.Status.ContainerStatuses[i].Ready = false
		initializing.Status.ContainerStatuses[i].State = corev1.ContainerState{
			Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}
	}

	// Outside the mesh: one container, no istio-init, no istio-proxy.
	sleep := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "legacy", Name: "sleep-7b6d4c5f9-q2w3e", CreationTimestamp: agoAt(3*time.Hour + 12*time.Minute),
			Labels: map[string]string{"app": "sleep"}},
		Spec: corev1.PodSpec{NodeName: "meshlab", Containers: []corev1.Container{{Name: "sleep", Image: "curlimages/curl"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.88.0.12", PodIPs: []corev1.PodIP{{IP: "10.88.0.12"}},
			Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			ContainerStatuses: []corev1.ContainerStatus{runningStatus("sleep", true, 3*time.Hour)}},
	}

	deploy := func(ns, name string, replicas, ready, updated, available int32, created time.Duration, app string) appsv1.Deployment {
		return appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: agoAt(created),
				Labels: map[string]string{"app": app}},
			Spec: appsv1.DeploymentSpec{Replicas: ptrTo(replicas),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app, "version": "v1"}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app, "version": "v1"}},
					Spec: corev1.PodSpec{Containers: []corev1.Container{
						{Name: app, Image: "docker.io/istio/examples-bookinfo-" + app + "-v1:1.20.3"}}}}},
			Status: appsv1.DeploymentStatus{Replicas: replicas, ReadyReplicas: ready, UpdatedReplicas: updated, AvailableReplicas: available},
		}
	}

	service := func(ns, name string, typ corev1.ServiceType, ip string, created time.Duration, ports ...corev1.ServicePort) corev1.Service {
		s := corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: agoAt(created),
				Labels: map[string]string{"app": name, "service": name}},
			Spec: corev1.ServiceSpec{Type: typ, ClusterIP: ip, ClusterIPs: []string{ip},
				Selector: map[string]string{"app": name}, Ports: ports},
		}
		return s
	}
	port := func(name string, p, nodePort int32) corev1.ServicePort {
		return corev1.ServicePort{Name: name, Port: p, NodePort: nodePort, Protocol: corev1.ProtocolTCP}
	}
	gateway := service("istio-system", "istio-ingressgateway", corev1.ServiceTypeLoadBalancer, "10.96.0.20", 49*time.Hour,
		port("http2", 80, 31380), port("https", 443, 31390))
	gateway.Spec.Selector = map[string]string{"istio": "ingressgateway"}
	gateway.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "172.18.255.200"}}
	ratings := service("default", "ratings", corev1.ServiceTypeClusterIP, "None", 2*time.Minute, port("http", 9080, 0))
	ratings.Name = "ratings-headless"
	udp := service("foo", "dns-echo", corev1.ServiceTypeClusterIP, "10.96.0.31", 9*24*time.Hour,
		corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}, port("dns-tcp", 53, 0))

	ns := func(name string, phase corev1.NamespacePhase, created time.Duration, lbls map[string]string) corev1.Namespace {
		return corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: agoAt(created), Labels: lbls},
			Status: corev1.NamespaceStatus{Phase: phase}}
	}

	f := &fakeRuntime{
		pods: []corev1.Pod{productpage, crash, terminating, initializing, sleep},
		deployments: []appsv1.Deployment{
			deploy("default", "productpage-v1", 1, 1, 1, 1, 5*time.Minute, "productpage"),
			deploy("default", "reviews-v1", 3, 2, 3, 2, 26*time.Hour, "reviews"),
			deploy("legacy", "sleep", 1, 1, 1, 1, 3*time.Hour+12*time.Minute, "sleep"),
		},
		services: []corev1.Service{
			service("default", "productpage", corev1.ServiceTypeClusterIP, "10.96.0.10", 5*time.Minute, port("http", 9080, 0)),
			ratings,
			service("default", "reviews-nodeport", corev1.ServiceTypeNodePort, "10.96.0.11", 90*time.Second, port("http", 9080, 30123)),
			udp,
			gateway,
		},
		namespaces: []corev1.Namespace{
			ns("default", corev1.NamespaceActive, 400*24*time.Hour, nil),
			ns("foo", corev1.NamespaceActive, 10*time.Minute, map[string]string{"istio-injection": "enabled"}),
			ns("istio-system", corev1.NamespaceActive, 49*time.Hour, nil),
			ns("legacy", corev1.NamespaceActive, 10*time.Minute, nil),
			ns("old", corev1.NamespaceTerminating, 59*time.Second, nil),
		},
		istio: []string{
			`{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"reviews","namespace":"default","labels":{"app":"reviews"},"resourceVersion":"7"},"spec":{"hosts":["reviews"],"http":[{"route":[{"destination":{"host":"reviews","subset":"v1"}}]}]}}`,
			`{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"reviews","namespace":"default","resourceVersion":"8"},"spec":{"host":"reviews"}}`,
			`{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"httpbin","namespace":"foo","resourceVersion":"9"},"spec":{"hosts":["httpbin.example.com"],"gateways":["httpbin-gateway"]}}`,
		},
	}
	// As the runtimes return them: by namespace, then name.
	sort.Slice(f.pods, func(i, j int) bool {
		a, b := f.pods[i], f.pods[j]
		return a.Namespace < b.Namespace || (a.Namespace == b.Namespace && a.Name < b.Name)
	})
	sort.Slice(f.services, func(i, j int) bool {
		a, b := f.services[i], f.services[j]
		return a.Namespace < b.Namespace || (a.Namespace == b.Namespace && a.Name < b.Name)
	})
	return f
}

// runCLI runs one meshlab command line against rt, as main does (flags after
// arguments included), and returns stdout, stderr and the exit code.
func runCLI(t *testing.T, rt lab.Runtime, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runCLIAt(t, rt, func() time.Time { return testNow }, args...)
}

// runCLIAt is runCLI with the clock AGE is measured against.
func runCLIAt(t *testing.T, rt lab.Runtime, clock func() time.Time, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	oldRuntime, oldNow := openRuntime, getClock
	t.Cleanup(func() { openRuntime, getClock = oldRuntime, oldNow })
	openRuntime = func(*cli.Context) (lab.Runtime, error) { return rt, nil }
	getClock = clock

	var out, errOut bytes.Buffer
	app := &cli.App{Name: "meshlab", Writer: &out, ErrWriter: &errOut, ExitErrHandler: func(*cli.Context, error) {},
		Commands: []*cli.Command{Get(), Rollout(), Scale()}}
	err := app.Run(Intersperse(app, append([]string{"meshlab"}, args...)))
	var exit cli.ExitCoder
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
		errOut.WriteString(err.Error() + "\n")
	default:
		code = 1
		errOut.WriteString(err.Error() + "\n")
	}
	return out.String(), errOut.String(), code
}

// TestGetGolden: every printer, against kubectl's output for the same
// objects (the golden files were checked column by column against kubectl's
// printers.go; a wrong column, width or value fails here).
func TestGetGolden(t *testing.T) {
	tests := []struct {
		golden string
		args   []string
	}{
		{"pods", []string{"get", "pods"}},
		{"pods-all-namespaces", []string{"get", "po", "-A"}},
		{"pods-wide", []string{"get", "pods", "-o", "wide", "-n", "default"}},
		{"pods-wide-all-namespaces", []string{"get", "pods", "-A", "-o", "wide"}},
		{"pods-legacy", []string{"get", "pods", "-n", "legacy"}},
		{"pods-init", []string{"get", "pods", "-n", "foo"}},
		{"pods-show-labels", []string{"get", "pods", "-n", "legacy", "--show-labels"}},
		{"pods-no-headers", []string{"get", "pods", "--no-headers"}},
		{"pods-selector", []string{"get", "pods", "-A", "-l", "app in (productpage,sleep)"}},
		{"pod-named", []string{"get", "pod", "ratings-v1-7c9d7f8b6-crash", "productpage-v1-6d7f9c8b5-x7k2p"}},
		{"pod-json", []string{"get", "pod", "productpage-v1-6d7f9c8b5-x7k2p", "-o", "json"}},
		{"pod-yaml", []string{"get", "pods/productpage-v1-6d7f9c8b5-x7k2p", "-o", "yaml"}},
		{"pods-json-list", []string{"get", "pods", "-l", "app=productpage", "-o", "json"}},
		{"pods-yaml-list", []string{"get", "pods", "-n", "legacy", "-o", "yaml"}},
		{"pods-name", []string{"get", "pods", "-o", "name"}},
		{"pod-jsonpath-ports", []string{"get", "pod/productpage-v1-6d7f9c8b5-x7k2p", "-o=jsonpath={.spec.containers[*].ports[*].name}"}},
		{"pod-jsonpath-quoted", []string{"get", "pod", "productpage-v1-6d7f9c8b5-x7k2p", "-o", "jsonpath='{.spec.containers[*].name}'"}},
		{"pods-jsonpath-items", []string{"get", "pods", "-l", "app=ratings", "-o", "jsonpath={.items[0].metadata.name}"}},
		{"pods-jsonpath-range", []string{"get", "pods", "-A", "-o", `jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name} {.status.podIP}{"\n"}{end}`}},
		{"pods-jsonpath-as-json", []string{"get", "pods", "-n", "legacy", "-o", "jsonpath-as-json={.items[*].spec.containers[*].name}"}},
		{"deployments", []string{"get", "deployments"}},
		{"deployments-wide", []string{"get", "deploy", "-o", "wide"}},
		{"deployments-all-namespaces", []string{"get", "deployments.apps", "-A"}},
		{"deployment-name", []string{"get", "deploy/reviews-v1", "-o", "name"}},
		{"services", []string{"get", "services"}},
		{"services-wide-all-namespaces", []string{"get", "svc", "-A", "-o", "wide"}},
		{"services-json", []string{"get", "svc", "-n", "foo", "-o", "json"}},
		{"namespaces", []string{"get", "namespaces"}},
		{"namespaces-all-namespaces", []string{"get", "ns", "-A"}},
		{"namespaces-selector", []string{"get", "ns", "-l", "istio-injection=enabled", "-o", "name"}},
		{"deploy-and-svc", []string{"get", "deploy,svc"}},
		{"deploy-and-svc-all-namespaces", []string{"get", "deploy,svc", "-A"}},
		{"istio-table", []string{"get", "vs", "-A"}},
		{"istio-single-json", []string{"get", "vs", "reviews", "-o", "json"}},
		{"istio-slash-yaml", []string{"get", "vs/reviews", "-o", "yaml"}},
		{"istio-name", []string{"get", "all", "-o", "name"}},
		{"istio-jsonpath", []string{"get", "virtualservices", "-A", "-o", "jsonpath={.items[*].spec.hosts[*]}"}},
		{"istio-selector", []string{"get", "vs", "-A", "-l", "app=reviews"}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			out, errOut, code := runCLI(t, getFixture(), tt.args...)
			if code != 0 || errOut != "" {
				t.Fatalf("meshlab %s: exit %d, stderr:\n%s", strings.Join(tt.args, " "), code, errOut)
			}
			path := filepath.Join("testdata", "get", tt.golden+".golden")
			if *updateGolden {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update-golden to write it)", err)
			}
			if out != string(want) {
				t.Errorf("meshlab %s:\n%s\nwant (%s):\n%s", strings.Join(tt.args, " "), out, path, want)
			}
		})
	}
}

// TestGetCommand: what get says besides tables: kubectl's "No resources
// found" and NotFound lines on stderr, usage errors (exit 2) that say what is
// wanted, runtime failures wrapped with what was being done (exit 1).
func TestGetCommand(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		listErr    error
		wantCode   int
		wantOut    string // exact stdout
		wantStderr string // substring of stderr; "" for an empty stderr
	}{
		{name: "empty namespace", args: []string{"get", "pods", "-n", "nosuch"},
			wantStderr: "No resources found in nosuch namespace.\n"},
		{name: "empty everywhere", args: []string{"get", "pods", "-A", "-l", "app=nothing"},
			wantStderr: "No resources found\n"},
		{name: "empty json is an empty List", args: []string{"get", "svc", "-n", "nosuch", "-o", "json"},
			wantOut: "{\n    \"apiVersion\": \"v1\",\n    \"items\": [],\n    \"kind\": \"List\",\n    \"metadata\": {\n        \"resourceVersion\": \"\"\n    }\n}\n"},
		{name: "empty name prints nothing", args: []string{"get", "deploy", "-n", "nosuch", "-o", "name"}},
		{name: "missing pod", args: []string{"get", "pod", "nosuch"}, wantCode: 1,
			wantStderr: `Error from server (NotFound): pods "nosuch" not found`},
		{name: "missing pod in json", args: []string{"get", "pod/nosuch", "-o", "json"}, wantCode: 1,
			wantStderr: `Error from server (NotFound): pods "nosuch" not found`},
		{name: "found and missing", args: []string{"get", "deploy", "reviews-v1", "nosuch", "-o", "name"}, wantCode: 1,
			wantOut: "deployment.apps/reviews-v1\n", wantStderr: `deployments.apps "nosuch" not found`},
		{name: "wrong namespace", args: []string{"get", "svc", "productpage", "-n", "foo"}, wantCode: 1,
			wantStderr: `services "productpage" not found`},
		{name: "no kind", args: []string{"get"}, wantCode: 2, wantStderr: "name a kind: pods (po), deployments (deploy)"},
		{name: "unknown kind", args: []string{"get", "statefulsets"}, wantCode: 2, wantStderr: `unknown kind "statefulsets"`},
		{name: "unknown flag", args: []string{"get", "pods", "--watch"}, wantCode: 2,
			wantStderr: "flag provided but not defined: -watch\nusage: meshlab get"},
		{name: "bad output", args: []string{"get", "pods", "-o", "xml"}, wantCode: 2,
			wantStderr: `--output "xml": want one of wide, json, yaml, name, jsonpath=TEMPLATE`},
		{name: "empty jsonpath", args: []string{"get", "pods", "-o", "jsonpath="}, wantCode: 2,
			wantStderr: "template format specified but no template given"},
		{name: "bad jsonpath", args: []string{"get", "pods", "-o", "jsonpath={.items[0"}, wantCode: 2,
			wantStderr: "error parsing jsonpath {.items[0"},
		{name: "bad selector", args: []string{"get", "pods", "-l", "app in productpage"}, wantCode: 2,
			wantStderr: `--selector "app in productpage"`},
		{name: "name and selector", args: []string{"get", "pods", "x", "-l", "app=x"}, wantCode: 2,
			wantStderr: "name them or select them, not both"},
		{name: "name across namespaces", args: []string{"get", "pods", "x", "-A"}, wantCode: 2,
			wantStderr: "a resource cannot be retrieved by name across all namespaces"},
		{name: "kind twice", args: []string{"get", "pod", "pod/x"}, wantCode: 2,
			wantStderr: "there is no need to name a kind as a separate argument"},
		{name: "secret by KIND/NAME", args: []string{"get", "secret/x"}, wantCode: 2,
			wantStderr: "secrets are listed alone: meshlab get secrets [NAME]"},
		{name: "a selector gives a List", args: []string{"get", "pods", "-l", "app=productpage", "-o", "jsonpath={.spec.containers[*].ports[*].name}"}},
		{name: "mixed kinds", args: []string{"get", "pods,vs"}, wantCode: 2,
			wantStderr: "get Kubernetes kinds and Istio kinds in two commands"},
		{name: "runtime fails", args: []string{"get", "pods", "-n", "foo"}, listErr: errors.New("daemon gone"), wantCode: 1,
			wantStderr: "get pods in namespace foo: daemon gone"},
		{name: "runtime fails, Istio kind", args: []string{"get", "vs"}, listErr: errors.New("daemon gone"), wantCode: 1,
			wantStderr: "get vs: daemon gone"},
		{name: "Istio kind, nothing", args: []string{"get", "dr", "-n", "foo"}, wantStderr: "No resources found."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := getFixture()
			rt.listErr = tt.listErr
			out, errOut, code := runCLI(t, rt, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.wantCode, errOut)
			}
			if out != tt.wantOut {
				t.Errorf("stdout:\n%q\nwant:\n%q", out, tt.wantOut)
			}
			switch {
			case tt.wantStderr == "" && errOut != "":
				t.Errorf("stderr:\n%s\nwant none", errOut)
			case !strings.Contains(errOut, tt.wantStderr):
				t.Errorf("stderr:\n%s\nwant it to contain %q", errOut, tt.wantStderr)
			}
		})
	}
}
