package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/netip"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlab/meshlab/dataplane/xdsclient"
)

// rawUpstream is a loopback upstream that reads each request and lets
// answer write whatever bytes it likes on the connection; the connection
// closes when answer returns false.
func rawUpstream(t testing.TB, answer func(w *bufio.Writer, req *http.Request) bool) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
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
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br, bw := bufio.NewReader(c), bufio.NewWriter(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					if _, err := io.Copy(io.Discard, req.Body); err != nil {
						return
					}
					ok := answer(bw, req)
					if bw.Flush() != nil || !ok {
						return
					}
				}
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// upstreamSetup routes everything on a gateway listener to cluster "up"
// at ep, with an access log.
func upstreamSetup(t *testing.T, cluster *clusterv3.Cluster, ep netip.AddrPort) (string, *testProxy, *syncBuffer) {
	t.Helper()
	cp := newControlPlane(t, "127.0.0.1:0")
	cp.set("1", gatewayListener("0.0.0.0_8080", "http.8080"),
		&routev3.RouteConfiguration{Name: "http.8080", VirtualHosts: []*routev3.VirtualHost{
			{Name: "any", Domains: []string{"*"}, Routes: []*routev3.Route{
				// A retry policy makes the proxy buffer a request body.
				{Match: prefix("/retried"), Action: retryRoute("up", "5xx", 2, 0)},
				{Match: prefix("/slow"), Action: timeoutRoute("up", 300*time.Millisecond)},
				{Match: prefix("/"), Action: toCluster("up")}}}}},
		cluster, cla("up", ep))
	p, log := startLoggingProxy(t, cp.addr)
	addr := p.addr(t, "0.0.0.0_8080")
	p.waitVersion(t, xdsclient.EndpointType, "1")
	return addr, p, log
}

func timeoutRoute(cluster string, d time.Duration) *routev3.Route_Route {
	a := toCluster(cluster)
	a.Route.Timeout = durationpb.New(d)
	return a
}

// logCode is the %RESPONSE_CODE% and %RESPONSE_FLAGS% of an access log
// line, "200 UPE".
func logCode(line string) string {
	_, rest, _ := strings.Cut(line, "\" ")
	f := strings.Fields(rest)
	if len(f) < 3 {
		return line
	}
	return f[0] + " " + f[1] + " " + f[2]
}

// TestTruncatedUpstreamResponse: an upstream that closes mid-body must not
// give the client a complete response. On HTTP/1 the client's connection
// ends without the last chunk or the rest of the Content-Length; on
// HTTP/2 the stream is reset. The access log and the metrics say UPE, as
// Envoy's HTTP/1 codec calls a response cut by the upstream's close.
func TestTruncatedUpstreamResponse(t *testing.T) {
	up := rawUpstream(t, func(w *bufio.Writer, req *http.Request) bool {
		switch req.URL.Path {
		case "/chunked":
			w.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
		case "/length":
			w.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
		case "/bad-chunk":
			w.WriteString("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n")
		case "/slow":
			// Stalls mid-body past the route's timeout.
			w.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
			w.Flush()
			time.Sleep(2 * time.Second)
		default:
			w.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			return true
		}
		return false
	})
	addr, p, log := upstreamSetup(t, edsCluster("up"), up)
	h1 := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	h2t := &http.Transport{Protocols: new(http.Protocols)}
	h2t.Protocols.SetUnencryptedHTTP2(true)
	h2 := &http.Client{Timeout: 10 * time.Second, Transport: h2t}
	n := 0
	for _, tc := range []struct {
		name   string
		client *http.Client
		path   string
		want   string
	}{
		{"chunked, HTTP/1.1", h1, "/chunked", "200 UPE upstream_reset_after_response_started{protocol_error}"},
		{"Content-Length, HTTP/1.1", h1, "/length", "200 UPE upstream_reset_after_response_started{protocol_error}"},
		{"malformed chunk, HTTP/1.1", h1, "/bad-chunk", "200 UPE upstream_reset_after_response_started{protocol_error}"},
		{"chunked, HTTP/2", h2, "/chunked", "200 UPE upstream_reset_after_response_started{protocol_error}"},
		{"Content-Length, HTTP/2", h2, "/length", "200 UPE upstream_reset_after_response_started{protocol_error}"},
		{"route timeout mid-body, HTTP/1.1", h1, "/slow", "200 UT response_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := tc.client.Get("http://" + addr + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				t.Fatalf("read a complete %d response %q from a truncated upstream one", resp.StatusCode, b)
			}
			if strings.Contains(tc.want, "UPE") {
				n++
			}
			if got := logCode(p.lastLog(log)); !strings.HasPrefix(got, tc.want) {
				t.Errorf("access log %q, want %q", got, tc.want)
			}
		})
	}
	// The proxy goes on serving, on HTTP/1.1 as on HTTP/2.
	for _, c := range []*http.Client{h1, h2} {
		if code, body, _ := get(t, c, addr, "x", "/fine"); code != 200 || body != "ok" {
			t.Errorf("after the truncations: %d %q", code, body)
		}
	}
	if got := sample(t, p, "istio_requests_total", map[string]string{"response_flags": "UPE", "response_code": "200"}); got != float64(n) {
		t.Errorf("istio_requests_total{response_flags=UPE} = %v, want %d", got, n)
	}
}

// TestUpstreamResponseLimits: a response head over Envoy's limits, or an
// endless run of interim responses, is answered 502 with flag UPE, and the
// proxy's memory stays about the limit, not the head's size.
func TestUpstreamResponseLimits(t *testing.T) {
	up := rawUpstream(t, func(w *bufio.Writer, req *http.Request) bool {
		switch req.URL.Path {
		case "/huge":
			w.WriteString("HTTP/1.1 200 OK\r\n")
			line := "X-Filler: " + strings.Repeat("a", 1000) + "\r\n"
			for n := 0; n < 20<<20; n += len(line) {
				if _, err := w.WriteString(line); err != nil {
					return false
				}
			}
			w.WriteString("Content-Length: 2\r\n\r\nok")
		case "/many":
			w.WriteString("HTTP/1.1 200 OK\r\n" + strings.Repeat("X-H: v\r\n", 101) + "Content-Length: 2\r\n\r\nok")
		case "/continue":
			for i := 0; i < 5000; i++ {
				if _, err := w.WriteString("HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
					return false
				}
			}
			w.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		default:
			w.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			return true
		}
		return false
	})
	addr, p, log := upstreamSetup(t, edsCluster("up"), up)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	for _, tc := range []struct {
		name, path string
		chunked    bool // a body of unknown length takes net/http's Transport upstream
	}{
		{"101 headers", "/many", false},
		{"5000 interim responses", "/continue", false},
		{"5000 interim responses, chunked upload", "/continue", true},
		{"20 MiB head", "/huge", false},
		{"20 MiB head, chunked upload", "/huge", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			goruntime.GC()
			var before, after goruntime.MemStats
			goruntime.ReadMemStats(&before)
			var body io.Reader
			method := http.MethodGet
			if tc.chunked {
				method, body = http.MethodPost, io.MultiReader(strings.NewReader("payload"))
			}
			req, err := http.NewRequest(method, "http://"+addr+tc.path, body)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			code := resp.StatusCode
			goruntime.ReadMemStats(&after)
			if code != http.StatusBadGateway {
				t.Errorf("status %d, want 502", code)
			}
			if got := logCode(p.lastLog(log)); !strings.HasPrefix(got, "502 UPE upstream_reset_before_response_started{protocol_error}") {
				t.Errorf("access log %q, want 502 UPE upstream_reset_before_response_started{protocol_error}", got)
			}
			grown := after.TotalAlloc - before.TotalAlloc
			t.Logf("allocated %d KiB", grown>>10)
			if grown > 10<<20 {
				t.Errorf("the request allocated %d MiB in the proxy and client, want < 10 MiB", grown>>20)
			}
		})
	}
}

// TestDownstreamFailuresSpareUpstream: a client that sends a malformed
// chunked body or leaves mid-upload is the downstream's failure: outlier
// detection does not count it (five would eject the only endpoint), the
// access log says DPE with a 400, or DC.
func TestDownstreamFailuresSpareUpstream(t *testing.T) {
	e := newEcho(t, "127.0.0.2", "up", nil)
	cl := edsCluster("up")
	cl.OutlierDetection = &clusterv3.OutlierDetection{
		Consecutive_5Xx:    wrapperspb.UInt32(5),
		Interval:           durationpb.New(time.Hour),
		BaseEjectionTime:   durationpb.New(time.Hour),
		MaxEjectionPercent: wrapperspb.UInt32(100),
	}
	// No panic mode: an ejected endpoint gets no traffic at all.
	cl.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: 0}}
	addr, p, log := upstreamSetup(t, cl, e.addr)
	for _, tc := range []struct {
		name    string
		request string
		want    string // access log code, flags and details
		reply   string // the start of what the client reads back
	}{
		{"malformed chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n", "400 DPE", "HTTP/1.1 400 Bad Request\r\n"},
		{"client leaves mid-upload, small body", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789", "0 DC downstream_remote_disconnect", ""},
		{"client leaves mid-upload, chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", "0 DC downstream_remote_disconnect", ""},
		{"client leaves mid-upload, buffered for retries", "POST /retried HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789", "0 DC downstream_remote_disconnect", ""},
		{"client leaves mid-upload, large body", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + strings.Repeat("x", 70000), "0 DC downstream_remote_disconnect", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := 0; i < 6; i++ {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.WriteString(c, tc.request); err != nil {
					t.Fatal(err)
				}
				c.(*net.TCPConn).CloseWrite()
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				reply, _ := io.ReadAll(c)
				c.Close()
				if !strings.HasPrefix(string(reply), tc.reply) || tc.reply == "" && len(reply) != 0 {
					t.Fatalf("the client read %q, want %q", reply, tc.reply)
				}
				waitFor(t, "the access log line", func() bool {
					p.flushLogs()
					return strings.Count(log.String(), "\n") > 0 && strings.Contains(p.lastLog(log), "POST")
				})
				if got := logCode(p.lastLog(log)); !strings.HasPrefix(got, tc.want) {
					t.Fatalf("access log %q, want %q", got, tc.want)
				}
				log.reset()
			}
			if code, body, _ := get(t, http.DefaultClient, addr, "x", "/"); code != 200 || body != "up" {
				t.Fatalf("a well-formed request after six downstream failures: %d %q, want 200 from the endpoint", code, body)
			}
			log.reset()
		})
	}
}

func (s *syncBuffer) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

// TestPoisonedPoolConnection: an upstream that follows a 204 with a whole
// second response cannot hand it to the next client through the proxy's
// connection pool.
func TestPoisonedPoolConnection(t *testing.T) {
	sent := make(chan struct{}, 1)
	up := rawUpstream(t, func(w *bufio.Writer, req *http.Request) bool {
		if req.URL.Path != "/first" {
			w.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			return true
		}
		w.WriteString("HTTP/1.1 204 No Content\r\n\r\n")
		w.Flush()
		time.Sleep(20 * time.Millisecond)
		w.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\nPOISONED-RESPONSE!!")
		w.Flush()
		sent <- struct{}{}
		return true
	})
	addr, _, _ := upstreamSetup(t, edsCluster("up"), up)
	if code, _, _ := get(t, &http.Client{Transport: &http.Transport{}}, addr, "x", "/first"); code != http.StatusNoContent {
		t.Fatalf("first client: %d, want 204", code)
	}
	<-sent
	time.Sleep(10 * time.Millisecond) // loopback delivery of the stray response
	if code, body, _ := get(t, &http.Client{Transport: &http.Transport{}}, addr, "x", "/second"); code != 200 || body != "ok" {
		t.Fatalf("second client: %d %q, want the upstream's own 200 \"ok\"", code, body)
	}
}
