package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// The files of a plugged-in CA, as Istio names them in its cacerts Secret
// (and istiod reads them from /etc/cacerts): the signing certificate and its
// key, the mesh root, and the chain from the signing certificate up to the
// root.
const (
	CACertFile    = "ca-cert.pem"
	CAKeyFile     = "ca-key.pem"
	RootCertFile  = "root-cert.pem"
	CertChainFile = "cert-chain.pem"
)

// InDir reports whether dir holds a plugged-in CA (its key, at least).
// A missing directory holds none; the control plane then keeps its own root.
func InDir(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, CAKeyFile))
	return err == nil
}

// LoadDir returns the CA plugged in as files in dir (a mounted cacerts
// Secret). It never writes: the files are the operator's.
func LoadDir(dir string) (*CA, error) {
	files := map[string][]byte{}
	for _, name := range []string{CACertFile, CAKeyFile, RootCertFile, CertChainFile} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) && name == CertChainFile {
			continue // optional: a root signing itself has no chain
		}
		if err != nil {
			return nil, fmt.Errorf("load the plugged-in CA: %w", err)
		}
		files[name] = b
	}
	c, err := FromFiles(files)
	if err != nil {
		return nil, fmt.Errorf("load the plugged-in CA from %s: %w", dir, err)
	}
	return c, nil
}

// FromFiles returns the CA of a cacerts Secret's data. The signing
// certificate is either the root itself or an intermediate that must chain
// to it through cert-chain.pem.
func FromFiles(files map[string][]byte) (*CA, error) {
	signer, err := parseCert(files[CACertFile])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", CACertFile, err)
	}
	root, err := parseCert(files[RootCertFile])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", RootCertFile, err)
	}
	key, err := parseKey(files[CAKeyFile])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", CAKeyFile, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(signer.PublicKey) {
		return nil, fmt.Errorf("%s does not match %s", CAKeyFile, CACertFile)
	}
	if !signer.IsCA || signer.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%s is not a CA certificate that may sign certificates", CACertFile)
	}
	c := &CA{root: root, rootPEM: bytes.Clone(files[RootCertFile]), signer: signer, key: key, now: time.Now}
	if signer.Equal(root) {
		return c, nil
	}
	// An intermediate: leaves carry the chain without the root, and the
	// chain must lead to the root or no peer will accept them.
	inter := x509.NewCertPool()
	for rest := files[CertChainFile]; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", CertChainFile, err)
		}
		if cert.Equal(root) {
			continue
		}
		inter.AddCert(cert)
		if !cert.Equal(signer) {
			c.chain = append(c.chain, cert.Raw)
		}
	}
	c.chain = append([][]byte{signer.Raw}, c.chain...)
	if _, err := signer.Verify(x509.VerifyOptions{Roots: c.Pool(), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("%s does not chain to %s: %w", CACertFile, RootCertFile, err)
	}
	return c, nil
}

// Files is the CA as a cacerts Secret's data, for a CA whose root signs
// (New, Load): the four files with the root in three of them. Plug the
// result in with LoadDir or FromFiles.
func (c *CA) Files() (map[string][]byte, error) {
	if !c.signer.Equal(c.root) {
		return nil, errors.New("export the CA: it signs with a plugged-in intermediate, whose files are the operator's")
	}
	k, ok := c.key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("export the CA: unexpected key type %T", c.key)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("export the CA key: %w", err)
	}
	return map[string][]byte{
		CACertFile:    bytes.Clone(c.rootPEM),
		CAKeyFile:     pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}),
		RootCertFile:  bytes.Clone(c.rootPEM),
		CertChainFile: bytes.Clone(c.rootPEM),
	}, nil
}

func parseCert(b []byte) (*x509.Certificate, error) {
	p, _ := pem.Decode(b)
	if p == nil || p.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM CERTIFICATE")
	}
	return x509.ParseCertificate(p.Bytes)
}

// parseKey reads the key forms openssl and Istio's tools write: SEC 1 EC,
// PKCS #1 RSA and PKCS #8.
func parseKey(b []byte) (crypto.Signer, error) {
	p, _ := pem.Decode(b)
	if p == nil {
		return nil, errors.New("not PEM")
	}
	var key any
	var err error
	switch p.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(p.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(p.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(p.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", p.Type)
	}
	if err != nil {
		return nil, err
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key type %T cannot sign", key)
	}
	return s, nil
}
