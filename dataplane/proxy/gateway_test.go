package proxy

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/durationpb"
)

// startGateway is startProxy with a resolver.
func startGateway(t testing.TB, cpAddr string, r *loopbackResolver) *testProxy {
	t.Helper()
	var cfg Config
	if r != nil {
		cfg.Resolver = r
	}
	return runProxy(t, cpAddr, cfg)
}

// loopbackResolver answers only the names it was given, all on loopback:
// tests never resolve real names.
type loopbackResolver struct {
	mu      sync.Mutex
	names   map[string]netip.Addr
	lookups int
}

func (r *loopbackResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lookups++
	if a, ok := r.names[host]; ok && a.IsLoopback() {
		return []netip.Addr{a}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// selfSigned makes a certificate for names, written as tls.crt/tls.key
// under dir, and returns a pool trusting it.
func selfSigned(t testing.TB, dir string, names ...string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return cert, pool
}

func tlsSocket(ctx *tlsv3.CommonTlsContext) *corev3.TransportSocket {
	return &corev3.TransportSocket{Name: wellknown.TransportSocketTls, ConfigType: &corev3.TransportSocket_TypedConfig{
		TypedConfig: mustAny(&tlsv3.DownstreamTlsContext{CommonTlsContext: ctx})}}
}

func fileSource(path string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path}}
}

func weightedTCP(stat string, ws ...*tcpv3.TcpProxy_WeightedCluster_ClusterWeight) *listenerv3.Filter {
	return &listenerv3.Filter{Name: wellknown.TCPProxy, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(
		&tcpv3.TcpProxy{StatPrefix: stat, ClusterSpecifier: &tcpv3.TcpProxy_WeightedClusters{WeightedClusters: &tcpv3.TcpProxy_WeightedCluster{Clusters: ws}}})}}
}

// tlsBackend is an HTTPS server on loopback answering with its name.
func tlsBackend(t testing.TB, name string, cert tls.Certificate) netip.AddrPort {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		w.Header().Set("X-Saw-SNI", r.TLS.ServerName)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return netip.MustParseAddrPort(ln.Addr().String())
}

func httpsGet(t testing.TB, addr, sni string, pool *x509.CertPool, path string) (int, http.Header, error) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: sni, RootCAs: pool}, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, "https://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = sni
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header, nil
}

// One gateway listener merging what Istio emits for HTTPS servers (TLS
// terminated with certificates from files or from a credentialName's SDS
// secret, chains picked by SNI) and a TLS PASSTHROUGH server (SNI routed
// to two TLS backends by name, not terminated), plus a plaintext listener
// whose virtual host requires TLS (httpsRedirect).
func TestGatewayTLS(t *testing.T) {
	dir := t.TempDir()
	_, filePool := selfSigned(t, filepath.Join(dir, "files"), "secure.example.com")
	_, credPool := selfSigned(t, filepath.Join(dir, "cred-cert"), "api.cred.example.com")
	backCert, backPool := selfSigned(t, filepath.Join(dir, "backend"), "a.pass.example.com", "b.pass.example.com")

	_, plain := backend(t, "127.0.0.1", "plain")
	aAddr := tlsBackend(t, "a", backCert)
	bAddr := tlsBackend(t, "b", backCert)

	cp := newControlPlane(t, "127.0.0.1:0")
	https := &listenerv3.Listener{Name: "0.0.0.0_8443", Address: sockAddr("127.0.0.1", 0),
		ListenerFilters: []*listenerv3.ListenerFilter{{Name: wellknown.TlsInspector}},
		FilterChains: []*listenerv3.FilterChain{
			{FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: []string{"secure.example.com"}},
				TransportSocket: tlsSocket(&tlsv3.CommonTlsContext{AlpnProtocols: []string{"h2", "http/1.1"}, TlsCertificates: []*tlsv3.TlsCertificate{{
					CertificateChain: fileSource(filepath.Join(dir, "files", "tls.crt")), PrivateKey: fileSource(filepath.Join(dir, "files", "tls.key"))}}}),
				Filters: []*listenerv3.Filter{rdsFilter("https.8443.files")}},
			{FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: []string{"*.cred.example.com"}},
				TransportSocket: tlsSocket(&tlsv3.CommonTlsContext{TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "kubernetes://cred-cert", SdsConfig: ads()}}}),
				Filters:         []*listenerv3.Filter{rdsFilter("https.8443.cred")}},
			{FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: []string{"a.pass.example.com"}}, Filters: []*listenerv3.Filter{tcpFilter("a")}},
			{FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: []string{"b.pass.example.com"}}, Filters: []*listenerv3.Filter{tcpFilter("b")}},
		}}
	vh := func(name, domain, cluster string) *routev3.VirtualHost {
		return &routev3.VirtualHost{Name: name, Domains: []string{domain}, Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster(cluster)}}}
	}
	cp.set("1",
		https, gatewayListener("0.0.0.0_8080", "http.8080"),
		&routev3.RouteConfiguration{Name: "https.8443.files", VirtualHosts: []*routev3.VirtualHost{vh("files", "*", "plain")}},
		&routev3.RouteConfiguration{Name: "https.8443.cred", VirtualHosts: []*routev3.VirtualHost{vh("cred", "*", "plain")}},
		&routev3.RouteConfiguration{Name: "http.8080", VirtualHosts: []*routev3.VirtualHost{
			{Name: "secure.example.com:8080", Domains: []string{"secure.example.com", "secure.example.com:8080"}, RequireTls: routev3.VirtualHost_ALL},
			vh("open", "open.example.com", "plain"),
		}},
		staticCluster("plain", plain), staticCluster("a", aAddr), staticCluster("b", bAddr),
		sdsSecret(t, "kubernetes://cred-cert", filepath.Join(dir, "cred-cert")),
	)
	tp := startGateway(t, cp.addr, nil)
	httpsAddr := tp.addr(t, "0.0.0.0_8443")
	httpAddr := tp.addr(t, "0.0.0.0_8080")

	t.Run("terminate with certificate files", func(t *testing.T) {
		code, h, err := httpsGet(t, httpsAddr, "secure.example.com", filePool, "/")
		if err != nil || code != 200 || h.Get("X-Backend") != "plain" {
			t.Fatalf("code %d backend %q err %v, want 200 from plain", code, h.Get("X-Backend"), err)
		}
	})
	t.Run("terminate with credentialName secret", func(t *testing.T) {
		code, h, err := httpsGet(t, httpsAddr, "api.cred.example.com", credPool, "/")
		if err != nil || code != 200 || h.Get("X-Backend") != "plain" {
			t.Fatalf("code %d backend %q err %v, want 200 from plain", code, h.Get("X-Backend"), err)
		}
		// The files' certificate is not the credential's: a client
		// trusting only it must fail, proving the chain was picked by SNI.
		if _, _, err := httpsGet(t, httpsAddr, "api.cred.example.com", filePool, "/"); err == nil {
			t.Fatal("handshake with the credential's chain verified against the other certificate")
		}
	})
	t.Run("passthrough by SNI", func(t *testing.T) {
		for _, name := range []string{"a", "b"} {
			sni := name + ".pass.example.com"
			code, h, err := httpsGet(t, httpsAddr, sni, backPool, "/")
			if err != nil || code != 200 {
				t.Fatalf("%s: code %d err %v", sni, code, err)
			}
			// The backend terminated TLS itself and saw the client's SNI.
			if h.Get("X-Backend") != name || h.Get("X-Saw-SNI") != sni {
				t.Errorf("%s: backend %q saw SNI %q, want %s", sni, h.Get("X-Backend"), h.Get("X-Saw-SNI"), name)
			}
		}
	})
	t.Run("unknown SNI has no chain", func(t *testing.T) {
		if _, _, err := httpsGet(t, httpsAddr, "nobody.example.com", backPool, "/"); err == nil {
			t.Fatal("a name no chain serves got an answer")
		}
	})
	t.Run("httpsRedirect", func(t *testing.T) {
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		code, _, h := get(t, c, httpAddr, "secure.example.com:8080", "/productpage?u=1")
		if code != http.StatusMovedPermanently || h.Get("Location") != "https://secure.example.com:8080/productpage?u=1" {
			t.Errorf("code %d location %q, want 301 to https://secure.example.com:8080/productpage?u=1", code, h.Get("Location"))
		}
		if code, _, h := get(t, c, httpAddr, "open.example.com", "/"); code != 200 || h.Get("X-Backend") != "plain" {
			t.Errorf("virtual host without require_tls: code %d backend %q", code, h.Get("X-Backend"))
		}
	})
}

// A ServiceEntry with resolution DNS is a STRICT_DNS cluster the proxy
// resolves (here with a resolver that knows one loopback name); STATIC
// endpoints come over EDS like any other.
func TestServiceEntryClusters(t *testing.T) {
	_, dnsBackend := backend(t, "127.0.0.1", "dns")
	_, staticBackend := backend(t, "127.0.0.1", "static")
	r := &loopbackResolver{names: map[string]netip.Addr{"ext-svc.test.internal": netip.MustParseAddr("127.0.0.1")}}

	dnsCluster := func(name, host string, port uint16) *clusterv3.Cluster {
		return &clusterv3.Cluster{Name: name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
			ConnectTimeout: durationpb.New(time.Second), LbPolicy: clusterv3.Cluster_ROUND_ROBIN, DnsLookupFamily: clusterv3.Cluster_V4_ONLY,
			LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: sockAddr(host, uint32(port))}}}}}}}}
	}
	cp := newControlPlane(t, "127.0.0.1:0")
	cp.set("1", gatewayListener("0.0.0.0_80", "80"),
		&routev3.RouteConfiguration{Name: "80", VirtualHosts: []*routev3.VirtualHost{
			{Name: "ext", Domains: []string{"ext-svc.test.internal"}, Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster("outbound|80||ext-svc.test.internal")}}},
			{Name: "unknown", Domains: []string{"unknown.test.internal"}, Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster("outbound|80||unknown.test.internal")}}},
			{Name: "static", Domains: []string{"static.test.internal"}, Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster("outbound|80||static.test.internal")}}},
		}},
		dnsCluster("outbound|80||ext-svc.test.internal", "ext-svc.test.internal", dnsBackend.Port()),
		dnsCluster("outbound|80||unknown.test.internal", "unknown.test.internal", dnsBackend.Port()),
		edsCluster("outbound|80||static.test.internal"), cla("outbound|80||static.test.internal", staticBackend),
	)
	tp := startGateway(t, cp.addr, r)
	addr := tp.addr(t, "0.0.0.0_80")
	c := &http.Client{Timeout: 10 * time.Second}
	for i := 0; i < 3; i++ {
		if code, _, h := get(t, c, addr, "ext-svc.test.internal", "/"); code != 200 || h.Get("X-Backend") != "dns" {
			t.Fatalf("DNS entry: code %d backend %q", code, h.Get("X-Backend"))
		}
	}
	if code, _, _ := get(t, c, addr, "unknown.test.internal", "/"); code != http.StatusServiceUnavailable {
		t.Errorf("unresolvable DNS entry: code %d, want 503", code)
	}
	if code, _, h := get(t, c, addr, "static.test.internal", "/"); code != 200 || h.Get("X-Backend") != "static" {
		t.Errorf("STATIC entry: code %d backend %q", code, h.Get("X-Backend"))
	}
	r.mu.Lock()
	n := r.lookups
	r.mu.Unlock()
	if n < 2 || n > 6 {
		t.Errorf("%d lookups, want the answer cached within the refresh rate", n)
	}
}

// A tcp route's weighted split (VirtualService tcp weights 80/20) sends
// connections in proportion, within five standard deviations.
func TestTCPWeightedSplit(t *testing.T) {
	echo := func(name string) netip.AddrPort {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { defer c.Close(); fmt.Fprintln(c, name) }()
			}
		}()
		return netip.MustParseAddrPort(ln.Addr().String())
	}
	v1, v2 := echo("v1"), echo("v2")
	cp := newControlPlane(t, "127.0.0.1:0")
	cp.set("1", &listenerv3.Listener{Name: "0.0.0.0_9000", Address: sockAddr("127.0.0.1", 0), FilterChains: []*listenerv3.FilterChain{{
		Filters: []*listenerv3.Filter{weightedTCP("outbound|9000||tcp-echo.default.svc.cluster.local",
			&tcpv3.TcpProxy_WeightedCluster_ClusterWeight{Name: "v1", Weight: 80},
			&tcpv3.TcpProxy_WeightedCluster_ClusterWeight{Name: "v2", Weight: 20})}}}},
		staticCluster("v1", v1), staticCluster("v2", v2))
	tp := startGateway(t, cp.addr, nil)
	addr := tp.addr(t, "0.0.0.0_9000")
	const n = 400
	counts := map[string]int{}
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		counts[line[:len(line)-1]]++
	}
	// Binomial(400, 0.8): mean 320, sd 8.
	if counts["v1"] < 280 || counts["v1"] > 360 || counts["v1"]+counts["v2"] != n {
		t.Errorf("split %v, want v1 within 320±40 of %d", counts, n)
	}
}

// sdsSecret is the SDS secret istiod makes of a TLS credential: dir's
// tls.crt and tls.key, inline.
func sdsSecret(t testing.TB, name, dir string) *tlsv3.Secret {
	t.Helper()
	crt, err := os.ReadFile(filepath.Join(dir, "tls.crt"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(filepath.Join(dir, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: crt}},
		PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: key}},
	}}}
}
