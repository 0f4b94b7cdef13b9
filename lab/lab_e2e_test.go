package lab_test

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/labtest"
	"github.com/meshlab/meshlab/lab/local"
)

// TestLab brings the local lab up from the built binary as a person would,
// uses it, and takes it down, checking that nothing is left.
func TestLab(t *testing.T) {
	labtest.Skip(t)
	l := labtest.New(t, "..")
	bin, state, run, mustRun := l.Bin, l.State, l.Run, l.MustRun
	const httpPort, apiPort = "18080", "25014"

	out := mustRun("up", "--http-port", httpPort, "--https-port", "18443", "--api-port", apiPort)
	t.Logf("up:\n%s", out)
	if !strings.Contains(out, "Lab is up") {
		t.Fatalf("up did not say the lab is up:\n%s", out)
	}
	if out := mustRun("up", "--http-port", httpPort, "--api-port", apiPort); !strings.Contains(out, "already up") {
		t.Errorf("a second up should say the lab is already up, said:\n%s", out)
	}

	page := "http://127.0.0.1:" + httpPort + "/productpage"
	versions := map[string]int{}
	for i := 0; i < 60; i++ {
		body := labtest.Get(t, page)
		if !strings.Contains(body, "<title>Simple Bookstore App</title>") {
			t.Fatalf("productpage through the gateway has no bookstore title:\n%s", body)
		}
		versions[reviewsVersion(body)]++
	}
	for _, v := range []string{"v1", "v2", "v3"} {
		if versions[v] == 0 {
			t.Errorf("60 requests never reached reviews %s: %v", v, versions)
		}
	}

	// Istio's metrics on 15090, as Prometheus scrapes them: each sidecar
	// knows the other side of its calls from the metadata exchange.
	var st0 lab.Status
	if err := json.Unmarshal([]byte(mustRun("status", "-o", "json")), &st0); err != nil {
		t.Fatalf("status -o json: %v", err)
	}
	metricChecks := []struct {
		pod    string
		labels []string
	}{
		{"istio-system/istio-ingressgateway", []string{`reporter="source"`, `source_workload="istio-ingressgateway"`,
			`destination_workload="productpage-v1"`, `destination_service_name="productpage"`, `response_code="200"`}},
		{"default/productpage-v1", []string{`reporter="source"`, `source_workload="productpage-v1"`,
			`destination_workload="reviews-v2"`, `destination_service="reviews.default.svc.cluster.local"`, `destination_version="v2"`}},
		{"default/reviews-v2", []string{`reporter="destination"`, `source_workload="productpage-v1"`, `source_app="productpage"`,
			`destination_workload="reviews-v2"`, `destination_service_name="reviews"`, `connection_security_policy="mutual_tls"`,
			`source_principal="spiffe://cluster.local/ns/default/sa/bookinfo-productpage"`, `destination_principal="spiffe://cluster.local/ns/default/sa/bookinfo-reviews"`}},
		{"default/ratings-v1", []string{`reporter="destination"`, `source_workload="reviews-v2"`, `destination_workload="ratings-v1"`}},
	}
	for _, c := range metricChecks {
		ns, name, _ := strings.Cut(c.pod, "/")
		p, err := st0.FindPod(ns, name)
		if err != nil {
			t.Fatal(err)
		}
		labtest.Eventually(t, "istio_requests_total of "+c.pod+" with "+strings.Join(c.labels, ","), func() bool {
			return hasSeries(labtest.Get(t, "http://"+p.IP+":15090/stats/prometheus"), "istio_requests_total{", c.labels)
		})
	}

	mustRun("apply", "-f", "../samples/bookinfo/networking/destination-rule-all.yaml", "--controlplane", "127.0.0.1:"+apiPort)
	start := time.Now()
	mustRun("apply", "-f", "../samples/bookinfo/networking/virtual-service-all-v1.yaml", "--wait", "--controlplane", "127.0.0.1:"+apiPort)
	t.Logf("apply all-v1 to every proxy ACKed: %v", time.Since(start))
	for i := 0; i < 30; i++ {
		if v := reviewsVersion(labtest.Get(t, page)); v != "v1" {
			t.Fatalf("after all-v1 was applied and ACKed, request %d reached reviews %s", i, v)
		}
	}

	if out := mustRun("get", "virtualservices", "-n", "default"); !strings.Contains(out, "reviews") {
		t.Errorf("get virtualservices does not list reviews:\n%s", out)
	}
	// The gateway's access log, Envoy's format, through logs. The proxy
	// flushes its access log every second, as Envoy does every ten.
	labtest.Eventually(t, "the gateway's access log line for productpage in its logs", func() bool {
		return strings.Contains(mustRun("logs", "-n", "istio-system", "istio-ingressgateway", "-c", "istio-proxy"), `"GET /productpage HTTP/1.1" 200`)
	})
	if out := mustRun("logs", "-n", "default", "ratings"); !strings.Contains(out, "serving") {
		t.Errorf("logs of ratings (its app container by default):\n%s", out)
	}
	if out := mustRun("proxy-config", "endpoints", "-n", "default", "productpage"); !strings.Contains(out, "outbound|9080|v1|reviews.default.svc.cluster.local") {
		t.Errorf("proxy-config endpoints of productpage has no reviews v1 endpoint:\n%s", out)
	}
	if out := mustRun("exec", "-n", "default", "ratings", "--", "curl", "-sS", "productpage:9080/productpage"); !strings.Contains(out, "<title>Simple Bookstore App</title>") {
		t.Errorf("exec curl productpage from ratings:\n%s", out)
	}
	var st lab.Status
	if err := json.Unmarshal([]byte(mustRun("status", "-o", "json")), &st); err != nil {
		t.Fatalf("status -o json: %v", err)
	}
	if len(st.Pods) < 8 {
		t.Errorf("status lists %d pods, want istiod, the gateway and 6 bookinfo pods", len(st.Pods))
	}
	for _, p := range st.Pods {
		if !p.Ready || p.Phase != "Running" {
			t.Errorf("pod %s/%s is %s, ready=%v", p.Namespace, p.Name, p.Phase, p.Ready)
		}
	}

	// A crashed container is restarted, with its restart counted, and the
	// pod serves again.
	ratings, err := st.FindPod("default", "ratings")
	if err != nil {
		t.Fatal(err)
	}
	app := ratings.Containers[len(ratings.Containers)-1]
	if err := syscall.Kill(app.PID, syscall.SIGKILL); err != nil {
		t.Fatalf("kill ratings: %v", err)
	}
	labtest.Eventually(t, "ratings to restart and be ready", func() bool {
		json.Unmarshal([]byte(mustRun("status", "-o", "json")), &st)
		p, err := st.FindPod("default", ratings.Name)
		return err == nil && p.Ready && p.Containers[len(p.Containers)-1].Restarts >= 1 && p.Containers[len(p.Containers)-1].Running
	})

	// With the control plane gone the proxies keep their last config; when
	// it is back they resync.
	istiod, err := st.FindPod("istio-system", "istiod")
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(istiod.Containers[0].PID, syscall.SIGKILL); err != nil {
		t.Fatalf("kill istiod: %v", err)
	}
	for i := 0; i < 10; i++ {
		if v := reviewsVersion(labtest.Get(t, page)); v != "v1" {
			t.Fatalf("with istiod down, request %d reached reviews %s; want the last config (all v1)", i, v)
		}
	}
	labtest.Eventually(t, "every proxy to resync with the restarted control plane", func() bool {
		out, err := run("proxy-status", "--controlplane", "127.0.0.1:"+apiPort)
		return err == nil && strings.Count(out, "SYNCED   SYNCED   SYNCED   SYNCED") == 7
	})

	mustRun("down")
	left, err := local.Network.Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("down left behind: %v", left)
	}
	if pids := labtest.Processes(bin); len(pids) > 0 {
		t.Errorf("down left processes of the lab running: %v", pids)
	}
	if _, err := os.Stat(filepath.Join(state, lab.ControlPlaneDir, "meshlab.db")); err != nil {
		t.Errorf("down should keep the store: %v", err)
	}

	// The next up starts from the kept config: all-v1 still holds, and no
	// pod of the last lab is an endpoint.
	mustRun("up", "--http-port", httpPort, "--https-port", "18443", "--api-port", apiPort)
	for i := 0; i < 10; i++ {
		if v := reviewsVersion(labtest.Get(t, page)); v != "v1" {
			t.Fatalf("after a second up with the kept config, request %d reached reviews %s", i, v)
		}
	}
}

// TestLabElsewhereAndCrashCleanup puts bookinfo in another namespace, then
// kills the lab's runtime with SIGKILL: down must still leave nothing behind.
func TestLabElsewhereAndCrashCleanup(t *testing.T) {
	labtest.Skip(t)
	l := labtest.New(t, "..")
	bin, mustRun := l.Bin, l.MustRun

	mustRun("up", "--bookinfo-namespace", "book-demo", "--http-port", "18081", "--https-port", "18444", "--api-port", "25015")
	if out := mustRun("exec", "-n", "book-demo", "ratings", "--", "curl", "-sS", "productpage.book-demo.svc.cluster.local:9080/productpage"); !strings.Contains(out, "Simple Bookstore App") {
		t.Errorf("productpage in book-demo, from ratings:\n%s", out)
	}
	if body := labtest.Get(t, "http://127.0.0.1:18081/productpage"); reviewsVersion(body) == "none" {
		t.Errorf("productpage in book-demo through the gateway shows no reviews:\n%s", body)
	}

	// The walkthrough's gateway for *.book.example.com and its VirtualService
	// for product.book.example.com: that host reaches productpage at any path,
	// while other hosts keep the bookinfo routes only.
	mustRun("apply", "--wait", "--controlplane", "127.0.0.1:25015",
		"-f", "../controlplane/config/testdata/walkthrough/http-book-gateway.yaml",
		"-f", "../controlplane/config/testdata/walkthrough/productpage.yaml")
	for _, tt := range []struct {
		host string
		want int
	}{{"product.book.example.com", http.StatusOK}, {"other.example.com", http.StatusNotFound}} {
		req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:18081/", nil)
		req.Host = tt.host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("GET / with Host %s through the gateway: %s, want %d", tt.host, resp.Status, tt.want)
		}
	}

	var st lab.Status
	if err := json.Unmarshal([]byte(mustRun("status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	mustRun("down")
	if left, err := local.Network.Leftovers(); err != nil || len(left) > 0 {
		t.Errorf("down after a crashed runtime left behind: %v %v", left, err)
	}
	if _, err := os.Stat(local.OwnerFile); !os.IsNotExist(err) {
		t.Errorf("down after a crashed runtime left the pod network's owner record: %v", err)
	}
	if pids := labtest.Processes(bin); len(pids) > 0 {
		t.Errorf("down after a crashed runtime left processes running: %v", pids)
	}
}

// TestUpWithoutRoot: without root, up fails at once and says what is missing.
func TestUpWithoutRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to an unprivileged user")
	}
	bin := labtest.Binary(t, "..")
	cmd := exec.Command(bin, "up", "--runtime", "local", "--state-dir", t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "needs root") {
		t.Fatalf("up as nobody: %v\n%s\nwant a failure that says it needs root", err, out)
	}
}

var servedBy = regexp.MustCompile(`reviews-(v[0-9])-`)

// hasSeries reports whether a Prometheus text exposition has a sample of
// the metric (prefix up to its "{") with all of the labels.
func hasSeries(text, metric string, labels []string) bool {
next:
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, metric) {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue next
			}
		}
		return true
	}
	return false
}

func reviewsVersion(body string) string {
	m := servedBy.FindStringSubmatch(body)
	if m == nil {
		return "none"
	}
	return m[1]
}
