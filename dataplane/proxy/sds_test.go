package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"

	"github.com/meshlab/meshlab/dataplane/xdsclient"
)

// A gateway's HTTPS server whose certificate comes over SDS
// (credentialName): the proxy subscribes to the secret its listener
// names, ACKs it, terminates TLS with it (HTTP/2 by ALPN, x-forwarded-proto
// https upstream), and a new secret in a later snapshot rotates the
// certificate served while the listener and its open connections stay.
func TestGatewaySDS(t *testing.T) {
	dir := t.TempDir()
	_, poolA := selfSigned(t, filepath.Join(dir, "a"), "secure.example.com")
	_, poolB := selfSigned(t, filepath.Join(dir, "b"), "secure.example.com")

	// The backend reports the protocol and scheme it was told about.
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Saw-Proto", r.Header.Get("X-Forwarded-Proto"))
		io.WriteString(w, "ok")
	}))
	t.Cleanup(be.Close)
	beAddr := netip.MustParseAddrPort(be.Listener.Addr().String())

	const secretName = "kubernetes://secure-cred"
	listener := func() *listenerv3.Listener {
		return &listenerv3.Listener{Name: "0.0.0.0_8443", Address: sockAddr("127.0.0.1", 0),
			ListenerFilters: []*listenerv3.ListenerFilter{{Name: wellknown.TlsInspector}},
			FilterChains: []*listenerv3.FilterChain{{
				FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: []string{"secure.example.com"}},
				TransportSocket: tlsSocket(&tlsv3.CommonTlsContext{AlpnProtocols: []string{"h2", "http/1.1"},
					TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: secretName, SdsConfig: ads()}}}),
				Filters: []*listenerv3.Filter{rdsFilter("https.443.https.secure.istio-system")},
			}}}
	}
	routes := &routev3.RouteConfiguration{Name: "https.443.https.secure.istio-system", VirtualHosts: []*routev3.VirtualHost{
		{Name: "secure", Domains: []string{"*"}, Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster("be")}}}}}

	cp := newControlPlane(t, "127.0.0.1:0")
	cp.set("1", listener(), routes, staticCluster("be", beAddr), sdsSecret(t, secretName, filepath.Join(dir, "a")))
	tp := startGateway(t, cp.addr, nil)
	addr := tp.addr(t, "0.0.0.0_8443")
	tp.waitVersion(t, xdsclient.SecretType, "1")
	waitFor(t, "SDS ACK", func() bool { return cp.lastVersion(xdsclient.SecretType) == "1" })
	if r := cp.nacked(xdsclient.SecretType); r != nil {
		t.Fatalf("SDS NACKed: %v", r.GetErrorDetail())
	}
	subscribed := false
	cp.mu.Lock()
	for _, r := range cp.requests {
		if r.GetTypeUrl() == xdsclient.SecretType && slices.Equal(r.GetResourceNames(), []string{secretName}) {
			subscribed = true
		}
	}
	cp.mu.Unlock()
	if !subscribed {
		t.Fatalf("the proxy never subscribed to %s", secretName)
	}

	client := func(pool *x509.CertPool) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{ServerName: "secure.example.com", RootCAs: pool}, ForceAttemptHTTP2: true}}
	}
	get := func(c *http.Client) (*http.Response, error) {
		resp, err := c.Get("https://" + addr + "/")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}

	held := client(poolA) // keeps its connection across the rotation
	resp, err := get(held)
	if err != nil {
		t.Fatalf("HTTPS with the SDS certificate: %v", err)
	}
	if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" || resp.Header.Get("X-Saw-Proto") != "https" {
		t.Errorf("got %d over %s, upstream x-forwarded-proto %q; want 200 over HTTP/2.0, https", resp.StatusCode, resp.Proto, resp.Header.Get("X-Saw-Proto"))
	}
	if _, err := get(client(poolB)); err == nil {
		t.Fatal("a client trusting only the next certificate verified the current one")
	}

	cp.set("2", listener(), routes, staticCluster("be", beAddr), sdsSecret(t, secretName, filepath.Join(dir, "b")))
	tp.waitVersion(t, xdsclient.SecretType, "2")
	waitFor(t, "rotated certificate", func() bool {
		_, err := get(client(poolB))
		return err == nil
	})
	if _, err := get(client(poolA)); err == nil {
		t.Error("a new handshake still got the old certificate")
	}
	if got := tp.addr(t, "0.0.0.0_8443"); got != addr {
		t.Errorf("listener moved from %s to %s", addr, got)
	}
	if resp, err := get(held); err != nil || resp.StatusCode != 200 {
		t.Errorf("connection opened before the rotation: %v", err)
	}
}
