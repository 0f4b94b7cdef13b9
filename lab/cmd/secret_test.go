package cmd

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/controlplane"
	"github.com/meshlab/meshlab/lab"
)

// writeKeyPair writes a self-signed certificate for host and its key as
// PEM files under dir.
func writeKeyPair(t *testing.T, dir, host string) (certFile, keyFile string, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	certFile, keyFile = filepath.Join(dir, host+".crt"), filepath.Join(dir, host+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, keyPEM
}

func TestSecretCommands(t *testing.T) {
	cpDir := t.TempDir()
	s, err := controlplane.New(controlplane.Options{StateDir: cpDir})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() { hs.Close(); s.Close() })

	token, err := lab.ReadAPIToken(cpDir) // the control plane made it there
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile, keyPEM := writeKeyPair(t, dir, "httpbin.example.com")
	_, otherKey, _ := writeKeyPair(t, dir, "other.example.com")

	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		app := &cli.App{Name: "meshlab", Writer: &out, ErrWriter: &out, ExitErrHandler: func(*cli.Context, error) {},
			Commands: []*cli.Command{Create(), Get(), Delete()}}
		// As main runs it: flags may follow the positional arguments.
		err := app.Run(Intersperse(app, append([]string{"meshlab"}, append(args, "--controlplane", hs.URL, "--token", token)...)))
		return out.String(), err
	}

	tests := []struct {
		name    string
		args    []string
		wantErr string
		want    []string // substrings of the output
		notWant []string
	}{
		{name: "create", args: []string{"create", "secret", "tls", "httpbin-credential", "--cert", certFile, "--key", keyFile},
			want: []string{"secret/httpbin-credential created"}},
		{name: "mismatched key", args: []string{"create", "secret", "tls", "bad", "--cert", certFile, "--key", otherKey},
			wantErr: "private key does not match public key"},
		{name: "not tls", args: []string{"create", "secret", "generic", "x", "--cert", certFile, "--key", keyFile}, wantErr: "usage"},
		{name: "get", args: []string{"get", "secrets"},
			want:    []string{"httpbin-credential", "kubernetes.io/tls", "httpbin.example.com"},
			notWant: []string{"PRIVATE KEY"}},
		{name: "get json never shows the key", args: []string{"get", "secret", "httpbin-credential", "-o", "json"},
			want:    []string{`"tls.key"`, `"istio-system"`},
			notWant: []string{"PRIVATE KEY", string(keyPEM[40:80])}},
		{name: "other namespace is empty", args: []string{"get", "secrets", "-n", "default"}, notWant: []string{"httpbin-credential"}},
		{name: "delete", args: []string{"delete", "secret", "httpbin-credential"}, want: []string{`secret "httpbin-credential" deleted`}},
		{name: "delete again", args: []string{"delete", "secret", "httpbin-credential"}, wantErr: "not found"},
		{name: "gone", args: []string{"get", "secrets"}, notWant: []string{"httpbin-credential"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := run(tt.args...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error()+out, tt.wantErr) {
					t.Fatalf("err %v, output %q; want an error with %q", err, out, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(out, w) {
					t.Errorf("output has %q:\n%s", w, out)
				}
			}
		})
		if tt.name == "create" {
			// Stored where the brief says, key included, for the push.
			b, err := s.Store().GetMeta("secrets", "istio-system/httpbin-credential")
			if err != nil || !bytes.Contains(b, []byte(`"tls.key"`)) {
				t.Fatalf("stored secret = %.80s, %v", b, err)
			}
		}
	}
}
