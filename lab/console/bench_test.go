package console

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/registry"
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

// largeMesh is a generated mesh: nss namespaces of svcs services, each
// with three versions of one pod, a DestinationRule with their subsets
// and a VirtualService splitting between them.
func largeMesh(b *testing.B, nss, svcs int) *snapshot {
	b.Helper()
	m := &snapshot{byPod: map[string]api.ProxyStatus{}}
	var yaml strings.Builder
	ip := 0
	for n := range nss {
		ns := fmt.Sprintf("ns-%d", n)
		for s := range svcs {
			name := fmt.Sprintf("svc-%d", s)
			m.services = append(m.services, registry.Service{Name: name, Namespace: ns, Selector: map[string]string{"app": name},
				Ports: []registry.Port{{Name: "http", Port: 8080}}})
			for _, v := range []string{"v1", "v2", "v3"} {
				ip++
				pod := name + "-" + v + "-7d9f8c6b5-abcde"
				m.workloads = append(m.workloads, registry.Workload{Name: pod, Namespace: ns, Ready: true,
					IP:     netip.AddrFrom4([4]byte{10, byte(ip >> 16), byte(ip >> 8), byte(ip)}),
					Labels: map[string]string{"app": name, "version": v, "pod-template-hash": "7d9f8c6b5"},
					Pod: &registry.Pod{Annotations: map[string]string{"sidecar.istio.io/status": "{}"}, Phase: "Running",
						ControllerKind: "ReplicaSet", ControllerName: name + "-" + v + "-7d9f8c6b5"}})
				id := "sidecar~" + pod + "." + ns
				m.byPod[ns+"/"+pod] = api.ProxyStatus{ID: id, Pod: pod, Namespace: ns, Connected: true}
			}
			fmt.Fprintf(&yaml, `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  host: %[1]s
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}, {name: v3, labels: {version: v3}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  hosts: [%[1]s]
  http:
  - route:
    - {destination: {host: %[1]s, subset: v1}, weight: 50}
    - {destination: {host: %[1]s, subset: v2}, weight: 50}
`, name, ns)
		}
	}
	rs, err := config.Parse("large.yaml", []byte(yaml.String()))
	if err != nil {
		b.Fatal(err)
	}
	m.resources = rs
	return m
}

// The list and config pages on a mesh of 1,000 services and 3,000 pods,
// with a fresh snapshot each time (validations are worked out once per
// snapshot, so this is the cost of the first page after a refresh).
// Prometheus is unreachable here: the Prometheus side is the graph's and
// health's benchmarks'.
func BenchmarkLargeMeshPages(b *testing.B) {
	mesh := largeMesh(b, 10, 100)
	s, err := newServer(Options{ControlPlaneURL: "http://127.0.0.1:1", TracingURL: "http://127.0.0.1:1"})
	if err != nil {
		b.Fatal(err)
	}
	s.ttl = time.Hour
	h := s.handler()
	for _, path := range []string{
		"/kiali/api/namespaces",
		"/kiali/api/namespaces/ns-3/workloads",
		"/kiali/api/namespaces/ns-3/services",
		"/kiali/api/namespaces/ns-3/apps/svc-42",
		"/kiali/api/istio/config?namespaces=ns-3",
	} {
		b.Run(strings.TrimPrefix(path, "/kiali/api/"), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.meshMu.Lock()
				s.mesh = &snapshot{at: time.Now(), resources: mesh.resources, services: mesh.services, workloads: mesh.workloads, byPod: mesh.byPod}
				s.meshMu.Unlock()
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
				if rec.Code != http.StatusOK {
					b.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
				}
			}
		})
	}
}
