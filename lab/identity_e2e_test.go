package lab_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	securityv1 "istio.io/api/security/v1alpha1"
	corev1 "k8s.io/api/core/v1"

	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/controlplane/ca"
	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/labtest"
)

// checkPodIdentity: a sidecar gets what Istio's injector gives istio-proxy
// — a token proving the pod's identity and the mesh root — readable by
// istio-proxy only; with the token, Istio's certificate service on 15012
// signs the pod's own SPIFFE identity, whatever the CSR claims.
func checkPodIdentity(t *testing.T, run func(args ...string) (string, error), st lab.Status, ns, deploy, sa string) {
	t.Helper()
	token, err := run("exec", "-n", ns, "deploy/"+deploy, "-c", "istio-proxy", "--", "cat", "/var/run/secrets/tokens/istio-token")
	if err != nil || len(token) < 32 {
		t.Fatalf("istio-proxy's token: %q, %v", token, err)
	}
	if out, err := run("exec", "-n", ns, "deploy/"+deploy, "--", "cat", "/var/run/secrets/tokens/istio-token"); err == nil {
		t.Errorf("the app container read istio-proxy's token: %q", out)
	}
	root, err := run("exec", "-n", ns, "deploy/"+deploy, "-c", "istio-proxy", "--", "cat", "/var/run/secrets/istio/root-cert.pem")
	if err != nil {
		t.Fatalf("istio-proxy's root certificate: %v\n%s", err, root)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(root)) {
		t.Fatalf("root-cert.pem holds no certificate:\n%s", root)
	}
	istiod, err := st.FindPod("istio-system", "istiod")
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// The CSR claims the ingress gateway; the certificate must not.
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(net.JoinHostPort(istiod.IP, "15012"),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "istiod.istio-system.svc", MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	resp, err := securityv1.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx, &securityv1.IstioCertificateRequest{
		Csr: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), ValidityDuration: 3600})
	if err != nil {
		t.Fatalf("CreateCertificate with %s/%s's token: %v", ns, deploy, err)
	}
	block, _ := pem.Decode([]byte(resp.CertChain[0]))
	if block == nil {
		t.Fatalf("no certificate in the chain: %q", resp.CertChain)
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	want := "spiffe://cluster.local/ns/" + ns + "/sa/" + sa
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != want {
		t.Errorf("certificate for %s/%s names %v; want only %s", ns, deploy, leaf.URIs, want)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("the workload certificate does not chain to the mesh root: %v", err)
	}
}

// checkProxyIdentity: every proxy of the lab, sidecars and the ingress
// gateway, speaks xDS on 15012 with its own workload certificate (the
// control plane knows it by its SPIFFE ID), and holds "default" (its
// certificate, valid) and "ROOTCA" as istioctl proxy-config secret shows.
func checkProxyIdentity(t *testing.T, run func(args ...string) string, state string, pods func(ns string) []corev1.Pod) {
	t.Helper()
	var proxies []api.ProxyStatus
	if err := json.Unmarshal([]byte(run("proxy-status", "-o", "json")), &proxies); err != nil {
		t.Fatalf("proxy-status -o json: %v", err)
	}
	gateway := false
	for _, p := range proxies {
		if !p.Connected {
			continue
		}
		if !strings.HasPrefix(p.Identity, "spiffe://cluster.local/ns/"+p.Namespace+"/sa/") {
			t.Errorf("proxy %s.%s: identity %q; want its certificate's, of its namespace", p.Pod, p.Namespace, p.Identity)
		}
		if p.Type == "router" {
			gateway = true
			if p.Identity != "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account" {
				t.Errorf("gateway identity %q", p.Identity)
			}
		}
	}
	if !gateway {
		t.Error("proxy-status shows no connected gateway")
	}
	var httpbin string
	for _, p := range pods("foo") {
		if strings.HasPrefix(p.Name, "httpbin") {
			httpbin = p.Name
		}
	}
	out := run("proxy-config", "secret", "-n", "foo", httpbin)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "RESOURCE NAME     TYPE") {
		t.Fatalf("proxy-config secret:\n%s", out)
	}
	for i, want := range [][]string{{"default", "Cert Chain", "ACTIVE", "true"}, {"ROOTCA", "CA", "ACTIVE", "true"}} {
		f := regexp.MustCompile(`\s{2,}`).Split(lines[i+1], -1)
		if len(f) < 7 || f[0] != want[0] || f[1] != want[1] || f[2] != want[2] || f[3] != want[3] {
			t.Errorf("proxy-config secret row %d = %q, want %v", i+1, lines[i+1], want)
			continue
		}
		after, err1 := time.Parse(time.RFC3339, f[5])
		before, err2 := time.Parse(time.RFC3339, f[6])
		if err1 != nil || err2 != nil {
			t.Errorf("row %q: dates %v %v", lines[i+1], err1, err2)
		} else if i == 0 && after.Sub(before) != 24*time.Hour+2*time.Minute {
			t.Errorf("default lives %v, want istiod's 24h + 2m backdating", after.Sub(before))
		}
	}
	if strings.Contains(run("proxy-config", "secret", "-n", "foo", httpbin, "-o", "json"), "PRIVATE KEY") {
		t.Error("proxy-config secret -o json shows a private key")
	}

	// The root is never rotated silently: a new root-cert.pem (as the lab
	// would write it) is the new trust, and the certificate that does not
	// chain to it is dropped at once (fail closed); the old root back, the
	// proxy gets a certificate again.
	rootFile := filepath.Join(state, "pods", "foo", httpbin, "istio-proxy", "istio", "root-cert.pem")
	orig, err := os.ReadFile(rootFile)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.New()
	if err != nil {
		t.Fatal(err)
	}
	replace := func(b []byte) {
		tmp := rootFile + ".new"
		if err := os.WriteFile(tmp, b, 0o444); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, rootFile); err != nil {
			t.Fatal(err)
		}
	}
	rows := func() string { return run("proxy-config", "secret", "-n", "foo", httpbin) }
	replace(other.RootPEM())
	var seen string
	labtest.Eventually(t, "httpbin.foo's certificate dropped once its root changed", func() bool {
		seen = rows()
		return !strings.Contains(seen, "\ndefault ") && strings.Contains(seen, other.Root().SerialNumber.String())
	})
	replace(orig)
	labtest.Eventually(t, "httpbin.foo's certificate back with its root", func() bool {
		seen = rows()
		return regexp.MustCompile(`\ndefault\s+Cert Chain\s+ACTIVE\s+true`).MatchString(seen)
	})
}

// checkGatewayCredential: a TLS credential of istio-system reaches the
// ingress gateway over SDS on 15012 (its identity entitles it), so HTTPS
// through it works from the host, and proxy-config secret lists it with
// the gateway's own "default" and "ROOTCA", keys redacted.
func checkGatewayCredential(t *testing.T, run func(args ...string) string, httpsPort string) {
	t.Helper()
	rootPEM, certPEM, keyPEM := serverCert(t, "httpbin.example.com")
	dir := t.TempDir()
	files := map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	run("create", "secret", "tls", "httpbin-credential", "-n", "istio-system",
		"--cert", filepath.Join(dir, "tls.crt"), "--key", filepath.Join(dir, "tls.key"))
	run("apply", "-f", "testdata/sandbox/https-gateway.yaml", "--wait")
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(rootPEM)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "httpbin.example.com", MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, "127.0.0.1:"+httpsPort)
		},
	}}
	var last string
	labtest.Eventually(t, "https://httpbin.example.com/ip through the gateway with the credential", func() bool {
		resp, err := client.Get("https://httpbin.example.com/ip")
		if err != nil {
			last = err.Error()
			return false
		}
		_ = resp.Body.Close()
		last = resp.Status
		return resp.StatusCode == http.StatusOK
	})
	var gw string
	var st lab.Status
	if err := json.Unmarshal([]byte(run("status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	p, err := st.FindPod("istio-system", "istio-ingressgateway")
	if err != nil {
		t.Fatalf("%v (last: %s)", err, last)
	}
	gw = p.Name
	out := run("proxy-config", "secret", "-n", "istio-system", gw)
	for _, want := range []string{"default ", "ROOTCA ", "kubernetes://httpbin-credential "} {
		if !strings.Contains(out, "\n"+want) {
			t.Errorf("proxy-config secret of the gateway lacks %q:\n%s", want, out)
		}
	}
	if js := run("proxy-config", "secret", "-n", "istio-system", gw, "-o", "json"); strings.Contains(js, "PRIVATE KEY") {
		t.Error("the gateway's secrets show a private key")
	}
	run("delete", "-f", "testdata/sandbox/https-gateway.yaml")
}

// serverCert is a throwaway CA and a server certificate for host.
func serverCert(t *testing.T, host string) (rootPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sandbox CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}, caTmpl, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}
