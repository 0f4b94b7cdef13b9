package lab_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshlab/meshlab/lab/kube"
	"github.com/meshlab/meshlab/lab/labtest"
	"github.com/meshlab/meshlab/lab/metallb"
)

// TestKindEndToEnd brings a real kind lab up offline, on the node image
// scripts/kind-testenv builds and the Docker engine of scripts/kind-engine,
// uses it as the local lab is used, and takes it down, checking that nothing
// is left: no node containers, no kind network, no kubeconfig context.
//
// It runs with MESHLAB_KIND_E2E=1 (scripts/test sets it when the test
// environment's cache is present; building it cold takes about 10 minutes).
func TestKindEndToEnd(t *testing.T) {
	if os.Getenv("MESHLAB_KIND_E2E") != "1" {
		t.Skip("MESHLAB_KIND_E2E is not 1: the kind test needs scripts/kind-testenv's node image (scripts/kind-testenv builds it, about 10 min cold)")
	}
	if os.Geteuid() != 0 {
		t.Skip("the kind test needs root (its Docker engine is rootful)")
	}
	env := kindTestenv(t)
	t.Setenv("DOCKER_HOST", env["DOCKER_HOST"])
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	t.Setenv("KUBECONFIG", kubeconfig)
	kubectl := filepath.Join(env["MESHLAB_KIND_BIN"], "kubectl")
	docker := func(args ...string) string {
		out, err := exec.Command("docker", append([]string{"-H", env["DOCKER_HOST"]}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	l := labtest.New(t, "..")
	const httpPort = "18080"

	// The workshop room without a registry: every image the lab needs in
	// one archive, the engine without them, and up loading it first. The
	// MetalLB images go by other names (as a room's mirror would have
	// them), which the node image does not hold, so they reach the nodes
	// from the engine.
	node := env["MESHLAB_KIND_NODE_IMAGE"]
	ctrl, spk := "meshlab.local/metallb/controller:e2e", "meshlab.local/metallb/speaker:e2e"
	docker("tag", metallb.ControllerImage, ctrl)
	docker("tag", metallb.SpeakerImage, spk)
	archive := filepath.Join(t.TempDir(), "lab-images.tar")
	start := time.Now()
	out, err := l.RunFor(10*time.Minute, "images", "save", "--node-image", node, "--metallb-controller-image", ctrl,
		"--metallb-speaker-image", spk, "--docker-host", env["DOCKER_HOST"], archive)
	t.Logf("images save (%s):\n%s", time.Since(start).Round(time.Second), out)
	if err != nil {
		t.Fatalf("images save: %v", err)
	}
	docker("rmi", node, ctrl, spk)

	// One worker besides the control plane: the pod network must route
	// between nodes (the gateway's NodePort arrives on the control plane,
	// the pods run on the worker; the API server calls istiod's webhook
	// across the nodes too).
	start = time.Now()
	out, err = l.RunFor(20*time.Minute, "up", "--runtime", "kind", "--images", archive, "--node-image", node,
		"--metallb-controller-image", ctrl, "--metallb-speaker-image", spk,
		"--nodes", "1", "--http-port", httpPort, "--https-port", "18443")
	t.Logf("up (%s):\n%s", time.Since(start).Round(time.Second), out)
	if err != nil {
		t.Fatalf("up --runtime kind: %v", err)
	}
	for _, want := range []string{"✓ images archive", "✓ kind cluster", "MetalLB's 4", "✓ pod network", "✓ productpage"} {
		if !strings.Contains(out, want) {
			t.Errorf("up's output lacks %q", want)
		}
	}
	for obj, want := range map[string]string{"deploy/controller": ctrl, "ds/speaker": spk} {
		b, err := exec.Command(kubectl, "get", "-n", metallb.Namespace, obj, "-o", "jsonpath={.spec.template.spec.containers[0].image}").CombinedOutput()
		if err != nil || string(b) != want {
			t.Errorf("MetalLB's %s runs %q (%v), want %s", obj, b, err, want)
		}
	}

	var st kube.Status
	if err := json.Unmarshal([]byte(l.MustRun("status", "-o", "json")), &st); err != nil {
		t.Fatalf("status -o json: %v", err)
	}
	if st.Runtime != "kind" || st.Phase != "Running" || st.Context != "kind-meshlab" {
		t.Errorf("status says runtime %q, phase %q, context %q; want kind, Running, kind-meshlab", st.Runtime, st.Phase, st.Context)
	}
	bookinfo := 0
	for _, p := range st.Pods {
		if p.Status != "Running" || p.Ready != fmt.Sprintf("%d/%d", p.Containers, p.Containers) {
			t.Errorf("pod %s/%s is %s, ready %s", p.Namespace, p.Name, p.Status, p.Ready)
		}
		if p.Namespace == "default" {
			bookinfo++
			if p.Containers != 2 {
				t.Errorf("bookinfo pod %s has %d containers, want 2 (app + istio-proxy injected by istiod's webhook)", p.Name, p.Containers)
			}
		}
	}
	if bookinfo != 6 {
		t.Errorf("status lists %d bookinfo pods, want 6", bookinfo)
	}
	if b, err := exec.Command(kubectl, "get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}`).CombinedOutput(); err != nil ||
		strings.Count(string(b), "=True") != 2 {
		t.Errorf("want 2 Ready nodes, kubectl get nodes says: %s %v", b, err)
	}
	ip := kindExternalIP(t, kubectl)
	t.Logf("gateway's MetalLB address: %s", ip)
	if st.ExternalIP != ip {
		t.Errorf("status says external IP %q, the gateway Service has %q", st.ExternalIP, ip)
	}

	// productpage from the host, through the MetalLB address and through
	// the published port; every reviews version answers.
	for _, page := range []string{"http://" + ip + ":8080/productpage", "http://127.0.0.1:" + httpPort + "/productpage"} {
		versions := map[string]int{}
		for i := 0; i < 45; i++ {
			body := labtest.Get(t, page)
			if !strings.Contains(body, "<title>Simple Bookstore App</title>") {
				t.Fatalf("%s has no bookstore title:\n%s", page, body)
			}
			versions[reviewsVersion(body)]++
		}
		for _, v := range []string{"v1", "v2", "v3"} {
			if versions[v] == 0 {
				t.Errorf("45 requests to %s never reached reviews %s: %v", page, v, versions)
			}
		}
	}
	page := "http://" + ip + ":8080/productpage"

	// Istio's YAML, with meshlab apply and with kubectl apply, in force.
	l.MustRun("apply", "-f", "../samples/bookinfo/networking/destination-rule-all.yaml")
	l.MustRun("apply", "-f", "../samples/bookinfo/networking/virtual-service-all-v1.yaml")
	kindOnly(t, page, "v1")
	if b, err := exec.Command(kubectl, "apply", "-f", "../samples/bookinfo/networking/virtual-service-reviews-v3.yaml").CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply virtual-service-reviews-v3.yaml: %v\n%s", err, b)
	}
	kindOnly(t, page, "v3")
	if out := l.MustRun("get", "virtualservices", "-n", "default"); !strings.Contains(out, "reviews") {
		t.Errorf("get virtualservices does not list reviews:\n%s", out)
	}

	// Every lab command, as on the local runtime.
	if out := l.MustRun("exec", "-n", "default", "ratings", "--", "curl", "-sS", "productpage:9080/productpage"); !strings.Contains(out, "<title>Simple Bookstore App</title>") {
		t.Errorf("exec curl productpage from ratings:\n%s", out)
	}
	labtest.Eventually(t, "the gateway's access log line for productpage in its logs", func() bool {
		return strings.Contains(l.MustRun("logs", "-n", "istio-system", "istio-ingressgateway", "-c", "istio-proxy"), `"GET /productpage HTTP/1.1" 200`)
	})
	if out := l.MustRun("proxy-status"); !strings.Contains(out, "productpage") || !strings.Contains(out, "SYNCED") {
		t.Errorf("proxy-status lists no SYNCED productpage proxy:\n%s", out)
	}
	if out := l.MustRun("proxy-config", "endpoints", "-n", "default", "productpage"); !strings.Contains(out, "outbound|9080|v1|reviews.default.svc.cluster.local") {
		t.Errorf("proxy-config endpoints of productpage has no reviews v1 endpoint:\n%s", out)
	}

	// down leaves nothing behind.
	start = time.Now()
	out = l.MustRun("down")
	t.Logf("down (%s):\n%s", time.Since(start).Round(time.Second), out)
	if left := strings.TrimSpace(docker("ps", "-aq", "--filter", "label=io.x-k8s.kind.cluster")); left != "" {
		t.Errorf("down left kind node containers: %s", left)
	}
	if nets := docker("network", "ls", "--format", "{{.Name}}"); strings.Contains("\n"+nets, "\nkind\n") {
		t.Errorf("down left the kind network:\n%s", nets)
	}
	if b, err := os.ReadFile(kubeconfig); err == nil && bytes.Contains(b, []byte("kind-meshlab")) {
		t.Errorf("down left the kind-meshlab context in the kubeconfig:\n%s", b)
	}
}

// kindTestenv runs scripts/kind-testenv (cached: quick once built) and
// returns what it prints: DOCKER_HOST, MESHLAB_KIND_NODE_IMAGE and
// MESHLAB_KIND_BIN.
func kindTestenv(t *testing.T) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "../scripts/kind-testenv")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/kind-testenv: %v\n%s", err, stderr.Bytes())
	}
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	for _, k := range []string{"DOCKER_HOST", "MESHLAB_KIND_NODE_IMAGE", "MESHLAB_KIND_BIN"} {
		if env[k] == "" {
			t.Fatalf("scripts/kind-testenv printed no %s=:\n%s", k, out)
		}
	}
	return env
}

// kindExternalIP is the gateway Service's MetalLB address.
func kindExternalIP(t *testing.T, kubectl string) string {
	t.Helper()
	out, err := exec.Command(kubectl, "get", "svc", "-n", "istio-system", "istio-ingressgateway",
		"-o", "jsonpath={.status.loadBalancer.ingress[0].ip}").CombinedOutput()
	if err != nil || len(out) == 0 {
		t.Fatalf("kubectl get svc istio-ingressgateway: %v\n%s", err, out)
	}
	return string(out)
}

// kindOnly waits until every request reaches reviews version v, then
// checks 20 more do.
func kindOnly(t *testing.T, page, v string) {
	t.Helper()
	labtest.Eventually(t, "productpage to reach only reviews "+v, func() bool {
		for i := 0; i < 10; i++ {
			if reviewsVersion(labtest.Get(t, page)) != v {
				return false
			}
		}
		return true
	})
	for i := 0; i < 20; i++ {
		if got := reviewsVersion(labtest.Get(t, page)); got != v {
			t.Fatalf("request %d reached reviews %s after only %s was in force", i, got, v)
		}
	}
}
