package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./lab/console/graph -run %s -update)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the graph built; review with:\n  go test ./lab/console/graph -run '%s' -update && git diff %s", path, t.Name(), path)
	}
}

// bookinfoEnv is one Prometheus holding bookinfo's traffic, shared by the
// tests that only read it.
func bookinfoEnv(t *testing.T) *promEnv {
	t.Helper()
	p := newPromEnv(t)
	p.load(t, bookinfoTraffic(), true)
	return p
}

func build(t *testing.T, p *promEnv, mesh Mesh, o Options) *Config {
	t.Helper()
	if o.Namespaces == nil {
		o.Namespaces = []string{ns}
	}
	if o.QueryTime.IsZero() {
		o.QueryTime = queryTime
	}
	c, err := Build(context.Background(), p.api, mesh, o)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return c
}

func TestBookinfoGolden(t *testing.T) {
	p := bookinfoEnv(t)
	for _, gt := range []string{TypeApp, TypeVersionedApp, TypeWorkload, TypeService} {
		t.Run(gt, func(t *testing.T) {
			c := build(t, p, bookinfoMesh(), Options{GraphType: gt, InjectServiceNodes: true})
			got, err := json.MarshalIndent(c, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "bookinfo-"+gt+".json", append(got, '\n'))
			// The same traffic gives the same bytes.
			again, _ := json.MarshalIndent(build(t, p, bookinfoMesh(), Options{GraphType: gt, InjectServiceNodes: true}), "", "  ")
			if !bytes.Equal(got, again) {
				t.Error("two builds of the same graph differ")
			}
		})
	}
}

func nodeByID(c *Config, id string) *NodeData {
	for _, n := range c.Elements.Nodes {
		if n.Data.ID == id {
			return n.Data
		}
	}
	return nil
}

func edgeBetween(c *Config, src, dst, protocol string) *EdgeData {
	for _, e := range c.Elements.Edges {
		if e.Data.Source == src && e.Data.Target == dst && e.Data.Traffic.Protocol == protocol {
			return e.Data
		}
	}
	return nil
}

const (
	idGateway     = "wl:Kubernetes:istio-system:istio-ingressgateway"
	idProductpage = "wl:Kubernetes:book-demo:productpage-v1"
	idReviewsSvc  = "svc:Kubernetes:book-demo:reviews"
	idReviewsV3   = "wl:Kubernetes:book-demo:reviews-v3"
	idRatingsSvc  = "svc:Kubernetes:book-demo:ratings"
	idUnknown     = "unknown:Kubernetes:source"
)

// TestBookinfoWorkloadGraph checks the workload graph's numbers against
// the traffic written: rates once (not twice for both reporters),
// percentages, responses, mTLS, response times, throughput and badges.
func TestBookinfoWorkloadGraph(t *testing.T) {
	p := bookinfoEnv(t)
	c := build(t, p, bookinfoMesh(), Options{GraphType: TypeWorkload, InjectServiceNodes: true})
	if c.EmptyReason != nil {
		t.Fatalf("emptyReason = %+v on a graph with traffic", c.EmptyReason)
	}
	edges := []struct {
		name, src, dst, protocol string
		check                    func(e *EdgeData) string
	}{
		{"gateway to productpage service", idGateway, "svc:Kubernetes:book-demo:productpage", "http", func(e *EdgeData) string {
			return expect(e.Traffic.Rates["http"], "10.00", e.Traffic.Rates["httpPercentReq"], "100.0", e.IsMTLS, "100",
				e.Traffic.Responses["200"].Flags["-"], "100.0", e.Throughput, "5000",
				e.SourcePrincipal, "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway")
		}},
		{"productpage to reviews service", idProductpage, idReviewsSvc, "http", func(e *EdgeData) string {
			return expect(e.Traffic.Rates["http"], "10.00", e.Traffic.Rates["http5xx"], "1.00",
				e.Traffic.Rates["httpPercentReq"], "50.0", e.Traffic.Rates["httpPercentErr"], "10.0",
				e.Traffic.Responses["503"].Flags["UF"], "10.0", e.Traffic.Responses["200"].Flags["-"], "90.0",
				e.Traffic.Responses["200"].Hosts["reviews.book-demo.svc.cluster.local"], "90.0",
				// Response time is on the edges into workloads (kiali-2297).
				e.ResponseTime, "")
		}},
		{"reviews service to v3", idReviewsSvc, idReviewsV3, "http", func(e *EdgeData) string {
			return expect(e.Traffic.Rates["http"], "3.00", e.Traffic.Rates["http5xx"], "1.00",
				e.Traffic.Rates["httpPercentReq"], "30.0", e.ResponseTime, "30", e.IsMTLS, "100",
				e.DestPrincipal, "spiffe://cluster.local/ns/book-demo/sa/reviews")
		}},
		{"reviews service to v1", idReviewsSvc, "wl:Kubernetes:book-demo:reviews-v1", "http", func(e *EdgeData) string {
			return expect(e.Traffic.Rates["http"], "4.00", e.ResponseTime, "8.00", e.Traffic.Rates["httpPercentReq"], "40.0")
		}},
		{"unknown to productpage", idUnknown, "svc:Kubernetes:book-demo:productpage", "http", func(e *EdgeData) string {
			return expect(e.Traffic.Rates["http"], "0.50", e.IsMTLS, "")
		}},
		{"ratings to mongodb over TCP", "wl:Kubernetes:book-demo:ratings-v1", "svc:Kubernetes:book-demo:mongodb", "tcp", func(e *EdgeData) string {
			// MongoDB has no sidecar: only ratings' proxy reports, and
			// nothing says the connection had mTLS.
			return expect(e.Traffic.Rates["tcp"], "2048.00", e.IsMTLS, "")
		}},
	}
	for _, tc := range edges {
		t.Run(tc.name, func(t *testing.T) {
			e := edgeBetween(c, tc.src, tc.dst, tc.protocol)
			if e == nil {
				t.Fatalf("no %s edge %s -> %s", tc.protocol, tc.src, tc.dst)
			}
			if msg := tc.check(e); msg != "" {
				t.Error(msg)
			}
		})
	}
	nodes := []struct {
		id    string
		check func(n *NodeData) string
	}{
		{idGateway, func(n *NodeData) string {
			if n.IsGateway == nil || !n.IsRoot || !n.IsOutside || n.HasMissingSC {
				return "gateway: want isGateway, isRoot, isOutside and no hasMissingSC"
			}
			return expect(strings.Join(n.IsGateway.IngressInfo.Hostnames, ","), "bookinfo.example.com", n.Traffic[0].Rates["httpOut"], "10.00")
		}},
		{idReviewsSvc, func(n *NodeData) string {
			if !n.HasCB || n.HasVS == nil || !n.HasTrafficShifting || !n.HasRequestRouting || n.HasFaultInjection {
				return "reviews service: want hasCB, hasVS, hasTrafficShifting, hasRequestRouting, no hasFaultInjection"
			}
			return expect(n.Traffic[0].Rates["httpIn"], "10.00", n.Traffic[0].Rates["httpIn5xx"], "1.00", n.Traffic[0].Rates["httpOut"], "10.00")
		}},
		{idRatingsSvc, func(n *NodeData) string {
			if !n.HasFaultInjection || !n.HasRequestTimeout || n.HasTrafficShifting || n.HasCB {
				return "ratings service: want hasFaultInjection and hasRequestTimeout only"
			}
			return ""
		}},
		{"svc:Kubernetes:book-demo:productpage", func(n *NodeData) string {
			if n.HasVS != nil {
				return "productpage: the gateway-only VirtualService must not badge it"
			}
			return ""
		}},
		{idReviewsV3, func(n *NodeData) string {
			if !n.HasCB || n.IsRoot || n.App != "reviews" || n.Version != "v3" {
				return "reviews-v3: want hasCB (subset of a DR with outlier detection), app reviews, version v3"
			}
			if h := n.HealthData; h == nil || h.Requests.Inbound["http"]["503"] != 1 || h.Requests.Inbound["http"]["200"] != 2 {
				return "reviews-v3: want healthData inbound http 200: 2, 503: 1"
			}
			return ""
		}},
		{"wl:Kubernetes:book-demo:mongodb-v1", func(n *NodeData) string {
			if !n.HasMissingSC || !n.IsOutOfMesh || !strings.Contains(n.Explain, "mongodb-v1") {
				return "mongodb-v1: want hasMissingSC, isOutOfMesh and an explanation naming it"
			}
			return ""
		}},
		{"svc:Kubernetes:book-demo:api.example.com", func(n *NodeData) string {
			if n.IsServiceEntry == nil || n.IsServiceEntry.Location != "MESH_EXTERNAL" {
				return "api.example.com: want isServiceEntry MESH_EXTERNAL"
			}
			return expect(n.Traffic[0].Rates["httpIn"], "1.00")
		}},
		{idUnknown, func(n *NodeData) string {
			if n.NodeType != "unknown" || !n.IsRoot || !strings.Contains(n.Explain, "outside the mesh") {
				return "unknown: want nodeType unknown, isRoot and explain"
			}
			return ""
		}},
	}
	for _, tc := range nodes {
		t.Run(tc.id, func(t *testing.T) {
			n := nodeByID(c, tc.id)
			if n == nil {
				t.Fatalf("no node %s", tc.id)
			}
			if msg := tc.check(n); msg != "" {
				t.Errorf("%s: %+v", msg, *n)
			}
		})
	}
}

// expect compares pairs (got, want, got, want, ...) and names the first
// mismatch.
func expect(pairs ...string) string {
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i] != pairs[i+1] {
			return "value " + itoa(i/2) + ": got " + quote(pairs[i]) + ", want " + quote(pairs[i+1])
		}
	}
	return ""
}

func itoa(i int) string     { b, _ := json.Marshal(i); return string(b) }
func quote(s string) string { b, _ := json.Marshal(s); return string(b) }

func TestGraphTypes(t *testing.T) {
	p := bookinfoEnv(t)
	tests := []struct {
		graphType string
		inject    bool
		wantNodes []string
		wantEdge  [2]string
	}{
		{TypeApp, true, []string{"app:Kubernetes:book-demo:reviews", idReviewsSvc}, [2]string{idReviewsSvc, "app:Kubernetes:book-demo:reviews"}},
		{TypeVersionedApp, true, []string{"vapp:Kubernetes:book-demo:reviews-v2"}, [2]string{"vapp:Kubernetes:book-demo:reviews-v2", idRatingsSvc}},
		{TypeWorkload, false, []string{idProductpage, "wl:Kubernetes:book-demo:reviews-v1"}, [2]string{idProductpage, "wl:Kubernetes:book-demo:reviews-v1"}},
		{TypeService, false, []string{idReviewsSvc, idRatingsSvc, idGateway}, [2]string{idReviewsSvc, idRatingsSvc}},
	}
	for _, tc := range tests {
		t.Run(tc.graphType, func(t *testing.T) {
			c := build(t, p, bookinfoMesh(), Options{GraphType: tc.graphType, InjectServiceNodes: tc.inject})
			for _, id := range tc.wantNodes {
				if nodeByID(c, id) == nil {
					ids, _ := sortedIDs(c)
					t.Errorf("no node %s in %v", id, ids)
				}
			}
			if edgeBetween(c, tc.wantEdge[0], tc.wantEdge[1], "http") == nil {
				_, ids := sortedIDs(c)
				t.Errorf("no edge %s -> %s in %v", tc.wantEdge[0], tc.wantEdge[1], ids)
			}
			if tc.graphType == TypeService {
				for _, n := range c.Elements.Nodes {
					if n.Data.NodeType != "service" && !n.Data.IsRoot {
						t.Errorf("service graph has non-service, non-root node %s", n.Data.ID)
					}
				}
				// reviews → ratings is what v2 and v3 sent: 5 req/s.
				if e := edgeBetween(c, idReviewsSvc, idRatingsSvc, "http"); e != nil && e.Traffic.Rates["http"] != "5.00" {
					t.Errorf("reviews -> ratings = %s req/s, want 5.00", e.Traffic.Rates["http"])
				}
				// productpage → reviews takes what reviews' versions take,
				// weighed by their requests: (4*8 + 6*30) / 10 = 21.2.
				if e := edgeBetween(c, "svc:Kubernetes:book-demo:productpage", idReviewsSvc, "http"); e == nil || e.ResponseTime != "21" {
					t.Errorf("productpage -> reviews = %+v, want responseTime 21", e)
				}
			}
			if tc.graphType == TypeApp {
				// The app graph's reviews node merges v1, v2, v3: its
				// average response time weighs them by their requests.
				e := edgeBetween(c, idReviewsSvc, "app:Kubernetes:book-demo:reviews", "http")
				if e != nil && e.ResponseTime != "21" { // (4*8 + 6*30) / 10 = 21.2
					t.Errorf("reviews response time = %q, want 21", e.ResponseTime)
				}
			}
		})
	}
}

func TestResponseTimeQuantiles(t *testing.T) {
	p := bookinfoEnv(t)
	// All of reviews-v3's requests take 30 ms: the (25, 50] bucket, which
	// histogram_quantile interpolates.
	for _, tc := range []struct{ q, want string }{{"50", "38"}, {"95", "49"}, {"99", "50"}, {"avg", "30"}} {
		t.Run(tc.q, func(t *testing.T) {
			c := build(t, p, bookinfoMesh(), Options{GraphType: TypeWorkload, InjectServiceNodes: true, ResponseTime: tc.q})
			e := edgeBetween(c, idReviewsSvc, idReviewsV3, "http")
			if e == nil || e.ResponseTime != tc.want {
				t.Errorf("responseTime %s = %+v, want %s", tc.q, e, tc.want)
			}
		})
	}
}

func TestIdleAndDeadNodes(t *testing.T) {
	p := bookinfoEnv(t)
	c := build(t, p, bookinfoMesh(), Options{GraphType: TypeWorkload, InjectServiceNodes: true, IdleNodes: true})
	legacy := nodeByID(c, "svc:Kubernetes:book-demo:legacy")
	if legacy == nil || !legacy.IsIdle || !legacy.IsDead || !strings.Contains(legacy.Explain, "selects no workload") {
		t.Errorf("legacy service = %+v, want isIdle, isDead and explained", legacy)
	}
	if n := nodeByID(c, "wl:Kubernetes:book-demo:productpage-v1"); n == nil || n.IsIdle {
		t.Errorf("productpage-v1 = %+v, want a node with traffic, not idle", n)
	}
	without := build(t, p, bookinfoMesh(), Options{GraphType: TypeWorkload, InjectServiceNodes: true})
	if nodeByID(without, "svc:Kubernetes:book-demo:legacy") != nil {
		t.Error("legacy service shown without idleNodes")
	}
}

func TestAppenderSelection(t *testing.T) {
	p := bookinfoEnv(t)
	c := build(t, p, bookinfoMesh(), Options{GraphType: TypeWorkload, InjectServiceNodes: true, Appenders: []string{"responseTime", "health"}})
	e := edgeBetween(c, idReviewsSvc, idReviewsV3, "http")
	if e == nil || e.ResponseTime == "" || e.IsMTLS != "" || e.Throughput != "" {
		t.Errorf("with only responseTime: edge = %+v", e)
	}
	if n := nodeByID(c, idReviewsSvc); n == nil || n.HasCB {
		t.Errorf("with only responseTime: reviews = %+v, want no badges", n)
	}
}

func TestMultipleNamespaces(t *testing.T) {
	p := bookinfoEnv(t)
	c := build(t, p, bookinfoMesh(), Options{Namespaces: []string{ns, "istio-system"}, GraphType: TypeWorkload, InjectServiceNodes: true})
	gw := nodeByID(c, idGateway)
	if gw == nil || gw.IsOutside {
		t.Errorf("gateway with istio-system requested = %+v, want inside", gw)
	}
	// The gateway's requests come back from both namespaces' queries and
	// both proxies: still counted once.
	if e := edgeBetween(c, idGateway, "svc:Kubernetes:book-demo:productpage", "http"); e == nil || e.Traffic.Rates["http"] != "10.00" {
		t.Errorf("gateway -> productpage = %+v, want 10.00 req/s", e)
	}
	// With istio-system requested, the gateway's unroutable requests show
	// as an unknown destination, explained.
	u := nodeByID(c, "unknown:Kubernetes:unknown")
	if u == nil || u.NodeType != "unknown" || !strings.Contains(u.Explain, "reached no service") {
		t.Errorf("unknown destination = %+v", u)
	}
	if e := edgeBetween(c, idGateway, "unknown:Kubernetes:unknown", "http"); e == nil || e.Traffic.Responses["404"] == nil || e.Traffic.Responses["404"].Flags["NR"] != "100.0" {
		t.Errorf("gateway -> unknown = %+v, want 404 NR 100.0", e)
	}
}

func TestEmptyReasons(t *testing.T) {
	down, downURL := unreachableURL(t)
	empty := newPromEnv(t)
	scraped := newPromEnv(t)
	scraped.write(t, []counter{{map[string]string{"__name__": "up", "job": "kubernetes-pods"}, 0}}, queryTime.Add(-2*time.Minute), queryTime, 15*time.Second)
	old := newPromEnv(t)
	// Traffic that stopped an hour before the graph's window.
	old.writeStopped(t, istioSeries(bookinfoTraffic(), false), queryTime.Add(-2*time.Hour), queryTime.Add(-time.Hour), queryTime, 15*time.Second)
	noSidecars := bookinfoMesh()
	for i := range noSidecars.Workloads {
		noSidecars.Workloads[i].Pod.Annotations = nil
	}
	tests := []struct {
		name     string
		api      *promEnv
		mesh     Mesh
		duration time.Duration
		code     string
		message  string
	}{
		{"prometheus unreachable", nil, bookinfoMesh(), 0, ReasonPrometheusUnreachable, "cannot query Prometheus at " + downURL},
		{"no sidecars", empty, noSidecars, 0, ReasonNoSidecars, "no workload in book-demo has a sidecar"},
		{"no workloads", empty, Mesh{}, 0, ReasonNoSidecars, "no workloads in book-demo"},
		{"nothing scraped", empty, bookinfoMesh(), 0, ReasonNoScrapes, "has not scraped anything yet"},
		{"no istio metrics", scraped, bookinfoMesh(), 0, ReasonNoScrapes, "no Istio metrics yet"},
		{"no traffic in the window", old, bookinfoMesh(), time.Minute, ReasonNoTraffic, "no requests in the last 1m in book-demo; send traffic or widen the duration"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{Namespaces: []string{ns}, QueryTime: queryTime, Duration: tc.duration, InjectServiceNodes: true}
			var c *Config
			var err error
			if tc.api == nil {
				o.PrometheusURL = downURL
				c, err = Build(context.Background(), down, tc.mesh, o)
			} else {
				o.PrometheusURL = tc.api.url
				c, err = Build(context.Background(), tc.api.api, tc.mesh, o)
			}
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if c.EmptyReason == nil {
				t.Fatalf("no emptyReason; graph has %d edges", len(c.Elements.Edges))
			}
			if c.EmptyReason.Code != tc.code || !strings.Contains(c.EmptyReason.Message, tc.message) {
				t.Errorf("emptyReason = %+v, want code %s and a message containing %q", *c.EmptyReason, tc.code, tc.message)
			}
			if c.Elements.Nodes == nil || c.Elements.Edges == nil {
				t.Error("null node or edge array in an empty graph")
			}
		})
	}
}

func TestBadOptions(t *testing.T) {
	p := newPromEnv(t)
	tests := []struct {
		name  string
		o     Options
		field string
	}{
		{"no namespace", Options{}, "namespaces"},
		{"bad namespace", Options{Namespaces: []string{`a"b`}}, "namespaces"},
		{"bad graph type", Options{Namespaces: []string{ns}, GraphType: "pods"}, "graphType"},
		{"bad duration", Options{Namespaces: []string{ns}, Duration: time.Millisecond}, "duration"},
		{"bad response time", Options{Namespaces: []string{ns}, ResponseTime: "90"}, "responseTime"},
		{"bad throughput", Options{Namespaces: []string{ns}, Throughput: "both"}, "throughput"},
		{"bad appender", Options{Namespaces: []string{ns}, Appenders: []string{"colour"}}, "appenders"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(context.Background(), p.api, Mesh{}, tc.o)
			if !errors.Is(err, ErrBadOptions) || !strings.Contains(err.Error(), tc.field+":") {
				t.Errorf("err = %v, want ErrBadOptions naming %s", err, tc.field)
			}
		})
	}
}

func TestCanceledContext(t *testing.T) {
	p := bookinfoEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Build(ctx, p.api, bookinfoMesh(), Options{Namespaces: []string{ns}, QueryTime: queryTime}); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

func TestIdleEdges(t *testing.T) {
	p := newPromEnv(t)
	p.writeStopped(t, istioSeries(bookinfoTraffic(), false), queryTime.Add(-2*time.Hour), queryTime.Add(-time.Hour), queryTime, 15*time.Second)
	for _, tc := range []struct {
		idle  bool
		edges bool
	}{{false, false}, {true, true}} {
		c := build(t, p, bookinfoMesh(), Options{GraphType: TypeWorkload, InjectServiceNodes: true, IdleEdges: tc.idle, Duration: time.Minute})
		if got := len(c.Elements.Edges) > 0; got != tc.edges {
			t.Errorf("idleEdges=%v: %d edges, emptyReason %+v", tc.idle, len(c.Elements.Edges), c.EmptyReason)
			continue
		}
		if tc.idle {
			e := edgeBetween(c, idProductpage, idReviewsSvc, "http")
			if e == nil || e.Traffic.Rates["http"] != "0.00" || c.EmptyReason != nil {
				t.Errorf("idle productpage -> reviews = %+v, emptyReason %+v; want rate 0.00 and no reason", e, c.EmptyReason)
			}
		}
	}
}

func TestGRPC(t *testing.T) {
	p := newPromEnv(t)
	frontend := peer{ns, "frontend-v1", "frontend", "v1"}
	backend := peer{ns, "backend-v1", "backend", "v1"}
	p.load(t, []request{
		{src: frontend, dst: backend, svc: "backend", svcNs: ns, protocol: "grpc", code: "200", rps: 9, ms: 5, mtls: true},
		{src: frontend, dst: backend, svc: "backend", svcNs: ns, protocol: "grpc", code: "200", grpc: "14", rps: 1, ms: 5, mtls: true},
	}, false)
	c := build(t, p, Mesh{}, Options{GraphType: TypeWorkload, InjectServiceNodes: true})
	e := edgeBetween(c, "svc:Kubernetes:book-demo:backend", "wl:Kubernetes:book-demo:backend-v1", "grpc")
	if e == nil {
		t.Fatalf("no grpc edge; edges %v", c.Elements.Edges)
	}
	if msg := expect(e.Traffic.Rates["grpc"], "10.00", e.Traffic.Rates["grpcErr"], "1.00", e.Traffic.Rates["grpcPercentErr"], "10.0",
		e.Traffic.Responses["14"].Flags["-"], "10.0", e.Traffic.Responses["0"].Flags["-"], "90.0", e.IsMTLS, "100"); msg != "" {
		t.Error(msg)
	}
	n := nodeByID(c, "wl:Kubernetes:book-demo:backend-v1")
	if n == nil || len(n.Traffic) != 1 || n.Traffic[0].Rates["grpcInErr"] != "1.00" {
		t.Errorf("backend-v1 = %+v, want grpcInErr 1.00", n)
	}
}

// TestPassthrough: requests to an address outside the registry end on a
// PassthroughCluster node that says what to do about it.
func TestPassthrough(t *testing.T) {
	p := newPromEnv(t)
	p.load(t, []request{{src: productpage, dst: unknownPeer, svc: "PassthroughCluster", svcNs: "unknown", host: "PassthroughCluster",
		code: "200", rps: 2, ms: 50, reporters: []string{"source"}}}, false)
	c := build(t, p, bookinfoMesh(), Options{GraphType: TypeWorkload, InjectServiceNodes: true})
	n := nodeByID(c, "svc:Kubernetes:unknown:PassthroughCluster")
	if n == nil || !strings.Contains(n.Explain, "ServiceEntry") {
		ids, _ := sortedIDs(c)
		t.Fatalf("PassthroughCluster node = %+v in %v", n, ids)
	}
	if e := edgeBetween(c, idProductpage, n.ID, "http"); e == nil || e.Traffic.Rates["http"] != "2.00" || e.ResponseTime != "50" {
		t.Errorf("productpage -> PassthroughCluster = %+v, want 2.00 req/s in 50 ms", e)
	}
}

// TestMinimumRate: Kiali records rates from 0.01 req/min; below, no edge.
// A request without a response (code 0) is "-" and httpNoResponse.
func TestMinimumRate(t *testing.T) {
	p := newPromEnv(t)
	p.load(t, []request{
		{src: productpage, dst: details, svc: "details", svcNs: ns, code: "0", flags: "UF", rps: 0.02 / 60, ms: 1},
		{src: productpage, dst: reviewsV1, svc: "reviews", svcNs: ns, code: "200", rps: 0.005 / 60, ms: 1},
	}, false)
	c := build(t, p, bookinfoMesh(), Options{GraphType: TypeWorkload})
	e := edgeBetween(c, idProductpage, "wl:Kubernetes:book-demo:details-v1", "http")
	if e == nil || e.Traffic.Responses["-"] == nil || e.Traffic.Responses["-"].Flags["UF"] != "100.0" || e.Traffic.Rates["httpNoResponse"] == "" {
		t.Errorf("productpage -> details at 0.02 req/min = %+v, want an edge with response \"-\" UF", e)
	}
	if e := edgeBetween(c, idProductpage, "wl:Kubernetes:book-demo:reviews-v1", "http"); e != nil {
		t.Errorf("productpage -> reviews-v1 at 0.005 req/min = %+v, want no edge", e)
	}
}

func TestNoPrometheusClient(t *testing.T) {
	c, err := Build(context.Background(), nil, bookinfoMesh(), Options{Namespaces: []string{ns}})
	if err != nil || c.EmptyReason == nil || c.EmptyReason.Code != ReasonPrometheusUnreachable || !strings.Contains(c.EmptyReason.Message, "no Prometheus is configured") {
		t.Errorf("Build without a client = %+v, %v", c, err)
	}
}
