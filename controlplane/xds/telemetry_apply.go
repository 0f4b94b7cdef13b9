package xds

import (
	"encoding/hex"
	"slices"

	"github.com/cespare/xxhash/v2"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	meshv1 "istio.io/api/mesh/v1alpha1"
	tpb "istio.io/api/telemetry/v1alpha1"

	"github.com/meshlab/meshlab/controlplane/meshconfig"
	"github.com/meshlab/meshlab/controlplane/registry"
)

// telemetryClass is what telemetry puts on the connection managers and
// TCP proxies of one listener class (client: sidecar outbound and
// gateway; server: sidecar inbound).
type telemetryClass struct {
	tracing   *hcmv3.HttpConnectionManager_Tracing
	requestID *hcmv3.RequestIDExtension
	accessLog []*accesslogv3.AccessLog
	httpStats *hcmv3.HttpFilter
	tcpStats  *listenerv3.Filter
}

// proxyTelemetry is one proxy's telemetry: per class, and the collector
// clusters its tracing needs.
type proxyTelemetry struct {
	client, server telemetryClass
	collectors     []*collector
	// key identifies the content, so that listeners decorated for one
	// proxy serve every proxy with the same telemetry.
	key string
}

// proxyConfig is a proxy's ProxyConfig as translation uses it: the one
// fixed when it connected (Proxy.ProxyConfig), else the mesh's current
// defaultConfig overlaid with its PROXY_CONFIG metadata.
func (x *index) proxyConfig(p Proxy) *meshv1.ProxyConfig {
	if p.ProxyConfig != nil {
		return p.ProxyConfig
	}
	return resolveProxyConfig(x.mesh.GetDefaultConfig(), p)
}

// telemetryFor computes p's telemetry; memoized by what decides it: the
// Telemetry resources that apply, the proxy type, the proxy config and
// the tags' inputs.
func (x *index) telemetryFor(p Proxy, w registry.Workload) *proxyTelemetry {
	pc := x.proxyConfig(p)
	meta := metaFor(p, w, x.mesh)
	a := x.tel.applicable(x.mesh.GetRootNamespace(), w.Namespace, w.Labels)
	pcb, _ := proto.MarshalOptions{Deterministic: true}.Marshal(pc)
	memo := p.Type + "|" + a.key + "|" + hex.EncodeToString(pcb) + "|" + meta.canonicalService + "|" + meta.canonicalRevision + "|" + meta.meshID + "|" + meta.namespace + "|" + meta.clusterID
	x.mu.Lock()
	pt, ok := x.telemetryMemo[memo]
	x.mu.Unlock()
	if ok {
		return pt
	}
	pt = &proxyTelemetry{}
	clientSpec, serverSpec := tracingConfig(a, x.mesh)
	gateway := p.Type == RouterProxy
	for _, c := range []struct {
		out  *telemetryClass
		spec *tracingSpec
		mode tpb.WorkloadMode
	}{{&pt.client, clientSpec, tpb.WorkloadMode_CLIENT}, {&pt.server, serverSpec, tpb.WorkloadMode_SERVER}} {
		if gateway && c.mode == tpb.WorkloadMode_SERVER {
			continue // a gateway's listeners are all of the client class
		}
		var col *collector
		c.out.tracing, c.out.requestID, col = x.tracing(c.spec, pc, meta)
		if col != nil && !slices.ContainsFunc(pt.collectors, func(o *collector) bool { return o.cluster == col.cluster }) {
			pt.collectors = append(pt.collectors, col)
		}
		c.out.accessLog = x.accessLogs(a, c.mode)
		client := c.mode == tpb.WorkloadMode_CLIENT
		sc := x.statsConfig(a, client, !client || gateway)
		c.out.httpStats, c.out.tcpStats = httpStatsFilter(sc), tcpStatsFilter(sc)
	}
	h := xxhash.New()
	for _, c := range []*telemetryClass{&pt.client, &pt.server} {
		for _, m := range []proto.Message{c.tracing, c.requestID, c.httpStats, c.tcpStats} {
			b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
			_, _ = h.Write(b)
			_, _ = h.Write([]byte{0})
		}
		for _, al := range c.accessLog {
			b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(al)
			_, _ = h.Write(b)
		}
		_, _ = h.Write([]byte{1})
	}
	pt.key = string(h.Sum(nil))
	x.mu.Lock()
	x.telemetryMemo[memo] = pt
	x.mu.Unlock()
	return pt
}

type decoratedKey struct {
	l   *listenerv3.Listener
	key string
}

// withTelemetry returns ls with telemetry on every connection manager
// and TCP proxy: the server class on inbound listeners, the client class
// on the others. The listeners are shared and stay as they are; the
// decorated copies are memoized per listener and telemetry.
func (x *index) withTelemetry(ls []types.Resource, pt *proxyTelemetry) []types.Resource {
	out := make([]types.Resource, len(ls))
	for i, r := range ls {
		l := r.(*listenerv3.Listener)
		k := decoratedKey{l, pt.key}
		x.mu.Lock()
		d, ok := x.decoratedMemo[k]
		x.mu.Unlock()
		if !ok {
			d = proto.Clone(l).(*listenerv3.Listener)
			tc := &pt.client
			if l.GetTrafficDirection() == corev3.TrafficDirection_INBOUND {
				tc = &pt.server
			}
			for _, fc := range d.GetFilterChains() {
				fc.Filters = decorateFilters(fc.GetFilters(), tc)
			}
			x.mu.Lock()
			x.decoratedMemo[k] = d
			x.mu.Unlock()
		}
		out[i] = d
	}
	return out
}

func decorateFilters(fs []*listenerv3.Filter, tc *telemetryClass) []*listenerv3.Filter {
	out := make([]*listenerv3.Filter, 0, len(fs)+1)
	for _, f := range fs {
		switch f.GetName() {
		case wellknown.HTTPConnectionManager:
			h := &hcmv3.HttpConnectionManager{}
			if err := f.GetTypedConfig().UnmarshalTo(h); err != nil {
				panic("unmarshal a connection manager this package built: " + err.Error())
			}
			h.Tracing = tc.tracing
			h.RequestIdExtension = tc.requestID
			h.AccessLog = tc.accessLog
			if tc.httpStats != nil {
				// Before the router, the last filter.
				n := len(h.HttpFilters)
				h.HttpFilters = append(slices.Clone(h.HttpFilters[:n-1]), tc.httpStats, h.HttpFilters[n-1])
			}
			f = &listenerv3.Filter{Name: f.GetName(), ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(h)}}
		case wellknown.TCPProxy:
			tp := &tcpproxyv3.TcpProxy{}
			if err := f.GetTypedConfig().UnmarshalTo(tp); err != nil {
				panic("unmarshal a tcp_proxy this package built: " + err.Error())
			}
			tp.AccessLog = tc.accessLog
			f = &listenerv3.Filter{Name: f.GetName(), ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(tp)}}
			if tc.tcpStats != nil {
				out = append(out, tc.tcpStats)
			}
		}
		out = append(out, f)
	}
	return out
}

// collectorClusters are the clusters pt's tracing needs that a proxy
// would not have otherwise: the legacy `zipkin` cluster.
func (pt *proxyTelemetry) legacyClusters() []*clusterv3.Cluster {
	var out []*clusterv3.Cluster
	for _, c := range pt.collectors {
		if c.legacy != nil {
			out = append(out, c.legacy)
		}
	}
	return out
}

// meshOrDefault is the mesh config translation reads: the istio
// ConfigMap's, or Istio's defaults when there is none.
func meshOrDefault(m *meshv1.MeshConfig) *meshv1.MeshConfig {
	if m == nil {
		return meshconfig.Default()
	}
	return m
}
