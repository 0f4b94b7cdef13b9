package dataplane

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"

	"github.com/meshlab/meshlab/dataplane/identity"
)

// The agent's status port, Istio's pilot-agent 15020: /stats/prometheus
// (and /metrics) merge the agent's own istio_agent_* metrics, the proxy's
// 15090 stats and, on a sidecar, the app's metrics from its original
// prometheus.io annotations, which the injector moves to the
// ISTIO_PROMETHEUS_ANNOTATIONS variable when it points Prometheus at
// 15020 (meshConfig.enablePrometheusMerge). /healthz/ready is the proxy's
// readiness, the handler 15021 serves too, as Istio's agent serves it on
// both.

// DefaultStatusAddr is Istio's status port.
const DefaultStatusAddr = "0.0.0.0:15020"

// The content types of the merged output: the app's format decides it,
// as Istio's agent does (pilot/cmd/pilot-agent/status/server.go).
const (
	fmtText           = `text/plain; version=` + expfmt.TextVersion + `; charset=utf-8`
	fmtOpenMetrics001 = expfmt.OpenMetricsType + `; version=` + expfmt.OpenMetricsVersion_0_0_1 + `; charset=utf-8`
	fmtOpenMetrics100 = expfmt.OpenMetricsType + `; version=` + expfmt.OpenMetricsVersion_1_0_0 + `; charset=utf-8`
)

// PrometheusScrape is ISTIO_PROMETHEUS_ANNOTATIONS: the app's original
// prometheus.io/scrape, path and port.
type PrometheusScrape struct {
	Scrape string `json:"scrape"`
	Path   string `json:"path"`
	Port   string `json:"port"`
}

// parsePrometheusScrape reads ISTIO_PROMETHEUS_ANNOTATIONS as Istio's
// agent does: scrape "false" turns it off, the path defaults to
// /metrics and the port to 80, and the status port itself is refused
// (scraping it would loop). nil: nothing to scrape.
func parsePrometheusScrape(annotations, statusAddr string) (*PrometheusScrape, error) {
	if annotations == "" {
		return nil, nil
	}
	var ps PrometheusScrape
	if err := json.Unmarshal([]byte(annotations), &ps); err != nil {
		return nil, fmt.Errorf("read ISTIO_PROMETHEUS_ANNOTATIONS %q: %w", annotations, err)
	}
	if ps.Scrape == "false" {
		return nil, nil
	}
	if ps.Path == "" {
		ps.Path = "/metrics"
	}
	if ps.Port == "" {
		ps.Port = "80"
	}
	if _, port, err := net.SplitHostPort(statusAddr); err == nil && port == ps.Port {
		return nil, fmt.Errorf("ISTIO_PROMETHEUS_ANNOTATIONS: the application port %s is the status port, which would scrape itself; remove prometheus.io/port=%s from the pod or inject it once", ps.Port, port)
	}
	return &ps, nil
}

// agentMetrics are the agent's own metrics, Istio's istio_agent_* ones
// that stand for something this proxy does: the status port's scrapes,
// the workload certificate's CSRs and expiry, the xDS responses taken,
// the time to the first ready, and the process and Go runtime.
type agentMetrics struct {
	reg            *prometheus.Registry
	scrapes        prometheus.Counter
	scrapeFailures *prometheus.CounterVec
	startup        prometheus.Gauge
	startOnce      sync.Once
	started        time.Time
	csrs           prometheus.Counter
	csrFailures    prometheus.Counter
	csrLatency     prometheus.Counter
	xdsResponses   prometheus.Counter
}

func newAgentMetrics() *agentMetrics {
	m := &agentMetrics{reg: prometheus.NewRegistry(), started: time.Now()}
	r := prometheus.WrapRegistererWithPrefix("istio_agent_", m.reg)
	r.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	m.scrapes = prometheus.NewCounter(prometheus.CounterOpts{Name: "scrapes_total", Help: "The total number of scrapes."})
	m.scrapeFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "scrape_failures_total", Help: "The total number of failed scrapes."}, []string{"type"})
	m.startup = prometheus.NewGauge(prometheus.GaugeOpts{Name: "startup_duration_seconds", Help: "The time from the process starting to being marked ready."})
	csr := prometheus.Labels{"request_type": "csr"}
	m.csrs = prometheus.NewCounter(prometheus.CounterOpts{Name: "num_outgoing_requests", Help: "Number of total outgoing requests (e.g. to a token exchange server, CA, etc.)", ConstLabels: csr})
	m.csrFailures = prometheus.NewCounter(prometheus.CounterOpts{Name: "num_failed_outgoing_requests", Help: "Number of failed outgoing requests (e.g. to a token exchange server, CA, etc.)", ConstLabels: csr})
	m.csrLatency = prometheus.NewCounter(prometheus.CounterOpts{Name: "outgoing_latency", Help: "The latency of outgoing requests (e.g. to a token exchange server, CA, etc.) in milliseconds.", ConstLabels: csr})
	m.xdsResponses = prometheus.NewCounter(prometheus.CounterOpts{Name: "xds_proxy_responses", Help: "The total number of Xds Proxy Responses"})
	r.MustRegister(m.scrapes, m.scrapeFailures, m.startup, m.csrs, m.csrFailures, m.csrLatency, m.xdsResponses)
	// The failure series exist from the start, as Istio's do.
	for _, t := range []string{"envoy", "application", "agent"} {
		m.scrapeFailures.WithLabelValues(t)
	}
	return m
}

// onCSR is the identity agent's OnCSR hook.
func (m *agentMetrics) onCSR(d time.Duration, err error) {
	m.csrs.Inc()
	m.csrLatency.Add(float64(d) / float64(time.Millisecond))
	if err != nil {
		m.csrFailures.Inc()
	}
}

// ready records the time to the first ready, once.
func (m *agentMetrics) ready() {
	m.startOnce.Do(func() { m.startup.Set(time.Since(m.started).Seconds()) })
}

// certExpiry is istio_agent_cert_expiry_seconds{resource_name="default"}:
// present once the workload has a certificate.
type certExpiry struct {
	agent *identity.Agent
	desc  *prometheus.Desc
}

func newCertExpiry(a *identity.Agent) *certExpiry {
	return &certExpiry{agent: a, desc: prometheus.NewDesc("cert_expiry_seconds", "The time remaining, in seconds, before the certificate chain will expire. A negative value indicates the cert is expired.", []string{"resource_name"}, nil)}
}

func (c *certExpiry) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *certExpiry) Collect(ch chan<- prometheus.Metric) {
	if exp, ok := c.agent.CertExpiry(); ok {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, time.Until(exp).Seconds(), "default")
	}
}

// statusServer is the status port's handler.
type statusServer struct {
	metrics *agentMetrics
	// proxyStats is the proxy's 15090 /stats/prometheus, read in process
	// (Istio's agent fetches Envoy's over loopback).
	proxyStats http.Handler
	ready      http.Handler
	app        *PrometheusScrape
	// appHost is where the app listens: localhost, as Istio's agent dials.
	appHost string
	client  *http.Client
	log     *slog.Logger
}

func (s *statusServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/healthz/ready", s.ready)
	mux.HandleFunc("/stats/prometheus", s.serveStats)
	mux.HandleFunc("/metrics", s.serveStats)
	return mux
}

// serveStats is Istio's merge: the agent's metrics, then the proxy's,
// then the app's (last: an OpenMetrics body ends with # EOF), plainly
// concatenated; the app's content type is the answer's. A part that
// fails is counted in istio_agent_scrape_failures_total and left out,
// never failing the rest.
func (s *statusServer) serveStats(w http.ResponseWriter, r *http.Request) {
	s.metrics.scrapes.Inc()
	var proxy responseBuffer
	s.proxyStats.ServeHTTP(&proxy, r)
	if proxy.code != 0 && proxy.code != http.StatusOK {
		s.log.Warn("scrape the proxy's stats", "status", proxy.code)
		s.metrics.scrapeFailures.WithLabelValues("envoy").Inc()
		proxy.body.Reset()
	}
	format := fmtText
	var app io.ReadCloser
	if s.app != nil {
		var contentType string
		var cancel context.CancelFunc
		var err error
		app, contentType, cancel, err = s.scrapeApp(r)
		if cancel != nil {
			defer cancel()
		}
		if err != nil {
			s.log.Warn("scrape the application's metrics", "err", err)
			s.metrics.scrapeFailures.WithLabelValues("application").Inc()
		} else {
			defer func() { _ = app.Close() }() // read to the end or failed; nothing to report
		}
		format = negotiateFormat(contentType)
	}
	w.Header().Set("Content-Type", format)
	if err := s.writeAgent(w); err != nil {
		s.log.Warn("write the agent's metrics", "err", err)
		s.metrics.scrapeFailures.WithLabelValues("agent").Inc()
	}
	if _, err := w.Write(proxy.body.Bytes()); err != nil {
		return // the scraper went away
	}
	if app != nil {
		if _, err := io.Copy(w, app); err != nil {
			s.log.Warn("copy the application's metrics", "err", err)
			s.metrics.scrapeFailures.WithLabelValues("application").Inc()
		}
	}
}

func (s *statusServer) writeAgent(w io.Writer) error {
	mfs, err := s.metrics.reg.Gather()
	if err != nil {
		return err
	}
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return err
		}
	}
	return nil
}

// scrapeApp fetches the app's metrics, passing on what Prometheus said
// of the scrape (Accept, User-Agent, its timeout) as Istio's agent does.
func (s *statusServer) scrapeApp(r *http.Request) (io.ReadCloser, string, context.CancelFunc, error) {
	ctx := r.Context()
	var cancel context.CancelFunc
	if v := r.Header.Get("X-Prometheus-Scrape-Timeout-Seconds"); v != "" {
		if secs, err := strconv.ParseFloat(v, 64); err == nil && secs > 0 {
			ctx, cancel = context.WithTimeout(ctx, time.Duration(secs*float64(time.Second)))
		}
	}
	url := "http://" + net.JoinHostPort(s.appHost, s.app.Port) + s.app.Path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, "", cancel, fmt.Errorf("scrape %s: %w", url, err)
	}
	for _, h := range []string{"Accept", "User-Agent", "X-Prometheus-Scrape-Timeout-Seconds"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, "", cancel, fmt.Errorf("scrape %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		_ = resp.Body.Close()
		return nil, "", cancel, fmt.Errorf("scrape %s: status %d", url, resp.StatusCode)
	}
	return resp.Body, resp.Header.Get("Content-Type"), cancel, nil
}

// negotiateFormat is the merged answer's content type for the app's.
func negotiateFormat(contentType string) string {
	mediaType, params, err := mime.ParseMediaType(contentType)
	if err == nil && mediaType == expfmt.OpenMetricsType {
		switch params["version"] {
		case expfmt.OpenMetricsVersion_1_0_0:
			return fmtOpenMetrics100
		case expfmt.OpenMetricsVersion_0_0_1, "":
			return fmtOpenMetrics001
		}
	}
	return fmtText
}

// responseBuffer is an http.ResponseWriter into memory, to read the
// proxy's stats in process.
type responseBuffer struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (b *responseBuffer) Header() http.Header {
	if b.header == nil {
		b.header = http.Header{}
	}
	return b.header
}

func (b *responseBuffer) WriteHeader(code int) {
	if b.code == 0 {
		b.code = code
	}
}

func (b *responseBuffer) Write(p []byte) (int, error) { return b.body.Write(p) }
