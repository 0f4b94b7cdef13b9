package proxy

import (
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/meshlab/meshlab/dataplane/xdsclient"
)

// BenchmarkTracing is BenchmarkRequest through a gateway whose connection
// manager traces at 100% and at 1% (reporting to a loopback Zipkin
// receiver), against the same gateway without tracing.
func BenchmarkTracing(b *testing.B) {
	for _, bc := range []struct {
		name   string
		random float64 // <0: no tracing
	}{{"off", -1}, {"sampled-1pct", 1}, {"sampled-100pct", 100}} {
		b.Run(bc.name, func(b *testing.B) {
			_, a := backend(b, "127.0.0.2", "a")
			// A receiver that only reads: the benchmark counts the
			// proxy's allocations, not a Zipkin server's.
			z := handlerBackend(b, "127.0.0.5", func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.WriteHeader(http.StatusAccepted)
			})
			h := &hcmv3.HttpConnectionManager{StatPrefix: "outbound_0.0.0.0_8080",
				RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: ads(), RouteConfigName: "http.8080"}}}
			if bc.random >= 0 {
				h.Tracing, h.RequestIdExtension = zipkinTracing("zipkin", bc.random), uuidExtension()
			}
			l := &listenerv3.Listener{Name: "0.0.0.0_8080", Address: sockAddr("127.0.0.1", 0), TrafficDirection: corev3.TrafficDirection_OUTBOUND,
				FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{hcmFilter(h)}}}}
			cp := newBenchControlPlane(b)
			cp.set("1", l, &routev3.RouteConfiguration{Name: "http.8080", VirtualHosts: []*routev3.VirtualHost{
				{Name: "any", Domains: []string{"*"}, Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster("a"),
					Decorator: &routev3.Decorator{Operation: "productpage.default.svc.cluster.local:9080/productpage"}}}}}},
				edsCluster("a"), cla("a", a), staticCluster("zipkin", z))
			p := runProxy(b, cp.addr, Config{Node: traceNode(b, "istio-ingressgateway", "istio-ingressgateway", "10.0.0.9")})
			addr := p.addr(b, "0.0.0.0_8080")
			p.waitVersion(b, xdsclient.EndpointType, "1")
			req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/productpage", nil)
			if err != nil {
				b.Fatal(err)
			}
			cpu0 := cpuTime(b)
			getLoop(b, req)
			b.StopTimer()
			// The process's CPU (client, proxy, backend and receiver alike):
			// the difference between the cases is what tracing costs.
			b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
			if bc.random == 100 {
				st := &p.traces.stats
				b.ReportMetric(float64(st.SpansSent.Load())/float64(b.N), "reported/op")
				b.ReportMetric(float64(st.SpansDropped.Load())/float64(b.N), "dropped/op")
			}
		})
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
