package prometheus

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/http"
	"github.com/prometheus/prometheus/discovery/kubernetes"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"
	"go.yaml.in/yaml/v2"
)

func load(t *testing.T, b []byte) *config.Config {
	t.Helper()
	cfg, err := config.Load(string(b), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("config does not load as Prometheus's: %v\n%s", err, b)
	}
	return cfg
}

// job is what the walkthrough fixes about a job: name, path and relabel
// rules, as Prometheus parsed them.
func job(t *testing.T, sc *config.ScrapeConfig) string {
	t.Helper()
	b, err := yaml.Marshal(struct {
		Name    string `yaml:"name"`
		Path    string `yaml:"path"`
		Relabel any    `yaml:"relabel"`
	}{sc.JobName, sc.MetricsPath, sc.RelabelConfigs})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestKubeConfigIsTheWalkthrough: kube.yaml's jobs are the walkthrough's,
// SD included, as Prometheus parses both; scraped every 15s.
func TestKubeConfigIsTheWalkthrough(t *testing.T) {
	walk, err := os.ReadFile("testdata/walkthrough-jobs.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want, got := load(t, walk), load(t, KubeConfig())
	if len(got.ScrapeConfigs) != 2 {
		t.Fatalf("%d jobs, want the walkthrough's 2", len(got.ScrapeConfigs))
	}
	for i, sc := range got.ScrapeConfigs {
		w := *want.ScrapeConfigs[i]
		// The interval is the file's global one (Istio's 15s); the
		// walkthrough's snippet leaves it to the chart.
		w.ScrapeInterval, w.ScrapeTimeout = sc.ScrapeInterval, sc.ScrapeTimeout
		gb, _ := yaml.Marshal(sc)
		wb, _ := yaml.Marshal(&w)
		if string(gb) != string(wb) {
			t.Errorf("job %s differs from the walkthrough's:\n got %s\nwant %s", sc.JobName, gb, wb)
		}
		if time.Duration(sc.ScrapeInterval) != 15*time.Second {
			t.Errorf("job %s scrape_interval %v, want 15s", sc.JobName, sc.ScrapeInterval)
		}
	}
	ep := got.ScrapeConfigs[0].ServiceDiscoveryConfigs[0].(*kubernetes.SDConfig)
	if ep.Role != kubernetes.RoleEndpoint || strings.Join(ep.NamespaceDiscovery.Names, ",") != "istio-system" {
		t.Errorf("istiod SD: role %s namespaces %v", ep.Role, ep.NamespaceDiscovery.Names)
	}
	if pod := got.ScrapeConfigs[1].ServiceDiscoveryConfigs[0].(*kubernetes.SDConfig); pod.Role != kubernetes.RolePod {
		t.Errorf("envoy-stats SD role %s", pod.Role)
	}
}

// TestLocalConfig: the same jobs and relabel rules, discovering through
// istiod's HTTP SD at the URLs CONTRACT12.md part 6 gives.
func TestLocalConfig(t *testing.T) {
	kube := load(t, KubeConfig())
	for _, tt := range []struct {
		base, wantPod, wantEP string
	}{
		{DefaultSDBase, "http://istiod.istio-system.svc:15014/debug/prometheus/sd?role=pod",
			"http://istiod.istio-system.svc:15014/debug/prometheus/sd?role=endpoints&namespace=istio-system"},
		{"http://127.0.0.1:15014/", "http://127.0.0.1:15014/debug/prometheus/sd?role=pod",
			"http://127.0.0.1:15014/debug/prometheus/sd?role=endpoints&namespace=istio-system"},
	} {
		b, err := LocalConfig(tt.base, 0)
		if err != nil {
			t.Fatal(err)
		}
		got := load(t, b)
		if len(got.ScrapeConfigs) != 2 {
			t.Fatalf("%d jobs", len(got.ScrapeConfigs))
		}
		for i, sc := range got.ScrapeConfigs {
			if job(t, sc) != job(t, kube.ScrapeConfigs[i]) {
				t.Errorf("local job differs from the walkthrough's:\n%s\n%s", job(t, sc), job(t, kube.ScrapeConfigs[i]))
			}
			if time.Duration(sc.ScrapeInterval) != 15*time.Second {
				t.Errorf("scrape_interval %v", sc.ScrapeInterval)
			}
		}
		for i, want := range []string{tt.wantEP, tt.wantPod} {
			sd := got.ScrapeConfigs[i].ServiceDiscoveryConfigs[0].(*http.SDConfig)
			if sd.URL != want || time.Duration(sd.RefreshInterval) != DefaultSDRefresh {
				t.Errorf("job %s: SD %s every %v, want %s every %v", got.ScrapeConfigs[i].JobName, sd.URL, sd.RefreshInterval, want, DefaultSDRefresh)
			}
		}
	}
	for _, bad := range []string{"", "istiod:15014", "ftp://x:1", "http://x:1/?a=b"} {
		if _, err := LocalConfig(bad, 0); err == nil {
			t.Errorf("LocalConfig(%q) succeeded", bad)
		}
	}
}

func TestModuleToRelease(t *testing.T) {
	for in, want := range map[string]string{"v0.316.0": "3.16.0", "v0.305.1": "3.5.1", "v0.310.0-rc.1": "3.10.0", "(devel)": "3.0.0"} {
		if got := moduleToRelease(in); got != want {
			t.Errorf("moduleToRelease(%q) = %q, want %q", in, got, want)
		}
	}
}

// writeBlock writes a TSDB block with one sample of lab_block_sample at
// ts into dir, as a Prometheus that ran then would have left it.
func writeBlock(t *testing.T, dir string, ts time.Time, v float64) string {
	t.Helper()
	w, err := tsdb.NewBlockWriter(slog.New(slog.DiscardHandler), dir, int64(2*time.Hour/time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Close() }()
	ctx := context.Background()
	app := w.Appender(ctx)
	if _, err := app.Append(0, labels.FromStrings("__name__", "lab_block_sample"), ts.UnixMilli(), v); err != nil {
		t.Fatal(err)
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	id, err := w.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return id.String()
}
