package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net/url"
	"testing"
	"time"
)

// makeCSR is a CSR as a workload (or an attacker) sends it: its own key,
// and whatever subject and names it likes to claim.
func makeCSR(t *testing.T, key crypto.Signer, cn string, uris ...string) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: []string{"evil.example"}}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func parseChain(t *testing.T, chain []string) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for i, s := range chain {
		b, rest := pem.Decode([]byte(s))
		if b == nil || len(rest) != 0 || s[len(s)-1] != '\n' {
			t.Fatalf("chain[%d] is not exactly one PEM certificate ending in a newline: %q", i, s)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatalf("chain[%d]: %v", i, err)
		}
		out = append(out, c)
	}
	return out
}

func TestSignWorkload(t *testing.T) {
	root, err := New()
	if err != nil {
		t.Fatal(err)
	}
	inter, err := FromFiles(intermediate(t, root))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second) // fixed, so lifetimes are exact; real, as the roots are
	clock := func() time.Time { return now }
	root.now, inter.now = clock, clock
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	id := Identity{Namespace: "foo", ServiceAccount: "httpbin"}

	for _, tt := range []struct {
		name      string
		ca        *CA
		csr       []byte
		id        Identity
		ttl       time.Duration
		policy    WorkloadPolicy
		wantURI   string
		wantCN    string
		wantTTL   time.Duration
		wantChain int // certificates after the leaf
		wantErr   error
	}{
		{name: "default lifetime, root signs", ca: root, csr: makeCSR(t, ec, ""), id: id,
			wantURI: "spiffe://cluster.local/ns/foo/sa/httpbin", wantTTL: 24 * time.Hour, wantChain: 1},
		{name: "the CSR's claimed names are ignored", ca: root, csr: makeCSR(t, ec, "", "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"), id: id,
			wantURI: "spiffe://cluster.local/ns/foo/sa/httpbin", wantTTL: 24 * time.Hour, wantChain: 1},
		{name: "a CN in the CSR becomes the SPIFFE ID (dual use)", ca: root, csr: makeCSR(t, ec, "istio-ingressgateway"), id: id,
			wantURI: "spiffe://cluster.local/ns/foo/sa/httpbin", wantCN: "spiffe://cluster.local/ns/foo/sa/httpbin", wantTTL: 24 * time.Hour, wantChain: 1},
		{name: "no CN when the ID is longer than 64", ca: root, csr: makeCSR(t, ec, "x"), id: Identity{Namespace: "a-rather-long-namespace", ServiceAccount: "and-a-long-service-account"},
			wantURI: "spiffe://cluster.local/ns/a-rather-long-namespace/sa/and-a-long-service-account", wantTTL: 24 * time.Hour, wantChain: 1},
		{name: "RSA key, requested lifetime", ca: root, csr: makeCSR(t, rsaKey, ""), id: id, ttl: 30 * time.Second,
			wantURI: "spiffe://cluster.local/ns/foo/sa/httpbin", wantTTL: 30 * time.Second, wantChain: 1},
		{name: "Ed25519 key, configured default and trust domain", ca: root, csr: makeCSR(t, edKey, ""), id: id,
			policy:  WorkloadPolicy{TrustDomain: "example.org", DefaultTTL: time.Hour},
			wantURI: "spiffe://example.org/ns/foo/sa/httpbin", wantTTL: time.Hour, wantChain: 1},
		{name: "the maximum itself", ca: root, csr: makeCSR(t, ec, ""), id: id, ttl: 2 * time.Hour, policy: WorkloadPolicy{MaxTTL: 2 * time.Hour},
			wantURI: "spiffe://cluster.local/ns/foo/sa/httpbin", wantTTL: 2 * time.Hour, wantChain: 1},
		{name: "plugged-in intermediate: leaf, intermediate, root; ends with the intermediate", ca: inter, csr: makeCSR(t, ec, ""), id: id, ttl: 48 * time.Hour,
			wantURI: "spiffe://cluster.local/ns/foo/sa/httpbin", wantTTL: -1, wantChain: 2},
		{name: "over the maximum", ca: root, csr: makeCSR(t, ec, ""), id: id, ttl: 2*time.Hour + time.Second, policy: WorkloadPolicy{MaxTTL: 2 * time.Hour}, wantErr: ErrTTL},
		{name: "not PEM", ca: root, csr: []byte("hello"), id: id, wantErr: ErrBadCSR},
		{name: "a certificate, not a CSR", ca: root, csr: root.RootPEM(), id: id, wantErr: ErrBadCSR},
		{name: "bad signature", ca: root, csr: tamper(t, makeCSR(t, ec, "")), id: id, wantErr: ErrBadCSR},
		{name: "identity with a slash", ca: root, csr: makeCSR(t, ec, ""), id: Identity{Namespace: "foo", ServiceAccount: "a/sa/b"}, wantErr: errAny},
		{name: "empty identity", ca: root, csr: makeCSR(t, ec, ""), id: Identity{}, wantErr: errAny},
	} {
		t.Run(tt.name, func(t *testing.T) {
			chain, err := tt.ca.SignWorkload(tt.csr, tt.id, tt.ttl, tt.policy)
			if tt.wantErr != nil {
				if err == nil || (tt.wantErr != errAny && !errors.Is(err, tt.wantErr)) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			certs := parseChain(t, chain)
			if len(certs) != 1+tt.wantChain {
				t.Fatalf("chain has %d certificates, want %d", len(certs), 1+tt.wantChain)
			}
			leaf := certs[0]
			if !certs[len(certs)-1].Equal(tt.ca.Root()) {
				t.Error("the chain does not end with the root")
			}
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != tt.wantURI {
				t.Errorf("URI SANs %v, want [%s]", leaf.URIs, tt.wantURI)
			}
			if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 {
				t.Errorf("other SANs: %v %v %v", leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses)
			}
			if leaf.Subject.CommonName != tt.wantCN || len(leaf.Subject.Organization) != 0 {
				t.Errorf("subject %q, want CN %q only", leaf.Subject, tt.wantCN)
			}
			if leaf.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment {
				t.Errorf("key usage %v", leaf.KeyUsage)
			}
			if len(leaf.ExtKeyUsage) != 2 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth || leaf.ExtKeyUsage[1] != x509.ExtKeyUsageClientAuth {
				t.Errorf("extended key usage %v", leaf.ExtKeyUsage)
			}
			if leaf.IsCA || !leaf.BasicConstraintsValid {
				t.Error("a workload certificate must be marked not a CA")
			}
			if !leaf.NotBefore.Equal(now.Add(-2 * time.Minute)) {
				t.Errorf("NotBefore %v, want now-2m", leaf.NotBefore)
			}
			wantEnd := now.Add(tt.wantTTL)
			if tt.wantTTL < 0 {
				wantEnd = tt.ca.signer.NotAfter
			}
			if !leaf.NotAfter.Equal(wantEnd.Truncate(time.Second)) {
				t.Errorf("NotAfter %v, want %v", leaf.NotAfter, wantEnd)
			}
			inters := x509.NewCertPool()
			for _, c := range certs[1 : len(certs)-1] {
				inters.AddCert(c)
			}
			for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
				if _, err := leaf.Verify(x509.VerifyOptions{Roots: tt.ca.Pool(), Intermediates: inters, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
					t.Errorf("verify for %v: %v", usage, err)
				}
			}
		})
	}
}

var errAny = errors.New("any error")

// tamper flips a bit of the CSR's subject, so its signature no longer holds.
func tamper(t *testing.T, csrPEM []byte) []byte {
	b, _ := pem.Decode(csrPEM)
	der := append([]byte(nil), b.Bytes...)
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	// The DNS name's bytes sit inside the signed part; change one letter.
	i := bytes.Index(csr.RawTBSCertificateRequest, []byte("evil"))
	off := bytes.Index(der, csr.RawTBSCertificateRequest)
	if i < 0 || off < 0 {
		t.Fatal("cannot find the name to tamper with")
	}
	der[off+i] = 'd'
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func TestChainNotAfter(t *testing.T) {
	root, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if !root.ChainNotAfter().Equal(root.Root().NotAfter) {
		t.Errorf("self-signed: %v, want the root's %v", root.ChainNotAfter(), root.Root().NotAfter)
	}
	inter, err := FromFiles(intermediate(t, root))
	if err != nil {
		t.Fatal(err)
	}
	if !inter.ChainNotAfter().Equal(inter.signer.NotAfter) || !inter.ChainNotAfter().Before(root.Root().NotAfter) {
		t.Errorf("intermediate: %v, want the intermediate's %v", inter.ChainNotAfter(), inter.signer.NotAfter)
	}
}

// BenchmarkSignWorkload is the CA's share of one CreateCertificate: parse
// and verify the CSR, sign with the P-256 root.
func BenchmarkSignWorkload(b *testing.B) {
	root, err := New()
	if err != nil {
		b.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		b.Fatal(err)
	}
	csrPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	id := Identity{Namespace: "foo", ServiceAccount: "httpbin"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := root.SignWorkload(csrPEM, id, 0, WorkloadPolicy{}); err != nil {
			b.Fatal(err)
		}
	}
}
