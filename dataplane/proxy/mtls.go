package proxy

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/meshlab/meshlab/dataplane/upstream"
)

// What this file adds, as Envoy does for Istio's mutual TLS between
// sidecars: the handshake of a chain that terminates TLS, made before the
// chain's filters see the connection, so that the verified peer's
// identity (its certificate's URI SAN, Istio's SPIFFE ID) is known once
// per connection — for the network RBAC filters, and for every request's
// RBAC principal, X-Forwarded-Client-Cert, metrics labels and access log
// without any per-request work.

// istioALPNFilter is Istio's HTTP filter that sets the upstream ALPN.
const istioALPNFilter = "istio.alpn"

// handshakeTimeout bounds a downstream TLS handshake (Envoy's listener
// has no such bound by default; a silent client would hold a goroutine).
const handshakeTimeout = 15 * time.Second

// peerIdentity is what a connection's TLS handshake established.
type peerIdentity struct {
	// peerURI is the verified client certificate's first URI SAN (the
	// connection's principal), localURI the proxy's own certificate's;
	// empty when absent.
	peerURI, localURI string
	// uriSANs, dnsSANs and subject are the peer certificate's, for RBAC.
	uriSANs, dnsSANs []string
	subject          string
	// hash is the peer certificate's SHA-256 in hex, version the TLS
	// version as Envoy spells it (for the access log).
	hash, version string
	// xfcc is the connection's element of X-Forwarded-Client-Cert as the
	// chain's HCM sets it (nil: no peer certificate).
	xfcc []string
}

// mutualTLS reports whether the peer presented a verified certificate.
func (id *peerIdentity) mutualTLS() bool { return id != nil && id.xfcc != nil }

// handshake completes the server side of tc for chain fc, counting it in
// the listener's ssl stats, and returns the identities it established.
func (p *Proxy) handshake(tc *tls.Conn, fc *chain) (*peerIdentity, error) {
	if err := tc.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		return nil, err
	}
	err := tc.Handshake()
	cs := tc.ConnectionState()
	if err == nil {
		err = tc.SetDeadline(time.Time{})
	}
	fc.tlsStats.Count(cs, err)
	if err != nil {
		if strings.Contains(err.Error(), "client didn't provide a certificate") {
			fc.tlsStats.NoCertificate.Add(1)
		}
		return nil, err
	}
	id := &peerIdentity{version: tlsVersionName(cs.Version)}
	if cert, err := fc.tls.cert(); err == nil {
		id.localURI = localURI(cert)
	}
	if len(cs.PeerCertificates) == 0 {
		return id, nil
	}
	leaf := cs.PeerCertificates[0]
	for _, u := range leaf.URIs {
		id.uriSANs = append(id.uriSANs, u.String())
	}
	if len(id.uriSANs) > 0 {
		id.peerURI = id.uriSANs[0]
	}
	id.dnsSANs = leaf.DNSNames
	id.subject = leaf.Subject.String()
	sum := sha256.Sum256(leaf.Raw)
	id.hash = hex.EncodeToString(sum[:])
	var details xfccDetails
	if fc.http != nil {
		details = fc.http.details
	}
	id.xfcc = []string{xfccElement(id.localURI, cs.PeerCertificates, details)}
	return id, nil
}

// localURIs caches the URI SAN of the proxy's own certificates: a
// rotation brings a new *tls.Certificate, parsed once.
var localURIs struct {
	mu   sync.Mutex
	last atomic.Pointer[localURIEntry]
}

type localURIEntry struct {
	cert *tls.Certificate
	uri  string
}

func localURI(cert *tls.Certificate) string {
	if e := localURIs.last.Load(); e != nil && e.cert == cert {
		return e.uri
	}
	leaf := cert.Leaf
	if leaf == nil && len(cert.Certificate) > 0 {
		l, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return ""
		}
		leaf = l
	}
	uri := ""
	if leaf != nil && len(leaf.URIs) > 0 {
		uri = leaf.URIs[0].String()
	}
	localURIs.mu.Lock()
	localURIs.last.Store(&localURIEntry{cert: cert, uri: uri})
	localURIs.mu.Unlock()
	return uri
}

// xfccDetails are the set_current_client_cert_details an HCM asks for.
type xfccDetails struct {
	subject, uri, dns, cert, chain bool
}

func xfccDetailsOf(d *hcmv3.HttpConnectionManager_SetCurrentClientCertDetails) xfccDetails {
	return xfccDetails{subject: d.GetSubject().GetValue(), uri: d.GetUri(), dns: d.GetDns(), cert: d.GetCert(), chain: d.GetChain()}
}

// xfccElement is one X-Forwarded-Client-Cert element as Envoy writes it
// (ConnectionManagerUtility::mutateXfccRequestHeader): By= the proxy's own
// URI SANs, Hash= the SHA-256 of the peer certificate's DER in hex, then
// the details in Envoy's order — Cert, Chain (URL-encoded PEM, quoted),
// Subject (quoted: it may hold ',' or '='), URI (present even when empty),
// DNS — joined by ';'.
func xfccElement(local string, peer []*x509.Certificate, d xfccDetails) string {
	var parts []string
	if local != "" {
		parts = append(parts, "By="+local)
	}
	sum := sha256.Sum256(peer[0].Raw)
	parts = append(parts, "Hash="+hex.EncodeToString(sum[:]))
	leaf := peer[0]
	if d.cert {
		parts = append(parts, `Cert="`+urlPEM(peer[:1])+`"`)
	}
	if d.chain {
		parts = append(parts, `Chain="`+urlPEM(peer)+`"`)
	}
	if d.subject {
		parts = append(parts, `Subject="`+leaf.Subject.String()+`"`)
	}
	if d.uri {
		if len(leaf.URIs) == 0 {
			parts = append(parts, "URI=")
		}
		for _, u := range leaf.URIs {
			parts = append(parts, "URI="+u.String())
		}
	}
	if d.dns {
		for _, n := range leaf.DNSNames {
			parts = append(parts, "DNS="+n)
		}
	}
	return strings.Join(parts, ";")
}

func urlPEM(certs []*x509.Certificate) string {
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return url.QueryEscape(string(b))
}

const headerXFCC = "X-Forwarded-Client-Cert"

// applyXFCC sets the upstream request's X-Forwarded-Client-Cert as the
// HCM's forward_client_cert_details says: SANITIZE (the default) drops
// it; FORWARD_ONLY keeps the client's on mutual TLS; APPEND_FORWARD
// appends this connection's element, SANITIZE_SET replaces the header
// with it; ALWAYS_FORWARD_ONLY passes it as it came. Without mutual TLS
// every mode but ALWAYS_FORWARD_ONLY drops it.
func applyXFCC(out http.Header, h *hcm, id *peerIdentity) {
	mode := h.fcc
	if mode == hcmv3.HttpConnectionManager_ALWAYS_FORWARD_ONLY {
		return
	}
	if mode == hcmv3.HttpConnectionManager_SANITIZE || !id.mutualTLS() {
		delete(out, headerXFCC)
		return
	}
	switch mode {
	case hcmv3.HttpConnectionManager_APPEND_FORWARD:
		if old, ok := out[headerXFCC]; ok && len(old) > 0 {
			out[headerXFCC] = []string{strings.Join(old, ",") + "," + id.xfcc[0]}
		} else {
			out[headerXFCC] = id.xfcc
		}
	case hcmv3.HttpConnectionManager_SANITIZE_SET:
		out[headerXFCC] = id.xfcc
	}
}

// tlsStatsSet holds the ssl.* counters by listener and cluster, kept
// across configuration updates as Envoy keeps its stats by name.
type tlsStatsSet struct {
	mu sync.Mutex
	m  map[tlsScope]*upstream.TLSStats
}

type tlsScope struct{ kind, name string }

func (s *tlsStatsSet) get(kind, name string) *upstream.TLSStats {
	if s == nil {
		return &upstream.TLSStats{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[tlsScope]*upstream.TLSStats{}
	}
	k := tlsScope{kind, name}
	st := s.m[k]
	if st == nil {
		st = &upstream.TLSStats{}
		s.m[k] = st
	}
	return st
}

// each calls fn for the counters of kind, by name.
func (s *tlsStatsSet) each(kind string, fn func(name string, st *upstream.TLSStats)) {
	s.mu.Lock()
	var names []string
	for k := range s.m {
		if k.kind == kind {
			names = append(names, k.name)
		}
	}
	s.mu.Unlock()
	sort.Strings(names)
	for _, n := range names {
		fn(n, s.get(kind, n))
	}
}
