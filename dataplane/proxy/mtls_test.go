package proxy

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlab/meshlab/dataplane/upstream"
	"github.com/meshlab/meshlab/dataplane/xdsclient"
)

// mtlsOpts shape an mtlsMesh; the zero value is Istio's auto mTLS to a
// STRICT server with the right identities.
type mtlsOpts struct {
	mode string // "STRICT" (default) or "PERMISSIVE"
	// sans the client verifies (default: the server's SPIFFE ID).
	sans []string
	// clientID and serverID replace the identities the mesh CA issues
	// (noIdentity: none at all).
	clientID, serverID Identity
	noClientIdentity   bool
	serverFilters      []*hcmv3.HttpFilter
	// http2: the outbound cluster speaks HTTP/2 (ALPN istio-h2).
	http2 bool
	// appALPN is the server chain's application_protocols (default Istio's HTTP ones).
	appALPN []string
	// tcp: the port is TCP (tcp_proxy both sides) to an echo server.
	tcp bool
	// cluster changes the client's outbound cluster.
	cluster func(*clusterv3.Cluster)
	// body is what the app answers ("reviews" by default).
	body string
	// clientLog and serverLog receive the sidecars' access logs, in
	// clientFormat and serverFormat.
	clientLog, serverLog       io.Writer
	clientFormat, serverFormat string
}

// mtlsMesh is the sidecar-to-sidecar path of Istio's auto mTLS in one
// process, on loopback: a client sidecar (productpage) whose outbound
// cluster has Istio's transport_socket_matches, to the server sidecar's
// (reviews) virtualInbound with a tls_inspector and per-mode chains, to
// the app.
type mtlsMesh struct {
	client, server *testProxy
	out            string         // the client's outbound listener
	in             netip.AddrPort // the server's virtualInbound
	ca             *testCA
	clientID       *testIdentity
	serverID       *testIdentity
	// xfcc is the last X-Forwarded-Client-Cert the app saw ("<none>": none).
	xfcc atomic.Pointer[string]
	// cpClient feeds the client; clientRes is what it was given.
	cpClient  *controlPlane
	clientRes []types.Resource
	// setMode pushes the server's inbound listener for another mode;
	// setServer for another mode and connection manager.
	setMode   func(version, mode string)
	setServer func(version, mode string, f *listenerv3.Filter)
	// hashes are the distinct XFCC Hash values the app saw.
	mu     sync.Mutex
	hashes map[string]bool
}

const outCluster = "outbound|9080||reviews.default.svc.cluster.local"
const reviewsSNI = "outbound_.9080_._.reviews.default.svc.cluster.local"

func newMTLSMesh(t testing.TB, o mtlsOpts) *mtlsMesh {
	t.Helper()
	m := &mtlsMesh{ca: newTestCA(t), hashes: map[string]bool{}}
	if o.mode == "" {
		o.mode = "STRICT"
	}
	if o.body == "" {
		o.body = "reviews"
	}
	if o.sans == nil {
		o.sans = []string{spiffeReviews}
	}
	if o.appALPN == nil {
		o.appALPN = istioInboundHTTP
		if o.tcp {
			o.appALPN = istioInboundTCP
		}
	}
	m.clientID = newTestIdentity(m.ca.issue(t, spiffeProductpage), m.ca.pool)
	m.serverID = newTestIdentity(m.ca.issue(t, spiffeReviews), m.ca.pool)
	var clientID, serverID Identity = m.clientID, m.serverID
	if o.clientID != nil {
		clientID = o.clientID
	}
	if o.noClientIdentity {
		clientID = nil
	}
	if o.serverID != nil {
		serverID = o.serverID
	}

	// The server sidecar and its app.
	var appAddr netip.AddrPort
	var filter *listenerv3.Filter
	const inName = "inbound|9080||"
	if o.tcp {
		appAddr = echo(t.(*testing.T), "127.0.0.3")
		filter = tcpFilter(inName)
	} else {
		appAddr = handlerBackend(t, "127.0.0.3", func(w http.ResponseWriter, r *http.Request) {
			v := "<none>"
			if h, ok := r.Header["X-Forwarded-Client-Cert"]; ok {
				v = strings.Join(h, ",")
				if _, after, ok := strings.Cut(v, "Hash="); ok {
					h, _, _ := strings.Cut(after, ";")
					m.mu.Lock()
					m.hashes[h] = true
					m.mu.Unlock()
				}
			}
			m.xfcc.Store(&v)
			io.WriteString(w, o.body)
		})
		filter = inboundHCM(inName, o.serverFilters...)
	}
	cpS := newControlPlane(t, "127.0.0.1:0")
	cpS.logFormat = o.serverFormat
	m.server = runProxy(t, cpS.addr, Config{Node: sidecarNode(t, "reviews-v2", map[string]any{"app": "reviews", "version": "v2"}), Identity: serverID,
		AccessLog: o.serverLog})
	inCluster := staticCluster(inName, appAddr)
	inCluster.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"istio": mustStruct(map[string]any{"services": []any{map[string]any{
		"host": "reviews.default.svc.cluster.local", "name": "reviews", "namespace": "default"}}})}}
	serverALPN := []string{"h2", "http/1.1"}
	if o.tcp {
		serverALPN = []string{"istio-peer-exchange", "h2", "http/1.1"}
	}
	m.setServer = func(version, mode string, f *listenerv3.Filter) {
		l := inboundListener(mode, f, o.appALPN, serverALPN)
		if m.in.IsValid() {
			l.Address = sockAddr("127.0.0.1", uint32(m.in.Port()))
		}
		cpS.set(version, l, inCluster)
	}
	m.setMode = func(version, mode string) { m.setServer(version, mode, filter) }
	m.setMode("1", o.mode)
	m.in = netip.MustParseAddrPort(m.server.addr(t, "virtualInbound"))

	// The client sidecar.
	cpC := newControlPlane(t, "127.0.0.1:0")
	cpC.logFormat = o.clientFormat
	m.client = runProxy(t, cpC.addr, Config{Node: sidecarNode(t, "productpage-v1", map[string]any{"app": "productpage", "version": "v1"}), Identity: clientID,
		AccessLog: o.clientLog})
	cl := autoMTLS(edsCluster(outCluster), reviewsSNI, istioOutboundALPN, o.sans...)
	if o.http2 {
		cl.TypedExtensionProtocolOptions = map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(&httpv3.HttpProtocolOptions{
			UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}}}})}
	}
	if o.cluster != nil {
		o.cluster(cl)
	}
	out := gatewayListener("0.0.0.0_9080", "9080")
	out.TrafficDirection = corev3.TrafficDirection_OUTBOUND
	if o.tcp {
		out.FilterChains = []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{tcpFilter(outCluster)}}}
	}
	m.cpClient = cpC
	m.clientRes = []types.Resource{out,
		&routev3.RouteConfiguration{Name: "9080", VirtualHosts: []*routev3.VirtualHost{{Name: "reviews.default.svc.cluster.local:9080", Domains: []string{"*"},
			Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster(outCluster)}}}}},
		cl, meshEndpoints(outCluster, map[netip.AddrPort]bool{m.in: true})}
	cpC.set("1", m.clientRes...)
	m.out = m.client.addr(t, "0.0.0.0_9080")
	m.client.waitVersion(t, xdsclient.EndpointType, "1")
	return m
}

func (m *mtlsMesh) lastXFCC() string {
	if v := m.xfcc.Load(); v != nil {
		return *v
	}
	return ""
}

// stat reads one of a proxy's Envoy counters from /stats/prometheus.
func stat(t *testing.T, p *testProxy, name string, labels map[string]string) float64 {
	t.Helper()
	f := scrape(t, p)[name]
	if f == nil {
		return 0
	}
next:
	for _, mm := range f.GetMetric() {
		for _, l := range mm.GetLabel() {
			if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
				continue next
			}
		}
		return mm.GetCounter().GetValue()
	}
	return 0
}

// TestMeshMTLS sends requests on the mesh path with Istio's auto mTLS
// config and checks what each side makes of the peer: the exact
// X-Forwarded-Client-Cert the app gets, both sides' metrics labels and
// the SSL counters.
func TestMeshMTLS(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts mtlsOpts
	}{
		{"http/1.1", mtlsOpts{}},
		// The server chain takes only istio-h2: the request gets there
		// only if the client offered HTTP/2's ALPN.
		{"h2", mtlsOpts{http2: true, appALPN: []string{"istio-h2"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := newMTLSMesh(t, tt.opts)
			for i := 0; i < 3; i++ {
				req, _ := http.NewRequest(http.MethodGet, "http://"+m.out+"/", nil)
				req.Host = "reviews:9080"
				// A client's own XFCC is not trusted past the client
				// sidecar (its HCM sanitizes).
				req.Header.Set("X-Forwarded-Client-Cert", "By=spiffe://evil;URI=spiffe://cluster.local/ns/default/sa/admin")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(body) != "reviews" {
					t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
				}
			}
			peer := m.clientID.cert.Load().Leaf
			sum := sha256.Sum256(peer.Raw)
			want := "By=" + spiffeReviews + ";Hash=" + hex.EncodeToString(sum[:]) + `;Subject="";URI=` + spiffeProductpage
			if got := m.lastXFCC(); got != want {
				t.Errorf("X-Forwarded-Client-Cert\n got %s\nwant %s", got, want)
			}
			common := map[string]string{"source_workload": "productpage-v1", "destination_workload": "reviews-v2",
				"source_principal": spiffeProductpage, "destination_principal": spiffeReviews, "response_code": "200"}
			with := func(kv ...string) map[string]string {
				out := map[string]string{}
				for k, v := range common {
					out[k] = v
				}
				for i := 0; i+1 < len(kv); i += 2 {
					out[kv[i]] = kv[i+1]
				}
				return out
			}
			if got := sample(t, m.server, "istio_requests_total", with("reporter", "destination", "connection_security_policy", "mutual_tls")); got != 3 {
				t.Errorf("server's mutual_tls series = %v, want 3", got)
			}
			clientLabels := with("reporter", "source", "connection_security_policy", "unknown")
			if got := sample(t, m.client, "istio_requests_total", clientLabels); got != 3 {
				t.Errorf("client's series = %v, want 3", got)
			}
			if got := stat(t, m.server, "envoy_listener_ssl_handshake", map[string]string{"envoy_listener_address": "127.0.0.1_0"}); got < 1 {
				t.Errorf("server ssl.handshake = %v, want ≥ 1", got)
			}
			if got := stat(t, m.client, "envoy_cluster_ssl_handshake", map[string]string{"envoy_cluster_name": outCluster}); got < 1 {
				t.Errorf("client cluster ssl.handshake = %v, want ≥ 1", got)
			}
		})
	}
}

// TestMeshMTLSTCP proxies a TCP connection over mTLS between sidecars
// (ALPN istio-peer-exchange, istio on a TCP chain) and reads the TCP
// series' peer labels.
func TestMeshMTLSTCP(t *testing.T) {
	m := newMTLSMesh(t, mtlsOpts{tcp: true})
	c, err := net.Dial("tcp", m.out)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "ping")
	c.(*net.TCPConn).CloseWrite()
	if b, _ := io.ReadAll(c); string(b) != "PING" {
		t.Fatalf("tcp echo over mTLS = %q", b)
	}
	labels := map[string]string{"reporter": "destination", "connection_security_policy": "mutual_tls",
		"source_principal": spiffeProductpage, "destination_principal": spiffeReviews}
	waitFor(t, "the server's mutual_tls TCP close", func() bool {
		return sample(t, m.server, "istio_tcp_connections_closed_total", labels) == 1
	})
	src := map[string]string{"reporter": "source", "connection_security_policy": "unknown",
		"source_principal": spiffeProductpage, "destination_principal": spiffeReviews}
	if got := sample(t, m.client, "istio_tcp_connections_opened_total", src); got != 1 {
		t.Errorf("client's TCP series = %v, want 1", got)
	}
}

// get200 sends one request through the client sidecar.
func (m *mtlsMesh) get(t *testing.T) int {
	t.Helper()
	code, _, _ := get(t, http.DefaultClient, m.out, "reviews:9080", "/")
	return code
}

// TestMTLSRefused: each broken link fails closed — a 503 at the client
// sidecar, the failure counted — never a request that reaches the app
// some other way.
func TestMTLSRefused(t *testing.T) {
	other := newTestCA(t)
	for _, tt := range []struct {
		name string
		opts func(t *testing.T) mtlsOpts
		// stat is the counter that must count it: the client cluster's,
		// or (server) the server listener's.
		stat   string
		server bool
	}{
		{"server SAN not the one expected", func(*testing.T) mtlsOpts {
			return mtlsOpts{sans: []string{"spiffe://cluster.local/ns/default/sa/ratings"}}
		}, "envoy_cluster_ssl_fail_verify_san", false},
		{"server cert from another root", func(t *testing.T) mtlsOpts {
			return mtlsOpts{serverID: newTestIdentity(other.issue(t, spiffeReviews), other.pool)}
		}, "envoy_cluster_ssl_fail_verify_error", false},
		{"client cert from another root", func(t *testing.T) mtlsOpts {
			return mtlsOpts{clientID: newTestIdentity(other.issue(t, spiffeProductpage), nil)}
		}, "envoy_listener_ssl_fail_verify_error", true},
		// PERMISSIVE would take plaintext: a client without identity must
		// not fall back to it.
		{"client without identity, permissive server", func(*testing.T) mtlsOpts {
			return mtlsOpts{noClientIdentity: true, mode: "PERMISSIVE"}
		}, "envoy_cluster_ssl_connection_error", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts(t)
			if o.clientID != nil {
				// Trusts the mesh's roots, presents another CA's cert.
				o.clientID.(*testIdentity).roots.Store(nil)
			}
			m := newMTLSMesh(t, o)
			if ci, ok := o.clientID.(*testIdentity); ok {
				ci.roots.Store(m.ca.pool)
			}
			code, body, _ := get(t, http.DefaultClient, m.out, "reviews:9080", "/")
			if code != http.StatusServiceUnavailable {
				t.Fatalf("status %d, want 503", code)
			}
			// Envoy's body names the TLS failure when the client's own
			// handshake failed.
			if !tt.server && !strings.Contains(body, "reset reason: connection failure, transport failure reason: TLS_error:|") {
				t.Errorf("503 body %q, want the transport failure reason", body)
			}
			if x := m.lastXFCC(); x != "" {
				t.Fatalf("the app was reached (XFCC %q)", x)
			}
			p, labels := m.client, map[string]string{"envoy_cluster_name": outCluster}
			if tt.server {
				p, labels = m.server, nil
			}
			// The server counts after its alert went out: wait for it.
			waitFor(t, tt.stat, func() bool { return stat(t, p, tt.stat, labels) >= 1 })
		})
	}
}

// plainExchange sends payload on a new connection to addr and returns what
// comes back before the server closes.
func plainExchange(t *testing.T, addr, payload string) (string, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, payload); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// TestPeerAuthenticationModes sends plaintext straight to the server
// sidecar, as a client outside the mesh does: STRICT closes the
// connection with not one byte written (curl's exit 56), PERMISSIVE
// serves it on the same port as mTLS — without an XFCC the client could
// forge.
func TestPeerAuthenticationModes(t *testing.T) {
	const plainGET = "GET / HTTP/1.1\r\nHost: reviews:9080\r\nX-Forwarded-Client-Cert: By=forged\r\nConnection: close\r\n\r\n"
	for _, tt := range []struct {
		mode     string
		payload  string
		wantResp string // prefix; "" = closed with nothing
	}{
		{"STRICT", plainGET, ""},
		{"STRICT", "\x00\x01raw tcp bytes\n", ""},
		{"PERMISSIVE", plainGET, "HTTP/1.1 200 OK"},
	} {
		t.Run(tt.mode+"/"+strings.Fields(tt.payload)[0], func(t *testing.T) {
			m := newMTLSMesh(t, mtlsOpts{mode: tt.mode})
			got, err := plainExchange(t, m.in.String(), tt.payload)
			switch {
			case tt.wantResp == "" && got != "":
				t.Fatalf("STRICT wrote %d bytes to a plaintext client: %q", len(got), got)
			case tt.wantResp == "" && !errors.Is(err, syscall.ECONNRESET):
				// As Envoy's close with the client's bytes unread: curl's
				// "(56) Recv failure: Connection reset by peer".
				t.Fatalf("STRICT closed a plaintext client with %v, want a reset", err)
			case tt.wantResp != "" && !strings.HasPrefix(got, tt.wantResp):
				t.Fatalf("plaintext answer %q, want %s", got, tt.wantResp)
			}
			if tt.wantResp != "" && m.lastXFCC() != "<none>" {
				t.Errorf("plaintext request reached the app with XFCC %q", m.lastXFCC())
			}
			// mTLS through the client sidecar works in both modes.
			if code := m.get(t); code != http.StatusOK {
				t.Fatalf("mTLS request: %d", code)
			}
			if !strings.Contains(m.lastXFCC(), "URI="+spiffeProductpage) {
				t.Errorf("mTLS XFCC %q", m.lastXFCC())
			}
		})
	}
}

// TestMTLSPrincipalRBAC enforces an AuthorizationPolicy on the peer's
// SPIFFE ID, as Istio's generator writes it (spiffe:// + principal).
func TestMTLSPrincipalRBAC(t *testing.T) {
	policy := func(principal string) *hcmv3.HttpFilter {
		return &hcmv3.HttpFilter{Name: wellknown.HTTPRoleBasedAccessControl, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&rbachttpv3.RBAC{
			Rules: &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{"ns[default]-policy[reviews]-rule[0]": {
				Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
				Principals: []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{
					PrincipalName: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: principal}}}}}},
			}}}})}}
	}
	for _, tt := range []struct {
		name      string
		principal string
		want      int
	}{
		{"allowed principal", spiffeProductpage, 200},
		{"other principal", "spiffe://cluster.local/ns/default/sa/ratings", 403},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := newMTLSMesh(t, mtlsOpts{serverFilters: []*hcmv3.HttpFilter{policy(tt.principal)}, mode: "PERMISSIVE"})
			if code := m.get(t); code != tt.want {
				t.Fatalf("mTLS request: %d, want %d", code, tt.want)
			}
			// Plaintext has no principal: denied either way.
			got, _ := plainExchange(t, m.in.String(), "GET / HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n")
			if !strings.HasPrefix(got, "HTTP/1.1 403") {
				t.Fatalf("plaintext: %q, want 403", got)
			}
		})
	}
}

// TestPolicyReachesPooledMTLSConnection: a policy pushed while the client
// sidecar holds a keep-alive mTLS connection to the server applies to the
// next request on that same connection, as Envoy's drain of a changed
// filter chain makes it; a TLS connection must not keep serving the
// chain it was accepted on.
func TestPolicyReachesPooledMTLSConnection(t *testing.T) {
	m := newMTLSMesh(t, mtlsOpts{mode: "PERMISSIVE"})
	if code := m.get(t); code != 200 {
		t.Fatalf("before the policy: %d", code)
	}
	denyAll := &hcmv3.HttpFilter{Name: wellknown.HTTPRoleBasedAccessControl, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&rbachttpv3.RBAC{
		Rules: &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW}})}}
	m.setServer("2", "PERMISSIVE", inboundHCM("inbound|9080||", denyAll))
	m.server.waitVersion(t, xdsclient.ListenerType, "2")
	if code := m.get(t); code != 403 {
		t.Fatalf("after an allow-nothing policy: %d, want 403", code)
	}
	if got := stat(t, m.server, "envoy_listener_ssl_handshake", map[string]string{"envoy_listener_address": "127.0.0.1_0"}); got != 1 {
		t.Fatalf("%v server handshakes; the test needs the second request on the first connection", got)
	}
}

// TestMTLSRotationUnderLoad swaps both sidecars' certificates while
// requests flow: none fails, and new connections present the new
// certificates (the app sees several client certificate hashes).
func TestMTLSRotationUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	m := newMTLSMesh(t, mtlsOpts{cluster: func(c *clusterv3.Cluster) {
		// Connections retire after a few requests, so that rotated
		// certificates are used during the run.
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(&httpv3.HttpProtocolOptions{
			CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{MaxRequestsPerConnection: wrapperspb.UInt32(20)},
			UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{}}}})}
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	var firstErr atomic.Pointer[string]
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				req, _ := http.NewRequest(http.MethodGet, "http://"+m.out+"/", nil)
				req.Host = "reviews:9080"
				resp, err := client.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed.Add(1)
					s := err.Error()
					firstErr.CompareAndSwap(nil, &s)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	rotations := 0
	for tick := time.NewTicker(500 * time.Millisecond); ctx.Err() == nil; {
		select {
		case <-tick.C:
			m.clientID.cert.Store(m.ca.issue(t, spiffeProductpage))
			m.serverID.cert.Store(m.ca.issue(t, spiffeReviews))
			rotations++
		case <-ctx.Done():
		}
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d requests failed across %d rotations; first: %s", n, n+ok.Load(), rotations, *firstErr.Load())
	}
	m.mu.Lock()
	distinct := len(m.hashes)
	m.mu.Unlock()
	if distinct < 3 {
		t.Fatalf("the app saw %d client certificates across %d rotations: rotation did not reach new connections", distinct, rotations)
	}
	t.Logf("%d requests, %d rotations, %d client certificates seen, 0 failures", ok.Load(), rotations, distinct)
}

// TestXFCCModes checks each forward_client_cert_details mode of Envoy
// on an mTLS and a plaintext connection carrying a client XFCC.
func TestXFCCModes(t *testing.T) {
	ca := newTestCA(t)
	leaf := ca.issue(t, spiffeProductpage).Leaf
	sum := sha256.Sum256(leaf.Raw)
	hash := hex.EncodeToString(sum[:])
	mtls := &peerIdentity{xfcc: []string{xfccElement(spiffeReviews, leafChain(leaf), xfccDetails{subject: true, uri: true, dns: true})}}
	elem := "By=" + spiffeReviews + ";Hash=" + hash + `;Subject="";URI=` + spiffeProductpage
	for _, tt := range []struct {
		mode     hcmv3.HttpConnectionManager_ForwardClientCertDetails
		id       *peerIdentity
		in, want string // "" = absent
	}{
		{hcmv3.HttpConnectionManager_SANITIZE, mtls, "By=x", ""},
		{hcmv3.HttpConnectionManager_FORWARD_ONLY, mtls, "By=x", "By=x"},
		{hcmv3.HttpConnectionManager_FORWARD_ONLY, nil, "By=x", ""},
		{hcmv3.HttpConnectionManager_APPEND_FORWARD, mtls, "By=x", "By=x," + elem},
		{hcmv3.HttpConnectionManager_APPEND_FORWARD, mtls, "", elem},
		{hcmv3.HttpConnectionManager_APPEND_FORWARD, nil, "By=x", ""},
		{hcmv3.HttpConnectionManager_SANITIZE_SET, mtls, "By=x", elem},
		{hcmv3.HttpConnectionManager_SANITIZE_SET, nil, "By=x", ""},
		{hcmv3.HttpConnectionManager_ALWAYS_FORWARD_ONLY, nil, "By=x", "By=x"},
	} {
		t.Run(fmt.Sprintf("%s/mtls=%v/in=%q", tt.mode, tt.id != nil, tt.in), func(t *testing.T) {
			h := http.Header{}
			if tt.in != "" {
				h.Set(headerXFCC, tt.in)
			}
			applyXFCC(h, &hcm{fcc: tt.mode}, tt.id)
			if got := strings.Join(h[headerXFCC], ","); got != tt.want {
				t.Errorf("XFCC = %q, want %q", got, tt.want)
			}
		})
	}
	// Envoy's order of details: Cert, Chain, Subject, URI, DNS.
	all := xfccElement("", leafChain(leaf), xfccDetails{subject: true, uri: true, dns: true, cert: true, chain: true})
	var keys []string
	for _, kv := range strings.Split(all, ";") {
		k, _, _ := strings.Cut(kv, "=")
		keys = append(keys, k)
	}
	if got := strings.Join(keys, ","); got != "Hash,Cert,Chain,Subject,URI" {
		t.Errorf("XFCC keys %s, want Hash,Cert,Chain,Subject,URI (no By without a local URI, no DNS without DNS SANs)", got)
	}
}

func leafChain(c *x509.Certificate) []*x509.Certificate { return []*x509.Certificate{c} }

// TestFilterChainMatchALPN picks chains as Envoy's order has it: the
// transport protocol before the application protocols, never
// backtracking to a less specific transport.
func TestFilterChainMatchALPN(t *testing.T) {
	mk := func(name, transport string, alpn ...string) *chain {
		return &chain{name: name, transport: transport, alpn: alpn}
	}
	l := &listener{inspect: true, chains: []*chain{
		mk("mtls-http", "tls", "istio-http/1.0", "istio-http/1.1", "istio-h2"),
		mk("mtls-tcp", "tls", "istio-peer-exchange", "istio"),
		mk("tls-passthrough", "tls"),
		mk("plaintext", "raw_buffer"),
	}}
	dst := netip.MustParseAddrPort("10.0.0.1:9080")
	for _, tt := range []struct {
		hello helloInfo
		want  string
	}{
		{helloInfo{isTLS: true, alpn: []string{"istio-http/1.1", "istio", "http/1.1"}}, "mtls-http"},
		{helloInfo{isTLS: true, alpn: []string{"istio-peer-exchange", "istio"}}, "mtls-tcp"},
		{helloInfo{isTLS: true, alpn: []string{"h2", "http/1.1"}}, "tls-passthrough"},
		{helloInfo{isTLS: true}, "tls-passthrough"},
		{helloInfo{}, "plaintext"},
	} {
		got := l.chain(dst, tt.hello)
		if got == nil || got.name != tt.want {
			t.Errorf("%+v: chain %v, want %s", tt.hello, got, tt.want)
		}
	}
	// STRICT: no plaintext chain, no fallback to the TLS ones.
	strict := &listener{inspect: true, chains: l.chains[:2]}
	if got := strict.chain(dst, helloInfo{}); got != nil {
		t.Errorf("plaintext on STRICT: chain %s, want none", got.name)
	}
	if got := strict.chain(dst, helloInfo{isTLS: true, alpn: []string{"h2"}}); got != nil {
		t.Errorf("TLS without Istio's ALPN on STRICT: chain %s, want none", got.name)
	}
}

// TestUnsupportedTLSNACKed: a TLS context field or a transport socket
// the proxy does not implement fails the configuration (a NACK) rather
// than leaving a connection plaintext or unverified.
func TestUnsupportedTLSNACKed(t *testing.T) {
	base := func() *tlsv3.UpstreamTlsContext {
		return &tlsv3.UpstreamTlsContext{Sni: reviewsSNI, CommonTlsContext: istioCommonTLS(istioOutboundALPN, spiffeReviews)}
	}
	upstreamCases := []struct {
		name   string
		mutate func(*tlsv3.UpstreamTlsContext)
		ok     bool
	}{
		{"istio mutual as istiod sends it", func(*tlsv3.UpstreamTlsContext) {}, true},
		{"allow_renegotiation is ignored", func(u *tlsv3.UpstreamTlsContext) { u.AllowRenegotiation = true }, true},
		{"auto_host_sni", func(u *tlsv3.UpstreamTlsContext) { u.AutoHostSni = true }, false},
		{"auto_sni_san_validation", func(u *tlsv3.UpstreamTlsContext) { u.AutoSniSanValidation = true }, false},
		{"certificate provider", func(u *tlsv3.UpstreamTlsContext) {
			u.CommonTlsContext.TlsCertificateProviderInstance = &tlsv3.CertificateProviderPluginInstance{InstanceName: "x"}
		}, false},
		{"crl", func(u *tlsv3.UpstreamTlsContext) {
			cv := u.CommonTlsContext.GetCombinedValidationContext().GetDefaultValidationContext()
			cv.Crl = &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "x"}}
		}, false},
		{"spki pinning", func(u *tlsv3.UpstreamTlsContext) {
			cv := u.CommonTlsContext.GetCombinedValidationContext().GetDefaultValidationContext()
			cv.VerifyCertificateSpki = []string{"x"}
		}, false},
		{"SAN check without a CA", func(u *tlsv3.UpstreamTlsContext) {
			u.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{SanType: tlsv3.SubjectAltNameMatcher_URI,
					Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: spiffeReviews}}}}}}
		}, false},
		{"unknown cipher", func(u *tlsv3.UpstreamTlsContext) { u.CommonTlsContext.TlsParams.CipherSuites = []string{"RC4-MD5"} }, false},
		{"Istio's ciphers", func(u *tlsv3.UpstreamTlsContext) {
			u.CommonTlsContext.TlsParams.CipherSuites = []string{"ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES128-GCM-SHA256", "AES256-GCM-SHA384"}
		}, true},
	}
	for _, tt := range upstreamCases {
		t.Run("cluster/"+tt.name, func(t *testing.T) {
			u := base()
			tt.mutate(u)
			c := edsCluster(outCluster)
			c.TransportSocket = &corev3.TransportSocket{Name: wellknown.TransportSocketTLS, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(u)}}
			_, err := upstream.NewWithOptions(c, upstream.Options{})
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
	t.Run("cluster/unknown transport socket", func(t *testing.T) {
		c := edsCluster(outCluster)
		c.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.alts", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(&structpb.Struct{})}}
		if _, err := upstream.NewWithOptions(c, upstream.Options{}); err == nil {
			t.Fatal("accepted an ALTS transport socket")
		}
	})
	downstreamCases := []struct {
		name   string
		mutate func(*listenerv3.FilterChain)
		ok     bool
	}{
		{"istio inbound as istiod sends it", func(*listenerv3.FilterChain) {}, true},
		{"ocsp staple policy", func(fc *listenerv3.FilterChain) {
			var d tlsv3.DownstreamTlsContext
			fc.TransportSocket.GetTypedConfig().UnmarshalTo(&d)
			d.OcspStaplePolicy = tlsv3.DownstreamTlsContext_MUST_STAPLE
			fc.TransportSocket.ConfigType = &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(&d)}
		}, false},
		{"source prefix match", func(fc *listenerv3.FilterChain) {
			fc.FilterChainMatch.SourcePrefixRanges = []*corev3.CidrRange{{AddressPrefix: "10.0.0.0", PrefixLen: wrapperspb.UInt32(8)}}
		}, false},
	}
	for _, tt := range downstreamCases {
		t.Run("listener/"+tt.name, func(t *testing.T) {
			l := inboundListener("STRICT", inboundHCM("inbound|9080||"), istioInboundHTTP, []string{"h2", "http/1.1"})
			tt.mutate(l.FilterChains[0])
			_, err := compileListener(l, buildOptions{creds: &credentials{rt: &atomic.Pointer[runtime]{}}})
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

// TestUpstreamTLSPerEndpoint: one cluster, an endpoint with tlsMode
// istio (a sidecar) and one without (no sidecar): each gets its socket,
// and a TLS server that is not the mesh's never gets plaintext.
func TestUpstreamTLSPerEndpoint(t *testing.T) {
	ca := newTestCA(t)
	id := newTestIdentity(ca.issue(t, spiffeProductpage), ca.pool)
	secrets := &credentials{rt: &atomic.Pointer[runtime]{}, id: id}
	c := autoMTLS(edsCluster(outCluster), reviewsSNI, istioOutboundALPN, spiffeReviews)
	cl, err := upstream.NewWithOptions(c, upstream.Options{Secrets: secrets})
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddrPort("127.0.0.1:1001")
	b := netip.MustParseAddrPort("127.0.0.1:1002")
	cl.SetEndpoints(meshEndpoints(outCluster, map[netip.AddrPort]bool{a: true, b: false}))
	if s := cl.Socket(a.String()); s == nil || s.Name != "tlsMode-istio" {
		t.Errorf("istio endpoint socket = %v, want tlsMode-istio", s)
	}
	if s := cl.Socket(b.String()); s != nil {
		t.Errorf("plain endpoint socket = %s, want plaintext", s.Name)
	}
	// The endpoint loses its sidecar: its socket follows.
	cl.SetEndpoints(meshEndpoints(outCluster, map[netip.AddrPort]bool{a: false}))
	if s := cl.Socket(a.String()); s != nil {
		t.Errorf("after the label went: socket %s, want plaintext", s.Name)
	}
}

// TestNoIdentityServerFailsClosed: a server sidecar without identity
// cannot complete an mTLS handshake; the plaintext chain of PERMISSIVE
// still serves plaintext (and only plaintext).
func TestNoIdentityServerFailsClosed(t *testing.T) {
	m := newMTLSMesh(t, mtlsOpts{mode: "PERMISSIVE", serverID: noIdentity{}})
	if code := m.get(t); code != http.StatusServiceUnavailable {
		t.Fatalf("mTLS to a server without identity: %d, want 503", code)
	}
	// Counted once the alert went out: waited for.
	waitFor(t, "the server's ssl.connection_error", func() bool {
		return stat(t, m.server, "envoy_listener_ssl_connection_error", nil) >= 1
	})
	got, _ := plainExchange(t, m.in.String(), "GET / HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 200") {
		t.Fatalf("plaintext on PERMISSIVE: %q", got)
	}
}

// noIdentity is an Identity that has nothing yet (an agent before its
// first certificate).
type noIdentity struct{}

func (noIdentity) Certificate() (*tls.Certificate, error) {
	return nil, errors.New("no certificate yet")
}
func (noIdentity) Roots() (*x509.CertPool, error) { return nil, errors.New("no roots yet") }

// TestServerFirstPortNotInspected: on a listener whose other port has an
// mTLS chain, a port whose chains match on nothing the TLS inspector
// reads is not inspected, so a server-first protocol (MySQL's greeting)
// reaches a client that sends nothing first — as Istio disables the
// inspector on such ports.
func TestServerFirstPortNotInspected(t *testing.T) {
	greeter, err := net.Listen("tcp", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	defer greeter.Close()
	go func() {
		for {
			c, err := greeter.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "greeting\n")
			c.Close()
		}
	}()
	port := closedPort(t).Port()
	l := inboundListener("STRICT", inboundHCM("inbound|9080||"), istioInboundHTTP, []string{"h2", "http/1.1"})
	l.Address = sockAddr("127.0.0.1", uint32(port))
	l.FilterChains[0].FilterChainMatch.DestinationPort = wrapperspb.UInt32(9080)
	l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{
		FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(uint32(port))},
		Filters:          []*listenerv3.Filter{tcpFilter("inbound|3306||")},
	})
	cp := newControlPlane(t, "127.0.0.1:0")
	p := runProxy(t, cp.addr, Config{})
	cp.set("1", l, staticCluster("inbound|9080||", closedPort(t)),
		staticCluster("inbound|3306||", netip.MustParseAddrPort(greeter.Addr().String())))
	addr := p.addr(t, "virtualInbound")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if line != "greeting\n" {
		t.Fatalf("server-first greeting: %q, %v", line, err)
	}
}

// TestAccessLogTLSFields: Istio's default line carries the requested
// server name and the upstream transport failure reason.
func TestAccessLogTLSFields(t *testing.T) {
	l := newLogWriter(io.Discard)
	r, _ := http.NewRequest(http.MethodGet, "http://reviews:9080/", nil)
	r.RequestURI = "/"
	ex := &exchange{status: 503, flags: flagUF, transportFailure: "TLS_error:|x509: certificate signed by unknown authority:TLS_error_end",
		conn: &connInfo{sni: reviewsSNI, local: netip.MustParseAddrPort("10.0.0.2:15006"), remote: netip.MustParseAddrPort("10.0.0.1:40000")}}
	line := string(l.http(nil, time.Now(), r, ex))
	for _, want := range []string{` "TLS_error:|x509: certificate signed by unknown authority:TLS_error_end" `, " 10.0.0.1:40000 " + reviewsSNI + " -\n"} {
		if !strings.Contains(line, want) {
			t.Errorf("access log line %q lacks %q", line, want)
		}
	}
}

// TestStrictDrainsPlaintextConnections: STRICT replacing PERMISSIVE
// removes the plaintext chain, and a plaintext keep-alive connection
// accepted before gets one last response (Connection: close), as Envoy
// drains a connection whose chain is gone; a new one is closed unanswered.
func TestStrictDrainsPlaintextConnections(t *testing.T) {
	m := newMTLSMesh(t, mtlsOpts{mode: "PERMISSIVE"})
	c, err := net.Dial("tcp", m.in.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	send := func() *http.Response {
		t.Helper()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: reviews\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("read response: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if r := send(); r.StatusCode != 200 || r.Close {
		t.Fatalf("before STRICT: %d close=%v", r.StatusCode, r.Close)
	}
	m.setMode("2", "STRICT")
	m.server.waitVersion(t, xdsclient.ListenerType, "2")
	if r := send(); !r.Close {
		t.Fatalf("after STRICT: the plaintext connection was not drained (status %d)", r.StatusCode)
	}
	if got, _ := plainExchange(t, m.in.String(), "GET / HTTP/1.1\r\nHost: reviews\r\n\r\n"); got != "" {
		t.Fatalf("a new plaintext connection under STRICT got %q", got)
	}
	if code := m.get(t); code != 200 {
		t.Fatalf("mTLS after STRICT: %d", code)
	}
}

// TestHTTPInspector: on a port whose plaintext chains match on the
// application protocol (Istio's inbound pass-through: HTTP sniffing), an
// HTTP request takes the HTTP chain and other bytes the TCP one.
func TestHTTPInspector(t *testing.T) {
	for _, tt := range []struct {
		in    string
		proto string
		more  bool
	}{
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "http/1.1", false},
		{"POST /x HTTP/1.0\r\n", "http/1.0", false},
		{"GET / HTTP/1.1", "", true},
		{"GE", "", true},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "h2c", false},
		{"PRI * HTTP/2", "", true},
		{"\x00\x01\x02", "", false},
		{"get / HTTP/1.1\r\n", "", false},
		{"GET / SIP/2.0\r\n", "", false},
	} {
		if proto, more := httpProtocol([]byte(tt.in)); proto != tt.proto || more != tt.more {
			t.Errorf("httpProtocol(%q) = %q, %v; want %q, %v", tt.in, proto, more, tt.proto, tt.more)
		}
	}

	app := handlerBackend(t, "127.0.0.3", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "http chain") })
	l := &listenerv3.Listener{Name: "virtualInbound", Address: sockAddr("127.0.0.1", 0), TrafficDirection: corev3.TrafficDirection_INBOUND,
		FilterChains: []*listenerv3.FilterChain{
			{FilterChainMatch: &listenerv3.FilterChainMatch{TransportProtocol: "raw_buffer", ApplicationProtocols: []string{"http/1.1", "http/1.0", "h2c"}},
				Filters: []*listenerv3.Filter{inboundHCM("inbound|http||")}},
			{FilterChainMatch: &listenerv3.FilterChainMatch{TransportProtocol: "raw_buffer"}, Filters: []*listenerv3.Filter{tcpFilter("inbound|tcp||")}},
		}}
	cp := newControlPlane(t, "127.0.0.1:0")
	p := runProxy(t, cp.addr, Config{})
	cp.set("1", l, staticCluster("inbound|http||", app), staticCluster("inbound|tcp||", echo(t, "127.0.0.4")))
	addr := p.addr(t, "virtualInbound")
	if got, _ := plainExchange(t, addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); !strings.HasSuffix(got, "http chain") {
		t.Errorf("HTTP request: %q, want the HTTP chain's answer", got)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "ping")
	c.(*net.TCPConn).CloseWrite()
	if b, _ := io.ReadAll(c); string(b) != "PING" {
		t.Errorf("raw bytes: %q, want the TCP chain's echo", b)
	}
}

// TestRootChangeFailsClosed: once a side's trusted roots no longer
// include the CA that signed its peer, new connections fail — resumed
// sessions included, which carry the peer certificate of their first
// handshake and are verified again against the roots of the moment.
func TestRootChangeFailsClosed(t *testing.T) {
	oneRequestPerConn := func(c *clusterv3.Cluster) {
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(&httpv3.HttpProtocolOptions{
			CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{MaxRequestsPerConnection: wrapperspb.UInt32(1)},
			UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{}}}})}
	}
	for _, side := range []string{"server", "client"} {
		t.Run(side, func(t *testing.T) {
			m := newMTLSMesh(t, mtlsOpts{cluster: oneRequestPerConn})
			for i := 0; i < 3; i++ { // the later ones resume
				if code := m.get(t); code != 200 {
					t.Fatalf("request %d before the root change: %d", i, code)
				}
			}
			if got := stat(t, m.client, "envoy_cluster_ssl_session_reused", map[string]string{"envoy_cluster_name": outCluster}); got < 1 {
				t.Fatalf("no session was resumed (%v): the test would not cover resumption", got)
			}
			id := m.serverID
			if side == "client" {
				id = m.clientID
			}
			id.roots.Store(newTestCA(t).pool)
			if code := m.get(t); code != http.StatusServiceUnavailable {
				t.Fatalf("after the %s's roots changed: %d, want 503", side, code)
			}
		})
	}
}

// TestAccessLogPeerIdentity logs the peer identities of an mTLS request
// with Envoy's TLS operators, on both sidecars.
func TestAccessLogPeerIdentity(t *testing.T) {
	var clientLog, serverLog syncBuffer
	m := newMTLSMesh(t, mtlsOpts{
		serverLog: &serverLog, serverFormat: "%REQ(:METHOD)% %RESPONSE_CODE% peer=%DOWNSTREAM_PEER_URI_SAN% local=%DOWNSTREAM_LOCAL_URI_SAN% %DOWNSTREAM_TLS_VERSION% sni=%REQUESTED_SERVER_NAME% subject=%DOWNSTREAM_PEER_SUBJECT%",
		clientLog: &clientLog, clientFormat: "%UPSTREAM_CLUSTER% upstream=%UPSTREAM_PEER_URI_SAN% %UPSTREAM_TLS_VERSION% peer=%DOWNSTREAM_PEER_URI_SAN% 100%%",
	})
	if code := m.get(t); code != 200 {
		t.Fatalf("status %d", code)
	}
	wantServer := "GET 200 peer=" + spiffeProductpage + " local=" + spiffeReviews + " TLSv1.3 sni=" + reviewsSNI + " subject=-\n"
	wantClient := outCluster + " upstream=" + spiffeReviews + " TLSv1.3 peer=- 100%\n"
	waitFor(t, "both access log lines", func() bool { return serverLog.String() != "" && clientLog.String() != "" })
	if got := serverLog.String(); got != wantServer {
		t.Errorf("server line\n got %q\nwant %q", got, wantServer)
	}
	if got := clientLog.String(); got != wantClient {
		t.Errorf("client line\n got %q\nwant %q", got, wantClient)
	}
	for _, bad := range []string{"%NOT_AN_OPERATOR%", "%REQ(x)", "%REQ(x):abc%"} {
		if err := ParseAccessLogFormat(bad); err == nil {
			t.Errorf("ParseAccessLogFormat(%q) accepted it", bad)
		}
	}
}

// TestUnsupportedTLSNACKedOverXDS: a cluster update whose TLS context
// the proxy cannot honour is NACKed with the reason, and the proxy keeps
// serving mTLS on the configuration it had.
func TestUnsupportedTLSNACKedOverXDS(t *testing.T) {
	m := newMTLSMesh(t, mtlsOpts{})
	bad := autoMTLS(edsCluster(outCluster), reviewsSNI, istioOutboundALPN, spiffeReviews)
	var u tlsv3.UpstreamTlsContext
	if err := bad.TransportSocketMatches[0].TransportSocket.GetTypedConfig().UnmarshalTo(&u); err != nil {
		t.Fatal(err)
	}
	u.CommonTlsContext.GetCombinedValidationContext().GetDefaultValidationContext().Crl = &corev3.DataSource{
		Specifier: &corev3.DataSource_InlineString{InlineString: "-----BEGIN X509 CRL-----"}}
	bad.TransportSocketMatches[0].TransportSocket.ConfigType = &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(&u)}
	res := append([]types.Resource{}, m.clientRes...)
	res[2] = bad
	m.cpClient.set("2", res...)
	waitFor(t, "the NACK", func() bool { return m.cpClient.nacked(xdsclient.ClusterType) != nil })
	if d := m.cpClient.nacked(xdsclient.ClusterType).GetErrorDetail().GetMessage(); !strings.Contains(d, "crl") {
		t.Errorf("NACK detail %q does not name the field", d)
	}
	if code := m.get(t); code != 200 || !strings.Contains(m.lastXFCC(), "URI="+spiffeProductpage) {
		t.Fatalf("after the NACK: %d, XFCC %q; want mTLS on the old configuration", code, m.lastXFCC())
	}
}

// TestStrictClosesPlaintextTCP: a plaintext TCP connection accepted
// under PERMISSIVE is closed once STRICT removed its chain and the drain
// time is over, as Envoy drains a removed filter chain's connections; an
// mTLS one stays.
func TestStrictClosesPlaintextTCP(t *testing.T) {
	m := newMTLSMesh(t, mtlsOpts{tcp: true, mode: "PERMISSIVE"})
	plain, err := net.Dial("tcp", m.in.String())
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	mtls, err := net.Dial("tcp", m.out)
	if err != nil {
		t.Fatal(err)
	}
	defer mtls.Close()
	io.WriteString(plain, "ping")
	io.WriteString(mtls, "ping")
	waitFor(t, "both connections proxied", func() bool {
		seen := map[string]bool{}
		for _, mm := range scrape(t, m.server)["istio_tcp_connections_opened_total"].GetMetric() {
			for _, l := range mm.GetLabel() {
				if l.GetName() == "connection_security_policy" {
					seen[l.GetValue()] = true
				}
			}
		}
		return seen["none"] && seen["mutual_tls"]
	})
	m.setMode("2", "STRICT")
	m.server.waitVersion(t, xdsclient.ListenerType, "2")
	plain.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	if b, err := io.ReadAll(plain); err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") || len(b) != 0 {
		t.Fatalf("plaintext connection after STRICT: read %q, %v; want closed with nothing", b, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("closed after %v, past the drain time", d)
	}
	// The mTLS connection's chain is still there: it works on.
	mtls.(*net.TCPConn).CloseWrite()
	mtls.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, _ := io.ReadAll(mtls); string(b) != "PING" {
		t.Fatalf("mTLS connection after STRICT: %q", b)
	}
}
