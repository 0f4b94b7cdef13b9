package proxy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlab/meshlab/dataplane/xdsclient"
)

const testNode = "router~127.0.0.1~gw-0.istio-system~istio-system.svc.cluster.local"

// controlPlane is a real go-control-plane ADS server on loopback.
type controlPlane struct {
	t     testing.TB
	cache cachev3.SnapshotCache
	addr  string
	srv   *grpc.Server

	mu       sync.Mutex
	requests []*discoveryv3.DiscoveryRequest

	// As istiod with meshConfig.accessLogFile /dev/stdout (the lab's
	// default), set gives every connection manager and tcp_proxy
	// without an access_log one to /dev/stdout, in logFormat (Istio's
	// default when empty; a newline is added, as Istio adds one), unless
	// rawListeners.
	logFormat    string
	rawListeners bool
}

func newBenchControlPlane(t testing.TB) *controlPlane { return newControlPlane(t, "127.0.0.1:0") }

func newControlPlane(t testing.TB, addr string) *controlPlane {
	t.Helper()
	cp := &controlPlane{t: t, cache: cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)}
	cp.start(addr)
	return cp
}

func (cp *controlPlane) start(addr string) {
	cp.t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		cp.t.Fatalf("listen control plane: %v", err)
	}
	cp.addr = ln.Addr().String()
	cb := serverv3.CallbackFuncs{StreamRequestFunc: func(_ int64, r *discoveryv3.DiscoveryRequest) error {
		cp.mu.Lock()
		cp.requests = append(cp.requests, proto.Clone(r).(*discoveryv3.DiscoveryRequest))
		cp.mu.Unlock()
		return nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	srv := serverv3.NewServer(ctx, cp.cache, cb)
	cp.srv = grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(cp.srv, srv)
	go cp.srv.Serve(ln)
	s := cp.srv
	cp.t.Cleanup(func() { s.Stop(); cancel() })
}

func (cp *controlPlane) stop() { cp.srv.Stop() }

func (cp *controlPlane) set(version string, res ...types.Resource) {
	cp.t.Helper()
	m := map[string][]types.Resource{}
	for _, r := range res {
		var typ string
		switch l := r.(type) {
		case *listenerv3.Listener:
			typ = resourcev3.ListenerType
			if !cp.rawListeners {
				r = withAccessLog(cp.t, l, cp.logFormat)
			}
		case *clusterv3.Cluster:
			typ = resourcev3.ClusterType
		case *routev3.RouteConfiguration:
			typ = resourcev3.RouteType
		case *endpointv3.ClusterLoadAssignment:
			typ = resourcev3.EndpointType
		case *tlsv3.Secret:
			typ = resourcev3.SecretType
		}
		m[typ] = append(m[typ], r)
	}
	snap, err := cachev3.NewSnapshot(version, m)
	if err != nil {
		cp.t.Fatal(err)
	}
	if err := cp.cache.SetSnapshot(context.Background(), testNode, snap); err != nil {
		cp.t.Fatal(err)
	}
}

// nacked reports whether the proxy rejected version of typeURL.
func (cp *controlPlane) nacked(typeURL string) *discoveryv3.DiscoveryRequest {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	for _, r := range cp.requests {
		if r.GetTypeUrl() == typeURL && r.GetErrorDetail() != nil {
			return r
		}
	}
	return nil
}

// lastVersion is the version the proxy last reported for typeURL.
func (cp *controlPlane) lastVersion(typeURL string) string {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	for i := len(cp.requests) - 1; i >= 0; i-- {
		if r := cp.requests[i]; r.GetTypeUrl() == typeURL && r.GetResponseNonce() != "" {
			return r.GetVersionInfo()
		}
	}
	return ""
}

type testProxy struct {
	*Proxy
	client *xdsclient.Client
}

// startProxy runs a proxy fed by cp until the test ends.
func startProxy(t testing.TB, cpAddr string, origDst func(*net.TCPConn) (netip.AddrPort, error)) *testProxy {
	t.Helper()
	return runProxy(t, cpAddr, Config{OriginalDst: origDst})
}

// runProxy runs a proxy with cfg (its logger, drain timeout and, unless
// set, node filled in) and an xDS client fed by cp, until the test ends.
func runProxy(t testing.TB, cpAddr string, cfg Config) *testProxy {
	t.Helper()
	if cfg.Node == nil {
		cfg.Node = &corev3.Node{Id: testNode}
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.DrainTimeout = 2 * time.Second
	p := New(cfg)
	c := xdsclient.New(xdsclient.Config{
		Address: cpAddr, Node: &corev3.Node{Id: testNode},
		Check: p.Check, OnUpdate: p.Apply,
		Logger:     slog.New(slog.DiscardHandler),
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.Run(ctx) }()
	go func() { defer wg.Done(); p.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return &testProxy{Proxy: p, client: c}
}

// waitFor polls cond until it holds, failing the test after a generous bound.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 1000; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func (tp *testProxy) waitVersion(t testing.TB, typeURL, v string) {
	t.Helper()
	waitFor(t, typeURL+" version "+v, func() bool { return tp.Snapshot().Versions[typeURL] == v })
}

func (tp *testProxy) addr(t testing.TB, listener string) string {
	t.Helper()
	var a net.Addr
	waitFor(t, "listener "+listener, func() bool {
		var ok bool
		a, ok = tp.ListenerAddr(listener)
		return ok
	})
	return a.String()
}

// backend is an HTTP server on a loopback address answering with its name
// and echoing what it saw in headers.
func backend(t testing.TB, ip, name string) (*httptest.Server, netip.AddrPort) {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatalf("listen backend: %v", err)
	}
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		w.Header().Set("X-Saw-Request-Id", r.Header.Get("X-Request-Id"))
		w.Header().Set("X-Saw-Proto", r.Header.Get("X-Forwarded-Proto"))
		w.Header().Set("X-Saw-Host", r.Host)
		if d := r.URL.Query().Get("sleep"); d != "" {
			<-r.Context().Done()
			return
		}
		io.WriteString(w, name)
	}))
	s.Listener.Close()
	s.Listener = ln
	s.Start()
	t.Cleanup(s.Close)
	return s, netip.MustParseAddrPort(ln.Addr().String())
}

// handlerBackend serves h on a loopback address.
func handlerBackend(t testing.TB, ip string, h http.HandlerFunc) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatalf("listen backend: %v", err)
	}
	s := httptest.NewUnstartedServer(h)
	s.Listener.Close()
	s.Listener = ln
	s.Start()
	t.Cleanup(s.Close)
	return netip.MustParseAddrPort(ln.Addr().String())
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t testing.TB) netip.AddrPort {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	return a
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

func sockAddr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func ads() *corev3.ConfigSource {
	return &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V3, ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}
}

func hcmFilter(h *hcmv3.HttpConnectionManager) *listenerv3.Filter {
	h.HttpFilters = []*hcmv3.HttpFilter{{Name: wellknown.Router, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}}}
	return &listenerv3.Filter{Name: wellknown.HTTPConnectionManager, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(h)}}
}

func rdsFilter(routes string) *listenerv3.Filter {
	return hcmFilter(&hcmv3.HttpConnectionManager{StatPrefix: "outbound_0.0.0.0_" + routes,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: ads(), RouteConfigName: routes}}})
}

func tcpFilter(cluster string) *listenerv3.Filter {
	return &listenerv3.Filter{Name: wellknown.TCPProxy, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(
		&tcpv3.TcpProxy{StatPrefix: cluster, ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: cluster}})}}
}

// gatewayListener is a bound listener on loopback (port chosen by the
// kernel) under the gateway's listener name.
func gatewayListener(name, routes string) *listenerv3.Listener {
	return &listenerv3.Listener{Name: name, Address: sockAddr("127.0.0.1", 0),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{rdsFilter(routes)}}}}
}

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{Name: name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads(), ServiceName: name},
		ConnectTimeout:   durationpb.New(time.Second), LbPolicy: clusterv3.Cluster_ROUND_ROBIN}
}

func origDstCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{Name: name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		ConnectTimeout: durationpb.New(time.Second), LbPolicy: clusterv3.Cluster_CLUSTER_PROVIDED}
}

func staticCluster(name string, eps ...netip.AddrPort) *clusterv3.Cluster {
	c := &clusterv3.Cluster{Name: name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout: durationpb.New(time.Second), LbPolicy: clusterv3.Cluster_ROUND_ROBIN}
	if len(eps) > 0 {
		c.LoadAssignment = cla(name, eps...)
	}
	return c
}

func cla(cluster string, eps ...netip.AddrPort) *endpointv3.ClusterLoadAssignment {
	var lbs []*endpointv3.LbEndpoint
	for _, e := range eps {
		lbs = append(lbs, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: sockAddr(e.Addr().String(), uint32(e.Port()))}}, HealthStatus: corev3.HealthStatus_HEALTHY})
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: cluster, Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}}}
}

func prefix(p string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: p}}
}

func toCluster(c string) *routev3.Route_Route {
	return &routev3.Route_Route{Route: &routev3.RouteAction{Timeout: durationpb.New(0), ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: c}}}
}

func weighted(ws map[string]uint32) *routev3.Route_Route {
	wc := &routev3.WeightedCluster{}
	var total uint32
	for _, n := range []string{"a", "b", "c"} {
		if w, ok := ws[n]; ok {
			wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{Name: n, Weight: wrapperspb.UInt32(w)})
			total += w
		}
	}
	wc.TotalWeight = wrapperspb.UInt32(total) //nolint:staticcheck // SA1019: the proxy must keep honouring it, as Envoy does
	return &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}}}
}

// get sends a request through addr with the given Host.
func get(t testing.TB, c *http.Client, addr, host, path string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s%s (Host %s): %v", addr, path, host, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func port(a netip.AddrPort) string { return strconv.Itoa(int(a.Port())) }

// withAccessLog is a copy of l whose connection managers and tcp_proxies
// without access_log write to /dev/stdout in format (Istio's default when
// empty).
func withAccessLog(t testing.TB, l *listenerv3.Listener, format string) *listenerv3.Listener {
	t.Helper()
	if format == "" {
		format = istioTextFormat
	} else if !strings.HasSuffix(format, "\n") {
		format += "\n"
	}
	entry := []*accesslogv3.AccessLog{{Name: fileAccessLogName, ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(&filev3.FileAccessLog{
		Path: stdoutPath, AccessLogFormat: &filev3.FileAccessLog_LogFormat{LogFormat: &corev3.SubstitutionFormatString{
			Format: &corev3.SubstitutionFormatString_TextFormatSource{TextFormatSource: &corev3.DataSource{
				Specifier: &corev3.DataSource_InlineString{InlineString: format}}}}}})}}}
	l = proto.Clone(l).(*listenerv3.Listener)
	chains := append([]*listenerv3.FilterChain{}, l.GetFilterChains()...)
	if l.GetDefaultFilterChain() != nil {
		chains = append(chains, l.GetDefaultFilterChain())
	}
	for _, fc := range chains {
		for _, f := range fc.GetFilters() {
			tc := f.GetTypedConfig()
			switch {
			case tc.MessageIs((*hcmv3.HttpConnectionManager)(nil)):
				var h hcmv3.HttpConnectionManager
				if err := tc.UnmarshalTo(&h); err != nil {
					t.Fatal(err)
				}
				if len(h.AccessLog) == 0 {
					h.AccessLog = entry
					f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(&h)}
				}
			case tc.MessageIs((*tcpv3.TcpProxy)(nil)):
				var tp tcpv3.TcpProxy
				if err := tc.UnmarshalTo(&tp); err != nil {
					t.Fatal(err)
				}
				if len(tp.AccessLog) == 0 {
					tp.AccessLog = entry
					f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(&tp)}
				}
			}
		}
	}
	return l
}
