package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/controlplane/monitoring"
	"github.com/meshlab/meshlab/controlplane/registry"
	"github.com/meshlab/meshlab/lab/prometheus"
)

const sdServices = `apiVersion: v1
kind: Service
metadata:
  name: istiod
  namespace: istio-system
  labels: {app: istiod, istio: pilot}
spec:
  selector: {app: istiod}
  ports:
  - {name: grpc-xds, port: 15010}
  - {name: https-dns, port: 15012}
  - {name: http-monitoring, port: 15014}
---
apiVersion: v1
kind: Service
metadata:
  name: istio-ingressgateway
  namespace: istio-system
  labels: {app: istio-ingressgateway, istio: ingressgateway}
spec:
  selector: {istio: ingressgateway}
  ports:
  - {name: http2, port: 80, targetPort: 8080}
---
apiVersion: v1
kind: Service
metadata:
  name: productpage
  namespace: default
  labels: {app: productpage, service: productpage}
spec:
  selector: {app: productpage}
  ports:
  - {name: http, port: 9080}
`

// sdWorkloads are pods as the local runtime registers them: istiod with
// its ports, the gateway and a bookinfo pod with istio-proxy's
// http-envoy-prom, and istio-init.
func sdWorkloads() []registry.Workload {
	proxy := registry.Container{Name: "istio-proxy", Image: "meshlab.local/meshlab", Ports: []registry.ContainerPort{{Name: "http-envoy-prom", ContainerPort: 15090, Protocol: "TCP"}}}
	pod := func(ctl string, cs ...registry.Container) *registry.Pod {
		return &registry.Pod{Phase: "Running", NodeName: "meshlab", HostIP: "198.18.0.1", ControllerKind: "ReplicaSet", ControllerName: ctl, Containers: cs,
			Annotations: map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "15020", "prometheus.io/path": "/stats/prometheus"}}
	}
	pp := pod("productpage-v1-6f5d", registry.Container{Name: "productpage", Image: "docker.io/istio/examples-bookinfo-productpage-v1:1.20.2",
		Ports: []registry.ContainerPort{{ContainerPort: 9080, Protocol: "TCP"}}}, proxy)
	pp.InitContainers = []registry.Container{{Name: "istio-init", Image: "meshlab.local/meshlab"}}
	istiod := pod("istiod-7c9f", registry.Container{Name: "discovery", Image: "meshlab.local/meshlab", Ports: []registry.ContainerPort{
		{ContainerPort: 15010, Protocol: "TCP"}, {ContainerPort: 15012, Protocol: "TCP"}, {ContainerPort: 15014, Protocol: "TCP"}}})
	istiod.Annotations = map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "15014"}
	return []registry.Workload{
		{Name: "istiod-7c9f-abcde", Namespace: "istio-system", IP: netip.MustParseAddr("198.18.0.2"), Ready: true,
			Labels: map[string]string{"app": "istiod", "istio": "pilot"}, ServiceAccount: "istiod", Pod: istiod},
		{Name: "istio-ingressgateway-58f4-fghij", Namespace: "istio-system", IP: netip.MustParseAddr("198.18.0.3"), Ready: true,
			Labels: map[string]string{"app": "istio-ingressgateway", "istio": "ingressgateway"}, Pod: pod("istio-ingressgateway-58f4", proxy)},
		{Name: "productpage-v1-6f5d-klmno", Namespace: "default", IP: netip.MustParseAddr("198.18.0.4"), Ready: true,
			Labels: map[string]string{"app": "productpage", "version": "v1", "security.istio.io/tlsMode": "istio"}, Pod: pp},
	}
}

// TestStockPrometheusFindsTargets runs Debian's Prometheus (2.42, a real
// external client of the HTTP SD) with the walkthrough's two jobs against
// a control plane on loopback, and checks through its /api/v1/targets that
// it found exactly istiod's http-monitoring endpoint and every
// *-envoy-prom port, with the labels the control plane gave.
func TestStockPrometheusFindsTargets(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus is not installed: apt-get install -y prometheus (scripts/test does)")
	}
	ctx := context.Background()
	dir := t.TempDir()
	s, _ := newTestServer(t, filepath.Join(dir, "cp"))
	// The API on a real port, as istiod's 15014 (httptest's would do, but
	// Prometheus must see the URL it is told).
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(lis) }()
	t.Cleanup(func() { _ = hs.Close() })
	base := "http://" + lis.Addr().String()
	cl := api.NewClient(base)
	cl.Token = testToken(t, filepath.Join(dir, "cp"))

	docs, err := api.Documents("services.yaml", []byte(sdServices), "default")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Apply(ctx, api.ApplyRequest{Documents: docs}); err != nil {
		t.Fatal(err)
	}
	for _, w := range sdWorkloads() {
		if err := cl.PutWorkload(ctx, w); err != nil {
			t.Fatal(err)
		}
	}

	b, err := prometheus.LocalConfig(base, prometheus.DefaultSDRefresh)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	webAddr := freeLoopback(t)
	pctx, cancel := context.WithCancel(ctx)
	cmd := exec.CommandContext(pctx, bin, "--config.file="+cfgFile, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+webAddr, "--log.level=warn")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })

	want := map[string]string{ // address → job
		"198.18.0.2:15014": "istiod",
		"198.18.0.3:15090": "envoy-stats",
		"198.18.0.4:15090": "envoy-stats",
	}
	var got []promTarget
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, err = activeTargets(webAddr)
		if err == nil && len(got) >= len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus found %d targets (%v), want %d; its log:\n%s", len(got), err, len(want), logs.String())
		}
		time.Sleep(500 * time.Millisecond)
	}
	found := map[string]string{}
	for _, tg := range got {
		found[tg.DiscoveredLabels["__address__"]] = tg.Labels["job"]
	}
	if fmt.Sprint(found) != fmt.Sprint(want) {
		t.Fatalf("prometheus's targets = %v, want %v", found, want)
	}

	// Every label the SD gave reached Prometheus as it was given.
	sd := map[string]map[string]string{}
	for _, role := range []string{"pod", "endpoints"} {
		for _, g := range monitoring.Targets(s.reg.Snapshot(), role, nil) {
			sd[role+" "+g.Targets[0]] = g.Labels
		}
	}
	for _, tg := range got {
		role := "pod"
		if tg.Labels["job"] == "istiod" {
			role = "endpoints"
		}
		given := sd[role+" "+tg.DiscoveredLabels["__address__"]]
		if len(given) == 0 {
			t.Fatalf("no SD group for %s", tg.DiscoveredLabels["__address__"])
		}
		for k, v := range given {
			// An empty label is no label to Prometheus, as with Kubernetes SD's
			// empty ones (a pod's uid here, a container's ID).
			if gv, ok := tg.DiscoveredLabels[k]; gv != v || (!ok && v != "") {
				t.Errorf("%s: label %s = %q (present %v), the SD gave %q", tg.DiscoveredLabels["__address__"], k, gv, ok, v)
			}
		}
		if !strings.HasPrefix(tg.DiscoveredLabels["__meta_url"], base+monitoring.PathSD) {
			t.Errorf("__meta_url = %q", tg.DiscoveredLabels["__meta_url"])
		}
	}
	byAddr := func(a string) promTarget {
		i := slices.IndexFunc(got, func(tg promTarget) bool { return tg.DiscoveredLabels["__address__"] == a })
		return got[i]
	}
	pp := byAddr("198.18.0.4:15090").DiscoveredLabels
	for k, v := range map[string]string{
		"__metrics_path__": "/stats/prometheus", "__meta_kubernetes_namespace": "default",
		"__meta_kubernetes_pod_name": "productpage-v1-6f5d-klmno", "__meta_kubernetes_pod_container_name": "istio-proxy",
		"__meta_kubernetes_pod_label_app": "productpage", "__meta_kubernetes_pod_label_security_istio_io_tlsMode": "istio",
		"__meta_kubernetes_pod_container_port_name": "http-envoy-prom", "__meta_kubernetes_pod_ready": "true",
	} {
		if pp[k] != v {
			t.Errorf("productpage's target: %s = %q, want %q", k, pp[k], v)
		}
	}
	istiod := byAddr("198.18.0.2:15014").DiscoveredLabels
	for k, v := range map[string]string{
		"__metrics_path__": "/metrics", "__meta_kubernetes_service_name": "istiod", "__meta_kubernetes_endpoint_port_name": "http-monitoring",
		"__meta_kubernetes_endpoints_name": "istiod", "__meta_kubernetes_pod_name": "istiod-7c9f-abcde",
	} {
		if istiod[k] != v {
			t.Errorf("istiod's target: %s = %q, want %q", k, istiod[k], v)
		}
	}
}

type promTarget struct {
	DiscoveredLabels map[string]string `json:"discoveredLabels"`
	Labels           map[string]string `json:"labels"`
}

func activeTargets(addr string) ([]promTarget, error) {
	resp, err := http.Get("http://" + addr + "/api/v1/targets?state=active")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var r struct {
		Status string `json:"status"`
		Data   struct {
			ActiveTargets []promTarget `json:"activeTargets"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode %s: %w", b, err)
	}
	return r.Data.ActiveTargets, nil
}

func freeLoopback(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}
