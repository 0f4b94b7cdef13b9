package proxy

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// What this file adds to the proxy, as Envoy's TLS inspector and TLS
// transport socket do: reading a connection's SNI (and whether it speaks
// TLS at all) before picking its filter chain, and terminating TLS with
// the chain's certificate. Certificates come from files, inline data, or
// SDS secrets (Istio's `kubernetes://<credentialName>`) that arrive over
// ADS with the rest of the configuration (xdsclient.Snapshot.Secrets).
// A handshake takes the secret of the runtime being served, so a new
// secret rotates the certificate without touching the listener.

// inspectTimeout bounds how long a client may take to send its first
// bytes on a listener that inspects them (Envoy's listener filter
// timeout, 15s).
const inspectTimeout = 15 * time.Second

// credentials resolves SDS secret names against the runtime being
// served.
type credentials struct {
	rt *atomic.Pointer[runtime]
}

// secret is an SDS secret, decoded: a certificate, or a validation
// context's trusted CAs.
type secret struct {
	src  *tlsv3.Secret
	cert *tls.Certificate
	pool *x509.CertPool
}

// compileSecrets decodes the snapshot's secrets, reusing prev's for the
// resources that did not change. A secret that does not decode is an
// error: the update is rejected, as Envoy rejects it.
func compileSecrets(in map[string]*tlsv3.Secret, prev map[string]*secret) (map[string]*secret, error) {
	out := make(map[string]*secret, len(in))
	var errs []error
	for name, src := range in {
		if old, ok := prev[name]; ok && old.src == src {
			out[name] = old
			continue
		}
		s := &secret{src: src}
		switch {
		case src.GetTlsCertificate() != nil:
			cert, err := loadCertificate(src.GetTlsCertificate())
			if err != nil {
				errs = append(errs, fmt.Errorf("secret %q: %w", name, err))
				continue
			}
			s.cert = &cert
		case src.GetValidationContext() != nil:
			pool, err := loadPool(src.GetValidationContext().GetTrustedCa())
			if err != nil {
				errs = append(errs, fmt.Errorf("secret %q: trusted CA: %w", name, err))
				continue
			}
			s.pool = pool
		default:
			errs = append(errs, fmt.Errorf("secret %q: neither a tls_certificate nor a validation_context", name))
			continue
		}
		out[name] = s
	}
	return out, errors.Join(errs...)
}

// certificate resolves an SDS secret name; Istio's `file-cert:<cert>~<key>`
// names files directly.
func (c *credentials) certificate(name string) (*tls.Certificate, error) {
	if files, ok := strings.CutPrefix(name, "file-cert:"); ok {
		certFile, keyFile, _ := strings.Cut(files, "~")
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("secret %q: %w", name, err)
		}
		return &cert, nil
	}
	if s := c.rt.Load().secrets[name]; s != nil && s.cert != nil {
		return s.cert, nil
	}
	return nil, fmt.Errorf("secret %q: not received (yet)", name)
}

// caPool resolves a validation context secret (Istio's
// `kubernetes://<credentialName>-cacert`).
func (c *credentials) caPool(name string) (*x509.CertPool, error) {
	if s := c.rt.Load().secrets[name]; s != nil && s.pool != nil {
		return s.pool, nil
	}
	return nil, fmt.Errorf("validation secret %q: not received (yet)", name)
}

func loadCertificate(tc *tlsv3.TlsCertificate) (tls.Certificate, error) {
	chain, err := readSource(tc.GetCertificateChain())
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate chain: %w", err)
	}
	key, err := readSource(tc.GetPrivateKey())
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("private key: %w", err)
	}
	cert, err := tls.X509KeyPair(chain, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certificate: %w", err)
	}
	return cert, nil
}

func readSource(ds *corev3.DataSource) ([]byte, error) {
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

func loadPool(ds *corev3.DataSource) (*x509.CertPool, error) {
	b, err := readSource(ds)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("no PEM certificates")
	}
	return pool, nil
}

// serverTLS builds the tls.Config of a DownstreamTlsContext. SDS
// secrets are looked up at each handshake (a secret may arrive after the
// listener, as with Envoy's warming, and may be rotated), so a missing one
// fails handshakes, not the configuration. ALPN offers what the context
// lists of h2 and http/1.1.
func serverTLS(ctc *tlsv3.DownstreamTlsContext, creds *credentials) (*tls.Config, error) {
	ctx := ctc.GetCommonTlsContext()
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if v, ok := tlsVersion(ctx.GetTlsParams().GetTlsMinimumProtocolVersion()); ok {
		cfg.MinVersion = v
	}
	if v, ok := tlsVersion(ctx.GetTlsParams().GetTlsMaximumProtocolVersion()); ok {
		cfg.MaxVersion = v
	}
	for _, p := range ctx.GetAlpnProtocols() {
		if p == "h2" || p == "http/1.1" {
			cfg.NextProtos = append(cfg.NextProtos, p)
		}
	}
	var static []tls.Certificate
	for _, tc := range ctx.GetTlsCertificates() {
		cert, err := loadCertificate(tc)
		if err != nil {
			return nil, err
		}
		static = append(static, cert)
	}
	var sds []string
	for _, sc := range ctx.GetTlsCertificateSdsSecretConfigs() {
		sds = append(sds, sc.GetName())
	}
	if len(static) == 0 && len(sds) == 0 {
		return nil, errors.New("downstream TLS context without certificates")
	}
	cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		if len(static) > 0 {
			return &static[0], nil
		}
		return creds.certificate(sds[0])
	}
	if ctc.GetRequireClientCertificate().GetValue() {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		switch {
		case ctx.GetValidationContext() != nil:
			pool, err := loadPool(ctx.GetValidationContext().GetTrustedCa())
			if err != nil {
				// Verification cannot succeed: every handshake fails, which
				// is what Envoy's unwarmed listener amounts to for clients.
				pool = x509.NewCertPool()
			}
			cfg.ClientCAs = pool
		case ctx.GetValidationContextSdsSecretConfig() != nil:
			// The trusted CAs may rotate too: each handshake takes the
			// current ones.
			name := ctx.GetValidationContextSdsSecretConfig().GetName()
			base := cfg
			cfg = cfg.Clone()
			cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
				pool, err := creds.caPool(name)
				if err != nil {
					return nil, err
				}
				c := base.Clone()
				c.ClientCAs = pool
				return c, nil
			}
		default:
			cfg.ClientCAs = x509.NewCertPool()
		}
	}
	return cfg, nil
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

// inspect reads a connection's first bytes as Envoy's TLS inspector does:
// whether they are a TLS ClientHello and, if so, its SNI. The returned
// conn replays what was read.
func inspect(c *net.TCPConn) (sni string, isTLS bool, replay net.Conn, err error) {
	// The deadline is what bounds a client that sends nothing.
	if err := c.SetReadDeadline(time.Now().Add(inspectTimeout)); err != nil {
		return "", false, nil, err
	}
	defer func() { _ = c.SetReadDeadline(time.Time{}) }() // fails only if c is closed
	var rec recorder
	rec.r = c
	// A record header first: a handshake record (22) of TLS 1.x.
	var hdr [3]byte
	if _, err := io.ReadFull(&rec, hdr[:1]); err != nil {
		return "", false, nil, err
	}
	if hdr[0] == 22 {
		// Let crypto/tls parse the ClientHello from the recorded stream,
		// stopping it right after.
		errStop := errors.New("stop")
		srv := tls.Server(readOnlyConn{Conn: c, r: io.MultiReader(bytes.NewReader(rec.buf.Bytes()), &rec)}, &tls.Config{
			GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
				sni, isTLS = h.ServerName, true
				return nil, errStop
			},
		})
		// It always fails: errStop ends it at the hello, and a hello
		// crypto/tls cannot parse is simply not TLS.
		_ = srv.Handshake()
	}
	return sni, isTLS, &replayConn{TCPConn: c, r: io.MultiReader(bytes.NewReader(rec.buf.Bytes()), c)}, nil
}

// recorder keeps what is read through it.
type recorder struct {
	r   io.Reader
	buf bytes.Buffer
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.buf.Write(p[:n])
	return n, err
}

// readOnlyConn lets crypto/tls read a ClientHello without writing
// anything back to the client.
type readOnlyConn struct {
	net.Conn
	r io.Reader
}

func (c readOnlyConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c readOnlyConn) Write(p []byte) (int, error) { return len(p), nil }
func (c readOnlyConn) Close() error                { return nil }

// replayConn is a TCP connection whose inspected bytes are read again.
type replayConn struct {
	*net.TCPConn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// WriteTo keeps io.Copy from reading the TCP connection directly, past
// the bytes to replay.
func (c *replayConn) WriteTo(w io.Writer) (int64, error) {
	return io.Copy(w, struct{ io.Reader }{c.r})
}
