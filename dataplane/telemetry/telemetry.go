// Package telemetry owns the proxy's Istio standard metrics: the request
// and TCP series istio-proxy exports on 15090 (istio_requests_total,
// istio_request_duration_milliseconds, istio_request_bytes,
// istio_response_bytes and the istio_tcp_* counters) with Istio's labels,
// and the peer metadata exchange that tells each side of a call who the
// other one is.
//
// Recording is on every request's path, so it allocates nothing once a
// series exists: a request is keyed by interned peers and services and
// small values, and the key finds the series' counters and histograms.
package telemetry

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Unknown is the value Istio gives a label it cannot tell.
const Unknown = "unknown"

// Reporter says which side of a call recorded it.
type Reporter uint8

const (
	// Source is a client sidecar or a gateway.
	Source Reporter = iota
	// Destination is the server's sidecar.
	Destination
)

func (r Reporter) String() string {
	if r == Destination {
		return "destination"
	}
	return "source"
}

// Security is the connection_security_policy label.
type Security uint8

const (
	// SecurityUnknown is what a client reports (Istio: "unknown").
	SecurityUnknown Security = iota
	// SecurityNone is a plaintext inbound connection.
	SecurityNone
	// SecurityMutualTLS is an inbound connection with a verified client certificate.
	SecurityMutualTLS
)

func (s Security) String() string {
	switch s {
	case SecurityNone:
		return "none"
	case SecurityMutualTLS:
		return "mutual_tls"
	}
	return Unknown
}

// Peer is one end of a call as the labels describe it. Peers are
// compared by pointer: get them from Metrics.Local, Metrics.Peer and
// UnknownPeer, never build one per request.
type Peer struct {
	Workload          string
	Namespace         string
	Principal         string
	App               string
	Version           string
	CanonicalService  string
	CanonicalRevision string
	Cluster           string
}

// UnknownPeer is a peer that did not say who it is (no metadata exchange:
// a client outside the mesh, a server without a sidecar).
var UnknownPeer = &Peer{Workload: Unknown, Namespace: Unknown, Principal: Unknown, App: Unknown,
	Version: Unknown, CanonicalService: Unknown, CanonicalRevision: Unknown, Cluster: Unknown}

// unknownService labels a request that reached no cluster (no route, a
// direct response).
var unknownService = &Service{Host: Unknown, Name: Unknown, Namespace: Unknown}

// Service is the destination service of a call. Services are compared by
// pointer: get them from Metrics.Service.
type Service struct {
	Host      string
	Name      string
	Namespace string
}

// Request identifies a request series. Every field is comparable and
// cheap to hash, so a lookup allocates nothing.
type Request struct {
	Reporter    Reporter
	Source      *Peer
	Destination *Peer
	Service     *Service
	// GRPC marks request_protocol="grpc" (else "http").
	GRPC bool
	Code int
	// GRPCStatus is the grpc-status of a gRPC response, -1 when none.
	GRPCStatus int
	// Flags are Envoy's response flags, "-" for none.
	Flags    string
	Security Security
	// Overrides are the istio.stats filter's changes (nil: none, every
	// metric with Istio's labels). The values of its dimensions, if it
	// has any, go to RecordRequestDims, so that the common key stays
	// small to hash.
	Overrides *Overrides
}

// Conn identifies a TCP connection series.
type Conn struct {
	Reporter    Reporter
	Source      *Peer
	Destination *Peer
	Service     *Service
	Flags       string
	Security    Security
	Overrides   *Overrides
	Dims        Dims
}

// Buckets are Envoy's default histogram bounds, which Istio's request
// duration and size histograms use.
var Buckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000,
	10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

// labels are Istio's standard metric labels, plus the canonical service
// and cluster labels Kiali's graph groups by.
var labels = []string{
	"reporter",
	"source_workload", "source_workload_namespace", "source_principal", "source_app", "source_version",
	"source_canonical_service", "source_canonical_revision", "source_cluster",
	"destination_workload", "destination_workload_namespace", "destination_principal",
	"destination_app", "destination_version", "destination_service", "destination_service_name",
	"destination_service_namespace", "destination_canonical_service", "destination_canonical_revision",
	"destination_cluster",
	"request_protocol", "response_code", "grpc_response_status", "response_flags",
	"connection_security_policy",
}

// tcpLabels are labels without the request-only ones.
var tcpLabels = append(append([]string{}, labels[:len(labels)-5]...), "request_protocol", "response_flags", "connection_security_policy")

// requestSeries are one request series' metrics; a metric the stats
// filter drops is nil.
type requestSeries struct {
	requests      prometheus.Counter
	duration      prometheus.Observer
	requestBytes  prometheus.Observer
	responseBytes prometheus.Observer
}

// ConnSeries are the counters of one TCP series; add to them as the
// connection goes (the open is counted by Metrics.OpenConn). A metric the
// stats filter drops is nil, and adding to it does nothing.
type ConnSeries struct {
	sent     prometheus.Counter
	received prometheus.Counter
	closed   prometheus.Counter
	opened   prometheus.Counter
}

// AddSent adds bytes sent to the downstream.
func (s *ConnSeries) AddSent(n int64) {
	if s.sent != nil {
		s.sent.Add(float64(n))
	}
}

// AddReceived adds bytes received from the downstream.
func (s *ConnSeries) AddReceived(n int64) {
	if s.received != nil {
		s.received.Add(float64(n))
	}
}

// Close counts the connection's close.
func (s *ConnSeries) Close() {
	if s.closed != nil {
		s.closed.Inc()
	}
}

// Metrics is one proxy's Istio metrics. The zero value is not usable;
// call New.
type Metrics struct {
	reg *prometheus.Registry

	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	requestBytes  *prometheus.HistogramVec
	responseBytes *prometheus.HistogramVec
	tcpSent       *prometheus.CounterVec
	tcpReceived   *prometheus.CounterVec
	tcpOpened     *prometheus.CounterVec
	tcpClosed     *prometheus.CounterVec

	mu   sync.RWMutex
	reqs map[Request]*requestSeries
	// reqsDims are the series of requests with dimension values.
	reqsDims map[dimsKey]*requestSeries
	conns    map[Conn]*ConnSeries
	services map[string]*Service
	peers    map[string]*Peer
	// principals interns peers with their mutual TLS principal.
	principals map[principalKey]*Peer
	// variants are the metrics with the label sets stats filters asked
	// for, by metric and label names (overrides.go).
	variants map[variantKey]prometheus.Collector
	// hosts are the services HostService named.
	hosts map[string]*Service
}

// maxPeers bounds the decoded-metadata cache: the header comes from the
// network, so a client could otherwise grow it without end.
const maxPeers = 1024

// New returns a proxy's metrics, with no series yet.
func New() *Metrics {
	m := &Metrics{
		reg:        prometheus.NewRegistry(),
		reqs:       map[Request]*requestSeries{},
		reqsDims:   map[dimsKey]*requestSeries{},
		conns:      map[Conn]*ConnSeries{},
		services:   map[string]*Service{},
		peers:      map[string]*Peer{},
		principals: map[principalKey]*Peer{},
		variants:   map[variantKey]prometheus.Collector{},
		hosts:      map[string]*Service{},
	}
	m.requests = metricDefs[metricRequests].newVec(labels).(*prometheus.CounterVec)
	m.duration = metricDefs[metricDuration].newVec(labels).(*prometheus.HistogramVec)
	m.requestBytes = metricDefs[metricRequestBytes].newVec(labels).(*prometheus.HistogramVec)
	m.responseBytes = metricDefs[metricResponseBytes].newVec(labels).(*prometheus.HistogramVec)
	m.tcpSent = metricDefs[metricTCPSent].newVec(tcpLabels).(*prometheus.CounterVec)
	m.tcpReceived = metricDefs[metricTCPReceived].newVec(tcpLabels).(*prometheus.CounterVec)
	m.tcpOpened = metricDefs[metricTCPOpened].newVec(tcpLabels).(*prometheus.CounterVec)
	m.tcpClosed = metricDefs[metricTCPClosed].newVec(tcpLabels).(*prometheus.CounterVec)
	m.reg.MustRegister(m.requests, m.duration, m.requestBytes, m.responseBytes, m.tcpSent, m.tcpReceived, m.tcpOpened, m.tcpClosed)
	return m
}

// Gatherer is what /stats/prometheus encodes.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// Service interns the service named by host (a hostname); name and
// namespace are its Kubernetes name and namespace when known.
func (m *Metrics) Service(host, name, namespace string) *Service {
	key := host + "\x00" + name + "\x00" + namespace
	m.mu.RLock()
	s := m.services[key]
	m.mu.RUnlock()
	if s != nil {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s = m.services[key]; s == nil {
		s = &Service{Host: orUnknown(host), Name: orUnknown(name), Namespace: orUnknown(namespace)}
		m.services[key] = s
	}
	return s
}

// maxHostServices bounds the services named by a request's host (the
// stats filter's host header fallback): the host comes from the app.
const maxHostServices = 1024

// HostService is the service a request to no known service is labelled
// with: its host, without the port, as Istio's stats filter falls back
// to the Host header. Past maxHostServices distinct hosts, unknown.
func (m *Metrics) HostService(host string) *Service {
	m.mu.RLock()
	s := m.hosts[host]
	m.mu.RUnlock()
	if s != nil {
		return s
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s = m.hosts[host]; s != nil {
		return s
	}
	if len(m.hosts) >= maxHostServices {
		return unknownService
	}
	h := host
	if i := strings.LastIndexByte(h, ':'); i > 0 && !strings.HasSuffix(h, "]") {
		h = h[:i]
	}
	s = &Service{Host: h, Name: h, Namespace: Unknown}
	m.hosts[host] = s
	return s
}

// dimsKey identifies a request series with dimension values.
type dimsKey struct {
	r    Request
	dims Dims
}

// RecordRequest counts one finished request and observes its duration
// and sizes.
func (m *Metrics) RecordRequest(r Request, d time.Duration, requestBytes, responseBytes int64) {
	m.mu.RLock()
	s := m.reqs[r]
	m.mu.RUnlock()
	if s == nil {
		s = m.newRequestSeries(r, nil)
	}
	s.record(d, requestBytes, responseBytes)
}

// RecordRequestDims is RecordRequest for a request whose stats filter
// has dimensions, with their values.
func (m *Metrics) RecordRequestDims(r Request, dims *Dims, d time.Duration, requestBytes, responseBytes int64) {
	m.mu.RLock()
	s := m.reqsDims[dimsKey{r, *dims}]
	m.mu.RUnlock()
	if s == nil {
		s = m.newRequestSeries(r, dims)
	}
	s.record(d, requestBytes, responseBytes)
}

func (s *requestSeries) record(d time.Duration, requestBytes, responseBytes int64) {
	if s.requests != nil {
		s.requests.Inc()
	}
	if s.duration != nil {
		s.duration.Observe(float64(d) / float64(time.Millisecond))
	}
	if s.requestBytes != nil {
		s.requestBytes.Observe(float64(requestBytes))
	}
	if s.responseBytes != nil {
		s.responseBytes.Observe(float64(responseBytes))
	}
}

func (m *Metrics) newRequestSeries(r Request, dims *Dims) *requestSeries {
	m.mu.Lock()
	defer m.mu.Unlock()
	if dims == nil {
		if s := m.reqs[r]; s != nil {
			return s
		}
	} else if s := m.reqsDims[dimsKey{r, *dims}]; s != nil {
		return s
	}
	proto := "http"
	if r.GRPC {
		proto = "grpc"
	}
	grpc := ""
	if r.GRPCStatus >= 0 && r.GRPC {
		grpc = strconv.Itoa(r.GRPCStatus)
	}
	lv := append(peerValues(r.Reporter, r.Source, r.Destination, r.Service),
		proto, strconv.Itoa(r.Code), grpc, flagsOr(r.Flags), r.Security.String())
	s := &requestSeries{}
	if o := r.Overrides; o != nil {
		dv := dims
		if dv == nil {
			dv = &Dims{}
		}
		s.requests = o.counter(metricRequests, lv, dv)
		s.duration = o.observer(metricDuration, lv, dv)
		s.requestBytes = o.observer(metricRequestBytes, lv, dv)
		s.responseBytes = o.observer(metricResponseBytes, lv, dv)
	} else {
		s.requests = m.requests.WithLabelValues(lv...)
		s.duration = m.duration.WithLabelValues(lv...)
		s.requestBytes = m.requestBytes.WithLabelValues(lv...)
		s.responseBytes = m.responseBytes.WithLabelValues(lv...)
	}
	if dims == nil {
		m.reqs[r] = s
	} else {
		m.reqsDims[dimsKey{r, *dims}] = s
	}
	return s
}

// OpenConn counts an opened TCP connection and returns the series to add
// its bytes and its close to.
func (m *Metrics) OpenConn(c Conn) *ConnSeries {
	m.mu.RLock()
	s := m.conns[c]
	m.mu.RUnlock()
	if s == nil {
		s = m.newConnSeries(c)
	}
	if s.opened != nil {
		s.opened.Inc()
	}
	return s
}

func (m *Metrics) newConnSeries(c Conn) *ConnSeries {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.conns[c]; s != nil {
		return s
	}
	lv := append(peerValues(c.Reporter, c.Source, c.Destination, c.Service), "tcp", flagsOr(c.Flags), c.Security.String())
	s := &ConnSeries{}
	if o := c.Overrides; o != nil {
		s.sent = o.counter(metricTCPSent, lv, &c.Dims)
		s.received = o.counter(metricTCPReceived, lv, &c.Dims)
		s.closed = o.counter(metricTCPClosed, lv, &c.Dims)
		s.opened = o.counter(metricTCPOpened, lv, &c.Dims)
	} else {
		s.sent = m.tcpSent.WithLabelValues(lv...)
		s.received = m.tcpReceived.WithLabelValues(lv...)
		s.closed = m.tcpClosed.WithLabelValues(lv...)
		s.opened = m.tcpOpened.WithLabelValues(lv...)
	}
	m.conns[c] = s
	return s
}

func peerValues(rep Reporter, src, dst *Peer, svc *Service) []string {
	if src == nil {
		src = UnknownPeer
	}
	if dst == nil {
		dst = UnknownPeer
	}
	if svc == nil {
		svc = unknownService
	}
	return []string{
		rep.String(),
		src.Workload, src.Namespace, src.Principal, src.App, src.Version,
		src.CanonicalService, src.CanonicalRevision, src.Cluster,
		dst.Workload, dst.Namespace, dst.Principal, dst.App, dst.Version,
		svc.Host, svc.Name, svc.Namespace, dst.CanonicalService, dst.CanonicalRevision, dst.Cluster,
	}
}

func flagsOr(f string) string {
	if f == "" {
		return "-"
	}
	return f
}

func orUnknown(s string) string {
	if s == "" {
		return Unknown
	}
	return s
}
