package upstream

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
)

// poison is a whole response an upstream slips onto a connection after
// the response it owed: whoever reads it next takes it for theirs.
const poison = "HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\nPOISONED-RESPONSE!!"

// TestH1StrayBytes: bytes an upstream sends after a response, or after a
// response that has no body by RFC 9110 (HEAD, 204, 304), never become the
// next request's response; the connection that carried them is dropped.
func TestH1StrayBytes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		method string
		// first is the answer to the first request; after is written
		// separately, once the first response has gone out.
		first, after string
	}{
		{"204 then a response", http.MethodGet, "HTTP/1.1 204 No Content\r\n\r\n", poison},
		{"204 and a response in one write", http.MethodGet, "HTTP/1.1 204 No Content\r\n\r\n" + poison, ""},
		{"HEAD with a Content-Length it then sends", http.MethodHead, "HTTP/1.1 200 OK\r\nContent-Length: 60\r\n\r\n", poison},
		{"304 with body bytes", http.MethodGet, "HTTP/1.1 304 Not Modified\r\nContent-Length: 60\r\n\r\n" + poison, ""},
		{"200 then junk", http.MethodGet, okResponse, poison},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sent := make(chan struct{}, 1)
			url, conns := rawServer(t, func(w *bufio.Writer, req *http.Request, _ int) bool {
				if req.URL.Path != "/first" {
					w.WriteString(okResponse)
					return true
				}
				w.WriteString(tc.first)
				if tc.after != "" {
					w.Flush()
					time.Sleep(20 * time.Millisecond) // a separate segment, after the response was read
					w.WriteString(tc.after)
				}
				w.Flush()
				sent <- struct{}{}
				return true
			})
			cl := testCluster(t, clusterv3.Cluster_ROUND_ROBIN, 1, nil)
			defer cl.Close()
			req, _ := http.NewRequest(tc.method, url+"first", nil)
			resp, err := cl.Transport.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			<-sent
			time.Sleep(10 * time.Millisecond) // loopback delivery of the last write
			for i := 0; i < 2; i++ {
				req, _ = http.NewRequest(http.MethodGet, url+"second", nil)
				resp, err = cl.Transport.RoundTrip(req)
				if err != nil {
					t.Fatalf("request after the stray bytes: %v", err)
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(b) != "ok" {
					t.Fatalf("request after the stray bytes read %q, %v; want the server's own \"ok\"", b, err)
				}
			}
			if got := conns.Load(); got != 2 {
				t.Errorf("used %d connections, want 2 (the tainted one dropped, the next reused)", got)
			}
		})
	}
}

// TestH1ResponseLimits: a response head over Envoy's HTTP/1 limits (80 KiB,
// 100 headers) or too many interim responses fail the request with a
// protocol error, reading no more than the limit.
func TestH1ResponseLimits(t *testing.T) {
	manyHeaders := func(n int) string {
		var b strings.Builder
		b.WriteString("HTTP/1.1 200 OK\r\n")
		for i := 0; i < n; i++ {
			b.WriteString("X-H: v\r\n")
		}
		b.WriteString("Content-Length: 2\r\n\r\nok")
		return b.String()
	}
	for _, tc := range []struct {
		name    string
		answer  string
		wantErr bool
		h1Only  bool // net/http's Transport bounds interim responses by bytes only
	}{
		{"99 headers and Content-Length pass", manyHeaders(99), false, false},
		{"101 headers fail", manyHeaders(101), true, false},
		{"a 79 KiB header passes", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", 79<<10) + "\r\nContent-Length: 2\r\n\r\nok", false, false},
		{"an 81 KiB header fails", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", 81<<10) + "\r\nContent-Length: 2\r\n\r\nok", true, false},
		{"5 interim responses pass", strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 5) + okResponse, false, false},
		{"6 interim responses fail", strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 6) + okResponse, true, true},
		{"5000 interim responses fail", strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 5000) + okResponse, true, false},
	} {
		for _, path := range []string{"synchronous", "net/http"} {
			if tc.h1Only && path != "synchronous" {
				continue
			}
			t.Run(tc.name+"/"+path, func(t *testing.T) {
				url, _ := rawServer(t, func(w *bufio.Writer, _ *http.Request, _ int) bool {
					w.WriteString(tc.answer)
					return false
				})
				cl := testCluster(t, clusterv3.Cluster_ROUND_ROBIN, 1, nil)
				defer cl.Close()
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				if path == "net/http" {
					// A body of unknown length takes net/http's Transport.
					req, _ = http.NewRequest(http.MethodPost, url, strings.NewReader("payload"))
					req.ContentLength = -1
				}
				resp, err := cl.Transport.RoundTrip(req)
				if tc.wantErr {
					if err == nil {
						resp.Body.Close()
						t.Fatalf("got %d, want a protocol error", resp.StatusCode)
					}
					if !errors.Is(err, ErrProtocol) {
						t.Errorf("err = %v, want ErrProtocol", err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(b) != "ok" {
					t.Errorf("body %q, %v", b, err)
				}
			})
		}
	}
}

// TestH1HugeHeadMemory: a 20 MiB response head costs the proxy about the
// limit, not the head.
func TestH1HugeHeadMemory(t *testing.T) {
	url, _ := rawServer(t, func(w *bufio.Writer, _ *http.Request, _ int) bool {
		w.WriteString("HTTP/1.1 200 OK\r\n")
		line := "X-Filler: " + strings.Repeat("a", 1000) + "\r\n"
		for n := 0; n < 20<<20; n += len(line) {
			if _, err := w.WriteString(line); err != nil {
				return false
			}
		}
		w.WriteString("Content-Length: 2\r\n\r\nok")
		return false
	})
	cl := testCluster(t, clusterv3.Cluster_ROUND_ROBIN, 1, nil)
	defer cl.Close()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	resp, err := cl.Transport.RoundTrip(req)
	runtime.ReadMemStats(&after)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("a 20 MiB head got %d, want a protocol error", resp.StatusCode)
	}
	if grown := after.TotalAlloc - before.TotalAlloc; grown > 10<<20 {
		t.Errorf("reading the head allocated %d MiB, want < 10 MiB", grown>>20)
	}
}
