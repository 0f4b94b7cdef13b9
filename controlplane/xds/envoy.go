package xds

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	alpnv2alpha1 "istio.io/api/envoy/config/filter/http/alpn/v2alpha1"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlab/meshlab/controlplane/registry"
)

// Istio's well-known names.
const (
	passthroughCluster        = "PassthroughCluster"
	inboundPassthroughCluster = "InboundPassthroughClusterIpv4"
	blackHoleCluster          = "BlackHoleCluster"
	virtualOutboundListener   = "virtualOutbound"
	virtualInboundListener    = "virtualInbound"
	outboundCapturePort       = 15001
	inboundCapturePort        = 15006
	rootNamespace             = "istio-system"
)

var connectTimeout = durationpb.New(10 * time.Second)

func outboundClusterName(port uint32, subset, host string) string {
	return "outbound|" + strconv.FormatUint(uint64(port), 10) + "|" + subset + "|" + host
}

func inboundClusterName(port uint32) string {
	return "inbound|" + strconv.FormatUint(uint64(port), 10) + "||"
}

// isHTTP is Istio's protocol rule: the port name's prefix up to the first
// dash, or appProtocol; no sniffing.
func isHTTP(p registry.Port) bool {
	switch p.AppProtocol {
	case "http", "http2", "grpc", "grpc-web", "h2c", "kubernetes.io/h2c":
		return true
	case "":
	default:
		return false
	}
	proto := p.Name
	for i := 0; i < len(proto); i++ {
		if proto[i] == '-' {
			proto = proto[:i]
			break
		}
	}
	switch proto {
	case "http", "http2", "grpc":
		return true
	}
	return false
}

// isH2 is Istio's Protocol.IsHTTP2 of a service port (HTTP2, GRPC,
// GRPC-Web, h2c), by appProtocol or name prefix.
func isH2(p registry.Port) bool {
	switch p.AppProtocol {
	case "http2", "grpc", "grpc-web", "h2c", "kubernetes.io/h2c":
		return true
	case "":
		name, _, _ := strings.Cut(p.Name, "-") // grpc-web is grpc here
		return name == "http2" || name == "grpc"
	}
	return false
}

// setInboundH2 is Istio's setUpstreamProtocol for an inbound cluster of
// an HTTP/2 port: the sidecar speaks HTTP/2 to the app, which for gRPC
// (the ext-authz sample's Authorization/Check among them) is the only
// protocol it answers.
func setInboundH2(c *clusterv3.Cluster) {
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsKey: mustAny(&httpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: explicitHTTP2(),
	})}
}

// explicitHTTP2 is an upstream that speaks HTTP/2 whatever the request
// came in as.
func explicitHTTP2() *httpv3.HttpProtocolOptions_ExplicitHttpConfig_ {
	return &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
		ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}},
	}}
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		// Only marshalling a message we just built can fail here, which
		// would be a bug in this package.
		panic(fmt.Sprintf("marshal %T: %v", m, err))
	}
	return a
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol:      corev3.SocketAddress_TCP,
		Address:       ip,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func adsConfigSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsConfigSource(), ServiceName: name},
		ConnectTimeout:       connectTimeout,
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
	}
}

func staticCluster(name string, endpoints ...netip.AddrPort) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       connectTimeout,
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
	}
	if len(endpoints) > 0 {
		// Inbound clusters: Istio applies its (unlimited) default pool.
		c.LoadAssignment = loadAssignment(name, endpoints)
		c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{defaultThresholds()}}
	}
	return c
}

func originalDstCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		ConnectTimeout:       connectTimeout,
		LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
		CircuitBreakers:      &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{defaultThresholds()}},
	}
}

// loadAssignment puts every endpoint in one (unnamed) locality.
func loadAssignment(cluster string, endpoints []netip.AddrPort) *endpointv3.ClusterLoadAssignment {
	lbs := make([]*endpointv3.LbEndpoint, 0, len(endpoints))
	for _, ep := range endpoints {
		lbs = append(lbs, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: socketAddress(ep.Addr().String(), uint32(ep.Port())),
			}},
			HealthStatus: corev3.HealthStatus_HEALTHY,
		})
	}
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: cluster,
		Endpoints:   []*endpointv3.LocalityLbEndpoints{{Locality: &corev3.Locality{}, LbEndpoints: lbs}},
	}
}

// httpFilters are Istio's: the fault and CORS filters, which routes
// configure through typed_per_filter_config (empty here, so they do
// nothing unless a route says so), then the router.
var httpFilters = []*hcmv3.HttpFilter{
	{Name: wellknown.Fault, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&faultv3.HTTPFault{})}},
	{Name: wellknown.CORS, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&corsv3.Cors{})}},
	{Name: wellknown.Router, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}},
}

// hcmFilterWith completes h with what every connection manager carries:
// the HTTP filters, after first (an inbound chain's RBAC filters, as Istio
// puts them before fault and CORS; an outbound one's istio.alpn), and
// the bounds on clients. Those are Envoy's defaults,
// sent explicitly so that the proxy's limits show in the config: a
// request head of 60 KiB and 100 headers, a stream idle timeout of 5
// minutes (Istio sends 0, which lets a client that stalls hold a stream
// forever; see docs/traffic.md), a connection idle timeout of 1 hour. The
// request headers timeout stays unset (disabled) as in Envoy and Istio:
// the stream idle timeout, armed at a request's first byte, bounds a head.
// use_remote_address is Istio's: false unless the caller (the gateway)
// sets it.
func hcmFilterWith(first []*hcmv3.HttpFilter, h *hcmv3.HttpConnectionManager) *listenerv3.Filter {
	h.HttpFilters = httpFilters
	if len(first) > 0 {
		h.HttpFilters = append(append([]*hcmv3.HttpFilter{}, first...), httpFilters...)
	}
	h.StreamIdleTimeout = durationpb.New(5 * time.Minute)
	h.MaxRequestHeadersKb = wrapperspb.UInt32(60)
	h.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{
		IdleTimeout:     durationpb.New(time.Hour),
		MaxHeadersCount: wrapperspb.UInt32(100),
	}
	if h.UseRemoteAddress == nil {
		h.UseRemoteAddress = wrapperspb.Bool(false)
	}
	return &listenerv3.Filter{
		Name:       wellknown.HTTPConnectionManager,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(h)},
	}
}

// rdsHCM is an http_connection_manager fetching route config `routes`
// over ADS.
func rdsHCM(statPrefix, routes string) *hcmv3.HttpConnectionManager {
	return &hcmv3.HttpConnectionManager{
		StatPrefix: statPrefix,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsConfigSource(),
			RouteConfigName: routes,
		}},
	}
}

// rdsFilter is an outbound listener's connection manager.
func rdsFilter(statPrefix, routes string) *listenerv3.Filter {
	return hcmFilterWith(outboundFirstFilters, rdsHCM(statPrefix, routes))
}

// gatewayRDSFilter is the gateway's connection manager, as Istio's
// buildGatewayConnectionManager: the peer is the client, so it is
// appended to X-Forwarded-For (use_remote_address), trusting
// trustedHops proxies in front (gatewayTopology.numTrustedProxies,
// xff_num_trusted_hops, which remoteIpBlocks rely on behind a load
// balancer); client certificates are SANITIZE_SET, so a client cannot
// forge X-Forwarded-Client-Cert and a verified client certificate
// (MUTUAL servers) is described to the backend with its subject, the
// certificate itself, and its DNS and URI SANs. The gateway workload's
// authorization filters go first, then istio.alpn, as in Istio's
// buildHTTPConnectionManager.
func gatewayRDSFilter(statPrefix, routes string, authz []*hcmv3.HttpFilter, trustedHops uint32) *listenerv3.Filter {
	h := rdsHCM(statPrefix, routes)
	h.UseRemoteAddress = wrapperspb.Bool(true)
	h.XffNumTrustedHops = trustedHops
	h.ForwardClientCertDetails = hcmv3.HttpConnectionManager_SANITIZE_SET
	h.SetCurrentClientCertDetails = &hcmv3.HttpConnectionManager_SetCurrentClientCertDetails{
		Subject: wrapperspb.Bool(true), Cert: true, Dns: true, Uri: true,
	}
	return hcmFilterWith(append(append([]*hcmv3.HttpFilter{}, authz...), outboundFirstFilters...), h)
}

// outboundFirstFilters go before the shared HTTP filters on outbound and
// gateway connection managers.
var outboundFirstFilters = []*hcmv3.HttpFilter{alpnFilter}

// alpnFilter is Istio's istio.alpn (xdsfilters.Alpn), which every
// outbound and gateway connection manager has before fault and CORS: on
// an mTLS upstream it replaces the cluster's ALPN by one naming the
// request's protocol ("istio-http/1.1", "istio", "http/1.1" …), which is
// what lets the server's pass-through chains tell HTTP from TCP. Marked
// optional (Istio does not): a proxy that does not implement it skips
// it and offers the cluster's ALPN, which every server chain but the
// pass-through's HTTP ones also accepts.
var alpnFilter = &hcmv3.HttpFilter{
	Name:       "istio.alpn",
	IsOptional: true,
	ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&alpnv2alpha1.FilterConfig{
		AlpnOverride: []*alpnv2alpha1.FilterConfig_AlpnOverride{
			{UpstreamProtocol: alpnv2alpha1.FilterConfig_HTTP10, AlpnOverride: []string{"istio-http/1.0", "istio", "http/1.0"}},
			{UpstreamProtocol: alpnv2alpha1.FilterConfig_HTTP11, AlpnOverride: []string{"istio-http/1.1", "istio", "http/1.1"}},
			{UpstreamProtocol: alpnv2alpha1.FilterConfig_HTTP2, AlpnOverride: []string{"istio-h2", "istio", "h2"}},
		},
	})},
}

func tcpProxyFilter(statPrefix string, clusters []weighted) *listenerv3.Filter {
	tp := &tcpproxyv3.TcpProxy{StatPrefix: statPrefix}
	if len(clusters) == 1 {
		tp.ClusterSpecifier = &tcpproxyv3.TcpProxy_Cluster{Cluster: clusters[0].cluster}
	} else {
		wc := &tcpproxyv3.TcpProxy_WeightedCluster{}
		for _, c := range clusters {
			wc.Clusters = append(wc.Clusters, &tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight{Name: c.cluster, Weight: c.weight})
		}
		tp.ClusterSpecifier = &tcpproxyv3.TcpProxy_WeightedClusters{WeightedClusters: wc}
	}
	return &listenerv3.Filter{
		Name:       wellknown.TCPProxy,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(tp)},
	}
}

// weighted is one destination of a route: a cluster and its weight, and
// for HTTP the destination's header operations.
type weighted struct {
	cluster string
	weight  uint32
	headers *networking.Headers
}

func routeAction(dests []weighted) *routev3.RouteAction {
	// Istio disables Envoy's default 15s route timeout unless the
	// VirtualService sets one.
	a := &routev3.RouteAction{Timeout: durationpb.New(0)}
	if len(dests) == 1 {
		a.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: dests[0].cluster}
		return a
	}
	// As Istio, no total_weight: Envoy then takes the sum of the weights.
	wc := &routev3.WeightedCluster{}
	for _, d := range dests {
		cw := &routev3.WeightedCluster_ClusterWeight{Name: d.cluster, Weight: wrapperspb.UInt32(d.weight)}
		if d.headers != nil {
			ops := headerOps(d.headers)
			cw.RequestHeadersToAdd, cw.RequestHeadersToRemove = ops.reqAdd, ops.reqRemove
			cw.ResponseHeadersToAdd, cw.ResponseHeadersToRemove = ops.respAdd, ops.respRemove
			if ops.authority != "" {
				cw.HostRewriteSpecifier = &routev3.WeightedCluster_ClusterWeight_HostRewriteLiteral{HostRewriteLiteral: ops.authority}
			}
		}
		wc.Clusters = append(wc.Clusters, cw)
	}
	a.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
	return a
}

func catchAllRoute(name, cluster string) *routev3.Route {
	return &routev3.Route{
		Name:   name,
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: routeAction([]weighted{{cluster: cluster, weight: 100}})},
	}
}

// servicesMetadata is the "istio" metadata istiod puts on a cluster: the
// services behind it, which the proxy's metrics name as the destination
// service.
func servicesMetadata(svcs []*service) *corev3.Metadata {
	list := make([]*structpb.Value, 0, len(svcs))
	for _, s := range svcs {
		list = append(list, structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
			"host":      structpb.NewStringValue(s.host),
			"name":      structpb.NewStringValue(s.Name),
			"namespace": structpb.NewStringValue(s.Namespace),
		}}))
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"istio": {Fields: map[string]*structpb.Value{
		"services": structpb.NewListValue(&structpb.ListValue{Values: list}),
	}}}}
}
