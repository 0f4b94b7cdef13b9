package lab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/labtest"
)

// TestSandbox is issue 10's proof on a real local lab: a developer's own
// workloads applied next to bookinfo, in and out of the mesh by Istio's
// injection rules, reachable from each other, a NodePort from the host,
// rollout restart without a failed request, scale followed by EDS, and bad
// manifests refused whole.
func TestSandbox(t *testing.T) {
	labtest.Skip(t)
	l := labtest.New(t, "..")
	const httpPort, apiPort = "18086", "25018"
	l.MustRun("up", "--http-port", httpPort, "--https-port", "18449", "--api-port", apiPort)

	// Istio's sleep and httpbin in foo and bar (injected: one by
	// istio-injection, one by istio.io/rev) and legacy (not injected).
	l.MustRun("apply", "-f", "testdata/sandbox/namespaces.yaml")
	nss := []string{"foo", "bar", "legacy"}
	for _, ns := range nss {
		l.MustRun("apply", "-n", ns, "-f", "../samples/sleep/sleep.yaml", "-f", "../samples/httpbin/httpbin.yaml")
	}
	pods := func(ns string) []corev1.Pod {
		var list corev1.PodList
		out := l.MustRun("get", "pods", "-n", ns, "-o", "json")
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatalf("get pods -n %s -o json: %v\n%s", ns, err, out)
		}
		return list.Items
	}
	allReady := func(ns string, want int) bool {
		ps := pods(ns)
		ready := 0
		for _, p := range ps {
			if p.DeletionTimestamp == nil && podReady(p) {
				ready++
			}
		}
		return ready == want && len(ps) == want
	}
	for _, ns := range nss {
		labtest.Eventually(t, "sleep and httpbin ready in "+ns, func() bool { return allReady(ns, 2) })
	}
	for _, ns := range nss {
		table := l.MustRun("get", "pods", "-n", ns)
		want := "2/2"
		if ns == "legacy" {
			want = "1/1"
		}
		for _, p := range pods(ns) {
			if !strings.Contains(table, p.Name) || !strings.Contains(lineOf(table, p.Name), want) {
				t.Errorf("get pods -n %s: %s is not %s:\n%s", ns, p.Name, want, table)
			}
			hasProxy := false
			for _, c := range p.Spec.Containers {
				hasProxy = hasProxy || c.Name == "istio-proxy"
			}
			if hasProxy != (ns != "legacy") {
				t.Errorf("pod %s/%s: istio-proxy %v, want %v", ns, p.Name, hasProxy, ns != "legacy")
			}
		}
	}
	if out := l.MustRun("get", "pods", "-n", "foo", "-l", "app=httpbin", "-o", "jsonpath={.items[*].spec.containers[*].ports[*].name}"); !strings.Contains(out, "http-envoy-prom") {
		t.Errorf("jsonpath of the sidecar's ports = %q; want http-envoy-prom among them", out)
	}

	// Every sleep reaches every httpbin, in the mesh and out of it.
	for _, from := range nss {
		for _, to := range nss {
			out, err := l.Run("exec", "-n", from, "deploy/sleep", "-c", "sleep", "--", "curl", "-sS", "-m", "5", "-o", "/dev/null",
				"-w", "%{http_code}", fmt.Sprintf("http://httpbin.%s:8000/ip", to))
			if err != nil || strings.TrimSpace(out) != "200" {
				t.Errorf("sleep.%s → httpbin.%s: %q, %v; want 200", from, to, out, err)
			}
		}
	}

	// A ConfigMap and a Secret, through env and mounted files, as exec
	// into the container sees them; the host does not see the mounts.
	l.MustRun("apply", "-f", "testdata/sandbox/configured.yaml")
	labtest.Eventually(t, "the configured pod ready", func() bool { return allReady("legacy", 3) })
	for _, c := range []struct {
		cmd  []string
		want string
	}{
		{[]string{"cat", "/etc/meshlab-sandbox/config/greeting"}, "hello from a configmap"},
		{[]string{"cat", "/etc/meshlab-sandbox/secret/password"}, "s3cret"},
		{[]string{"sh", "-c", "echo $GREETING/$password"}, "hello from a configmap/s3cret"},
		{[]string{"sh", "-c", "touch /etc/meshlab-sandbox/secret/x 2>&1 || true"}, "Read-only file system"},
	} {
		args := append([]string{"exec", "-n", "legacy", "deploy/configured", "--"}, c.cmd...)
		if out, err := l.Run(args...); err != nil || !strings.Contains(out, c.want) {
			t.Errorf("meshlab %s: %q, %v; want %q", strings.Join(args, " "), out, err, c.want)
		}
	}
	if _, err := os.Stat("/etc/meshlab-sandbox/config/greeting"); err == nil {
		t.Errorf("the pod's ConfigMap volume shows on the host")
	}

	// Workload identity (issue 11's foundation): httpbin.foo's sidecar
	// can get a certificate for its own ServiceAccount, and only that.
	var st0 lab.Status
	if err := json.Unmarshal([]byte(l.MustRun("status", "-o", "json")), &st0); err != nil {
		t.Fatal(err)
	}
	checkPodIdentity(t, l.Run, st0, "foo", "httpbin", "httpbin")
	checkProxyIdentity(t, l.MustRun, l.State, pods)
	checkGatewayCredential(t, l.MustRun, "18449")

	// AuthorizationPolicy, enforced by the destination's sidecar: a DENY
	// on one path (Envoy's 403 "RBAC: access denied"), then allow-nothing
	// for the namespace, then nothing once they are deleted.
	get := func(path string) string {
		out, _ := l.Run("exec", "-n", "bar", "deploy/sleep", "-c", "sleep", "--", "curl", "-sS", "-m", "5",
			"-w", " %{http_code}", "http://httpbin.foo:8000"+path)
		return out
	}
	l.MustRun("apply", "-f", "testdata/sandbox/authz.yaml", "--wait")
	var denied string
	labtest.Eventually(t, "GET /headers denied by the DENY policy (Envoy's 403 RBAC: access denied)", func() bool {
		denied = get("/headers")
		return strings.HasSuffix(denied, "RBAC: access denied 403")
	})
	if out := get("/ip"); !strings.HasSuffix(out, " 200") {
		t.Errorf("GET /ip, which the DENY policy does not name: %q", out)
	}
	l.MustRun("apply", "-f", "testdata/sandbox/allow-nothing.yaml", "--wait")
	labtest.Eventually(t, "GET /ip denied under allow-nothing", func() bool {
		return strings.HasSuffix(get("/ip"), " 403")
	})
	l.MustRun("delete", "-f", "testdata/sandbox/authz.yaml", "-f", "testdata/sandbox/allow-nothing.yaml")
	labtest.Eventually(t, "httpbin.foo open again once the policies are gone", func() bool {
		return strings.HasSuffix(get("/headers"), " 200")
	})

	// The walkthrough's NodePort Service, from the host, as kube-proxy
	// would publish it.
	l.MustRun("apply", "-f", "testdata/sandbox/reviews-nodeport.yaml")
	var body string
	labtest.Eventually(t, "reviews on nodePort 30123", func() bool {
		out, err := exec.Command("curl", "-sS", "-m", "2", "http://127.0.0.1:30123/reviews/0").Output()
		body = string(out)
		return err == nil && strings.Contains(body, `"id":"0"`)
	})
	if out, err := exec.Command("curl", "-sS", "-m", "2", "http://198.18.0.1:30123/reviews/0").Output(); err != nil || !strings.Contains(string(out), `"id":"0"`) {
		t.Errorf("reviews on the bridge's address, nodePort 30123: %q, %v", out, err)
	}

	// Bad manifests: each refused with its precise error, nothing applied.
	before := l.MustRun("get", "all", "-A", "-o", "json") + l.MustRun("get", "deployments,services", "-A", "-o", "name")
	for _, c := range []struct{ file, want string }{
		{"bad-image.yaml", `document 2 (Deployment foo/web): spec.template.spec.containers[0].image: Invalid value: "nginx:1.27": the local runtime runs this binary's modes`},
		{"bad-selector.yaml", `spec.template.metadata.labels`},
		{"bad-field.yaml", `spec.template.spec.containers[0].imagee: unknown field`},
		{"bad-namespace.yaml", `namespace "nowhere" not found`},
	} {
		out, err := l.Run("apply", "-f", "testdata/sandbox/"+c.file)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("apply %s: %v\n%s\nwant an error with %q", c.file, err, out, c.want)
		}
	}
	if after := l.MustRun("get", "all", "-A", "-o", "json") + l.MustRun("get", "deployments,services", "-A", "-o", "name"); after != before {
		t.Errorf("a refused apply changed the lab:\nbefore %s\nafter %s", before, after)
	}
	if out := l.MustRun("get", "configmaps", "-n", "foo", "-o", "json"); strings.Contains(out, "web-config") {
		t.Errorf("the ConfigMap of a refused batch was stored:\n%s", out)
	}

	// Scale: EDS of a client's sidecar follows.
	sleepBar := podNamed(t, pods("bar"), "sleep")
	cluster := "outbound|8000||httpbin.foo.svc.cluster.local"
	for _, n := range []int{3, 1} {
		start := time.Now()
		l.MustRun("scale", "deployment/httpbin", "-n", "foo", "--replicas", fmt.Sprint(n))
		labtest.Eventually(t, fmt.Sprintf("%d endpoints of httpbin.foo in sleep.bar's EDS", n), func() bool {
			return endpointCount(t, l, sleepBar, cluster) == n
		})
		t.Logf("scale httpbin.foo to %d: EDS of sleep.bar shows %d endpoints after %v", n, n, time.Since(start).Round(time.Millisecond))
	}

	// Readiness decides endpoints: a pod failing its probe leaves them and
	// comes back when it passes.
	// Not t.TempDir: the probe runs as the pod's user, who must reach the
	// file, and t.TempDir's parent is root's alone.
	readyDir, err := os.MkdirTemp("", "meshlab-flaky-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(readyDir) })
	if err := os.Chmod(readyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	readyFile := filepath.Join(readyDir, "ready")
	flaky, err := os.ReadFile("testdata/sandbox/flaky.yaml")
	if err != nil {
		t.Fatal(err)
	}
	flakyFile := filepath.Join(t.TempDir(), "flaky.yaml")
	if err := os.WriteFile(flakyFile, []byte(strings.ReplaceAll(string(flaky), "READY_FILE", readyFile)), 0o644); err != nil {
		t.Fatal(err)
	}
	l.MustRun("apply", "-f", flakyFile)
	flakyCluster := "outbound|80||flaky.foo.svc.cluster.local"
	for _, ready := range []bool{true, false, true} {
		want := 0
		if ready {
			want = 1
			if err := os.WriteFile(readyFile, []byte("ok\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		} else if err := os.Remove(readyFile); err != nil {
			t.Fatal(err)
		}
		labtest.Eventually(t, fmt.Sprintf("%d endpoints of flaky.foo in sleep.bar's EDS", want), func() bool {
			return endpointCount(t, l, sleepBar, flakyCluster) == want
		})
	}
	l.MustRun("delete", "-f", flakyFile)

	// Rollout restart of a 2-replica Deployment under 50 rps from another
	// pod: not one failed request.
	l.MustRun("scale", "deployment/httpbin", "-n", "foo", "--replicas", "2")
	labtest.Eventually(t, "two httpbin pods in foo", func() bool { return allReady("foo", 3) })
	fortio := labtest.Fortio(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	load := exec.CommandContext(ctx, l.Bin, "exec", "-n", "bar", "deploy/sleep", "-c", "sleep", "--",
		fortio, "load", "-qps", "50", "-t", "20s", "-c", "4", "-json", "-", "-quiet", "http://httpbin.foo:8000/get")
	load.Env = append(load.Environ(), "MESHLAB_STATE_DIR="+l.State)
	var loadOut strings.Builder
	load.Stdout = &loadOut
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	old := pods("foo")
	start := time.Now()
	l.MustRun("rollout", "restart", "deployment/httpbin", "-n", "foo")
	labtest.Eventually(t, "the restarted httpbin pods ready and the old ones gone", func() bool {
		cur := pods("foo")
		if !allReady("foo", 3) {
			return false
		}
		for _, p := range cur {
			for _, o := range old {
				if p.Name == o.Name && strings.HasPrefix(p.Name, "httpbin-") {
					return false
				}
			}
		}
		return true
	})
	t.Logf("rollout restart of 2 httpbin pods took %v", time.Since(start).Round(time.Millisecond))
	if err := load.Wait(); err != nil {
		t.Fatalf("fortio: %v\n%s", err, loadOut.String())
	}
	var res struct {
		RetCodes          map[string]int64
		DurationHistogram struct{ Count int64 }
	}
	if err := json.Unmarshal([]byte(loadOut.String()), &res); err != nil {
		t.Fatalf("fortio's json: %v\n%s", err, loadOut.String())
	}
	if res.DurationHistogram.Count < 500 || res.RetCodes["200"] != res.DurationHistogram.Count {
		t.Errorf("during the rollout restart: %d requests, codes %v; want every one 200", res.DurationHistogram.Count, res.RetCodes)
	}

	// The new pods' proxies are connected and in sync.
	ps := l.MustRun("proxy-status")
	for _, p := range pods("foo") {
		if line := lineOf(ps, p.Name); !strings.Contains(line, "SYNCED") {
			t.Errorf("proxy-status of %s: %q\n%s", p.Name, line, ps)
		}
	}

	// The control plane's store keeps the workloads: a control plane
	// killed and restarted (by the runtime, as kubelet restarts it) serves
	// the same Services at the same VIPs, and the mesh keeps working.
	svcBefore := l.MustRun("get", "services", "-A", "-o", "json")
	var st lab.Status
	if err := json.Unmarshal([]byte(l.MustRun("status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	istiod, err := st.FindPod("istio-system", "istiod")
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(istiod.Containers[0].PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	labtest.Eventually(t, "the control plane back with the same Services", func() bool {
		out, err := l.Run("get", "services", "-A", "-o", "json")
		return err == nil && out == svcBefore
	})
	if out, err := l.Run("exec", "-n", "legacy", "deploy/sleep", "-c", "sleep", "--", "curl", "-sS", "-m", "5", "-o", "/dev/null",
		"-w", "%{http_code}", "http://httpbin.foo:8000/ip"); err != nil || out != "200" {
		t.Errorf("sleep.legacy → httpbin.foo after a control plane restart: %q, %v", out, err)
	}

	// Deleting what was applied takes the pods, Services and VIPs away.
	for _, ns := range nss {
		l.MustRun("delete", "-n", ns, "-f", "../samples/sleep/sleep.yaml", "-f", "../samples/httpbin/httpbin.yaml")
	}
	l.MustRun("delete", "-f", "testdata/sandbox/configured.yaml")
	labtest.Eventually(t, "the sandbox's pods gone", func() bool {
		return len(pods("foo"))+len(pods("bar"))+len(pods("legacy")) == 0
	})

	// What was applied outlives the lab: the next up runs it again, and a
	// Deployment that never becomes ready does not keep up from finishing.
	l.MustRun("apply", "-f", "testdata/sandbox/never-ready.yaml")
	l.MustRun("down")
	if out := l.MustRun("up", "--http-port", httpPort, "--https-port", "18449", "--api-port", apiPort); !strings.Contains(out, "Lab is up") {
		t.Fatalf("up with a never-ready Deployment stored:\n%s", out)
	}
	labtest.Eventually(t, "the stored never-ready Deployment's pod started again", func() bool {
		ps := pods("foo")
		return len(ps) == 1 && strings.HasPrefix(ps[0].Name, "never-ready-") && !podReady(ps[0])
	})
}

func podReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func lineOf(table, name string) string {
	for _, line := range strings.Split(table, "\n") {
		if strings.Contains(line, name) {
			return line
		}
	}
	return ""
}

func podNamed(t *testing.T, ps []corev1.Pod, app string) corev1.Pod {
	t.Helper()
	for _, p := range ps {
		if p.Labels["app"] == app {
			return p
		}
	}
	t.Fatalf("no pod of app %s", app)
	return corev1.Pod{}
}

// endpointCount is how many endpoints a pod's sidecar has for a cluster,
// from its own config dump (proxy-config endpoints -o json, in Envoy's
// field names).
func endpointCount(t *testing.T, l *labtest.Lab, p corev1.Pod, cluster string) int {
	out, err := l.Run("proxy-config", "endpoints", "-n", p.Namespace, p.Name, "-o", "json")
	if err != nil {
		t.Logf("proxy-config endpoints: %v\n%s", err, out)
		return -1
	}
	var dump struct {
		Configs []struct {
			DynamicEndpointConfigs []struct {
				EndpointConfig struct {
					ClusterName string `json:"cluster_name"`
					Endpoints   []struct {
						LbEndpoints []json.RawMessage `json:"lb_endpoints"`
					} `json:"endpoints"`
				} `json:"endpoint_config"`
			} `json:"dynamic_endpoint_configs"`
		} `json:"configs"`
	}
	if err := json.Unmarshal([]byte(out), &dump); err != nil {
		t.Logf("proxy-config endpoints -o json: %v\n%s", err, out)
		return -1
	}
	for _, c := range dump.Configs {
		for _, e := range c.DynamicEndpointConfigs {
			if e.EndpointConfig.ClusterName != cluster {
				continue
			}
			n := 0
			for _, le := range e.EndpointConfig.Endpoints {
				n += len(le.LbEndpoints)
			}
			return n
		}
	}
	return 0
}
