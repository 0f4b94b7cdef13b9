package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/meshlab/meshlab/dataplane/xdsclient"
)

// h1Echo answers with what it saw of the request, and records the
// paths it was asked for.
type h1Echo struct {
	mu    sync.Mutex
	paths []string
}

func (e *h1Echo) saw(path string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range e.paths {
		if p == path {
			return true
		}
	}
	return false
}

// h1Proxy starts a gateway-style proxy whose HCM is h (routes "*" to an
// echo backend) and returns its address and the backend.
func h1Proxy(t *testing.T, h func(*routev3.RouteConfiguration) *routev3.RouteConfiguration) (string, *h1Echo) {
	t.Helper()
	eb := &h1Echo{}
	a := handlerBackend(t, "127.0.0.2", func(w http.ResponseWriter, r *http.Request) {
		eb.mu.Lock()
		eb.paths = append(eb.paths, r.URL.Path)
		eb.mu.Unlock()
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		fmt.Fprintf(w, "host=%s path=%s x=%q body=%q", r.Host, r.URL.Path, r.Header.Get("X"), b)
	})
	rc := &routev3.RouteConfiguration{Name: "http.8080", VirtualHosts: []*routev3.VirtualHost{
		{Name: "any", Domains: []string{"*"}, Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster("a")}}}}}
	if h != nil {
		rc = h(rc)
	}
	cp := newControlPlane(t, "127.0.0.1:0")
	cp.set("1", gatewayListener("0.0.0.0_8080", "http.8080"), rc, edsCluster("a"), cla("a", a))
	p := startProxy(t, cp.addr, nil)
	addr := p.addr(t, "0.0.0.0_8080")
	p.waitVersion(t, xdsclient.EndpointType, "1")
	return addr, eb
}

// rawExchange writes send on a new connection and reads the first
// response: its status line, its body (Content-Length framed), and
// whether the proxy then closed the connection.
func rawExchange(t *testing.T, addr, send string) (status, body string, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go io.WriteString(c, send) // a large request is written while the proxy answers
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = br.ReadByte()
	return resp.Status, string(b), err == io.EOF
}

// TestH1Conformance sends exact bytes to the proxy's HTTP/1 server and
// checks the answer against what Envoy's codec and connection manager
// answer (docs/traffic.md lists where Envoy and net/http differ).
func TestH1Conformance(t *testing.T) {
	addr, eb := h1Proxy(t, nil)
	const get = "GET / HTTP/1.1\r\nHost: x\r\n"
	manyHeaders := func(n int) string {
		var b strings.Builder
		b.WriteString(get)
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "X-H%d: v\r\n", i)
		}
		return b.String() + "\r\n"
	}
	tests := []struct {
		name, send string
		status     string // the status line
		body       string // a part of the response body
		closed     bool
	}{
		// Framing: Content-Length and Transfer-Encoding.
		{"CL and TE", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "400 Bad Request", "", true},
		{"TE with space before colon and CL", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc", "400 Bad Request", "", true},
		{"TE with tab before colon", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding\t: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "400 Bad Request", "", true},
		{"TE chunked with trailing space", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked \r\n\r\n3\r\nabc\r\n0\r\n\r\n", "200 OK", `body="abc"`, false},
		{"TE chunked after a tab", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\tchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "200 OK", `body="abc"`, false},
		{"TE xchunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "501 Not Implemented", "", true},
		{"TE chunked, identity", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "501 Not Implemented", "", true},
		{"TE twice", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "501 Not Implemented", "", true},
		{"CL twice, differing", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", "400 Bad Request", "", true},
		{"CL twice, equal", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", "400 Bad Request", "", true},
		{"CL list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc", "400 Bad Request", "", true},
		{"CL signed", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc", "400 Bad Request", "", true},
		{"CL overflows", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\nabc", "400 Bad Request", "", true},
		// Lines.
		{"obs-fold is joined", get + "X: a\r\n b\r\n\r\n", "200 OK", `x="a b"`, false},
		{"obs-fold of TE", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n , identity\r\n\r\n0\r\n\r\n", "400 Bad Request", "", true},
		{"obs-fold first", "GET / HTTP/1.1\r\n X: a\r\nHost: x\r\n\r\n", "400 Bad Request", "", true},
		{"bare LF line ends", "GET / HTTP/1.1\nHost: x\nX: a\n\n", "200 OK", `x="a"`, false},
		{"bare CR in a value", get + "X: a\rb\r\n\r\n", "400 Bad Request", "", true},
		{"NUL in a value", get + "X: a\x00b\r\n\r\n", "400 Bad Request", "", true},
		{"header without colon", get + "X a\r\n\r\n", "400 Bad Request", "", true},
		{"space in the target", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", "400 Bad Request", "", true},
		{"unknown method", "FOO / HTTP/1.1\r\nHost: x\r\n\r\n", "400 Bad Request", "", true},
		// Chunked bodies.
		{"chunk extension", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;name=\"v\"\r\nabc\r\n0\r\n\r\n", "200 OK", `body="abc"`, false},
		{"chunk extension with a control", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;a\x01\r\nabc\r\n0\r\n\r\n", "400 Bad Request", "", true},
		{"chunk size not hex", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", "400 Bad Request", "", true},
		{"chunk size 0x", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n", "400 Bad Request", "", true},
		{"chunk size negative", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nabc\r\n0\r\n\r\n", "400 Bad Request", "", true},
		{"chunk size over 16 digits, leading zeros", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000003\r\nabc\r\n0\r\n\r\n", "400 Bad Request", "", true},
		{"chunk size overflows", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\nabc\r\n0\r\n\r\n", "400 Bad Request", "", true},
		{"chunk longer than its size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n", "400 Bad Request", "", true},
		{"chunk size line ending in LF", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n", "400 Bad Request", "", true},
		{"chunk data ending in LF", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\n", "400 Bad Request", "", true},
		{"whitespace before a chunk extension", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3 ;a\r\nabc\r\n0\r\n\r\n", "400 Bad Request", "", true},
		{"TE on HTTP/1.0", "POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "400 Bad Request", "", true},
		{"chunked with trailers", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: v\r\n\r\n", "200 OK", `body="abc"`, false},
		// Host and the request target.
		{"no Host", "GET / HTTP/1.1\r\n\r\n", "400 Bad Request", "", true},
		{"no Host, HTTP/1.0", "GET / HTTP/1.0\r\n\r\n", "400 Bad Request", "", true},
		{"Host twice", "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", "400 Bad Request", "", true},
		{"Host with space, slash", "GET / HTTP/1.1\r\nHost: a b/c@d\r\n\r\n", "400 Bad Request", "", true},
		{"Host empty", "GET / HTTP/1.1\r\nHost:\r\n\r\n", "400 Bad Request", "", true},
		{"absolute-form wins over Host", "GET http://other.example:81/p HTTP/1.1\r\nHost: x\r\n\r\n", "200 OK", "host=other.example:81 path=/p", false},
		{"absolute-form without Host", "GET http://other.example/p HTTP/1.1\r\n\r\n", "200 OK", "host=other.example path=/p", false},
		{"absolute-form, other scheme", "GET ftp://other.example/p HTTP/1.1\r\nHost: x\r\n\r\n", "400 Bad Request", "", true},
		{"CONNECT", "CONNECT other.example:443 HTTP/1.1\r\nHost: other.example:443\r\n\r\n", "403 Forbidden", "", true},
		{"CONNECT with a body", "CONNECT other.example:443 HTTP/1.1\r\nHost: other.example:443\r\nContent-Length: 3\r\n\r\nabc", "400 Bad Request", "", true},
		// Versions.
		{"HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", "505 HTTP Version Not Supported", "", true},
		{"HTTP/1.1.1", "GET / HTTP/1.1.1\r\nHost: x\r\n\r\n", "400 Bad Request", "", true},
		{"no version", "GET /\r\nHost: x\r\n\r\n", "400 Bad Request", "", true},
		// Limits: max_request_headers_kb 60, max_headers_count 100.
		{"100 headers", manyHeaders(99), "200 OK", "", false},
		{"101 headers", manyHeaders(100), "431 Request Header Fields Too Large", "", true},
		{"60,000 headers", manyHeaders(60000), "431 Request Header Fields Too Large", "", true},
		{"a 61 KiB header", get + "X: " + strings.Repeat("a", 61<<10) + "\r\n\r\n", "431 Request Header Fields Too Large", "", true},
		{"a 59 KiB header", get + "X: " + strings.Repeat("a", 59<<10) + "\r\n\r\n", "200 OK", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, closed := rawExchange(t, addr, tt.send)
			if status != tt.status || !strings.Contains(body, tt.body) {
				t.Errorf("got %q %q, want %q with %q", status, body, tt.status, tt.body)
			}
			if closed != tt.closed {
				t.Errorf("connection closed: %v, want %v", closed, tt.closed)
			}
		})
	}

	// A body whose framing breaks ends the connection: what follows it is
	// never read as a request.
	t.Run("pipelined after an aborted body", func(t *testing.T) {
		status, _, closed := rawExchange(t, addr, "POST /first HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+
			"3\r\nabc\r\nzz\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
		if status != "400 Bad Request" || !closed {
			t.Errorf("got %q, closed %v; want 400 and closed", status, closed)
		}
		time.Sleep(100 * time.Millisecond)
		if eb.saw("/smuggled") {
			t.Error("the request after the aborted body reached the upstream")
		}
	})
}

// TestH1HeadMemory: a head far over the limit is refused without being
// held: the proxy allocates a bounded amount whatever the client sends.
func TestH1HeadMemory(t *testing.T) {
	addr, _ := h1Proxy(t, nil)
	var b strings.Builder
	b.WriteString("GET / HTTP/1.1\r\nHost: x\r\n")
	for b.Len() < 20<<20 {
		b.WriteString("X-Header-Name: some value\r\n")
	}
	send := []byte(b.String())
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var before, after goruntime.MemStats
	goruntime.GC()
	goruntime.ReadMemStats(&before)
	go c.Write(send)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	goruntime.ReadMemStats(&after)
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("got %q, want 431", resp.Status)
	}
	if d := after.TotalAlloc - before.TotalAlloc; d > 4<<20 {
		t.Errorf("the proxy allocated %d bytes for a refused head", d)
	}
}

// TestHeaderCountHTTP2: requests that net/http's server reads (HTTP/2,
// TLS) get the same header count limit.
func TestHeaderCountHTTP2(t *testing.T) {
	addr, _ := h1Proxy(t, nil)
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	c := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	for _, tt := range []struct {
		headers, status int
	}{{90, http.StatusOK}, {150, http.StatusRequestHeaderFieldsTooLarge}} {
		req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < tt.headers; i++ {
			req.Header.Set(fmt.Sprintf("X-H%d", i), "v")
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != tt.status {
			t.Errorf("%d headers: got %s %d, want HTTP/2 %d", tt.headers, resp.Proto, resp.StatusCode, tt.status)
		}
	}
}
