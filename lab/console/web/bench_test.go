package web

import (
	"encoding/json"
	"fmt"
	"testing"
)

// bigGraph generates a service graph of n services and e edges (a DAG, so
// dagre ranks it like a real call graph), in the contract's JSON.
func bigGraph(tb testing.TB, n, e int) []byte {
	type m = map[string]any
	nodes := make([]m, 0, n)
	for i := 0; i < n; i++ {
		nodes = append(nodes, m{"data": m{
			"id": fmt.Sprintf("svc-%d", i), "nodeType": "service", "cluster": "Kubernetes", "namespace": "big",
			"service": fmt.Sprintf("svc-%d", i), "app": fmt.Sprintf("svc-%d", i), "hasCB": i%17 == 0,
			"traffic": []m{{"protocol": "http", "rates": m{"httpIn": "1.00"}}},
		}})
	}
	// Ten tiers, each service calling services of the next tier, as a
	// layered architecture does (front ends, APIs, back ends, stores).
	const tiers = 10
	per := n / tiers
	edges := make([]m, 0, e)
	for k := 0; k < e; k++ {
		src := k % (n - per)
		dst := (src/per+1)*per + (k*7919+src*31)%per
		edges = append(edges, m{"data": m{
			"id": fmt.Sprintf("e-%d", k), "source": fmt.Sprintf("svc-%d", src), "target": fmt.Sprintf("svc-%d", dst),
			"isMTLS": "100", "responseTime": "12",
			"traffic": m{"protocol": "http", "rates": m{"http": "2.00", "httpPercentReq": "50.0", "http5xx": fmt.Sprintf("%.2f", float64(k%5)*0.05)},
				"responses": m{"200": m{"flags": m{"-": "100.0"}, "hosts": m{}}}},
		}})
	}
	b, err := json.Marshal(m{"timestamp": 1796515200, "duration": 60, "graphType": "service", "elements": m{"nodes": nodes, "edges": edges}})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// BenchmarkBrowserGraphLarge measures, in headless Chromium, one load of the
// graph page for a generated mesh of 1,000 services and 3,000 edges: fetch,
// decorate, dagre layout and first paint (ms/op is wall time per load).
// The "dagre" case forces Kiali's layout to show what "auto" avoids.
func BenchmarkBrowserGraphLarge(b *testing.B) {
	for _, tc := range []struct {
		name, layout string
		n, e         int
	}{
		{"bookinfo-size/auto", "", 14, 14},
		{"1000svc-3000edges/auto", "", 1000, 3000},
		{"1000svc-3000edges/dagre", "dagre", 1000, 3000},
	} {
		b.Run(tc.name, func(b *testing.B) {
			api := &fixtureAPI{bigGraph: bigGraph(b, tc.n, tc.e)}
			api.t = b
			br := newBrowser(b, api)
			hash := "#/graph?namespaces=big&graphType=service&duration=60&layout=" + tc.layout
			br.open(hash, "graph")
			want := "dagre"
			if tc.layout == "" && tc.n+tc.e > 1200 {
				want = "breadthfirst" // graph.js DAGRE_MAX_ELEMENTS
			}
			if l := eval[string](br, `document.getElementById('graph-status').dataset.layout`); l != want {
				b.Fatalf("layout %q, want %q", l, want)
			}
			if n := eval[int](br, `meshlabGraph.nodes().length + meshlabGraph.edges().length`); n != tc.n+tc.e {
				b.Fatalf("graph has %d elements, want %d", n, tc.n+tc.e)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				br.open(fmt.Sprintf("%s&run=%d", hash, i), "graph")
			}
			b.StopTimer()
			b.ReportMetric(float64(len(api.bigGraph)), "json-bytes")
			if e := br.jsErrors(); e != "" {
				b.Fatalf("JavaScript errors: %s", e)
			}
		})
	}
}
