package lab_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/labtest"
)

// TestLabAPIFromPod is the control plane's API as a hostile pod meets it:
// from inside ratings, through its sidecar to istiod:15014, neither an
// apply (as a web page's text/plain POST or as JSON) nor a read of the
// secrets gets through without the lab's token, while the CLI on the host,
// which reads the token from the state directory, still applies.
func TestLabAPIFromPod(t *testing.T) {
	labtest.Skip(t)
	l := labtest.New(t, "..")
	const apiPort = "25016"
	l.MustRun("up", "--http-port", "18082", "--https-port", "18445", "--api-port", apiPort)

	fi, err := os.Lstat(filepath.Join(l.State, lab.APITokenFile))
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the lab's API token file: %v, %v; want a regular file, 0600", fi, err)
	}

	const evil = `{"documents":[{"source":"evil","index":0,"object":{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"evil","namespace":"default"},"spec":{"hosts":["reviews"],"http":[{"fault":{"abort":{"httpStatus":500,"percentage":{"value":100}}},"route":[{"destination":{"host":"reviews"}}]}]}}}]}`
	curl := func(args ...string) string {
		t.Helper()
		out, err := l.Run(append([]string{"exec", "-n", "default", "ratings", "--", "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}"}, args...)...)
		if err != nil {
			t.Fatalf("curl %v from ratings: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(out)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"text/plain apply, as a web page posts it", []string{"-X", "POST", "-H", "Content-Type: text/plain", "--data", evil, "http://istiod.istio-system:15014/api/v1/apply"}, "401"},
		{"JSON apply without a token", []string{"-X", "POST", "-H", "Content-Type: application/json", "--data", evil, "http://istiod.istio-system:15014/api/v1/apply"}, "401"},
		{"JSON apply with a guessed token", []string{"-X", "POST", "-H", "Content-Type: application/json", "-H", "Authorization: Bearer " + strings.Repeat("a", 64), "--data", evil, "http://istiod.istio-system.svc.cluster.local:15014/api/v1/apply"}, "401"},
		{"replace the gateway's secret", []string{"-X", "PUT", "-H", "Content-Type: application/json", "--data", `{"namespace":"istio-system","name":"x"}`, "http://istiod.istio-system:15014/api/v1/secrets"}, "401"},
		{"list the secrets", []string{"http://istiod.istio-system:15014/api/v1/secrets"}, "401"},
		{"forget every workload", []string{"-X", "DELETE", "http://istiod.istio-system:15014/api/v1/registry/workloads"}, "401"},
		{"metrics stay open", []string{"http://istiod.istio-system:15014/metrics"}, "200"},
	}
	for _, tt := range tests {
		if got := curl(tt.args...); got != tt.want {
			t.Errorf("%s from a pod: HTTP %s, want %s", tt.name, got, tt.want)
		}
	}

	// DNS rebinding against the published port on the host.
	req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:"+apiPort+"/ready", nil)
	req.Host = "rebound.example:" + apiPort
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("GET /ready with a foreign Host on the host's port: %s, want 421", resp.Status)
	}

	// The CLI on the host applies, found by the lab's record or by address.
	l.MustRun("apply", "-f", "../samples/bookinfo/networking/destination-rule-all.yaml")
	l.MustRun("apply", "-f", "../samples/bookinfo/networking/virtual-service-all-v1.yaml", "--controlplane", "127.0.0.1:"+apiPort)
	out := l.MustRun("get", "virtualservices", "-n", "default")
	if !strings.Contains(out, "reviews") || strings.Contains(out, "evil") {
		t.Errorf("get virtualservices after the pod's tries and the CLI's apply:\n%s", out)
	}
	// Pointed elsewhere, the CLI does not hand the lab's token out.
	if out, err := l.Run("get", "virtualservices", "--controlplane", "localhost:"+apiPort); err == nil || !strings.Contains(out, "credential") {
		t.Errorf("get through another address without --token: %v\n%s\nwant a refusal that says how to get a credential", err, out)
	}
}
