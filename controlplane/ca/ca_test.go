package ca

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net"
	"path/filepath"
	"testing"

	"github.com/meshlab/meshlab/controlplane/store"
)

func openStore(t *testing.T, dir string) *store.Store {
	t.Helper()
	st, err := store.Open(filepath.Join(dir, "meshlab.db"))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestLoadPersistsTheRoot(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	first, err := Load(st)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Root().IsCA || first.Root().PublicKeyAlgorithm != x509.ECDSA {
		t.Fatalf("root: IsCA=%v algorithm=%v, want an ECDSA CA", first.Root().IsCA, first.Root().PublicKeyAlgorithm)
	}
	if years := first.Root().NotAfter.Sub(first.Root().NotBefore).Hours() / 24 / 365; years < 9.9 {
		t.Errorf("root lives %.1f years, want 10", years)
	}
	st.Close()

	st = openStore(t, dir)
	defer st.Close()
	again, err := Load(st)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.RootPEM(), again.RootPEM()) {
		t.Fatal("a reopened store gave a different root")
	}
	// A certificate issued after the restart chains to the root of before.
	cert, err := again.ServingCert([]string{"istiod.istio-system.svc"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: first.Pool(), DNSName: "istiod.istio-system.svc"}); err != nil {
		t.Fatalf("verify against the root of before the restart: %v", err)
	}
}

func TestLoadRejectsAMismatchedKey(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	if _, err := Load(st); err != nil {
		t.Fatal(err)
	}
	other, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutMeta(Bucket, keyCert, other.RootPEM()); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(st); err == nil {
		t.Fatal("Load accepted a root certificate that does not match the stored key")
	}
}

func TestServingCert(t *testing.T) {
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"istiod.istio-system.svc", "istiod.istio-system.svc.cluster.local"}
	cert, err := c.ServingCert(names, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		server string
		ok     bool
	}{
		{"short service name", "istiod.istio-system.svc", true},
		{"full service name", "istiod.istio-system.svc.cluster.local", true},
		{"loopback address", "127.0.0.1", true},
		{"another name", "istiod.default.svc", false},
		{"another address", "127.0.0.2", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A real handshake over an in-memory connection, as a webhook
			// caller does it.
			cc, sc := net.Pipe()
			defer cc.Close()
			defer sc.Close()
			srv := tls.Server(sc, &tls.Config{Certificates: []tls.Certificate{cert}})
			go srv.Handshake()
			err := tls.Client(cc, &tls.Config{RootCAs: c.Pool(), ServerName: tt.server}).Handshake()
			if (err == nil) != tt.ok {
				t.Fatalf("handshake for %s: err=%v, want ok=%v", tt.server, err, tt.ok)
			}
		})
	}
	if _, err := c.ServingCert(nil, nil); err == nil {
		t.Error("ServingCert with no names succeeded")
	}
	if got := cert.Leaf.ExtKeyUsage; len(got) != 1 || got[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("ext key usage %v, want server auth only", got)
	}
}
