package graph

import (
	"context"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/route"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/util/notifications"
	apiv1 "github.com/prometheus/prometheus/web/api/v1"
)

// promEnv is a real Prometheus for the tests: its TSDB, its PromQL engine
// and its HTTP API v1 (Prometheus's own packages, wired as lab/prometheus
// wires them), served on loopback. Samples are written straight into the
// TSDB head, so a test controls every value the queries see.
type promEnv struct {
	db  *tsdb.DB
	api promv1.API
	url string
	rec *recorder

	closeOnce sync.Once
}

// close closes the TSDB (once): a benchmark drops it from the heap
// before measuring the console alone.
func (p *promEnv) close() {
	p.closeOnce.Do(func() { _ = p.db.Close() })
}

func newPromEnv(tb testing.TB) *promEnv {
	tb.Helper()
	logger := slog.New(slog.DiscardHandler)
	opts := tsdb.DefaultOptions()
	opts.StripeSize = 1024
	db, err := tsdb.Open(tb.TempDir(), logger, nil, opts, nil)
	if err != nil {
		tb.Fatalf("open TSDB: %v", err)
	}
	env := &promEnv{db: db}
	tb.Cleanup(env.close)
	p := parser.NewParser(parser.Options{})
	engine := promql.NewEngine(promql.EngineOpts{
		Logger:        logger,
		MaxSamples:    50000000,
		Timeout:       time.Minute,
		LookbackDelta: 5 * time.Minute,
		Parser:        p,
	})
	reg := prometheus.NewRegistry()
	a := apiv1.NewAPI(
		engine, db, nil, db,
		func(context.Context) apiv1.ScrapePoolsRetriever { return nil },
		func(context.Context) apiv1.TargetRetriever { return nil },
		func(context.Context) apiv1.AlertmanagerRetriever { return nil },
		func() config.Config { return config.Config{} },
		nil,
		apiv1.GlobalURLOptions{ListenAddress: "127.0.0.1:0", Host: "127.0.0.1", Scheme: "http"},
		func(f http.HandlerFunc) http.HandlerFunc { return f },
		nil,
		"",
		false,
		false, 0,
		logger,
		func(context.Context) apiv1.RulesRetriever { return nil },
		5e7, 10, 1048576,
		false, nil,
		func() (apiv1.RuntimeInfo, error) { return apiv1.RuntimeInfo{}, nil },
		&apiv1.PrometheusVersion{Version: "3.16.0"},
		func() []notifications.Notification { return nil },
		func() (<-chan notifications.Notification, func(), bool) { return nil, func() {}, false },
		reg, reg,
		nil,
		false, nil, false, false, false,
		5*time.Minute,
		false, false,
		nil, nil,
		apiv1.OpenAPIOptions{},
		p,
		false,
		time.Minute,
	)
	r := route.New()
	a.Register(r)
	mux := http.NewServeMux()
	mux.Handle("/api/v1/", http.StripPrefix("/api/v1", r))
	srv := httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	rec := &recorder{rt: http.DefaultTransport, answers: map[string][]byte{}}
	client, err := api.NewClient(api.Config{Address: srv.URL, RoundTripper: rec})
	if err != nil {
		tb.Fatalf("Prometheus client: %v", err)
	}
	env.api, env.url, env.rec = promv1.NewAPI(client), srv.URL, rec
	return env
}

// counter is one counter series growing at a constant rate per second.
type counter struct {
	labels map[string]string
	rate   float64
}

// write appends every counter's samples from start to end, one every
// step, its value rate × seconds since start, so rate() over any window
// inside is the counter's rate.
func (p *promEnv) write(tb testing.TB, cs []counter, start, end time.Time, step time.Duration) {
	tb.Helper()
	p.writeStopped(tb, cs, start, end, end, step)
}

// writeStopped is write for counters that stop growing at stop, as a
// proxy's counters do when its traffic ends: still exported, flat.
func (p *promEnv) writeStopped(tb testing.TB, cs []counter, start, stop, end time.Time, step time.Duration) {
	tb.Helper()
	ls := make([]labels.Labels, len(cs))
	for i, c := range cs {
		ls[i] = labels.FromMap(c.labels)
	}
	for t := start; !t.After(end); t = t.Add(step) {
		app := p.db.Appender(context.Background())
		secs := t.Sub(start).Seconds()
		if t.After(stop) {
			secs = stop.Sub(start).Seconds()
		}
		for i, c := range cs {
			if _, err := app.Append(0, ls[i], t.UnixMilli(), c.rate*secs); err != nil {
				tb.Fatalf("append %v: %v", ls[i], err)
			}
		}
		if err := app.Commit(); err != nil {
			tb.Fatalf("commit: %v", err)
		}
	}
}

// peer is one side of a request as Istio's telemetry labels it.
type peer struct {
	ns, wl, app, ver string
}

var unknownPeer = peer{"unknown", "unknown", "unknown", "unknown"}

func (p peer) principal() string {
	if p.wl == unknown {
		return unknown
	}
	return "spiffe://cluster.local/ns/" + p.ns + "/sa/" + p.app
}

// request is traffic on one edge: rps requests of one code, each taking
// ms milliseconds and carrying reqBytes, reported by the listed proxies.
type request struct {
	src, dst  peer
	svc       string // destination service name
	svcNs     string
	host      string // destination_service; "" = svc.svcNs.svc.cluster.local
	protocol  string // http (default), grpc or tcp
	code      string
	grpc      string // grpc_response_status of a gRPC request; "" = "0"
	flags     string
	rps       float64
	ms        float64
	reqBytes  float64
	mtls      bool
	reporters []string // default: source and destination
}

var buckets = []string{"0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000", "10000", "30000", "60000", "300000", "600000", "1800000", "3600000", "+Inf"}
var bucketBounds = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000, 1e308}

// istioSeries turns requests into the counters Istio's proxies would export;
// withBuckets adds the duration histogram's buckets.
func istioSeries(reqs []request, withBuckets bool) []counter {
	var cs []counter
	for _, r := range reqs {
		reporters := r.reporters
		if reporters == nil {
			reporters = []string{"source", "destination"}
		}
		host := r.host
		if host == "" {
			host = r.svc + "." + r.svcNs + ".svc.cluster.local"
		}
		protocol := r.protocol
		if protocol == "" {
			protocol = "http"
		}
		policy := "none"
		if r.mtls {
			policy = "mutual_tls"
		}
		for _, rep := range reporters {
			l := map[string]string{
				"reporter":                       rep,
				"source_cluster":                 DefaultCluster,
				"source_workload_namespace":      r.src.ns,
				"source_workload":                r.src.wl,
				"source_canonical_service":       r.src.app,
				"source_canonical_revision":      r.src.ver,
				"source_app":                     r.src.app,
				"source_version":                 r.src.ver,
				"source_principal":               r.src.principal(),
				"destination_cluster":            DefaultCluster,
				"destination_service_namespace":  r.svcNs,
				"destination_service":            host,
				"destination_service_name":       r.svc,
				"destination_workload_namespace": r.dst.ns,
				"destination_workload":           r.dst.wl,
				"destination_canonical_service":  r.dst.app,
				"destination_canonical_revision": r.dst.ver,
				"destination_app":                r.dst.app,
				"destination_version":            r.dst.ver,
				"destination_principal":          r.dst.principal(),
				"request_protocol":               protocol,
				"response_flags":                 cmpOr(r.flags, "-"),
				"connection_security_policy":     policy,
			}
			if rep == "source" {
				l["connection_security_policy"] = "unknown"
			}
			with := func(name string, extra map[string]string) map[string]string {
				m := maps.Clone(l)
				m["__name__"] = name
				maps.Copy(m, extra)
				return m
			}
			if protocol == "tcp" {
				cs = append(cs, counter{with(tcpMetric, nil), r.rps})
				continue
			}
			l["response_code"] = r.code
			l["grpc_response_status"] = ""
			if protocol == "grpc" {
				l["grpc_response_status"] = cmpOr(r.grpc, "0")
			}
			cs = append(cs,
				counter{with("istio_requests_total", nil), r.rps},
				counter{with("istio_request_duration_milliseconds_sum", nil), r.rps * r.ms},
				counter{with("istio_request_duration_milliseconds_count", nil), r.rps},
				counter{with("istio_request_bytes_sum", nil), r.rps * r.reqBytes},
				counter{with("istio_response_bytes_sum", nil), r.rps * r.reqBytes * 4},
			)
			if withBuckets {
				for i, le := range buckets {
					v := 0.0
					if r.ms <= bucketBounds[i] {
						v = r.rps
					}
					cs = append(cs, counter{with("istio_request_duration_milliseconds_bucket", map[string]string{"le": le}), v})
				}
			}
		}
	}
	// up says Prometheus scrapes something.
	cs = append(cs, counter{map[string]string{"__name__": "up", "job": "kubernetes-pods"}, 0})
	return cs
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// queryTime is the fixed "now" of the tests' graphs.
var queryTime = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// load writes reqs for the 11 minutes up to queryTime, sampled every 15s.
func (p *promEnv) load(tb testing.TB, reqs []request, withBuckets bool) {
	p.write(tb, istioSeries(reqs, withBuckets), queryTime.Add(-11*time.Minute), queryTime, 15*time.Second)
}

// unreachableURL is a loopback address nothing listens on.
func unreachableURL(tb testing.TB) (promv1.API, string) {
	tb.Helper()
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	client, err := api.NewClient(api.Config{Address: u})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := url.Parse(u); err != nil {
		tb.Fatal(err)
	}
	return promv1.NewAPI(client), u
}

func sortedIDs(c *Config) (nodes, edges []string) {
	for _, n := range c.Elements.Nodes {
		nodes = append(nodes, n.Data.ID)
	}
	for _, e := range c.Elements.Edges {
		edges = append(edges, e.Data.ID)
	}
	return slices.Sorted(slices.Values(nodes)), slices.Sorted(slices.Values(edges))
}
