package proxy

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshlab/meshlab/dataplane/telemetry"
)

func sidecarNode(t testing.TB, workload string, labels map[string]any) *corev3.Node {
	t.Helper()
	md, err := structpb.NewStruct(map[string]any{"WORKLOAD_NAME": workload, "NAMESPACE": "default", "LABELS": labels})
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.Node{Id: "sidecar~127.0.0.1~" + workload + "-0.default~default.svc.cluster.local", Metadata: md}
}

// TestIstioMetrics sends requests from a client sidecar (productpage-v1)
// to a server sidecar (reviews-v2) and reads both proxies' Istio metrics:
// each side knows the other from the metadata exchange, which neither
// application sees.
func TestIstioMetrics(t *testing.T) {
	var leaked atomic.Bool
	const dbName = "outbound|9080||db.example.com"
	const mongoName = "outbound|27017||mongodb.default.svc.cluster.local"
	mp := newMeshPath(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(telemetry.HeaderMetadata) != "" || r.Header.Get(telemetry.HeaderMetadataID) != "" {
			leaked.Store(true)
		}
		io.WriteString(w, strings.Repeat("r", 1000))
	}, []*routev3.VirtualHost{{Name: "db.example.com:9080", Domains: []string{"db.example.com"},
		Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster(dbName)}}}},
		edsCluster(dbName), cla(dbName, closedPort(t)),
		&listenerv3.Listener{Name: "mongodb", Address: sockAddr("127.0.0.1", 0), TrafficDirection: corev3.TrafficDirection_OUTBOUND,
			FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{tcpFilter(mongoName)}}}},
		staticCluster(mongoName, echo(t, "127.0.0.4")))
	client, server, outAddr := mp.client, mp.server, mp.out

	for i := 0; i < 3; i++ {
		code, body, hdr := get(t, http.DefaultClient, outAddr, "reviews:9080", "/")
		if code != http.StatusOK || len(body) != 1000 {
			t.Fatalf("request %d: %d, %d bytes", i, code, len(body))
		}
		if hdr.Get(telemetry.HeaderMetadata) != "" {
			t.Fatal("the server's metadata reached the client application")
		}
	}
	if leaked.Load() {
		t.Fatal("the client's metadata reached the server application")
	}

	common := map[string]string{
		"source_workload": "productpage-v1", "source_app": "productpage", "source_version": "v1",
		"source_workload_namespace": "default", "source_canonical_service": "productpage",
		"destination_workload": "reviews-v2", "destination_app": "reviews", "destination_version": "v2",
		"destination_service": "reviews.default.svc.cluster.local", "destination_service_name": "reviews",
		"destination_service_namespace": "default", "destination_canonical_service": "reviews",
		"request_protocol": "http", "response_code": "200", "response_flags": "-",
	}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range common {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name   string
		proxy  *testProxy
		metric string
		labels map[string]string
		want   float64
	}{
		{"client reports as source", client, "istio_requests_total", with("reporter", "source", "connection_security_policy", "unknown"), 3},
		{"server reports as destination", server, "istio_requests_total", with("reporter", "destination", "connection_security_policy", "none"), 3},
		{"server's durations", server, "istio_request_duration_milliseconds", with("reporter", "destination"), 3},
		{"client's response sizes", client, "istio_response_bytes", with("reporter", "source"), 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sample(t, tt.proxy, tt.metric, tt.labels); got != tt.want {
				t.Errorf("%s%v = %v, want %v", tt.metric, tt.labels, got, tt.want)
			}
		})
	}

	// A response's size counts its body: 1,000 bytes and its headers.
	if sum := histogramSum(t, client, "istio_response_bytes", with("reporter", "source")); sum < 3*1000 || sum > 3*1400 {
		t.Errorf("response bytes sum = %v, want 3 × (1,000 body + headers)", sum)
	}

	// A TCP connection: counted when opened and closed, with its bytes
	// each way (received from the downstream, sent back to it).
	c, err := net.Dial("tcp", client.addr(t, "mongodb"))
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "ping")
	c.(*net.TCPConn).CloseWrite()
	if b, _ := io.ReadAll(c); string(b) != "PING" {
		t.Fatalf("tcp echo through the proxy = %q", b)
	}
	c.Close()
	tcp := map[string]string{"reporter": "source", "source_workload": "productpage-v1",
		"destination_service_name": "mongodb", "destination_service_namespace": "default", "request_protocol": "tcp"}
	waitFor(t, "the TCP connection's close in the metrics", func() bool {
		return sample(t, client, "istio_tcp_connections_closed_total", tcp) == 1
	})
	for metric, want := range map[string]float64{"istio_tcp_connections_opened_total": 1,
		"istio_tcp_received_bytes_total": 4, "istio_tcp_sent_bytes_total": 4} {
		if got := sample(t, client, metric, tcp); got != want {
			t.Errorf("%s = %v, want %v", metric, got, want)
		}
	}

	// A host outside the Kubernetes services: named by its host, its
	// workload unknown; a refused connection is a 503 with UF.
	if code, _, _ := get(t, http.DefaultClient, outAddr, "db.example.com", "/"); code != http.StatusServiceUnavailable {
		t.Fatalf("db.example.com: %d, want 503", code)
	}
	failed := map[string]string{"reporter": "source", "source_workload": "productpage-v1",
		"destination_workload": "unknown", "destination_service": "db.example.com",
		"destination_service_name": "db.example.com", "destination_service_namespace": "unknown",
		"response_code": "503", "response_flags": "UF"}
	if got := sample(t, client, "istio_requests_total", failed); got != 1 {
		t.Errorf("istio_requests_total%v = %v, want 1", failed, got)
	}
}

// meshPath is the mesh path in one process: a client sidecar
// (productpage-v1) whose outbound listener routes reviews to a server
// sidecar (reviews-v2), whose inbound listener leads to app. extraHosts
// and extra go into the client's configuration.
type meshPath struct {
	client, server *testProxy
	out            string // the client sidecar's outbound listener
}

func newMeshPath(t testing.TB, app http.HandlerFunc, extraHosts []*routev3.VirtualHost, extra ...types.Resource) meshPath {
	t.Helper()
	appAddr := handlerBackend(t, "127.0.0.3", app)

	// The server's sidecar: an inbound listener to the app, whose cluster
	// carries the service as istiod's metadata names it.
	cpS := newControlPlane(t, "127.0.0.1:0")
	server := runProxy(t, cpS.addr, Config{Node: sidecarNode(t, "reviews-v2", map[string]any{"app": "reviews", "version": "v2"})})
	const inName = "inbound|9080||"
	inCluster := staticCluster(inName, appAddr)
	svc, err := structpb.NewStruct(map[string]any{"services": []any{map[string]any{
		"host": "reviews.default.svc.cluster.local", "name": "reviews", "namespace": "default"}}})
	if err != nil {
		t.Fatal(err)
	}
	inCluster.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"istio": svc}}
	cpS.set("1", &listenerv3.Listener{Name: "virtualInbound", Address: sockAddr("127.0.0.1", 0),
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{hcmFilter(&hcmv3.HttpConnectionManager{
			StatPrefix: "inbound_0.0.0.0_9080",
			RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{Name: inName,
				VirtualHosts: []*routev3.VirtualHost{{Name: "inbound|http|9080", Domains: []string{"*"},
					Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster(inName)}}}}}}})}}}},
		inCluster)
	inAddr := netip.MustParseAddrPort(server.addr(t, "virtualInbound"))

	// The client's sidecar: an outbound listener routing to the server's.
	cpC := newControlPlane(t, "127.0.0.1:0")
	client := runProxy(t, cpC.addr, Config{Node: sidecarNode(t, "productpage-v1", map[string]any{"app": "productpage", "version": "v1"})})
	const outName = "outbound|9080||reviews.default.svc.cluster.local"
	out := gatewayListener("0.0.0.0_9080", "9080")
	out.TrafficDirection = corev3.TrafficDirection_OUTBOUND
	hosts := append(extraHosts, &routev3.VirtualHost{Name: "reviews.default.svc.cluster.local:9080", Domains: []string{"*"},
		Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster(outName)}}})
	cpC.set("1", append([]types.Resource{out, &routev3.RouteConfiguration{Name: "9080", VirtualHosts: hosts},
		edsCluster(outName), cla(outName, inAddr)}, extra...)...)
	return meshPath{client: client, server: server, out: client.addr(t, "0.0.0.0_9080")}
}

// scrape reads a proxy's /stats/prometheus into metric families.
func scrape(t *testing.T, p *testProxy) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	p.StatsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/stats/prometheus", nil))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse /stats/prometheus: %v", err)
	}
	return fams
}

// series finds the metric of name whose labels include want.
func series(t *testing.T, p *testProxy, name string, want map[string]string) *dto.Metric {
	t.Helper()
	f := scrape(t, p)[name]
	if f == nil {
		t.Fatalf("no %s in /stats/prometheus", name)
	}
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		return m
	}
	t.Fatalf("no %s series with %v; have %v", name, want, f.GetMetric())
	return nil
}

// sample is a counter's value or a histogram's count.
func sample(t *testing.T, p *testProxy, name string, want map[string]string) float64 {
	m := series(t, p, name, want)
	if h := m.GetHistogram(); h != nil {
		return float64(h.GetSampleCount())
	}
	return m.GetCounter().GetValue()
}

func histogramSum(t *testing.T, p *testProxy, name string, want map[string]string) float64 {
	return series(t, p, name, want).GetHistogram().GetSampleSum()
}
