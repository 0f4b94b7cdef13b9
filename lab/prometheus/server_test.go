package prometheus

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
)

// target is a scrape target on loopback: a client_golang registry, as an
// app or Envoy's /stats/prometheus would serve, whose counter counts the
// scrapes it answered.
type target struct {
	srv  *httptest.Server
	hits atomic.Int64
}

func newTarget(t *testing.T, path string, id int) *target {
	t.Helper()
	reg := promclient.NewRegistry()
	c := promclient.NewCounter(promclient.CounterOpts{Name: "lab_requests_total", Help: "Scrapes this target answered."})
	g := promclient.NewGauge(promclient.GaugeOpts{Name: "lab_target_id", Help: "Which test target this is."})
	g.Set(float64(id))
	reg.MustRegister(c, g)
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	tg := &target{}
	mux := http.NewServeMux()
	mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		tg.hits.Add(1)
		c.Inc()
		h.ServeHTTP(w, r)
	})
	tg.srv = httptest.NewServer(mux)
	t.Cleanup(tg.srv.Close)
	return tg
}

func (tg *target) addr() string { return strings.TrimPrefix(tg.srv.URL, "http://") }

// sdGroup is one entry of Prometheus's HTTP SD format.
type sdGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// newSD serves the HTTP SD shape CONTRACT12.md part 6 documents, per role,
// and refuses a query it does not expect so that a wrong URL in the config
// fails the test.
func newSD(t *testing.T, byQuery map[string][]sdGroup) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		groups, ok := byQuery[r.URL.Path+"?"+r.URL.RawQuery]
		if !ok {
			http.Error(w, "unexpected SD query "+r.URL.String(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(groups)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func podLabels(name, port string) map[string]string {
	return map[string]string{
		"__meta_kubernetes_namespace":                   "default",
		"__meta_kubernetes_pod_name":                    name,
		"__meta_kubernetes_pod_container_name":          "istio-proxy",
		"__meta_kubernetes_pod_container_port_name":     port,
		"__meta_kubernetes_pod_container_port_protocol": "TCP",
		"__meta_kubernetes_pod_label_app":               name,
	}
}

func endpointLabels(svc, port string) map[string]string {
	return map[string]string{
		"__meta_kubernetes_namespace":              "istio-system",
		"__meta_kubernetes_service_name":           svc,
		"__meta_kubernetes_endpoint_port_name":     port,
		"__meta_kubernetes_endpoint_port_protocol": "TCP",
		"__meta_kubernetes_endpoint_ready":         "true",
	}
}

type running struct {
	s      *Server
	api    promv1.API
	base   string
	cancel context.CancelFunc
	file   string
}

// start runs a Server on a loopback port with cfg as its config file; it is
// stopped (and must stop cleanly) when the test ends.
func start(t *testing.T, cfg string, opts Options) *running {
	t.Helper()
	dir := t.TempDir()
	if opts.ConfigFile == "" {
		opts.ConfigFile = filepath.Join(dir, "prometheus.yml")
		if err := os.WriteFile(opts.ConfigFile, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if opts.StoragePath == "" {
		opts.StoragePath = filepath.Join(dir, "data")
	}
	opts.ListenAddress = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Start(ctx, opts)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	base := "http://" + s.Addr()
	c, err := api.NewClient(api.Config{Address: base})
	if err != nil {
		t.Fatal(err)
	}
	r := &running{s: s, api: promv1.NewAPI(c), base: base, cancel: cancel, file: opts.ConfigFile}
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	done := make(chan error, 1)
	go func() { done <- r.s.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("shutdown: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Errorf("shutdown took over 15s")
	}
}

// eventually polls check until it returns nil or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %v after %s", what, err, d)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// fast turns a lab config's 15s interval into one a test can wait for.
func fast(cfg []byte) string {
	return strings.NewReplacer("scrape_interval: 15s", "scrape_interval: 200ms",
		"evaluation_interval: 15s", "evaluation_interval: 200ms").Replace(string(cfg))
}

// TestScrapeThroughHTTPSDAndStatic runs the local runtime's config (the
// walkthrough's jobs over HTTP SD) plus a static job against real loopback
// targets and asks the HTTP API, with Prometheus's own Go client, what
// Grafana, Kiali and promtool ask.
func TestScrapeThroughHTTPSDAndStatic(t *testing.T) {
	istiod := newTarget(t, "/metrics", 1)
	envoyA := newTarget(t, "/stats/prometheus", 2)
	envoyB := newTarget(t, "/stats/prometheus", 3)
	app := newTarget(t, "/stats/prometheus", 4) // port not *-envoy-prom: dropped
	xds := newTarget(t, "/metrics", 5)          // istiod's grpc-xds port: dropped
	zipkin := newTarget(t, "/metrics", 6)       // another istio-system service: dropped
	static := newTarget(t, "/metrics", 7)
	sd := newSD(t, map[string][]sdGroup{
		"/debug/prometheus/sd?role=endpoints&namespace=istio-system": {
			{Targets: []string{istiod.addr()}, Labels: endpointLabels("istiod", "http-monitoring")},
			{Targets: []string{xds.addr()}, Labels: endpointLabels("istiod", "grpc-xds")},
			{Targets: []string{zipkin.addr()}, Labels: endpointLabels("zipkin", "http-monitoring")},
		},
		"/debug/prometheus/sd?role=pod": {
			{Targets: []string{envoyA.addr()}, Labels: podLabels("productpage", "http-envoy-prom")},
			{Targets: []string{envoyB.addr()}, Labels: podLabels("ratings", "http-envoy-prom")},
			{Targets: []string{app.addr()}, Labels: podLabels("ratings", "http-app")},
		},
	})
	local, err := LocalConfig(sd.URL, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fast(local) + fmt.Sprintf("  - job_name: static\n    static_configs:\n    - targets: ['%s']\n", static.addr())
	r := start(t, cfg, Options{})
	ctx := context.Background()

	wantJobs := map[string]string{istiod.addr(): "istiod", envoyA.addr(): "envoy-stats", envoyB.addr(): "envoy-stats", static.addr(): "static"}
	eventually(t, 30*time.Second, "targets up", func() error {
		res, err := r.api.Targets(ctx)
		if err != nil {
			return err
		}
		got := map[string]string{}
		for _, a := range res.Active {
			if a.Health != promv1.HealthGood {
				return fmt.Errorf("target %s health %q (%s)", a.ScrapeURL, a.Health, a.LastError)
			}
			got[string(a.Labels["instance"])] = string(a.Labels["job"])
		}
		if fmt.Sprint(got) != fmt.Sprint(wantJobs) {
			return fmt.Errorf("active targets %v, want %v", got, wantJobs)
		}
		if len(res.Dropped) != 3 {
			return fmt.Errorf("%d dropped targets, want 3 (grpc-xds, zipkin, http-app)", len(res.Dropped))
		}
		return nil
	})
	res, err := r.api.Targets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range res.Active {
		wantPath := "/metrics"
		if a.ScrapePool == "envoy-stats" {
			wantPath = "/stats/prometheus"
		}
		if !strings.HasSuffix(a.ScrapeURL, a.DiscoveredLabels["__address__"]+wantPath) {
			t.Errorf("%s: scrape URL %s, want path %s", a.ScrapePool, a.ScrapeURL, wantPath)
		}
	}
	for name, tg := range map[string]*target{"http-app": app, "grpc-xds": xds, "zipkin": zipkin} {
		if n := tg.hits.Load(); n != 0 {
			t.Errorf("%s target was scraped %d times; the walkthrough's relabel rules drop it", name, n)
		}
	}

	// Instant query: each target's own value, under its job.
	eventually(t, 10*time.Second, "lab_target_id", func() error {
		v, _, _, err := r.api.Query(ctx, "lab_target_id", time.Now())
		if err != nil {
			return err
		}
		got := map[string]float64{}
		for _, s := range v.(model.Vector) {
			got[string(s.Metric["job"])+"/"+string(s.Metric["instance"])] = float64(s.Value)
		}
		want := map[string]float64{"istiod/" + istiod.addr(): 1, "envoy-stats/" + envoyA.addr(): 2, "envoy-stats/" + envoyB.addr(): 3, "static/" + static.addr(): 7}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("got %v, want %v", got, want)
		}
		return nil
	})

	// rate over time: each target is scraped every 200ms, its counter
	// counts the scrapes, so each envoy's rate is about 5/s.
	time.Sleep(3 * time.Second)
	v, _, _, err := r.api.Query(ctx, `sum by (job) (rate(lab_requests_total[2s]))`, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rates := map[string]float64{}
	for _, s := range v.(model.Vector) {
		rates[string(s.Metric["job"])] = float64(s.Value)
	}
	if r := rates["envoy-stats"]; r < 6 || r > 14 {
		t.Errorf("sum(rate(lab_requests_total{job=envoy-stats}[2s])) = %v, want about 10 (two targets at 5 scrapes/s); all: %v", r, rates)
	}

	now := time.Now()
	m, _, _, err := r.api.QueryRange(ctx, `lab_requests_total{job="envoy-stats"}`, promv1.Range{Start: now.Add(-2 * time.Second), End: now, Step: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if mat := m.(model.Matrix); len(mat) != 2 || len(mat[0].Values) < 5 || mat[0].Values[len(mat[0].Values)-1].Value <= mat[0].Values[0].Value {
		t.Errorf("query_range: want two rising series of several points, got %v", m)
	}

	series, _, _, err := r.api.Series(ctx, []string{`lab_target_id`}, now.Add(-time.Minute), now)
	if err != nil || len(series) != 4 {
		t.Errorf("series lab_target_id: %v, %v; want 4", series, err)
	}
	names, _, _, err := r.api.LabelNames(ctx, nil, now.Add(-time.Minute), now)
	if err != nil || !slices.Contains(names, "job") || !slices.Contains(names, "instance") || !slices.Contains(names, "__name__") {
		t.Errorf("labels: %v, %v", names, err)
	}
	jobs, _, _, err := r.api.LabelValues(ctx, "job", nil, now.Add(-time.Minute), now)
	if err != nil || fmt.Sprint(jobs) != "[envoy-stats istiod static]" {
		t.Errorf("label/job/values: %v, %v", jobs, err)
	}
	md, err := r.api.Metadata(ctx, "lab_requests_total", "")
	if err != nil || len(md["lab_requests_total"]) == 0 || md["lab_requests_total"][0].Type != promv1.MetricTypeCounter {
		t.Errorf("metadata lab_requests_total: %v, %v; want a counter", md, err)
	}
	bi, err := r.api.Buildinfo(ctx)
	if err != nil || !strings.HasPrefix(bi.Version, "3.") {
		t.Errorf("buildinfo: %+v, %v; want Prometheus 3.x", bi, err)
	}
	conf, err := r.api.Config(ctx)
	if err != nil || !strings.Contains(conf.YAML, "job_name: envoy-stats") || !strings.Contains(conf.YAML, "/debug/prometheus/sd?role=pod") {
		t.Errorf("status/config: %v\n%s", err, conf.YAML)
	}
	ri, err := r.api.Runtimeinfo(ctx)
	if err != nil || ri.StorageRetention != "6h" || !ri.ReloadConfigSuccess {
		t.Errorf("status/runtimeinfo: %+v, %v; want retention 6h, reload success", ri, err)
	}
	if _, err := r.api.Flags(ctx); err != nil {
		t.Errorf("status/flags: %v", err)
	}
	for path, want := range map[string]int{"/-/ready": 200, "/-/healthy": 200, "/metrics": 200, "/api/v1/status/tsdb": 200} {
		resp, err := http.Get(r.base + path)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}

func post(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func staticConfig(jobs map[string]*target) string {
	var b strings.Builder
	b.WriteString("global:\n  scrape_interval: 200ms\nscrape_configs:\n")
	for name, tg := range jobs {
		fmt.Fprintf(&b, "  - job_name: %s\n    static_configs:\n    - targets: ['%s']\n", name, tg.addr())
	}
	return b.String()
}

func activeJobs(ctx context.Context, a promv1.API) (string, error) {
	res, err := a.Targets(ctx)
	if err != nil {
		return "", err
	}
	var jobs []string
	for _, t := range res.Active {
		if t.Health == promv1.HealthGood {
			jobs = append(jobs, t.ScrapePool)
		}
	}
	slices.Sort(jobs)
	return strings.Join(jobs, ","), nil
}

// TestReload: POST /-/reload applies the file anew; a broken file is
// refused and the running config stays; without --web.enable-lifecycle
// the endpoint is forbidden, as Prometheus's.
func TestReload(t *testing.T) {
	a, b := newTarget(t, "/metrics", 1), newTarget(t, "/metrics", 2)
	r := start(t, staticConfig(map[string]*target{"a": a}), Options{EnableLifecycle: true})
	ctx := context.Background()
	waitJobs := func(want string) {
		t.Helper()
		eventually(t, 30*time.Second, "jobs "+want, func() error {
			got, err := activeJobs(ctx, r.api)
			if err == nil && got != want {
				err = fmt.Errorf("active healthy jobs %q", got)
			}
			return err
		})
	}
	waitJobs("a")

	if err := os.WriteFile(r.file, []byte(staticConfig(map[string]*target{"b": b})), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, body := post(t, r.base+"/-/reload"); code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	waitJobs("b")

	if err := os.WriteFile(r.file, []byte("scrape_configs:\n  - job_name: x\n    kubernetes_sd_configs: [{role: nonsense}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, body := post(t, r.base+"/-/reload"); code != 500 || !strings.Contains(body, "nonsense") {
		t.Errorf("reload of a broken config: %d %s; want 500 naming the error", code, body)
	}
	ri, err := r.api.Runtimeinfo(ctx)
	if err != nil || ri.ReloadConfigSuccess {
		t.Errorf("runtimeinfo after a failed reload: %+v, %v; want reloadConfigSuccess false", ri, err)
	}
	waitJobs("b")

	// A config naming an SD mechanism that is not linked in fails with
	// Prometheus's own error rather than being ignored.
	if err := os.WriteFile(r.file, []byte("scrape_configs:\n  - job_name: x\n    ec2_sd_configs: [{region: x}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, body := post(t, r.base+"/-/reload"); code != 500 || !strings.Contains(body, "ec2_sd_configs") {
		t.Errorf("reload naming ec2_sd_configs: %d %s; want 500", code, body)
	}

	off := start(t, staticConfig(map[string]*target{"a": a}), Options{})
	if code, _ := post(t, off.base+"/-/reload"); code != http.StatusForbidden {
		t.Errorf("reload without --web.enable-lifecycle: %d, want 403", code)
	}
}

// TestRefusesWhatItDoesNotRun: remote write and Alertmanagers are not
// wired; a config asking for them must not start half-working.
func TestRefusesWhatItDoesNotRun(t *testing.T) {
	for name, cfg := range map[string]string{
		"remote_write": "remote_write:\n  - url: http://127.0.0.1:1/write\n",
		"alerting":     "alerting:\n  alertmanagers:\n  - static_configs:\n    - targets: ['127.0.0.1:1']\n",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			f := filepath.Join(dir, "p.yml")
			if err := os.WriteFile(f, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Start(context.Background(), Options{ConfigFile: f, StoragePath: dir, ListenAddress: "127.0.0.1:0"})
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("Start: %v; want an error naming %s", err, name)
			}
		})
	}
}

// TestRetentionDeletesOldBlocks writes two blocks into the storage
// directory, one 20h old and one recent, and opens the server with the
// lab's 6h retention: the old block's directory goes, the recent stays.
func TestRetentionDeletesOldBlocks(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	oldBlock := writeBlock(t, dir, now.Add(-20*time.Hour), 1)
	newBlock := writeBlock(t, dir, now.Add(-time.Hour), 2)
	for _, b := range []string{oldBlock, newBlock} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			t.Fatalf("block %s was not written: %v", b, err)
		}
	}
	r := start(t, "scrape_configs: []\n", Options{StoragePath: dir})
	if _, err := os.Stat(filepath.Join(dir, oldBlock)); !os.IsNotExist(err) {
		t.Errorf("block 20h old still there (%v); the 6h retention deletes it", err)
	}
	if _, err := os.Stat(filepath.Join(dir, newBlock)); err != nil {
		t.Errorf("recent block gone: %v", err)
	}
	v, _, _, err := r.api.Query(context.Background(), "lab_block_sample", now.Add(-time.Hour))
	if err != nil || len(v.(model.Vector)) != 1 || v.(model.Vector)[0].Value != 2 {
		t.Errorf("the recent block's sample: %v, %v", v, err)
	}
	ri, err := r.api.Runtimeinfo(context.Background())
	if err != nil || ri.StorageRetention != "6h" {
		t.Errorf("runtimeinfo retention %q, %v", ri.StorageRetention, err)
	}
}

// TestRetentionBySize: the size flag reaches the TSDB and the API reports
// both bounds as Prometheus words them.
func TestRetentionBySize(t *testing.T) {
	r := start(t, "scrape_configs: []\n", Options{RetentionTime: 2 * time.Hour, RetentionSize: 200 << 20})
	// What the TSDB enforces after the config was applied (it reads the
	// bounds from every config it is given), by its own metrics.
	mfs, err := r.s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	limits := map[string]float64{}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "prometheus_tsdb_retention_limit_") {
			limits[mf.GetName()] = mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	if limits["prometheus_tsdb_retention_limit_bytes"] != 200<<20 || limits["prometheus_tsdb_retention_limit_seconds"] != 7200 {
		t.Errorf("TSDB retention limits %v; want 209715200 bytes and 7200 s", limits)
	}
	ri, err := r.api.Runtimeinfo(context.Background())
	if err != nil || ri.StorageRetention != "2h or 200MiB" {
		t.Errorf("runtimeinfo retention %q, %v; want 2h or 200MiB", ri.StorageRetention, err)
	}
}

// TestRestartKeepsData: a clean shutdown releases the TSDB (its lock) and
// keeps what was scraped; a new server on the same directory answers for
// it.
func TestRestartKeepsData(t *testing.T) {
	tg := newTarget(t, "/metrics", 42)
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "p.yml")
	if err := os.WriteFile(cfgFile, []byte(staticConfig(map[string]*target{"keep": tg})), 0o644); err != nil {
		t.Fatal(err)
	}
	first := start(t, "", Options{ConfigFile: cfgFile, StoragePath: filepath.Join(dir, "data")})
	eventually(t, 30*time.Second, "first scrape", func() error {
		if tg.hits.Load() < 3 {
			return fmt.Errorf("%d scrapes", tg.hits.Load())
		}
		return nil
	})
	scraped := time.Now()
	first.stop(t)

	// Nothing scrapes now; the query's lookback still finds the samples.
	second := start(t, "scrape_configs: []\n", Options{StoragePath: filepath.Join(dir, "data")})
	v, _, _, err := second.api.Query(context.Background(), `lab_target_id{job="keep"}`, scraped)
	if err != nil || len(v.(model.Vector)) != 1 || v.(model.Vector)[0].Value != 42 {
		t.Errorf("after restart, lab_target_id: %v, %v; want 42", v, err)
	}
}

// TestConcurrentQueriesWhileScraping keeps several clients querying while
// scrapes append, for the race detector.
func TestConcurrentQueriesWhileScraping(t *testing.T) {
	tg := newTarget(t, "/metrics", 1)
	r := start(t, staticConfig(map[string]*target{"c": tg}), Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				_, _, _, _ = r.api.Query(ctx, "rate(lab_requests_total[1s])", time.Now())
			}
		})
	}
	wg.Wait()
}
