package cmd

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// certPEM makes a certificate with the serial and validity given (the
// fields the table shows), signed by parent (self-signed when nil).
func certPEM(t *testing.T, serial string, ca bool, from, to string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) ([]byte, *x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := new(big.Int).SetString(serial, 10)
	tmpl := &x509.Certificate{SerialNumber: n, NotBefore: mustTime(from), NotAfter: mustTime(to), IsCA: ca, BasicConstraintsValid: true}
	if ca {
		tmpl.Subject = pkix.Name{Organization: []string{"cluster.local"}}
		tmpl.KeyUsage = x509.KeyUsageCertSign
	} else {
		u, _ := url.Parse("spiffe://cluster.local/ns/default/sa/bookinfo-productpage")
		tmpl.URIs = []*url.URL{u}
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), c, key
}

func packed(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func inline(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}

var redacted = &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "[redacted]"}}

// secretDumpFixture is the config dump of a gateway: its workload
// certificate (24 h + 2 min, istiod's backdating), the mesh root, a
// gateway credential and an expired one, and one still warming.
func secretDumpFixture(t *testing.T) *adminv3.ConfigDump {
	rootPEM, root, rootKey := certPEM(t, "2095847618522267104263284278078340180", true, "2023-05-05T03:41:33Z", "2033-05-02T03:41:33Z", nil, nil)
	leafPEM, _, _ := certPEM(t, "148535434475073015277422257846522681107", false, "2023-05-15T01:30:52Z", "2023-05-16T01:32:52Z", root, rootKey)
	credPEM, _, _ := certPEM(t, "42", false, "2023-01-01T00:00:00Z", "2024-01-01T00:00:00Z", nil, nil)
	oldPEM, _, _ := certPEM(t, "7", false, "2022-01-01T00:00:00Z", "2023-01-01T00:00:00Z", nil, nil)
	tlsSecret := func(name string, chain []byte) *anypb.Any {
		return packed(t, &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: inline(chain), PrivateKey: redacted}}})
	}
	sd := &adminv3.SecretsConfigDump{
		DynamicWarmingSecrets: []*adminv3.SecretsConfigDump_DynamicSecret{{Name: "kubernetes://pending-cert", VersionInfo: "uninitialized",
			Secret: packed(t, &tlsv3.Secret{Name: "kubernetes://pending-cert"})}},
		DynamicActiveSecrets: []*adminv3.SecretsConfigDump_DynamicSecret{
			{Name: "default", VersionInfo: "2023-05-15T01:32:52Z", Secret: tlsSecret("default", leafPEM)},
			{Name: "ROOTCA", VersionInfo: "2023-05-15T01:32:52Z", Secret: packed(t, &tlsv3.Secret{Name: "ROOTCA",
				Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: inline(rootPEM)}}})},
			{Name: "kubernetes://bookinfo-cert", VersionInfo: "3", Secret: tlsSecret("kubernetes://bookinfo-cert", credPEM)},
			{Name: "kubernetes://old-cert", VersionInfo: "3", Secret: tlsSecret("kubernetes://old-cert", oldPEM)},
		},
	}
	return &adminv3.ConfigDump{Configs: []*anypb.Any{packed(t, &adminv3.ListenersConfigDump{}), packed(t, sd)}}
}

func TestProxyConfigSecretGolden(t *testing.T) {
	dump := secretDumpFixture(t)
	for _, tt := range []struct {
		name string
		dump *adminv3.ConfigDump
	}{
		{"secret.golden", dump},
		{"secret-none.golden", &adminv3.ConfigDump{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := printSecrets(&out, tt.dump, mustTime("2023-05-15T12:00:00Z")); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "proxy-config", tt.name)
			if *updateGolden {
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if out.String() != string(want) {
				t.Errorf("got:\n%s\nwant (%s):\n%s", out.String(), golden, want)
			}
		})
	}

	// -o json is the SecretsConfigDump, keys redacted.
	var out bytes.Buffer
	if err := printSecretsJSON(&out, dump); err != nil {
		t.Fatal(err)
	}
	var sd struct {
		Active []struct {
			Name string `json:"name"`
		} `json:"dynamic_active_secrets"`
	}
	if err := json.Unmarshal(out.Bytes(), &sd); err != nil {
		t.Fatalf("-o json: %v\n%s", err, out.String())
	}
	if len(sd.Active) != 4 || sd.Active[0].Name != "default" || sd.Active[1].Name != "ROOTCA" {
		t.Errorf("-o json lists %+v", sd.Active)
	}
	if !strings.Contains(out.String(), `"[redacted]"`) {
		t.Error("-o json does not show the redacted key")
	}
}
