package csr

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"

	"github.com/meshlab/meshlab/controlplane/ca"
	"github.com/meshlab/meshlab/controlplane/store"
)

// csrFor is a CSR as an attacker would send it: claiming the ingress
// gateway's identity in its URI SAN and common name.
func csrFor(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account")
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{Organization: []string{"istio-system"}}, URIs: []*url.URL{u},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// serve runs a Server on loopback over TLS with istiod's serving
// certificate, and returns a client that trusts only the mesh root and
// checks the name istio-proxy dials (istiod.istio-system.svc).
func serve(t *testing.T, s *Server, c *ca.CA) pb.IstioCertificateServiceClient {
	t.Helper()
	cert, err := c.ServingCert([]string{"istiod.istio-system.svc"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, lis, cert, time.Second) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: c.Pool(), ServerName: "istiod.istio-system.svc",
	})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return pb.NewIstioCertificateServiceClient(conn)
}

func withToken(token string) context.Context {
	ctx := context.Background()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	return ctx
}

func leafOf(t *testing.T, chain []string, root *ca.CA) *x509.Certificate {
	t.Helper()
	if len(chain) != 2 {
		t.Fatalf("chain has %d elements, want leaf and root", len(chain))
	}
	b, _ := pem.Decode([]byte(chain[0]))
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if chain[1] != string(root.RootPEM()) {
		t.Error("the chain does not end with the mesh root")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: root.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("the leaf does not verify against the mesh root: %v", err)
	}
	return leaf
}

func TestCreateCertificateWithPodTokens(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "meshlab.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	root, err := ca.Load(st)
	if err != nil {
		t.Fatal(err)
	}
	tokens := NewPodTokens(st)
	productpage, err := tokens.Issue("bookinfo", "bookinfo-productpage", "productpage-v1-abc")
	if err != nil {
		t.Fatal(err)
	}
	restarted, err := tokens.Issue("bookinfo", "bookinfo-reviews", "reviews-v1-xyz")
	if err != nil {
		t.Fatal(err)
	}
	deleted, err := tokens.Issue("bookinfo", "bookinfo-ratings", "ratings-v1-xyz")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tokens.Issue("bookinfo", "bookinfo-reviews", "reviews-v1-xyz"); err != nil { // the pod restarts
		t.Fatal(err)
	}
	if err := tokens.Revoke("bookinfo", "ratings-v1-xyz"); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{CA: root, Auth: tokens, Policy: ca.WorkloadPolicy{MaxTTL: time.Hour}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	client := serve(t, s, root)

	for _, tt := range []struct {
		name     string
		token    string
		csr      string
		ttl      int64
		wantCode codes.Code
		wantMsg  string
		wantTTL  time.Duration
	}{
		{name: "no token", csr: csrFor(t), wantCode: codes.Unauthenticated, wantMsg: "request authenticate failure"},
		{name: "unknown token", token: strings.Repeat("ab", 32), csr: csrFor(t), wantCode: codes.Unauthenticated},
		{name: "the token of a restarted pod's previous life", token: restarted, csr: csrFor(t), wantCode: codes.Unauthenticated},
		{name: "a deleted pod's token", token: deleted, csr: csrFor(t), wantCode: codes.Unauthenticated},
		{name: "the hash of a token as the token", token: hash(productpage), csr: csrFor(t), wantCode: codes.Unauthenticated},
		{name: "valid token, default lifetime", token: productpage, csr: csrFor(t), wantTTL: 24 * time.Hour},
		{name: "valid token, 30 s", token: productpage, csr: csrFor(t), ttl: 30, wantTTL: 30 * time.Second},
		{name: "valid token, over the maximum", token: productpage, csr: csrFor(t), ttl: 3601, wantCode: codes.InvalidArgument, wantMsg: "greater than the max allowed TTL"},
		{name: "valid token, garbage CSR", token: productpage, csr: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", wantCode: codes.InvalidArgument},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(withToken(tt.token), 10*time.Second)
			defer cancel()
			failures := testutil.ToFloat64(s.authFailures)
			start := time.Now()
			resp, err := client.CreateCertificate(ctx, &pb.IstioCertificateRequest{Csr: tt.csr, ValidityDuration: tt.ttl})
			if status.Code(err) != tt.wantCode || (tt.wantMsg != "" && !strings.Contains(status.Convert(err).Message(), tt.wantMsg)) {
				t.Fatalf("CreateCertificate: %v; want %v %q", err, tt.wantCode, tt.wantMsg)
			}
			if got := testutil.ToFloat64(s.authFailures) - failures; (tt.wantCode == codes.Unauthenticated) != (got == 1) {
				t.Errorf("citadel_server_authentication_failure_count moved by %v", got)
			}
			if err != nil {
				return
			}
			leaf := leafOf(t, resp.CertChain, root)
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage" {
				t.Errorf("URI SANs %v, want the token's identity only", leaf.URIs)
			}
			if len(leaf.Subject.Organization) != 0 {
				t.Errorf("subject %v copied from the CSR", leaf.Subject)
			}
			if got := leaf.NotAfter.Sub(start); got < tt.wantTTL-2*time.Second || got > tt.wantTTL+time.Second {
				t.Errorf("lives %v from the request, want %v", got, tt.wantTTL)
			}
		})
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collectors()...)
	for name, want := range map[string]float64{
		"citadel_server_csr_count":                    9,
		"citadel_server_authentication_failure_count": 5,
		"citadel_server_success_cert_issuance_count":  2,
		"citadel_server_root_cert_expiry_timestamp":   float64(root.Root().NotAfter.Unix()),
		"citadel_server_cert_chain_expiry_timestamp":  float64(root.Root().NotAfter.Unix()),
	} {
		if got := gathered(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	for label, want := range map[string]float64{"TTL_ERROR": 1, "CSR_ERROR": 1, "CERT_GEN_ERROR": 0} {
		if got := testutil.ToFloat64(s.signErrs.WithLabelValues(label)); got != want {
			t.Errorf(`citadel_server_csr_sign_err_count{error=%q} = %v, want %v`, label, got, want)
		}
	}

	// A control plane restarted on the same store still knows the token.
	again, err := NewPodTokens(st).Authenticate(context.Background(), productpage)
	if err != nil || again != (ca.Identity{Namespace: "bookinfo", ServiceAccount: "bookinfo-productpage"}) {
		t.Errorf("after reopening: %v, %v", again, err)
	}
	// Only hashes are kept.
	all, err := st.ListMeta(TokenBucket)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 {
		t.Errorf("%d tokens stored, want productpage's and reviews' current ones", len(all))
	}
	for k, v := range all {
		if strings.Contains(k+string(v), productpage) {
			t.Error("a token is stored in the clear")
		}
	}
}

func gathered(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			m := mf.GetMetric()[0]
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestServeTLSOnly: the service speaks TLS with istiod's certificate only;
// a client that does not trust the mesh root gets nowhere.
func TestServeTLSOnly(t *testing.T) {
	root, err := ca.New()
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.New()
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(t.TempDir(), "meshlab.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := New(Options{CA: root, Auth: NewPodTokens(st), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := root.ServingCert([]string{"istiod.istio-system.svc"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, lis, cert, time.Second) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	for name, cfg := range map[string]*tls.Config{
		"another root":       {RootCAs: other.Pool(), ServerName: "istiod.istio-system.svc"},
		"another name":       {RootCAs: root.Pool(), ServerName: "istiod.example"},
		"plaintext over TLS": nil,
	} {
		t.Run(name, func(t *testing.T) {
			creds := grpc.WithTransportCredentials(credentials.NewTLS(cfg))
			if cfg == nil {
				creds = grpc.WithTransportCredentials(insecure.NewCredentials())
			}
			conn, err := grpc.NewClient(lis.Addr().String(), creds)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer ccancel()
			_, err = pb.NewIstioCertificateServiceClient(conn).CreateCertificate(cctx, &pb.IstioCertificateRequest{Csr: csrFor(t)})
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("CreateCertificate: %v, want Unavailable (no connection)", err)
			}
		})
	}
	if got := testutil.ToFloat64(s.csrs); got != 0 {
		t.Errorf("%v requests reached the service", got)
	}
}

var quiet = slog.New(slog.DiscardHandler)
