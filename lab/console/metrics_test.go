package console

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/dataplane/xdsclient"
	"github.com/meshlab/meshlab/lab/prometheus/promtest"
)

// meshMetrics serves what bookinfo's proxies and istiod would expose,
// growing at each scrape: productpage calls reviews-v2, 1 in 11 answers
// is a 503.
type meshMetrics struct{ scrapes atomic.Int64 }

func (m *meshMetrics) envoy(w http.ResponseWriter, _ *http.Request) {
	n := m.scrapes.Add(1)
	peer := `destination_workload="reviews-v2",destination_workload_namespace="bookinfo",destination_canonical_service="reviews",` +
		`destination_service_name="reviews",destination_service_namespace="bookinfo",destination_cluster="Kubernetes",` +
		`source_workload="productpage-v1",source_workload_namespace="bookinfo",source_canonical_service="productpage",source_cluster="Kubernetes",` +
		`request_protocol="http",connection_security_policy="mutual_tls",response_flags="-",grpc_response_status="",` +
		`destination_service="reviews.bookinfo.svc.cluster.local",destination_canonical_revision="v2",destination_app="reviews",destination_version="v2",` +
		`source_canonical_revision="v1",source_app="productpage",source_version="v1",` +
		`source_principal="spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage",destination_principal="spiffe://cluster.local/ns/bookinfo/sa/bookinfo-reviews"`
	fmt.Fprintln(w, "# TYPE istio_requests_total counter")
	fmt.Fprintln(w, "# TYPE istio_request_duration_milliseconds histogram")
	for _, rep := range []string{"destination", "source"} {
		l := `reporter="` + rep + `",` + peer
		fmt.Fprintf(w, "istio_requests_total{%s,response_code=\"200\"} %d\n", l, n*10)
		fmt.Fprintf(w, "istio_requests_total{%s,response_code=\"503\"} %d\n", l, n)
		for _, b := range []struct {
			le string
			k  int64
		}{{"5", 2}, {"25", 8}, {"100", 11}, {"+Inf", 11}} {
			fmt.Fprintf(w, "istio_request_duration_milliseconds_bucket{%s,le=%q} %d\n", l, b.le, n*b.k)
		}
		fmt.Fprintf(w, "istio_request_duration_milliseconds_sum{%s} %d\n", l, n*220)
		fmt.Fprintf(w, "istio_request_duration_milliseconds_count{%s} %d\n", l, n*11)
	}
}

func (m *meshMetrics) istiod(w http.ResponseWriter, _ *http.Request) {
	n := m.scrapes.Load() + 1
	fmt.Fprintln(w, "# TYPE pilot_proxy_convergence_time histogram")
	fmt.Fprintf(w, "pilot_proxy_convergence_time_sum %f\npilot_proxy_convergence_time_count %d\n", float64(n)*0.02, n*4)
	fmt.Fprintf(w, "# TYPE pilot_xds gauge\npilot_xds{version=\"1.0-test\"} 5\n")
	fmt.Fprintf(w, "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %f\n", float64(n)*0.05)
	fmt.Fprintf(w, "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 52428800\n")
}

// startPrometheus runs the lab's Prometheus scraping meshMetrics every
// 200ms, and returns its URL once rates can be taken.
func startPrometheus(t testing.TB) string {
	t.Helper()
	var mm meshMetrics
	envoy := httptest.NewServer(http.HandlerFunc(mm.envoy))
	t.Cleanup(envoy.Close)
	istiod := httptest.NewServer(http.HandlerFunc(mm.istiod))
	t.Cleanup(istiod.Close)
	_, base := promtest.Start(t, fmt.Sprintf(`global:
  scrape_interval: 200ms
scrape_configs:
- job_name: istiod
  static_configs: [{targets: [%q]}]
- job_name: envoy-stats
  static_configs: [{targets: [%q]}]
`, strings.TrimPrefix(istiod.URL, "http://"), strings.TrimPrefix(envoy.URL, "http://")), "")
	for mm.scrapes.Load() < 4 {
		time.Sleep(50 * time.Millisecond)
	}
	return base
}

func TestMetricsOverviewAndStatus(t *testing.T) {
	l := startLab(t)
	promURL := startPrometheus(t)
	pa := `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: bookinfo}
spec: {mtls: {mode: STRICT}}
`
	docs, err := api.Documents("pa.yaml", []byte(pa), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.cp.Apply(t.Context(), api.ApplyRequest{Documents: docs}); err != nil {
		t.Fatal(err)
	}
	srv := l.console(t, Options{PrometheusURL: promURL})
	base := srv.URL + "/kiali/api/"

	t.Run("metrics", func(t *testing.T) {
		for _, tc := range []struct {
			path   string
			series []string // metrics that must have a positive last point
		}{
			{"namespaces/bookinfo/apps/reviews/metrics?direction=inbound&duration=60s&step=1s", []string{"request_count", "request_error_count"}},
			{"namespaces/bookinfo/workloads/reviews-v2/metrics?duration=60s&step=1s", []string{"request_count", "request_error_count"}},
			{"namespaces/bookinfo/services/reviews/metrics?duration=60s&step=1s", []string{"request_count"}},
			{"namespaces/bookinfo/workloads/productpage-v1/metrics?direction=outbound&duration=60s&step=1s", []string{"request_count"}},
		} {
			t.Run(tc.path, func(t *testing.T) {
				var got map[string]any
				deadline := time.Now().Add(20 * time.Second)
				for {
					got = map[string]any{}
					getJSONT(t, base+tc.path, &got)
					if ok := allPositive(got, tc.series); ok || time.Now().After(deadline) {
						break
					}
					time.Sleep(200 * time.Millisecond)
				}
				if !allPositive(got, tc.series) {
					t.Fatalf("%v: not all of %v have a positive rate", got, tc.series)
				}
				d, _ := got["request_duration_millis"].(map[string]any)
				for _, stat := range []string{"avg", "0.5", "0.95", "0.99"} {
					if _, ok := d[stat]; !ok {
						t.Errorf("request_duration_millis lacks %s: %v", stat, d)
					}
				}
				for _, k := range []string{"request_size", "response_size", "tcp_sent", "tcp_received"} {
					if _, ok := got[k]; !ok {
						t.Errorf("no %s", k)
					}
				}
			})
		}
		var none map[string]any
		getJSONT(t, base+"namespaces/bookinfo/workloads/reviews-v2/metrics?direction=outbound&duration=60s&step=1s", &none)
		if allPositive(none, []string{"request_count"}) {
			t.Errorf("reviews-v2 calls nothing, yet has outbound requests: %v", none["request_count"])
		}
		for _, tc := range []struct{ query, param string }{
			{"direction=sideways", "direction"},
			{"duration=ever", "duration"},
			{"step=0", "step"},
			{"duration=100000h&step=1s", "step"},
			{"rateInterval=x", "rateInterval"},
			{"byLabels=a-b", "byLabels"},
		} {
			code, body, _ := call(t, http.MethodGet, base+"namespaces/bookinfo/apps/reviews/metrics?"+tc.query, nil, nil)
			if code != http.StatusBadRequest || !strings.HasPrefix(errorText(body), tc.param) {
				t.Errorf("%s: %d %s, want 400 naming %s", tc.query, code, body, tc.param)
			}
		}
		code, body, _ := call(t, http.MethodGet, base+"namespaces/bookinfo/services/reviews/metrics?direction=outbound", nil, nil)
		if code != http.StatusBadRequest || !strings.HasPrefix(errorText(body), "direction") {
			t.Errorf("service outbound: %d %s", code, body)
		}
	})

	t.Run("overview", func(t *testing.T) {
		var ov struct {
			Namespaces   []nsOverview
			ControlPlane controlPlane
			MeshTLS      tlsState
		}
		getJSONT(t, base+"overview?duration=60s", &ov)
		if len(ov.Namespaces) != 2 {
			t.Fatalf("namespaces %+v, want bookinfo and istio-system", ov.Namespaces)
		}
		bi := ov.Namespaces[0]
		if bi.Name != "bookinfo" || bi.TLS != (tlsState{"MTLS_ENABLED", "STRICT"}) || !bi.Injected {
			t.Errorf("bookinfo card = name %s tls %+v injected %v", bi.Name, bi.TLS, bi.Injected)
		}
		if ov.MeshTLS != (tlsState{"MTLS_PARTIALLY_ENABLED", "PERMISSIVE"}) {
			t.Errorf("meshTLS = %+v", ov.MeshTLS)
		}
		if bi.Validations.ObjectCount != 3 || bi.Validations.Errors == 0 {
			t.Errorf("bookinfo validations = %+v, want 3 objects with errors", bi.Validations)
		}
		if len(bi.Sparkline) == 0 || bi.Sparkline[len(bi.Sparkline)-1][1] <= 0 {
			t.Errorf("bookinfo sparkline = %v (errors %v)", bi.Sparkline, bi.Errors)
		}
		cp := ov.ControlPlane
		if cp.PushTimeMs == nil || *cp.PushTimeMs <= 0 || cp.CPU == nil || cp.MemoryBytes == nil || *cp.MemoryBytes != 52428800 ||
			cp.Proxies != 5 || cp.Version != "1.0-test" {
			t.Errorf("control plane card = %+v (%s)", cp, cp.Error)
		}
		if n := bi.Health["workloads"]; len(n) == 0 {
			t.Errorf("bookinfo health = %v", bi.Health)
		}
	})

	t.Run("health", func(t *testing.T) {
		var hs map[string]entityHealth
		getJSONT(t, base+"namespaces/bookinfo/health?type=workload&rateInterval=60s", &hs)
		rv2, ok := hs["reviews-v2"]
		if !ok || len(rv2.WorkloadStatuses) != 1 || rv2.WorkloadStatuses[0].AvailableReplicas != 1 {
			t.Fatalf("reviews-v2 health = %+v", hs)
		}
		if ws := hs["details-v1"].WorkloadStatuses; len(ws) != 1 || ws[0].SyncedProxies != -1 {
			t.Errorf("details-v1 (no sidecar) statuses = %+v, want syncedProxies -1", ws)
		}
		code, body, _ := call(t, http.MethodGet, base+"namespaces/bookinfo/health?type=pods", nil, nil)
		if code != http.StatusBadRequest || !strings.HasPrefix(errorText(body), "type") {
			t.Errorf("type=pods: %d %s", code, body)
		}
		// 1 in 11 answers is a 503: over Kiali's 5xx degraded threshold (any), under its failure (10 %).
		if rv2.Status != "Degraded" {
			t.Errorf("reviews-v2 status = %q, want Degraded (requests %+v)", rv2.Status, rv2.Requests)
		}
	})

	t.Run("status and mesh", func(t *testing.T) {
		var st struct {
			Status           map[string]string
			ExternalServices []externalService
		}
		getJSONT(t, base+"status", &st)
		if len(st.ExternalServices) != 3 {
			t.Fatalf("status = %+v", st)
		}
		for _, e := range st.ExternalServices {
			if !e.OK {
				t.Errorf("%s not ok: %s", e.Name, e.Error)
			}
		}
		var mesh struct {
			Components []component
			Proxies    []api.ProxyStatus
		}
		getJSONT(t, base+"mesh", &mesh)
		want := map[string]string{"istiod": "Healthy", "istio-ingressgateway": "NotReady", "prometheus": "Healthy", "zipkin": "Healthy", "kiali": "Healthy"}
		for _, c := range mesh.Components {
			if want[c.Name] != c.Status {
				t.Errorf("component %s = %s (%s), want %s", c.Name, c.Status, c.Detail, want[c.Name])
			}
			delete(want, c.Name)
		}
		if len(want) > 0 {
			t.Errorf("components missing: %v", want)
		}
	})
}

func allPositive(got map[string]any, names []string) bool {
	for _, n := range names {
		ss, _ := got[n].([]any)
		if len(ss) == 0 {
			return false
		}
		s0, _ := ss[0].(map[string]any)
		pts, _ := s0["datapoints"].([]any)
		if len(pts) == 0 {
			return false
		}
		last, _ := pts[len(pts)-1].([]any)
		if len(last) != 2 {
			return false
		}
		if v, _ := last[1].(float64); v <= 0 {
			return false
		}
	}
	return true
}

// A proxy connected to the control plane shows in api/mesh, and its
// config dump splits into proxy-config's sections.
func TestConfigDumpAndProxies(t *testing.T) {
	l := startLab(t)
	ctx, cancel := context.WithCancel(t.Context())
	cl := xdsclient.New(xdsclient.Config{Address: l.xdsAddr, Logger: slog.New(slog.DiscardHandler),
		Node: &corev3.Node{Id: "sidecar~198.18.0.14~reviews-v2-5d8f7b9c4-xv2.bookinfo~bookinfo.svc.cluster.local"}})
	done := make(chan struct{})
	go func() { defer close(done); _ = cl.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	srv := l.console(t, Options{})
	base := srv.URL + "/kiali/api/namespaces/bookinfo/pods/reviews-v2-5d8f7b9c4-xv2/config_dump/"

	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body, _ := call(t, http.MethodGet, base+"clusters", nil, nil)
		if code == http.StatusOK && strings.Contains(string(body), "outbound|9080||ratings.bookinfo.svc.cluster.local") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("clusters never showed ratings: %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, tc := range []struct {
		what, typ string
		code      int
	}{
		{"listeners", "ListenersConfigDump", http.StatusOK},
		{"routes", "RoutesConfigDump", http.StatusOK},
		{"endpoints", "EndpointsConfigDump", http.StatusOK},
		{"secrets", "SecretsConfigDump", http.StatusOK},
		{"all", "ClustersConfigDump", http.StatusOK},
		{"bootstrap", "", http.StatusBadRequest},
	} {
		code, body, _ := call(t, http.MethodGet, base+tc.what, nil, nil)
		if code != tc.code || !strings.Contains(string(body), tc.typ) {
			t.Errorf("%s: %d %.300s, want %d with %s", tc.what, code, body, tc.code, tc.typ)
		}
	}
	code, body, _ := call(t, http.MethodGet, srv.URL+"/kiali/api/namespaces/bookinfo/pods/details-v1-5d8f7b9c4-xv1/config_dump/clusters", nil, nil)
	if code != http.StatusNotFound || !strings.Contains(errorText(body), "no proxy") {
		t.Errorf("a pod without a proxy: %d %s", code, body)
	}
	var d struct{ Pods []podInfo }
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		getJSONT(t, srv.URL+"/kiali/api/namespaces/bookinfo/workloads/reviews-v2", &d)
		if len(d.Pods) == 1 && d.Pods[0].ProxySynced || time.Now().After(deadline) {
			break
		}
	}
	if len(d.Pods) != 1 || d.Pods[0].ProxyID == "" || !d.Pods[0].ProxySynced {
		ps, _ := l.cp.Proxies(t.Context())
		t.Errorf("reviews-v2 pods = %+v, want its proxy, synced; proxy status %+v", d.Pods, ps)
	}
	code, body, _ = call(t, http.MethodGet, srv.URL+"/kiali/api/namespaces/bookinfo/pods/reviews-v2-5d8f7b9c4-xv2/logs", nil, nil)
	if code != http.StatusNotImplemented || !strings.Contains(errorText(body), "runtime") {
		t.Errorf("logs without a runtime: %d %s", code, body)
	}
}

// graphIDs reads a graph answer's node workloads/services and its edges
// as "source-workload>target" pairs of names.
func graphNames(t *testing.T, g map[string]any) (nodes []string, edges []string, reason any) {
	t.Helper()
	elems, _ := g["elements"].(map[string]any)
	ns, _ := elems["nodes"].([]any)
	es, _ := elems["edges"].([]any)
	name := map[string]string{}
	for _, n := range ns {
		d := n.(map[string]any)["data"].(map[string]any)
		label := fmt.Sprint(d["nodeType"]) + ":"
		for _, f := range []string{"workload", "service", "app"} {
			if v, _ := d[f].(string); v != "" {
				label += v
				break
			}
		}
		name[fmt.Sprint(d["id"])] = label
		nodes = append(nodes, label)
	}
	for _, e := range es {
		d := e.(map[string]any)["data"].(map[string]any)
		edges = append(edges, name[fmt.Sprint(d["source"])]+">"+name[fmt.Sprint(d["target"])])
	}
	return nodes, edges, g["emptyReason"]
}

func TestGraphOverPrometheus(t *testing.T) {
	l := startLab(t)
	promURL := startPrometheus(t)
	srv := l.console(t, Options{PrometheusURL: promURL})
	base := srv.URL + "/kiali/api/namespaces/"
	var edges []string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var g map[string]any
		getJSONT(t, base+"graph?namespaces=bookinfo&graphType=workload&duration=60s", &g)
		_, edges, _ = graphNames(t, g)
		if len(edges) > 0 || time.Now().After(deadline) {
			break
		}
	}
	mustContain(t, "namespace graph edges", strings.Join(edges, " "), "workload:productpage-v1>service:reviews", "service:reviews>workload:reviews-v2")

	for _, tc := range []struct {
		path       string
		nodes      []string
		emptyCause bool
	}{
		{"bookinfo/workloads/reviews-v2/graph?duration=60s", []string{"workload:productpage-v1", "service:reviews", "workload:reviews-v2"}, false},
		{"bookinfo/services/reviews/graph?duration=60s", []string{"workload:productpage-v1", "service:reviews", "workload:reviews-v2"}, false},
		{"bookinfo/workloads/productpage-v1/graph?duration=60s", []string{"workload:productpage-v1", "service:reviews", "workload:reviews-v2"}, false},
		{"bookinfo/workloads/details-v1/graph?duration=60s", nil, true},
	} {
		t.Run(tc.path, func(t *testing.T) {
			var g map[string]any
			getJSONT(t, base+tc.path, &g)
			nodes, _, reason := graphNames(t, g)
			got := strings.Join(nodes, " ")
			mustContain(t, "node graph", got, tc.nodes...)
			if (reason != nil) != tc.emptyCause {
				t.Errorf("emptyReason = %v, want one: %v", reason, tc.emptyCause)
			}
		})
	}
}

// A graph refresh reads the control plane's lists once per snapshot, and
// a change made through the console is seen at once.
func TestSnapshotCache(t *testing.T) {
	l := startLab(t)
	var lists atomic.Int64
	target, err := url.Parse(l.cpURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	counting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == api.PathResources {
			lists.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(counting.Close)
	s, err := newServer(Options{ControlPlaneURL: counting.URL, TokenFile: l.tokenFile, TracingURL: l.zipkinURL})
	if err != nil {
		t.Fatal(err)
	}
	s.ttl = time.Hour // the test is about what invalidates it, not about time
	srv := httptest.NewServer(s.handler())
	t.Cleanup(srv.Close)
	for _, p := range []string{"namespaces", "namespaces/bookinfo/workloads", "istio/config", "overview"} {
		var v any
		getJSONT(t, srv.URL+"/kiali/api/"+p, &v)
	}
	if n := lists.Load(); n != 1 {
		t.Errorf("4 pages listed the config %d times, want once", n)
	}
	code, body, _ := call(t, http.MethodDelete, srv.URL+"/kiali/api/namespaces/bookinfo/istio/virtualservices/reviews", nil, nil)
	if code != http.StatusOK {
		t.Fatalf("delete: %d %s", code, body)
	}
	var cfg struct{ Items []configItem }
	getJSONT(t, srv.URL+"/kiali/api/istio/config", &cfg)
	for _, it := range cfg.Items {
		if it.Kind == "VirtualService" {
			t.Errorf("the deleted VirtualService still shows")
		}
	}
	if n := lists.Load(); n != 2 {
		t.Errorf("after a delete, lists = %d, want 2", n)
	}
}
