package proxy

import (
	"io"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/meshlab/meshlab/dataplane/xdsclient"
)

// TestResponseStreaming checks that the proxy passes on at once what the
// upstream flushed of a response the client must see before the upstream
// goes on: server-sent events (flushed by Content-Type even with a known
// length) and chunked bodies. Other responses keep their headers.
func TestResponseStreaming(t *testing.T) {
	tests := []struct {
		name, contentType string
		length            bool
	}{
		{"event stream with a length", "text/event-stream", true},
		{"event stream, parameters and case", "Text/Event-Stream; charset=utf-8", true},
		{"chunked", "application/octet-stream", false},
	}
	const first, rest = "data: one\n\n", "data: two\n\n"
	release := make(chan struct{})
	a := handlerBackend(t, "127.0.0.2", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", r.URL.Query().Get("ct"))
		if r.URL.Query().Get("length") != "" {
			w.Header().Set("Content-Length", strconv.Itoa(len(first)+len(rest)))
		}
		io.WriteString(w, first)
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, rest)
	})

	cp := newControlPlane(t, "127.0.0.1:0")
	cp.set("1", gatewayListener("0.0.0.0_8080", "http.8080"),
		&routev3.RouteConfiguration{Name: "http.8080", VirtualHosts: []*routev3.VirtualHost{
			{Name: "any", Domains: []string{"*"}, Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster("a")}}}}},
		edsCluster("a"), cla("a", a))
	p := startProxy(t, cp.addr, nil)
	addr := p.addr(t, "0.0.0.0_8080")
	p.waitVersion(t, xdsclient.EndpointType, "1")
	// The bound turns a response the proxy holds back into a failure
	// rather than a hung test.
	client := &http.Client{Timeout: 20 * time.Second}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := "http://" + addr + "/events?ct=" + url.QueryEscape(tt.contentType)
			if tt.length {
				u += "&length=1"
			}
			resp, err := client.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if got := resp.Header.Get("Content-Type"); got != tt.contentType {
				t.Errorf("Content-Type %q, want %q", got, tt.contentType)
			}
			b := make([]byte, len(first))
			if _, err := io.ReadFull(resp.Body, b); err != nil || string(b) != first {
				t.Fatalf("first event %q, %v; want %q before the upstream goes on", b, err, first)
			}
			release <- struct{}{}
			b, err = io.ReadAll(resp.Body)
			if err != nil || string(b) != rest {
				t.Fatalf("rest %q, %v; want %q", b, err, rest)
			}
		})
	}
}
