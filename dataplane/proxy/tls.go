package proxy

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/meshlab/meshlab/dataplane/fieldcheck"
	"github.com/meshlab/meshlab/dataplane/upstream"
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

// credentials resolves SDS secret names: "default" and "ROOTCA" through
// the proxy's Identity (Istio's agent serves those two, never istiod), any
// other name against the runtime being served. It is the clusters'
// upstream.Secrets.
type credentials struct {
	rt *atomic.Pointer[runtime]
	id Identity
}

// The SDS names of the workload's certificate and of the mesh's roots.
const (
	sdsDefault = "default"
	sdsRoots   = "ROOTCA"
)

var errNoIdentity = errors.New("the proxy has no workload identity (Identity is nil)")

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
			cert, err := upstream.LoadCertificate(src.GetTlsCertificate())
			if err != nil {
				errs = append(errs, fmt.Errorf("secret %q: %w", name, err))
				continue
			}
			s.cert = &cert
		case src.GetValidationContext() != nil:
			pool, err := upstream.LoadPool(src.GetValidationContext().GetTrustedCa())
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

// Certificate resolves an SDS certificate secret name; Istio's
// `file-cert:<cert>~<key>` names files directly.
func (c *credentials) Certificate(name string) (*tls.Certificate, error) {
	if name == sdsDefault {
		if c.id == nil {
			return nil, fmt.Errorf("secret %q: %w", name, errNoIdentity)
		}
		cert, err := c.id.Certificate()
		if err != nil {
			return nil, fmt.Errorf("secret %q: %w", name, err)
		}
		return cert, nil
	}
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

// Roots resolves a validation context secret: "ROOTCA", Istio's
// `file-root:<file>`, or `kubernetes://<credentialName>-cacert`.
func (c *credentials) Roots(name string) (*x509.CertPool, error) {
	if name == sdsRoots {
		if c.id == nil {
			return nil, fmt.Errorf("validation secret %q: %w", name, errNoIdentity)
		}
		pool, err := c.id.Roots()
		if err != nil {
			return nil, fmt.Errorf("validation secret %q: %w", name, err)
		}
		return pool, nil
	}
	if file, ok := strings.CutPrefix(name, "file-root:"); ok {
		pool, err := upstream.LoadPool(&corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: file}})
		if err != nil {
			return nil, fmt.Errorf("validation secret %q: %w", name, err)
		}
		return pool, nil
	}
	if s := c.rt.Load().secrets[name]; s != nil && s.pool != nil {
		return s.pool, nil
	}
	return nil, fmt.Errorf("validation secret %q: not received (yet)", name)
}

// serverTLS is a filter chain's compiled DownstreamTlsContext.
type serverTLS struct {
	config *tls.Config
	// cert resolves the certificate the chain presents now (the local
	// identity of its connections).
	cert func() (*tls.Certificate, error)
	// validation checks client certificates; nil: any is accepted.
	validation *upstream.Validation
}

// compileServerTLS builds the tls.Config of a DownstreamTlsContext. SDS
// secrets are looked up at each handshake (a secret may arrive after the
// listener, as with Envoy's warming, and may be rotated), so a missing
// one fails handshakes, not the configuration. http: the chain's terminal
// filter is an HTTP connection manager, which speaks only h2 and
// http/1.1 of the protocols ALPN may offer.
func compileServerTLS(dtc *tlsv3.DownstreamTlsContext, creds *credentials, http bool, stats *upstream.TLSStats) (*serverTLS, error) {
	if err := fieldcheck.Only(dtc, "common_tls_context", "require_client_certificate"); err != nil {
		return nil, err
	}
	ctx := dtc.GetCommonTlsContext()
	cfg, err := upstream.CommonConfig(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range ctx.GetAlpnProtocols() {
		if !http || p == "h2" || p == "http/1.1" {
			cfg.NextProtos = append(cfg.NextProtos, p)
		}
	}
	static, sds, err := upstream.Certificates(ctx)
	if err != nil {
		return nil, err
	}
	if len(static) == 0 && sds == "" {
		return nil, errors.New("downstream TLS context without certificates")
	}
	st := &serverTLS{config: cfg}
	st.cert = func() (*tls.Certificate, error) {
		if len(static) > 0 {
			return &static[0], nil
		}
		return creds.Certificate(sds)
	}
	cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return st.cert() }
	v, err := upstream.CompileValidation(ctx, creds)
	if err != nil {
		if vc := ctx.GetValidationContext(); vc == nil || vc.GetTrustedCa() == nil {
			return nil, err
		}
		// A CA file that cannot be read: every client certificate is
		// refused, which is what Envoy's unwarmed listener amounts to.
		v = nil
		cfg.ClientAuth = tls.RequireAnyClientCert
		cfg.VerifyConnection = func(tls.ConnectionState) error { return fmt.Errorf("trusted CA: %w", err) }
	}
	st.validation = v
	switch {
	case cfg.VerifyConnection != nil:
	case dtc.GetRequireClientCertificate().GetValue():
		// Verified by the proxy (VerifyConnection, on resumed sessions
		// too), against the roots of the moment: rotated roots apply to
		// the next handshake.
		cfg.ClientAuth = tls.RequireAnyClientCert
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if v == nil {
				return errors.New("client certificate required, but no validation context to verify it")
			}
			return v.Verify(cs.PeerCertificates, stats)
		}
	case v != nil:
		// A validation context without require_client_certificate: a
		// certificate is asked for and, if sent, verified.
		cfg.ClientAuth = tls.RequestClientCert
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return nil
			}
			return v.Verify(cs.PeerCertificates, stats)
		}
	}
	// Envoy (BoringSSL) goes on without ALPN when the client offers none
	// of the server's protocols; Go would refuse the handshake.
	noALPN := cfg.Clone()
	noALPN.NextProtos = nil
	protos := cfg.NextProtos
	base := cfg
	var served atomic.Pointer[tls.Certificate]
	cfg.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		// A rotated certificate starts new sessions, as Envoy's new TLS
		// context after an SDS update does: tickets issued under the old
		// one no longer resume.
		if cert, err := st.cert(); err == nil && served.Swap(cert) != cert {
			var key [32]byte
			if _, err := rand.Read(key[:]); err == nil {
				base.SetSessionTicketKeys([][32]byte{key})
				noALPN.SetSessionTicketKeys([][32]byte{key})
			}
		}
		if len(protos) == 0 || len(h.SupportedProtos) == 0 {
			return nil, nil
		}
		for _, p := range h.SupportedProtos {
			for _, q := range protos {
				if p == q {
					return nil, nil
				}
			}
		}
		return noALPN, nil
	}
	return st, nil
}

// inspect reads a connection's first bytes as Envoy's TLS inspector does:
// whether they are a TLS ClientHello and, if so, its SNI. The returned
// conn replays what was read.
//
// With sniffHTTP it also does what Envoy's http_inspector does for
// plaintext: the application protocol is "http/1.0", "http/1.1" or "h2c"
// when the first bytes are such a request, none otherwise. A client that
// sends nothing within the listener filter timeout is passed on with what
// is known, as Istio's continue_on_listener_filters_timeout has it.
func inspect(c *net.TCPConn, sniffHTTP bool) (hello helloInfo, replay net.Conn, err error) {
	// The deadline is what bounds a client that sends nothing.
	if err := c.SetReadDeadline(time.Now().Add(inspectTimeout)); err != nil {
		return hello, nil, err
	}
	defer func() { _ = c.SetReadDeadline(time.Time{}) }() // fails only if c is closed
	var rec recorder
	rec.r = c
	// A record header first: a handshake record (22) of TLS 1.x.
	var hdr [3]byte
	if _, err := io.ReadFull(&rec, hdr[:1]); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return hello, c, nil
		}
		return hello, nil, err
	}
	if hdr[0] == 22 {
		// Let crypto/tls parse the ClientHello from the recorded stream,
		// stopping it right after.
		errStop := errors.New("stop")
		srv := tls.Server(readOnlyConn{Conn: c, r: io.MultiReader(bytes.NewReader(rec.buf.Bytes()), &rec)}, &tls.Config{
			GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
				hello.sni, hello.isTLS = h.ServerName, true
				// SupportedProtos aliases the hello's buffer.
				hello.alpn = append([]string(nil), h.SupportedProtos...)
				return nil, errStop
			},
		})
		// It always fails: errStop ends it at the hello, and a hello
		// crypto/tls cannot parse is simply not TLS.
		_ = srv.Handshake()
	} else if sniffHTTP {
		if proto := sniffHTTPProtocol(&rec); proto != "" {
			hello.alpn = []string{proto}
		}
	}
	return hello, &replayConn{TCPConn: c, r: io.MultiReader(bytes.NewReader(rec.buf.Bytes()), c)}, nil
}

// maxSniff is how much the HTTP inspector reads at most before giving up
// (Envoy's http_inspector: 64 KiB).
const maxSniff = 64 << 10

// sniffHTTPProtocol reads until the recorded bytes tell an HTTP/1.x
// request line or the h2c preface from anything else.
func sniffHTTPProtocol(rec *recorder) string {
	var tmp [2048]byte
	for {
		proto, more := httpProtocol(rec.buf.Bytes())
		if !more || rec.buf.Len() >= maxSniff {
			return proto
		}
		if _, err := rec.Read(tmp[:]); err != nil {
			return ""
		}
	}
}

const h2cPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// httpProtocol is the protocol b starts, or more when b is too short to
// tell.
func httpProtocol(b []byte) (proto string, more bool) {
	if n := min(len(b), len(h2cPreface)); string(b[:n]) == h2cPreface[:n] {
		if n < len(h2cPreface) {
			return "", true
		}
		return "h2c", false
	}
	// A method is a token: letters (Envoy's parser takes the uppercase
	// ones), then a space.
	i := 0
	for ; i < len(b) && b[i] != ' '; i++ {
		if c := b[i]; (c < 'A' || c > 'Z') && c != '-' && c != '_' {
			return "", false
		}
	}
	if i == len(b) {
		return "", true
	}
	if i == 0 {
		return "", false
	}
	end := bytes.IndexByte(b, '\n')
	if end < 0 {
		return "", true
	}
	line := bytes.TrimSuffix(b[:end], []byte("\r"))
	switch {
	case bytes.HasSuffix(line, []byte(" HTTP/1.1")):
		return "http/1.1", false
	case bytes.HasSuffix(line, []byte(" HTTP/1.0")):
		return "http/1.0", false
	}
	return "", false
}

// helloInfo is what the TLS inspector learnt of a connection: whether it
// starts with a TLS ClientHello, and the hello's SNI and ALPN.
type helloInfo struct {
	sni   string
	isTLS bool
	alpn  []string
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
