package proxy

import (
	"bufio"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	celv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/filters/cel/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/durationpb"
	statsv1 "istio.io/api/envoy/extensions/stats"

	"github.com/meshlab/meshlab/dataplane/xdsclient"
)

// celLog is an access_log entry with the Telemetry API's filter, as
// istiod writes it.
func celLog(al *accesslogv3.AccessLog, expr string) *accesslogv3.AccessLog {
	al.Filter = &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ExtensionFilter{ExtensionFilter: &accesslogv3.ExtensionFilter{
		Name: celFilterName, ConfigType: &accesslogv3.ExtensionFilter_TypedConfig{TypedConfig: mustAny(&celv3.ExpressionFilter{Expression: expr})}}}}
	return al
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Fields(strings.ReplaceAll(string(b), " ", "_"))
}

// TestCELAccessLogFilterHTTP: each access_log entry of a connection
// manager writes only the requests its expression is true for; an entry
// without a filter writes all; an expression on an absent header is
// false, not an error that logs.
func TestCELAccessLogFilterHTTP(t *testing.T) {
	statuses := map[string]int{"/ok": 200, "/missing": 404, "/api/items": 200, "/api/broken": 503}
	be := handlerBackend(t, "127.0.0.2", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(statuses[r.URL.Path]) })
	routes := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "all", Domains: []string{"*"},
		Routes: []*routev3.Route{{Name: "default", Match: prefix("/"), Action: toCluster("reviews")}}}}}
	dir := t.TempDir()
	format := textFormat("%REQ(:PATH)% %RESPONSE_CODE%\n")
	tests := []struct {
		expr string
		want []string
	}{
		{"response.code >= 400", []string{"/missing_404", "/api/broken_503"}},
		{"request.headers['x-debug'] == 'true'", []string{"/api/items_200"}},
		{"request.url_path.startsWith('/api') && xds.cluster_name == 'reviews'", []string{"/api/items_200", "/api/broken_503"}},
		{"!connection.mtls && source.address.startsWith('127.0.0.1:') && xds.route_name == 'default'", []string{"/ok_200", "/missing_404", "/api/items_200", "/api/broken_503"}},
		{"connection.mtls", nil},
		{"response.grpc_status == 0", nil}, // no grpc-status: absent, an error
		{"response.code", nil},             // not a bool
		{"", []string{"/ok_200", "/missing_404", "/api/items_200", "/api/broken_503"}}, // no filter
	}
	var logs []*accesslogv3.AccessLog
	for i, tt := range tests {
		al := fileLog(filepath.Join(dir, string(rune('a'+i))+".log"), format)
		if tt.expr != "" {
			al = celLog(al, tt.expr)
		}
		logs = append(logs, al)
	}
	cp := newControlPlane(t, "127.0.0.1:0")
	cp.rawListeners = true
	p := runProxy(t, cp.addr, Config{AccessLog: &syncBuffer{}})
	cp.set("1", loggedListener("gw", logs...), routes, staticCluster("reviews", be))
	addr := p.addr(t, "gw")
	for _, path := range []string{"/ok", "/missing", "/api/items", "/api/broken"} {
		var hdr []string
		if path == "/api/items" {
			hdr = []string{"X-Debug", "true"}
		}
		if code, _, _ := get(t, http.DefaultClient, addr, "reviews:9080", path, hdr...); code != statuses[path] {
			t.Fatalf("%s: %d", path, code)
		}
	}
	p.flushLogs()
	for i, tt := range tests {
		if got := readLines(t, filepath.Join(dir, string(rune('a'+i))+".log")); !slices.Equal(got, tt.want) {
			t.Errorf("filter %q logged %q, want %q", tt.expr, got, tt.want)
		}
	}
}

// TestCELAccessLogFilterTCP: a tcp_proxy's filters see the connection's
// attributes (cluster, bytes, addresses); request.* and response.code are
// absent on TCP, so filters on them never log.
func TestCELAccessLogFilterTCP(t *testing.T) {
	const cluster = "outbound|6379||redis.default.svc.cluster.local"
	dir := t.TempDir()
	tests := []struct {
		expr string
		want int
	}{
		{"xds.cluster_name == '" + cluster + "' && request.size == 5 && response.size == 5", 1},
		{"upstream.address.startsWith('127.0.0.4:') && destination.address.startsWith('127.0.0.1:')", 1},
		{"response.code >= 400", 0},
		{"request.headers['x-debug'] == 'true'", 0},
		{"connection.mtls", 0},
		{"response.flags != 0", 0},
	}
	var logs []*accesslogv3.AccessLog
	for i, tt := range tests {
		logs = append(logs, celLog(fileLog(filepath.Join(dir, string(rune('a'+i))+".log"), textFormat("%UPSTREAM_CLUSTER% %BYTES_RECEIVED%\n")), tt.expr))
	}
	cp := newControlPlane(t, "127.0.0.1:0")
	cp.rawListeners = true
	p := runProxy(t, cp.addr, Config{AccessLog: &syncBuffer{}})
	tp := &tcpv3.TcpProxy{StatPrefix: cluster, ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: cluster}, AccessLog: logs}
	cp.set("1", &listenerv3.Listener{Name: "redis", Address: sockAddr("127.0.0.1", 0),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{Name: wellknown.TCPProxy,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(tp)}}}}}},
		staticCluster(cluster, lineEcho(t, "127.0.0.4")))
	c, err := net.Dial("tcp", p.addr(t, "redis"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("PING\n")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if got, err := bufio.NewReader(c).ReadString('\n'); got != "PING\n" {
		t.Fatalf("echo %q, %v", got, err)
	}
	c.Close()
	waitFor(t, "the first filter's line", func() bool { p.flushLogs(); return len(readLines(t, filepath.Join(dir, "a.log"))) == 1 })
	for i, tt := range tests {
		got := readLines(t, filepath.Join(dir, string(rune('a'+i))+".log"))
		if len(got) != tt.want {
			t.Errorf("filter %q logged %q, want %d line(s)", tt.expr, got, tt.want)
		}
		if len(got) == 1 && got[0] != cluster+"_5" {
			t.Errorf("filter %q line %q", tt.expr, got[0])
		}
	}
}

// TestCELOverMTLS: on a PERMISSIVE inbound listener, connection.mtls is
// true for the request that came over the mesh's mTLS and false for the
// plaintext one, in an access log filter and in a metric dimension; the
// proxy's Node is xds.node (and node, in Istio's stats filter).
func TestCELOverMTLS(t *testing.T) {
	var serverLog syncBuffer
	m := newMTLSMesh(t, mtlsOpts{mode: "PERMISSIVE", serverLog: &serverLog})
	pc := &statsv1.PluginConfig{Metrics: []*statsv1.MetricConfig{{Name: "requests_total", Dimensions: map[string]string{
		"peer_mtls": "connection.mtls ? 'mtls:' + connection.uri_san_peer_certificate : 'plaintext'",
		"fast_mtls": "connection.mtls",
		"workload":  "node.metadata['WORKLOAD_NAME'] + '/' + xds.node.metadata['NAMESPACE']",
	}}}}
	hcm := inboundHCM("inbound|9080||", statsHTTPFilter(pc))
	var h hcmv3.HttpConnectionManager
	if err := hcm.GetTypedConfig().UnmarshalTo(&h); err != nil {
		t.Fatal(err)
	}
	h.AccessLog = []*accesslogv3.AccessLog{celLog(fileLog(stdoutPath, textFormat("%REQ(:PATH)% peer=%DOWNSTREAM_PEER_URI_SAN%\n")), "connection.mtls && connection.tls_version == 'TLSv1.3' && xds.node.id.startsWith('sidecar~')")}
	hcm.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(&h)}
	m.setServer("2", "PERMISSIVE", hcm)
	m.server.waitVersion(t, xdsclient.ListenerType, "2")

	if code, _, _ := get(t, http.DefaultClient, m.out, "reviews:9080", "/via-mesh"); code != 200 {
		t.Fatalf("mesh request: %d", code)
	}
	if code, _, _ := get(t, http.DefaultClient, m.in.String(), "reviews:9080", "/plaintext"); code != 200 {
		t.Fatalf("plaintext request: %d", code)
	}
	m.server.flushLogs()
	if got, want := serverLog.String(), "/via-mesh peer="+spiffeProductpage+"\n"; got != want {
		t.Errorf("server log %q, want only the mTLS request: %q", got, want)
	}
	for _, tt := range []struct {
		labels map[string]string
	}{
		{map[string]string{"reporter": "destination", "peer_mtls": "mtls:" + spiffeProductpage, "fast_mtls": "true", "workload": "reviews-v2/default"}},
		{map[string]string{"reporter": "destination", "peer_mtls": "plaintext", "fast_mtls": "false", "workload": "reviews-v2/default"}},
	} {
		if n := sample(t, m.server, "istio_requests_total", tt.labels); n != 1 {
			t.Errorf("requests with %v: %v, want 1", tt.labels, n)
		}
	}
}

// TestCELDimensions: metric dimensions that are whole CEL expressions,
// evaluated per request as Istio's stats filter does; an expression that
// fails (an absent header) labels the series "unknown". A TCP chain's
// dimension reads the connection's attributes.
func TestCELDimensions(t *testing.T) {
	statuses := map[string]int{"/ok": 200, "/missing": 404, "/api/items": 200, "/api/broken": 503}
	be := handlerBackend(t, "127.0.0.2", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(statuses[r.URL.Path]) })
	const cluster = "outbound|9080||reviews.default.svc.cluster.local"
	routes := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "all", Domains: []string{"*"},
		Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster(cluster)}}}}}
	pc := &statsv1.PluginConfig{Metrics: []*statsv1.MetricConfig{{Name: "requests_total", Dimensions: map[string]string{
		"status_class": "response.code >= 500 ? '5xx' : response.code >= 400 ? '4xx' : 'ok'",
		"api":          "request.url_path.startsWith('/api')",
		"debug":        "request.headers['x-debug'] + '!'",
		"cluster":      "xds.cluster_name",
	}}}}
	const tcpCluster = "outbound|6379||redis.default.svc.cluster.local"
	tcpPC := &statsv1.PluginConfig{TcpReportingDuration: durationpb.New(100 * time.Millisecond), Metrics: []*statsv1.MetricConfig{{
		Name: "tcp_connections_opened_total", Dimensions: map[string]string{"target": "xds.cluster_name.endsWith('|redis.default.svc.cluster.local') ? 'redis' : 'other'", "host": "request.host"}}}}
	cp := newControlPlane(t, "127.0.0.1:0")
	p := startProxy(t, cp.addr, nil)
	cp.set("1", filteredListener("gw", []*hcmv3.HttpFilter{statsHTTPFilter(pc)}), routes, staticCluster(cluster, be),
		&listenerv3.Listener{Name: "redis", Address: sockAddr("127.0.0.1", 0),
			FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{statsNetFilter(tcpPC), tcpFilter(tcpCluster)}}}},
		staticCluster(tcpCluster, lineEcho(t, "127.0.0.4")))
	addr := p.addr(t, "gw")
	for _, path := range []string{"/ok", "/missing", "/api/items", "/api/broken", "/api/items"} {
		var hdr []string
		if path == "/missing" {
			hdr = []string{"X-Debug", "yes"}
		}
		if code, _, _ := get(t, http.DefaultClient, addr, "reviews:9080", path, hdr...); code != statuses[path] {
			t.Fatalf("%s: %d", path, code)
		}
	}
	for _, tt := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"status_class": "ok", "api": "false", "debug": "unknown", "cluster": cluster}, 1},
		{map[string]string{"status_class": "4xx", "api": "false", "debug": "yes!", "cluster": cluster}, 1},
		{map[string]string{"status_class": "ok", "api": "true", "debug": "unknown", "cluster": cluster}, 2},
		{map[string]string{"status_class": "5xx", "api": "true", "debug": "unknown", "cluster": cluster, "response_code": "503"}, 1},
	} {
		if n := sample(t, p, "istio_requests_total", tt.labels); n != tt.want {
			t.Errorf("requests with %v: %v, want %v", tt.labels, n, tt.want)
		}
	}
	c, err := net.Dial("tcp", p.addr(t, "redis"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("PING\n")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if got, err := bufio.NewReader(c).ReadString('\n'); got != "PING\n" {
		t.Fatalf("echo %q, %v", got, err)
	}
	waitFor(t, "the TCP open with its dimensions", func() bool {
		return sample(t, p, "istio_tcp_connections_opened_total", map[string]string{"target": "redis", "host": "unknown"}) == 1
	})
}
