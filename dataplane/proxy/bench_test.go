package proxy

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlab/meshlab/dataplane/xdsclient"
)

// BenchmarkRequest is one keep-alive HTTP/1.1 request through the gateway
// to a loopback backend, client and backend included.
func BenchmarkRequest(b *testing.B) {
	_, a := backend(b, "127.0.0.2", "a")
	tcp := newBenchControlPlane(b)
	tcp.set("1", gatewayListener("0.0.0.0_8080", "http.8080"),
		&routev3.RouteConfiguration{Name: "http.8080", VirtualHosts: []*routev3.VirtualHost{
			{Name: "any", Domains: []string{"*"}, Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster("a")}}}}},
		edsCluster("a"), cla("a", a))
	p := startProxy(b, tcp.addr, nil)
	addr := p.addr(b, "0.0.0.0_8080")
	p.waitVersion(b, xdsclient.EndpointType, "1")
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/productpage", nil)
	if err != nil {
		b.Fatal(err)
	}
	getLoop(b, req)
}

// getLoop sends req over one keep-alive client for each of b's
// iterations, failing on any answer but 200, and reports the latency
// percentiles (p50-µs, p90-µs, p99-µs) next to ns/op.
func getLoop(b *testing.B, req *http.Request) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	lat := make([]time.Duration, 0, 1<<16)
	defer func() { reportPercentiles(b, lat) }()
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
		lat = append(lat, time.Since(start))
	}
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	for _, p := range []struct {
		name string
		q    float64
	}{{"p50-µs", 0.50}, {"p90-µs", 0.90}, {"p99-µs", 0.99}} {
		b.ReportMetric(float64(lat[int(p.q*float64(len(lat)-1))])/float64(time.Microsecond), p.name)
	}
}

// BenchmarkMeshRequestMTLS is BenchmarkMeshRequest with Istio's auto
// mTLS between the sidecars: transport_socket_matches on the client's
// cluster, the server's STRICT chain verifying the client certificate,
// XFCC and the principals in both sides' metrics.
func BenchmarkMeshRequestMTLS(b *testing.B) {
	body := strings.Repeat("r", 1024)
	m := newMTLSMesh(b, mtlsOpts{body: body})
	req, err := http.NewRequest(http.MethodGet, "http://"+m.out+"/reviews/0", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Host = "reviews:9080"
	getLoop(b, req)
}

// BenchmarkMeshRequest is one keep-alive request on the mesh path, client
// sidecar → server sidecar → app, with what the sidecars do on it in a
// lab: the metadata exchange and Istio's metrics on both.
func BenchmarkMeshRequest(b *testing.B) {
	body := strings.Repeat("r", 1024)
	mp := newMeshPath(b, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) }, nil)
	req, err := http.NewRequest(http.MethodGet, "http://"+mp.out+"/reviews/0", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Host = "reviews:9080"
	getLoop(b, req)
}

// BenchmarkEdgeRequest is BenchmarkRequest through a connection manager
// with use_remote_address, as the control plane configures the gateway's:
// the peer appended to X-Forwarded-For, X-Forwarded-Proto and
// x-envoy-external-address set.
func BenchmarkEdgeRequest(b *testing.B) {
	_, a := backend(b, "127.0.0.2", "a")
	tcp := newBenchControlPlane(b)
	h := &hcmv3.HttpConnectionManager{StatPrefix: "outbound_0.0.0.0_8080", UseRemoteAddress: wrapperspb.Bool(true),
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: ads(), RouteConfigName: "http.8080"}}}
	tcp.set("1", &listenerv3.Listener{Name: "0.0.0.0_8080", Address: sockAddr("127.0.0.1", 0),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{hcmFilter(h)}}}},
		&routev3.RouteConfiguration{Name: "http.8080", VirtualHosts: []*routev3.VirtualHost{
			{Name: "any", Domains: []string{"*"}, Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster("a")}}}}},
		edsCluster("a"), cla("a", a))
	p := startProxy(b, tcp.addr, nil)
	addr := p.addr(b, "0.0.0.0_8080")
	p.waitVersion(b, xdsclient.EndpointType, "1")
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/productpage", nil)
	if err != nil {
		b.Fatal(err)
	}
	getLoop(b, req)
}
