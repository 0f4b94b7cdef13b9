package upstream

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
)

// rawServer accepts loopback connections and lets answer write whatever it
// likes for each request read off a connection (the nth on it, from 0);
// answer returns false to close the connection. It counts connections.
func rawServer(t *testing.T, answer func(w *bufio.Writer, req *http.Request, nth int) bool) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int64
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br, bw := bufio.NewReader(c), bufio.NewWriter(c)
				for nth := 0; ; nth++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					ok := answer(bw, req, nth)
					bw.Flush()
					if !ok {
						return
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String() + "/", &conns
}

const okResponse = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

// TestH1 runs requests through the synchronous HTTP/1.1 path against
// servers that behave as real ones do at its edges.
func TestH1(t *testing.T) {
	for _, tc := range []struct {
		name      string
		answer    func(w *bufio.Writer, req *http.Request, nth int) bool
		requests  int
		wantConns int64
	}{
		{"keep-alive reuses one connection", func(w *bufio.Writer, _ *http.Request, _ int) bool {
			w.WriteString(okResponse)
			return true
		}, 5, 1},
		// The server closes each connection after one response without
		// saying so: the next request finds the pooled one dead before any
		// byte comes back and is sent again on a new one.
		{"a pooled connection the server closed is replaced", func(w *bufio.Writer, _ *http.Request, _ int) bool {
			w.WriteString(okResponse)
			return false
		}, 4, 4},
		{"Connection: close is honoured", func(w *bufio.Writer, _ *http.Request, _ int) bool {
			w.WriteString("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
			return true
		}, 3, 3},
		{"interim responses are skipped", func(w *bufio.Writer, _ *http.Request, _ int) bool {
			w.WriteString("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" + okResponse)
			return true
		}, 3, 1},
		{"chunked responses keep the connection", func(w *bufio.Writer, _ *http.Request, _ int) bool {
			w.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\no\r\n1\r\nk\r\n0\r\n\r\n")
			return true
		}, 3, 1},
		{"HTTP/1.0 responses close", func(w *bufio.Writer, _ *http.Request, _ int) bool {
			w.WriteString("HTTP/1.0 200 OK\r\n\r\nok")
			return false
		}, 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, conns := rawServer(t, tc.answer)
			cl := testCluster(t, clusterv3.Cluster_ROUND_ROBIN, 1, nil)
			defer cl.Close()
			for i := 0; i < tc.requests; i++ {
				method := http.MethodGet
				if i%2 == 1 {
					method = http.MethodPost
				}
				get(t, cl, method, url)
			}
			if got := conns.Load(); got != tc.wantConns {
				t.Errorf("%d requests used %d connections, want %d", tc.requests, got, tc.wantConns)
			}
			if n := cl.cb.active.Load(); n != 0 {
				t.Errorf("%d requests still counted active, want 0", n)
			}
		})
	}
}

// TestH1EarlyClose: a body closed before its end closes the connection
// (its rest may never come) and the next request gets a new one.
func TestH1EarlyClose(t *testing.T) {
	url, conns := rawServer(t, func(w *bufio.Writer, req *http.Request, _ int) bool {
		if req.URL.Path == "/big" {
			w.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
			w.WriteString(strings.Repeat("x", 100000))
			return true
		}
		w.WriteString(okResponse)
		return true
	})
	cl := testCluster(t, clusterv3.Cluster_ROUND_ROBIN, 1, nil)
	defer cl.Close()
	req, _ := http.NewRequest(http.MethodGet, url+"big", nil)
	resp, err := cl.Transport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := resp.Body.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	get(t, cl, http.MethodGet, url)
	if got := conns.Load(); got != 2 {
		t.Errorf("used %d connections, want 2", got)
	}
	if n := cl.cb.conns.Load(); n != 1 {
		t.Errorf("%d connections open, want 1 (the closed one is not counted)", n)
	}
}

// TestH1Cancel: a request whose context ends while the server is silent
// returns at once with the context's error.
func TestH1Cancel(t *testing.T) {
	release := make(chan struct{})
	url, _ := rawServer(t, func(w *bufio.Writer, _ *http.Request, _ int) bool {
		<-release
		return false
	})
	defer close(release)
	cl := testCluster(t, clusterv3.Cluster_ROUND_ROBIN, 1, nil)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	start := time.Now()
	_, err := cl.Transport.RoundTrip(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("returned after %s", d)
	}
	if n := cl.cb.conns.Load(); n != 0 {
		t.Errorf("%d connections open, want 0", n)
	}
}

// TestH1Forget: the idle connections to an endpoint that leaves the
// cluster are closed with the update.
func TestH1Forget(t *testing.T) {
	url, _ := rawServer(t, func(w *bufio.Writer, _ *http.Request, _ int) bool {
		w.WriteString(okResponse)
		return true
	})
	cl := testCluster(t, clusterv3.Cluster_ROUND_ROBIN, 0, nil)
	defer cl.Close()
	host := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/")
	ap := netip.MustParseAddrPort(host)
	cl.SetEndpoints(claOf(ap))
	get(t, cl, http.MethodGet, url)
	if n := cl.cb.conns.Load(); n != 1 {
		t.Fatalf("%d connections open after a request, want 1 (pooled)", n)
	}
	cl.SetEndpoints(claOf())
	if n := cl.cb.conns.Load(); n != 0 {
		t.Errorf("%d connections open after the endpoint left, want 0", n)
	}
}

func TestH1Eligible(t *testing.T) {
	small := func() io.Reader { return strings.NewReader("payload") }
	for _, tc := range []struct {
		name   string
		method string
		body   func() io.Reader
		length int64 // -1: unknown
		header string
		want   bool
	}{
		{"GET", http.MethodGet, nil, 0, "", true},
		{"small POST", http.MethodPost, small, 7, "", true},
		{"POST of unknown length", http.MethodPost, small, -1, "", false},
		{"POST over 64 KiB", http.MethodPost, small, h1MaxBody + 1, "", false},
		{"upgrade", http.MethodGet, nil, 0, "Upgrade", false},
		{"expect 100-continue", http.MethodPost, small, 7, "Expect", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != nil {
				body = tc.body()
			}
			req, _ := http.NewRequest(tc.method, "http://127.0.0.1:1/", body)
			req.ContentLength = tc.length
			if tc.header != "" {
				req.Header.Set(tc.header, "x")
			}
			if got := h1Eligible(req); got != tc.want {
				t.Errorf("h1Eligible = %v, want %v", got, tc.want)
			}
		})
	}
}

// claOf is an assignment of the given endpoints.
func claOf(eps ...netip.AddrPort) *endpointv3.ClusterLoadAssignment {
	la := &endpointv3.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{{}}}
	for _, ep := range eps {
		la.Endpoints[0].LbEndpoints = append(la.Endpoints[0].LbEndpoints, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{
				Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address: ep.Addr().String(), PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(ep.Port())}}}}}},
		})
	}
	return la
}
