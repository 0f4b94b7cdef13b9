package cmd

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// What `meshlab prometheus-config` prints is a config Debian's stock
// promtool accepts, in both formats and both discoveries, with the
// walkthrough's relabel rules.
func TestPrometheusConfigCommand(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not installed: apt-get install -y prometheus (scripts/test does)")
	}
	tests := []struct {
		name string
		args []string
		want []string
		err  string
		// Debian builds Prometheus without Kubernetes SD (its client-go
		// is not packaged): its promtool refuses kubernetes_sd_configs,
		// which is why the local runtime needs the HTTP SD at all.
		noPromtool bool
	}{
		{name: "http SD, yaml", args: []string{"--controlplane", "127.0.0.1:15014", "--sd", "http"},
			want: []string{"http://127.0.0.1:15014/debug/prometheus/sd?role=endpoints&namespace=istio-system", "http://127.0.0.1:15014/debug/prometheus/sd?role=pod"}},
		{name: "http SD, json", args: []string{"--controlplane", "http://127.0.0.1:25014", "--sd", "http", "-o", "json"},
			want: []string{`"url":"http://127.0.0.1:25014/debug/prometheus/sd?role=pod"`}},
		{name: "kubernetes SD", args: []string{"--sd", "kubernetes"}, want: []string{"kubernetes_sd_configs", "role: endpoints", "- istio-system"}, noPromtool: true},
		{name: "bad sd", args: []string{"--sd", "dns"}, err: `--sd "dns"`},
		{name: "bad output", args: []string{"-o", "table"}, err: `--output "table"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			app := &cli.App{Name: "meshlab", Writer: &out, ErrWriter: &out,
				Commands: []*cli.Command{PrometheusConfig()}, ExitErrHandler: func(*cli.Context, error) {}}
			err := app.Run(append([]string{"meshlab", "prometheus-config", "--state-dir", t.TempDir()}, tt.args...))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range append(tt.want, "istiod;http-monitoring", ".*-envoy-prom", "__meta_kubernetes_pod_container_port_name",
				"__meta_kubernetes_service_name", "__meta_kubernetes_endpoint_port_name", "/stats/prometheus") {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			if tt.noPromtool {
				return
			}
			f := filepath.Join(t.TempDir(), "prometheus.yml")
			if err := os.WriteFile(f, out.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			if b, err := exec.Command(promtool, "check", "config", f).CombinedOutput(); err != nil {
				t.Fatalf("promtool check config: %v\n%s\nthe config:\n%s", err, b, out.String())
			}
		})
	}
}
