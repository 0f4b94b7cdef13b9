package graph

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/registry"
)

// largeMesh is a generated mesh of services×1 workloads over namespaces,
// each service calling three others (one in the next namespace), so
// 3×services edges; every tenth service has a DestinationRule with
// outlier detection and a weighted VirtualService.
func largeMesh(namespaces, perNamespace int) (Mesh, []request, []string) {
	var m Mesh
	var reqs []request
	var nss []string
	total := namespaces * perNamespace
	name := func(i int) (string, string) {
		return fmt.Sprintf("mesh-%02d", i/perNamespace), fmt.Sprintf("svc-%04d", i)
	}
	for n := range namespaces {
		nss = append(nss, fmt.Sprintf("mesh-%02d", n))
	}
	for i := range total {
		ns, svc := name(i)
		w := registry.Workload{
			Name: svc + "-v1-5d8f7c9b4-x7k2p", Namespace: ns, IP: netip.MustParseAddr("10.1.0.1"), Ready: true,
			Labels: map[string]string{"app": svc, "version": "v1", "pod-template-hash": "5d8f7c9b4"},
			Pod: &registry.Pod{ControllerKind: "ReplicaSet", ControllerName: svc + "-v1-5d8f7c9b4",
				Annotations: map[string]string{"sidecar.istio.io/status": "{}"}},
		}
		m.Workloads = append(m.Workloads, w)
		m.Services = append(m.Services, registry.Service{Name: svc, Namespace: ns, Selector: map[string]string{"app": svc}})
		if i%10 == 0 {
			m.Config = append(m.Config,
				config.Resource{Kind: config.DestinationRule, Namespace: ns, Name: svc, Spec: &networking.DestinationRule{
					Host: svc, TrafficPolicy: &networking.TrafficPolicy{OutlierDetection: &networking.OutlierDetection{}}}},
				config.Resource{Kind: config.VirtualService, Namespace: ns, Name: svc, Spec: &networking.VirtualService{
					Hosts: []string{svc}, Http: []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{
						{Destination: &networking.Destination{Host: svc, Subset: "v1"}, Weight: 50},
						{Destination: &networking.Destination{Host: svc, Subset: "v2"}, Weight: 50}}}}}})
		}
		src := peer{ns, svc + "-v1", svc, "v1"}
		for _, step := range []int{1, 7, perNamespace + 1} {
			dns, dsvc := name((i + step) % total)
			reqs = append(reqs, request{src: src, dst: peer{dns, dsvc + "-v1", dsvc, "v1"}, svc: dsvc, svcNs: dns,
				code: "200", rps: 1 + float64(i%5), ms: 12, reqBytes: 300, mtls: true})
		}
	}
	return m, reqs, nss
}

// peakHeap samples the heap while f runs and returns the highest
// HeapAlloc seen (the process's: Prometheus's engine runs in it too).
func peakHeap(f func()) uint64 {
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	f()
	close(stop)
	wg.Wait()
	return peak.Load()
}

// benchmarkBuild measures Build twice: against Prometheus's engine in
// this process ("engine": the graph API's latency as a user sees it), and
// against the same answers replayed over loopback HTTP ("console": the
// console's own time and heap, without the engine's).
func benchmarkBuild(b *testing.B, mesh Mesh, reqs []request, o Options) {
	p := newPromEnv(b)
	// Two minutes of samples every 15s: enough for rate() over 1m.
	p.write(b, istioSeries(reqs, false), queryTime.Add(-2*time.Minute), queryTime, 15*time.Second)
	o.QueryTime = queryTime
	c, err := Build(context.Background(), p.api, mesh, o)
	if err != nil {
		b.Fatal(err)
	}
	if c.EmptyReason != nil {
		b.Fatalf("empty graph: %s", c.EmptyReason.Message)
	}
	for _, tc := range []struct {
		name string
		api  promv1.API
	}{{"engine", p.api}, {"console", p.rec.replay(b)}} {
		if tc.name == "console" {
			p.close() // the TSDB is not the console's heap
		}
		b.Run(tc.name, func(b *testing.B) {
			runtime.GC()
			var base runtime.MemStats
			runtime.ReadMemStats(&base)
			b.ReportAllocs()
			b.ResetTimer()
			peak := peakHeap(func() {
				for b.Loop() {
					if _, err := Build(context.Background(), tc.api, mesh, o); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.StopTimer()
			// The peak above is mostly GC pacing (GOGC=100 lets the heap
			// double over what is live); with GOGC=5 the peak of one more
			// build is close to what it needs live at once.
			old := debug.SetGCPercent(5)
			runtime.GC()
			live := peakHeap(func() {
				if _, err := Build(context.Background(), tc.api, mesh, o); err != nil {
					b.Fatal(err)
				}
			})
			debug.SetGCPercent(old)
			b.ReportMetric(float64(live-min(live, base.HeapAlloc))/(1<<20), "live-peak-over-idle-MB")
			b.ReportMetric(float64(len(c.Elements.Nodes)), "nodes")
			b.ReportMetric(float64(len(c.Elements.Edges)), "edges")
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
			b.ReportMetric(float64(peak-min(peak, base.HeapAlloc))/(1<<20), "peak-heap-over-idle-MB")
		})
	}
}

// BenchmarkBuildLargeMesh: 1,000 services and 3,000 edges over ten
// namespaces, one graph of all of them (goal: < 2 s, < 200 MB).
func BenchmarkBuildLargeMesh(b *testing.B) {
	mesh, reqs, nss := largeMesh(10, 100)
	benchmarkBuild(b, mesh, reqs, Options{Namespaces: nss, GraphType: TypeWorkload, InjectServiceNodes: true, Duration: time.Minute})
}

// BenchmarkBuildBookinfo: bookinfo's namespace (goal: < 100 ms).
func BenchmarkBuildBookinfo(b *testing.B) {
	benchmarkBuild(b, bookinfoMesh(), bookinfoTraffic(), Options{Namespaces: []string{ns}, GraphType: TypeVersionedApp, InjectServiceNodes: true, Duration: time.Minute})
}
