package upstream

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// BenchmarkPick is one pick per policy over 10 hosts (ring hash and
// maglev with a request hash), and round robin under outlier detection.
func BenchmarkPick(b *testing.B) {
	cases := []struct {
		name   string
		policy clusterv3.Cluster_LbPolicy
		hashed bool
		mod    func(*clusterv3.Cluster)
	}{
		{"ROUND_ROBIN", clusterv3.Cluster_ROUND_ROBIN, false, nil},
		{"RANDOM", clusterv3.Cluster_RANDOM, false, nil},
		{"LEAST_REQUEST", clusterv3.Cluster_LEAST_REQUEST, false, nil},
		{"RING_HASH", clusterv3.Cluster_RING_HASH, true, nil},
		{"MAGLEV", clusterv3.Cluster_MAGLEV, true, nil},
		{"ROUND_ROBIN+outlier", clusterv3.Cluster_ROUND_ROBIN, false, func(c *clusterv3.Cluster) {
			c.OutlierDetection = &clusterv3.OutlierDetection{Consecutive_5Xx: wrapperspb.UInt32(5)}
		}},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			var mods []func(*clusterv3.Cluster)
			if bc.mod != nil {
				mods = append(mods, bc.mod)
			}
			cl := testCluster(b, bc.policy, 10, nil, mods...)
			b.ReportAllocs()
			var h uint64
			for b.Loop() {
				h += 0x9e3779b97f4a7c15
				if cl.PickHash(netip.AddrPort{}, h, bc.hashed) == nil {
					b.Fatal("no pick")
				}
			}
		})
	}
}

func BenchmarkRequestHash(b *testing.B) {
	r := httptest.NewRequest("GET", "/p?a=1&user=jason", nil)
	r.Header.Set("X-User", "jason")
	r.Header.Set("Cookie", "session=abc; user=jason")
	remote := netip.MustParseAddrPort("10.0.0.7:40000")
	for _, bc := range []struct {
		name string
		p    *routev3.RouteAction_HashPolicy
	}{
		{"header", &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: "x-user"}}}},
		{"cookie", &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: "user"}}}},
		{"source_ip", &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true}}}},
		{"query", &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_QueryParameter_{QueryParameter: &routev3.RouteAction_HashPolicy_QueryParameter{Name: "user"}}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ps := []*routev3.RouteAction_HashPolicy{bc.p}
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := RequestHash(ps, r, remote, nil); !ok {
					b.Fatal("no hash")
				}
			}
		})
	}
}

// BenchmarkRoundTrip is one keep-alive request to a loopback server,
// plain and with the connection retirement max_requests_per_connection
// needs.
func BenchmarkRoundTrip(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	for _, bc := range []struct {
		name   string
		common *corev3.HttpProtocolOptions
	}{
		{"plain", &corev3.HttpProtocolOptions{}},
		{"max_requests_per_connection=100", &corev3.HttpProtocolOptions{MaxRequestsPerConnection: wrapperspb.UInt32(100)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cl := testCluster(b, clusterv3.Cluster_ROUND_ROBIN, 1, nil, withCommon(bc.common))
			defer cl.Close()
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := cl.Transport.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}

// BenchmarkQuiet is the check an idle pooled connection passes before
// reuse: one non-blocking read of its socket.
func BenchmarkQuiet(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			_, _ = io.Copy(io.Discard, c)
		}
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	c := newH1Conn(&countedConn{Conn: nc, b: &breaker{}}, ln.Addr().String())
	defer closeConn(c.cc)
	b.ReportAllocs()
	for b.Loop() {
		if !c.quiet() {
			b.Fatal("an idle connection was found readable")
		}
	}
}
