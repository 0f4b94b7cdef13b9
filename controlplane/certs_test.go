package controlplane

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"

	"github.com/meshlab/meshlab/controlplane/api"
)

// TestCertificateService runs the control plane with CSRAddr as the lab
// would: the runtime asks the API for a pod's token, istio-proxy sends it
// to 15012 over TLS trusting only the mesh root, and 15014's /metrics
// counts what happened. A restart on the same state keeps the token.
func TestCertificateService(t *testing.T) {
	dir := t.TempDir()
	opts := Options{StateDir: dir, XDSAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", CSRAddr: "127.0.0.1:0",
		WorkloadCertTTL: time.Minute, MaxWorkloadCertTTL: time.Hour, DrainTimeout: time.Second,
		Logger: slog.New(slog.DiscardHandler)}
	s, stop := startServer(t, opts)
	h := httptest.NewServer(s.Handler())
	defer h.Close()
	apiToken, err := os.ReadFile(filepath.Join(dir, TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	cli := api.NewClient(h.URL)
	req := api.PodTokenRequest{Namespace: "foo", ServiceAccount: "httpbin", Pod: "httpbin-7d9f-abcde"}
	var apiErr *api.APIError
	if _, err := cli.IssuePodToken(t.Context(), req); !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnauthorized {
		t.Fatalf("issue a pod token without the API credential: %v, want 401", err)
	}
	cli.Token = strings.TrimSpace(string(apiToken))
	pt, err := cli.IssuePodToken(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if pt.Identity != "spiffe://cluster.local/ns/foo/sa/httpbin" || len(pt.Token) != 64 {
		t.Fatalf("pod token %+v", pt)
	}
	if _, err := cli.IssuePodToken(t.Context(), api.PodTokenRequest{Namespace: "foo", ServiceAccount: "a/sa/b", Pod: "p"}); !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest {
		t.Fatalf("a service account with a slash: %v, want 400", err)
	}

	addr := s.CSRAddr(t.Context()).String()
	client := csrClient(t, addr, s.CA().Pool())
	csrPEM := attackerCSR(t)
	for _, tt := range []struct {
		name     string
		token    string
		ttl      int64
		wantCode codes.Code
		wantTTL  time.Duration
	}{
		{"no token", "", 0, codes.Unauthenticated, 0},
		{"the API's token is no pod's", cli.Token, 0, codes.Unauthenticated, 0},
		{"pod token, configured default", pt.Token, 0, codes.OK, time.Minute},
		{"pod token, 10 s", pt.Token, 10, codes.OK, 10 * time.Second},
		{"pod token, over the configured max", pt.Token, 3601, codes.InvalidArgument, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if tt.token != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tt.token)
			}
			resp, err := client.CreateCertificate(ctx, &pb.IstioCertificateRequest{Csr: csrPEM, ValidityDuration: tt.ttl})
			if status.Code(err) != tt.wantCode {
				t.Fatalf("CreateCertificate: %v, want %v", err, tt.wantCode)
			}
			if err != nil {
				return
			}
			b, _ := pem.Decode([]byte(resp.CertChain[0]))
			leaf, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != pt.Identity {
				t.Errorf("URI SANs %v, want [%s] (the token's, not the CSR's)", leaf.URIs, pt.Identity)
			}
			if got := leaf.NotAfter.Sub(leaf.NotBefore) - 2*time.Minute; got < tt.wantTTL-time.Second || got > tt.wantTTL+time.Second {
				t.Errorf("lifetime %v, want %v", got, tt.wantTTL)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: s.CA().Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Error(err)
			}
		})
	}

	metrics := scrape(t, h.URL)
	for _, want := range []string{
		"citadel_server_csr_count 5",
		"citadel_server_authentication_failure_count 2",
		"citadel_server_success_cert_issuance_count 2",
		`citadel_server_csr_sign_err_count{error="TTL_ERROR"} 1`,
		"# TYPE citadel_server_root_cert_expiry_timestamp gauge",
		"# TYPE citadel_server_cert_chain_expiry_timestamp gauge",
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// Shutdown closes 15012 with the rest; a restart keeps the token.
	stop()
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("the certificate service still accepts connections after Serve returned")
	}
	s2, _ := startServer(t, opts)
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+pt.Token), 10*time.Second)
	defer cancel()
	if _, err := csrClient(t, s2.CSRAddr(t.Context()).String(), s2.CA().Pool()).CreateCertificate(ctx, &pb.IstioCertificateRequest{Csr: csrPEM}); err != nil {
		t.Fatalf("after a restart: %v", err)
	}
}

// startServer serves a control plane until the test ends or stop is called.
func startServer(t *testing.T, opts Options) (*Server, func()) {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		s.Close()
	}
	t.Cleanup(stop)
	if s.CSRAddr(t.Context()) == nil {
		t.Fatal("no certificate service address")
	}
	return s, stop
}

func csrClient(t *testing.T, addr string, roots *x509.CertPool) pb.IstioCertificateServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: roots, ServerName: "istiod.istio-system.svc",
	})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewIstioCertificateServiceClient(conn)
}

// attackerCSR claims the ingress gateway's identity.
func attackerCSR(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account")
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "gw"}, URIs: []*url.URL{u}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func scrape(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
