package upstream

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// mint issues a certificate for uri (and dns) signed by parent (nil:
// self-signed CA), with an RSA 2048 key (Istio's default) when rsaKey.
func mint(t testing.TB, parent *tls.Certificate, uri string, dns []string, rsaKey bool) *tls.Certificate {
	t.Helper()
	var key crypto.Signer
	var err error
	if rsaKey {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), NotBefore: time.Now().Add(-time.Minute),
		NotAfter: time.Now().Add(time.Hour), DNSNames: dns,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageCertSign}
	if uri != "" {
		u, _ := url.Parse(uri)
		tmpl.URIs = []*url.URL{u}
	}
	signer, signerCert := key, tmpl
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	} else {
		signer, signerCert = parent.PrivateKey.(crypto.Signer), parent.Leaf
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

type staticSecrets struct {
	cert  *tls.Certificate
	roots *x509.CertPool
}

func (s staticSecrets) Certificate(name string) (*tls.Certificate, error) {
	if name != "default" || s.cert == nil {
		return nil, errors.New("no such certificate")
	}
	return s.cert, nil
}

func (s staticSecrets) Roots(name string) (*x509.CertPool, error) {
	if name != "ROOTCA" || s.roots == nil {
		return nil, errors.New("no such roots")
	}
	return s.roots, nil
}

func exactSAN(typ tlsv3.SubjectAltNameMatcher_SanType, v string) *tlsv3.SubjectAltNameMatcher {
	return &tlsv3.SubjectAltNameMatcher{SanType: typ, Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}}}
}

func istioContext(sans ...*tlsv3.SubjectAltNameMatcher) *tlsv3.UpstreamTlsContext {
	return &tlsv3.UpstreamTlsContext{Sni: "outbound_.9080_._.reviews.default.svc.cluster.local", CommonTlsContext: &tlsv3.CommonTlsContext{
		AlpnProtocols:                  []string{"istio-peer-exchange", "istio"},
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "default"}},
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sans},
			ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "ROOTCA"},
		}},
	}}
}

// TestValidationSANs checks peer certificates against SAN matchers and
// roots as Envoy's default validator does.
func TestValidationSANs(t *testing.T) {
	ca := mint(t, nil, "", nil, false)
	other := mint(t, nil, "", nil, false)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Leaf)
	reviews := mint(t, ca, "spiffe://cluster.local/ns/default/sa/reviews", nil, false)
	web := mint(t, ca, "", []string{"*.example.com"}, false)
	foreign := mint(t, other, "spiffe://cluster.local/ns/default/sa/reviews", nil, false)
	prefix := func(p string) *tlsv3.SubjectAltNameMatcher {
		return &tlsv3.SubjectAltNameMatcher{SanType: tlsv3.SubjectAltNameMatcher_URI, Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: p}}}
	}
	for _, tt := range []struct {
		name string
		sans []*tlsv3.SubjectAltNameMatcher
		peer *tls.Certificate
		ok   bool
		stat func(*TLSStats) uint64
	}{
		{"exact URI", []*tlsv3.SubjectAltNameMatcher{exactSAN(tlsv3.SubjectAltNameMatcher_URI, "spiffe://cluster.local/ns/default/sa/reviews")}, reviews, true, nil},
		{"any of several", []*tlsv3.SubjectAltNameMatcher{exactSAN(tlsv3.SubjectAltNameMatcher_URI, "spiffe://x"), exactSAN(tlsv3.SubjectAltNameMatcher_URI, "spiffe://cluster.local/ns/default/sa/reviews")}, reviews, true, nil},
		{"other SA", []*tlsv3.SubjectAltNameMatcher{exactSAN(tlsv3.SubjectAltNameMatcher_URI, "spiffe://cluster.local/ns/default/sa/ratings")}, reviews, false, func(s *TLSStats) uint64 { return s.FailVerifySAN.Load() }},
		{"URI prefix", []*tlsv3.SubjectAltNameMatcher{prefix("spiffe://cluster.local/ns/default/")}, reviews, true, nil},
		{"a URI is not a DNS name", []*tlsv3.SubjectAltNameMatcher{exactSAN(tlsv3.SubjectAltNameMatcher_DNS, "spiffe://cluster.local/ns/default/sa/reviews")}, reviews, false, nil},
		{"DNS wildcard cert", []*tlsv3.SubjectAltNameMatcher{exactSAN(tlsv3.SubjectAltNameMatcher_DNS, "api.example.com")}, web, true, nil},
		{"DNS wildcard one label only", []*tlsv3.SubjectAltNameMatcher{exactSAN(tlsv3.SubjectAltNameMatcher_DNS, "a.b.example.com")}, web, false, nil},
		{"no matchers: chain only", nil, reviews, true, nil},
		{"foreign root", nil, foreign, false, func(s *TLSStats) uint64 { return s.FailVerifyError.Load() }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			utc := istioContext(tt.sans...)
			v, err := CompileValidation(utc.GetCommonTlsContext(), staticSecrets{roots: roots})
			if err != nil {
				t.Fatal(err)
			}
			var st TLSStats
			err = v.Verify([]*x509.Certificate{tt.peer.Leaf}, &st)
			if (err == nil) != tt.ok {
				t.Fatalf("verify: %v, want ok=%v", err, tt.ok)
			}
			if tt.stat != nil && tt.stat(&st) != 1 {
				t.Errorf("failure not counted: %+v", &st)
			}
		})
	}
	// match_subject_alt_names (deprecated) matches any SAN type.
	v, err := CompileValidation(&tlsv3.CommonTlsContext{ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
		ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "ROOTCA"}}}, staticSecrets{roots: roots})
	if err != nil || v.Verify([]*x509.Certificate{reviews.Leaf}, nil) != nil {
		t.Fatalf("ROOTCA only: %v", err)
	}
}

// tlsServer accepts mTLS connections on loopback, writes one byte after
// each handshake (so that TLS 1.3 session tickets reach the client) and
// closes.
func tlsServer(t testing.TB, cert *tls.Certificate, roots *x509.CertPool) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{*cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: roots,
		NextProtos: []string{"h2", "http/1.1", "istio-peer-exchange"}})
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
			go func() {
				defer c.Close()
				if c.(*tls.Conn).Handshake() == nil {
					c.Write([]byte{1})
					io.Copy(io.Discard, c)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// BenchmarkHandshake is the client side of connecting to an mTLS server
// with Istio's ISTIO_MUTUAL context and RSA 2048 certificates (Istio's
// default key): a full handshake each time, or resumed from the
// cluster's session cache.
func BenchmarkHandshake(b *testing.B) {
	ca := mint(b, nil, "", nil, true)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Leaf)
	server := mint(b, ca, "spiffe://cluster.local/ns/default/sa/reviews", nil, true)
	client := mint(b, ca, "spiffe://cluster.local/ns/default/sa/productpage", nil, true)
	addr := tlsServer(b, server, roots)
	for _, tt := range []struct {
		name string
		keys *wrapperspb.UInt32Value
	}{{"full", wrapperspb.UInt32(0)}, {"resumed", nil}} {
		b.Run(tt.name, func(b *testing.B) {
			utc := istioContext(exactSAN(tlsv3.SubjectAltNameMatcher_URI, "spiffe://cluster.local/ns/default/sa/reviews"))
			utc.MaxSessionKeys = tt.keys
			var st TLSStats
			sock, err := CompileClientTLS(utc, "tlsMode-istio", staticSecrets{cert: client, roots: roots}, &st)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				tc, err := sock.Client(c, false, false)
				if err != nil {
					b.Fatal(err)
				}
				var one [1]byte
				if _, err := io.ReadFull(tc, one[:]); err != nil {
					b.Fatal(err)
				}
				tc.Close()
			}
			b.ReportMetric(float64(st.SessionReused.Load())/float64(st.Handshake.Load()), "resumed/op")
		})
	}
}
