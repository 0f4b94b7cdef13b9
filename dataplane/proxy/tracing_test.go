package proxy

import (
	"encoding/json"
	"net/http"
	"net/netip"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	uuidv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/request_id/uuid/v3"
	tracingv3 "github.com/envoyproxy/go-control-plane/envoy/type/tracing/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/openzipkin/zipkin-go/model"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlab/meshlab/dataplane/tracing"
	"github.com/meshlab/meshlab/dataplane/xdsclient"
)

// zipkinReceiver is a loopback Zipkin v2 receiver: it decodes each report
// with zipkin-go's model, as a Zipkin server does, and answers 202.
type zipkinReceiver struct {
	t     testing.TB
	addr  netip.AddrPort
	mu    sync.Mutex
	spans []model.SpanModel
	hosts map[string]bool
}

func newZipkinReceiver(t testing.TB, ip string) *zipkinReceiver {
	z := &zipkinReceiver{t: t, hosts: map[string]bool{}}
	z.addr = handlerBackend(t, ip, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/api/v2/spans" || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("zipkin report: %s %s %q", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var spans []model.SpanModel
		if err := json.NewDecoder(r.Body).Decode(&spans); err != nil {
			t.Errorf("decode zipkin report: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		z.mu.Lock()
		z.spans = append(z.spans, spans...)
		z.hosts[r.Host] = true
		z.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	})
	return z
}

// trace waits for n spans of a trace and returns them.
func (z *zipkinReceiver) trace(traceID string, n int) []model.SpanModel {
	z.t.Helper()
	var out []model.SpanModel
	waitFor(z.t, "the trace's spans", func() bool {
		z.mu.Lock()
		defer z.mu.Unlock()
		out = out[:0]
		for _, s := range z.spans {
			if s.TraceID.String() == traceID {
				out = append(out, s)
			}
		}
		return len(out) >= n
	})
	return out
}

func (z *zipkinReceiver) count() int {
	z.mu.Lock()
	defer z.mu.Unlock()
	return len(z.spans)
}

// zipkinTracing is the tracing Istio's pilot gives a connection manager
// (tracing.go L237–249, L503–568): the Zipkin provider, 128-bit ids, no
// shared span context, the sampling and Istio's literal tags; plus an
// environment and a request header tag, as Telemetry customTags add.
func zipkinTracing(cluster string, random float64) *hcmv3.HttpConnectionManager_Tracing {
	lit := func(k, v string) *tracingv3.CustomTag {
		return &tracingv3.CustomTag{Tag: k, Type: &tracingv3.CustomTag_Literal_{Literal: &tracingv3.CustomTag_Literal{Value: v}}}
	}
	return &hcmv3.HttpConnectionManager_Tracing{
		ClientSampling: &typev3.Percent{Value: 100}, RandomSampling: &typev3.Percent{Value: random}, OverallSampling: &typev3.Percent{Value: 100},
		CustomTags: []*tracingv3.CustomTag{
			lit("istio.canonical_revision", "latest"), lit("istio.canonical_service", "svc"), lit("istio.mesh_id", "cluster.local"),
			lit("istio.namespace", "default"), lit("istio.cluster_id", "Kubernetes"),
			{Tag: "env", Type: &tracingv3.CustomTag_Environment_{Environment: &tracingv3.CustomTag_Environment{Name: "MESHLAB_TRACE_TEST_UNSET", DefaultValue: "fallback"}}},
			{Tag: "end-user", Type: &tracingv3.CustomTag_RequestHeader{RequestHeader: &tracingv3.CustomTag_Header{Name: "end-user", DefaultValue: "nobody"}}},
		},
		Provider: &tracev3.Tracing_Http{Name: zipkinTracer, ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: mustAny(&tracev3.ZipkinConfig{
			CollectorCluster: cluster, CollectorEndpoint: "/api/v2/spans", CollectorEndpointVersion: tracev3.ZipkinConfig_HTTP_JSON,
			TraceId_128Bit: true, SharedSpanContext: wrapperspb.Bool(false), CollectorHostname: "zipkin.istio-system:9411",
		})}},
	}
}

func uuidExtension() *hcmv3.RequestIDExtension {
	return &hcmv3.RequestIDExtension{TypedConfig: mustAny(&uuidv3.UuidRequestIdConfig{
		PackTraceReason: wrapperspb.Bool(true), UseRequestIdForTraceSampling: wrapperspb.Bool(true)})}
}

func traceNode(t testing.TB, workload, app, ip string) *corev3.Node {
	t.Helper()
	md, err := structpb.NewStruct(map[string]any{"WORKLOAD_NAME": workload, "NAMESPACE": "default", "INSTANCE_IPS": ip + ",fe80::1",
		"LABELS": map[string]any{"app": app, "version": "v1"}})
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.Node{Id: "sidecar~" + ip + "~" + workload + "-0.default~default.svc.cluster.local", Metadata: md,
		Locality: &corev3.Locality{Zone: "zone-a"}}
}

// traceMesh is a client sidecar (productpage, outbound listener) calling a
// server sidecar (reviews, inbound listener) in front of an app, both
// reporting to one Zipkin receiver: the client through an EDS cluster
// named as Istio names a mesh collector's, the server through a STATIC
// cluster named zipkin (Istio's bootstrap name for an address).
type traceMesh struct {
	client, server *testProxy
	out            string
	in             netip.AddrPort
	zipkin         *zipkinReceiver
	seen           chan http.Header
}

type traceOpts struct {
	random          float64
	noPropagate     bool
	collectorClosed bool
}

const (
	zipkinOutbound = "outbound|9411||zipkin.istio-system.svc.cluster.local"
	reviewsOut     = "outbound|9080||reviews.default.svc.cluster.local"
	clientOp       = "reviews.default.svc.cluster.local:9080/reviews*"
	serverOp       = "reviews.default.svc.cluster.local:9080/*"
)

func newTraceMesh(t testing.TB, o traceOpts) *traceMesh {
	t.Helper()
	m := &traceMesh{zipkin: newZipkinReceiver(t, "127.0.0.5"), seen: make(chan http.Header, 100)}
	collector := m.zipkin.addr
	if o.collectorClosed {
		collector = closedPort(t)
	}
	app := handlerBackend(t, "127.0.0.3", func(w http.ResponseWriter, r *http.Request) {
		select {
		case m.seen <- r.Header.Clone():
		default:
		}
		if r.URL.Query().Get("fail") != "" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		w.Write([]byte("reviews"))
	})
	cfg := Config{TraceFlushInterval: 50 * time.Millisecond}

	cpS := newControlPlane(t, "127.0.0.1:0")
	cfg.Node = traceNode(t, "reviews-v2", "reviews", "10.0.0.7")
	m.server = runProxy(t, cpS.addr, cfg)
	const inName = "inbound|9080||"
	in := &hcmv3.HttpConnectionManager{StatPrefix: "inbound_0.0.0.0_9080", Tracing: zipkinTracing("zipkin", o.random),
		RequestIdExtension: uuidExtension(),
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{Name: inName,
			VirtualHosts: []*routev3.VirtualHost{{Name: "inbound|http|9080", Domains: []string{"*"},
				Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster(inName), Decorator: &routev3.Decorator{Operation: serverOp}}}}}}}}
	cpS.set("1", &listenerv3.Listener{Name: "virtualInbound", Address: sockAddr("127.0.0.1", 0), TrafficDirection: corev3.TrafficDirection_INBOUND,
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{hcmFilter(in)}}}},
		staticCluster(inName, app), staticCluster("zipkin", collector))
	m.in = netip.MustParseAddrPort(m.server.addr(t, "virtualInbound"))

	cpC := newControlPlane(t, "127.0.0.1:0")
	cfg.Node = traceNode(t, "productpage-v1", "productpage", "10.0.0.6")
	m.client = runProxy(t, cpC.addr, cfg)
	var propagate *wrapperspb.BoolValue
	if o.noPropagate {
		propagate = wrapperspb.Bool(false)
	}
	out := &hcmv3.HttpConnectionManager{StatPrefix: "outbound_0.0.0.0_9080", Tracing: zipkinTracing(zipkinOutbound, o.random),
		RequestIdExtension: uuidExtension(),
		RouteSpecifier:     &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: ads(), RouteConfigName: "9080"}}}
	outL := &listenerv3.Listener{Name: "0.0.0.0_9080", Address: sockAddr("127.0.0.1", 0), TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{hcmFilter(out)}}}}
	const broken = "outbound|9080||ratings.default.svc.cluster.local"
	cpC.set("1", outL, &routev3.RouteConfiguration{Name: "9080", VirtualHosts: []*routev3.VirtualHost{
		{Name: "ratings.default.svc.cluster.local:9080", Domains: []string{"ratings", "ratings:9080"},
			Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster(broken)}}},
		{Name: "reviews.default.svc.cluster.local:9080", Domains: []string{"*"},
			Routes: []*routev3.Route{{Match: prefix("/reviews"), Action: toCluster(reviewsOut),
				Decorator: &routev3.Decorator{Operation: clientOp, Propagate: propagate}}}},
	}},
		edsCluster(reviewsOut), cla(reviewsOut, m.in), edsCluster(zipkinOutbound), cla(zipkinOutbound, collector),
		edsCluster(broken), cla(broken, closedPort(t)))
	m.out = m.client.addr(t, "0.0.0.0_9080")
	m.client.waitVersion(t, xdsclient.EndpointType, "1")
	return m
}

func (m *traceMesh) appSaw(t *testing.T) http.Header {
	t.Helper()
	select {
	case h := <-m.seen:
		return h
	case <-time.After(5 * time.Second):
		t.Fatal("the app saw no request")
		return nil
	}
}

func byKind(spans []model.SpanModel) (client, server model.SpanModel) {
	for _, s := range spans {
		if s.Kind == model.Client {
			client = s
		} else {
			server = s
		}
	}
	return
}

// TestTracingMesh: a request through a client and a server sidecar makes
// one trace of a CLIENT span and its SERVER child, each with its own id,
// named by the decorators, tagged as Envoy tags them, reported by each
// proxy as its own service; the app gets B3 headers naming the SERVER span.
func TestTracingMesh(t *testing.T) {
	m := newTraceMesh(t, traceOpts{random: 100})
	code, body, _ := get(t, http.DefaultClient, m.out, "reviews:9080", "/reviews/0?x=1", "End-User", "jason", "User-Agent", "trace-test")
	if code != http.StatusOK || body != "reviews" {
		t.Fatalf("GET: %d %q", code, body)
	}
	seen := m.appSaw(t)
	traceID := seen.Get("X-B3-Traceid")
	if len(traceID) != 32 {
		t.Fatalf("the app got x-b3-traceid %q, want 32 hex (trace_id_128bit)", traceID)
	}
	spans := m.zipkin.trace(traceID, 2)
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2: %+v", len(spans), spans)
	}
	cs, ss := byKind(spans)
	if cs.Kind != model.Client || ss.Kind != model.Server {
		t.Fatalf("kinds %s and %s, want CLIENT and SERVER", spans[0].Kind, spans[1].Kind)
	}
	if cs.ParentID != nil {
		t.Errorf("the CLIENT span has parent %s; it is the root", cs.ParentID)
	}
	if ss.ID == cs.ID || ss.ParentID == nil || *ss.ParentID != cs.ID {
		t.Errorf("SERVER span %s parent %v, want a new id whose parent is the CLIENT span %s", ss.ID, ss.ParentID, cs.ID)
	}
	// The app's context is the SERVER span's.
	if seen.Get("X-B3-Spanid") != ss.ID.String() || seen.Get("X-B3-Parentspanid") != cs.ID.String() || seen.Get("X-B3-Sampled") != "1" {
		t.Errorf("app saw span %s parent %s sampled %s; want %s %s 1", seen.Get("X-B3-Spanid"), seen.Get("X-B3-Parentspanid"), seen.Get("X-B3-Sampled"), ss.ID, cs.ID)
	}
	if seen.Get("X-Envoy-Decorator-Operation") != "" {
		t.Error("x-envoy-decorator-operation reached the app")
	}
	rid := seen.Get("X-Request-Id")
	if len(rid) != 36 || rid[14] != '9' {
		t.Errorf("x-request-id %q: want the sampled reason '9' at char 14", rid)
	}
	// Names: the client's decorator, which the server's span takes from
	// x-envoy-decorator-operation.
	if cs.Name != clientOp || ss.Name != clientOp {
		t.Errorf("names %q, %q; want %q for both", cs.Name, ss.Name, clientOp)
	}
	if cs.LocalEndpoint.ServiceName != "productpage.default" || cs.LocalEndpoint.IPv4.String() != "10.0.0.6" ||
		ss.LocalEndpoint.ServiceName != "reviews.default" || ss.LocalEndpoint.IPv4.String() != "10.0.0.7" {
		t.Errorf("local endpoints %+v, %+v", cs.LocalEndpoint, ss.LocalEndpoint)
	}
	if cs.Duration <= 0 || ss.Duration <= 0 || cs.Duration < ss.Duration || cs.Timestamp.After(ss.Timestamp) {
		t.Errorf("client %v+%v, server %v+%v: the server's span must lie within the client's", cs.Timestamp, cs.Duration, ss.Timestamp, ss.Duration)
	}
	want := map[string]string{
		"node_id": "sidecar~10.0.0.6~productpage-v1-0.default~default.svc.cluster.local", "zone": "zone-a",
		"guid:x-request-id": rid, "http.url": "http://reviews:9080/reviews/0?x=1", "http.method": "GET",
		"downstream_cluster": "-", "user_agent": "trace-test", "http.protocol": "HTTP/1.1", "peer.address": "127.0.0.1",
		"request_size": "0", "response_size": "7", "component": "proxy",
		"upstream_cluster": reviewsOut, "upstream_cluster.name": reviewsOut, "upstream_address": m.in.String(),
		"http.status_code": "200", "response_flags": "-",
		"istio.canonical_revision": "latest", "istio.canonical_service": "svc", "istio.mesh_id": "cluster.local",
		"istio.namespace": "default", "istio.cluster_id": "Kubernetes", "env": "fallback", "end-user": "jason",
	}
	for k, v := range want {
		if cs.Tags[k] != v {
			t.Errorf("CLIENT tag %s = %q, want %q", k, cs.Tags[k], v)
		}
	}
	if _, ok := cs.Tags["error"]; ok {
		t.Error("error tag on a 200")
	}
	if len(cs.Tags) != len(want) {
		t.Errorf("CLIENT tags %v; want exactly %d", cs.Tags, len(want))
	}
	if ss.Tags["upstream_cluster"] != "inbound|9080||" || ss.Tags["node_id"] != "sidecar~10.0.0.7~reviews-v2-0.default~default.svc.cluster.local" ||
		ss.Tags["guid:x-request-id"] != rid {
		t.Errorf("SERVER tags %v", ss.Tags)
	}
	if !m.zipkin.hosts["zipkin.istio-system:9411"] || len(m.zipkin.hosts) != 1 {
		t.Errorf("reports came with Host %v, want collector_hostname", m.zipkin.hosts)
	}

	// An incoming 64-bit B3 context: the CLIENT span is its child, in its
	// trace, the 16-hex trace id kept.
	get(t, http.DefaultClient, m.out, "reviews:9080", "/reviews/1", "X-B3-TraceId", "48485a3953bb6124", "X-B3-SpanId", "a2fb4a1d1a96d312", "X-B3-Sampled", "1")
	m.appSaw(t)
	spans = m.zipkin.trace("48485a3953bb6124", 2)
	cs, _ = byKind(spans)
	if cs.ParentID == nil || cs.ParentID.String() != "a2fb4a1d1a96d312" {
		t.Errorf("CLIENT span parent %v, want the caller's a2fb4a1d1a96d312", cs.ParentID)
	}

	// A failed upstream: 503 UF, error=true.
	code, _, _ = get(t, http.DefaultClient, m.out, "ratings", "/", "X-B3-TraceId", "463ac35c9f6413ad48485a3953bb6124", "X-B3-SpanId", "0000000000000001", "X-B3-Sampled", "1")
	if code != http.StatusServiceUnavailable {
		t.Fatalf("ratings: %d", code)
	}
	spans = m.zipkin.trace("463ac35c9f6413ad48485a3953bb6124", 1)
	if s := spans[0]; s.Tags["error"] != "true" || s.Tags["response_flags"] != "UF" || s.Tags["http.status_code"] != "503" || s.Name != "ratings" {
		t.Errorf("failed request's span %q tags %v; want name = Host (no decorator), error, UF, 503", s.Name, s.Tags)
	}

	// The stats on 15090.
	waitFor(t, "tracing.zipkin.reports_sent", func() bool {
		return scrapeCounter(t, m.client, "envoy_tracing_zipkin_reports_sent") >= 1 && scrapeCounter(t, m.client, "envoy_tracing_zipkin_spans_sent") >= 3
	})
}

func scrapeCounter(t *testing.T, p *testProxy, name string) float64 {
	f := scrape(t, p)[name]
	if f == nil || len(f.GetMetric()) != 1 {
		t.Fatalf("no %s on /stats/prometheus", name)
	}
	return f.GetMetric()[0].GetCounter().GetValue()
}

// TestTracingSampling: at 0% nothing is reported, yet the decision
// travels (x-b3-sampled: 0); x-envoy-force-trace and x-client-trace-id
// trace anyway, the forced response telling the request id.
func TestTracingSampling(t *testing.T) {
	m := newTraceMesh(t, traceOpts{random: 0})
	get(t, http.DefaultClient, m.out, "reviews:9080", "/reviews/0")
	seen := m.appSaw(t)
	if seen.Get("X-B3-Sampled") != "0" || len(seen.Get("X-B3-Traceid")) != 32 || seen.Get("X-B3-Spanid") == "" {
		t.Errorf("unsampled request: app saw %v; want the B3 context with sampled 0", seen)
	}
	if rid := seen.Get("X-Request-Id"); rid[14] != '4' {
		t.Errorf("x-request-id %q, want no trace reason", rid)
	}

	_, _, hdr := get(t, http.DefaultClient, m.out, "reviews:9080", "/reviews/forced", "X-Envoy-Force-Trace", "true")
	seen = m.appSaw(t)
	rid := hdr.Get("X-Request-Id")
	if len(rid) != 36 || rid[14] != 'a' || seen.Get("X-Request-Id") != rid {
		t.Errorf("forced: response x-request-id %q (app saw %q), want it with 'a' at char 14", rid, seen.Get("X-Request-Id"))
	}
	if n := len(m.zipkin.trace(seen.Get("X-B3-Traceid"), 2)); n != 2 {
		t.Errorf("forced trace has %d spans", n)
	}

	get(t, http.DefaultClient, m.out, "reviews:9080", "/reviews/client", "X-Client-Trace-Id", "c-1")
	seen = m.appSaw(t)
	if seen.Get("X-Request-Id")[14] != 'b' {
		t.Errorf("client-forced x-request-id %q", seen.Get("X-Request-Id"))
	}
	spans := m.zipkin.trace(seen.Get("X-B3-Traceid"), 2)
	if cs, _ := byKind(spans); cs.Tags["guid:x-client-trace-id"] != "c-1" {
		t.Errorf("client span tags %v", cs.Tags)
	}
	time.Sleep(200 * time.Millisecond)
	if n := m.zipkin.count(); n != 4 {
		t.Errorf("%d spans reported; want only the 4 forced ones", n)
	}
}

// TestTracingDecoratorNoPropagate: without propagation the server names
// its span by its own decorator and sends it back, and the client's span
// takes it, as Envoy's egress does with x-envoy-decorator-operation.
func TestTracingDecoratorNoPropagate(t *testing.T) {
	m := newTraceMesh(t, traceOpts{random: 100, noPropagate: true})
	_, _, hdr := get(t, http.DefaultClient, m.out, "reviews:9080", "/reviews/0")
	seen := m.appSaw(t)
	cs, ss := byKind(m.zipkin.trace(seen.Get("X-B3-Traceid"), 2))
	if ss.Name != serverOp || cs.Name != serverOp {
		t.Errorf("names %q (client), %q (server); want %q", cs.Name, ss.Name, serverOp)
	}
	if hdr.Get("X-Envoy-Decorator-Operation") != "" {
		t.Error("the client app got x-envoy-decorator-operation")
	}

	// Called directly, with no decorator arriving, the server sends its
	// own back to its caller.
	_, _, hdr = get(t, http.DefaultClient, m.in.String(), "reviews:9080", "/reviews/direct")
	if got := hdr.Get("X-Envoy-Decorator-Operation"); got != serverOp {
		t.Errorf("inbound response x-envoy-decorator-operation = %q, want %q", got, serverOp)
	}
}

// TestTracingCollectorDown: with the collector refusing, traced requests
// answer as ever, reports fail and are counted, and the heap stays flat.
func TestTracingCollectorDown(t *testing.T) {
	m := newTraceMesh(t, traceOpts{random: 100, collectorClosed: true})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	send := func(n int) {
		for i := 0; i < n; i++ {
			req, _ := http.NewRequest(http.MethodGet, "http://"+m.out+"/reviews/x", nil)
			req.Host = "reviews:9080"
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("request %d: %d with the collector down", i, resp.StatusCode)
			}
			select {
			case <-m.seen:
			default:
			}
		}
	}
	heap := func() uint64 {
		goruntime.GC()
		var ms goruntime.MemStats
		goruntime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	send(500)
	before := heap()
	start := time.Now()
	send(3000)
	per := time.Since(start) / 3000
	after := heap()
	if after > before+16<<20 {
		t.Errorf("heap %d → %d bytes over 3,000 traced requests with the collector down", before, after)
	}
	waitFor(t, "reports_failed", func() bool { return scrapeCounter(t, m.client, "envoy_tracing_zipkin_reports_failed") > 0 })
	if sent := scrapeCounter(t, m.client, "envoy_tracing_zipkin_reports_sent"); sent != 0 {
		t.Errorf("reports_sent %v with the collector down", sent)
	}
	t.Logf("%v per request with the collector down", per)
}

// TestTracingOff: a connection manager without tracing creates no span and
// passes the trace headers on untouched, x-request-id unpacked.
func TestTracingOff(t *testing.T) {
	z := newZipkinReceiver(t, "127.0.0.5")
	seen := make(chan http.Header, 1)
	app := handlerBackend(t, "127.0.0.3", func(w http.ResponseWriter, r *http.Request) { seen <- r.Header.Clone() })
	cp := newControlPlane(t, "127.0.0.1:0")
	cp.set("1", gatewayListener("gw", "r"), &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: "a", Domains: []string{"*"},
		Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster("app"), Decorator: &routev3.Decorator{Operation: "op"}}}}}},
		staticCluster("app", app), staticCluster("zipkin", z.addr))
	p := runProxy(t, cp.addr, Config{TraceFlushInterval: 20 * time.Millisecond})
	in := map[string]string{"X-B3-Traceid": "48485a3953bb6124", "X-B3-Spanid": "a2fb4a1d1a96d312", "X-B3-Sampled": "1",
		"B3": "48485a3953bb6124-a2fb4a1d1a96d312-1", "Traceparent": "00-" + strings.Repeat("1", 32) + "-" + strings.Repeat("2", 16) + "-01",
		"X-Request-Id": "00001387-9a2b-4c3d-8e4f-0123456789ab", "X-Envoy-Force-Trace": "1"}
	var kv []string
	for k, v := range in {
		kv = append(kv, k, v)
	}
	get(t, http.DefaultClient, p.addr(t, "gw"), "a", "/", kv...)
	h := <-seen
	for k, v := range in {
		if h.Get(k) != v {
			t.Errorf("%s = %q, want %q untouched", k, h.Get(k), v)
		}
	}
	if h.Get("X-B3-Parentspanid") != "" || h.Get("X-Envoy-Decorator-Operation") != "" {
		t.Errorf("headers added without tracing: %v", h)
	}
	time.Sleep(100 * time.Millisecond)
	if z.count() != 0 {
		t.Error("spans reported without tracing")
	}
}

// TestTracingNACK: what the proxy does not implement is refused.
func TestTracingNACK(t *testing.T) {
	verbose := zipkinTracing("zipkin", 100)
	verbose.Verbose = true
	meta := zipkinTracing("zipkin", 100)
	meta.CustomTags = append(meta.CustomTags, &tracingv3.CustomTag{Tag: "m", Type: &tracingv3.CustomTag_Metadata_{Metadata: &tracingv3.CustomTag_Metadata{}}})
	proto := zipkinTracing("zipkin", 100)
	proto.Provider.ConfigType = &tracev3.Tracing_Http_TypedConfig{TypedConfig: mustAny(&tracev3.ZipkinConfig{
		CollectorCluster: "zipkin", CollectorEndpoint: "/api/v2/spans", CollectorEndpointVersion: tracev3.ZipkinConfig_HTTP_PROTO})}
	other := zipkinTracing("zipkin", 100)
	other.Provider = &tracev3.Tracing_Http{Name: "envoy.tracers.opentelemetry", ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: mustAny(&tracev3.OpenTelemetryConfig{})}}
	ridExt := &hcmv3.RequestIDExtension{TypedConfig: mustAny(&tracev3.ZipkinConfig{})}
	tests := []struct {
		name string
		tr   *hcmv3.HttpConnectionManager_Tracing
		rid  *hcmv3.RequestIDExtension
	}{
		{"verbose", verbose, nil},
		{"metadata tag", meta, nil},
		{"protobuf collector", proto, nil},
		{"another tracer", other, nil},
		{"another request id extension", zipkinTracing("zipkin", 100), ridExt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &hcmv3.HttpConnectionManager{StatPrefix: "x", Tracing: tt.tr, RequestIdExtension: tt.rid,
				RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: ads(), RouteConfigName: "r"}}}
			l := &listenerv3.Listener{Name: "gw", Address: sockAddr("127.0.0.1", 0), FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{hcmFilter(h)}}}}
			if _, err := compileListener(l, buildOptions{tls: &tlsStatsSet{}}); err == nil {
				t.Error("accepted")
			}
		})
	}
	// Istio's own configuration is accepted.
	ok := &hcmv3.HttpConnectionManager{StatPrefix: "x", Tracing: zipkinTracing("zipkin", 1), RequestIdExtension: uuidExtension(),
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: ads(), RouteConfigName: "r"}}}
	l := &listenerv3.Listener{Name: "gw", Address: sockAddr("127.0.0.1", 0), FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{hcmFilter(ok)}}}}
	if _, err := compileListener(l, buildOptions{tls: &tlsStatsSet{}}); err != nil {
		t.Errorf("Istio's tracing refused: %v", err)
	}
}

// TestTracingGateway: a gateway (an OUTBOUND listener) reports CLIENT
// spans as istio-ingressgateway.istio-system to a collector named by a
// host outside the mesh — Istio's "zipkin" cluster, STRICT_DNS; a
// collector cluster the proxy does not have counts skipped reports.
func TestTracingGateway(t *testing.T) {
	z := newZipkinReceiver(t, "127.0.0.5")
	app := handlerBackend(t, "127.0.0.3", func(w http.ResponseWriter, r *http.Request) {})
	r := &loopbackResolver{names: map[string]netip.Addr{"tempo.example.internal": netip.MustParseAddr("127.0.0.5")}}
	dns := &clusterv3.Cluster{Name: "zipkin", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
		ConnectTimeout: durationpb.New(time.Second), DnsLookupFamily: clusterv3.Cluster_V4_ONLY,
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: "zipkin", Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: sockAddr("tempo.example.internal", uint32(z.addr.Port()))}}}}}}}}
	listener := func(name, collector string) *listenerv3.Listener {
		h := &hcmv3.HttpConnectionManager{StatPrefix: "outbound_0.0.0.0_8080", Tracing: zipkinTracing(collector, 100), RequestIdExtension: uuidExtension(),
			RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: ads(), RouteConfigName: "http.8080"}}}
		return &listenerv3.Listener{Name: name, Address: sockAddr("127.0.0.1", 0), TrafficDirection: corev3.TrafficDirection_OUTBOUND,
			FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{hcmFilter(h)}}}}
	}
	cp := newControlPlane(t, "127.0.0.1:0")
	cp.set("1", listener("0.0.0.0_8080", "zipkin"), listener("missing", "outbound|9411||nowhere.istio-system.svc.cluster.local"),
		&routev3.RouteConfiguration{Name: "http.8080", VirtualHosts: []*routev3.VirtualHost{{Name: "bookinfo", Domains: []string{"*"},
			Routes: []*routev3.Route{{Match: prefix("/productpage"), Action: toCluster("app"),
				Decorator: &routev3.Decorator{Operation: "productpage.default.svc.cluster.local:9080/productpage"}}}}}},
		staticCluster("app", app), dns)
	md, err := structpb.NewStruct(map[string]any{"NAMESPACE": "istio-system", "WORKLOAD_NAME": "istio-ingressgateway",
		"LABELS": map[string]any{"app": "istio-ingressgateway", "istio": "ingressgateway"}})
	if err != nil {
		t.Fatal(err)
	}
	p := runProxy(t, cp.addr, Config{Resolver: r, TraceFlushInterval: 50 * time.Millisecond,
		Node: &corev3.Node{Id: "router~10.0.0.9~istio-ingressgateway-abc.istio-system~istio-system.svc.cluster.local", Metadata: md}})
	get(t, http.DefaultClient, p.addr(t, "0.0.0.0_8080"), "bookinfo.example.com", "/productpage", "X-B3-TraceId", tid(1), "X-B3-SpanId", "0000000000000001", "X-B3-Sampled", "1")
	s := z.trace(tid(1), 1)[0]
	if s.Kind != model.Client || s.Name != "productpage.default.svc.cluster.local:9080/productpage" ||
		s.LocalEndpoint.ServiceName != "istio-ingressgateway.istio-system" || s.LocalEndpoint.IPv4.String() != "10.0.0.9" {
		t.Errorf("gateway span %s %q from %+v", s.Kind, s.Name, s.LocalEndpoint)
	}
	get(t, http.DefaultClient, p.addr(t, "missing"), "bookinfo.example.com", "/productpage")
	waitFor(t, "reports_skipped_no_cluster", func() bool {
		return scrapeCounter(t, p, "envoy_tracing_zipkin_reports_skipped_no_cluster") == 1
	})
}

func tid(n int) string { return "463ac35c9f6413ad" + tracing.IDString(uint64(n)) }

// TestTracingEdgeSanitizes: at the edge (use_remote_address, Istio's
// gateways) every request is external, so, as Envoy, the proxy gives it a
// request id of its own and drops x-envoy-force-trace and
// x-envoy-decorator-operation: a client cannot force a trace at 0 %
// sampling, neither with that header nor with a decision packed into the
// x-request-id it sends. A sidecar's connection manager keeps both.
func TestTracingEdgeSanitizes(t *testing.T) {
	z := newZipkinReceiver(t, "127.0.0.5")
	seen := make(chan http.Header, 4)
	app := handlerBackend(t, "127.0.0.3", func(w http.ResponseWriter, r *http.Request) { seen <- r.Header.Clone() })
	listener := func(name string, edge bool) *listenerv3.Listener {
		h := &hcmv3.HttpConnectionManager{StatPrefix: name, Tracing: zipkinTracing("zipkin", 0), RequestIdExtension: uuidExtension(),
			UseRemoteAddress: wrapperspb.Bool(edge),
			RouteSpecifier:   &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: ads(), RouteConfigName: "http.8080"}}}
		return &listenerv3.Listener{Name: name, Address: sockAddr("127.0.0.1", 0), TrafficDirection: corev3.TrafficDirection_OUTBOUND,
			FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{hcmFilter(h)}}}}
	}
	cp := newControlPlane(t, "127.0.0.1:0")
	cp.set("1", listener("edge", true), listener("mesh", false),
		&routev3.RouteConfiguration{Name: "http.8080", VirtualHosts: []*routev3.VirtualHost{{Name: "any", Domains: []string{"*"},
			Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster("app")}}}}},
		staticCluster("app", app), staticCluster("zipkin", z.addr))
	p := runProxy(t, cp.addr, Config{TraceFlushInterval: 50 * time.Millisecond})
	const forcedID = "4e7ac0f8-4c3b-ad6e-9f5a-1f0d5b2e7c11" // 'a' at 14: forced
	send := func(listener string) http.Header {
		t.Helper()
		if code, _, _ := get(t, http.DefaultClient, p.addr(t, listener), "app.example.com", "/",
			"X-Request-Id", forcedID, "X-Envoy-Force-Trace", "true", "X-Envoy-Decorator-Operation", "spoofed"); code != http.StatusOK {
			t.Fatalf("%s: status %d", listener, code)
		}
		return <-seen
	}
	edge := send("edge")
	if got := edge.Get("X-Request-Id"); got == forcedID || got == "" {
		t.Errorf("edge: the app got x-request-id %q, want one the proxy made", got)
	}
	for _, h := range []string{"X-Envoy-Force-Trace", "X-Envoy-Decorator-Operation"} {
		if v := edge.Get(h); v != "" {
			t.Errorf("edge: %s %q reached the app", h, v)
		}
	}
	time.Sleep(300 * time.Millisecond) // several flush intervals
	if n := scrapeCounter(t, p, "envoy_tracing_zipkin_spans_sent"); n != 0 {
		t.Fatalf("edge at 0 %%: %v spans sent for a client's forced request", n)
	}
	mesh := send("mesh")
	if got := mesh.Get("X-Request-Id"); got != forcedID {
		t.Errorf("mesh: x-request-id %q, want the caller's %q", got, forcedID)
	}
	waitFor(t, "the mesh's forced span", func() bool { return scrapeCounter(t, p, "envoy_tracing_zipkin_spans_sent") == 1 })
}
