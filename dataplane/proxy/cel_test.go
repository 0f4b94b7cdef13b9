package proxy

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshlab/meshlab/dataplane/router"
	"github.com/meshlab/meshlab/dataplane/upstream"
)

// celFixture is a finished request as the proxy holds it: a GET
// /api/v1/items?page=2 to reviews, answered 503 with the upstream's
// flags, over mTLS; and a TCP connection's entry on the same connection.
func celFixture(t testing.TB) (h, tcp *logEntry) {
	t.Helper()
	return celHTTPEntry(true, 503), celTCPEntry()
}

// celHTTPEntry is the request of celFixture, over mTLS or not, answered
// status (0: no response).
func celHTTPEntry(mtls bool, status int) *logEntry {
	r := httptest.NewRequest("GET", "http://reviews:9080/api/v1/items?page=2", nil)
	r.RequestURI = "/api/v1/items?page=2"
	r.Host = "reviews:9080"
	r.Header.Set("X-Debug", "true")
	r.Header.Set("User-Agent", "probe/1")
	r.Header.Add("X-Multi", "a")
	r.Header.Add("X-Multi", "b")
	r.Header.Set("X-Request-Id", "6f8a2b1c-0000-4000-8000-000000000001")
	ci := &connInfo{
		listener: "virtualInbound", inbound: true, sni: "outbound_.9080_._.reviews.default.svc.cluster.local",
		local:  netip.MustParseAddrPort("10.0.0.2:15006"),
		orig:   netip.MustParseAddrPort("10.0.0.2:9080"),
		remote: netip.MustParseAddrPort("10.0.0.1:41234"),
		chain:  &chain{name: "0.0.0.0_9080"},
		id: &peerIdentity{peerURI: "spiffe://cluster.local/ns/default/sa/productpage", localURI: "spiffe://cluster.local/ns/default/sa/reviews",
			uriSANs: []string{"spiffe://cluster.local/ns/default/sa/productpage"}, version: "TLSv1.3", xfcc: []string{"By=..."}},
	}
	if !mtls {
		ci.id = nil
	}
	rec := httptest.NewRecorder()
	rec.Header().Set("Content-Type", "text/plain")
	ex := &exchange{ResponseWriter: rec, status: status, bytes: 19, flags: flagUF | flagURX, conn: ci,
		route:    &router.Route{Name: "default"},
		cluster:  &upstream.Cluster{Name: "inbound|9080||"},
		endpoint: &upstream.Endpoint{Addr: "127.0.0.1:9080"}}
	start := time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC)
	return &logEntry{start: start, r: r, ex: ex, ci: ci}
}

func celTCPEntry() *logEntry {
	start := time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC)
	return &logEntry{start: start, ci: &connInfo{local: netip.MustParseAddrPort("127.0.0.1:6379"), remote: netip.MustParseAddrPort("127.0.0.1:5000")},
		cluster: "outbound|6379||redis.default.svc.cluster.local", ep: &upstream.Endpoint{Addr: "127.0.0.4:6379"}, flags: "UF", received: 5, sent: 7}
}

// TestCELFilter: the access log filter's verdict for the common Istio
// expressions and for what Envoy treats as an error: an absent header,
// an attribute the proxy has not got, a non-bool result, any request.*
// or response.code of a TCP connection — all "not logged".
func TestCELFilter(t *testing.T) {
	h, tcp := celFixture(t)
	plain := celHTTPEntry(false, 200)
	tests := []struct {
		expr  string
		entry *logEntry
		want  bool
	}{
		{"response.code >= 400", h, true},
		{"response.code >= 400", plain, false},
		{"request.headers['x-debug'] == 'true'", h, true},
		{"request.headers['X-Debug'] == 'true'", h, true},
		{"request.headers['x-absent'] == 'true'", h, false},                                // no such key: error
		{"!(request.headers['x-absent'] == 'true')", h, false},                             // still an error, not true
		{"'x-absent' in request.headers || request.headers['x-debug'] == 'true'", h, true}, // membership is not an error
		{"has(request.headers.x_absent)", h, false},
		{"has(request.url_path) && !has(request.referer) && !has(response.grpc_status)", h, true},
		{"has(request.url_path) || 1 + 'a' == 2", h, true}, // unchecked (the checker refuses 1 + 'a'): has() is still a bool
		{"1 + 'a' == 2", h, false},
		{"request.headers['x-multi'] == 'a,b'", h, true},
		{"request.headers[':authority'] == 'reviews:9080' && request.headers[':method'] == 'GET'", h, true},
		{"connection.mtls", h, true},
		{"connection.mtls", plain, false},
		{"connection.uri_san_peer_certificate.endsWith('/sa/productpage')", h, true},
		{"connection.tls_version == 'TLSv1.3'", plain, false}, // plaintext: absent
		{"request.url_path.startsWith('/api')", h, true},
		{"request.path == '/api/v1/items?page=2' && request.query == 'page=2'", h, true},
		{"request.host == 'reviews:9080' && request.method == 'GET' && request.scheme == 'https'", h, true},
		{"request.scheme == 'http'", plain, true},
		{"request.useragent.contains('probe') && request.id.size() == 36", h, true},
		{"request.referer == ''", h, false}, // no Referer: absent
		{"request.protocol == 'HTTP/1.1'", h, true},
		{"request.time < timestamp('2027-01-01T00:00:00Z')", h, true},
		{"request.duration > duration('0s')", h, true},
		{"xds.cluster_name == 'inbound|9080||' && xds.route_name == 'default'", h, true},
		{"xds.listener_direction == 1 && xds.filter_chain_name == '0.0.0.0_9080'", h, true},
		{"source.address == '10.0.0.1:41234' && source.port == 41234", h, true},
		{"destination.port == 9080", h, true},
		{"upstream.address == '127.0.0.1:9080' && upstream.port == 9080", h, true},
		{"response.flags == 0x8020", h, true}, // UF|URX as Envoy's bits
		{"response.code_details == 'via_upstream' && response.size == 19", h, true},
		{"response.headers['content-type'] == 'text/plain'", h, true},
		{"response.grpc_status == 0", h, false},
		{"xds.node.id == 'x'", h, false},        // the node is not in the vocabulary here
		{"connection.id > 0u", h, false},        // no connection ids: absent
		{"nosuchroot.attr == 1", h, false},      // unknown variable
		{"request.nosuchattr == 'x'", h, false}, // unknown attribute
		{"response.code", h, false},             // not a bool
		{"'yes'", h, false},
		{"true", h, true},
		{"1/0 == 1", h, false},
		{"request.method + '!' == 'GET!'", h, false}, // no string concatenation in Envoy's filter: an error at evaluation
		{"request.method.matches('^G.T$')", h, true},
		{"size([1] + [2]) == 2", h, false},                                                 // nor of lists
		{"request.size + 1 == 1 && request.time + duration('1s') > request.time", h, true}, // numbers and times add
		{"request.headers.size() > 0", h, true},
		// TCP: no headers, no response code; the connection's own attributes.
		{"response.code >= 400", tcp, false},
		{"request.url_path.startsWith('/api')", tcp, false},
		{"xds.cluster_name == 'outbound|6379||redis.default.svc.cluster.local'", tcp, true},
		{"response.flags == 0x20 && request.size == 5 && response.size == 7", tcp, true},
		{"upstream.address == '127.0.0.4:6379' && destination.port == 6379", tcp, true},
		{"connection.mtls", tcp, false},
	}
	for _, tt := range tests {
		c, err := compileCEL(tt.expr, envoyFilterCEL, nil)
		if err != nil {
			t.Errorf("%s: %v", tt.expr, err)
			continue
		}
		if got := c.matches(tt.entry); got != tt.want {
			t.Errorf("%s: logged %v, want %v", tt.expr, got, tt.want)
		}
	}
}

// TestCELDimension: a dimension's value as Istio prints it; an error is
// "" (the metrics' "unknown"). Each expression the fast path takes gives
// what CEL gives.
func TestCELDimension(t *testing.T) {
	h, tcp := celFixture(t)
	noResp := celHTTPEntry(true, 0)
	tests := []struct {
		expr     string
		entry    *logEntry
		want     string
		fastHTTP bool
	}{
		{"request.host", h, "reviews:9080", true},
		{"request.method", h, "GET", true},
		{"request.path", h, "/api/v1/items?page=2", true},
		{"request.url_path", h, "/api/v1/items", true},
		{"request.scheme", h, "https", true},
		{"request.protocol", h, "HTTP/1.1", true},
		{"request.useragent", h, "probe/1", true},
		{"request.referer", h, "", true},
		{"request.id", h, "6f8a2b1c-0000-4000-8000-000000000001", true},
		{"request.headers['x-debug']", h, "true", true},
		{"request.headers['x-multi']", h, "a,b", true},
		{"request.headers['x-absent']", h, "", true},
		{"request.headers[':authority']", h, "reviews:9080", false},
		{"response.code", h, "503", true},
		{"response.code", noResp, "", true},
		{"connection.mtls", h, "true", true},
		{"connection.requested_server_name", h, "outbound_.9080_._.reviews.default.svc.cluster.local", true},
		{"xds.cluster_name", h, "inbound|9080||", true},
		{"'canary'", h, "canary", true},
		{"response.code >= 500 ? 'server_error' : 'ok'", h, "server_error", false},
		{"response.code >= 400", h, "true", false},
		{"request.url_path.startsWith('/api')", h, "true", false},
		{"response.code + 1", h, "504", false},
		{"uint(response.code)", h, "503", false},
		{"double(response.code) / 2.0", h, "251.5", false},
		{"1.0 / 3.0", h, "0.333333", false},
		{"b'raw'", h, "raw", false},
		{"null", h, "NULL", false},
		{"duration('1500ms')", h, "1.5s", false},
		{"duration('1h')", h, "1h", false},
		{"duration('1h30s')", h, "1h30s", false},
		{"duration('2m')", h, "2m", false},
		{"duration('72h3m0.5s')", h, "72h3m0.5s", false},
		{"duration('1500ns')", h, "1.5us", false},
		{"duration('0s')", h, "0", false},
		{"request.time", h, "2026-12-06T20:00:00+00:00", false},
		{"[1, 2]", h, "list value", false},
		{"request.headers", h, "map value", false},
		{"request.headers['x-absent'] + 'x'", h, "", false},
		{"upstream.address", h, "127.0.0.1:9080", false},
		{"request.method + '!'", h, "GET!", false},
		{"[1, 2, 3].filter(x, x > response.code / 200).size()", h, "1", false},
		{"string(source.port)", h, "41234", false},
		// TCP.
		{"xds.cluster_name", tcp, "outbound|6379||redis.default.svc.cluster.local", true},
		{"request.host", tcp, "", true},
		{"response.code", tcp, "", true},
		{"connection.mtls", tcp, "false", true},
		{"upstream.address", tcp, "127.0.0.4:6379", false},
	}
	for _, tt := range tests {
		d, err := compileDimension(tt.expr, nil)
		if err != nil {
			t.Errorf("%s: %v", tt.expr, err)
			continue
		}
		if fast := d.cel == nil; fast != tt.fastHTTP {
			t.Errorf("%s: fast path %v, want %v", tt.expr, fast, tt.fastHTTP)
		}
		c, err := compileCEL(tt.expr, istioStatsCEL, nil)
		if err != nil {
			t.Errorf("%s: %v", tt.expr, err)
			continue
		}
		if got := c.label(tt.entry); got != tt.want {
			t.Errorf("%s: CEL %q, want %q", tt.expr, got, tt.want)
		}
		if d.cel != nil {
			continue
		}
		var got string
		if tt.entry.ex != nil {
			got = d.http(tt.entry.r, tt.entry.ex)
		} else {
			got = d.tcp(tt.entry.ci, tt.entry.cluster)
		}
		if got != tt.want {
			t.Errorf("%s: fast path %q, CEL %q", tt.expr, got, tt.want)
		}
	}
}

// TestCELCompileError: what Envoy's (or Istio's) builder refuses is an
// error that names the expression and says why: a parse error, a
// comprehension in an access log filter, a function the evaluator has
// not got (string() in a filter without cel_config, the strings
// extension anywhere).
func TestCELCompileError(t *testing.T) {
	withConversion := envoyFilterCEL
	withConversion.stringConversion = true
	tests := []struct {
		expr string
		o    celOptions
		want string // "" compiles
	}{
		{"response.code >=", envoyFilterCEL, "ERROR"},
		{"request.headers['x", istioStatsCEL, "ERROR"},
		{"a b", envoyFilterCEL, "ERROR"},
		{"", envoyFilterCEL, "ERROR"},
		{"[1].exists(x, x == response.code)", envoyFilterCEL, "comprehensions"},
		{"[1].exists(x, x == response.code)", istioStatsCEL, ""},
		{"string(response.code) == '200'", envoyFilterCEL, "no function string"},
		{"string(response.code) == '200'", withConversion, ""},
		{"string(response.code)", istioStatsCEL, ""},
		{"xds.cluster_name.split('|')[3]", istioStatsCEL, "no function split"},
		{"nosuch(1)", envoyFilterCEL, "no function nosuch"},
		{"has(request.headers.x) && request.path.startsWith('/') && 'a' in request.headers && int(request.size) > 0 ? true : false", envoyFilterCEL, ""},
	}
	for _, tt := range tests {
		_, err := compileCEL(tt.expr, tt.o, nil)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%q: %v", tt.expr, err)
		case tt.want == "":
		case err == nil:
			t.Errorf("%q compiled, want an error saying %q", tt.expr, tt.want)
		case !strings.Contains(err.Error(), "CEL expression "+strconv.Quote(tt.expr)) || !strings.Contains(err.Error(), tt.want):
			t.Errorf("%q: error %q does not name the expression and say %q", tt.expr, err, tt.want)
		}
	}
}

// TestCELStringConcat: string + string is an evaluation error in Envoy's
// filter unless its cel_config enables it.
func TestCELStringConcat(t *testing.T) {
	h, _ := celFixture(t)
	concat := envoyFilterCEL
	concat.stringConcat = true
	for _, tt := range []struct {
		o    celOptions
		want bool
	}{{envoyFilterCEL, false}, {concat, true}, {istioStatsCEL, true}} {
		c, err := compileCEL("request.method + '!' == 'GET!'", tt.o, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.matches(h); got != tt.want {
			t.Errorf("%+v: %v, want %v", tt.o, got, tt.want)
		}
	}
}

// TestCELCache: an expression compiled again (a listener update) is the
// same program; another evaluator's is not; the cache stays bounded.
func TestCELCache(t *testing.T) {
	a, _ := compileCEL("response.code >= 400", envoyFilterCEL, nil)
	b, _ := compileCEL("response.code >= 400", envoyFilterCEL, nil)
	c, _ := compileCEL("response.code >= 400", istioStatsCEL, nil)
	if a == nil || a != b || a == c {
		t.Fatalf("same expression and options: %p %p; other options %p", a, b, c)
	}
	for i := range maxCELCache + 10 {
		if _, err := compileCEL("response.code == "+strconv.Itoa(i), envoyFilterCEL, nil); err != nil {
			t.Fatal(err)
		}
	}
	celCache.mu.Lock()
	n := len(celCache.m)
	celCache.mu.Unlock()
	if n > maxCELCache {
		t.Fatalf("%d cached, want at most %d", n, maxCELCache)
	}
}

// TestCELNode: the proxy's Node is xds.node in both evaluators and node
// in Istio's stats filter only; without one, reading it is an error.
func TestCELNode(t *testing.T) {
	h, _ := celFixture(t)
	md, err := structpb.NewStruct(map[string]any{"CLUSTER_ID": "Kubernetes", "NAMESPACE": "default"})
	if err != nil {
		t.Fatal(err)
	}
	node := &corev3.Node{Id: "sidecar~10.0.0.2~reviews-v2-0.default~default.svc.cluster.local", Metadata: md}
	tests := []struct {
		expr string
		o    celOptions
		node *corev3.Node
		want string
	}{
		{"xds.node.metadata['CLUSTER_ID']", istioStatsCEL, node, "Kubernetes"},
		{"node.metadata['NAMESPACE']", istioStatsCEL, node, "default"},
		{"xds.node.id.startsWith('sidecar~')", envoyFilterCEL, node, "true"},
		{"node.id.startsWith('sidecar~')", envoyFilterCEL, node, ""}, // no root "node" in Envoy's
		{"xds.node.metadata['ABSENT']", istioStatsCEL, node, ""},
		{"xds.node.id", istioStatsCEL, nil, ""},
		{"node.id", istioStatsCEL, nil, ""},
	}
	for _, tt := range tests {
		c, err := compileCEL(tt.expr, tt.o, tt.node)
		if err != nil {
			t.Errorf("%s: %v", tt.expr, err)
			continue
		}
		if got := c.label(h); got != tt.want {
			t.Errorf("%s (node %v): %q, want %q", tt.expr, tt.node != nil, got, tt.want)
		}
	}
}
