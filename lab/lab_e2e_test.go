package lab_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/local"
)

// TestLab brings the local lab up from the built binary as a person would,
// uses it, and takes it down, checking that nothing is left.
func TestLab(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the local runtime needs root")
	}
	if testing.Short() {
		t.Skip("end-to-end lab test skipped in -short mode")
	}
	bin := filepath.Join(t.TempDir(), "meshlab")
	build := exec.Command("go", "build", "-o", bin, "..")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build meshlab: %v\n%s", err, out)
	}
	state := t.TempDir()
	const httpPort, apiPort = "18080", "25014"
	run := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), "MESHLAB_STATE_DIR="+state)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	mustRun := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("meshlab %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	t.Cleanup(func() {
		if out, err := run("down"); err != nil {
			t.Errorf("cleanup down: %v\n%s", err, out)
		}
	})

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
		body := get(t, page)
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

	mustRun("apply", "-f", "../samples/bookinfo/networking/destination-rule-all.yaml", "--controlplane", "127.0.0.1:"+apiPort)
	start := time.Now()
	mustRun("apply", "-f", "../samples/bookinfo/networking/virtual-service-all-v1.yaml", "--wait", "--controlplane", "127.0.0.1:"+apiPort)
	t.Logf("apply all-v1 to every proxy ACKed: %v", time.Since(start))
	for i := 0; i < 30; i++ {
		if v := reviewsVersion(get(t, page)); v != "v1" {
			t.Fatalf("after all-v1 was applied and ACKed, request %d reached reviews %s", i, v)
		}
	}

	if out := mustRun("get", "virtualservices", "-n", "default"); !strings.Contains(out, "reviews") {
		t.Errorf("get virtualservices does not list reviews:\n%s", out)
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

	mustRun("down")
	left, err := local.Network.Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("down left behind: %v", left)
	}
	if pids := processesOf(bin); len(pids) > 0 {
		t.Errorf("down left processes of the lab running: %v", pids)
	}
	if _, err := os.Stat(filepath.Join(state, lab.ControlPlaneDir, "meshlab.db")); err != nil {
		t.Errorf("down should keep the store: %v", err)
	}
}

var servedBy = regexp.MustCompile(`reviews-(v[0-9])-`)

func reviewsVersion(body string) string {
	m := servedBy.FindStringSubmatch(body)
	if m == nil {
		return "none"
	}
	return m[1]
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, b)
	}
	return string(b)
}

// processesOf lists the pids whose executable is bin.
func processesOf(bin string) []string {
	var pids []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err == nil && strings.TrimSuffix(exe, " (deleted)") == bin {
			pids = append(pids, e.Name())
		}
	}
	return pids
}
