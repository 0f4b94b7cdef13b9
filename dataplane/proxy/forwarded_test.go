package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlab/meshlab/dataplane/xdsclient"
)

// TestForwardedHeaders: X-Forwarded-* and the proxy's own headers as
// Envoy sets them under Istio's defaults: use_remote_address on the
// gateway, not on sidecars; a Connection header never removes what the
// proxy sets.
func TestForwardedHeaders(t *testing.T) {
	a := handlerBackend(t, "127.0.0.2", func(w http.ResponseWriter, r *http.Request) {
		for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Envoy-External-Address", "X-Envoy-Internal", "X-Request-Id", "X-Other"} {
			fmt.Fprintf(w, "%s=%s\n", k, strings.Join(r.Header[k], "|"))
		}
	})
	listener := func(name string, edge bool) *listenerv3.Listener {
		h := &hcmv3.HttpConnectionManager{StatPrefix: name, UseRemoteAddress: wrapperspb.Bool(edge),
			RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: ads(), RouteConfigName: "http.8080"}}}
		return &listenerv3.Listener{Name: name, Address: sockAddr("127.0.0.1", 0),
			FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{hcmFilter(h)}}}}
	}
	cp := newControlPlane(t, "127.0.0.1:0")
	cp.set("1", listener("gateway", true), listener("sidecar", false),
		&routev3.RouteConfiguration{Name: "http.8080", VirtualHosts: []*routev3.VirtualHost{
			{Name: "any", Domains: []string{"*"}, Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster("a")}}}}},
		edsCluster("a"), cla("a", a))
	p := startProxy(t, cp.addr, nil)
	gw, sc := p.addr(t, "gateway"), p.addr(t, "sidecar")
	p.waitVersion(t, xdsclient.EndpointType, "1")

	tests := []struct {
		name, addr string
		hdr        []string
		want       []string // lines the upstream must have seen
		notWant    []string
	}{
		{"gateway appends the peer", gw, []string{"X-Forwarded-For", "1.2.3.4", "X-Forwarded-Proto", "https", "X-Envoy-Internal", "true"},
			[]string{"X-Forwarded-For=1.2.3.4,127.0.0.1\n", "X-Forwarded-Proto=http\n", "X-Envoy-External-Address=127.0.0.1\n", "X-Envoy-Internal=\n"}, nil},
		{"gateway without XFF", gw, nil,
			[]string{"X-Forwarded-For=127.0.0.1\n", "X-Forwarded-Proto=http\n"}, nil},
		{"sidecar passes the client's", sc, []string{"X-Forwarded-For", "1.2.3.4", "X-Forwarded-Proto", "https"},
			[]string{"X-Forwarded-For=1.2.3.4\n", "X-Forwarded-Proto=https\n", "X-Envoy-External-Address=\n"}, nil},
		{"Connection cannot remove the request id", sc, []string{"Connection", "X-Request-Id"},
			nil, []string{"X-Request-Id=\n"}},
		{"Connection removes the client's request id, not the proxy's", sc, []string{"Connection", "X-Request-Id", "X-Request-Id", "from-client"},
			nil, []string{"X-Request-Id=\n", "X-Request-Id=from-client\n"}},
		{"Connection cannot remove the peer from XFF", gw, []string{"Connection", "X-Forwarded-For, X-Forwarded-Proto", "X-Forwarded-For", "1.2.3.4"},
			[]string{"X-Forwarded-For=127.0.0.1\n", "X-Forwarded-Proto=http\n"}, nil},
		{"Connection still removes other headers", sc, []string{"Connection", "keep-alive, X-Other", "X-Other", "v"},
			[]string{"X-Other=\n"}, []string{"X-Request-Id=\n"}},
	}
	c := &http.Client{Transport: &http.Transport{}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, body, _ := get(t, c, tt.addr, "x", "/", tt.hdr...)
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("want %q in:\n%s", w, body)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(body, w) {
					t.Errorf("do not want %q in:\n%s", w, body)
				}
			}
		})
	}

	t.Run("ten nominated headers are refused", func(t *testing.T) {
		conn, err := net.Dial("tcp", sc)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: a, b, c, d, e, f, g, h, i, j\r\n\r\n")
		buf := make([]byte, 12)
		if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "HTTP/1.1 400" {
			t.Errorf("got %q, %v; want HTTP/1.1 400", buf, err)
		}
	})
}
