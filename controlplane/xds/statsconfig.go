package xds

// Metrics, as Istio 1.24 configures the proxies' istio.stats filters
// (pilot/pkg/model/telemetry.go generateStatsConfig): an HTTP filter
// before the router and a network filter before tcp_proxy, whose
// stats.PluginConfig carries the Telemetry API's metric overrides.
//
// One difference: where Istio drops the filter to turn metrics off (all
// metrics disabled, or no Prometheus provider in scope), meshlab keeps
// it with every metric dropped, since a meshlab proxy without the filter
// keeps its default of reporting every metric (docs/xds.md). With no
// metrics configuration at all (no Telemetry metrics, no
// defaultProviders.metrics) there is no filter, and so every metric.

import (
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"istio.io/api/envoy/extensions/stats"
)

const statsFilterName = "istio.stats"

// metricNames are Istio's metricToPrometheusMetric.
var metricNames = map[string]string{
	"REQUEST_COUNT":          "requests_total",
	"REQUEST_DURATION":       "request_duration_milliseconds",
	"REQUEST_SIZE":           "request_bytes",
	"RESPONSE_SIZE":          "response_bytes",
	"TCP_OPENED_CONNECTIONS": "tcp_connections_opened_total",
	"TCP_CLOSED_CONNECTIONS": "tcp_connections_closed_total",
	"TCP_SENT_BYTES":         "tcp_sent_bytes_total",
	"TCP_RECEIVED_BYTES":     "tcp_received_bytes_total",
	"GRPC_REQUEST_MESSAGES":  "request_messages_total",
	"GRPC_RESPONSE_MESSAGES": "response_messages_total",
}

// statsConfig is the istio.stats configuration of one class (nil: no
// filter): Istio's generateStatsConfig for the prometheus provider.
// hostFallbackOff is Istio's disableHostHeaderFallback (inbound and
// gateway listeners).
func (x *index) statsConfig(a applicable, client, hostFallbackOff bool) *stats.PluginConfig {
	providers, configured, interval := mergeMetrics(a, x.mesh)
	if !configured {
		return nil
	}
	var mc *metricsConfig
	for name, c := range providers {
		if fetchProvider(x.mesh, name).GetPrometheus() != nil {
			mc = c
		}
	}
	cfg := &stats.PluginConfig{DisableHostHeaderFallback: hostFallbackOff}
	if interval != nil {
		cfg.TcpReportingDuration = durationpb.New(interval.AsDuration())
	}
	if mc == nil || mc.disabledAll {
		cfg.Metrics = []*stats.MetricConfig{{Drop: true}} // every metric
		return cfg
	}
	overrides := mc.server
	if client {
		overrides = mc.client
	}
	for _, o := range overrides {
		name, ok := metricNames[o.name]
		if !ok {
			name = o.name // a custom metric
		}
		m := &stats.MetricConfig{Name: name, Drop: o.disabled, Dimensions: map[string]string{}}
		for _, t := range o.tags {
			if t.remove {
				m.TagsToRemove = append(m.TagsToRemove, t.name)
			} else {
				m.Dimensions[t.name] = t.value
			}
		}
		cfg.Metrics = append(cfg.Metrics, m)
	}
	return cfg
}

func httpStatsFilter(cfg *stats.PluginConfig) *hcmv3.HttpFilter {
	if cfg == nil {
		return nil
	}
	return &hcmv3.HttpFilter{Name: statsFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(cfg)}}
}

func tcpStatsFilter(cfg *stats.PluginConfig) *listenerv3.Filter {
	if cfg == nil {
		return nil
	}
	return &listenerv3.Filter{Name: statsFilterName, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(cfg)}}
}
