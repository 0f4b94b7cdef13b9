package health

import (
	"context"
	"log/slog"
	"math"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/meshlab/meshlab/lab/prometheus/promtest"
)

// series is one istio_requests_total series of book-demo's traffic and
// its rate in requests per second.
type series struct {
	reporter, src, srcNS, dst, dstNS, svc, proto, code, grpc string
	rate                                                     float64
}

func (s series) labels() map[string]string {
	app := func(w string) string {
		if a, _, ok := cutVersion(w); ok {
			return a
		}
		return w
	}
	m := map[string]string{
		"__name__": "istio_requests_total", "reporter": s.reporter,
		"source_workload": s.src, "source_workload_namespace": s.srcNS, "source_canonical_service": app(s.src), "source_cluster": "Kubernetes",
		"destination_workload": s.dst, "destination_workload_namespace": s.dstNS, "destination_canonical_service": app(s.dst),
		"destination_service_name": s.svc, "destination_service_namespace": s.dstNS, "destination_cluster": "Kubernetes",
		"request_protocol": s.proto, "response_code": s.code, "grpc_response_status": s.grpc,
	}
	if s.src == "unknown" {
		m["source_canonical_service"], m["source_cluster"] = "unknown", "unknown"
	}
	return m
}

// cutVersion splits "reviews-v2" into app and version as the fixtures name workloads.
func cutVersion(w string) (string, string, bool) {
	if len(w) > 3 && w[len(w)-3:len(w)-1] == "-v" {
		return w[:len(w)-3], w[len(w)-2:], true
	}
	return w, "", false
}

func both(s series) []series {
	d := s
	s.reporter, d.reporter = "source", "destination"
	return []series{s, d}
}

// bookDemo is traffic of every shape health folds: meshed calls reported
// twice, a gateway in another namespace, a client outside the mesh
// (destination report only), a destination without sidecar (source
// report only), gRPC, and another namespace's traffic that must not count.
func bookDemo() []series {
	var out []series
	out = append(out, both(series{src: "productpage-v1", srcNS: "book-demo", dst: "reviews-v2", dstNS: "book-demo", svc: "reviews", proto: "http", code: "200", rate: 10})...)
	out = append(out, both(series{src: "productpage-v1", srcNS: "book-demo", dst: "reviews-v2", dstNS: "book-demo", svc: "reviews", proto: "http", code: "503", rate: 1})...)
	out = append(out, both(series{src: "reviews-v2", srcNS: "book-demo", dst: "ratings-v1", dstNS: "book-demo", svc: "ratings", proto: "http", code: "200", rate: 5})...)
	out = append(out, both(series{src: "reviews-v2", srcNS: "book-demo", dst: "ratings-v1", dstNS: "book-demo", svc: "ratings", proto: "http", code: "500", rate: 5})...)
	out = append(out, both(series{src: "istio-ingressgateway", srcNS: "istio-system", dst: "productpage-v1", dstNS: "book-demo", svc: "productpage", proto: "http", code: "200", rate: 4})...)
	out = append(out, both(series{src: "productpage-v1", srcNS: "book-demo", dst: "details-v1", dstNS: "book-demo", svc: "details", proto: "grpc", code: "200", grpc: "0", rate: 9})...)
	out = append(out, both(series{src: "productpage-v1", srcNS: "book-demo", dst: "details-v1", dstNS: "book-demo", svc: "details", proto: "grpc", code: "200", grpc: "14", rate: 1})...)
	out = append(out,
		series{reporter: "destination", src: "unknown", srcNS: "unknown", dst: "details-v1", dstNS: "book-demo", svc: "details", proto: "http", code: "404", rate: 1},
		series{reporter: "destination", src: "unknown", srcNS: "unknown", dst: "details-v1", dstNS: "book-demo", svc: "details", proto: "http", code: "200", rate: 1},
		series{reporter: "source", src: "productpage-v1", srcNS: "book-demo", dst: "unknown", dstNS: "book-demo", svc: "legacy", proto: "http", code: "0", rate: 2},
		// A plaintext client refused by ratings' STRICT policy: only its own proxy reports.
		series{reporter: "source", src: "details-v1", srcNS: "book-demo", dst: "ratings-v1", dstNS: "book-demo", svc: "ratings", proto: "http", code: "503", rate: 1},
	)
	out = append(out, both(series{src: "sleep", srcNS: "other", dst: "httpbin", dstNS: "other", svc: "httpbin", proto: "http", code: "500", rate: 3})...)
	return out
}

func wantBookDemo() NamespaceRequests {
	h := func(kv ...any) map[string]map[string]float64 {
		return map[string]map[string]float64{"http": codes(kv...)}
	}
	return NamespaceRequests{
		Apps: map[string]Requests{
			"productpage": {
				Inbound: h("200", 4),
				Outbound: map[string]map[string]float64{
					"http": codes("200", 10, "503", 1, "-", 2),
					"grpc": codes("0", 9, "14", 1),
				},
			},
			"reviews": {Inbound: h("200", 10, "503", 1), Outbound: h("200", 5, "500", 5)},
			"ratings": {Inbound: h("200", 5, "500", 5, "503", 1)},
			"details": {Inbound: map[string]map[string]float64{"http": codes("200", 1, "404", 1), "grpc": codes("0", 9, "14", 1)}, Outbound: h("503", 1)},
		},
		Workloads: map[string]Requests{
			"productpage-v1": {Inbound: h("200", 4), Outbound: map[string]map[string]float64{"http": codes("200", 10, "503", 1, "-", 2), "grpc": codes("0", 9, "14", 1)}},
			"reviews-v2":     {Inbound: h("200", 10, "503", 1), Outbound: h("200", 5, "500", 5)},
			"ratings-v1":     {Inbound: h("200", 5, "500", 5, "503", 1)},
			"details-v1":     {Inbound: map[string]map[string]float64{"http": codes("200", 1, "404", 1), "grpc": codes("0", 9, "14", 1)}, Outbound: h("503", 1)},
		},
		Services: map[string]Requests{
			"productpage": {Inbound: h("200", 4)},
			"reviews":     {Inbound: h("200", 10, "503", 1)},
			"ratings":     {Inbound: h("200", 5, "500", 5, "503", 1)},
			"details":     {Inbound: map[string]map[string]float64{"http": codes("200", 1, "404", 1), "grpc": codes("0", 9, "14", 1)}},
			"legacy":      {Inbound: h("-", 2)},
		},
	}
}

func sameRates(t *testing.T, what string, got, want map[string]map[string]float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: protocols %v, want %v", what, got, want)
		return
	}
	for p, w := range want {
		g := got[p]
		if len(g) != len(w) {
			t.Errorf("%s %s: codes %v, want %v", what, p, g, w)
			continue
		}
		for c, v := range w {
			if math.Abs(g[c]-v) > 1e-6 {
				t.Errorf("%s %s %s: %v req/s, want %v", what, p, c, g[c], v)
			}
		}
	}
}

func sameNamespace(t *testing.T, got, want NamespaceRequests) {
	t.Helper()
	for _, k := range []struct {
		kind      string
		got, want map[string]Requests
	}{{"app", got.Apps, want.Apps}, {"workload", got.Workloads, want.Workloads}, {"service", got.Services, want.Services}} {
		if names(k.got) != names(k.want) {
			t.Errorf("%ss %s, want %s", k.kind, names(k.got), names(k.want))
		}
		for name, w := range k.want {
			sameRates(t, k.kind+" "+name+" inbound", k.got[name].Inbound, w.Inbound)
			sameRates(t, k.kind+" "+name+" outbound", k.got[name].Outbound, w.Outbound)
		}
	}
}

func names(m map[string]Requests) string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return fmtList(out)
}

func fmtList(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ","
		}
		out += x
	}
	return out
}

func TestFold(t *testing.T) {
	var vec model.Vector
	for _, s := range bookDemo() {
		m := model.Metric{}
		for k, v := range s.labels() {
			if v != "" {
				m[model.LabelName(k)] = model.LabelValue(v)
			}
		}
		vec = append(vec, &model.Sample{Metric: m, Value: model.SampleValue(s.rate)})
	}
	sameNamespace(t, Fold("book-demo", vec), wantBookDemo())
}

func TestRateQueries(t *testing.T) {
	q := RateQueries("book-demo", "Kubernetes", time.Minute)
	want := [2]string{
		`rate(istio_requests_total{destination_service_namespace="book-demo",source_workload_namespace!="book-demo",destination_cluster="Kubernetes"}[1m]) > 0`,
		`rate(istio_requests_total{source_workload_namespace="book-demo",source_cluster="Kubernetes"}[1m]) > 0`,
	}
	if q != want {
		t.Errorf("queries\n%s\n%s\nwant\n%s\n%s", q[0], q[1], want[0], want[1])
	}
}

// writeCounters writes every series as a counter rising at its rate,
// sampled every 15s over the 5 minutes before end, into a TSDB block in dir.
func writeCounters(t *testing.T, dir string, ss []series, end time.Time) {
	t.Helper()
	w, err := tsdb.NewBlockWriter(slog.New(slog.DiscardHandler), dir, int64(2*time.Hour/time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Close() }()
	ctx := context.Background()
	app := w.Appender(ctx)
	for _, s := range ss {
		var b labels.ScratchBuilder
		for k, v := range s.labels() {
			if v != "" {
				b.Add(k, v)
			}
		}
		b.Sort()
		lset := b.Labels()
		for i := 0; i <= 20; i++ {
			ts := end.Add(time.Duration(i-20) * 15 * time.Second)
			// Far from zero, so rate() extrapolates to the window's edges.
			if _, err := app.Append(0, lset, ts.UnixMilli(), 1000+s.rate*15*float64(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// QueryNamespace against meshlab's own Prometheus (the real engine and
// HTTP API) over a TSDB holding book-demo's traffic.
func TestQueryNamespacePrometheus(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	end := time.Now().Add(-time.Minute).Truncate(time.Second)
	writeCounters(t, data, bookDemo(), end)
	prom, _ := promtest.Start(t, "global:\n  scrape_interval: 1h\n", data)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	got, err := QueryNamespace(ctx, prom, "book-demo", "Kubernetes", time.Minute, end)
	if err != nil {
		t.Fatal(err)
	}
	sameNamespace(t, got, wantBookDemo())

	for _, tt := range []struct {
		kind, name string
		r          map[string]Requests
		want       Status
	}{
		{"app", "productpage", got.Apps, Failure}, // 2 of 13 HTTP requests outbound got no response
		{"app", "reviews", got.Apps, Failure},     // calls ratings, which answers 50 % 500
		{"service", "reviews", got.Services, Degraded},
		{"service", "ratings", got.Services, Failure},
		{"service", "details", got.Services, Failure}, // 50 % 404
		{"service", "productpage", got.Services, Healthy},
		{"service", "legacy", got.Services, Failure},
		{"service", "nothing", got.Services, NA},
	} {
		if s, pct := tt.r[tt.name].Evaluate(DefaultTolerances()); s != tt.want {
			t.Errorf("%s %s: %s (%.1f %%), want %s", tt.kind, tt.name, s, pct, tt.want)
		}
	}

	// Another cluster's name matches nothing; a window without traffic neither.
	for _, q := range []struct {
		cluster string
		at      time.Time
	}{{"elsewhere", end}, {"Kubernetes", end.Add(-time.Hour)}} {
		got, err := QueryNamespace(ctx, prom, "book-demo", q.cluster, time.Minute, q.at)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Apps)+len(got.Workloads)+len(got.Services) != 0 {
			t.Errorf("cluster %s at %s: %+v, want nothing", q.cluster, q.at, got)
		}
	}

	cancel()
	if _, err := QueryNamespace(ctx, prom, "book-demo", "", time.Minute, end); err == nil {
		t.Error("a cancelled query returned no error")
	}
}
