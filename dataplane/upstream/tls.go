package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshlab/meshlab/dataplane/fieldcheck"
)

// What this file adds, as Envoy's TLS transport socket does for
// clusters: a cluster's transport_socket, or its transport_socket_matches
// chosen per endpoint by the endpoint's "envoy.transport_socket_match"
// metadata (Istio's auto mTLS), originates TLS with the configured client
// certificate, SNI and ALPN and verifies the server as Envoy's default
// certificate validator does. Certificates named by SDS are resolved at
// each handshake, so a rotated certificate is used by the next
// connection with no configuration change. A TLS context field the proxy
// does not implement is refused (the cluster is NACKed), never skipped:
// skipping one could leave a connection in plaintext or unverified.

// Secrets resolves SDS secret names when a handshake needs them.
type Secrets interface {
	// Certificate is the certificate secret name.
	Certificate(name string) (*tls.Certificate, error)
	// Roots are the trusted CAs of the validation secret name.
	Roots(name string) (*x509.CertPool, error)
}

// TLSStats are Envoy's ssl.* counters of one listener or cluster.
type TLSStats struct {
	Handshake       atomic.Uint64 // ssl.handshake
	ConnectionError atomic.Uint64 // ssl.connection_error
	FailVerifySAN   atomic.Uint64 // ssl.fail_verify_san
	FailVerifyError atomic.Uint64 // ssl.fail_verify_error
	NoCertificate   atomic.Uint64 // ssl.no_certificate
	SessionReused   atomic.Uint64 // ssl.session_reused
}

// Count records a finished handshake: its success (and resumption) or,
// when err is not a verification failure already counted, a connection
// error.
func (s *TLSStats) Count(cs tls.ConnectionState, err error) {
	if s == nil {
		return
	}
	if err != nil {
		s.ConnectionError.Add(1)
		return
	}
	s.Handshake.Add(1)
	if cs.DidResume {
		s.SessionReused.Add(1)
	}
}

// The transport socket names Envoy knows; raw_buffer is plaintext.
const (
	socketTLS = "envoy.transport_sockets.tls"
	socketRaw = "envoy.transport_sockets.raw_buffer"
)

// Metadata key of an endpoint's transport socket match.
const transportSocketMatchKey = "envoy.transport_socket_match"

// ClientTLS is a compiled UpstreamTlsContext. Its Config is built once;
// the callbacks it holds resolve certificates and roots per handshake.
type ClientTLS struct {
	// Name is the transport socket match's name ("tlsMode-istio"), or
	// the transport socket's.
	Name   string
	config *tls.Config
	// h1 and h2 are config with ALPN as Istio's istio.alpn filter
	// overrides it for HTTP/1.1 and HTTP/2 connections (nil: as config).
	h1, h2 *tls.Config
	stats  *TLSStats
}

// Config is the client configuration of a connection of no particular
// protocol (TCP proxy).
func (c *ClientTLS) Config() *tls.Config { return c.config }

// istioALPN is what Istio's client clusters offer for mTLS; the HTTP
// filter istio.alpn then replaces it per upstream protocol.
var istioALPN = []string{"istio-peer-exchange", "istio"}

// Client wraps conn in TLS and completes the handshake, counting it.
// http2 selects the ALPN of HTTP/2 connections, http1 of HTTP/1.1 ones
// (neither: the context's own).
func (c *ClientTLS) Client(conn net.Conn, http1, http2 bool) (*tls.Conn, error) {
	cfg := c.config
	switch {
	case http2 && c.h2 != nil:
		cfg = c.h2
	case http1 && c.h1 != nil:
		cfg = c.h1
	}
	tc := tls.Client(conn, cfg)
	err := tc.Handshake()
	c.stats.Count(tc.ConnectionState(), err)
	if err != nil {
		return nil, &TransportError{Socket: c.Name, Err: err}
	}
	return tc, nil
}

// TransportError is a failed TLS handshake with an upstream: a
// connection failure whose reason Envoy reports as
// %UPSTREAM_TRANSPORT_FAILURE_REASON% ("TLS_error:...").
type TransportError struct {
	Socket string
	Err    error
}

func (e *TransportError) Error() string {
	return "tls handshake (" + e.Socket + "): " + e.Err.Error()
}

func (e *TransportError) Unwrap() error { return e.Err }

// Reason is the error as Envoy's transport failure reason spells it
// (with Go's words where BoringSSL's codes would be).
func (e *TransportError) Reason() string { return "TLS_error:|" + e.Err.Error() + ":TLS_error_end" }

// socketMatch is one transport_socket_matches entry; tls nil is plaintext.
type socketMatch struct {
	name  string
	match map[string]*structpb.Value
	tls   *ClientTLS
}

// compileSockets reads a cluster's transport_socket and
// transport_socket_matches. def is the socket of an endpoint that matches
// no entry (Envoy: the cluster's transport_socket, else plaintext).
func compileSockets(cl *Cluster, secrets Secrets, stats *TLSStats) (def *ClientTLS, matches []socketMatch, err error) {
	c := cl.Config
	if ts := c.GetTransportSocket(); ts != nil {
		if def, err = compileSocket(ts, ts.GetName(), secrets, stats); err != nil {
			return nil, nil, fmt.Errorf("transport_socket: %w", err)
		}
	}
	for i, m := range c.GetTransportSocketMatches() {
		t, err := compileSocket(m.GetTransportSocket(), m.GetName(), secrets, stats)
		if err != nil {
			return nil, nil, fmt.Errorf("transport_socket_matches[%d] (%s): %w", i, m.GetName(), err)
		}
		matches = append(matches, socketMatch{name: m.GetName(), match: m.GetMatch().GetFields(), tls: t})
	}
	return def, matches, nil
}

func compileSocket(ts *corev3.TransportSocket, name string, secrets Secrets, stats *TLSStats) (*ClientTLS, error) {
	tc := ts.GetTypedConfig()
	switch {
	case tc == nil && (ts.GetName() == socketRaw || ts.GetName() == ""):
		return nil, nil
	case tc == nil:
		return nil, fmt.Errorf("transport socket %q without a typed config is not supported", ts.GetName())
	case tc.MessageIs(&tlsv3.UpstreamTlsContext{}):
		var utc tlsv3.UpstreamTlsContext
		if err := tc.UnmarshalTo(&utc); err != nil {
			return nil, fmt.Errorf("decode UpstreamTlsContext: %w", err)
		}
		return CompileClientTLS(&utc, name, secrets, stats)
	case strings.HasSuffix(tc.GetTypeUrl(), "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"):
		return nil, nil
	}
	return nil, fmt.Errorf("transport socket %q (%s) is not supported", ts.GetName(), tc.GetTypeUrl())
}

// CompileClientTLS builds the client side of an UpstreamTlsContext.
func CompileClientTLS(utc *tlsv3.UpstreamTlsContext, name string, secrets Secrets, stats *TLSStats) (*ClientTLS, error) {
	// allow_renegotiation: Go's client refuses renegotiation, which only
	// matters to servers that ask for it; the mesh's never do.
	if err := fieldcheck.Only(utc, "common_tls_context", "sni", "allow_renegotiation", "max_session_keys"); err != nil {
		return nil, err
	}
	ctx := utc.GetCommonTlsContext()
	cfg, err := commonConfig(ctx)
	if err != nil {
		return nil, err
	}
	cfg.ServerName = utc.GetSni()
	cfg.NextProtos = ctx.GetAlpnProtocols()
	certs, sds, err := certificates(ctx)
	if err != nil {
		return nil, err
	}
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		switch {
		case len(certs) > 0:
			return &certs[0], nil
		case sds != "":
			if secrets == nil {
				return nil, fmt.Errorf("secret %q: no secrets source", sds)
			}
			return secrets.Certificate(sds)
		}
		return &tls.Certificate{}, nil // none configured: send none
	}
	v, err := CompileValidation(ctx, secrets)
	if err != nil {
		return nil, err
	}
	// The server's name is not checked against SNI: Envoy verifies the
	// chain and the SAN matchers only, and without a validation context
	// accepts any certificate.
	cfg.InsecureSkipVerify = true
	if v != nil {
		cfg.VerifyConnection = func(cs tls.ConnectionState) error { return v.Verify(cs.PeerCertificates, stats) }
	}
	n := 64
	if m := utc.GetMaxSessionKeys(); m != nil {
		n = int(m.GetValue())
	}
	if n > 0 {
		rc := &rotatingCache{size: n, cert: func() *tls.Certificate {
			c, err := cfg.GetClientCertificate(nil)
			if err != nil {
				return nil
			}
			return c
		}}
		cfg.ClientSessionCache = rc
	} else {
		cfg.SessionTicketsDisabled = true
	}
	out := &ClientTLS{Name: name, config: cfg, stats: stats}
	if equalStrings(cfg.NextProtos, istioALPN) {
		// Istio's sidecar HCMs carry istio.alpn, which offers the server
		// the upstream protocol next to Istio's markers; the inbound
		// HTTP chains match on those.
		out.h1 = cfg.Clone()
		out.h1.NextProtos = []string{"istio-http/1.1", "istio", "http/1.1"}
		out.h2 = cfg.Clone()
		out.h2.NextProtos = []string{"istio-h2", "istio", "h2"}
	}
	return out, nil
}

// rotatingCache is a client session cache that forgets its sessions when
// the client certificate changes. Envoy builds a new TLS context (and so
// a new session cache) when SDS rotates a certificate; without that, a
// resumed session would keep presenting the identity of the old
// certificate to the server for as long as the session lives.
type rotatingCache struct {
	size int
	cert func() *tls.Certificate
	cur  atomic.Pointer[sessionCache]
}

type sessionCache struct {
	cert  *tls.Certificate
	cache tls.ClientSessionCache
}

func (r *rotatingCache) current() *sessionCache {
	cert := r.cert()
	if c := r.cur.Load(); c != nil && c.cert == cert {
		return c
	}
	c := &sessionCache{cert: cert, cache: tls.NewLRUClientSessionCache(r.size)}
	r.cur.Store(c)
	return c
}

func (r *rotatingCache) Get(key string) (*tls.ClientSessionState, bool) {
	return r.current().cache.Get(key)
}

func (r *rotatingCache) Put(key string, cs *tls.ClientSessionState) {
	r.current().cache.Put(key, cs)
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// commonConfig reads the protocol parameters of a CommonTlsContext,
// refusing the fields the proxy does not implement.
func commonConfig(ctx *tlsv3.CommonTlsContext) (*tls.Config, error) {
	if err := fieldcheck.Only(ctx, "tls_params", "tls_certificates", "tls_certificate_sds_secret_configs",
		"validation_context", "validation_context_sds_secret_config", "combined_validation_context", "alpn_protocols"); err != nil {
		return nil, err
	}
	p := ctx.GetTlsParams()
	if err := fieldcheck.Only(p, "tls_minimum_protocol_version", "tls_maximum_protocol_version", "cipher_suites", "ecdh_curves"); err != nil {
		return nil, fmt.Errorf("tls_params: %w", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13}
	if v, ok := tlsVersion(p.GetTlsMinimumProtocolVersion()); ok {
		cfg.MinVersion = v
	}
	if v, ok := tlsVersion(p.GetTlsMaximumProtocolVersion()); ok {
		cfg.MaxVersion = v
	}
	for _, name := range p.GetCipherSuites() {
		id, err := cipherSuite(name)
		if err != nil {
			return nil, err
		}
		if id != 0 {
			cfg.CipherSuites = append(cfg.CipherSuites, id)
		}
	}
	for _, name := range p.GetEcdhCurves() {
		id, ok := map[string]tls.CurveID{"X25519": tls.X25519, "P-256": tls.CurveP256, "P-384": tls.CurveP384,
			"P-521": tls.CurveP521, "X25519MLKEM768": tls.X25519MLKEM768}[name]
		if !ok {
			return nil, fmt.Errorf("tls_params: ecdh curve %q is not supported", name)
		}
		cfg.CurvePreferences = append(cfg.CurvePreferences, id)
	}
	return cfg, nil
}

// cipherSuite maps an OpenSSL/BoringSSL cipher name, as Envoy takes them,
// to Go's; TLS 1.3 suites (not configurable in Go) map to 0.
func cipherSuite(name string) (uint16, error) {
	for _, n := range strings.Split(strings.Trim(name, "[]"), "|") {
		switch n {
		case "ECDHE-ECDSA-AES128-GCM-SHA256":
			return tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, nil
		case "ECDHE-RSA-AES128-GCM-SHA256":
			return tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, nil
		case "ECDHE-ECDSA-AES256-GCM-SHA384":
			return tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, nil
		case "ECDHE-RSA-AES256-GCM-SHA384":
			return tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, nil
		case "ECDHE-ECDSA-CHACHA20-POLY1305":
			return tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, nil
		case "ECDHE-RSA-CHACHA20-POLY1305":
			return tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, nil
		case "AES128-GCM-SHA256":
			return tls.TLS_RSA_WITH_AES_128_GCM_SHA256, nil
		case "AES256-GCM-SHA384":
			return tls.TLS_RSA_WITH_AES_256_GCM_SHA384, nil
		case "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256":
			return 0, nil
		}
	}
	return 0, fmt.Errorf("tls_params: cipher suite %q is not supported", name)
}

func tlsVersion(v tlsv3.TlsParameters_TlsProtocol) (uint16, bool) {
	switch v {
	case tlsv3.TlsParameters_TLSv1_0:
		return tls.VersionTLS10, true
	case tlsv3.TlsParameters_TLSv1_1:
		return tls.VersionTLS11, true
	case tlsv3.TlsParameters_TLSv1_2:
		return tls.VersionTLS12, true
	case tlsv3.TlsParameters_TLSv1_3:
		return tls.VersionTLS13, true
	}
	return 0, false
}

// certificates reads a context's own certificate: static ones, or the
// name of the SDS secret that holds it.
func certificates(ctx *tlsv3.CommonTlsContext) ([]tls.Certificate, string, error) {
	var certs []tls.Certificate
	for _, tc := range ctx.GetTlsCertificates() {
		if err := fieldcheck.Only(tc, "certificate_chain", "private_key"); err != nil {
			return nil, "", fmt.Errorf("tls_certificates: %w", err)
		}
		cert, err := LoadCertificate(tc)
		if err != nil {
			return nil, "", err
		}
		certs = append(certs, cert)
	}
	var sds string
	switch scs := ctx.GetTlsCertificateSdsSecretConfigs(); {
	case len(scs) > 1:
		return nil, "", errors.New("more than one tls_certificate_sds_secret_configs is not supported")
	case len(scs) == 1:
		sds = scs[0].GetName()
	}
	return certs, sds, nil
}

// LoadCertificate reads a TlsCertificate's chain and key.
func LoadCertificate(tc *tlsv3.TlsCertificate) (tls.Certificate, error) {
	chain, err := ReadSource(tc.GetCertificateChain())
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate chain: %w", err)
	}
	key, err := ReadSource(tc.GetPrivateKey())
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("private key: %w", err)
	}
	cert, err := tls.X509KeyPair(chain, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate: %w", err)
	}
	return cert, nil
}

// ReadSource reads a DataSource: a file or inline data.
func ReadSource(ds *corev3.DataSource) ([]byte, error) {
	switch s := ds.GetSpecifier().(type) {
	case *corev3.DataSource_Filename:
		return os.ReadFile(s.Filename)
	case *corev3.DataSource_InlineBytes:
		return s.InlineBytes, nil
	case *corev3.DataSource_InlineString:
		return []byte(s.InlineString), nil
	}
	return nil, fmt.Errorf("unsupported data source %T", ds.GetSpecifier())
}

// LoadPool reads PEM certificates into a pool.
func LoadPool(ds *corev3.DataSource) (*x509.CertPool, error) {
	b, err := ReadSource(ds)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("no PEM certificates")
	}
	return pool, nil
}

// Validation is a compiled certificate validation context: the trusted
// CAs (static, or an SDS secret resolved per handshake) and the SAN
// matchers, as Envoy's default certificate validator applies them.
type Validation struct {
	roots    *x509.CertPool
	rootsSDS string
	secrets  Secrets
	// skipChain: trust_chain_verification ACCEPT_UNTRUSTED.
	skipChain bool
	sans      []sanMatcher
}

// CompileValidation reads a CommonTlsContext's validation context (nil:
// none, so any certificate is accepted, as Envoy does).
func CompileValidation(ctx *tlsv3.CommonTlsContext, secrets Secrets) (*Validation, error) {
	var vc *tlsv3.CertificateValidationContext
	var sds string
	switch {
	case ctx.GetValidationContext() != nil:
		vc = ctx.GetValidationContext()
	case ctx.GetValidationContextSdsSecretConfig() != nil:
		sds = ctx.GetValidationContextSdsSecretConfig().GetName()
	case ctx.GetCombinedValidationContext() != nil:
		cv := ctx.GetCombinedValidationContext()
		if err := fieldcheck.Only(cv, "default_validation_context", "validation_context_sds_secret_config"); err != nil {
			return nil, fmt.Errorf("combined_validation_context: %w", err)
		}
		vc = cv.GetDefaultValidationContext()
		sds = cv.GetValidationContextSdsSecretConfig().GetName()
	default:
		return nil, nil
	}
	v := &Validation{rootsSDS: sds, secrets: secrets}
	if vc != nil {
		if err := fieldcheck.Only(vc, "trusted_ca", "match_typed_subject_alt_names", "match_subject_alt_names", "trust_chain_verification"); err != nil {
			return nil, fmt.Errorf("validation context: %w", err)
		}
		if vc.GetTrustedCa() != nil {
			pool, err := LoadPool(vc.GetTrustedCa())
			if err != nil {
				return nil, fmt.Errorf("trusted_ca: %w", err)
			}
			v.roots = pool
		}
		v.skipChain = vc.GetTrustChainVerification() == tlsv3.CertificateValidationContext_ACCEPT_UNTRUSTED
		for _, m := range vc.GetMatchTypedSubjectAltNames() {
			sm, err := compileSAN(m.GetSanType(), m.GetMatcher())
			if err != nil {
				return nil, err
			}
			v.sans = append(v.sans, sm)
		}
		for _, m := range vc.GetMatchSubjectAltNames() { //nolint:staticcheck // SA1019: Envoy still honours it and older control planes send it
			sm, err := compileSAN(tlsv3.SubjectAltNameMatcher_SAN_TYPE_UNSPECIFIED, m)
			if err != nil {
				return nil, err
			}
			v.sans = append(v.sans, sm)
		}
	}
	if v.roots == nil && v.rootsSDS == "" {
		if len(v.sans) > 0 {
			// Envoy's words: a SAN check without a CA proves nothing.
			return nil, errors.New("SAN-based verification of peer certificates without trusted CA is insecure and not allowed")
		}
		return nil, nil
	}
	return v, nil
}

// Verify checks a peer's chain against the trusted CAs and its SANs
// against the matchers (any may match), counting the failures as Envoy's
// ssl.fail_verify_error and ssl.fail_verify_san.
func (v *Validation) Verify(certs []*x509.Certificate, stats *TLSStats) error {
	if len(certs) == 0 {
		if stats != nil {
			stats.NoCertificate.Add(1)
		}
		return errors.New("peer sent no certificate")
	}
	if !v.skipChain {
		roots := v.roots
		if v.rootsSDS != "" {
			if v.secrets == nil {
				return fmt.Errorf("validation secret %q: no secrets source", v.rootsSDS)
			}
			r, err := v.secrets.Roots(v.rootsSDS)
			if err != nil {
				if stats != nil {
					stats.FailVerifyError.Add(1)
				}
				return err
			}
			roots = r
		}
		opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
		for _, c := range certs[1:] {
			opts.Intermediates.AddCert(c)
		}
		if _, err := certs[0].Verify(opts); err != nil {
			if stats != nil {
				stats.FailVerifyError.Add(1)
			}
			return fmt.Errorf("verify peer certificate: %w", err)
		}
	}
	if len(v.sans) == 0 {
		return nil
	}
	for _, m := range v.sans {
		if m.matches(certs[0]) {
			return nil
		}
	}
	if stats != nil {
		stats.FailVerifySAN.Add(1)
	}
	return fmt.Errorf("peer certificate SANs %v match none of the configured subject alt names", certSANs(certs[0]))
}

func certSANs(c *x509.Certificate) []string {
	var out []string
	for _, u := range c.URIs {
		out = append(out, u.String())
	}
	return append(out, c.DNSNames...)
}

type sanMatcher struct {
	typ tlsv3.SubjectAltNameMatcher_SanType
	m   StringMatcher
}

func compileSAN(typ tlsv3.SubjectAltNameMatcher_SanType, m *matcherv3.StringMatcher) (sanMatcher, error) {
	switch typ {
	case tlsv3.SubjectAltNameMatcher_SAN_TYPE_UNSPECIFIED, tlsv3.SubjectAltNameMatcher_URI, tlsv3.SubjectAltNameMatcher_DNS,
		tlsv3.SubjectAltNameMatcher_EMAIL, tlsv3.SubjectAltNameMatcher_IP_ADDRESS:
	default:
		return sanMatcher{}, fmt.Errorf("subject alt name type %s is not supported", typ)
	}
	sm, err := CompileStringMatcher(m)
	if err != nil {
		return sanMatcher{}, fmt.Errorf("subject alt name matcher: %w", err)
	}
	return sanMatcher{typ: typ, m: sm}, nil
}

func (s sanMatcher) matches(c *x509.Certificate) bool {
	anyType := s.typ == tlsv3.SubjectAltNameMatcher_SAN_TYPE_UNSPECIFIED
	if anyType || s.typ == tlsv3.SubjectAltNameMatcher_URI {
		for _, u := range c.URIs {
			if s.m.Match(u.String()) {
				return true
			}
		}
	}
	if anyType || s.typ == tlsv3.SubjectAltNameMatcher_DNS {
		for _, d := range c.DNSNames {
			// A wildcard certificate name covers one label, as Envoy's
			// dnsNameMatch does for exact matchers.
			if s.m.Match(d) || s.m.exact != "" && wildcardCovers(d, s.m.exact) {
				return true
			}
		}
	}
	if anyType || s.typ == tlsv3.SubjectAltNameMatcher_EMAIL {
		for _, e := range c.EmailAddresses {
			if s.m.Match(e) {
				return true
			}
		}
	}
	if anyType || s.typ == tlsv3.SubjectAltNameMatcher_IP_ADDRESS {
		for _, ip := range c.IPAddresses {
			if s.m.Match(ip.String()) {
				return true
			}
		}
	}
	return false
}

func wildcardCovers(pattern, name string) bool {
	rest, ok := strings.CutPrefix(pattern, "*.")
	if !ok {
		return false
	}
	_, after, ok := strings.Cut(name, ".")
	return ok && strings.EqualFold(after, rest)
}

// StringMatcher is a compiled envoy.type.matcher.v3.StringMatcher.
type StringMatcher struct {
	exact, prefix, suffix, contains string
	re                              *regexp.Regexp
	kind                            uint8
	ignoreCase                      bool
}

// CompileStringMatcher compiles m; safe_regex is RE2, which Go's regexp
// implements, matched against the whole string.
func CompileStringMatcher(m *matcherv3.StringMatcher) (StringMatcher, error) {
	s := StringMatcher{ignoreCase: m.GetIgnoreCase()}
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		s.kind, s.exact = 1, p.Exact
	case *matcherv3.StringMatcher_Prefix:
		s.kind, s.prefix = 2, p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		s.kind, s.suffix = 3, p.Suffix
	case *matcherv3.StringMatcher_Contains:
		s.kind, s.contains = 4, p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := regexp.Compile("^(?:" + p.SafeRegex.GetRegex() + ")$")
		if err != nil {
			return s, fmt.Errorf("safe_regex: %w", err)
		}
		s.kind, s.re = 5, re
	default:
		return s, fmt.Errorf("string matcher %T is not supported", p)
	}
	return s, nil
}

// Match reports whether v matches.
func (s StringMatcher) Match(v string) bool {
	switch s.kind {
	case 1:
		return v == s.exact || s.ignoreCase && strings.EqualFold(v, s.exact)
	case 2:
		return strings.HasPrefix(v, s.prefix) || s.ignoreCase && len(v) >= len(s.prefix) && strings.EqualFold(v[:len(s.prefix)], s.prefix)
	case 3:
		return strings.HasSuffix(v, s.suffix) || s.ignoreCase && len(v) >= len(s.suffix) && strings.EqualFold(v[len(v)-len(s.suffix):], s.suffix)
	case 4:
		return strings.Contains(v, s.contains) || s.ignoreCase && strings.Contains(strings.ToLower(v), strings.ToLower(s.contains))
	case 5:
		return s.re.MatchString(v)
	}
	return false
}

// CommonConfig is commonConfig for the proxy's downstream contexts.
func CommonConfig(ctx *tlsv3.CommonTlsContext) (*tls.Config, error) { return commonConfig(ctx) }

// Certificates is certificates for the proxy's downstream contexts.
func Certificates(ctx *tlsv3.CommonTlsContext) ([]tls.Certificate, string, error) {
	return certificates(ctx)
}
