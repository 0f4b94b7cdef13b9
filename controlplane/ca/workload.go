package ca

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Identity is a workload's identity as the mesh knows it: the Kubernetes
// service account it runs as. It comes from a credential the caller proved
// (a TokenReview, a token the control plane issued), never from a CSR.
type Identity struct {
	Namespace      string `json:"namespace"`
	ServiceAccount string `json:"serviceAccount"`
}

func (id Identity) String() string { return id.Namespace + "/" + id.ServiceAccount }

// Validate refuses names Kubernetes would not accept: they end up in a
// URI, and a "/" in one would let a caller name another identity.
func (id Identity) Validate() error {
	if errs := validation.IsDNS1123Label(id.Namespace); len(errs) > 0 {
		return fmt.Errorf("namespace %q: %s", id.Namespace, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(id.ServiceAccount); len(errs) > 0 {
		return fmt.Errorf("service account %q: %s", id.ServiceAccount, strings.Join(errs, "; "))
	}
	return nil
}

// SPIFFE is the identity's SPIFFE ID in trustDomain, as Istio's
// spiffe.MustGenSpiffeURI: spiffe://<td>/ns/<ns>/sa/<sa>.
func (id Identity) SPIFFE(trustDomain string) string {
	if trustDomain == "" {
		trustDomain = TrustDomain
	}
	return "spiffe://" + trustDomain + "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount
}

// Istio's defaults for workload certificates: istiod's
// DEFAULT_WORKLOAD_CERT_TTL and MAX_WORKLOAD_CERT_TTL, and the clock skew
// grace its leaves start with (security/pkg/pki/util ClockSkewGracePeriod).
const (
	DefaultWorkloadTTL = 24 * time.Hour
	MaxWorkloadTTL     = 90 * 24 * time.Hour
	WorkloadBackdate   = 2 * time.Minute
)

// WorkloadPolicy is how workload certificates are issued; zero fields take
// Istio's defaults.
type WorkloadPolicy struct {
	TrustDomain string
	// DefaultTTL is the lifetime when the request names none.
	DefaultTTL time.Duration
	// MaxTTL bounds what a request may ask for (istiod's
	// max-workload-cert-ttl).
	MaxTTL time.Duration
}

func (p WorkloadPolicy) withDefaults() WorkloadPolicy {
	if p.TrustDomain == "" {
		p.TrustDomain = TrustDomain
	}
	if p.DefaultTTL <= 0 {
		p.DefaultTTL = DefaultWorkloadTTL
	}
	if p.MaxTTL <= 0 {
		p.MaxTTL = MaxWorkloadTTL
	}
	return p
}

// Errors of SignWorkload, by whose fault: the request's (a CSR that does not
// parse or verify, a lifetime over the maximum) or the CA's.
var (
	ErrBadCSR = errors.New("invalid CSR")
	ErrTTL    = errors.New("invalid certificate lifetime")
)

// SignWorkload signs the public key of csrPEM for id and returns the chain
// as istiod's CreateCertificate returns it: one PEM certificate per
// element, the leaf first, then any intermediates, the root last.
//
// Only the CSR's key and its proof of possession (its signature) are used:
// the single SAN is id's SPIFFE URI, whatever names the CSR asks for. As
// istiod (genCertTemplateFromCSR): key usage digital signature and key
// encipherment, extended key usage server and client auth, an empty
// subject unless the CSR has a common name, which then becomes the SPIFFE
// ID (Istio's dual-use mode); NotBefore now-2m, NotAfter now+ttl, where a
// ttl of zero or less is p.DefaultTTL and one over p.MaxTTL is refused.
func (c *CA) SignWorkload(csrPEM []byte, id Identity, ttl time.Duration, p WorkloadPolicy) ([]string, error) {
	p = p.withDefaults()
	if err := id.Validate(); err != nil {
		return nil, fmt.Errorf("sign a workload certificate: identity: %w", err)
	}
	b, _ := pem.Decode(csrPEM)
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("%w: not a PEM CERTIFICATE REQUEST", ErrBadCSR)
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature: %w", ErrBadCSR, err)
	}
	if ttl > p.MaxTTL {
		return nil, fmt.Errorf("%w: requested TTL %s is greater than the max allowed TTL %s", ErrTTL, ttl, p.MaxTTL)
	}
	if ttl <= 0 {
		ttl = p.DefaultTTL
	}
	spiffe := id.SPIFFE(p.TrustDomain)
	uri, err := url.Parse(spiffe)
	if err != nil {
		return nil, fmt.Errorf("sign a workload certificate: SPIFFE ID %q: %w", spiffe, err)
	}
	var subject pkix.Name
	// A common name is at most 64 characters (RFC 5280's ub-common-name);
	// istiod leaves it out when the identity is longer.
	if csr.Subject.CommonName != "" && len(spiffe) <= 64 {
		subject.CommonName = spiffe
	}
	now := c.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               subject,
		URIs:                  []*url.URL{uri},
		NotBefore:             now.Add(-WorkloadBackdate),
		NotAfter:              now.Add(ttl),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		AuthorityKeyId:        c.signer.SubjectKeyId,
	}
	// A leaf that outlives its issuer would be rejected by every peer
	// from that moment on; ending with the issuer makes the proxy renew.
	if tmpl.NotAfter.After(c.signer.NotAfter) {
		tmpl.NotAfter = c.signer.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.signer, csr.PublicKey, c.key)
	if err != nil {
		return nil, fmt.Errorf("sign a workload certificate for %s: %w", spiffe, err)
	}
	chain := []string{string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
	for _, inter := range c.chain {
		chain = append(chain, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: inter})))
	}
	// One PEM per element (istiod flattens its chain so for ztunnel), the
	// root re-encoded: a root-cert.pem may hold more than one certificate.
	return append(chain, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.root.Raw}))), nil
}

// ChainNotAfter is when the first certificate of the signing chain (the
// signer, its intermediates, the root) expires: after that no leaf it signs
// verifies. It is istiod's citadel_server_cert_chain_expiry_timestamp.
func (c *CA) ChainNotAfter() time.Time {
	t := c.signer.NotAfter
	for _, der := range c.chain {
		if cert, err := x509.ParseCertificate(der); err == nil && cert.NotAfter.Before(t) {
			t = cert.NotAfter
		}
	}
	if c.root.NotAfter.Before(t) {
		t = c.root.NotAfter
	}
	return t
}
