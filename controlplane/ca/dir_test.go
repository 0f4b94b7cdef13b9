package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// intermediate returns the files of an intermediate CA signed by root, as an
// operator plugs in an organisation's CA.
func intermediate(t *testing.T, root *CA) map[string][]byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "intermediate"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
		SubjectKeyId: keyID(&key.PublicKey),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root.root, &key.PublicKey, root.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return map[string][]byte{
		CACertFile:    cert,
		CAKeyFile:     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
		RootCertFile:  root.RootPEM(),
		CertChainFile: append(bytes.Clone(cert), root.RootPEM()...),
	}
}

func TestFromFiles(t *testing.T) {
	root, err := New()
	if err != nil {
		t.Fatal(err)
	}
	other, err := New()
	if err != nil {
		t.Fatal(err)
	}
	own, err := root.Files()
	if err != nil {
		t.Fatal(err)
	}
	otherFiles, _ := other.Files()
	with := func(m map[string][]byte, k string, v []byte) map[string][]byte {
		out := map[string][]byte{}
		for k, v := range m {
			out[k] = v
		}
		out[k] = v
		return out
	}
	inter := intermediate(t, root)
	tests := []struct {
		name    string
		files   map[string][]byte
		wantErr string
		chain   int // certificates in a serving chain
	}{
		{"the root signs", own, "", 1},
		{"an intermediate signs", inter, "", 2},
		{"key of another CA", with(own, CAKeyFile, otherFiles[CAKeyFile]), "does not match", 0},
		{"intermediate of another root", with(inter, RootCertFile, other.RootPEM()), "does not chain", 0},
		{"no key", with(own, CAKeyFile, nil), "ca-key.pem: not PEM", 0},
		{"a certificate for a key", with(own, CAKeyFile, own[CACertFile]), "not a private key", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := FromFiles(tt.files)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("FromFiles = %v; want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(c.RootPEM(), tt.files[RootCertFile]) {
				t.Error("RootPEM is not root-cert.pem")
			}
			cert, err := c.ServingCert([]string{"istiod.istio-system.svc"}, []net.IP{net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			if len(cert.Certificate) != tt.chain {
				t.Errorf("serving chain has %d certificates, want %d", len(cert.Certificate), tt.chain)
			}
			inter := x509.NewCertPool()
			for _, der := range cert.Certificate[1:] {
				ic, _ := x509.ParseCertificate(der)
				inter.AddCert(ic)
			}
			// Verified as the API server does: trusting the caBundle only.
			if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: root.Pool(), Intermediates: inter, DNSName: "istiod.istio-system.svc"}); err != nil {
				t.Errorf("serving certificate does not verify against the root: %v", err)
			}
		})
	}
}

// TestLoadDir: the files of Files, written as a Secret volume holds them,
// load back as the same CA; a directory without them holds no CA.
func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	if InDir(dir) {
		t.Fatal("an empty directory holds a CA")
	}
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	files, err := c.Files()
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if !InDir(dir) {
		t.Fatal("InDir = false after writing the files")
	}
	got, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Root().Equal(c.Root()) {
		t.Error("LoadDir returned another root")
	}
	os.Remove(filepath.Join(dir, RootCertFile))
	if _, err := LoadDir(dir); err == nil || !strings.Contains(err.Error(), RootCertFile) {
		t.Errorf("LoadDir without %s = %v; want an error naming it", RootCertFile, err)
	}
}
