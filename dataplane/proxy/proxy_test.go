package proxy

import (
	"encoding/json"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlab/meshlab/dataplane/xdsclient"
)

// gatewayConfig is a gateway's configuration with backends a, b, c:
// reviews.example.com routes by path and header, split.example.com splits
// 80/20, empty.example.com has no endpoints, down.example.com refuses.
func gatewayConfig(t *testing.T, a, b, c, down netip.AddrPort) []types.Resource {
	rc := &routev3.RouteConfiguration{Name: "http.8080", VirtualHosts: []*routev3.VirtualHost{
		{Name: "reviews", Domains: []string{"reviews.example.com", "reviews.example.com:8080"}, Routes: []*routev3.Route{
			{Name: "v2-header", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
				Headers: []*routev3.HeaderMatcher{{Name: "end-user", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
					StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "jason"}}}}}},
				Action: toCluster("b")},
			{Name: "exact", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/exact"}}, Action: toCluster("c")},
			{Name: "regex", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/re/[0-9]+"}}}, Action: toCluster("c")},
			{Name: "api", Match: prefix("/api"), Action: toCluster("b")},
			{Name: "default", Match: prefix("/"), Action: toCluster("a")},
		}},
		{Name: "wild", Domains: []string{"*.wild.example.com"}, Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster("c")}}},
		{Name: "split", Domains: []string{"split.example.com"}, Routes: []*routev3.Route{{Match: prefix("/"), Action: weighted(map[string]uint32{"a": 80, "b": 20})}}},
		{Name: "empty", Domains: []string{"empty.example.com"}, Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster("empty")}}},
		{Name: "missing", Domains: []string{"missing.example.com"}, Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster("nope")}}},
		{Name: "down", Domains: []string{"down.example.com"}, Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster("down")}}},
		{Name: "slow", Domains: []string{"slow.example.com"}, Routes: []*routev3.Route{{Match: prefix("/"), Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			Timeout: durationpb.New(50e6), ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "a"}}}}}},
	}}
	return []types.Resource{
		gatewayListener("0.0.0.0_8080", "http.8080"), rc,
		edsCluster("a"), edsCluster("b"), edsCluster("c"), edsCluster("empty"), edsCluster("down"),
		cla("a", a), cla("b", b), cla("c", c), cla("empty"), cla("down", down),
	}
}

func TestGatewayRouting(t *testing.T) {
	_, a := backend(t, "127.0.0.2", "a")
	_, b := backend(t, "127.0.0.3", "b")
	_, c := backend(t, "127.0.0.4", "c")
	cp := newControlPlane(t, "127.0.0.1:0")
	cp.set("1", gatewayConfig(t, a, b, c, closedPort(t))...)
	p := startProxy(t, cp.addr, nil)
	addr := p.addr(t, "0.0.0.0_8080")
	client := &http.Client{}

	tests := []struct {
		name, host, path string
		hdr              []string
		code             int
		body             string
	}{
		{"default route", "reviews.example.com", "/", nil, 200, "a"},
		{"port-qualified domain", "reviews.example.com:8080", "/", nil, 200, "a"},
		{"host is case-insensitive", "Reviews.Example.com", "/", nil, 200, "a"},
		{"prefix", "reviews.example.com", "/api/x", nil, 200, "b"},
		{"exact path", "reviews.example.com", "/exact", nil, 200, "c"},
		{"exact path only", "reviews.example.com", "/exact/more", nil, 200, "a"},
		{"regex ignores query", "reviews.example.com", "/re/42?x=1", nil, 200, "c"},
		{"regex is anchored", "reviews.example.com", "/re/42x", nil, 200, "a"},
		{"header match", "reviews.example.com", "/", []string{"end-user", "jason"}, 200, "b"},
		{"header mismatch", "reviews.example.com", "/", []string{"end-user", "bob"}, 200, "a"},
		{"suffix wildcard", "x.wild.example.com", "/", nil, 200, "c"},
		{"no virtual host", "other.example.com", "/", nil, 404, ""},
		{"no endpoints", "empty.example.com", "/", nil, 503, "no healthy upstream"},
		{"no cluster", "missing.example.com", "/", nil, 503, "no healthy upstream"},
		{"connect failure", "down.example.com", "/", nil, 503, "upstream connect error or disconnect/reset before headers. reset reason: connection failure"},
		{"route timeout", "slow.example.com", "/?sleep=1", nil, 504, "upstream request timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body, _ := get(t, client, addr, tt.host, tt.path, tt.hdr...)
			if code != tt.code || body != tt.body {
				t.Errorf("got %d %q, want %d %q", code, body, tt.code, tt.body)
			}
		})
	}

	t.Run("headers added", func(t *testing.T) {
		_, _, h := get(t, client, addr, "reviews.example.com", "/")
		if id := h.Get("X-Saw-Request-Id"); len(id) != 36 || id[14] != '4' {
			t.Errorf("x-request-id at backend = %q, want a UUID v4", id)
		}
		if got := h.Get("X-Saw-Proto"); got != "http" {
			t.Errorf("x-forwarded-proto = %q, want http", got)
		}
		if got := h.Get("X-Saw-Host"); got != "reviews.example.com" {
			t.Errorf("host at backend = %q", got)
		}
		if h.Get("X-Envoy-Upstream-Service-Time") == "" {
			t.Error("no x-envoy-upstream-service-time")
		}
	})

	t.Run("weighted split", func(t *testing.T) {
		counts := map[string]int{}
		const n = 1000
		for range n {
			_, body, _ := get(t, client, addr, "split.example.com", "/")
			counts[body]++
		}
		if frac := float64(counts["a"]) / n; math.Abs(frac-0.8) > 0.06 {
			t.Errorf("split a/b = %v, want 80/20 ± 6%%", counts)
		}
		if counts["a"]+counts["b"] != n {
			t.Errorf("split answered by others: %v", counts)
		}
	})

	t.Run("h2c", func(t *testing.T) {
		tr := &http.Transport{Protocols: new(http.Protocols)}
		tr.Protocols.SetUnencryptedHTTP2(true)
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("GET", "http://"+addr+"/api", nil)
		req.Host = "reviews.example.com"
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.ProtoMajor != 2 || string(b) != "b" {
			t.Errorf("got %s %q, want HTTP/2 from b", resp.Proto, b)
		}
	})
}

func TestNACKKeepsLastGoodConfig(t *testing.T) {
	_, a := backend(t, "127.0.0.2", "a")
	cp := newControlPlane(t, "127.0.0.1:0")
	good := &routev3.RouteConfiguration{Name: "http.8080", VirtualHosts: []*routev3.VirtualHost{
		{Name: "any", Domains: []string{"*"}, Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster("a")}}}}}
	cp.set("1", gatewayListener("0.0.0.0_8080", "http.8080"), good, edsCluster("a"), cla("a", a))
	p := startProxy(t, cp.addr, nil)
	addr := p.addr(t, "0.0.0.0_8080")
	p.waitVersion(t, xdsclient.RouteType, "1")
	if v := cp.lastVersion(xdsclient.RouteType); v != "1" {
		t.Fatalf("ACKed route version %q, want 1", v)
	}

	// Valid protobuf, but a regex RE2 cannot compile: the proxy's own check.
	bad := &routev3.RouteConfiguration{Name: "http.8080", VirtualHosts: []*routev3.VirtualHost{
		{Name: "any", Domains: []string{"*"}, Routes: []*routev3.Route{{Match: &routev3.RouteMatch{
			PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "(unclosed"}}}, Action: toCluster("a")}}}}}
	cp.set("2", gatewayListener("0.0.0.0_8080", "http.8080"), bad, edsCluster("a"), cla("a", a))
	waitFor(t, "NACK of RDS", func() bool { return cp.nacked(xdsclient.RouteType) != nil })
	nack := cp.nacked(xdsclient.RouteType)
	if nack.GetVersionInfo() != "1" || !strings.Contains(nack.GetErrorDetail().GetMessage(), "unclosed") {
		t.Errorf("NACK = version %q detail %q, want version 1 and the regex error", nack.GetVersionInfo(), nack.GetErrorDetail().GetMessage())
	}
	if code, body, _ := get(t, http.DefaultClient, addr, "x", "/"); code != 200 || body != "a" {
		t.Errorf("after NACK got %d %q, want the last good config serving", code, body)
	}
	if v := p.Snapshot().Versions[xdsclient.RouteType]; v != "1" {
		t.Errorf("route version = %q, want 1", v)
	}

	// A listener that fails Validate() is NACKed too.
	cp.set("3", &listenerv3.Listener{Name: "0.0.0.0_8080"}, good, edsCluster("a"), cla("a", a))
	waitFor(t, "NACK of LDS", func() bool { return cp.nacked(xdsclient.ListenerType) != nil })
	if code, _, _ := get(t, http.DefaultClient, addr, "x", "/"); code != 200 {
		t.Errorf("after LDS NACK got %d", code)
	}
}

func TestControlPlaneRestart(t *testing.T) {
	_, a := backend(t, "127.0.0.2", "a")
	_, b := backend(t, "127.0.0.3", "b")
	cp := newControlPlane(t, "127.0.0.1:0")
	routes := func(cluster string) *routev3.RouteConfiguration {
		return &routev3.RouteConfiguration{Name: "http.8080", VirtualHosts: []*routev3.VirtualHost{
			{Name: "any", Domains: []string{"*"}, Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster(cluster)}}}}}
	}
	cp.set("1", gatewayListener("0.0.0.0_8080", "http.8080"), routes("a"), edsCluster("a"), edsCluster("b"), cla("a", a), cla("b", b))
	p := startProxy(t, cp.addr, nil)
	addr := p.addr(t, "0.0.0.0_8080")
	p.waitVersion(t, xdsclient.RouteType, "1")

	cp.stop()
	if code, body, _ := get(t, http.DefaultClient, addr, "x", "/"); code != 200 || body != "a" {
		t.Fatalf("with the control plane gone got %d %q, want a", code, body)
	}
	cp2 := newControlPlane(t, cp.addr)
	cp2.set("2", gatewayListener("0.0.0.0_8080", "http.8080"), routes("b"), edsCluster("a"), edsCluster("b"), cla("a", a), cla("b", b))
	p.waitVersion(t, xdsclient.RouteType, "2")
	if code, body, _ := get(t, http.DefaultClient, addr, "x", "/"); code != 200 || body != "b" {
		t.Errorf("after the control plane returned got %d %q, want b", code, body)
	}
}

func TestHitlessSwap(t *testing.T) {
	_, a := backend(t, "127.0.0.2", "a")
	_, b := backend(t, "127.0.0.3", "b")
	cp := newControlPlane(t, "127.0.0.1:0")
	config := func(v, cluster string) {
		cp.set(v, gatewayListener("0.0.0.0_8080", "http.8080"),
			&routev3.RouteConfiguration{Name: "http.8080", VirtualHosts: []*routev3.VirtualHost{
				{Name: "any", Domains: []string{"*"}, Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster(cluster)}}}}},
			edsCluster("a"), edsCluster("b"), cla("a", a), cla("b", b))
	}
	config("0", "a")
	p := startProxy(t, cp.addr, nil)
	addr := p.addr(t, "0.0.0.0_8080")
	p.waitVersion(t, xdsclient.RouteType, "0")

	var failures, total atomic.Int64
	seen := sync.Map{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := http.Get("http://" + addr + "/")
				total.Add(1)
				if err != nil {
					failures.Add(1)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failures.Add(1)
				}
				seen.Store(string(body), true)
			}
		}()
	}
	for i := 1; i <= 20; i++ {
		v := string(rune('0'+i%10)) + "-" + string(rune('a'+i))
		config(v, []string{"a", "b"}[i%2])
		p.waitVersion(t, xdsclient.RouteType, v)
	}
	close(stop)
	wg.Wait()
	if failures.Load() > 0 {
		t.Errorf("%d of %d requests failed while routes changed", failures.Load(), total.Load())
	}
	for _, want := range []string{"a", "b"} {
		if _, ok := seen.Load(want); !ok {
			t.Errorf("no response from %s during the swaps", want)
		}
	}
}

func TestConfigDumpAndReadiness(t *testing.T) {
	_, a := backend(t, "127.0.0.2", "a")
	cp := newControlPlane(t, "127.0.0.1:0")
	p := startProxy(t, cp.addr, nil)
	admin := httptest.NewServer(p.AdminHandler())
	defer admin.Close()
	ready := httptest.NewServer(p.ReadyHandler())
	defer ready.Close()
	if resp, err := http.Get(ready.URL + "/healthz/ready"); err != nil || resp.StatusCode != 503 {
		t.Fatalf("ready before config: %v %v, want 503", resp.StatusCode, err)
	}
	cp.set("7", gatewayListener("0.0.0.0_8080", "http.8080"),
		&routev3.RouteConfiguration{Name: "http.8080", VirtualHosts: []*routev3.VirtualHost{
			{Name: "any", Domains: []string{"*"}, Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster("a")}}}}},
		edsCluster("a"), cla("a", a))
	p.waitVersion(t, xdsclient.EndpointType, "7")
	p.waitVersion(t, xdsclient.RouteType, "7")
	if resp, err := http.Get(ready.URL + "/healthz/ready"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("ready after config: %v %v, want 200", resp.StatusCode, err)
	}

	resp, err := http.Get(admin.URL + "/config_dump")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var dump adminv3.ConfigDump
	if err := protojson.Unmarshal(raw, &dump); err != nil {
		t.Fatalf("config_dump is not an envoy.admin.v3.ConfigDump: %v", err)
	}
	var got []string
	for _, c := range dump.GetConfigs() {
		m, err := c.UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		switch d := m.(type) {
		case *adminv3.ListenersConfigDump:
			got = append(got, "listeners "+d.GetVersionInfo()+" "+d.GetDynamicListeners()[0].GetName())
		case *adminv3.ClustersConfigDump:
			got = append(got, "clusters "+d.GetVersionInfo()+" "+d.GetDynamicActiveClusters()[0].GetVersionInfo())
		case *adminv3.RoutesConfigDump:
			got = append(got, "routes "+d.GetDynamicRouteConfigs()[0].GetVersionInfo())
		case *adminv3.EndpointsConfigDump:
			got = append(got, "endpoints "+d.GetDynamicEndpointConfigs()[0].GetVersionInfo())
		case *adminv3.BootstrapConfigDump:
			got = append(got, "bootstrap "+d.GetBootstrap().GetNode().GetId())
		}
	}
	want := "bootstrap " + testNode + ",listeners 7 0.0.0.0_8080,clusters 7 7,routes 7,endpoints 7"
	if strings.Join(got, ",") != want {
		t.Errorf("config_dump sections:\n got %s\nwant %s", strings.Join(got, ","), want)
	}
	// The JSON uses Envoy's field names, as proxy-config and Kiali read them.
	var generic map[string]any
	json.Unmarshal(raw, &generic)
	if !strings.Contains(string(raw), `"dynamic_active_clusters"`) {
		t.Errorf("no dynamic_active_clusters in dump")
	}

	for path, want := range map[string]string{"/clusters": "a::" + a.String() + "::rq_total::", "/stats/prometheus": `envoy_cluster_membership_healthy{envoy_cluster_name="a"} 1`, "/server_info": `"LIVE"`} {
		resp, err := http.Get(admin.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %q:\n%s", path, want, b)
		}
	}
}

// sidecar tests inject the original destination by the client's source
// address, so each test connection picks its destination by the loopback
// address it dials from.
type origDsts struct{ m sync.Map }

func (o *origDsts) lookup(c *net.TCPConn) (netip.AddrPort, error) {
	ra := netip.MustParseAddrPort(c.RemoteAddr().String())
	if v, ok := o.m.Load(ra.Addr()); ok {
		return v.(netip.AddrPort), nil
	}
	return netip.AddrPort{}, net.ErrClosed
}

func dialFrom(t *testing.T, src, dst string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", dst)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func clientFrom(src string) *http.Client {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// echo is a TCP server that answers what it reads, upper-cased, once the
// client half-closes.
func echo(t *testing.T, ip string) netip.AddrPort {
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := io.ReadAll(c)
				c.Write([]byte(strings.ToUpper(string(b))))
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

func TestSidecarDispatch(t *testing.T) {
	_, reviews := backend(t, "127.0.0.2", "reviews")
	_, app := backend(t, "127.0.0.1", "app")
	mysql := echo(t, "127.0.0.3")
	other := echo(t, "127.0.0.4")
	inboundTCP := echo(t, "127.0.0.1")

	cp := newControlPlane(t, "127.0.0.1:0")
	vip := netip.MustParseAddr("198.19.0.10")
	mysqlVIP := netip.MustParseAddr("198.19.0.11")
	noBind := wrapperspb.Bool(false)
	outbound := &listenerv3.Listener{Name: "virtualOutbound", Address: sockAddr("127.0.0.1", 0), UseOriginalDst: wrapperspb.Bool(true),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{tcpFilter("PassthroughCluster")}}}}
	inbound := &listenerv3.Listener{Name: "virtualInbound", Address: sockAddr("127.0.0.1", 0), UseOriginalDst: wrapperspb.Bool(true),
		FilterChains: []*listenerv3.FilterChain{
			{FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(uint32(app.Port()))},
				Filters: []*listenerv3.Filter{hcmFilter(&hcmv3.HttpConnectionManager{StatPrefix: "inbound",
					RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
						Name: "inbound|" + port(app) + "||", VirtualHosts: []*routev3.VirtualHost{{Name: "inbound", Domains: []string{"*"},
							Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster("inbound|" + port(app) + "||")}}}}}}})}},
			{Filters: []*listenerv3.Filter{tcpFilter("InboundPassthroughClusterIpv4")}},
		}}
	httpPort := &listenerv3.Listener{Name: "0.0.0.0_9080", Address: sockAddr("0.0.0.0", 9080), BindToPort: noBind,
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{rdsFilter("9080")}}}}
	tcpPort := &listenerv3.Listener{Name: "198.19.0.11_3306", Address: sockAddr("198.19.0.11", 3306), BindToPort: noBind,
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{tcpFilter("outbound|3306||mysql.default.svc.cluster.local")}}}}
	routes := &routev3.RouteConfiguration{Name: "9080", VirtualHosts: []*routev3.VirtualHost{
		{Name: "reviews.default.svc.cluster.local:9080", Domains: []string{"reviews.default.svc.cluster.local", "reviews", "reviews:9080", "198.19.0.10", "198.19.0.10:9080"},
			Routes: []*routev3.Route{{Name: "default", Match: prefix("/"), Action: toCluster("outbound|9080||reviews.default.svc.cluster.local")}}},
		{Name: "allow_any", Domains: []string{"*"}, Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster("PassthroughCluster")}}},
	}}
	cp.set("1", outbound, inbound, httpPort, tcpPort, routes,
		edsCluster("outbound|9080||reviews.default.svc.cluster.local"), cla("outbound|9080||reviews.default.svc.cluster.local", reviews),
		edsCluster("outbound|3306||mysql.default.svc.cluster.local"), cla("outbound|3306||mysql.default.svc.cluster.local", mysql),
		staticCluster("inbound|"+port(app)+"||", app),
		origDstCluster("PassthroughCluster"), origDstCluster("InboundPassthroughClusterIpv4"))

	var od origDsts
	p := startProxy(t, cp.addr, od.lookup)
	out := p.addr(t, "virtualOutbound")
	in := p.addr(t, "virtualInbound")
	p.waitVersion(t, xdsclient.RouteType, "1")
	p.waitVersion(t, xdsclient.EndpointType, "1")
	if _, ok := p.ListenerAddr("0.0.0.0_9080"); ok {
		t.Error("bind_to_port: false listener was bound")
	}

	// Source address → original destination, one per case.
	od.m.Store(netip.MustParseAddr("127.0.1.1"), netip.AddrPortFrom(vip, 9080))
	od.m.Store(netip.MustParseAddr("127.0.1.2"), netip.AddrPortFrom(mysqlVIP, 3306))
	od.m.Store(netip.MustParseAddr("127.0.1.3"), other)
	od.m.Store(netip.MustParseAddr("127.0.1.4"), netip.AddrPortFrom(netip.MustParseAddr("198.18.0.5"), app.Port()))
	od.m.Store(netip.MustParseAddr("127.0.1.5"), netip.AddrPortFrom(netip.MustParseAddr("198.18.0.5"), inboundTCP.Port()))
	od.m.Store(netip.MustParseAddr("127.0.1.6"), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), 9080))

	t.Run("outbound http by host", func(t *testing.T) {
		code, body, _ := get(t, clientFrom("127.0.1.1"), out, "reviews:9080", "/")
		if code != 200 || body != "reviews" {
			t.Errorf("got %d %q, want reviews", code, body)
		}
	})
	t.Run("outbound http unknown host passes through", func(t *testing.T) {
		// Original destination 127.0.0.2:9080 is nothing; PassthroughCluster
		// dials it and fails as Envoy would.
		code, body, _ := get(t, clientFrom("127.0.1.6"), out, "127.0.0.2:9080", "/")
		if code != 503 || !strings.Contains(body, "connection failure") {
			t.Errorf("got %d %q, want 503 connection failure", code, body)
		}
	})
	tcpCase := func(t *testing.T, src, dst string) {
		c := dialFrom(t, src, dst)
		io.WriteString(c, "hello")
		c.(*net.TCPConn).CloseWrite()
		b, err := io.ReadAll(c)
		if err != nil || string(b) != "HELLO" {
			t.Errorf("tcp through proxy got %q %v, want HELLO (half-close passed on)", b, err)
		}
	}
	t.Run("outbound tcp listener by vip", func(t *testing.T) { tcpCase(t, "127.0.1.2", out) })
	t.Run("outbound passthrough", func(t *testing.T) { tcpCase(t, "127.0.1.3", out) })
	t.Run("inbound http chain", func(t *testing.T) {
		code, body, _ := get(t, clientFrom("127.0.1.4"), in, "reviews:9080", "/")
		if code != 200 || body != "app" {
			t.Errorf("got %d %q, want app", code, body)
		}
	})
	t.Run("inbound passthrough to 127.0.0.1", func(t *testing.T) { tcpCase(t, "127.0.1.5", in) })
	t.Run("no original destination closes", func(t *testing.T) {
		c := dialFrom(t, "127.0.1.9", out)
		if b, _ := io.ReadAll(c); len(b) != 0 {
			t.Errorf("got %q, want the connection closed", b)
		}
	})
}
