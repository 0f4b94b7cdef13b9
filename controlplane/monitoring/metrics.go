package monitoring

import (
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Istio's buckets (pilot/pkg/xds/monitoring.go).
var (
	convergenceBuckets     = []float64{.1, .5, 1, 3, 5, 10, 20, 30}
	pushTimeBuckets        = []float64{.01, .1, 1, 3, 5, 10, 20, 30}
	pushContextInitBuckets = []float64{.01, .1, 0.5, 1, 3, 5}
	// 10K, 1M, 4M (gRPC's default limit), 10M, 40M.
	configSizeBuckets = []float64{1, 10000, 1000000, 4000000, 10000000, 40000000}
)

// The xDS types as Istio's v3.GetMetricType names them in the type label.
var metricTypes = map[string]string{
	"type.googleapis.com/envoy.config.cluster.v3.Cluster":                  "cds",
	"type.googleapis.com/envoy.config.listener.v3.Listener":                "lds",
	"type.googleapis.com/envoy.config.route.v3.RouteConfiguration":         "rds",
	"type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment":   "eds",
	"type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret": "sds",
	"type.googleapis.com/istio.networking.nds.v1.NameTable":                "nds",
	"type.googleapis.com/istio.mesh.v1alpha1.ProxyConfig":                  "pcds",
	"type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig":        "ecds",
	"type.googleapis.com/istio.workload.Address":                           "wds",
	"type.googleapis.com/istio.security.Authorization":                     "wads",
}

// MetricType is the type label Istio gives an xDS type URL: cds, eds,
// lds, rds, sds…, the URL itself for a type it has no name for.
func MetricType(typeURL string) string {
	if t, ok := metricTypes[typeURL]; ok {
		return t
	}
	return typeURL
}

// perType holds one xDS type's children, made once so a push looks them
// up instead of building label values.
type perType struct {
	pushes, sendErr, rejects, expiredNonce prometheus.Counter
	pushTime, configSize                   prometheus.Observer
}

// Metrics are istiod's own series: the xDS server, the push loop, the
// config store, the JWKS resolver and the validating webhook report to it.
// Safe for concurrent use; a nil *Metrics records nothing.
type Metrics struct {
	reg *prometheus.Registry

	pushes, rejects, expiredNonce, triggers, inbound, cfgEvents *prometheus.CounterVec
	pushTime, configSize                                        *prometheus.HistogramVec
	sendTime                                                    prometheus.Histogram
	convergence, queueTime, debounce, pushContextInit           prometheus.Histogram
	internalErrors, pushContextErrors                           prometheus.Counter
	jwksSuccess, jwksFail                                       prometheus.Counter
	validationPassed, validationFailed                          *prometheus.CounterVec

	services, virtServices, destruleSubsets, duplicateClusters, vsDupDomain prometheus.Gauge
	conflictInbound                                                         prometheus.Gauge
	edsNoInstances                                                          *prometheus.GaugeVec

	types sync.Map // type URL → *perType, made on first use
}

// NewMetrics registers istiod's series, Go's and the process's, with
// pilot_info{version} set to version. Collectors the caller owns (the CSR
// server's citadel_server_*, pilot_xds) are added with Register.
func NewMetrics(version string) *Metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	hist := func(name, help string, buckets []float64) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		// Istio's sums are counters without a _total suffix (its
		// exporter drops the suffix), so dashboards query these names.
		pushes:       counter("pilot_xds_pushes", "Pilot build and send errors for lds, rds, cds and eds.", "type"),
		rejects:      counter("pilot_total_xds_rejects", "Total number of XDS responses from pilot rejected by proxy.", "type"),
		expiredNonce: counter("pilot_xds_expired_nonce", "Total number of XDS requests with an expired nonce.", "type"),
		triggers:     counter("pilot_push_triggers", "Total number of times a push was triggered, labeled by reason for the push.", "type"),
		inbound:      counter("pilot_inbound_updates", "Total number of updates received by pilot.", "type"),
		cfgEvents:    counter("pilot_k8s_cfg_events", "Events from k8s config.", "type", "event"),
		pushTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "pilot_xds_push_time",
			Help: "Total time in seconds Pilot takes to push lds, rds, cds and eds.", Buckets: pushTimeBuckets}, []string{"type"}),
		configSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "pilot_xds_config_size_bytes",
			Help: "Distribution of configuration sizes pushed to clients", Buckets: configSizeBuckets}, []string{"type"}),
		sendTime:          hist("pilot_xds_send_time", "Total time in seconds Pilot takes to send generated configuration.", pushTimeBuckets),
		convergence:       hist("pilot_proxy_convergence_time", "Delay in seconds between config change and a proxy receiving all required configuration.", convergenceBuckets),
		queueTime:         hist("pilot_proxy_queue_time", "Time in seconds, a proxy is in the push queue before being dequeued.", convergenceBuckets),
		debounce:          hist("pilot_debounce_time", "Delay in seconds between the first config enters debouncing and the merged push request is pushed into the push queue.", pushTimeBuckets),
		pushContextInit:   hist("pilot_pushcontext_init_seconds", "Total time in seconds Pilot takes to init pushContext.", pushContextInitBuckets),
		internalErrors:    prometheus.NewCounter(prometheus.CounterOpts{Name: "pilot_total_xds_internal_errors", Help: "Total number of internal XDS errors in pilot."}),
		pushContextErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "pilot_xds_push_context_errors", Help: "Number of errors (timeouts) initiating push context."}),
		jwksSuccess:       prometheus.NewCounter(prometheus.CounterOpts{Name: "pilot_jwks_resolver_network_fetch_success_total", Help: "Total number of successfully network fetch by pilot jwks resolver"}),
		jwksFail:          prometheus.NewCounter(prometheus.CounterOpts{Name: "pilot_jwks_resolver_network_fetch_fail_total", Help: "Total number of failed network fetch by pilot jwks resolver"}),
		validationPassed:  counter("galley_validation_passed", "Resource is valid", "group", "version", "resource"),
		validationFailed:  counter("galley_validation_failed", "Resource validation failed", "group", "version", "resource", "reason"),

		services:          gauge("pilot_services", "Total services known to pilot."),
		virtServices:      gauge("pilot_virt_services", "Total virtual services known to pilot."),
		destruleSubsets:   gauge("pilot_destrule_subsets", "Duplicate subsets across destination rules for same host"),
		duplicateClusters: gauge("pilot_duplicate_envoy_clusters", "Duplicate envoy clusters caused by service entries with same hostname"),
		vsDupDomain:       gauge("pilot_vservice_dup_domain", "Virtual services with dup domains."),
		conflictInbound:   gauge("pilot_conflict_inbound_listener", "Number of conflicting inbound listeners."),
		edsNoInstances: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pilot_eds_no_instances",
			Help: "Number of clusters without instances."}, []string{"cluster"}),
	}
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pilot_info", Help: "Pilot version and build information."}, []string{"version"})
	info.WithLabelValues(version).Set(1)
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), info,
		m.pushes, m.rejects, m.expiredNonce, m.triggers, m.inbound, m.cfgEvents, m.pushTime, m.configSize, m.sendTime,
		m.convergence, m.queueTime, m.debounce, m.pushContextInit, m.internalErrors, m.pushContextErrors,
		m.jwksSuccess, m.jwksFail, m.validationPassed, m.validationFailed,
		m.services, m.virtServices, m.destruleSubsets, m.duplicateClusters, m.vsDupDomain, m.conflictInbound,
		m.edsNoInstances)
	return m
}

func (m *Metrics) newPerType(url string) *perType {
	t := MetricType(url)
	return &perType{
		pushes: m.pushes.WithLabelValues(t), sendErr: m.pushes.WithLabelValues(t + "_senderr"),
		rejects: m.rejects.WithLabelValues(t), expiredNonce: m.expiredNonce.WithLabelValues(t),
		pushTime: m.pushTime.WithLabelValues(t), configSize: m.configSize.WithLabelValues(t),
	}
}

// Registry is what /metrics serves.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Register adds collectors the caller owns.
func (m *Metrics) Register(cs ...prometheus.Collector) { m.reg.MustRegister(cs...) }

// of is url's children, made on first use (so a type never served shows
// no series, as in istiod) and then found without building label values.
func (m *Metrics) of(url string) *perType {
	if t, ok := m.types.Load(url); ok {
		return t.(*perType)
	}
	t, _ := m.types.LoadOrStore(url, m.newPerType(url))
	return t.(*perType)
}

// The xds.Observer methods: the xDS server calls them on its events.

// Pushed records one response sent to a proxy: pilot_xds_pushes{type},
// the time since the push (or request) it answers, and its size.
func (m *Metrics) Pushed(typeURL string, bytes int, since time.Duration) {
	if m == nil {
		return
	}
	t := m.of(typeURL)
	t.pushes.Inc()
	t.pushTime.Observe(since.Seconds())
	t.configSize.Observe(float64(bytes))
}

// SendFailed records a response that could not be sent (*_senderr).
func (m *Metrics) SendFailed(typeURL string) {
	if m != nil {
		m.of(typeURL).sendErr.Inc()
	}
}

// Rejected records a NACK.
func (m *Metrics) Rejected(typeURL string) {
	if m != nil {
		m.of(typeURL).rejects.Inc()
	}
}

// ExpiredNonce records a request answering a nonce other than the last sent.
func (m *Metrics) ExpiredNonce(typeURL string) {
	if m != nil {
		m.of(typeURL).expiredNonce.Inc()
	}
}

// Converged records a proxy acknowledging every type a push changed.
func (m *Metrics) Converged(d time.Duration) {
	if m != nil {
		m.convergence.Observe(d.Seconds())
	}
}

// Queued records how long a proxy waited in a push before its turn.
func (m *Metrics) Queued(d time.Duration) {
	if m != nil {
		m.queueTime.Observe(d.Seconds())
	}
}

// PushContextInit records building the push's shared index.
func (m *Metrics) PushContextInit(d time.Duration) {
	if m != nil {
		m.pushContextInit.Observe(d.Seconds())
	}
}

// Sent records the time one response took to write to its stream.
func (m *Metrics) Sent(d time.Duration) {
	if m != nil {
		m.sendTime.Observe(d.Seconds())
	}
}

// InternalError records a proxy's configuration that failed to build.
func (m *Metrics) InternalError() {
	if m != nil {
		m.internalErrors.Inc()
	}
}

// The push loop's events.

// Push triggers, as Istio's model.TriggerReason spells them.
const (
	TriggerConfig   = "config"
	TriggerService  = "service"
	TriggerEndpoint = "endpoint"
	TriggerSecret   = "secret"
)

// Triggered records why a push ran.
func (m *Metrics) Triggered(reason string) {
	if m != nil {
		m.triggers.WithLabelValues(reason).Inc()
	}
}

// Debounced records the delay from the first change a push carries to
// its start.
func (m *Metrics) Debounced(d time.Duration) {
	if m != nil {
		m.debounce.Observe(d.Seconds())
	}
}

// PushContextError records a push that could not start (its input could
// not be read).
func (m *Metrics) PushContextError() {
	if m != nil {
		m.pushContextErrors.Inc()
	}
}

// Inbound updates, as Istio's pilot_inbound_updates types them.
const (
	InboundConfig        = "config"
	InboundEDS           = "eds"
	InboundService       = "svc"
	InboundServiceDelete = "svcdelete"
)

// Inbound records an update the control plane received.
func (m *Metrics) Inbound(typ string) {
	if m != nil {
		m.inbound.WithLabelValues(typ).Inc()
	}
}

// ConfigEvent records a config object added, updated or deleted
// (pilot_k8s_cfg_events{type=<Kind>, event=add|update|delete}).
func (m *Metrics) ConfigEvent(kind, event string) {
	if m != nil {
		m.cfgEvents.WithLabelValues(kind, event).Inc()
	}
}

// Mesh is what a push found in the mesh's configuration, Istio's push
// context gauges.
type Mesh struct {
	Services, VirtualServices int
	// DuplicateSubsets counts subset names defined again by another
	// DestinationRule of the same host; DuplicateClusters hostnames
	// defined by more than one ServiceEntry or Service; VSDupDomains
	// hosts claimed by more than one VirtualService.
	DuplicateSubsets, DuplicateClusters, VSDupDomains int
	// InboundConflicts counts workload ports two Services give different
	// protocols (HTTP and TCP): the first Service's wins.
	InboundConflicts int
	// EmptyClusters are the outbound clusters without an instance.
	EmptyClusters []string
}

// MeshState sets the push context gauges.
func (m *Metrics) MeshState(s Mesh) {
	if m == nil {
		return
	}
	m.services.Set(float64(s.Services))
	m.virtServices.Set(float64(s.VirtualServices))
	m.destruleSubsets.Set(float64(s.DuplicateSubsets))
	m.duplicateClusters.Set(float64(s.DuplicateClusters))
	m.vsDupDomain.Set(float64(s.VSDupDomains))
	m.conflictInbound.Set(float64(s.InboundConflicts))
	m.edsNoInstances.Reset()
	for _, c := range s.EmptyClusters {
		m.edsNoInstances.WithLabelValues(c).Set(1)
	}
}

// JWKSFetched records one network fetch of a key set (or an issuer's
// discovery document), after its retries.
func (m *Metrics) JWKSFetched(err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.jwksFail.Inc()
	} else {
		m.jwksSuccess.Inc()
	}
}

// Validated records one object the validating webhook or the API checked.
// reason is empty when it passed.
func (m *Metrics) Validated(group, version, resource, reason string) {
	if m == nil {
		return
	}
	resource = strings.ToLower(resource)
	if reason == "" {
		m.validationPassed.WithLabelValues(group, version, resource).Inc()
	} else {
		m.validationFailed.WithLabelValues(group, version, resource, reason).Inc()
	}
}
