package lab_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshlab/meshlab/lab/labtest"
	"github.com/meshlab/meshlab/lab/local"
	"github.com/meshlab/meshlab/lab/zipkin/jaegertest"
)

// TestTelemetry is the walkthrough's observability chapter on a real
// local lab with the lab's defaults (tracing at 100 %, Prometheus merge):
// its curl loop from the ratings pod, the lab's Prometheus scraping with
// the walkthrough's two jobs, the queries Kiali's graph runs, Istio's own
// metric and trace acceptance checks, bookinfo traces through the
// gateway, forced traces at 0 % sampling, a collector that is down, and
// the mesh config taken at start.
func TestTelemetry(t *testing.T) {
	labtest.Skip(t)
	l := labtest.New(t, "..")
	const httpPort, promPort, zipkinPort, apiPort = "18093", "19090", "19411", "25023"
	l.MustRun("up", "--bookinfo-namespace", "book-demo", "--http-port", httpPort, "--https-port", "18453",
		"--api-port", apiPort, "--prometheus-port", promPort, "--zipkin-port", zipkinPort)
	prom := "http://127.0.0.1:" + promPort
	zipkin := "http://127.0.0.1:" + zipkinPort
	gateway := "http://127.0.0.1:" + httpPort

	// The walkthrough's loop, as written there (kubectl → meshlab).
	ratings := strings.TrimSpace(l.MustRun("get", "pod", "-l", "app=ratings", "-o", "jsonpath={.items[0].metadata.name}", "-n", "book-demo"))
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			_, _ = l.Run("exec", "-n", "book-demo", ratings, "-c", "ratings", "--", "curl", "-sS", "productpage:9080/productpage")
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { stop(); wg.Wait() })

	t.Run("targets", func(t *testing.T) {
		pods := strings.Split(strings.TrimSpace(mustRun(t, l, "get", "pods", "-A", "-o", "name")), "\n")
		want := 7 // six bookinfo sidecars and the gateway
		poll(t, "every sidecar, the gateway and istiod up in Prometheus's targets", 90*time.Second, func() (bool, string) {
			var res struct {
				Data struct {
					ActiveTargets []struct {
						Labels           map[string]string `json:"labels"`
						DiscoveredLabels map[string]string `json:"discoveredLabels"`
						Health           string            `json:"health"`
						ScrapeURL        string            `json:"scrapeUrl"`
					} `json:"activeTargets"`
				} `json:"data"`
			}
			if err := getJSON(prom+"/api/v1/targets", &res); err != nil {
				return false, err.Error()
			}
			up := map[string]int{}
			var seen []string
			for _, tg := range res.Data.ActiveTargets {
				seen = append(seen, tg.Labels["job"]+" "+tg.ScrapeURL+" "+tg.Health)
				if tg.Health == "up" {
					up[tg.Labels["job"]]++
				}
			}
			return up["envoy-stats"] == want && up["istiod"] == 1, fmt.Sprintf("%v (pods %v)", seen, pods)
		})
	})

	t.Run("edges", func(t *testing.T) {
		want := [][2]string{{"ratings-v1", "productpage-v1"}, {"productpage-v1", "details-v1"}, {"productpage-v1", "reviews-v2"}, {"reviews-v2", "ratings-v1"}}
		// Through the gateway too, so reviews v2 is called for sure.
		for range 20 {
			_, _ = httpGet(gateway+"/productpage", nil)
		}
		poll(t, "the bookinfo edges in sum(rate(istio_requests_total{reporter=\"destination\"}[1m]))", 90*time.Second, func() (bool, string) {
			rs, err := promQuery(prom, `sum(rate(istio_requests_total{reporter="destination"}[1m])) by (source_workload, destination_workload)`)
			if err != nil {
				return false, err.Error()
			}
			have := map[[2]string]bool{}
			for _, r := range rs {
				have[[2]string{r.Metric["source_workload"], r.Metric["destination_workload"]}] = true
			}
			for _, e := range want {
				if !have[e] {
					return false, fmt.Sprintf("no edge %v in %v", e, have)
				}
			}
			return true, ""
		})
	})

	t.Run("kiali graph queries", func(t *testing.T) {
		// Kiali's namespace graph (graph/telemetry/istio/istio.go), verbatim
		// with NS=book-demo and a 60 s duration.
		const groupBy = "source_cluster,source_workload_namespace,source_workload,source_canonical_service,source_canonical_revision," +
			"destination_cluster,destination_service_namespace,destination_service,destination_service_name," +
			"destination_workload_namespace,destination_workload,destination_canonical_service,destination_canonical_revision," +
			"request_protocol,response_code,grpc_response_status,response_flags"
		for _, q := range []string{
			`sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="book-demo"}[60s])) by (` + groupBy + `) > 0`,
			`sum(rate(istio_requests_total{reporter="source",source_workload_namespace="book-demo"}[60s])) by (` + groupBy + `) > 0`,
		} {
			rs, err := promQuery(prom, q)
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) == 0 {
				t.Errorf("%s: no series", q)
			}
			for _, r := range rs {
				for _, k := range strings.Split(groupBy, ",") {
					if _, ok := r.Metric[k]; !ok && k != "grpc_response_status" {
						t.Errorf("%s: series %v has no %s", q, r.Metric, k)
					}
				}
				if r.Metric["destination_cluster"] != "Kubernetes" {
					t.Errorf("destination_cluster = %q, want Istio's default cluster name Kubernetes", r.Metric["destination_cluster"])
				}
			}
		}
	})

	t.Run("istio stats_test", func(t *testing.T) {
		// tests/integration/telemetry/api/stats_test.go's label check, with
		// productpage calling reviews in book-demo.
		for _, reporter := range []string{"source", "destination"} {
			q := fmt.Sprintf(`sum(istio_requests_total{reporter=%q,request_protocol="http",response_code="200",destination_app="reviews",`+
				`destination_service="reviews.book-demo.svc.cluster.local",destination_service_name="reviews",destination_workload_namespace="book-demo",`+
				`destination_service_namespace="book-demo",source_app="productpage",source_version="v1",source_workload="productpage-v1",`+
				`source_workload_namespace="book-demo",source_cluster="Kubernetes"})`, reporter)
			rs, err := promQuery(prom, q)
			if err != nil || len(rs) != 1 || rs[0].value() <= 0 {
				t.Errorf("%s = %v (%v), want > 0", q, rs, err)
			}
		}
		// Every bucket of Envoy's defaults is there (19 bounds and +Inf).
		rs, err := promQuery(prom, `count(sum by(le)(rate(istio_request_duration_milliseconds_bucket{source_app="productpage",reporter="source",response_code="200"}[24h])))`)
		if err != nil || len(rs) != 1 || rs[0].value() != 20 {
			t.Errorf("bucket count = %v (%v), want 20", rs, err)
		}
		// istiod's job: what Kiali and Istio's dashboards read.
		for _, q := range []string{`pilot_xds`, `pilot_xds_pushes`, `pilot_info`, `pilot_proxy_convergence_time_count`, `pilot_services`} {
			rs, err := promQuery(prom, `sum(`+q+`{job="istiod"})`)
			if err != nil || len(rs) != 1 || rs[0].value() <= 0 {
				t.Errorf("%s from istiod's job = %v (%v), want > 0", q, rs, err)
			}
		}
	})

	t.Run("bookinfo trace", func(t *testing.T) {
		// One productpage request through the gateway, sampled by its
		// caller, is one trace of the bookinfo shape.
		traceID, spanID := randomHex(16), randomHex(8)
		body, err := httpGet(gateway+"/productpage", map[string]string{"x-b3-traceid": traceID, "x-b3-spanid": spanID, "x-b3-sampled": "1"})
		if err != nil {
			t.Fatal(err)
		}
		wantSpans := 8
		if reviewsVersion(body) == "v1" {
			wantSpans = 6
		}
		var spans []zspan
		poll(t, "the trace of one productpage request in the trace store", 30*time.Second, func() (bool, string) {
			spans = nil
			if err := getJSON(zipkin+"/api/v2/trace/"+traceID, &spans); err != nil {
				return false, err.Error()
			}
			return len(spans) == wantSpans, fmt.Sprintf("%d spans, want %d: %s", len(spans), wantSpans, spanList(spans))
		})
		checkBookinfoTrace(t, spans, spanID)
	})

	t.Run("istio trace acceptance", func(t *testing.T) {
		// tests/integration/telemetry/tracing: the caller's CLIENT span named
		// for the default route, from the caller's service, with exactly one
		// child of the same name from the server's.
		const name = "productpage.book-demo.svc.cluster.local:9080/*"
		poll(t, "a trace from ratings to productpage", 30*time.Second, func() (bool, string) {
			var traces [][]zspan
			if err := getJSON(zipkin+"/api/v2/traces?limit=100&spanName="+url.QueryEscape(name), &traces); err != nil {
				return false, err.Error()
			}
			for _, tr := range traces {
				for _, root := range tr {
					if root.Name != name || root.LocalEndpoint.ServiceName != "ratings.book-demo" || root.Kind != "CLIENT" {
						continue
					}
					var children []zspan
					for _, s := range tr {
						if s.ParentID == root.ID {
							children = append(children, s)
						}
					}
					if len(children) == 1 && children[0].Name == name && children[0].LocalEndpoint.ServiceName == "productpage.book-demo" && children[0].Kind == "SERVER" {
						return true, ""
					}
				}
			}
			return false, fmt.Sprintf("%d traces, none with the shape", len(traces))
		})
	})

	t.Run("mesh config at start", func(t *testing.T) {
		// As in the walkthrough's note, defaultConfig reaches a proxy when
		// it starts: up --set on the running lab changes the ConfigMap, the
		// running sidecar keeps 100 %, a restarted one takes 1 %.
		sampling := func() string {
			pod, err := l.Run("get", "pod", "-l", "app=details", "-o", "jsonpath={.items[0].metadata.name}", "-n", "book-demo")
			if err != nil {
				return err.Error()
			}
			out, err := l.Run("proxy-config", "listeners", "-n", "book-demo", strings.TrimSpace(pod), "-o", "json")
			if err != nil {
				return err.Error() + out
			}
			i := strings.Index(out, `"random_sampling"`)
			if i < 0 {
				return "none"
			}
			end := strings.Index(out[i:], "}")
			return strings.Join(strings.Fields(out[i:i+end+1]), "")
		}
		before := sampling()
		if before != `"random_sampling":{"value":100}` {
			t.Fatalf("details' random_sampling = %s, want the lab's 100", before)
		}
		mustRun(t, l, "up", "--set", "meshConfig.defaultConfig.tracing.sampling=1", "--api-port", apiPort)
		time.Sleep(2 * time.Second)
		if got := sampling(); got != before {
			t.Errorf("a running sidecar's sampling moved to %s before a restart", got)
		}
		mustRun(t, l, "rollout", "restart", "deployment/details-v1", "-n", "book-demo")
		poll(t, "the restarted details to sample 1 %", 60*time.Second, func() (bool, string) {
			s := sampling()
			return s == `"random_sampling":{"value":1}`, s
		})
		// Back to the lab's values for what follows.
		mustRun(t, l, "up", "--set", "meshConfig.defaultConfig.tracing.sampling=100", "--api-port", apiPort)
		mustRun(t, l, "rollout", "restart", "deployment/details-v1", "-n", "book-demo")
	})

	// The Telemetry API's providers, given to the running lab as helm
	// values (up --set on a lab that is up applies the istio ConfigMap).
	l.MustRun("up", "--api-port", apiPort,
		"--set", "meshConfig.extensionProviders[0].name=zipkin",
		"--set", "meshConfig.extensionProviders[0].zipkin.service=zipkin.istio-system.svc.cluster.local",
		"--set", "meshConfig.extensionProviders[0].zipkin.port=9411",
		"--set", "meshConfig.extensionProviders[1].name=nowhere",
		"--set", "meshConfig.extensionProviders[1].zipkin.service=nowhere.istio-system.svc.cluster.local",
		"--set", "meshConfig.extensionProviders[1].zipkin.port=9411")

	t.Run("forced at 0 %", func(t *testing.T) {
		mustRun(t, l, "apply", "-f", "testdata/telemetry/sampling-0.yaml")
		time.Sleep(3 * time.Second)
		// Not sampled: a new trace the gateway decides on.
		plain := randomHex(16)
		if _, err := httpGet(gateway+"/productpage", map[string]string{"x-b3-traceid": plain, "x-b3-spanid": randomHex(8)}); err != nil {
			t.Fatal(err)
		}
		// Forced by the client: x-client-trace-id at the edge.
		forced := uuid()
		if _, err := httpGet(gateway+"/productpage", map[string]string{"x-client-trace-id": forced}); err != nil {
			t.Fatal(err)
		}
		poll(t, "the client-forced trace", 30*time.Second, func() (bool, string) {
			var traces [][]zspan
			q := url.Values{"annotationQuery": {"guid:x-client-trace-id=" + forced}, "limit": {"10"}, "lookback": {"600000"}}
			if err := getJSON(zipkin+"/api/v2/traces?"+q.Encode(), &traces); err != nil {
				return false, err.Error()
			}
			return len(traces) == 1, fmt.Sprintf("%d traces", len(traces))
		})
		var spans []zspan
		_ = getJSON(zipkin+"/api/v2/trace/"+plain, &spans)
		if len(spans) != 0 {
			t.Errorf("at 0 %% sampling an unforced request was traced: %s", spanList(spans))
		}
		mustRun(t, l, "delete", "-f", "testdata/telemetry/sampling-0.yaml")
	})

	t.Run("collector down", func(t *testing.T) {
		// Every span to a collector that does not answer: requests are
		// unaffected and the gateway's memory stays bounded.
		mustRun(t, l, "apply", "-f", "testdata/telemetry/collector-down.yaml")
		time.Sleep(3 * time.Second)
		gw := gatewayPID(t, l)
		before := rssKB(t, gw)
		for i := range 1500 {
			if _, err := httpGet(gateway+"/productpage", nil); err != nil {
				t.Fatalf("request %d with the collector down: %v", i, err)
			}
		}
		after := rssKB(t, gw)
		t.Logf("gateway RSS %d kB → %d kB over 1500 traced requests with the collector down", before, after)
		if after-before > 30*1024 {
			t.Errorf("gateway RSS grew by %d kB with the collector down: spans are not bounded", after-before)
		}
		stats := mustRun(t, l, "exec", "-n", "istio-system", "deploy/istio-ingressgateway", "--", "curl", "-sS", "localhost:15000/stats")
		if !strings.Contains(stats, "tracing.zipkin.reports_failed") && !strings.Contains(stats, "tracing.zipkin.reports_dropped") {
			t.Errorf("the gateway's stats say nothing of failed reports:\n%s", stats)
		}
		mustRun(t, l, "delete", "-f", "testdata/telemetry/collector-down.yaml")
	})

	t.Run("stock prometheus", func(t *testing.T) {
		// The scrape config meshlab prints, run by Debian's Prometheus on the
		// host: a real external client of istiod's HTTP SD.
		bin, err := exec.LookPath("prometheus")
		if err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("prometheus (Debian's package) is not installed; scripts/test installs it")
			}
			t.Skip("prometheus (Debian's package) is not installed")
		}
		dir := t.TempDir()
		cfg := filepath.Join(dir, "prometheus.yml")
		if err := os.WriteFile(cfg, []byte(mustRun(t, l, "prometheus-config")), 0o644); err != nil {
			t.Fatal(err)
		}
		const addr = "127.0.0.1:19191"
		cmd := exec.Command(bin, "--config.file", cfg, "--storage.tsdb.path", filepath.Join(dir, "data"), "--web.listen-address", addr)
		out, _ := os.Create(filepath.Join(dir, "prometheus.log"))
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		targets := func(base string) []string {
			var res struct {
				Data struct {
					ActiveTargets []struct {
						Labels    map[string]string `json:"labels"`
						ScrapeURL string            `json:"scrapeUrl"`
					} `json:"activeTargets"`
				} `json:"data"`
			}
			if err := getJSON(base+"/api/v1/targets", &res); err != nil {
				return nil
			}
			var s []string
			for _, tg := range res.Data.ActiveTargets {
				s = append(s, tg.Labels["job"]+" "+tg.ScrapeURL)
			}
			sort.Strings(s)
			return s
		}
		poll(t, "Debian's Prometheus to find the lab's targets", 60*time.Second, func() (bool, string) {
			// Both sides fresh each time: a pod an earlier subtest restarted
			// reaches each Prometheus at its own service-discovery refresh.
			want := targets(prom)
			got := targets("http://" + addr)
			return len(want) > 0 && slices.Equal(got, want), fmt.Sprintf("got %v, want %v", got, want)
		})
	})

	t.Run("jaeger", func(t *testing.T) {
		// The walkthrough's Tempo setting, pointed at a real Zipkin-protocol
		// receiver (Jaeger v2's) listening on the lab's bridge: the mesh
		// config's address, taken by the proxies when they restart.
		j := jaegertest.StartOn(t, local.Network.Gateway.String())
		mustRun(t, l, "up", "--set", "meshConfig.defaultConfig.tracing.zipkin.address="+j.ZipkinAddr)
		mustRun(t, l, "rollout", "restart", "deployment", "-n", "book-demo")
		poll(t, "productpage's restarted pod to answer", 60*time.Second, func() (bool, string) {
			_, err := httpGet(gateway+"/productpage", nil)
			return err == nil, fmt.Sprint(err)
		})
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		poll(t, "a bookinfo trace in Jaeger", 60*time.Second, func() (bool, string) {
			// From the restarted ratings, through the restarted sidecars,
			// which send to Jaeger.
			pod, _ := l.Run("get", "pod", "-l", "app=ratings", "-o", "jsonpath={.items[0].metadata.name}", "-n", "book-demo")
			_, _ = l.Run("exec", "-n", "book-demo", strings.TrimSpace(pod), "-c", "ratings", "--", "curl", "-sS", "-o", "/dev/null", "productpage:9080/productpage")
			traces, err := j.Traces(ctx, "productpage.book-demo")
			if err != nil {
				return false, err.Error()
			}
			for _, tr := range traces {
				services := map[string]bool{}
				linked := 0
				for _, sp := range tr.Spans {
					services[tr.Processes[sp.ProcessID].ServiceName] = true
					if sp.Parent() != "" {
						linked++
					}
				}
				if services["productpage.book-demo"] && services["details.book-demo"] && linked >= 2 {
					return true, ""
				}
			}
			return false, fmt.Sprintf("%d traces, none from productpage to details", len(traces))
		})
	})
}

// zspan is a Zipkin v2 span as the trace store returns it.
type zspan struct {
	TraceID       string                       `json:"traceId"`
	ID            string                       `json:"id"`
	ParentID      string                       `json:"parentId"`
	Name          string                       `json:"name"`
	Kind          string                       `json:"kind"`
	Timestamp     int64                        `json:"timestamp"`
	Duration      int64                        `json:"duration"`
	LocalEndpoint struct{ ServiceName string } `json:"localEndpoint"`
	Tags          map[string]string            `json:"tags"`
}

func spanList(spans []zspan) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "\n  %s %s parent=%s %s %s", s.ID, s.Kind, s.ParentID, s.LocalEndpoint.ServiceName, s.Name)
	}
	return b.String()
}

// checkBookinfoTrace checks the parent links, kinds, services and tags of
// a productpage request's trace: the gateway's CLIENT span under the
// caller's span, productpage's SERVER under it, and for each call
// productpage and reviews make a CLIENT span under the caller's SERVER
// span with the callee's SERVER span under it.
func checkBookinfoTrace(t *testing.T, spans []zspan, callerSpan string) {
	t.Helper()
	byID := map[string]zspan{}
	for _, s := range spans {
		if _, dup := byID[s.ID]; dup {
			t.Errorf("span id %s twice (shared_span_context must be false)", s.ID)
		}
		byID[s.ID] = s
		if len(s.TraceID) != 32 {
			t.Errorf("trace id %q: want 128 bits (32 hex)", s.TraceID)
		}
		for _, tag := range []string{"node_id", "guid:x-request-id", "http.url", "http.method", "http.protocol", "http.status_code",
			"response_flags", "upstream_cluster", "peer.address", "request_size", "response_size", "component",
			"istio.canonical_service", "istio.canonical_revision", "istio.mesh_id", "istio.namespace", "istio.cluster_id"} {
			if _, ok := s.Tags[tag]; !ok {
				t.Errorf("span %s %s of %s has no tag %s: %v", s.Kind, s.Name, s.LocalEndpoint.ServiceName, tag, s.Tags)
			}
		}
		if s.Tags["http.status_code"] != "200" {
			t.Errorf("span %s of %s: http.status_code %q", s.Name, s.LocalEndpoint.ServiceName, s.Tags["http.status_code"])
		}
	}
	find := func(service, kind, parent string) (zspan, bool) {
		for _, s := range spans {
			if s.LocalEndpoint.ServiceName == service && s.Kind == kind && (parent == "" || s.ParentID == parent) {
				return s, true
			}
		}
		t.Errorf("no %s span of %s under %s in%s", kind, service, parent, spanList(spans))
		return zspan{}, false
	}
	gw, ok := find("istio-ingressgateway.istio-system", "CLIENT", callerSpan)
	if !ok {
		return
	}
	if want := "productpage.book-demo.svc.cluster.local:9080/productpage"; gw.Name != want {
		t.Errorf("the gateway's span is named %q, want %q (the VirtualService route's decorator)", gw.Name, want)
	}
	pp, ok := find("productpage.book-demo", "SERVER", gw.ID)
	if !ok {
		return
	}
	for _, callee := range []string{"details", "reviews"} {
		c, ok := find("productpage.book-demo", "CLIENT", pp.ID)
		_ = c
		if !ok {
			return
		}
		found := false
		for _, s := range spans {
			if s.Kind == "CLIENT" && s.ParentID == pp.ID && strings.HasPrefix(s.Name, callee+".") {
				if _, ok := find(callee+".book-demo", "SERVER", s.ID); ok {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("no productpage → %s CLIENT/SERVER pair in%s", callee, spanList(spans))
		}
	}
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (s promSample) value() float64 {
	var f float64
	if v, ok := s.Value[1].(string); ok {
		_, _ = fmt.Sscan(v, &f)
	}
	return f
}

func promQuery(base, q string) ([]promSample, error) {
	var res struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []promSample `json:"result"`
		} `json:"data"`
	}
	if err := getJSON(base+"/api/v1/query?query="+url.QueryEscape(q), &res); err != nil {
		return nil, err
	}
	if res.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", q, res.Error)
	}
	return res.Data.Result, nil
}

func getJSON(u string, v any) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, b)
	}
	return json.Unmarshal(b, v)
}

func httpGet(u string, h map[string]string) (string, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return string(b), nil
}

// poll waits up to d for cond, failing the test with cond's last word.
func poll(t *testing.T, what string, d time.Duration, cond func() (bool, string)) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
	}
	t.Fatalf("timed out after %s waiting for %s: %s", d, what, last)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func uuid() string {
	h := randomHex(16)
	return h[:8] + "-" + h[8:12] + "-4" + h[13:16] + "-a" + h[17:20] + "-" + h[20:]
}

func gatewayPID(t *testing.T, l *labtest.Lab) string {
	t.Helper()
	var st struct {
		Pods []struct {
			Namespace, Deployment string
			Containers            []struct {
				Name string
				PID  int
			}
		}
	}
	if err := json.Unmarshal([]byte(mustRun(t, l, "status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	for _, p := range st.Pods {
		if p.Deployment == "istio-ingressgateway" {
			for _, c := range p.Containers {
				if c.Name == "istio-proxy" {
					return fmt.Sprint(c.PID)
				}
			}
		}
	}
	t.Fatal("no gateway pid in status")
	return ""
}

func rssKB(t *testing.T, pid string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var kb int
			_, _ = fmt.Sscan(strings.TrimPrefix(line, "VmRSS:"), &kb)
			return kb
		}
	}
	t.Fatalf("no VmRSS in /proc/%s/status", pid)
	return 0
}

// mustRun is l.MustRun failing t, the subtest, rather than the test that
// made l.
func mustRun(t *testing.T, l *labtest.Lab, args ...string) string {
	t.Helper()
	out, err := l.Run(args...)
	if err != nil {
		t.Fatalf("meshlab %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}
