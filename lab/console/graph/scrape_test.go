package graph

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshlab/meshlab/dataplane/telemetry"
	"github.com/meshlab/meshlab/lab/prometheus/promtest"
)

// proxyTarget is a proxy's /stats/prometheus as the lab's data plane
// serves it (dataplane/telemetry's Istio metrics), whose requests are
// recorded as the scrapes come: by each scrape, rps requests per second
// since the start, so Prometheus's rate() sees rps.
type proxyTarget struct {
	m     *telemetry.Metrics
	start time.Time
	mu    sync.Mutex
	flows []flow
}

type flow struct {
	r    telemetry.Request
	rps  float64
	done int
	ms   time.Duration
}

func (p *proxyTarget) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	secs := time.Since(p.start).Seconds()
	for i := range p.flows {
		f := &p.flows[i]
		for want := int(f.rps * secs); f.done < want; f.done++ {
			p.m.RecordRequest(f.r, f.ms, 300, 1200)
		}
	}
	p.mu.Unlock()
	promhttp.HandlerFor(p.m.Gatherer(), promhttp.HandlerOpts{}).ServeHTTP(w, r)
}

// TestScrapedByLabPrometheus runs the lab's own Prometheus (lab/prometheus,
// scraping every second) against proxies exporting the data plane's real
// Istio metrics, and builds the graph from what it scraped: the label set
// meshlab's proxies write is the one the graph reads.
func TestScrapedByLabPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("scrapes for several seconds")
	}
	m := telemetry.New()
	peer := func(ns, wl, app, ver string) *telemetry.Peer {
		return &telemetry.Peer{Workload: wl, Namespace: ns, Principal: "spiffe://cluster.local/ns/" + ns + "/sa/" + app,
			App: app, Version: ver, CanonicalService: app, CanonicalRevision: ver, Cluster: DefaultCluster}
	}
	gw := peer("istio-system", "istio-ingressgateway", "istio-ingressgateway", "latest")
	pp := peer(ns, "productpage-v1", "productpage", "v1")
	rv := peer(ns, "reviews-v1", "reviews", "v1")
	ppSvc := m.Service("productpage.book-demo.svc.cluster.local", "productpage", ns)
	rvSvc := m.Service("reviews.book-demo.svc.cluster.local", "reviews", ns)
	req := func(rep telemetry.Reporter, src, dst *telemetry.Peer, svc *telemetry.Service, code int, sec telemetry.Security) telemetry.Request {
		return telemetry.Request{Reporter: rep, Source: src, Destination: dst, Service: svc, Code: code, GRPCStatus: -1, Flags: "-", Security: sec}
	}
	target := &proxyTarget{m: m, start: time.Now(), flows: []flow{
		{r: req(telemetry.Source, gw, pp, ppSvc, 200, telemetry.SecurityUnknown), rps: 20, ms: 30 * time.Millisecond},
		{r: req(telemetry.Destination, gw, pp, ppSvc, 200, telemetry.SecurityMutualTLS), rps: 20, ms: 30 * time.Millisecond},
		{r: req(telemetry.Source, pp, rv, rvSvc, 200, telemetry.SecurityUnknown), rps: 20, ms: 10 * time.Millisecond},
		{r: req(telemetry.Destination, pp, rv, rvSvc, 200, telemetry.SecurityMutualTLS), rps: 20, ms: 10 * time.Millisecond},
		{r: req(telemetry.Destination, telemetry.UnknownPeer, pp, ppSvc, 200, telemetry.SecurityNone), rps: 5, ms: time.Millisecond},
	}}
	mux := http.NewServeMux()
	mux.Handle("/stats/prometheus", target)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	prom, promURL := promtest.Start(t, fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: proxies
    metrics_path: /stats/prometheus
    static_configs:
      - targets: [%q]
`, strings.TrimPrefix(srv.URL, "http://")), "")

	// Until a few scrapes are in, the graph is empty and says why; then
	// it has the edges at their rates.
	var c *Config
	var err error
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err = Build(t.Context(), prom, bookinfoMesh(), Options{Namespaces: []string{ns}, GraphType: TypeWorkload, InjectServiceNodes: true,
			Duration: 4 * time.Second, PrometheusURL: promURL})
		if err != nil {
			t.Fatal(err)
		}
		if e := edgeBetween(c, idProductpage, idReviewsSvc, "http"); e != nil && near(e.Traffic.Rates["http"], 20) {
			break
		}
		if c.EmptyReason == nil && len(c.Elements.Edges) == 0 {
			t.Fatal("an empty graph without a reason")
		}
		if time.Now().After(deadline) {
			t.Fatalf("no productpage -> reviews edge at 20 req/s after a minute of scrapes; last graph: %d edges, reason %+v", len(c.Elements.Edges), c.EmptyReason)
		}
		time.Sleep(500 * time.Millisecond)
	}
	checks := []struct {
		name     string
		src, dst string
		check    func(e *EdgeData) bool
	}{
		{"gateway once, not once per reporter", idGateway, "svc:Kubernetes:book-demo:productpage", func(e *EdgeData) bool { return near(e.Traffic.Rates["http"], 20) }},
		{"mTLS from destination telemetry", idReviewsSvc, "wl:Kubernetes:book-demo:reviews-v1", func(e *EdgeData) bool { return e.IsMTLS == "100" && e.ResponseTime == "10" }},
		{"unknown source", idUnknown, "svc:Kubernetes:book-demo:productpage", func(e *EdgeData) bool { return near(e.Traffic.Rates["http"], 5) && e.IsMTLS == "" }},
	}
	for _, tc := range checks {
		e := edgeBetween(c, tc.src, tc.dst, "http")
		if e == nil || !tc.check(e) {
			t.Errorf("%s: edge %s -> %s = %+v", tc.name, tc.src, tc.dst, e)
		}
	}
}

// near: a scraped rate is within a fifth of the rate sent (scrapes and
// the window's edges are not aligned).
func near(s string, want float64) bool {
	v, err := strconv.ParseFloat(s, 64)
	return err == nil && math.Abs(v-want) <= want/5
}
