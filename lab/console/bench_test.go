package console

import (
	"net/http"
	"testing"
	"time"
)

// The console's answer for bookinfo's graph, end to end: HTTP, the mesh
// snapshot (cached, as on a refresh), graph.Build's queries against the
// lab's real Prometheus. The target is under 100 ms.
func BenchmarkGraphAPI(b *testing.B) {
	benchAPI(b, "namespaces/graph?namespaces=bookinfo&graphType=versionedApp&duration=60s", true)
}

// The overview page: every namespace's health, validations, mTLS and
// sparkline, and istiod's card.
func BenchmarkOverviewAPI(b *testing.B) {
	benchAPI(b, "overview?duration=60s", false)
}

// The Istio config page with validations (KIA checks and the analyzer).
func BenchmarkIstioConfigAPI(b *testing.B) {
	benchAPI(b, "istio/config?validate=true", false)
}

func benchAPI(b *testing.B, path string, needsGraph bool) {
	l := startLab(b)
	promURL := startPrometheus(b)
	srv := l.console(b, Options{PrometheusURL: promURL})
	if needsGraph {
		skipIfPlaceholderTB(b, "graph")
		// Wait for edges, so the benchmark measures a graph with traffic.
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			var g map[string]any
			getJSONT(b, srv.URL+"/kiali/api/"+path, &g)
			if g["emptyReason"] == nil || time.Now().After(deadline) {
				break
			}
		}
	}
	url := srv.URL + "/kiali/api/" + path
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		code, body, _ := call(b, http.MethodGet, url, nil, nil)
		if code != http.StatusOK {
			b.Fatalf("%d %s", code, body)
		}
	}
}
