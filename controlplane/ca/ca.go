// Package ca is the mesh's certificate authority: one ECDSA P-256 root,
// created on first use and kept in the control plane's store so it survives
// restarts, that signs the control plane's serving certificates (the
// webhooks) and workload certificates carrying SPIFFE identities
// (SignWorkload).
package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Store keeps the root key and certificate; *store.Store satisfies it.
type Store interface {
	GetMeta(bucket, key string) ([]byte, error)
	PutMeta(bucket, key string, val []byte) error
}

// The metadata bucket and keys the root lives under.
const (
	Bucket  = "ca"
	keyCert = "root-cert.pem"
	keyKey  = "root-key.pem"
)

// TrustDomain is the SPIFFE trust domain of the mesh, as Istio's default.
const TrustDomain = "cluster.local"

const (
	rootLifetime    = 10 * 365 * 24 * time.Hour
	servingLifetime = 365 * 24 * time.Hour
	// Certificates start a little in the past so that a peer whose clock is
	// slightly behind does not reject them as not yet valid.
	backdate = 5 * time.Minute
)

// CA signs certificates with the mesh root. It is safe for concurrent use:
// after Load it is read only.
type CA struct {
	root    *x509.Certificate
	rootPEM []byte
	// signer and key sign what the CA issues: the root itself, or a
	// plugged-in intermediate (LoadDir) whose chain up to the root, root
	// excluded, follows every leaf.
	signer *x509.Certificate
	key    crypto.Signer
	chain  [][]byte
	now    func() time.Time
}

// Load returns the CA kept in st, creating and persisting a new root the
// first time.
func Load(st Store) (*CA, error) {
	certPEM, err := st.GetMeta(Bucket, keyCert)
	if err != nil {
		return nil, fmt.Errorf("load the CA root: %w", err)
	}
	keyPEM, err := st.GetMeta(Bucket, keyKey)
	if err != nil {
		return nil, fmt.Errorf("load the CA root: %w", err)
	}
	if certPEM != nil && keyPEM != nil {
		c, err := parse(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("load the CA root from the store: %w", err)
		}
		return c, nil
	}
	c, err := New()
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalECPrivateKey(c.key.(*ecdsa.PrivateKey))
	if err != nil {
		return nil, fmt.Errorf("encode the CA key: %w", err)
	}
	// The key goes first: a root certificate without its key is useless,
	// while a key without a certificate is regenerated next time.
	if err := st.PutMeta(Bucket, keyKey, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})); err != nil {
		return nil, fmt.Errorf("persist the CA key: %w", err)
	}
	if err := st.PutMeta(Bucket, keyCert, c.rootPEM); err != nil {
		return nil, fmt.Errorf("persist the CA root: %w", err)
	}
	return c, nil
}

// New makes a CA with a fresh root that is kept nowhere (tests, tools).
func New() (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate the CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{TrustDomain}, CommonName: "meshlab root CA"},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(rootLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          keyID(&key.PublicKey),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("self-sign the CA root: %w", err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse the new CA root: %w", err)
	}
	return &CA{root: root, signer: root, key: key, rootPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), now: time.Now}, nil
}

func parse(certPEM, keyPEM []byte) (*CA, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, errors.New("root certificate: not a PEM CERTIFICATE")
	}
	root, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("root certificate: %w", err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil || kb.Type != "EC PRIVATE KEY" {
		return nil, errors.New("root key: not a PEM EC PRIVATE KEY")
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("root key: %w", err)
	}
	if !key.PublicKey.Equal(root.PublicKey) {
		return nil, errors.New("root key does not match the root certificate")
	}
	return &CA{root: root, signer: root, key: key, rootPEM: bytes.Clone(certPEM), now: time.Now}, nil
}

// Root is the root certificate; callers must not modify it.
func (c *CA) Root() *x509.Certificate { return c.root }

// RootPEM is the root certificate in PEM, as a webhook's caBundle and a
// workload's root-cert.pem want it.
func (c *CA) RootPEM() []byte { return bytes.Clone(c.rootPEM) }

// Pool is a certificate pool holding only the root.
func (c *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.root)
	return p
}

// ServingCert issues a TLS server certificate for the names and addresses
// with a new P-256 key, valid for a year; the chain holds the leaf and any
// plugged-in intermediates, not the root, which clients trust themselves.
func (c *CA) ServingCert(dnsNames []string, ips []net.IP) (tls.Certificate, error) {
	if len(dnsNames) == 0 && len(ips) == 0 {
		return tls.Certificate{}, errors.New("issue a serving certificate: no DNS names or IP addresses")
	}
	cn := ""
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	} else {
		cn = ips[0].String()
	}
	return c.issue(&x509.Certificate{
		Subject:     pkix.Name{Organization: []string{TrustDomain}, CommonName: cn},
		DNSNames:    dnsNames,
		IPAddresses: ips,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, servingLifetime)
}

// issue signs tmpl (given its names and usages) with a new key, for the
// control plane's own certificates; workloads bring their key in a CSR
// (SignWorkload).
func (c *CA) issue(tmpl *x509.Certificate, lifetime time.Duration) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate a key for %s: %w", tmpl.Subject.CommonName, err)
	}
	now := c.now()
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = now.Add(-backdate)
	tmpl.NotAfter = now.Add(lifetime)
	if tmpl.NotAfter.After(c.signer.NotAfter) {
		tmpl.NotAfter = c.signer.NotAfter
	}
	tmpl.AuthorityKeyId = c.signer.SubjectKeyId
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.signer, &key.PublicKey, c.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("sign a certificate for %s: %w", tmpl.Subject.CommonName, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parse the certificate for %s: %w", tmpl.Subject.CommonName, err)
	}
	return tls.Certificate{Certificate: append([][]byte{der}, c.chain...), PrivateKey: key, Leaf: leaf}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		panic("crypto/rand failed: " + err.Error()) // never on Linux
	}
	return n
}

func keyID(pub *ecdsa.PublicKey) []byte {
	b, _ := x509.MarshalPKIXPublicKey(pub)
	sum := sha256.Sum256(b)
	return sum[:20]
}
