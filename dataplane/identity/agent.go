// Package identity is the proxy's own workload identity, the part of
// Istio's pilot-agent that serves Envoy the "default" and "ROOTCA" SDS
// secrets (security/pkg/nodeagent/cache): it makes the workload key, has
// the mesh CA sign it over Istio's CSR API on 15012 with the pod's bearer
// token, checks the returned chain against the mesh root the pod was given
// (a file), holds the current certificate and renews it at half its
// lifetime, with Istio's jitter.
//
// The root comes only from its file: a changed file is taken as the new
// trust, and a certificate (the workload's own, istiod's serving one) that
// no longer chains to it is refused, so a revoked root fails closed rather
// than being trusted on the CA's word.
package identity

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"
	pb "istio.io/api/security/v1alpha1"
)

// Istio's agent defaults (pilot/cmd/pilot-agent/options, pkg/security).
const (
	DefaultCAAddress    = "istiod.istio-system.svc:15012"
	DefaultTokenPath    = "/var/run/secrets/tokens/istio-token"
	DefaultRootCertPath = "/var/run/secrets/istio/root-cert.pem"
	DefaultClusterID    = "Kubernetes"
	DefaultTrustDomain  = "cluster.local"
	// DefaultTTL is SECRET_TTL.
	DefaultTTL = 24 * time.Hour
	// DefaultGraceRatio is SECRET_GRACE_PERIOD_RATIO, DefaultGraceJitter
	// SECRET_GRACE_PERIOD_RATIO_JITTER.
	DefaultGraceRatio  = 0.5
	DefaultGraceJitter = 0.01
	// DefaultRSAKeySize is WORKLOAD_RSA_KEY_SIZE.
	DefaultRSAKeySize = 2048
)

// Key types: KeyECDSA is Istio's ECC_SIGNATURE_ALGORITHM=ECDSA (P-256),
// KeyRSA its default.
const (
	KeyECDSA = "ECDSA"
	KeyRSA   = "RSA"
)

// Secret names, as Envoy asks Istio's agent for them over SDS.
const (
	WorkloadSecret = "default"
	RootSecret     = "ROOTCA"
)

// Config configures an Agent; zero fields take Istio's defaults.
type Config struct {
	// CAAddress is CA_ADDR, host:port of the CSR service.
	CAAddress string
	// CAServerName is the name istiod's serving certificate must carry;
	// by default the host of CAAddress, as Istio's citadel client.
	CAServerName string
	// TokenPath is the bearer token, read again for every request as the
	// kubelet (or the lab) replaces it.
	TokenPath string
	// RootCertPath is the mesh root (the istio-ca-root-cert ConfigMap's
	// root-cert.pem).
	RootCertPath string
	// ClusterID is sent as the ClusterID gRPC metadata.
	ClusterID string
	// Namespace, ServiceAccount and TrustDomain name the SPIFFE ID the
	// CSR asks for; the CA ignores it and signs what the token proves.
	Namespace, ServiceAccount, TrustDomain string
	// TTL is the lifetime requested (SECRET_TTL).
	TTL time.Duration
	// GraceRatio and GraceJitter: renew when GraceRatio±GraceJitter of
	// the lifetime is left; a negative GraceJitter means none.
	GraceRatio, GraceJitter float64
	// KeyType is KeyECDSA (the default here) or KeyRSA; RSAKeySize
	// defaults to 2048.
	KeyType    string
	RSAKeySize int
	// RootCheck is how often the root file is looked at (1s by default).
	RootCheck time.Duration
	// MaxBackoff bounds the wait between failed requests (30s).
	MaxBackoff time.Duration
	Logger     *slog.Logger
	// OnCSR, when set, is told of every CSR sent to the CA: how long it
	// took and how it failed (Istio's agent counts them in
	// istio_agent_num_outgoing_requests{request_type="csr"}).
	OnCSR func(d time.Duration, err error)
}

func (c Config) withDefaults() Config {
	if c.CAAddress == "" {
		c.CAAddress = DefaultCAAddress
	}
	if c.CAServerName == "" {
		host, _, err := net.SplitHostPort(c.CAAddress)
		if err != nil {
			host = c.CAAddress
		}
		c.CAServerName = host
	}
	if c.TokenPath == "" {
		c.TokenPath = DefaultTokenPath
	}
	if c.RootCertPath == "" {
		c.RootCertPath = DefaultRootCertPath
	}
	if c.ClusterID == "" {
		c.ClusterID = DefaultClusterID
	}
	if c.TrustDomain == "" {
		c.TrustDomain = DefaultTrustDomain
	}
	if c.TTL <= 0 {
		c.TTL = DefaultTTL
	}
	if c.GraceRatio <= 0 {
		c.GraceRatio = DefaultGraceRatio
	}
	if c.GraceJitter == 0 {
		c.GraceJitter = DefaultGraceJitter
	}
	if c.GraceJitter < 0 {
		c.GraceJitter = 0
	}
	if c.KeyType == "" {
		c.KeyType = KeyECDSA
	}
	if c.RSAKeySize <= 0 {
		c.RSAKeySize = DefaultRSAKeySize
	}
	if c.RootCheck <= 0 {
		c.RootCheck = time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Agent holds the workload's certificate and the mesh's roots. Run keeps
// them current; Certificate and Roots serve them, per handshake.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	ratio float64 // the grace ratio with this agent's jitter, fixed at start as Istio's

	mu      sync.Mutex
	roots   *rootState
	cur     *issued
	lastErr error
	changed chan struct{} // closed and replaced when cur or roots change
}

type rootState struct {
	pem  []byte
	pool *x509.CertPool
	at   time.Time
}

// issued is one certificate from the CA.
type issued struct {
	tls     *tls.Certificate
	chain   []byte // PEM, leaf first, without the root
	leaf    *x509.Certificate
	created time.Time
	at      time.Time
}

// New checks cfg and reads the root; the first certificate comes from Run.
func New(cfg Config) (*Agent, error) {
	cfg = cfg.withDefaults()
	if cfg.KeyType != KeyECDSA && cfg.KeyType != KeyRSA {
		return nil, fmt.Errorf("workload identity: key type %q: want %s or %s", cfg.KeyType, KeyECDSA, KeyRSA)
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, ratio: jittered(cfg.GraceRatio, cfg.GraceJitter), changed: make(chan struct{})}
	if _, err := a.checkRoot(); err != nil {
		return nil, err
	}
	return a, nil
}

// jittered is Istio's agent's grace ratio: ratio plus or minus a uniform
// random share of jitter, drawn once per agent so proxies started together
// do not all renew at once.
func jittered(ratio, jitter float64) float64 {
	if jitter <= 0 {
		return ratio
	}
	n, err := rand.Int(rand.Reader, big.NewInt(1<<53))
	if err != nil {
		return ratio
	}
	r := (float64(n.Int64())/(1<<53)*2 - 1) * jitter
	return ratio + r
}

// Certificate is the certificate to present now. It fails (and the
// handshake with it) when there is none yet, when it expired, or when it no
// longer chains to the root.
func (a *Agent) Certificate() (*tls.Certificate, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cur == nil {
		if a.lastErr != nil {
			return nil, fmt.Errorf("workload certificate: none yet: %w", a.lastErr)
		}
		return nil, errors.New("workload certificate: none yet")
	}
	if now := time.Now(); now.After(a.cur.leaf.NotAfter) {
		msg := fmt.Sprintf("workload certificate: expired at %s and not renewed", a.cur.leaf.NotAfter.UTC().Format(time.RFC3339))
		if a.lastErr != nil {
			return nil, fmt.Errorf("%s: %w", msg, a.lastErr)
		}
		return nil, errors.New(msg)
	}
	return a.cur.tls, nil
}

// Roots are the trusted roots now: the root file's certificates.
func (a *Agent) Roots() (*x509.CertPool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.roots == nil {
		return nil, errors.New("mesh root: not loaded")
	}
	return a.roots.pool, nil
}

// Changed is closed at the next change of the certificate or the roots.
func (a *Agent) Changed() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.changed
}

func (a *Agent) notify() {
	close(a.changed)
	a.changed = make(chan struct{})
}

// WaitReady returns once the agent holds a certificate, or ctx's error.
func (a *Agent) WaitReady(ctx context.Context) error {
	for {
		if _, err := a.Certificate(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			_, err := a.Certificate()
			return fmt.Errorf("wait for the workload certificate: %w (%w)", ctx.Err(), err)
		case <-a.Changed():
		}
	}
}

// Run gets the first certificate, then renews it at its rotation time and
// watches the root file, until ctx ends. Failures are retried with
// exponential backoff; the certificate in hand stays in use until it
// expires. It returns nil when ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	rootTick := time.NewTicker(a.cfg.RootCheck)
	defer rootTick.Stop()
	var backoff time.Duration
	next := time.Now() // first certificate at once
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-rootTick.C:
			changed, err := a.checkRoot()
			if err != nil {
				a.log.Error("mesh root", "err", err)
			}
			if changed {
				// A certificate from before may still chain (the same key
				// signed a bundle that grew); if it does not, it is gone
				// and a new one is needed now.
				a.mu.Lock()
				stale := a.cur == nil
				a.mu.Unlock()
				if stale {
					backoff = 0
					next = time.Now()
					resetTimer(timer, 0)
				}
			}
			continue
		case <-timer.C:
		}
		if time.Now().Before(next) {
			resetTimer(timer, time.Until(next))
			continue
		}
		err := a.renew(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			backoff = nextBackoff(backoff, a.cfg.MaxBackoff)
			a.mu.Lock()
			a.lastErr = err
			a.notify()
			a.mu.Unlock()
			a.log.Warn("workload certificate: request failed; retrying", "in", backoff.Round(time.Millisecond), "err", err)
			next = time.Now().Add(backoff)
		} else {
			backoff = 0
			next = time.Now().Add(a.rotateIn())
		}
		resetTimer(timer, time.Until(next))
	}
}

func resetTimer(t *time.Timer, d time.Duration) {
	t.Stop()
	select {
	case <-t.C:
	default:
	}
	t.Reset(max(d, 0))
}

// nextBackoff doubles from 100ms up to limit, with ±20% jitter so that
// proxies failing together do not retry together.
func nextBackoff(prev, limit time.Duration) time.Duration {
	d := 2 * prev
	if d < 100*time.Millisecond {
		d = 100 * time.Millisecond
	}
	d = min(d, limit)
	n, err := rand.Int(rand.Reader, big.NewInt(1000))
	if err != nil {
		return d
	}
	return time.Duration(float64(d) * (0.8 + 0.4*float64(n.Int64())/1000))
}

// rotateIn is how long until the current certificate is renewed: when
// its lifetime (from receipt to NotAfter, as Istio's SecretItem
// CreatedTime/ExpireTime) times the grace ratio is what is left.
func (a *Agent) rotateIn() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cur == nil {
		return 0
	}
	return time.Until(RotateAt(a.cur.created, a.cur.leaf.NotAfter, a.ratio))
}

// RotateAt is when a certificate received at created and expiring at
// expire is renewed with grace ratio ratio: Istio's rotateTime.
func RotateAt(created, expire time.Time, ratio float64) time.Time {
	grace := time.Duration(ratio * float64(expire.Sub(created)))
	return expire.Add(-grace)
}

// GraceRatio is this agent's grace ratio, jitter included.
func (a *Agent) GraceRatio() float64 { return a.ratio }

// checkRoot reads the root file and, when its content changed, drops the
// current certificate if it no longer chains to the new root. The content
// is compared, not the file's size and modification time: a root rewritten
// in place with one of the same size within the clock's granularity would
// pass a stat check unseen, and the proxy would keep trusting the old one.
func (a *Agent) checkRoot() (bool, error) {
	b, err := os.ReadFile(a.cfg.RootCertPath)
	if err != nil {
		return false, fmt.Errorf("read the mesh root %s: %w", a.cfg.RootCertPath, err)
	}
	a.mu.Lock()
	same := a.roots != nil && bytes.Equal(a.roots.pem, b)
	a.mu.Unlock()
	if same {
		return false, nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return false, fmt.Errorf("read the mesh root %s: no PEM certificate in it", a.cfg.RootCertPath)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.roots != nil && bytes.Equal(a.roots.pem, b) {
		return false, nil
	}
	if a.roots != nil {
		a.log.Warn("mesh root changed; certificates that do not chain to it are refused", "file", a.cfg.RootCertPath)
	}
	a.roots = &rootState{pem: b, pool: pool, at: time.Now()}
	if a.cur != nil {
		if err := verifyLeaf(a.cur.leaf, a.cur.tls, pool); err != nil {
			a.log.Warn("workload certificate no longer chains to the mesh root; dropped", "err", err)
			a.cur = nil
			a.lastErr = fmt.Errorf("the certificate in hand does not chain to the new mesh root: %w", err)
		}
	}
	a.notify()
	return true, nil
}

func verifyLeaf(leaf *x509.Certificate, c *tls.Certificate, roots *x509.CertPool) error {
	inter := x509.NewCertPool()
	for _, der := range c.Certificate[1:] {
		if ic, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(ic)
		}
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}})
	return err
}

// renew makes a new key, has it signed and installs the result.
func (a *Agent) renew(ctx context.Context) error {
	key, err := a.newKey()
	if err != nil {
		return err
	}
	csrPEM, err := a.csr(key)
	if err != nil {
		return err
	}
	t0 := time.Now()
	chain, err := a.request(ctx, csrPEM)
	if a.cfg.OnCSR != nil {
		a.cfg.OnCSR(time.Since(t0), err)
	}
	if err != nil {
		return err
	}
	cert, leaf, chainPEM, err := a.verifyChain(chain, key)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.cur = &issued{tls: cert, leaf: leaf, chain: chainPEM, created: time.Now(), at: time.Now()}
	a.lastErr = nil
	a.notify()
	a.mu.Unlock()
	a.log.Info("workload certificate issued", "identity", uriSAN(leaf), "serial", leaf.SerialNumber.Text(16),
		"expires", leaf.NotAfter.UTC().Format(time.RFC3339), "latency", time.Since(t0).Round(time.Millisecond))
	return nil
}

func (a *Agent) newKey() (crypto.Signer, error) {
	switch a.cfg.KeyType {
	case KeyRSA:
		k, err := rsa.GenerateKey(rand.Reader, a.cfg.RSAKeySize)
		if err != nil {
			return nil, fmt.Errorf("generate the workload key (RSA %d): %w", a.cfg.RSAKeySize, err)
		}
		return k, nil
	default:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate the workload key (ECDSA P-256): %w", err)
		}
		return k, nil
	}
}

// csr is the request as Istio's agent makes it: the SPIFFE ID it expects
// as the URI SAN, nothing else (the CA decides anyway).
func (a *Agent) csr(key crypto.Signer) (string, error) {
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{}}
	if a.cfg.Namespace != "" && a.cfg.ServiceAccount != "" {
		u, err := url.Parse("spiffe://" + a.cfg.TrustDomain + "/ns/" + a.cfg.Namespace + "/sa/" + a.cfg.ServiceAccount)
		if err != nil {
			return "", fmt.Errorf("build the CSR: %w", err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return "", fmt.Errorf("build the CSR: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), nil
}

// request sends the CSR over a connection made for it: its TLS trusts the
// root file as it is now, and its token is the file's as it is now.
func (a *Agent) request(ctx context.Context, csrPEM string) ([]string, error) {
	token, err := os.ReadFile(a.cfg.TokenPath)
	if err != nil {
		return nil, fmt.Errorf("read the identity token %s: %w", a.cfg.TokenPath, err)
	}
	roots, err := a.Roots()
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(a.cfg.CAAddress, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: roots, ServerName: a.cfg.CAServerName, MinVersion: tls.VersionTLS12,
	})))
	if err != nil {
		return nil, fmt.Errorf("dial the CA at %s: %w", a.cfg.CAAddress, err)
	}
	defer func() { _ = conn.Close() }()
	md, err := structpb.NewStruct(map[string]any{})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ctx = metadata.NewOutgoingContext(ctx, metadata.Pairs(
		"authorization", "Bearer "+strings.TrimSpace(string(token)),
		"ClusterID", a.cfg.ClusterID,
	))
	resp, err := pb.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx, &pb.IstioCertificateRequest{
		Csr: csrPEM, ValidityDuration: int64(a.cfg.TTL / time.Second), Metadata: md,
	})
	if err != nil {
		return nil, fmt.Errorf("create certificate at %s: %w", a.cfg.CAAddress, err)
	}
	if len(resp.GetCertChain()) == 0 {
		return nil, fmt.Errorf("create certificate at %s: empty chain in the response", a.cfg.CAAddress)
	}
	return resp.GetCertChain(), nil
}

// verifyChain checks that the CA's answer is a certificate for key that
// chains to the root file, and builds the TLS certificate (leaf and
// intermediates; the root stays out, peers have it).
func (a *Agent) verifyChain(chain []string, key crypto.Signer) (*tls.Certificate, *x509.Certificate, []byte, error) {
	var certs []*x509.Certificate
	for _, p := range chain {
		rest := []byte(p)
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("parse the certificate chain from the CA: %w", err)
			}
			certs = append(certs, c)
		}
	}
	if len(certs) == 0 {
		return nil, nil, nil, errors.New("the CA answered no certificate")
	}
	leaf := certs[0]
	if !publicKeyEqual(leaf.PublicKey, key.Public()) {
		return nil, nil, nil, errors.New("the CA's certificate is not for the key of the CSR")
	}
	out := &tls.Certificate{PrivateKey: key, Leaf: leaf}
	var chainPEM []byte
	for _, c := range certs {
		if c.IsCA && isSelfSigned(c) {
			continue // the root: peers bring their own
		}
		out.Certificate = append(out.Certificate, c.Raw)
		chainPEM = append(chainPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	roots, err := a.Roots()
	if err != nil {
		return nil, nil, nil, err
	}
	if err := verifyLeaf(leaf, out, roots); err != nil {
		return nil, nil, nil, fmt.Errorf("the certificate from the CA does not chain to the mesh root %s: %w", a.cfg.RootCertPath, err)
	}
	return out, leaf, chainPEM, nil
}

func isSelfSigned(c *x509.Certificate) bool {
	return c.CheckSignatureFrom(c) == nil
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	type eq interface{ Equal(crypto.PublicKey) bool }
	k, ok := a.(eq)
	return ok && k.Equal(b)
}

func uriSAN(c *x509.Certificate) string {
	if len(c.URIs) == 0 {
		return ""
	}
	return c.URIs[0].String()
}

// ClientTLS is the TLS configuration of the proxy's xDS connection to
// istiod: the current workload certificate as the client certificate
// (asked for per handshake, so a rotation reaches new connections), and
// istiod's serving certificate verified for serverName against the roots as
// they are at the handshake.
func (a *Agent) ClientTLS(serverName string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return a.Certificate()
		},
		// The roots change with the file, so verification is ours, by
		// the same rules crypto/tls applies.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection against the current roots
		VerifyConnection: func(cs tls.ConnectionState) error {
			roots, err := a.Roots()
			if err != nil {
				return err
			}
			if len(cs.PeerCertificates) == 0 {
				return errors.New("istiod presented no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
				DNSName: serverName, Roots: roots, Intermediates: inter,
			}); err != nil {
				return fmt.Errorf("verify istiod's certificate for %s against the mesh root: %w", serverName, err)
			}
			return nil
		},
	}
}
