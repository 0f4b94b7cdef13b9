package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshlab/meshlab/controlplane/ca"
	"github.com/meshlab/meshlab/controlplane/csr"
	"github.com/meshlab/meshlab/controlplane/store"
)

var quiet = slog.New(slog.DiscardHandler)

// meshCA is the real CSR service on loopback, with pod tokens, as istiod
// runs it on 15012.
type meshCA struct {
	ca     *ca.CA
	tokens *csr.PodTokens
	addr   string
	stop   func() // stops the service (idempotent)
}

func startCA(t *testing.T) *meshCA {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "meshlab.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	root, err := ca.Load(st)
	if err != nil {
		t.Fatal(err)
	}
	tokens := csr.NewPodTokens(st)
	s, err := csr.New(csr.Options{CA: root, Auth: tokens, Policy: ca.WorkloadPolicy{MaxTTL: time.Hour}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := root.ServingCert([]string{"istiod.istio-system.svc"}, []net.IP{net.IPv4(127, 0, 0, 1)})
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
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(stop)
	return &meshCA{ca: root, tokens: tokens, addr: lis.Addr().String(), stop: stop}
}

// pod is what the runtime gives a pod's istio-proxy: the token and root
// files.
type pod struct {
	dir, token, root string
}

func newPod(t *testing.T, m *meshCA, ns, sa, name string) pod {
	t.Helper()
	dir := t.TempDir()
	p := pod{dir: dir, token: filepath.Join(dir, "istio-token"), root: filepath.Join(dir, "root-cert.pem")}
	tok, err := m.tokens.Issue(ns, sa, name)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, p.token, tok)
	writeFile(t, p.root, string(m.ca.RootPEM()))
	return p
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	// Through a rename, as the kubelet swaps projected files.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func startAgent(t *testing.T, m *meshCA, p pod, ttl time.Duration) *Agent {
	t.Helper()
	a, err := New(Config{
		CAAddress: m.addr, CAServerName: "istiod.istio-system.svc",
		TokenPath: p.token, RootCertPath: p.root, TTL: ttl,
		Namespace: "foo", ServiceAccount: "httpbin",
		RootCheck: 100 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return a
}

func serialOf(t *testing.T, a *Agent) string {
	t.Helper()
	c, err := a.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf.SerialNumber.String()
}

// The agent gets a certificate for the token's identity, chaining to the
// root file, and renews it at half its lifetime (3 s here) again and again,
// never leaving a moment without a valid certificate.
func TestAgentIssuesAndRotates(t *testing.T) {
	m := startCA(t)
	p := newPod(t, m, "foo", "httpbin", "httpbin-0")
	a := startAgent(t, m, p, 3*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := a.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	if got := uriSAN(c.Leaf); got != "spiffe://cluster.local/ns/foo/sa/httpbin" {
		t.Errorf("URI SAN %q", got)
	}
	if _, ok := c.PrivateKey.(*ecdsa.PrivateKey); !ok {
		t.Errorf("key is %T, want ECDSA", c.PrivateKey)
	}
	if len(c.Certificate) != 1 {
		t.Errorf("chain presented has %d certificates, want the leaf alone (the root is the peer's)", len(c.Certificate))
	}
	if life := time.Until(c.Leaf.NotAfter); life > 3*time.Second || life < time.Second {
		t.Errorf("lifetime left %v, want about 3s", life)
	}
	if r := a.GraceRatio(); r < 0.49 || r > 0.51 {
		t.Errorf("grace ratio %v, want 0.5±0.01", r)
	}

	// Watch for 3 rotations, checking every 20 ms that a valid
	// certificate is in hand.
	serials := []string{c.Leaf.SerialNumber.String()}
	issuedAt := []time.Time{time.Now()}
	notAfter := []time.Time{c.Leaf.NotAfter}
	deadline := time.Now().Add(12 * time.Second)
	for len(serials) < 4 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		c, err := a.Certificate()
		if err != nil {
			t.Fatalf("a moment without a certificate after %d rotations: %v", len(serials)-1, err)
		}
		if time.Now().After(c.Leaf.NotAfter) {
			t.Fatalf("an expired certificate served: %v", c.Leaf.NotAfter)
		}
		if s := c.Leaf.SerialNumber.String(); s != serials[len(serials)-1] {
			serials = append(serials, s)
			issuedAt = append(issuedAt, time.Now())
			notAfter = append(notAfter, c.Leaf.NotAfter)
		}
	}
	if len(serials) < 4 {
		t.Fatalf("%d rotations in 12s with a 3s lifetime, want 3", len(serials)-1)
	}
	for i := 1; i < len(issuedAt); i++ {
		// Renewed when half (±1%) of the lifetime is left; a lifetime of
		// 3 s is 2-3 s from receipt, as certificates count whole seconds.
		want := RotateAt(issuedAt[i-1], notAfter[i-1], a.GraceRatio())
		if d := issuedAt[i].Sub(want); d < -100*time.Millisecond || d > 700*time.Millisecond {
			t.Errorf("rotation %d came %v after the rotation time (%v after the previous)", i, d, issuedAt[i].Sub(issuedAt[i-1]))
		}
	}
}

// The token file is read again for every request: after the runtime
// replaces it (and the old token stops working), the next rotation
// succeeds with the new one.
func TestAgentRereadsToken(t *testing.T) {
	m := startCA(t)
	p := newPod(t, m, "foo", "httpbin", "httpbin-0")
	a := startAgent(t, m, p, 3*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	first := serialOf(t, a)
	tok, err := m.tokens.Issue("foo", "httpbin", "httpbin-0") // revokes the first
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, p.token, tok)
	waitFor(t, 8*time.Second, "a certificate requested with the new token", func() bool {
		c, err := a.Certificate()
		return err == nil && c.Leaf.SerialNumber.String() != first
	})
	// And one more, to be sure it was not a request already in flight.
	second := serialOf(t, a)
	waitFor(t, 8*time.Second, "another rotation with the new token", func() bool {
		c, err := a.Certificate()
		return err == nil && c.Leaf.SerialNumber.String() != second
	})
}

// A changed root file is the new trust: the certificate in hand, signed
// by the old root, is dropped at once, and so is the CA whose serving
// certificate no longer chains (no new certificate from it): the proxy
// fails closed. Putting the root back recovers.
func TestAgentRootChangeFailsClosed(t *testing.T) {
	m := startCA(t)
	p := newPod(t, m, "foo", "httpbin", "httpbin-0")
	a := startAgent(t, m, p, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	other, err := ca.New()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, p.root, string(other.RootPEM()))
	waitFor(t, 5*time.Second, "the certificate of the old root refused", func() bool {
		_, err := a.Certificate()
		return err != nil
	})
	roots, err := a.Roots()
	if err != nil {
		t.Fatal(err)
	}
	if !roots.Equal(other.Pool()) {
		t.Error("Roots is not the new root file")
	}
	// It keeps asking, and keeps refusing what the old CA serves.
	time.Sleep(2 * time.Second)
	if _, err := a.Certificate(); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("after 2 s of retries Certificate is %v; want the root refusal", err)
	}

	writeFile(t, p.root, string(m.ca.RootPEM()))
	if err := a.WaitReady(ctx); err != nil {
		t.Fatalf("root restored: %v", err)
	}
}

// ClientTLS presents the current certificate and verifies istiod against
// the root file: a handshake with a server of the mesh CA succeeds and the
// server sees the workload's SPIFFE ID; one with a server of another CA
// fails.
func TestAgentClientTLS(t *testing.T) {
	m := startCA(t)
	p := newPod(t, m, "foo", "httpbin", "httpbin-0")
	a := startAgent(t, m, p, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	other, err := ca.New()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		server  *ca.CA
		wantErr string
	}{
		{"istiod of the mesh", m.ca, ""},
		{"a server of another CA", other, "verify istiod's certificate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := tt.server.ServingCert([]string{"istiod.istio-system.svc"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
				Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: m.ca.Pool(),
			})
			if err != nil {
				t.Fatal(err)
			}
			defer lis.Close()
			peer := make(chan []*x509.Certificate, 1)
			go func() {
				c, err := lis.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				tc := c.(*tls.Conn)
				if tc.HandshakeContext(ctx) == nil {
					peer <- tc.ConnectionState().PeerCertificates
				}
				close(peer)
			}()
			c, err := tls.Dial("tcp", lis.Addr().String(), a.ClientTLS("istiod.istio-system.svc"))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("dial: %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.HandshakeContext(ctx); err != nil {
				t.Fatal(err)
			}
			certs := <-peer
			if len(certs) == 0 || uriSAN(certs[0]) != "spiffe://cluster.local/ns/foo/sa/httpbin" {
				t.Fatalf("server saw %v", certs)
			}
		})
	}
}

func TestRotateAt(t *testing.T) {
	created := time.Date(2023, 5, 15, 1, 30, 52, 0, time.UTC)
	for _, tt := range []struct {
		life  time.Duration
		ratio float64
		want  time.Duration // after created
	}{
		{24 * time.Hour, 0.5, 12 * time.Hour},
		{24 * time.Hour, 0.51, 12*time.Hour - 14*time.Minute - 24*time.Second},
		{24 * time.Hour, 0.49, 12*time.Hour + 14*time.Minute + 24*time.Second},
		{3 * time.Second, 0.5, 1500 * time.Millisecond},
	} {
		if got := RotateAt(created, created.Add(tt.life), tt.ratio).Sub(created); got != tt.want {
			t.Errorf("life %v ratio %v: rotate after %v, want %v", tt.life, tt.ratio, got, tt.want)
		}
	}
	for range 200 {
		if r := jittered(0.5, 0.01); r < 0.49 || r > 0.51 {
			t.Fatalf("jittered ratio %v outside 0.5±0.01", r)
		}
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// With the CA gone, the agent retries with backoff and keeps serving the
// certificate in hand until it expires, then fails closed.
func TestAgentKeepsCertUntilExpiry(t *testing.T) {
	m := startCA(t)
	p := newPod(t, m, "foo", "httpbin", "httpbin-0")
	a := startAgent(t, m, p, 4*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := a.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	m.stop()
	// Past the rotation time (half of 3-4 s), before expiry: the same
	// certificate, though renewals fail.
	time.Sleep(time.Until(c.Leaf.NotAfter) - 500*time.Millisecond)
	got, err := a.Certificate()
	if err != nil || got.Leaf.SerialNumber.Cmp(c.Leaf.SerialNumber) != 0 {
		t.Fatalf("before expiry, with the CA down: %v, %v; want the certificate in hand", got, err)
	}
	waitFor(t, 3*time.Second, "the expired certificate refused", func() bool {
		_, err := a.Certificate()
		return err != nil && strings.Contains(err.Error(), "expired")
	})
}

// Istio's default key type, RSA 2048, works as well.
func TestAgentRSAKey(t *testing.T) {
	m := startCA(t)
	p := newPod(t, m, "foo", "httpbin", "httpbin-0")
	a, err := New(Config{CAAddress: m.addr, CAServerName: "istiod.istio-system.svc", TokenPath: p.token, RootCertPath: p.root,
		KeyType: KeyRSA, TTL: time.Hour, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	if err := a.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := a.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := c.PrivateKey.(*rsa.PrivateKey); !ok || k.N.BitLen() != 2048 {
		t.Errorf("key %T, want RSA 2048", c.PrivateKey)
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
	if _, err := New(Config{RootCertPath: p.root, KeyType: "DSA"}); err == nil {
		t.Error("an unknown key type was accepted")
	}
}
