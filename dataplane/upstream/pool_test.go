package upstream

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// withCommon sets the cluster's common HTTP protocol options, on HTTP/1.1,
// as translation emits them.
func withCommon(common *corev3.HttpProtocolOptions) func(*clusterv3.Cluster) {
	return func(c *clusterv3.Cluster) {
		a, err := anypb.New(&httpv3.HttpProtocolOptions{
			CommonHttpProtocolOptions: common,
			UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}},
			}},
		})
		if err != nil {
			panic(err)
		}
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": a}
	}
}

// connServer is a loopback HTTP/1.1 server counting the connections it
// accepts; a request with ?wait=<duration> is answered after that long.
func connServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if d, err := time.ParseDuration(r.URL.Query().Get("wait")); err == nil {
			time.Sleep(d)
		}
		io.WriteString(w, "ok")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

// get sends one request through the cluster's transport and reads the
// answer to the end, as the proxy does.
func get(t *testing.T, cl *Cluster, method, url string) {
	t.Helper()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader("payload")
	}
	req, err := http.NewRequestWithContext(context.Background(), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cl.Transport.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(b) != "ok" {
		t.Fatalf("%s %s: body %q, %v", method, url, b, err)
	}
}

func TestMaxRequestsPerConnection(t *testing.T) {
	for _, tc := range []struct {
		name      string
		max       uint32 // 0: unset
		requests  int
		wantConns int64
	}{
		{"unset keeps one connection", 0, 10, 1},
		{"one per connection", 1, 10, 10},
		{"three per connection", 3, 10, 4},
		{"ten per connection", 10, 10, 1},
		{"ten per connection, eleven requests", 10, 11, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, conns := connServer(t)
			common := &corev3.HttpProtocolOptions{}
			if tc.max > 0 {
				common.MaxRequestsPerConnection = wrapperspb.UInt32(tc.max)
			}
			cl := testCluster(t, clusterv3.Cluster_ROUND_ROBIN, 1, nil, withCommon(common))
			defer cl.Close()
			for i := range tc.requests {
				method := http.MethodGet
				if i%2 == 1 {
					method = http.MethodPost // a body makes Go's transport copy the request
				}
				get(t, cl, method, srv.URL)
			}
			if got := conns.Load(); got != tc.wantConns {
				t.Errorf("%d requests used %d connections, want %d", tc.requests, got, tc.wantConns)
			}
		})
	}
}

func TestIdleTimeout(t *testing.T) {
	for _, tc := range []struct {
		name      string
		idle      time.Duration // 0: unset
		wantConns int64
	}{
		{"unset keeps the connection", 0, 1},
		{"0.2s idle closes it", 200 * time.Millisecond, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, conns := connServer(t)
			common := &corev3.HttpProtocolOptions{}
			if tc.idle > 0 {
				common.IdleTimeout = durationpb.New(tc.idle)
			}
			cl := testCluster(t, clusterv3.Cluster_ROUND_ROBIN, 1, nil, withCommon(common))
			defer cl.Close()
			get(t, cl, http.MethodGet, srv.URL)
			time.Sleep(500 * time.Millisecond)
			get(t, cl, http.MethodGet, srv.URL)
			if got := conns.Load(); got != tc.wantConns {
				t.Errorf("two requests 0.5s apart used %d connections, want %d", got, tc.wantConns)
			}
		})
	}
}

func TestMaxConnectionDuration(t *testing.T) {
	srv, conns := connServer(t)
	cl := testCluster(t, clusterv3.Cluster_ROUND_ROBIN, 1, nil, withCommon(&corev3.HttpProtocolOptions{
		MaxConnectionDuration: durationpb.New(200 * time.Millisecond),
	}))
	defer cl.Close()
	// An idle connection is closed at the duration.
	get(t, cl, http.MethodGet, srv.URL)
	get(t, cl, http.MethodGet, srv.URL)
	time.Sleep(500 * time.Millisecond)
	if n := cl.cb.conns.Load(); n != 0 {
		t.Errorf("%d connections open past max_connection_duration, want 0", n)
	}
	get(t, cl, http.MethodGet, srv.URL)
	if got := conns.Load(); got != 2 {
		t.Fatalf("used %d connections, want 2", got)
	}
	// A busy one drains: its request completes, then it closes.
	get(t, cl, http.MethodGet, srv.URL+"?wait=500ms")
	get(t, cl, http.MethodGet, srv.URL)
	if got := conns.Load(); got != 3 {
		t.Errorf("used %d connections, want 3", got)
	}
}

func TestTCPKeepalive(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	cl := testCluster(t, clusterv3.Cluster_ROUND_ROBIN, 1, nil, func(c *clusterv3.Cluster) {
		c.UpstreamConnectionOptions = &clusterv3.UpstreamConnectionOptions{TcpKeepalive: &corev3.TcpKeepalive{
			KeepaliveProbes: wrapperspb.UInt32(3), KeepaliveTime: wrapperspb.UInt32(7), KeepaliveInterval: wrapperspb.UInt32(11),
		}}
	})
	conn, err := cl.Dial(context.Background(), &Endpoint{Addr: ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []struct {
		name       string
		level, opt int
		want       int
	}{
		{"SO_KEEPALIVE", syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
		{"TCP_KEEPIDLE", syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, 7},
		{"TCP_KEEPINTVL", syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, 11},
		{"TCP_KEEPCNT", syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, 3},
	} {
		var got int
		var serr error
		if err := raw.Control(func(fd uintptr) { got, serr = syscall.GetsockoptInt(int(fd), o.level, o.opt) }); err != nil {
			t.Fatal(err)
		}
		if serr != nil {
			t.Fatalf("getsockopt %s: %v", o.name, serr)
		}
		if got != o.want {
			t.Errorf("%s = %d, want %d", o.name, got, o.want)
		}
	}
}

// Under concurrency a retired connection is never handed out again: no
// request fails, and none rides a connection past its limit.
func TestMaxRequestsPerConnectionConcurrent(t *testing.T) {
	srv, conns := connServer(t)
	cl := testCluster(t, clusterv3.Cluster_ROUND_ROBIN, 1, nil, withCommon(&corev3.HttpProtocolOptions{
		MaxRequestsPerConnection: wrapperspb.UInt32(3),
	}))
	defer cl.Close()
	const workers, each = 4, 30
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range each {
				method := http.MethodGet
				if (w+i)%2 == 1 {
					method = http.MethodPost
				}
				var body io.Reader
				if method == http.MethodPost {
					body = strings.NewReader("payload")
				}
				req, _ := http.NewRequest(method, srv.URL, body)
				resp, err := cl.Transport.RoundTrip(req)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatalf("request failed: %v", err)
		}
	}
	if got, min := conns.Load(), int64(workers*each/3); got < min {
		t.Errorf("%d requests used %d connections, want at least %d", workers*each, got, min)
	}
}

// withProtocol sets the cluster's upstream protocol choice.
func withProtocol(o *httpv3.HttpProtocolOptions) func(*clusterv3.Cluster) {
	return func(c *clusterv3.Cluster) {
		a, err := anypb.New(o)
		if err != nil {
			panic(err)
		}
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": a}
	}
}

func TestUpstreamProtocol(t *testing.T) {
	h1 := &httpv3.HttpProtocolOptions{UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
		ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}}}}}
	h2 := &httpv3.HttpProtocolOptions{UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
		ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}}}}
	downstream := &httpv3.HttpProtocolOptions{
		CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{MaxRequestsPerConnection: wrapperspb.UInt32(2)},
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_UseDownstreamProtocolConfig{UseDownstreamProtocolConfig: &httpv3.HttpProtocolOptions_UseDownstreamHttpConfig{
			HttpProtocolOptions: &corev3.Http1ProtocolOptions{}, Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}}}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	defer srv.Close()
	for _, tc := range []struct {
		name       string
		options    *httpv3.HttpProtocolOptions
		downstream int // the request's ProtoMajor
		want       string
	}{
		{"explicit HTTP/1.1, HTTP/2 downstream", h1, 2, "HTTP/1.1"},
		{"explicit HTTP/2 (h2UpgradePolicy UPGRADE), HTTP/1.1 downstream", h2, 1, "HTTP/2.0"},
		{"downstream protocol, HTTP/1.1", downstream, 1, "HTTP/1.1"},
		{"downstream protocol, HTTP/2", downstream, 2, "HTTP/2.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := testCluster(t, clusterv3.Cluster_ROUND_ROBIN, 1, nil, withProtocol(tc.options))
			defer cl.Close()
			for range 3 {
				req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
				if err != nil {
					t.Fatal(err)
				}
				req.ProtoMajor, req.ProtoMinor = tc.downstream, 0
				resp, err := cl.Transport.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != tc.want {
					t.Fatalf("upstream saw %s, want %s", b, tc.want)
				}
			}
		})
	}
}
