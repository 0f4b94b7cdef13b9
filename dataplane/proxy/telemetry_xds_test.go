package proxy

import (
	"bufio"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	celv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/filters/cel/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	statsv1 "istio.io/api/envoy/extensions/stats"

	"github.com/meshlab/meshlab/dataplane/xdsclient"
)

// lineEcho is a loopback server that echoes each line as it comes, so a
// connection through the proxy can stay open while bytes move.
func lineEcho(t *testing.T, ip string) netip.AddrPort {
	t.Helper()
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
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

func statsNetFilter(pc *statsv1.PluginConfig) *listenerv3.Filter {
	return &listenerv3.Filter{Name: istioStatsFilter, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(pc)}}
}

func statsHTTPFilter(pc *statsv1.PluginConfig) *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: istioStatsFilter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(pc)}}
}

// TestTCPReportedWhileOpen: a long-lived TCP connection's bytes reach
// istio_tcp_*_bytes_total every tcp_reporting_duration while it lives,
// not only when it closes; a chain without istio.stats reports every 5s
// (Istio's default), so within a second its bytes are not there yet.
func TestTCPReportedWhileOpen(t *testing.T) {
	const cluster = "outbound|6379||redis.default.svc.cluster.local"
	tests := []struct {
		name     string
		filters  []*listenerv3.Filter
		reported bool
	}{
		{"istio.stats 100ms", []*listenerv3.Filter{statsNetFilter(&statsv1.PluginConfig{TcpReportingDuration: durationpb.New(100 * time.Millisecond)})}, true},
		{"no filter: 5s", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cp := newControlPlane(t, "127.0.0.1:0")
			p := startProxy(t, cp.addr, nil)
			cp.set("1", &listenerv3.Listener{Name: "redis", Address: sockAddr("127.0.0.1", 0), TrafficDirection: corev3.TrafficDirection_OUTBOUND,
				FilterChains: []*listenerv3.FilterChain{{Filters: append(tt.filters, tcpFilter(cluster))}}},
				staticCluster(cluster, lineEcho(t, "127.0.0.4")))
			c, err := net.Dial("tcp", p.addr(t, "redis"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			r := bufio.NewReader(c)
			exchange := func(msg string) {
				t.Helper()
				if _, err := c.Write([]byte(msg)); err != nil {
					t.Fatal(err)
				}
				c.SetReadDeadline(time.Now().Add(3 * time.Second))
				if got, err := r.ReadString('\n'); got != msg {
					t.Fatalf("echo %q, %v", got, err)
				}
			}
			labels := map[string]string{"reporter": "source", "destination_service": "redis.default.svc.cluster.local"}
			bytes := func() (received, sent float64) {
				return sample(t, p, "istio_tcp_received_bytes_total", labels), sample(t, p, "istio_tcp_sent_bytes_total", labels)
			}
			exchange("PING\n")
			if !tt.reported {
				time.Sleep(time.Second)
				if rcv, snt := bytes(); rcv != 0 || snt != 0 {
					t.Fatalf("within a second of a 5s interval: received %v, sent %v, want 0 until the report", rcv, snt)
				}
				c.Close()
				waitFor(t, "the bytes at close", func() bool { rcv, snt := bytes(); return rcv == 5 && snt == 5 })
				return
			}
			waitFor(t, "the first report", func() bool { rcv, snt := bytes(); return rcv == 5 && snt == 5 })
			exchange("GET key\n")
			waitFor(t, "the second report", func() bool { rcv, snt := bytes(); return rcv == 13 && snt == 13 })
			if got := sample(t, p, "istio_tcp_connections_closed_total", labels); got != 0 {
				t.Fatalf("closed = %v while the connection is open", got)
			}
			c.Close()
			waitFor(t, "the close", func() bool { return sample(t, p, "istio_tcp_connections_closed_total", labels) == 1 })
			if rcv, snt := bytes(); rcv != 13 || snt != 13 {
				t.Fatalf("after close: received %v, sent %v, want 13 each (counted once)", rcv, snt)
			}
		})
	}
}

func fileLog(path string, format *corev3.SubstitutionFormatString) *accesslogv3.AccessLog {
	fal := &filev3.FileAccessLog{Path: path}
	if format != nil {
		fal.AccessLogFormat = &filev3.FileAccessLog_LogFormat{LogFormat: format}
	}
	return &accesslogv3.AccessLog{Name: fileAccessLogName, ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(fal)}}
}

func textFormat(f string) *corev3.SubstitutionFormatString {
	return &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_TextFormatSource{TextFormatSource: &corev3.DataSource{
		Specifier: &corev3.DataSource_InlineString{InlineString: f}}}}
}

func jsonLogFormat(t *testing.T, m map[string]any) *corev3.SubstitutionFormatString {
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.SubstitutionFormatString{Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: s}}
}

// loggedListener is a gateway listener on route config "r" whose
// connection manager has logs.
func loggedListener(name string, logs ...*accesslogv3.AccessLog) *listenerv3.Listener {
	l := filteredListener(name, nil)
	var h hcmv3.HttpConnectionManager
	if err := l.FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(&h); err != nil {
		panic(err)
	}
	h.AccessLog = logs
	l.FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(&h)}
	return l
}

// TestAccessLogFromXDS: the control plane decides which listeners log,
// where and how: no entry, no line; Istio's text and JSON encodings with
// Envoy's typed JSON values; a file, reopened when the configuration
// changes (a rotated file is let go).
func TestAccessLogFromXDS(t *testing.T) {
	_, be := backend(t, "127.0.0.2", "reviews")
	routes := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "all", Domains: []string{"*"},
		Routes: []*routev3.Route{{Name: "default", Match: prefix("/"), Action: toCluster("reviews")}}}}}
	run := func(t *testing.T, l *listenerv3.Listener) (*controlPlane, *testProxy, *syncBuffer, string) {
		t.Helper()
		cp := newControlPlane(t, "127.0.0.1:0")
		cp.rawListeners = true
		stdout := &syncBuffer{}
		p := runProxy(t, cp.addr, Config{AccessLog: stdout})
		cp.set("1", l, routes, staticCluster("reviews", be))
		addr := p.addr(t, l.GetName())
		if code, _, _ := get(t, http.DefaultClient, addr, "reviews:9080", "/ratings?x=1", "User-Agent", "probe/1"); code != 200 {
			t.Fatalf("status %d", code)
		}
		p.flushLogs()
		return cp, p, stdout, addr
	}

	t.Run("no entry no line", func(t *testing.T) {
		_, _, stdout, _ := run(t, loggedListener("gw"))
		if got := stdout.String(); got != "" {
			t.Fatalf("logged %q without an access_log entry", got)
		}
	})
	t.Run("istio default text", func(t *testing.T) {
		_, _, stdout, _ := run(t, loggedListener("gw", fileLog(stdoutPath, textFormat(istioTextFormat))))
		line := stdout.String()
		if !strings.Contains(line, `"GET /ratings?x=1 HTTP/1.1" 200 - via_upstream - "-" 0 `) || !strings.Contains(line, `"probe/1"`) || !strings.HasSuffix(line, " default\n") {
			t.Fatalf("line %q is not Istio's default", line)
		}
	})
	t.Run("custom text", func(t *testing.T) {
		_, _, stdout, _ := run(t, loggedListener("gw", fileLog(stdoutPath, textFormat("%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %UPSTREAM_CLUSTER% %REQ(X-MISSING)%\n"))))
		if got, want := stdout.String(), "GET /ratings?x=1 200 reviews -\n"; got != want {
			t.Fatalf("line %q, want %q", got, want)
		}
	})
	t.Run("json typed", func(t *testing.T) {
		_, _, stdout, _ := run(t, loggedListener("gw", fileLog(stdoutPath, jsonLogFormat(t, map[string]any{
			"method": "%REQ(:METHOD)%", "response_code": "%RESPONSE_CODE%", "bytes_sent": "%BYTES_SENT%",
			"x_forwarded_for": "%REQ(X-FORWARDED-FOR)%", "response_flags": "%RESPONSE_FLAGS%",
			"summary": "%REQ(:METHOD)% took %DURATION%ms", "upstream": map[string]any{"cluster": "%UPSTREAM_CLUSTER%"},
			"fixed": 7.0, "ua": "%REQ(USER-AGENT)%", "path": `%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%`,
		}))))
		line := stdout.String()
		if !strings.HasSuffix(line, "}\n") || strings.Count(line, "\n") != 1 {
			t.Fatalf("not one JSON line: %q", line)
		}
		var got map[string]any
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		want := map[string]any{"method": "GET", "response_code": 200.0, "x_forwarded_for": nil, "response_flags": "-",
			"upstream": map[string]any{"cluster": "reviews"}, "fixed": 7.0, "ua": "probe/1", "path": "/ratings?x=1"}
		for k, v := range want {
			gb, _ := json.Marshal(got[k])
			wb, _ := json.Marshal(v)
			if string(gb) != string(wb) {
				t.Errorf("%s = %s, want %s (line %s)", k, gb, wb, line)
			}
		}
		if _, ok := got["bytes_sent"].(float64); !ok {
			t.Errorf("bytes_sent %v is not a number", got["bytes_sent"])
		}
		if s, _ := got["summary"].(string); !strings.HasPrefix(s, "GET took ") || !strings.HasSuffix(s, "ms") {
			t.Errorf("summary %q: a mixed value is a string", got["summary"])
		}
	})
	t.Run("file reopened on change", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "access.log")
		l := loggedListener("gw", fileLog(path, textFormat("%REQ(:PATH)%\n")))
		cp, p, stdout, addr := run(t, l)
		if b, _ := os.ReadFile(path); string(b) != "/ratings?x=1\n" {
			t.Fatalf("file has %q", b)
		}
		if stdout.String() != "" {
			t.Fatalf("stdout has %q: the file entry is not stdout", stdout.String())
		}
		// Rotated away, then a configuration change: the next line goes
		// to a new file at the path.
		if err := os.Rename(path, path+".1"); err != nil {
			t.Fatal(err)
		}
		cp.set("2", l, routes, staticCluster("reviews", be), staticCluster("other", be))
		waitFor(t, "the update", func() bool { return cp.lastVersion(xdsclient.ClusterType) == "2" })
		get(t, http.DefaultClient, addr, "reviews:9080", "/second")
		p.flushLogs()
		if b, _ := os.ReadFile(path); string(b) != "/second\n" {
			t.Fatalf("new file has %q, want the line after the change", b)
		}
		if b, _ := os.ReadFile(path + ".1"); string(b) != "/ratings?x=1\n" {
			t.Fatalf("rotated file has %q", b)
		}
	})
}

// TestAccessLogNACK: what the proxy cannot honour in an access_log entry
// is refused, never skipped.
func TestAccessLogNACK(t *testing.T) {
	cel := &accesslogv3.AccessLog{Name: fileAccessLogName, ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(&filev3.FileAccessLog{Path: stdoutPath})},
		Filter: &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ExtensionFilter{ExtensionFilter: &accesslogv3.ExtensionFilter{
			Name: celFilterName, ConfigType: &accesslogv3.ExtensionFilter_TypedConfig{TypedConfig: mustAny(&celv3.ExpressionFilter{Expression: "response.code >= "})}}}}}
	omitEmpty := textFormat("%START_TIME%\n")
	omitEmpty.OmitEmptyValues = true
	typedJSON := fileLog(stdoutPath, omitEmpty)
	badOp := fileLog(stdoutPath, textFormat("%NOT_AN_OPERATOR%\n"))
	noDir := fileLog("/nonexistent-dir/access.log", nil)
	tcp := func(al *accesslogv3.AccessLog) *listenerv3.Listener {
		return &listenerv3.Listener{Name: "t", Address: sockAddr("127.0.0.1", 0), FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: wellknown.TCPProxy, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(&tcpv3.TcpProxy{StatPrefix: "t",
				ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: "c"}, AccessLog: []*accesslogv3.AccessLog{al}})}}}}}}
	}
	tests := []struct {
		name string
		l    *listenerv3.Listener
		want string
	}{
		{"cel filter that does not parse", loggedListener("gw", cel), `CEL expression "response.code >= ": ERROR`},
		{"omit_empty_values not honoured", loggedListener("gw", typedJSON), "omit_empty_values is not supported"},
		{"unknown operator", loggedListener("gw", badOp), "NOT_AN_OPERATOR"},
		{"file that cannot open", loggedListener("gw", noDir), "open access log file"},
		{"tcp cel filter that does not parse", tcp(cel), `CEL expression "response.code >= "`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cp := newControlPlane(t, "127.0.0.1:0")
			cp.rawListeners = true
			runProxy(t, cp.addr, Config{AccessLog: &syncBuffer{}})
			cp.set("1", tt.l, staticCluster("c"))
			var nack string
			waitFor(t, "the NACK", func() bool {
				if r := cp.nacked(xdsclient.ListenerType); r != nil {
					nack = r.GetErrorDetail().GetMessage()
					return true
				}
				return false
			})
			if !strings.Contains(nack, tt.want) {
				t.Fatalf("NACK %q does not say %q", nack, tt.want)
			}
		})
	}
}

// TestIstioStatsOverrides: the HTTP istio.stats filter's metrics[] as the
// Telemetry API's overrides make them: a dropped metric is not exported,
// a removed tag makes its series add up, a dimension adds a label with
// the request's attribute; what the proxy cannot evaluate is NACKed.
func TestIstioStatsOverrides(t *testing.T) {
	statuses := map[string]int{"/ok": 200, "/missing": 404, "/broken": 503}
	be := handlerBackend(t, "127.0.0.2", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(statuses[r.URL.Path]) })
	routes := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "all", Domains: []string{"*"},
		Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster("outbound|9080||reviews.default.svc.cluster.local")}}}}}
	pc := &statsv1.PluginConfig{DisableHostHeaderFallback: true, Metrics: []*statsv1.MetricConfig{
		{Name: "request_bytes", Drop: true},
		{Name: "requests_total", TagsToRemove: []string{"response_code", "source_app"}},
		{Name: "requests_total", Dimensions: map[string]string{"request_host": "request.host", "destination_version": "'canary'"}},
		{Dimensions: map[string]string{"ua": "request.headers['user-agent']"}},
	}}
	cp := newControlPlane(t, "127.0.0.1:0")
	p := startProxy(t, cp.addr, nil)
	cp.set("1", filteredListener("gw", []*hcmv3.HttpFilter{statsHTTPFilter(pc)}), routes,
		staticCluster("outbound|9080||reviews.default.svc.cluster.local", be))
	addr := p.addr(t, "gw")
	for path, n := range map[string]int{"/ok": 3, "/missing": 2, "/broken": 1} {
		for range n {
			if code, _, _ := get(t, http.DefaultClient, addr, "reviews.example:80", path, "User-Agent", "probe/2"); code != statuses[path] {
				t.Fatalf("%s: %d", path, code)
			}
		}
	}
	fams := scrape(t, p)
	if f := fams["istio_request_bytes"]; f != nil {
		t.Fatalf("istio_request_bytes is dropped, yet exported: %v", f)
	}
	reqs := fams["istio_requests_total"].GetMetric()
	if len(reqs) != 1 {
		t.Fatalf("requests_total without response_code: %d series, want 1 (they add up): %v", len(reqs), reqs)
	}
	got := map[string]string{}
	for _, l := range reqs[0].GetLabel() {
		got[l.GetName()] = l.GetValue()
	}
	for _, gone := range []string{"response_code", "source_app"} {
		if _, ok := got[gone]; ok {
			t.Errorf("label %s was removed, yet present", gone)
		}
	}
	for k, v := range map[string]string{"request_host": "reviews.example:80", "destination_version": "canary", "ua": "probe/2",
		"destination_service": "reviews.default.svc.cluster.local", "reporter": "source"} {
		if got[k] != v {
			t.Errorf("label %s = %q, want %q", k, got[k], v)
		}
	}
	if v := reqs[0].GetCounter().GetValue(); v != 6 {
		t.Errorf("requests_total = %v, want 6", v)
	}
	// The duration keeps response_code (only requests_total lost it) and
	// gains ua (an entry without a name is every metric's).
	if n := sample(t, p, "istio_request_duration_milliseconds", map[string]string{"response_code": "404", "ua": "probe/2", "destination_version": "unknown"}); n != 2 {
		t.Errorf("duration of the 404s = %v, want 2", n)
	}

	for name, bad := range map[string]*statsv1.PluginConfig{
		"cel that does not parse": {Metrics: []*statsv1.MetricConfig{{Dimensions: map[string]string{"big": "request.size >"}}}},
		"cel unknown function":    {Metrics: []*statsv1.MetricConfig{{Dimensions: map[string]string{"part": "xds.cluster_name.split('|')[3]"}}}},
		"invalid label":           {Metrics: []*statsv1.MetricConfig{{Name: "requests_total", Dimensions: map[string]string{"bad-label": "request.host"}}}},
		"field not honoured":      {StatPrefix: "custom_"},
		"match":                   {Metrics: []*statsv1.MetricConfig{{Name: "requests_total", Match: "response.code == 200"}}},
	} {
		t.Run(name, func(t *testing.T) {
			cp := newControlPlane(t, "127.0.0.1:0")
			startProxy(t, cp.addr, nil)
			cp.set("1", filteredListener("gw", []*hcmv3.HttpFilter{statsHTTPFilter(bad)}), routes)
			waitFor(t, "the NACK", func() bool { return cp.nacked(xdsclient.ListenerType) != nil })
		})
	}
}

// TestTCPAccessLogJSON: a tcp_proxy's access_log, in JSON: the bytes
// received from and sent to the downstream, which a request's fields
// leave null.
func TestTCPAccessLogJSON(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.4:0")
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
				if _, err := bufio.NewReader(c).ReadString('\n'); err == nil {
					c.Write([]byte("a longer answer\n"))
				}
			}()
		}
	}()
	const cluster = "outbound|6379||redis.default.svc.cluster.local"
	cp := newControlPlane(t, "127.0.0.1:0")
	cp.rawListeners = true
	stdout := &syncBuffer{}
	p := runProxy(t, cp.addr, Config{AccessLog: stdout})
	tp := &tcpv3.TcpProxy{StatPrefix: cluster, ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: cluster},
		AccessLog: []*accesslogv3.AccessLog{fileLog(stdoutPath, jsonLogFormat(t, map[string]any{
			"bytes_received": "%BYTES_RECEIVED%", "bytes_sent": "%BYTES_SENT%", "upstream_cluster": "%UPSTREAM_CLUSTER%",
			"method": "%REQ(:METHOD)%", "response_code": "%RESPONSE_CODE%", "protocol": "%PROTOCOL%"}))}}
	cp.set("1", &listenerv3.Listener{Name: "redis", Address: sockAddr("127.0.0.1", 0),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{Name: wellknown.TCPProxy,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(tp)}}}}}},
		staticCluster(cluster, netip.MustParseAddrPort(ln.Addr().String())))
	c, err := net.Dial("tcp", p.addr(t, "redis"))
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("PING\n"))
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if got, err := bufio.NewReader(c).ReadString('\n'); got != "a longer answer\n" {
		t.Fatalf("answer %q, %v", got, err)
	}
	c.Close()
	var line string
	waitFor(t, "the connection's line", func() bool { p.flushLogs(); line = stdout.String(); return line != "" })
	var got map[string]any
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("line %q: %v", line, err)
	}
	want := `{"bytes_received":5,"bytes_sent":16,"method":null,"protocol":null,"response_code":0,"upstream_cluster":"` + cluster + `"}`
	if b, _ := json.Marshal(got); string(b) != want {
		t.Fatalf("line %s\nwant %s", b, want)
	}
}

// TestStatsHostFallback: with the host header fallback on (Istio's
// default on sidecar outbound), a request to no known service is
// labelled with its host; with it off (inbound, gateways), unknown.
func TestStatsHostFallback(t *testing.T) {
	_, be := backend(t, "127.0.0.2", "external")
	routes := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "all", Domains: []string{"*"},
		Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster("PassthroughCluster")}}}}}
	for _, tt := range []struct {
		disable bool
		want    string
	}{{false, "httpbin.org"}, {true, "unknown"}} {
		cp := newControlPlane(t, "127.0.0.1:0")
		p := startProxy(t, cp.addr, nil)
		cp.set("1", filteredListener("gw", []*hcmv3.HttpFilter{statsHTTPFilter(&statsv1.PluginConfig{DisableHostHeaderFallback: tt.disable})}), routes,
			staticCluster("PassthroughCluster", be))
		if code, _, _ := get(t, http.DefaultClient, p.addr(t, "gw"), "httpbin.org:80", "/"); code != 200 {
			t.Fatalf("status %d", code)
		}
		if n := sample(t, p, "istio_requests_total", map[string]string{"destination_service": tt.want}); n != 1 {
			t.Errorf("disable_host_header_fallback %v: destination_service %q count %v, want 1", tt.disable, tt.want, n)
		}
	}
}

// TestIstioJSONFormatCompiles: Istio's default JSON access log keys
// (meshConfig.accessLogEncoding JSON) use only operators the proxy has.
func TestIstioJSONFormatCompiles(t *testing.T) {
	istio := map[string]any{
		"start_time": "%START_TIME%", "route_name": "%ROUTE_NAME%", "method": "%REQ(:METHOD)%",
		"path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", "protocol": "%PROTOCOL%", "response_code": "%RESPONSE_CODE%",
		"response_flags": "%RESPONSE_FLAGS%", "response_code_details": "%RESPONSE_CODE_DETAILS%",
		"connection_termination_details": "%CONNECTION_TERMINATION_DETAILS%", "bytes_received": "%BYTES_RECEIVED%",
		"bytes_sent": "%BYTES_SENT%", "duration": "%DURATION%", "upstream_service_time": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
		"x_forwarded_for": "%REQ(X-FORWARDED-FOR)%", "user_agent": "%REQ(USER-AGENT)%", "request_id": "%REQ(X-REQUEST-ID)%",
		"authority": "%REQ(:AUTHORITY)%", "upstream_host": "%UPSTREAM_HOST%", "upstream_cluster": "%UPSTREAM_CLUSTER%",
		"upstream_local_address": "%UPSTREAM_LOCAL_ADDRESS%", "downstream_local_address": "%DOWNSTREAM_LOCAL_ADDRESS%",
		"downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%", "requested_server_name": "%REQUESTED_SERVER_NAME%",
		"upstream_transport_failure_reason": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
	}
	s, err := structpb.NewStruct(istio)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := compileJSONFormat(s); err != nil {
		t.Fatalf("Istio's default JSON format: %v", err)
	}
}

// stuckWriter blocks every write until released, as a stdout nobody
// reads.
type stuckWriter struct{ release chan struct{} }

func (w stuckWriter) Write(p []byte) (int, error) {
	<-w.release
	return len(p), nil
}

// TestAccessLogNeverBlocks: with a destination that does not take its
// lines, requests go on at full speed and the buffer stays bounded: lines
// past it are dropped and counted.
func TestAccessLogNeverBlocks(t *testing.T) {
	_, be := backend(t, "127.0.0.2", "reviews")
	routes := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "all", Domains: []string{"*"},
		Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster("reviews")}}}}}
	cp := newControlPlane(t, "127.0.0.1:0")
	stuck := stuckWriter{release: make(chan struct{})}
	p := runProxy(t, cp.addr, Config{AccessLog: stuck})
	t.Cleanup(func() { close(stuck.release) }) // before the proxy's cleanup: it flushes on the way out
	cp.set("1", gatewayListener("gw", "r"), routes, staticCluster("reviews", be))
	addr := p.addr(t, "gw")
	ua := strings.Repeat("u", 4096)
	start := time.Now()
	for range 400 {
		if code, _, _ := get(t, http.DefaultClient, addr, "reviews:9080", "/", "User-Agent", ua); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("400 requests took %v with a stuck access log", d)
	}
	p.mu.Lock()
	w := p.sinks.m[stdoutPath]
	p.mu.Unlock()
	w.mu.Lock()
	pending := len(w.pending)
	w.mu.Unlock()
	if pending > maxPending {
		t.Errorf("pending %d bytes, past the bound %d", pending, maxPending)
	}
	if w.dropped.Load() == 0 {
		t.Error("1.6 MB of lines into a stuck destination and none dropped")
	}
}
