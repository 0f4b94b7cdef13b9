package install

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	promclient "github.com/prometheus/client_golang/prometheus"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/kubernetes"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/scrape"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meshlab/meshlab/lab/kube/kubetest"
	"github.com/meshlab/meshlab/lab/prometheus"
)

const testMesh = `enableTracing: true
enablePrometheusMerge: true
accessLogFile: /dev/stdout
defaultConfig:
  tracing:
    sampling: 100.0
    zipkin:
      address: zipkin.istio-system:9411
`

// covers reports whether one of the rules grants verb on group/resource.
func covers(rules []rbacv1.PolicyRule, group, resource, verb string) bool {
	for _, r := range rules {
		if (slices.Contains(r.APIGroups, group) || slices.Contains(r.APIGroups, "*")) &&
			(slices.Contains(r.Resources, resource) || slices.Contains(r.Resources, "*")) &&
			(slices.Contains(r.Verbs, verb) || slices.Contains(r.Verbs, "*")) {
			return true
		}
	}
	return false
}

// TestPrometheusRBAC: the kubetest apiserver authorizes everything, so the
// role is checked here against what Prometheus's Kubernetes SD reads for
// each role (its informers list and watch; node metadata is a get), and
// for holding no write.
func TestPrometheusRBAC(t *testing.T) {
	var role *rbacv1.ClusterRole
	for _, o := range prometheusAddon(Options{Image: "x"}) {
		if r, ok := o.(*rbacv1.ClusterRole); ok {
			role = r
		}
	}
	if role == nil {
		t.Fatal("no ClusterRole")
	}
	for _, need := range []struct{ group, resource string }{
		{"", "pods"}, {"", "endpoints"}, {"", "services"}, {"", "nodes"}, {"discovery.k8s.io", "endpointslices"},
	} {
		for _, verb := range []string{"get", "list", "watch"} {
			if !covers(role.Rules, need.group, need.resource, verb) {
				t.Errorf("ClusterRole %s does not grant %s %q/%s", role.Name, verb, need.group, need.resource)
			}
		}
	}
	for _, r := range role.Rules {
		for _, v := range r.Verbs {
			if !slices.Contains([]string{"get", "list", "watch"}, v) {
				t.Errorf("rule %v grants %s", r, v)
			}
		}
	}
}

func TestOptionsMeshConfigInvalid(t *testing.T) {
	if _, err := Objects(Options{Image: "x", MeshConfig: "defaultConfig: [unclosed"}); err == nil {
		t.Error("a mesh config that is not YAML was accepted")
	}
}

// TestTelemetryAddons installs onto a real apiserver and checks the
// addons are there and strictly valid; then runs Prometheus's own
// Kubernetes SD in-process against that apiserver with the installed
// config's jobs (the walkthrough's), over Pods and Endpoints made as the
// cluster's controllers would, and keeps exactly the targets the
// walkthrough's relabel rules keep.
func TestTelemetryAddons(t *testing.T) {
	env := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	o := Options{Image: "meshlab.local/meshlab:test", CABundle: []byte(testCA), MeshConfig: testMesh}
	in, err := New(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	in.Timeout = time.Minute
	if err := in.Install(ctx, o); err != nil {
		t.Fatal(err)
	}
	core := in.kube.CoreV1()

	mesh, err := core.ConfigMaps(Namespace).Get(ctx, MeshConfigMap, metav1.GetOptions{})
	if err != nil || mesh.Data[MeshConfigKey] != testMesh {
		t.Errorf("ConfigMap istio: %v, %v; want key mesh with the mesh config", mesh.Data, err)
	}
	promCM, err := core.ConfigMaps(Namespace).Get(ctx, Prometheus, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := promconfig.Load(promCM.Data[PrometheusConfigKey], slog.New(slog.DiscardHandler))
	if err != nil || promCM.Data[PrometheusConfigKey] != string(prometheus.KubeConfig()) {
		t.Fatalf("prometheus ConfigMap: %v; want the kube config", err)
	}
	for name, port := range map[string]int32{Prometheus: PrometheusPort, Zipkin: ZipkinPort} {
		svc, err := core.Services(Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != port {
			t.Errorf("Service %s: %v; want port %d", name, err, port)
		}
		d, err := in.kube.AppsV1().Deployments(Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil || d.Spec.Template.Spec.Containers[0].Image != o.Image || d.Spec.Template.Spec.Containers[0].Command[1] != name {
			t.Errorf("Deployment %s: %v; want image %s running `meshlab %s`", name, err, o.Image, name)
		}
	}
	d, err := in.kube.AppsV1().Deployments(Namespace).Get(ctx, Istiod, metav1.GetOptions{})
	if err != nil || d.Spec.Template.Annotations["prometheus.io/scrape"] != "true" || d.Spec.Template.Annotations["prometheus.io/port"] != "15014" {
		t.Errorf("istiod pod annotations: %v, %v", d.Spec.Template.Annotations, err)
	}

	// Strict: kubectl with --validate=strict rejects any unknown or
	// duplicate field the typed objects might carry.
	var buf bytes.Buffer
	if err := Render(&buf, append([]runtime.Object{meshConfig(testMesh)}, telemetryAddons(o)...)); err != nil {
		t.Fatal(err)
	}
	if out, err := env.KubectlRun(ctx, buf.Bytes(), "apply", "--server-side", "--field-manager="+FieldManager, "--dry-run=server", "--validate=strict", "-f", "-"); err != nil {
		t.Errorf("strict validation: %v\n%s", err, out)
	}

	// What the cluster's controllers would make: a sidecar-injected pod,
	// istiod's pod and the Endpoints of its Service. No traffic goes to
	// these addresses; only discovery reads them.
	mkPod := func(ns, name, ip string, ports map[string][]corev1.ContainerPort) {
		t.Helper()
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": strings.Split(name, "-")[0]}}}
		for _, c := range []string{"app", "istio-proxy"} {
			if ports[c] != nil {
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c, Image: o.Image, Ports: ports[c]})
			}
		}
		p, err := core.Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
		if _, err := core.Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mkPod("default", "details-v1-698d88b-6ppfv", "10.244.0.5", map[string][]corev1.ContainerPort{
		"app":         {containerPort("http", 9080)},
		"istio-proxy": {containerPort("http-envoy-prom", 15090), containerPort("tcp-status", 15021)},
	})
	mkPod(Namespace, "istiod-5d9c8f-abcde", "10.244.0.2", map[string][]corev1.ContainerPort{
		"app": {containerPort("grpc-xds", 15010), containerPort("http-monitoring", 15014)},
	})
	// The walkthrough's istiod job is role endpoints, which reads the
	// v1 Endpoints API that the endpoints controller still mirrors.
	eps := &corev1.Endpoints{ //nolint:staticcheck // role endpoints reads exactly this API
		ObjectMeta: metav1.ObjectMeta{Name: Istiod, Namespace: Namespace},
		Subsets: []corev1.EndpointSubset{{ //nolint:staticcheck // as above
			Addresses: []corev1.EndpointAddress{{IP: "10.244.0.2", TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: Namespace, Name: "istiod-5d9c8f-abcde"}}},
			Ports: []corev1.EndpointPort{
				{Name: "grpc-xds", Port: 15010, Protocol: corev1.ProtocolTCP},
				{Name: "http-monitoring", Port: 15014, Protocol: corev1.ProtocolTCP},
			},
		}},
	}
	if _, err := core.Endpoints(Namespace).Create(ctx, eps, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A service with a port of the same name outside istio-system: the
	// istiod job's namespaces keep it out.
	other := eps.DeepCopy()
	other.Namespace, other.Subsets[0].Addresses[0].TargetRef = "default", nil
	if _, err := core.Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: Istiod, Namespace: "default"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{servicePort("http-monitoring", 15014, 15014)}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := core.Endpoints("default").Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	want := "envoy-stats 10.244.0.5:15090/stats/prometheus; istiod 10.244.0.2:15014/metrics"
	got := runKubernetesSD(ctx, t, cfg, env.Kubeconfig, want)
	if got != want {
		t.Errorf("kept targets:\n got %s\nwant %s", got, want)
	}
}

// runKubernetesSD runs each job's Kubernetes SD (Prometheus's own) against
// the apiserver until the targets its relabel rules keep are want, or 30s
// pass; it returns the last kept set as "job address/path; ...".
func runKubernetesSD(ctx context.Context, t *testing.T, cfg *promconfig.Config, kubeconfig, want string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	reg := promclient.NewRegistry()
	refresh := discovery.NewRefreshMetrics(reg)
	type update struct {
		job    string
		groups []*targetgroup.Group
	}
	updates := make(chan update)
	jobs := map[string]*promconfig.ScrapeConfig{}
	for _, sc := range cfg.ScrapeConfigs {
		jobs[sc.JobName] = sc
		sdc := *sc.ServiceDiscoveryConfigs[0].(*kubernetes.SDConfig)
		sdc.KubeConfig = kubeconfig // the test runs outside the cluster
		d, err := sdc.NewDiscoverer(discovery.DiscovererOptions{
			Logger:  slog.New(slog.DiscardHandler),
			Metrics: sdc.NewDiscovererMetrics(jobRegisterer(reg, sc.JobName), refresh),
		})
		if err != nil {
			t.Fatalf("job %s: Kubernetes SD: %v", sc.JobName, err)
		}
		ch := make(chan []*targetgroup.Group)
		go d.Run(ctx, ch)
		go func(job string) {
			for {
				select {
				case <-ctx.Done():
					return
				case g := <-ch:
					select {
					case updates <- update{job, g}:
					case <-ctx.Done():
						return
					}
				}
			}
		}(sc.JobName)
	}
	groups := map[string]map[string]*targetgroup.Group{}
	last := ""
	lb := labels.NewBuilder(labels.EmptyLabels())
	for {
		select {
		case <-ctx.Done():
			return last
		case u := <-updates:
			if groups[u.job] == nil {
				groups[u.job] = map[string]*targetgroup.Group{}
			}
			for _, g := range u.groups {
				groups[u.job][g.Source] = g
			}
		}
		var kept []string
		for job, bySource := range groups {
			for _, g := range bySource {
				for _, tl := range g.Targets {
					lset, err := scrape.PopulateLabels(lb, jobs[job], tl, g.Labels)
					if err != nil {
						t.Errorf("job %s: target %v: %v", job, tl, err)
						continue
					}
					if lset.IsEmpty() {
						continue // dropped by the relabel rules
					}
					kept = append(kept, fmt.Sprintf("%s %s%s", lset.Get("job"), lset.Get("__address__"), lset.Get("__metrics_path__")))
				}
			}
		}
		slices.Sort(kept)
		last = strings.Join(kept, "; ")
		if last == want {
			return last
		}
	}
}

// jobRegisterer keeps each job's SD metrics apart, as the
// discovery manager does with its per-config labels.
func jobRegisterer(reg *promclient.Registry, job string) promclient.Registerer {
	return promclient.WrapRegistererWith(promclient.Labels{"config": job}, reg)
}
