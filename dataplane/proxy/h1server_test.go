package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/meshlab/meshlab/dataplane/xdsclient"
)

// h1Backend answers /body with the request body it read, /big with 5,000
// bytes of unknown length, /upgrade by switching to an echo of what
// follows, and anything else with "ok".
func h1Backend(t *testing.T) netip.AddrPort {
	t.Helper()
	return handlerBackend(t, "127.0.0.2", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/body":
			b, _ := io.ReadAll(r.Body)
			w.Write(b)
		case "/big":
			for i := 0; i < 5; i++ {
				w.Write([]byte(strings.Repeat("x", 1000)))
				http.NewResponseController(w).Flush()
			}
		case "/upgrade":
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
			brw.Flush()
			line, _ := brw.ReadString('\n')
			brw.WriteString("echo " + line)
			brw.Flush()
		default:
			io.WriteString(w, "ok")
		}
	})
}

// TestH1Server speaks raw HTTP/1.x to the proxy's own server: framing,
// keep-alive, HTTP/1.0, 100-continue, upgrades and bad requests.
func TestH1Server(t *testing.T) {
	a := h1Backend(t)
	cp := newControlPlane(t, "127.0.0.1:0")
	cp.set("1", gatewayListener("0.0.0.0_8080", "http.8080"),
		&routev3.RouteConfiguration{Name: "http.8080", VirtualHosts: []*routev3.VirtualHost{
			{Name: "any", Domains: []string{"*"}, Routes: []*routev3.Route{
				{Match: prefix("/direct"), Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
					Status: 200, Body: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "direct"}}}}},
				{Match: prefix("/"), Action: toCluster("a")}}}}},
		edsCluster("a"), cla("a", a))
	p := startProxy(t, cp.addr, nil)
	addr := p.addr(t, "0.0.0.0_8080")
	p.waitVersion(t, xdsclient.EndpointType, "1")

	tests := []struct {
		name string
		// send is written at once; after is written once want[0] is read.
		send, after string
		want        []string // in this order
		closed      bool     // the proxy closes the connection after
	}{
		{"keep-alive serves two requests", "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n", "",
			[]string{"HTTP/1.1 200 OK", "Content-Length: 2", "ok", "HTTP/1.1 200 OK", "ok"}, false},
		{"HTTP/1.0 closes", "GET / HTTP/1.0\r\nHost: x\r\n\r\n", "", []string{"HTTP/1.1 200 OK", "Connection: close", "ok"}, true},
		{"HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", "", []string{"HTTP/1.1 200 OK", "Connection: keep-alive", "ok"}, false},
		{"Connection: close", "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "", []string{"Connection: close", "ok"}, true},
		{"a body of unknown length is chunked", "GET /big HTTP/1.1\r\nHost: x\r\n\r\n", "", []string{"Transfer-Encoding: chunked", "\r\n0\r\n\r\n"}, false},
		{"a local reply gets a length", "GET /direct HTTP/1.1\r\nHost: x\r\n\r\n", "", []string{"HTTP/1.1 200 OK", "Content-Length: 6", "direct"}, false},
		{"HEAD has no body", "HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", "", []string{"HTTP/1.1 200 OK", "HTTP/1.1 200 OK", "ok"}, false},
		{"100-continue", "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", "hello",
			[]string{"HTTP/1.1 100 Continue", "HTTP/1.1 200 OK", "hello"}, false},
		{"unknown expectation", "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: coffee\r\n\r\nhello", "",
			[]string{"HTTP/1.1 417 Expectation Failed"}, true},
		{"upgrade", "GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n", "ping\n",
			[]string{"HTTP/1.1 101 Switching Protocols", "echo ping"}, true}, // the backend then closes
		{"a request body the route leaves is dropped", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: x\r\n\r\n", "",
			[]string{"ok", "HTTP/1.1 200 OK", "ok"}, false},
		{"bad request", "NOT HTTP\r\n\r\n", "", []string{"HTTP/1.1 400 Bad Request", "Connection: close"}, true},
		{"head too large", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 1<<20+8192) + "\r\n\r\n", "",
			[]string{"HTTP/1.1 431 Request Header Fields Too Large"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			go io.WriteString(c, tt.send) // a large head is written while the proxy answers
			br := bufio.NewReader(c)
			var got strings.Builder
			for i, w := range tt.want {
				for !strings.Contains(got.String(), w) {
					b := make([]byte, 4096)
					n, err := br.Read(b)
					got.Write(b[:n])
					if err != nil {
						t.Fatalf("read: %v; want %q in:\n%s", err, w, got.String())
					}
				}
				// Each expected piece is consumed, so that the next one
				// must come after it.
				s := got.String()
				rest := s[strings.Index(s, w)+len(w):]
				got.Reset()
				got.WriteString(rest)
				if i == 0 && tt.after != "" {
					io.WriteString(c, tt.after)
				}
			}
			if tt.closed {
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.ReadAll(br); err != nil {
					t.Errorf("connection not closed by the proxy: %v", err)
				}
			} else {
				c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				if _, err := br.ReadByte(); err == io.EOF {
					t.Error("connection closed, want it kept")
				}
			}
		})
	}
}
