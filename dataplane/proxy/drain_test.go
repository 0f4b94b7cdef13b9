package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/meshlab/meshlab/dataplane/xdsclient"
)

// drainingProxy runs a proxy whose Run the test ends with stop; done is
// closed when Run has returned.
type drainingProxy struct {
	*Proxy
	stop func()
	done chan struct{}
}

func runDrainingProxy(t *testing.T, cpAddr, nodeID string, drain time.Duration) *drainingProxy {
	t.Helper()
	p := New(Config{Node: &corev3.Node{Id: nodeID}, Logger: slog.New(slog.DiscardHandler), DrainTimeout: drain})
	c := xdsclient.New(xdsclient.Config{
		Address: cpAddr, Node: &corev3.Node{Id: testNode},
		Check: p.Check, OnUpdate: p.Apply,
		Logger:     slog.New(slog.DiscardHandler),
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	})
	xdsCtx, stopXDS := context.WithCancel(context.Background())
	ctx, stop := context.WithCancel(context.Background())
	dp := &drainingProxy{Proxy: p, stop: stop, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.Run(xdsCtx) }()
	go func() { defer close(dp.done); p.Run(ctx) }()
	t.Cleanup(func() { stop(); <-dp.done; stopXDS(); wg.Wait() })
	return dp
}

// plainListener is a listener on loopback whose one HTTP route goes to
// cluster, with the given traffic direction.
func plainListener(name string, dir corev3.TrafficDirection, cluster string) *listenerv3.Listener {
	h := hcmFilter(&hcmv3.HttpConnectionManager{StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{Name: name,
			VirtualHosts: []*routev3.VirtualHost{{Name: "all", Domains: []string{"*"},
				Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster(cluster)}}}}}}})
	return &listenerv3.Listener{Name: name, Address: sockAddr("127.0.0.1", 0), TrafficDirection: dir,
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{h}}}}
}

// TestDrain: once Run's context ends, readiness answers 503, the listeners
// that take traffic in refuse new connections (all of a gateway's, a
// sidecar's inbound ones; a sidecar's outbound ones serve the app while
// it finishes), an idle keep-alive connection is closed, the response of
// the request in flight completes and says Connection: close, and Run
// returns as soon as it is done.
func TestDrain(t *testing.T) {
	tests := []struct {
		name         string
		node         string
		outboundOpen bool
	}{
		{"sidecar", "sidecar~127.0.0.1~app-0.default~default.svc.cluster.local", true},
		{"gateway", "router~127.0.0.1~gw-0.istio-system~istio-system.svc.cluster.local", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			started := make(chan struct{}, 1)
			slow := handlerBackend(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/slow" {
					started <- struct{}{}
					time.Sleep(500 * time.Millisecond)
				}
				_, _ = io.WriteString(w, "ok")
			})
			cp := newControlPlane(t, "127.0.0.1:0")
			cp.set("1", plainListener("in", corev3.TrafficDirection_INBOUND, "app"),
				plainListener("out", corev3.TrafficDirection_OUTBOUND, "app"), staticCluster("app", slow))
			p := runDrainingProxy(t, cp.addr, tt.node, 5*time.Second)
			tp := &testProxy{Proxy: p.Proxy}
			in, out := tp.addr(t, "in"), tp.addr(t, "out")

			// An idle keep-alive connection, and a request in flight.
			idle, err := net.Dial("tcp", out)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = idle.Close() }()
			br := bufio.NewReader(idle)
			if resp := roundTrip(t, idle, br, "/"); resp.StatusCode != 200 || resp.Close {
				t.Fatalf("before the drain: %d close=%v", resp.StatusCode, resp.Close)
			}
			type result struct {
				resp *http.Response
				err  error
			}
			inflight := make(chan result, 1)
			go func() {
				c := &http.Client{Transport: &http.Transport{DisableKeepAlives: false}}
				resp, err := c.Get("http://" + in + "/slow")
				if err == nil {
					_, err = io.ReadAll(resp.Body)
					_ = resp.Body.Close()
				}
				inflight <- result{resp, err}
			}()
			<-started
			stopped := time.Now()
			p.stop()

			waitFor(t, "readiness 503", func() bool {
				rec := httptest.NewRecorder()
				p.ReadyHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz/ready", nil))
				return rec.Code == http.StatusServiceUnavailable
			})
			waitFor(t, "inbound listener closed", func() bool { return refused(in) })
			// The idle connection is closed rather than left to its timeout.
			_ = idle.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
				t.Errorf("idle keep-alive connection: read %v, want EOF", err)
			}
			if tt.outboundOpen {
				c, err := net.Dial("tcp", out)
				if err != nil {
					t.Fatalf("outbound listener while draining: %v", err)
				}
				resp := roundTrip(t, c, bufio.NewReader(c), "/")
				_ = c.Close()
				if resp.StatusCode != 200 || !resp.Close {
					t.Errorf("outbound request while draining: %d close=%v, want 200 with Connection: close", resp.StatusCode, resp.Close)
				}
			} else if !refused(out) {
				t.Error("gateway listener accepts new connections while draining")
			}

			r := <-inflight
			if r.err != nil || r.resp.StatusCode != 200 {
				t.Fatalf("request in flight: %v", r.err)
			}
			if !r.resp.Close {
				t.Error("response of the request in flight: no Connection: close")
			}
			select {
			case <-p.done:
			case <-time.After(3 * time.Second):
				t.Fatal("Run still draining 3s after its last request")
			}
			if d := time.Since(stopped); d > 2*time.Second {
				t.Errorf("Run returned %v after its context ended, want when the request in flight was done", d)
			}
			if tt.outboundOpen && !refused(out) {
				t.Error("outbound listener still open after Run returned")
			}
		})
	}
}

// TestDrainBounded: a request still in flight when the drain ends is
// cancelled, its upstream call included, and Run returns.
func TestDrainBounded(t *testing.T) {
	upstreamDone := make(chan error, 1)
	hang := handlerBackend(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			upstreamDone <- r.Context().Err()
		case <-time.After(30 * time.Second):
			upstreamDone <- errors.New("not cancelled")
		}
	})
	cp := newControlPlane(t, "127.0.0.1:0")
	cp.set("1", plainListener("in", corev3.TrafficDirection_INBOUND, "app"), staticCluster("app", hang))
	p := runDrainingProxy(t, cp.addr, testNode, 300*time.Millisecond)
	in := (&testProxy{Proxy: p.Proxy}).addr(t, "in")
	errc := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + in + "/")
		if err == nil {
			_ = resp.Body.Close()
		}
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond)
	stopped := time.Now()
	p.stop()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return 5s after a 300ms drain")
	}
	if d := time.Since(stopped); d > 2*time.Second {
		t.Errorf("Run returned %v after its context ended, want about the 300ms drain", d)
	}
	select {
	case err := <-upstreamDone:
		if err == nil || err.Error() == "not cancelled" {
			t.Errorf("upstream call: %v, want cancelled", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("upstream call not cancelled when the drain ended")
	}
	<-errc
}

// TestDrainHTTP2: an HTTP/2 connection with a stream in flight gets GOAWAY
// when the drain starts, and the stream still completes with 200.
func TestDrainHTTP2(t *testing.T) {
	started := make(chan struct{}, 1)
	slow := handlerBackend(t, "127.0.0.1", func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		time.Sleep(500 * time.Millisecond)
		_, _ = io.WriteString(w, "ok")
	})
	cp := newControlPlane(t, "127.0.0.1:0")
	cp.set("1", plainListener("in", corev3.TrafficDirection_INBOUND, "app"), staticCluster("app", slow))
	p := runDrainingProxy(t, cp.addr, testNode, 5*time.Second)
	in := (&testProxy{Proxy: p.Proxy}).addr(t, "in")

	// HTTP/2 with prior knowledge, frame by frame, to see the GOAWAY.
	c, err := net.Dial("tcp", in)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":path", "/slow"}, {":authority", "app"}} {
		if err := enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}); err != nil {
			t.Fatal(err)
		}
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	<-started
	p.stop()

	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	dec := hpack.NewDecoder(4096, nil)
	var goaway bool
	var status string
	for done := false; !done; {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("read frames: %v (GOAWAY seen %v, status %q)", err, goaway, status)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if err := fr.WriteSettingsAck(); err != nil {
					t.Fatal(err)
				}
			}
		case *http2.GoAwayFrame:
			goaway = true
		case *http2.HeadersFrame:
			hf, err := dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range hf {
				if h.Name == ":status" {
					status = h.Value
				}
			}
			done = f.StreamEnded()
		case *http2.DataFrame:
			done = f.StreamEnded()
		}
	}
	if !goaway || status != "200" {
		t.Errorf("stream in flight at the drain: status %q, GOAWAY seen before its end %v; want 200 and GOAWAY", status, goaway)
	}
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		t.Fatal("Run still draining 3s after its last stream")
	}
}

func roundTrip(t *testing.T, c net.Conn, br *bufio.Reader, path string) *http.Response {
	t.Helper()
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: app\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp
}

func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		_ = c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}
