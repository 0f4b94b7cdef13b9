package telemetry

import (
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/types/known/structpb"
)

func node(t testing.TB, workload, ns string, labels map[string]any) *Node {
	t.Helper()
	md, err := structpb.NewStruct(map[string]any{"WORKLOAD_NAME": workload, "NAMESPACE": ns, "LABELS": labels, "NAME": workload + "-abc12"})
	if err != nil {
		t.Fatal(err)
	}
	n, err := NewNode(&corev3.Node{Id: "sidecar~198.18.0.9~" + workload + "-abc12." + ns + "~" + ns + ".svc.cluster.local", Metadata: md})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPeerOf(t *testing.T) {
	tests := []struct {
		name   string
		labels map[string]any
		want   Peer
	}{
		{"app and version", map[string]any{"app": "reviews", "version": "v2"},
			Peer{Workload: "reviews-v2", Namespace: "default", Principal: Unknown, App: "reviews", Version: "v2",
				CanonicalService: "reviews", CanonicalRevision: "v2", Cluster: "Kubernetes"}},
		{"canonical labels win", map[string]any{"app": "reviews", "version": "v2",
			"service.istio.io/canonical-name": "reviews-svc", "service.istio.io/canonical-revision": "r7"},
			Peer{Workload: "reviews-v2", Namespace: "default", Principal: Unknown, App: "reviews", Version: "v2",
				CanonicalService: "reviews-svc", CanonicalRevision: "r7", Cluster: "Kubernetes"}},
		{"no labels", map[string]any{},
			Peer{Workload: "reviews-v2", Namespace: "default", Principal: Unknown, App: Unknown, Version: Unknown,
				CanonicalService: "reviews-v2", CanonicalRevision: "latest", Cluster: "Kubernetes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := *node(t, "reviews-v2", "default", tt.labels).Peer; got != tt.want {
				t.Errorf("peer = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestNodeWithoutMetadata(t *testing.T) {
	n, err := NewNode(&corev3.Node{Id: "router~198.18.0.3~gw.istio-system~istio-system.svc.cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	if n.Peer.Workload != Unknown || n.Peer.Cluster != "Kubernetes" {
		t.Errorf("peer = %+v, want an unknown workload in cluster Kubernetes", *n.Peer)
	}
}

func TestMetadataExchange(t *testing.T) {
	client := node(t, "productpage-v1", "default", map[string]any{"app": "productpage", "version": "v1"})
	m := New()

	h := http.Header{"Accept": {"*/*"}}
	client.AddMetadata(h)
	if len(h[HeaderMetadata]) != 1 {
		t.Fatalf("exchange header not set: %v", h)
	}
	// A peer that also sends Istio's ID header has it removed too.
	h[HeaderMetadataID] = []string{"sidecar~198.18.0.9~productpage-v1-abc12.default~default.svc.cluster.local"}
	sent := h.Clone()
	p := m.TakePeer(h)
	if *p != *client.Peer {
		t.Errorf("peer read back = %+v, want %+v", *p, *client.Peer)
	}
	if _, ok := h[HeaderMetadata]; ok {
		t.Error("metadata header left for the application")
	}
	if _, ok := h[HeaderMetadataID]; ok {
		t.Error("metadata id header left for the application")
	}
	if again := m.TakePeer(sent); again != p {
		t.Error("the same header value decoded into a new peer: cache missed")
	}
	if allocs := testing.AllocsPerRun(100, func() {
		client.AddMetadata(h)
		m.TakePeer(h)
	}); allocs != 0 {
		t.Errorf("reading a known peer allocates %v times", allocs)
	}

	for _, bad := range []string{"", "!!not base64!!"} {
		if got := m.TakePeer(http.Header{HeaderMetadata: {bad}}); got != UnknownPeer {
			t.Errorf("TakePeer(%q) = %+v, want UnknownPeer", bad, got)
		}
	}
	if got := m.TakePeer(http.Header{}); got != UnknownPeer {
		t.Errorf("no headers: peer = %+v, want UnknownPeer", got)
	}
}

func TestPeerCacheBounded(t *testing.T) {
	m := New()
	for i := 0; i < 3*maxPeers; i++ {
		m.TakePeer(http.Header{HeaderMetadata: {strings.Repeat("A", i%97) + string(rune('a'+i%26)) + strings.Repeat("B", i/97)}})
	}
	if n := len(m.peers); n > maxPeers {
		t.Errorf("peer cache holds %d values, bound is %d", n, maxPeers)
	}
}

func TestRecordRequest(t *testing.T) {
	src := node(t, "productpage-v1", "default", map[string]any{"app": "productpage", "version": "v1"}).Peer
	dst := node(t, "reviews-v2", "default", map[string]any{"app": "reviews", "version": "v2"}).Peer
	m := New()
	svc := m.Service("reviews.default.svc.cluster.local", "reviews", "default")
	if m.Service("reviews.default.svc.cluster.local", "reviews", "default") != svc {
		t.Fatal("Service does not intern")
	}
	ok := Request{Reporter: Destination, Source: src, Destination: dst, Service: svc, Code: 200, GRPCStatus: -1, Flags: "-", Security: SecurityNone}
	for i := 0; i < 3; i++ {
		m.RecordRequest(ok, 3*time.Millisecond, 200, 1500)
	}
	failed := ok
	failed.Code, failed.Flags = 503, "UF"
	m.RecordRequest(failed, 700*time.Microsecond, 200, 90)

	const want = `
# HELP istio_requests_total Requests handled by the proxy.
# TYPE istio_requests_total counter
istio_requests_total{connection_security_policy="none",destination_app="reviews",destination_canonical_revision="v2",destination_canonical_service="reviews",destination_cluster="Kubernetes",destination_principal="unknown",destination_service="reviews.default.svc.cluster.local",destination_service_name="reviews",destination_service_namespace="default",destination_version="v2",destination_workload="reviews-v2",destination_workload_namespace="default",grpc_response_status="",reporter="destination",request_protocol="http",response_code="200",response_flags="-",source_app="productpage",source_canonical_revision="v1",source_canonical_service="productpage",source_cluster="Kubernetes",source_principal="unknown",source_version="v1",source_workload="productpage-v1",source_workload_namespace="default"} 3
istio_requests_total{connection_security_policy="none",destination_app="reviews",destination_canonical_revision="v2",destination_canonical_service="reviews",destination_cluster="Kubernetes",destination_principal="unknown",destination_service="reviews.default.svc.cluster.local",destination_service_name="reviews",destination_service_namespace="default",destination_version="v2",destination_workload="reviews-v2",destination_workload_namespace="default",grpc_response_status="",reporter="destination",request_protocol="http",response_code="503",response_flags="UF",source_app="productpage",source_canonical_revision="v1",source_canonical_service="productpage",source_cluster="Kubernetes",source_principal="unknown",source_version="v1",source_workload="productpage-v1",source_workload_namespace="default"} 1
`
	if err := testutil.GatherAndCompare(m.Gatherer(), strings.NewReader(want), "istio_requests_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m.duration); n != 2 {
		t.Errorf("duration series = %d, want 2", n)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues(append(peerValues(Destination, src, dst, svc), "http", "200", "", "-", "none")...)); got != 3 {
		t.Errorf("requests = %v, want 3", got)
	}

	// Envoy's buckets: 3 ms falls in le="5", 0.7 ms in le="1".
	fams, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "istio_request_duration_milliseconds" {
			continue
		}
		for _, mt := range f.GetMetric() {
			hist := mt.GetHistogram()
			var code string
			for _, l := range mt.GetLabel() {
				if l.GetName() == "response_code" {
					code = l.GetValue()
				}
			}
			wantLE := map[string]float64{"200": 5, "503": 1}[code]
			for _, b := range hist.GetBucket() {
				below := b.GetUpperBound() < wantLE
				if n := b.GetCumulativeCount(); below && n != 0 || !below && n != hist.GetSampleCount() {
					t.Errorf("code %s: bucket le=%v holds %d of %d", code, b.GetUpperBound(), n, hist.GetSampleCount())
				}
			}
		}
	}
}

func TestRecordTCP(t *testing.T) {
	m := New()
	svc := m.Service("mongodb.default.svc.cluster.local", "mongodb", "default")
	k := Conn{Reporter: Source, Source: UnknownPeer, Destination: UnknownPeer, Service: svc, Flags: "-"}
	s := m.OpenConn(k)
	s.AddReceived(100)
	s.AddSent(2000)
	s.Close()
	if m.OpenConn(k) != s {
		t.Error("the same connection key made a new series")
	}
	if got := testutil.ToFloat64(s.opened); got != 2 {
		t.Errorf("opened = %v, want 2", got)
	}
	if got := testutil.ToFloat64(s.sent); got != 2000 {
		t.Errorf("sent = %v, want 2000", got)
	}
	if n := testutil.CollectAndCount(m.tcpOpened); n != 1 {
		t.Errorf("tcp series = %d, want 1", n)
	}
}

// TestRecordAllocs: once its series exists, a request is recorded without
// allocating.
func TestRecordAllocs(t *testing.T) {
	m := New()
	k := Request{Reporter: Source, Source: UnknownPeer, Destination: UnknownPeer,
		Service: m.Service("a.b.svc.cluster.local", "a", "b"), Code: 200, GRPCStatus: -1, Flags: "-"}
	m.RecordRequest(k, time.Millisecond, 100, 100)
	if n := testing.AllocsPerRun(1000, func() { m.RecordRequest(k, time.Millisecond, 100, 100) }); n != 0 {
		t.Errorf("RecordRequest allocates %v times per request", n)
	}
}

func BenchmarkRecordRequest(b *testing.B) {
	m := New()
	src := &Peer{Workload: "productpage-v1", Namespace: "default", Principal: Unknown, App: "productpage", Version: "v1",
		CanonicalService: "productpage", CanonicalRevision: "v1", Cluster: "Kubernetes"}
	k := Request{Reporter: Destination, Source: src, Destination: UnknownPeer,
		Service: m.Service("reviews.default.svc.cluster.local", "reviews", "default"), Code: 200, GRPCStatus: -1, Flags: "-", Security: SecurityNone}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.RecordRequest(k, 1500*time.Microsecond, 250, 1300)
		}
	})
}

func BenchmarkTakePeer(b *testing.B) {
	m := New()
	n := node(b, "productpage-v1", "default", map[string]any{"app": "productpage", "version": "v1"})
	h := http.Header{}
	b.ReportAllocs()
	for b.Loop() {
		n.AddMetadata(h)
		m.TakePeer(h)
	}
}

// TestOverrides: a filter's metrics[] drop a metric, remove labels (the
// series add up) and add dimensions; recording in an existing series
// with them allocates nothing either; a filter that changes nothing
// shares the standard series.
func TestOverrides(t *testing.T) {
	m := New()
	o, err := m.NewOverrides([]MetricConfig{
		{Name: "request_bytes", Drop: true},
		{Name: "requests_total", TagsToRemove: []string{"response_code"}, Dimensions: map[string]int{"request_host": 0}},
	})
	if err != nil {
		t.Fatal(err)
	}
	svc := m.Service("a.b.svc.cluster.local", "a", "b")
	for _, code := range []int{200, 404, 200} {
		k := Request{Reporter: Source, Source: UnknownPeer, Destination: UnknownPeer, Service: svc, Code: code, GRPCStatus: -1, Flags: "-",
			Overrides: o}
		m.RecordRequestDims(k, &Dims{"a.b:80"}, time.Millisecond, 10, 10)
	}
	k := Request{Reporter: Source, Source: UnknownPeer, Destination: UnknownPeer, Service: svc, Code: 200, GRPCStatus: -1, Flags: "-", Overrides: o}
	dims := &Dims{"a.b:80"}
	if n := testing.AllocsPerRun(1000, func() { m.RecordRequestDims(k, dims, time.Millisecond, 100, 100) }); n != 0 {
		t.Errorf("RecordRequest with overrides allocates %v times per request", n)
	}
	// A chain without the filter records the standard series beside
	// them: one family each, whose series differ in their labels.
	plain := k
	plain.Overrides = nil
	m.RecordRequest(plain, time.Millisecond, 10, 10)
	fams, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]int{}
	for _, f := range fams {
		byName[f.GetName()] = len(f.GetMetric())
		if f.GetName() == "istio_requests_total" {
			with := 0
			for _, s := range f.GetMetric() {
				for _, l := range s.GetLabel() {
					if l.GetName() == "response_code" {
						with++
					}
				}
			}
			if with != 1 {
				t.Errorf("%d requests_total series with response_code, want the plain one only", with)
			}
		}
	}
	if byName["istio_request_bytes"] != 1 || byName["istio_requests_total"] != 2 || byName["istio_request_duration_milliseconds"] != 2 {
		t.Errorf("series per metric %v; want request_bytes only the plain one (dropped by the filter), requests_total 2 (the filter's added up, the plain one), duration 2 (200 and 404; unchanged by the filter, it shares the plain series)", byName)
	}
	same, err := m.NewOverrides([]MetricConfig{{Name: "response_bytes"}})
	if err != nil {
		t.Fatal(err)
	}
	if same.plans[metricResponseBytes].vec != m.responseBytes {
		t.Error("an override that changes nothing does not share the standard series")
	}
	if _, err := m.NewOverrides([]MetricConfig{{Name: "requests_total", Dimensions: map[string]int{"bad-label": 0}}}); err == nil {
		t.Error("an invalid label name was accepted")
	}
}

func BenchmarkRecordRequestOverrides(b *testing.B) {
	m := New()
	o, err := m.NewOverrides([]MetricConfig{{Name: "requests_total", TagsToRemove: []string{"source_principal"}, Dimensions: map[string]int{"request_host": 0}}})
	if err != nil {
		b.Fatal(err)
	}
	k := Request{Reporter: Destination, Source: UnknownPeer, Destination: UnknownPeer,
		Service: m.Service("reviews.default.svc.cluster.local", "reviews", "default"), Code: 200, GRPCStatus: -1, Flags: "-", Security: SecurityNone,
		Overrides: o}
	dims := &Dims{"reviews:9080"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.RecordRequestDims(k, dims, 1500*time.Microsecond, 250, 1300)
		}
	})
}
