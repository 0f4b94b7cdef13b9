package dataplane

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// appMetrics is a real app exposing its own Prometheus metrics on
// loopback, with client_golang's handler (which speaks OpenMetrics when
// asked for it).
func appMetrics(t *testing.T, path string) (port string, hits prometheus.Counter, stop func()) {
	t.Helper()
	reg := prometheus.NewRegistry()
	hits = prometheus.NewCounter(prometheus.CounterOpts{Name: "bookinfo_app_requests_total", Help: "Requests the app served."})
	reg.MustRegister(hits)
	mux := http.NewServeMux()
	mux.Handle(path, promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	_, port, _ = net.SplitHostPort(ln.Addr().String())
	return port, hits, func() { srv.Close() }
}

// runSidecar runs the whole proxy (its control plane absent: it retries)
// with the app's annotations, until the test ends; it returns the
// status address.
func runSidecar(t *testing.T, annotations string) string {
	t.Helper()
	cpAddr, status := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Mode: ModeSidecar, NodeID: "sidecar~127.0.0.1~ratings-0.default~default.svc.cluster.local", DiscoveryAddress: cpAddr,
			XDSPlaintext: true, AdminAddr: "127.0.0.1:0", ReadyAddr: "127.0.0.1:0", StatsAddr: "-", DNSAddr: "-", StatusAddr: status,
			PrometheusAnnotations: annotations, DrainTimeout: time.Second, Logger: slog.New(slog.DiscardHandler)})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", status)
		if err == nil {
			c.Close()
			return status
		}
		if time.Now().After(deadline) {
			t.Fatalf("status port %s: %v", status, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func scrapeStatus(t *testing.T, status string, accept string) (string, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+status+"/stats/prometheus", nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	return resp.Header.Get("Content-Type"), body
}

func parseText(t *testing.T, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("the merged output does not parse: %v\n%s", err, body)
	}
	return fams
}

func counter(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
next:
	for _, m := range fams[name].GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		if m.GetCounter() != nil {
			return m.GetCounter().GetValue()
		}
		return m.GetGauge().GetValue()
	}
	return -1
}

// TestMergedStats is Istio's 15020 merge: the agent's istio_agent_*
// metrics, the proxy's stats and the app's own metrics from its
// annotations, in one exposition that Prometheus's parser reads; a
// failing app scrape is counted and leaves the rest; an OpenMetrics app
// makes the answer OpenMetrics, its # EOF last.
func TestMergedStats(t *testing.T) {
	port, hits, stopApp := appMetrics(t, "/app-metrics")
	status := runSidecar(t, fmt.Sprintf(`{"scrape":"true","path":"/app-metrics","port":%q}`, port))
	hits.Add(7)

	ct, body := scrapeStatus(t, status, "")
	if ct != fmtText {
		t.Errorf("content type %q, want %q", ct, fmtText)
	}
	fams := parseText(t, body)
	for _, name := range []string{"istio_agent_scrapes_total", "istio_agent_go_goroutines", "istio_agent_process_cpu_seconds_total", // the agent
		"envoy_server_live", "envoy_http_downstream_rq_total", // the proxy
		"bookinfo_app_requests_total"} { // the app
		if fams[name] == nil {
			t.Errorf("the merged output lacks %s", name)
		}
	}
	if v := counter(fams, "bookinfo_app_requests_total"); v != 7 {
		t.Errorf("the app's counter = %v, want 7", v)
	}
	if v := counter(fams, "istio_agent_scrapes_total"); v != 1 {
		t.Errorf("istio_agent_scrapes_total = %v, want 1", v)
	}

	// The app fails: the merged endpoint still answers, and says so.
	stopApp()
	_, body = scrapeStatus(t, status, "")
	fams = parseText(t, body)
	if fams["envoy_server_live"] == nil || fams["bookinfo_app_requests_total"] != nil {
		t.Errorf("with the app down: proxy %v, app %v; want the proxy's only", fams["envoy_server_live"] != nil, fams["bookinfo_app_requests_total"] != nil)
	}
	if v := counter(fams, "istio_agent_scrape_failures_total", "type", "application"); v != 1 {
		t.Errorf("istio_agent_scrape_failures_total{type=application} = %v, want 1", v)
	}
	if v := counter(fams, "istio_agent_scrapes_total"); v != 2 {
		t.Errorf("istio_agent_scrapes_total = %v, want 2", v)
	}
}

func TestMergedStatsOpenMetrics(t *testing.T) {
	port, _, _ := appMetrics(t, "/metrics")
	status := runSidecar(t, fmt.Sprintf(`{"port":%q}`, port)) // path defaults to /metrics
	ct, body := scrapeStatus(t, status, "application/openmetrics-text;version=1.0.0,text/plain;q=0.5")
	if ct != fmtOpenMetrics100 {
		t.Errorf("content type %q, want the app's %q", ct, fmtOpenMetrics100)
	}
	s := string(body)
	if !strings.HasSuffix(s, "# EOF\n") || strings.Count(s, "# EOF") != 1 {
		t.Errorf("the app's # EOF is not last and alone:\n%s", s[max(0, len(s)-300):])
	}
	if !strings.Contains(s, "istio_agent_scrapes_total") || !strings.Contains(s, "envoy_server_live") || !strings.Contains(s, "bookinfo_app_requests_total") {
		t.Errorf("a part is missing:\n%s", s)
	}
}

func TestParsePrometheusScrape(t *testing.T) {
	tests := []struct {
		in      string
		want    *PrometheusScrape
		wantErr string
	}{
		{"", nil, ""},
		{`{"scrape":"false","port":"9080"}`, nil, ""},
		{`{"scrape":"true"}`, &PrometheusScrape{Scrape: "true", Path: "/metrics", Port: "80"}, ""},
		{`{"scrape":"true","path":"/m","port":"9090"}`, &PrometheusScrape{Scrape: "true", Path: "/m", Port: "9090"}, ""},
		{`{"port":"15020"}`, nil, "status port"},
		{`not json`, nil, "ISTIO_PROMETHEUS_ANNOTATIONS"},
	}
	for _, tt := range tests {
		got, err := parsePrometheusScrape(tt.in, DefaultStatusAddr)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: err %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || (got == nil) != (tt.want == nil) || got != nil && *got != *tt.want {
			t.Errorf("%s: %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}
