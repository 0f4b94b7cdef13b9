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
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// What this file adds to the proxy, as Envoy's TLS inspector and TLS
// transport socket do: reading a connection's SNI (and whether it speaks
// TLS at all) before picking its filter chain, and terminating TLS with
// the chain's certificate. Certificates come from files, inline data, or
// SDS secrets named by Istio's `kubernetes://<credentialName>`, which the
// proxy reads from its credential directory (Config.CredentialDir):
// `<dir>/<credentialName>/tls.crt` and `tls.key`, and `ca.crt` for the
// `<credentialName>-cacert` validation secret — the keys of a Kubernetes
// TLS Secret.

// inspectTimeout bounds how long a client may take to send its first
// bytes on a listener that inspects them (Envoy's listener filter
// timeout, 15s).
const inspectTimeout = 15 * time.Second

// credentials loads the certificates SDS names, caching what loaded.
type credentials struct {
	dir   string
	mu    sync.Mutex
	certs map[string]*tls.Certificate
}

func newCredentials(dir string) *credentials {
	return &credentials{dir: dir, certs: map[string]*tls.Certificate{}}
}

// certificate resolves an SDS secret name; Istio's `file-cert:<cert>~<key>`
// names files directly.
func (c *credentials) certificate(name string) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cert, ok := c.certs[name]; ok {
		return cert, nil
	}
	var certFile, keyFile string
	if files, ok := strings.CutPrefix(name, "file-cert:"); ok {
		certFile, keyFile, _ = strings.Cut(files, "~")
	} else {
		if c.dir == "" {
			return nil, fmt.Errorf("secret %q: no credential directory configured", name)
		}
		base := strings.TrimPrefix(name, "kubernetes://")
		if strings.ContainsAny(base, "/\\") || base == "" || base == "." || base == ".." {
			return nil, fmt.Errorf("secret %q: not a credential name", name)
		}
		certFile, keyFile = filepath.Join(c.dir, base, "tls.crt"), filepath.Join(c.dir, base, "tls.key")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("secret %q: %w", name, err)
	}
	c.certs[name] = &cert
	return &cert, nil
}

// caPool resolves a validation context secret (`<credentialName>-cacert`
// reads `ca.crt` of the credential).
func (c *credentials) caPool(name string) (*x509.CertPool, error) {
	base := strings.TrimSuffix(strings.TrimPrefix(name, "kubernetes://"), "-cacert")
	if c.dir == "" || strings.ContainsAny(base, "/\\") || base == "" || base == "." || base == ".." {
		return nil, fmt.Errorf("validation secret %q: no credential directory or bad name", name)
	}
	return loadPool(&corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: filepath.Join(c.dir, base, "ca.crt")}})
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

// serverTLS builds the tls.Config of a DownstreamTlsContext. Certificates
// are loaded at the first handshake (an SDS secret may arrive after the
// listener, as with Envoy's warming), so a missing one fails handshakes,
// not the configuration. Only HTTP/1.1 is offered by ALPN: the proxy
// serves HTTP/2 in cleartext only.
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
		if p == "http/1.1" {
			cfg.NextProtos = []string{"http/1.1"}
		}
	}
	var static []tls.Certificate
	for _, tc := range ctx.GetTlsCertificates() {
		chain, err := readSource(tc.GetCertificateChain())
		if err != nil {
			return nil, fmt.Errorf("certificate chain: %w", err)
		}
		key, err := readSource(tc.GetPrivateKey())
		if err != nil {
			return nil, fmt.Errorf("private key: %w", err)
		}
		cert, err := tls.X509KeyPair(chain, key)
		if err != nil {
			return nil, fmt.Errorf("certificate: %w", err)
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
		var pool *x509.CertPool
		var err error
		switch {
		case ctx.GetValidationContext() != nil:
			pool, err = loadPool(ctx.GetValidationContext().GetTrustedCa())
		case ctx.GetValidationContextSdsSecretConfig() != nil:
			pool, err = creds.caPool(ctx.GetValidationContextSdsSecretConfig().GetName())
		default:
			err = errors.New("client certificates required without a validation context")
		}
		if err != nil {
			// Verification cannot succeed: every handshake fails, which is
			// what Envoy's unwarmed listener amounts to for clients.
			pool = x509.NewCertPool()
		}
		cfg.ClientCAs = pool
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
	c.SetReadDeadline(time.Now().Add(inspectTimeout))
	defer c.SetReadDeadline(time.Time{})
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
		srv.Handshake()
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
