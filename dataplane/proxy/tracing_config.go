package proxy

import (
	"fmt"
	"net/http"
	"os"
	"sync/atomic"

	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	uuidv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/request_id/uuid/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/meshlab/meshlab/dataplane/fieldcheck"
	"github.com/meshlab/meshlab/dataplane/tracing"
)

// zipkinTracer is the only tracing provider the proxy implements.
const zipkinTracer = "envoy.tracers.zipkin"

// defaultMaxPathTag is Envoy's max_path_tag_length default.
const defaultMaxPathTag = 256

// hcmTracing is a connection manager's tracing: its sampling, the request
// id extension, its tags and its Zipkin provider.
type hcmTracing struct {
	sampling tracing.Sampling
	rid      tracing.RequestID
	maxPath  int
	tags     []customTag
	// zipkin is the provider; nil (no provider): the trace decision is
	// made and carried in x-request-id, and no span is created.
	zipkin *zipkinProvider
}

// zipkinProvider is a ZipkinConfig. Its tracer (with the reporter of its
// collector) is the proxy's, found on first use (Proxy.tracer).
type zipkinProvider struct {
	collector collectorKey
	trace128  bool
	shared    bool
	w3c       bool
	tracer    atomic.Pointer[tracing.Tracer]
}

// collectorKey names a collector: one reporter per key, shared by every
// connection manager that reports there, as Envoy's tracer manager shares
// a driver among equal configurations.
type collectorKey struct {
	cluster, endpoint, hostname string
}

// customTag is one of the connection manager's custom_tags: a literal or
// environment value (resolved now, as Envoy does at configuration), or
// a request header with its default.
type customTag struct {
	tag, value string
	header     string
}

// compileTracing reads a connection manager's tracing and request id
// extension. What the proxy does not implement is refused: a metadata
// tag, another tracer, a Zipkin collector_service, a protobuf collector.
func compileTracing(h *hcmv3.HttpConnectionManager) (*hcmTracing, error) {
	rid, err := compileRequestID(h.GetRequestIdExtension())
	if err != nil {
		return nil, err
	}
	t := h.GetTracing()
	if t == nil {
		return nil, nil
	}
	if err := fieldcheck.Only(t, "client_sampling", "random_sampling", "overall_sampling", "max_path_tag_length", "custom_tags", "provider"); err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	out := &hcmTracing{rid: rid, maxPath: defaultMaxPathTag, sampling: tracing.Sampling{
		Client: percent(t.GetClientSampling()), Random: percent(t.GetRandomSampling()), Overall: percent(t.GetOverallSampling()),
	}}
	if v := t.GetMaxPathTagLength(); v != nil {
		out.maxPath = int(v.GetValue())
	}
	for i, ct := range t.GetCustomTags() {
		if err := fieldcheck.Only(ct, "tag", "literal", "environment", "request_header"); err != nil {
			return nil, fmt.Errorf("tracing: custom tag %d: %w", i, err)
		}
		c := customTag{tag: ct.GetTag()}
		switch {
		case ct.GetLiteral() != nil:
			c.value = ct.GetLiteral().GetValue()
		case ct.GetEnvironment() != nil:
			e := ct.GetEnvironment()
			if v, ok := os.LookupEnv(e.GetName()); ok {
				c.value = v
			} else {
				c.value = e.GetDefaultValue()
			}
		case ct.GetRequestHeader() != nil:
			// Canonical once here, not on every traced request.
			c.header, c.value = http.CanonicalHeaderKey(ct.GetRequestHeader().GetName()), ct.GetRequestHeader().GetDefaultValue()
		default:
			return nil, fmt.Errorf("tracing: custom tag %d (%q) has no value", i, c.tag)
		}
		out.tags = append(out.tags, c)
	}
	if p := t.GetProvider(); p != nil {
		z, err := compileZipkin(p)
		if err != nil {
			return nil, err
		}
		out.zipkin = z
	}
	return out, nil
}

func compileZipkin(p *tracev3.Tracing_Http) (*zipkinProvider, error) {
	name, tc := p.GetName(), p.GetTypedConfig()
	if tc == nil || !tc.MessageIs((*tracev3.ZipkinConfig)(nil)) {
		return nil, fmt.Errorf("tracing: provider %q: only %s (ZipkinConfig) is implemented", name, zipkinTracer)
	}
	var zc tracev3.ZipkinConfig
	if err := tc.UnmarshalTo(&zc); err != nil {
		return nil, fmt.Errorf("tracing: decode %s: %w", zipkinTracer, err)
	}
	if err := fieldcheck.Only(&zc, "collector_cluster", "collector_endpoint", "trace_id_128bit", "shared_span_context",
		"collector_endpoint_version", "collector_hostname", "trace_context_option"); err != nil {
		return nil, fmt.Errorf("tracing: %s: %w", zipkinTracer, err)
	}
	if v := zc.GetCollectorEndpointVersion(); v != tracev3.ZipkinConfig_HTTP_JSON {
		return nil, fmt.Errorf("tracing: %s: collector_endpoint_version %s is not supported (HTTP_JSON is)", zipkinTracer, v)
	}
	if zc.GetCollectorCluster() == "" || zc.GetCollectorEndpoint() == "" {
		return nil, fmt.Errorf("tracing: %s: collector_cluster and collector_endpoint are required", zipkinTracer)
	}
	z := &zipkinProvider{
		collector: collectorKey{cluster: zc.GetCollectorCluster(), endpoint: zc.GetCollectorEndpoint(), hostname: zc.GetCollectorHostname()},
		trace128:  zc.GetTraceId_128Bit(),
		// Envoy's default for shared_span_context is true; Istio sets false.
		shared: zc.GetSharedSpanContext() == nil || zc.GetSharedSpanContext().GetValue(),
		w3c:    zc.GetTraceContextOption() == tracev3.ZipkinConfig_USE_B3_WITH_W3C_PROPAGATION,
	}
	if z.collector.hostname == "" {
		z.collector.hostname = z.collector.cluster
	}
	return z, nil
}

// compileRequestID reads request_id_extension: only Envoy's uuid one, with
// its defaults (pack the reason, sample on the id) when absent.
func compileRequestID(ext *hcmv3.RequestIDExtension) (tracing.RequestID, error) {
	rid := tracing.DefaultRequestID
	if ext == nil {
		return rid, nil
	}
	tc := ext.GetTypedConfig()
	if tc == nil || !tc.MessageIs((*uuidv3.UuidRequestIdConfig)(nil)) {
		return rid, fmt.Errorf("request_id_extension: only envoy.request_id.uuid (UuidRequestIdConfig) is implemented")
	}
	var cfg uuidv3.UuidRequestIdConfig
	if err := tc.UnmarshalTo(&cfg); err != nil {
		return rid, fmt.Errorf("request_id_extension: decode: %w", err)
	}
	if err := fieldcheck.Only(&cfg, "pack_trace_reason", "use_request_id_for_trace_sampling"); err != nil {
		return rid, fmt.Errorf("request_id_extension: %w", err)
	}
	if v := cfg.GetPackTraceReason(); v != nil {
		rid.PackTraceReason = v.GetValue()
	}
	if v := cfg.GetUseRequestIdForTraceSampling(); v != nil {
		rid.UseForSampling = v.GetValue()
	}
	return rid, nil
}

// percent is a sampling percentage in Envoy's 1/10,000, 100% when unset.
func percent(p *typev3.Percent) uint32 {
	if p == nil {
		return tracing.FullSampling.Random
	}
	return tracing.Percent(p.GetValue())
}
