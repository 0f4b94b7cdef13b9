package httpbin

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestEndpoints(t *testing.T) {
	srv := httptest.NewServer(Handler())
	t.Cleanup(srv.Close)
	host := srv.Listener.Addr().String()

	tests := []struct {
		name, path string
		header     http.Header
		wantStatus int
		// check inspects the decoded JSON body; nil for non-JSON answers.
		check func(t *testing.T, body map[string]any)
	}{
		{name: "status 200", path: "/status/200", wantStatus: 200},
		{name: "status 503", path: "/status/503", wantStatus: 503},
		{name: "status 418", path: "/status/418", wantStatus: 418},
		{name: "status bad", path: "/status/abc", wantStatus: 400},
		{name: "status out of range", path: "/status/99", wantStatus: 400},
		{name: "health", path: "/health", wantStatus: 200, check: func(t *testing.T, b map[string]any) {
			if b["status"] != "ok" {
				t.Errorf("status = %v", b["status"])
			}
		}},
		{name: "headers", path: "/headers", header: http.Header{"x-custom-thing": {"a"}, "End-User": {"jason"}}, wantStatus: 200,
			check: func(t *testing.T, b map[string]any) {
				h, _ := b["headers"].(map[string]any)
				if h["X-Custom-Thing"] != "a" || h["End-User"] != "jason" || h["Host"] != host {
					t.Errorf("headers = %v", h)
				}
			}},
		{name: "get", path: "/get?a=1&b=2&b=3", wantStatus: 200, check: func(t *testing.T, b map[string]any) {
			args, _ := b["args"].(map[string]any)
			if args["a"] != "1" {
				t.Errorf("args.a = %v, want 1", args["a"])
			}
			if bs, _ := args["b"].([]any); len(bs) != 2 {
				t.Errorf("args.b = %v, want two values", args["b"])
			}
			if b["origin"] != "127.0.0.1" {
				t.Errorf("origin = %v", b["origin"])
			}
			if b["url"] != "http://"+host+"/get?a=1&b=2&b=3" {
				t.Errorf("url = %v", b["url"])
			}
			if _, ok := b["headers"].(map[string]any); !ok {
				t.Errorf("headers missing: %v", b)
			}
		}},
		{name: "ip", path: "/ip", wantStatus: 200, check: func(t *testing.T, b map[string]any) {
			if b["origin"] != "127.0.0.1" {
				t.Errorf("origin = %v", b["origin"])
			}
		}},
		{name: "ip behind proxy", path: "/ip", header: http.Header{"X-Forwarded-For": {"10.1.2.3"}}, wantStatus: 200,
			check: func(t *testing.T, b map[string]any) {
				if b["origin"] != "10.1.2.3" {
					t.Errorf("origin = %v", b["origin"])
				}
			}},
		{name: "delay 0", path: "/delay/0?x=y", wantStatus: 200, check: func(t *testing.T, b map[string]any) {
			if args, _ := b["args"].(map[string]any); args["x"] != "y" {
				t.Errorf("args = %v", b["args"])
			}
		}},
		{name: "delay bad", path: "/delay/-1", wantStatus: 400},
		{name: "anything", path: "/anything/x", wantStatus: 200, check: func(t *testing.T, b map[string]any) {
			if b["method"] != "GET" {
				t.Errorf("method = %v", b["method"])
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+tt.path, nil)
			for k, v := range tt.header {
				req.Header[http.CanonicalHeaderKey(k)] = v
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tt.wantStatus, raw)
			}
			if tt.check == nil {
				return
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			var body map[string]any
			if err := json.Unmarshal(raw, &body); err != nil {
				t.Fatalf("body is not JSON: %v: %s", err, raw)
			}
			tt.check(t, body)
		})
	}
}

func TestStatusList(t *testing.T) {
	srv := httptest.NewServer(Handler())
	t.Cleanup(srv.Close)
	seen := map[int]int{}
	for range 60 {
		resp, err := http.Get(srv.URL + "/status/200,503")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		seen[resp.StatusCode]++
	}
	if len(seen) != 2 || seen[200] == 0 || seen[503] == 0 {
		t.Errorf("codes seen = %v, want both 200 and 503", seen)
	}
}

func TestPickStatus(t *testing.T) {
	tests := []struct {
		spec    string
		u       float64
		want    int
		wantErr bool
	}{
		{"200", 0.99, 200, false},
		{"200,500", 0.1, 200, false},
		{"200,500", 0.6, 500, false},
		{"200:0.9,503:0.1", 0.85, 200, false},
		{"200:0.9,503:0.1", 0.95, 503, false},
		{"200:0,503:1", 0, 503, false},
		{"200:0", 0.5, 0, true},
		{"x", 0, 0, true},
		{"200:-1", 0, 0, true},
		{"600", 0, 0, true},
	}
	for _, tt := range tests {
		got, err := pickStatus(tt.spec, tt.u)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("pickStatus(%q, %v) = %d, %v; want %d, error %v", tt.spec, tt.u, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestDelayEndsWithClient: a pending /delay ends when its client goes away,
// rather than holding the handler for the full delay.
func TestDelayEndsWithClient(t *testing.T) {
	srv := httptest.NewServer(Handler())
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/delay/10", nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	cancel()
	if err := <-errc; err == nil {
		t.Error("request succeeded, want cancellation")
	}
	// srv.Close in cleanup blocks until handlers return; a leaked 10s sleep
	// would show up as a slow test rather than pass silently.
}

func TestRunShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, Options{Listener: ln}) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/ip")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"origin": "127.0.0.1"`) {
		t.Errorf("/ip = %s", b)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v, want nil", err)
	}
}
