package xds

// Tracing, as Istio 1.24 configures Envoy's Zipkin tracer
// (pilot/pkg/networking/core/tracing.go): every connection manager gets
// `tracing` with the provider (a Zipkin provider of the mesh config's
// extensionProviders chosen by Telemetry or defaultProviders, else the
// legacy defaultConfig.tracing.zipkin address while enableTracing is
// on), the sampling percentage, Istio's five istio.* tags and the custom
// ones; and the uuid request ID extension that carries the sampling
// decision in x-request-id. Where Istio puts the legacy tracer in the
// proxy's bootstrap (cluster `zipkin`), meshlab has no bootstrap and
// puts it in the connection manager, with the same cluster.
//
// The endpoint is the provider's path, /api/v2/spans by default, as
// Istio's zipkinConfig.
//
// Differences: Istio's four optional dry-run tags read RBAC dynamic
// metadata (metadata tags), which meshlab's proxy does not implement, so
// they are left out; tracing providers other than Zipkin (OpenTelemetry,
// Datadog, …) configure no tracing here.

import (
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	uuidv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/request_id/uuid/v3"
	tracingv3 "github.com/envoyproxy/go-control-plane/envoy/type/tracing/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	meshv1 "istio.io/api/mesh/v1alpha1"
	tpb "istio.io/api/telemetry/v1alpha1"

	"github.com/meshlab/meshlab/controlplane/meshconfig"
	"github.com/meshlab/meshlab/controlplane/registry"
)

const (
	zipkinTracer   = "envoy.tracers.zipkin"
	zipkinEndpoint = "/api/v2/spans"
	// legacyZipkinCluster is Istio's bootstrap cluster for
	// defaultConfig.tracing.zipkin.
	legacyZipkinCluster = "zipkin"
)

// collector is where a proxy's spans go: a registry service's outbound
// cluster (svc set), or the legacy `zipkin` cluster built for it.
type collector struct {
	cluster  string
	hostname string
	svc      *destination
	legacy   *clusterv3.Cluster
}

// proxyMeta is what the istio.* tags say about a proxy.
type proxyMeta struct {
	canonicalService, canonicalRevision, meshID, namespace, clusterID string
}

// metaFor is Istio's buildServiceTags input: the canonical service and
// revision as the injector labels pods (service.istio.io/canonical-*,
// else app.kubernetes.io/*, else app/version), the mesh ID and cluster ID
// of the node (the injector's default mesh ID is the trust domain).
func metaFor(p Proxy, w registry.Workload, mesh *meshv1.MeshConfig) proxyMeta {
	l := w.Labels
	first := func(def string, vs ...string) string {
		for _, v := range vs {
			if v != "" {
				return v
			}
		}
		return def
	}
	m := proxyMeta{
		canonicalService:  first("unknown", l["service.istio.io/canonical-name"], l["app.kubernetes.io/name"], l["app"]),
		canonicalRevision: first("latest", l["service.istio.io/canonical-revision"], l["app.kubernetes.io/version"], l["version"]),
		meshID:            first("unknown", p.MeshID, mesh.GetDefaultConfig().GetMeshId(), mesh.GetTrustDomain()),
		namespace:         first("default", w.Namespace),
		clusterID:         first("unknown", p.ClusterID),
	}
	return m
}

// istioTags are Istio's five literal tags (buildServiceTags).
func istioTags(m proxyMeta) []*tracingv3.CustomTag {
	lit := func(tag, v string) *tracingv3.CustomTag {
		return &tracingv3.CustomTag{Tag: tag, Type: &tracingv3.CustomTag_Literal_{Literal: &tracingv3.CustomTag_Literal{Value: v}}}
	}
	return []*tracingv3.CustomTag{
		lit("istio.canonical_revision", m.canonicalRevision),
		lit("istio.canonical_service", m.canonicalService),
		lit("istio.mesh_id", m.meshID),
		lit("istio.namespace", m.namespace),
		lit("istio.cluster_id", m.clusterID),
	}
}

// samplingFromProxyConfig is Istio's proxyConfigSamplingValue:
// defaultConfig (or the pod's proxy.istio.io/config) tracing.sampling
// when set, above 100 taken as 1; else PILOT_TRACE_SAMPLING.
func samplingFromProxyConfig(pc *meshv1.ProxyConfig) float64 {
	s := pc.GetTracing().GetSampling()
	if s == 0 {
		return meshconfig.TraceSampling
	}
	if s > 100 {
		return 1
	}
	return s
}

func sampling(t *hcmv3.HttpConnectionManager_Tracing, random float64) {
	t.ClientSampling = &typev3.Percent{Value: 100}
	t.OverallSampling = &typev3.Percent{Value: 100}
	t.RandomSampling = &typev3.Percent{Value: random}
}

func requestIDExtension(useForSampling bool) *hcmv3.RequestIDExtension {
	return &hcmv3.RequestIDExtension{TypedConfig: mustAny(&uuidv3.UuidRequestIdConfig{
		UseRequestIdForTraceSampling: wrapperspb.Bool(useForSampling),
	})}
}

// tracing is Istio's configureTracingFromTelemetry for one class: the
// connection manager's tracing (nil: none) and request ID extension, and
// the collector its spans go to.
func (x *index) tracing(spec *tracingSpec, pc *meshv1.ProxyConfig, meta proxyMeta) (*hcmv3.HttpConnectionManager_Tracing, *hcmv3.RequestIDExtension, *collector) {
	mesh := x.mesh
	if spec == nil {
		// No Telemetry: the legacy mesh config.
		if !mesh.GetEnableTracing() {
			return nil, requestIDExtension(true), nil
		}
		addr := pc.GetTracing().GetZipkin().GetAddress()
		if addr == "" {
			// No Zipkin tracer in the proxy config (another tracer, or
			// `tracing` replaced without one): Envoy would get no tracer.
			return nil, requestIDExtension(true), nil
		}
		col := x.legacyCollector(addr)
		if col == nil {
			return nil, requestIDExtension(true), nil
		}
		t := &hcmv3.HttpConnectionManager_Tracing{Provider: zipkinProvider(col, true, zipkinEndpoint)}
		sampling(t, samplingFromProxyConfig(pc))
		t.CustomTags = customTags(pc, nil, meta, pc.GetTracing().GetEnableIstioTags() == nil || pc.GetTracing().GetEnableIstioTags().GetValue())
		if n := pc.GetTracing().GetMaxPathTagLength(); n != 0 {
			t.MaxPathTagLength = wrapperspb.UInt32(n)
		}
		return t, requestIDExtension(true), col
	}
	if spec.disabled {
		return nil, requestIDExtension(true), nil
	}
	z := spec.provider.GetZipkin()
	if z == nil {
		return nil, requestIDExtension(true), nil // not a tracer meshlab's proxy has
	}
	col := x.serviceCollector(z.GetService(), z.GetPort())
	if col == nil {
		// Istio: "could not find cluster for tracing provider": no tracing.
		return nil, requestIDExtension(true), nil
	}
	endpoint := z.GetPath()
	if endpoint == "" {
		endpoint = zipkinEndpoint
	}
	t := &hcmv3.HttpConnectionManager_Tracing{Provider: zipkinProvider(col, !z.GetEnable_64BitTraceId(), endpoint)}
	if n := z.GetMaxTagLength(); n != 0 {
		t.MaxPathTagLength = wrapperspb.UInt32(n)
	}
	random := samplingFromProxyConfig(pc)
	if spec.randomSampling != nil {
		random = *spec.randomSampling
	}
	sampling(t, random)
	t.CustomTags = customTags(pc, spec, meta, spec.enableIstioTags)
	if t.MaxPathTagLength == nil && pc.GetTracing().GetMaxPathTagLength() != 0 {
		t.MaxPathTagLength = wrapperspb.UInt32(pc.GetTracing().GetMaxPathTagLength())
	}
	return t, requestIDExtension(spec.useRequestIDSampling), col
}

func zipkinProvider(col *collector, traceID128 bool, endpoint string) *tracev3.Tracing_Http {
	return &tracev3.Tracing_Http{
		Name: zipkinTracer,
		ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: mustAny(&tracev3.ZipkinConfig{
			CollectorCluster:         col.cluster,
			CollectorEndpoint:        endpoint,
			CollectorEndpointVersion: tracev3.ZipkinConfig_HTTP_JSON,
			TraceId_128Bit:           traceID128,
			SharedSpanContext:        wrapperspb.Bool(false),
			CollectorHostname:        col.hostname,
		})},
	}
}

// customTags is Istio's configureCustomTags: the istio.* tags unless
// turned off, then the Telemetry's custom tags, or when it has none the
// proxy config's; sorted by name.
func customTags(pc *meshv1.ProxyConfig, spec *tracingSpec, meta proxyMeta, istio bool) []*tracingv3.CustomTag {
	var tags []*tracingv3.CustomTag
	if istio {
		tags = istioTags(meta)
	}
	if spec == nil || len(spec.customTags) == 0 {
		for name, t := range pc.GetTracing().GetCustomTags() {
			switch tt := t.GetType().(type) {
			case *meshv1.Tracing_CustomTag_Literal:
				tags = append(tags, &tracingv3.CustomTag{Tag: name, Type: &tracingv3.CustomTag_Literal_{Literal: &tracingv3.CustomTag_Literal{Value: tt.Literal.GetValue()}}})
			case *meshv1.Tracing_CustomTag_Environment:
				tags = append(tags, &tracingv3.CustomTag{Tag: name, Type: &tracingv3.CustomTag_Environment_{Environment: &tracingv3.CustomTag_Environment{Name: tt.Environment.GetName(), DefaultValue: tt.Environment.GetDefaultValue()}}})
			case *meshv1.Tracing_CustomTag_Header:
				tags = append(tags, &tracingv3.CustomTag{Tag: name, Type: &tracingv3.CustomTag_RequestHeader{RequestHeader: &tracingv3.CustomTag_Header{Name: tt.Header.GetName(), DefaultValue: tt.Header.GetDefaultValue()}}})
			}
		}
	} else {
		for name, t := range spec.customTags {
			switch tt := t.GetType().(type) {
			case *tpb.Tracing_CustomTag_Literal:
				tags = append(tags, &tracingv3.CustomTag{Tag: name, Type: &tracingv3.CustomTag_Literal_{Literal: &tracingv3.CustomTag_Literal{Value: tt.Literal.GetValue()}}})
			case *tpb.Tracing_CustomTag_Environment:
				tags = append(tags, &tracingv3.CustomTag{Tag: name, Type: &tracingv3.CustomTag_Environment_{Environment: &tracingv3.CustomTag_Environment{Name: tt.Environment.GetName(), DefaultValue: tt.Environment.GetDefaultValue()}}})
			case *tpb.Tracing_CustomTag_Header:
				tags = append(tags, &tracingv3.CustomTag{Tag: name, Type: &tracingv3.CustomTag_RequestHeader{RequestHeader: &tracingv3.CustomTag_Header{Name: tt.Header.GetName(), DefaultValue: tt.Header.GetDefaultValue()}}})
			}
		}
	}
	slices.SortFunc(tags, func(a, b *tracingv3.CustomTag) int { return strings.Compare(a.GetTag(), b.GetTag()) })
	return tags
}

// serviceCollector is Istio's LookupCluster for a provider's service: a
// host (FQDN, or `namespace/host`) of the registry and a port of it.
func (x *index) serviceCollector(svc string, port uint32) *collector {
	if _, h, ok := strings.Cut(svc, "/"); ok {
		svc = h
	}
	s := x.byHost[svc]
	if s == nil {
		return nil
	}
	if _, ok := s.port(port); !ok {
		return nil
	}
	return &collector{cluster: outboundClusterName(port, "", s.host), hostname: s.host, svc: &destination{host: s.host, port: port}}
}

// legacyCollector is where defaultConfig.tracing.zipkin.address points:
// the outbound cluster of a registry service it names (its FQDN, or
// `name.namespace` short of the cluster domain), else Istio's bootstrap
// cluster `zipkin`, STRICT_DNS for a name, STATIC for an IP. nil for an
// address without a valid port.
func (x *index) legacyCollector(addr string) *collector {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		host, ps = addr, "9411"
	}
	port, err := strconv.ParseUint(ps, 10, 16)
	if err != nil || port == 0 {
		return nil
	}
	for _, h := range []string{host, host + ".svc." + registry.ClusterDomain, host + "." + registry.ClusterDomain} {
		if col := x.serviceCollector(h, uint32(port)); col != nil {
			col.hostname = host
			return col
		}
	}
	c := &clusterv3.Cluster{
		Name:           legacyZipkinCluster,
		ConnectTimeout: connectTimeout,
		LbPolicy:       clusterv3.Cluster_ROUND_ROBIN,
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
		c.LoadAssignment = loadAssignment(legacyZipkinCluster, []netip.AddrPort{netip.AddrPortFrom(ip, uint16(port))})
	} else {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
		c.DnsLookupFamily = clusterv3.Cluster_V4_ONLY
		c.LoadAssignment = hostLoadAssignment(legacyZipkinCluster, []hostPort{{host: host, port: uint32(port)}})
	}
	return &collector{cluster: legacyZipkinCluster, hostname: host, legacy: c}
}

// routeOperation is Istio's getRouteOperation, the route's span name: a
// route to one cluster `<host>:<port><path>`, any other (several
// weighted clusters, a redirect, a direct response) `<VirtualService
// name>:<listener port><path>`; the path is the prefix with `*`, the
// exact path, or the regex.
func routeOperation(r *routev3.Route, vsName string, listenerPort uint32) string {
	path := "/*"
	switch p := r.GetMatch().GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		path = p.Prefix + "*"
	case *routev3.RouteMatch_Path:
		path = p.Path
	case *routev3.RouteMatch_SafeRegex:
		path = p.SafeRegex.GetRegex()
	}
	if parts := strings.Split(r.GetRoute().GetCluster(), "|"); len(parts) == 4 && parts[0] == "outbound" {
		return parts[3] + ":" + parts[1] + path
	}
	return vsName + ":" + portString(listenerPort) + path
}

// traceOperation is Istio's TraceOperation, the span name of a default
// route of a service: `<host>:<port>/*`.
func traceOperation(host string, port uint32) string {
	return host + ":" + portString(port) + "/*"
}
