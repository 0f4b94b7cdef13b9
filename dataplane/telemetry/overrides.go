package telemetry

import (
	"fmt"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
)

// An istio.stats filter (Istio's stats.PluginConfig, which the Telemetry
// API's metrics overrides become) may drop a standard metric, remove
// labels from it (its series then add up), and add labels or replace a
// standard label's value with an expression's (dimensions). Overrides
// are those changes compiled once per filter configuration; a request
// then carries them and its dimension values in its key, so recording
// in an existing series still allocates nothing.

type metricID int

const (
	metricRequests metricID = iota
	metricDuration
	metricRequestBytes
	metricResponseBytes
	metricTCPSent
	metricTCPReceived
	metricTCPOpened
	metricTCPClosed
	numMetrics
)

type metricDef struct {
	// name is Istio's, without the "istio_" prefix the filter's
	// configuration leaves out.
	name, help string
	hist, tcp  bool
}

var metricDefs = [numMetrics]metricDef{
	metricRequests:      {name: "requests_total", help: "Requests handled by the proxy."},
	metricDuration:      {name: "request_duration_milliseconds", help: "Request duration in milliseconds.", hist: true},
	metricRequestBytes:  {name: "request_bytes", help: "Request sizes in bytes (headers and body).", hist: true},
	metricResponseBytes: {name: "response_bytes", help: "Response sizes in bytes (headers and body).", hist: true},
	metricTCPSent:       {name: "tcp_sent_bytes_total", help: "Bytes sent to the downstream of TCP connections.", tcp: true},
	metricTCPReceived:   {name: "tcp_received_bytes_total", help: "Bytes received from the downstream of TCP connections.", tcp: true},
	metricTCPOpened:     {name: "tcp_connections_opened_total", help: "TCP connections opened.", tcp: true},
	metricTCPClosed:     {name: "tcp_connections_closed_total", help: "TCP connections closed.", tcp: true},
}

func (d metricDef) newVec(labelNames []string) prometheus.Collector {
	if d.hist {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "istio_" + d.name, Help: d.help, Buckets: Buckets}, labelNames)
	}
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "istio_" + d.name, Help: d.help}, labelNames)
}

// MaxDims bounds the dimensions (custom label values) of one filter.
const MaxDims = 4

// Dims are a request's or connection's dimension values, in the order
// of the filter's dimension expressions.
type Dims [MaxDims]string

// MetricConfig is one of an istio.stats filter's metrics[] entries.
type MetricConfig struct {
	// Name is Istio's metric name without "istio_" (requests_total,
	// tcp_sent_bytes_total, ...); empty: every metric.
	Name string
	Drop bool
	// TagsToRemove are labels the metric loses.
	TagsToRemove []string
	// Dimensions set labels, new ones or standard ones, to the value at
	// an index of the key's Dims.
	Dimensions map[string]int
}

// Overrides are a filter's metric changes, compiled.
type Overrides struct {
	plans [numMetrics]plan
}

type plan struct {
	drop bool
	// src is, per label, the index of its value among the standard
	// values, or -(i+1) for Dims[i].
	src []int
	vec prometheus.Collector
}

type variantKey struct {
	metric metricID
	labels string
}

// NewOverrides compiles a filter's metrics[] entries, applied in order.
// It fails on a label name Prometheus does not accept and a dimension
// index past MaxDims.
func (m *Metrics) NewOverrides(cfgs []MetricConfig) (*Overrides, error) {
	for _, c := range cfgs {
		// A name that is none of the metrics recorded (gRPC message
		// counts, a custom metric) matches nothing, as in Istio's filter.
		for name, i := range c.Dimensions {
			if !model.LegacyValidation.IsValidLabelName(name) {
				return nil, fmt.Errorf("metric %q: dimension %q is not a valid label name", c.Name, name)
			}
			if i < 0 || i >= MaxDims {
				return nil, fmt.Errorf("metric %q: more than %d dimensions", c.Name, MaxDims)
			}
		}
	}
	o := &Overrides{}
	m.mu.Lock()
	defer m.mu.Unlock()
	for id := range numMetrics {
		d := metricDefs[id]
		base := labels
		if d.tcp {
			base = tcpLabels
		}
		names := slices.Clone(base)
		src := make([]int, len(base))
		for i := range src {
			src[i] = i
		}
		p := &o.plans[id]
		for _, c := range cfgs {
			if c.Name != "" && c.Name != d.name {
				continue
			}
			if c.Drop {
				p.drop = true
			}
			dims := make([]string, 0, len(c.Dimensions))
			for name := range c.Dimensions {
				dims = append(dims, name)
			}
			slices.Sort(dims)
			for _, name := range dims {
				v := -(c.Dimensions[name] + 1)
				if k := slices.Index(names, name); k >= 0 {
					src[k] = v
				} else {
					names = append(names, name)
					src = append(src, v)
				}
			}
			for _, tag := range c.TagsToRemove {
				if k := slices.Index(names, tag); k >= 0 {
					names = slices.Delete(names, k, k+1)
					src = slices.Delete(src, k, k+1)
				}
			}
		}
		if p.drop {
			continue
		}
		p.src = src
		p.vec = m.vecFor(id, names, src)
	}
	return o, nil
}

// vecFor is metric id's vector with labels names: the standard one when
// they and their sources are Istio's, so that a filter that changes
// nothing shares its series with chains without one. Requires m.mu.
func (m *Metrics) vecFor(id metricID, names []string, src []int) prometheus.Collector {
	identity := true
	for i, s := range src {
		if s != i {
			identity = false
			break
		}
	}
	base := len(labels)
	if metricDefs[id].tcp {
		base = len(tcpLabels)
	}
	if identity && len(src) == base {
		return m.standard(id)
	}
	k := variantKey{metric: id, labels: strings.Join(names, ",")}
	if v := m.variants[k]; v != nil {
		return v
	}
	v := metricDefs[id].newVec(names)
	// Unchecked: the same metric name with other labels is one family
	// in the exposition, as Istio's proxy exports it.
	m.reg.MustRegister(unchecked{v})
	m.variants[k] = v
	return v
}

func (m *Metrics) standard(id metricID) prometheus.Collector {
	switch id {
	case metricRequests:
		return m.requests
	case metricDuration:
		return m.duration
	case metricRequestBytes:
		return m.requestBytes
	case metricResponseBytes:
		return m.responseBytes
	case metricTCPSent:
		return m.tcpSent
	case metricTCPReceived:
		return m.tcpReceived
	case metricTCPOpened:
		return m.tcpOpened
	}
	return m.tcpClosed
}

// values are the label values of plan p from the standard values lv and
// the dimensions.
func (p *plan) values(lv []string, dims *Dims) []string {
	out := make([]string, len(p.src))
	for i, s := range p.src {
		if s >= 0 {
			out[i] = lv[s]
		} else {
			out[i] = orUnknown(dims[-s-1])
		}
	}
	return out
}

// counter is metric id's counter for a series, nil when dropped.
func (o *Overrides) counter(id metricID, lv []string, dims *Dims) prometheus.Counter {
	p := &o.plans[id]
	if p.drop {
		return nil
	}
	return p.vec.(*prometheus.CounterVec).WithLabelValues(p.values(lv, dims)...)
}

// observer is metric id's histogram for a series, nil when dropped.
func (o *Overrides) observer(id metricID, lv []string, dims *Dims) prometheus.Observer {
	p := &o.plans[id]
	if p.drop {
		return nil
	}
	return p.vec.(*prometheus.HistogramVec).WithLabelValues(p.values(lv, dims)...)
}

// unchecked registers a collector without describing it.
type unchecked struct{ c prometheus.Collector }

func (unchecked) Describe(chan<- *prometheus.Desc)      {}
func (u unchecked) Collect(ch chan<- prometheus.Metric) { u.c.Collect(ch) }
