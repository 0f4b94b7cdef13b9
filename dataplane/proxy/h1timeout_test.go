package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlab/meshlab/dataplane/xdsclient"
)

// hcmProxy runs a proxy with one listener whose connection manager is h
// (its routes: everything to an echo backend).
func hcmProxy(t *testing.T, h *hcmv3.HttpConnectionManager) string {
	t.Helper()
	return hcmProxyOn(t, h, nil)
}

// hcmProxyOn is hcmProxy with the filter chain's transport socket ts (nil:
// plaintext).
func hcmProxyOn(t *testing.T, h *hcmv3.HttpConnectionManager, ts *corev3.TransportSocket) string {
	t.Helper()
	a := handlerBackend(t, "127.0.0.2", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		w.Write(b)
	})
	h.StatPrefix = "outbound_0.0.0.0_8080"
	h.RouteSpecifier = &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: ads(), RouteConfigName: "http.8080"}}
	l := &listenerv3.Listener{Name: "0.0.0.0_8080", Address: sockAddr("127.0.0.1", 0),
		FilterChains: []*listenerv3.FilterChain{{TransportSocket: ts, Filters: []*listenerv3.Filter{hcmFilter(h)}}}}
	cp := newControlPlane(t, "127.0.0.1:0")
	cp.set("1", l, &routev3.RouteConfiguration{Name: "http.8080", VirtualHosts: []*routev3.VirtualHost{
		{Name: "any", Domains: []string{"*"}, Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster("a")}}}}},
		edsCluster("a"), cla("a", a))
	p := startProxy(t, cp.addr, nil)
	addr := p.addr(t, "0.0.0.0_8080")
	p.waitVersion(t, xdsclient.EndpointType, "1")
	return addr
}

// TestH1SlowClients: a slowloris client is cut off by the connection
// manager's timeouts, set through the HCM as the control plane sends them.
func TestH1SlowClients(t *testing.T) {
	ms := func(n int) *durationpb.Duration { return durationpb.New(time.Duration(n) * time.Millisecond) }
	const head = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"
	tests := []struct {
		name string
		hcm  *hcmv3.HttpConnectionManager
		// first is written at once, then drip a byte every `every`; then
		// the client waits.
		first, drip string
		every       time.Duration
		status      string // "": the proxy closes without answering
		body        string
		within      time.Duration // the answer or the close comes before this
	}{
		{"headers dribbled past the stream idle timeout",
			&hcmv3.HttpConnectionManager{StreamIdleTimeout: ms(400)},
			"", strings.Repeat(head[:20], 10), 50 * time.Millisecond, "408 Request Timeout", "stream timeout", 2 * time.Second},
		{"headers dribbled past the request headers timeout",
			&hcmv3.HttpConnectionManager{RequestHeadersTimeout: ms(300), StreamIdleTimeout: durationpb.New(0)},
			"", strings.Repeat(head[:20], 10), 50 * time.Millisecond, "408 Request Timeout", "request header timeout", 2 * time.Second},
		{"a request line stalled after two bytes",
			&hcmv3.HttpConnectionManager{StreamIdleTimeout: ms(400)},
			"GE", "", 0, "408 Request Timeout", "stream timeout", 2 * time.Second},
		{"a stalled body",
			&hcmv3.HttpConnectionManager{StreamIdleTimeout: ms(400)},
			head + "abc", "", 0, "408 Request Timeout", "stream timeout", 2 * time.Second},
		// 10 bytes 100 ms apart: longer in all than the timeout, each gap
		// far below it, even on a loaded machine.
		{"a slow body that keeps coming",
			&hcmv3.HttpConnectionManager{StreamIdleTimeout: ms(800)},
			head, "0123456789", 100 * time.Millisecond, "200 OK", "0123456789", 3 * time.Second},
		{"an idle connection",
			&hcmv3.HttpConnectionManager{CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{IdleTimeout: ms(300)}},
			"", "", 0, "", "", 2 * time.Second},
		{"the idle timeout does not cut a request head",
			&hcmv3.HttpConnectionManager{CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{IdleTimeout: ms(300)}},
			"", head + "0123456789", 60 * time.Millisecond, "200 OK", "0123456789", 8 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := hcmProxy(t, tt.hcm)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			c.SetDeadline(start.Add(tt.within))
			go func() {
				if _, err := io.WriteString(c, tt.first); err != nil {
					return
				}
				for i := 0; i < len(tt.drip); i++ {
					if _, err := c.Write([]byte{tt.drip[i]}); err != nil {
						return
					}
					time.Sleep(tt.every)
				}
			}()
			br := bufio.NewReader(c)
			if tt.status == "" {
				if _, err := br.ReadByte(); err != io.EOF {
					t.Fatalf("got %v, want the connection closed within %v", err, tt.within)
				}
				return
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no response within %v: %v", tt.within, err)
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.Status != tt.status || string(b) != tt.body {
				t.Errorf("got %q %q, want %q %q", resp.Status, b, tt.status, tt.body)
			}
		})
	}
}

// TestHCMLimits: unset fields take Envoy's defaults, an explicit 0
// disables a timeout.
func TestHCMLimits(t *testing.T) {
	tests := []struct {
		name string
		h    *hcmv3.HttpConnectionManager
		want h1Limits
	}{
		{"unset", &hcmv3.HttpConnectionManager{}, h1Limits{maxHead: 60 << 10, maxHeaders: 100, streamIdle: 5 * time.Minute, idle: time.Hour}},
		{"zeros disable", &hcmv3.HttpConnectionManager{StreamIdleTimeout: durationpb.New(0), RequestHeadersTimeout: durationpb.New(0),
			CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{IdleTimeout: durationpb.New(0)}},
			h1Limits{maxHead: 60 << 10, maxHeaders: 100}},
		{"set", &hcmv3.HttpConnectionManager{StreamIdleTimeout: durationpb.New(time.Second), RequestHeadersTimeout: durationpb.New(2 * time.Second),
			MaxRequestHeadersKb:       wrapperspb.UInt32(8),
			CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{IdleTimeout: durationpb.New(3 * time.Second), MaxHeadersCount: wrapperspb.UInt32(10)}},
			h1Limits{maxHead: 8 << 10, maxHeaders: 10, requestHeaders: 2 * time.Second, streamIdle: time.Second, idle: 3 * time.Second}},
	}
	for _, tt := range tests {
		if got := hcmLimits(tt.h); got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
}
