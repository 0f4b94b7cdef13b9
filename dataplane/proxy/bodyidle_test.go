package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestBodyStallNetHTTP: on the connections net/http serves (TLS with
// HTTP/1.1 or h2, and h2c), a client that stalls its request body is cut
// off by the connection manager's stream_idle_timeout, as h1Server does for
// plaintext HTTP/1 and Envoy for every codec; a body that keeps coming,
// however slowly, is not.
func TestBodyStallNetHTTP(t *testing.T) {
	// Wide enough that a loaded machine's scheduling gaps between chunks
	// (idle/4 apart) never reach it; the steady bodies still take longer
	// in all than one idle timeout.
	const idle = 800 * time.Millisecond
	dir := t.TempDir()
	_, pool := selfSigned(t, dir, "secure.example.com")
	hcm := func() *hcmv3.HttpConnectionManager {
		return &hcmv3.HttpConnectionManager{StreamIdleTimeout: durationpb.New(idle)}
	}
	ts := tlsSocket(&tlsv3.CommonTlsContext{AlpnProtocols: []string{"h2", "http/1.1"}, TlsCertificates: []*tlsv3.TlsCertificate{{
		CertificateChain: fileSource(filepath.Join(dir, "tls.crt")), PrivateKey: fileSource(filepath.Join(dir, "tls.key"))}}})
	tlsAddr := hcmProxyOn(t, hcm(), ts)
	plainAddr := hcmProxyOn(t, hcm(), nil)

	client := func(h1, h2, h2c bool) *http.Transport {
		tr := &http.Transport{Protocols: new(http.Protocols),
			TLSClientConfig: &tls.Config{ServerName: "secure.example.com", RootCAs: pool}}
		tr.Protocols.SetHTTP1(h1)
		tr.Protocols.SetHTTP2(h2)
		tr.Protocols.SetUnencryptedHTTP2(h2c)
		t.Cleanup(tr.CloseIdleConnections)
		return tr
	}
	tests := []struct {
		name  string
		url   string
		tr    *http.Transport
		proto int
		// the body's chunks, written `every` apart; then the client stalls
		// if stall, or ends the body.
		chunks []string
		every  time.Duration
		stall  bool
		// want: the status, or 0 for a 408 or a reset stream (HTTP/2 may
		// answer either); within: the answer's bound from the last chunk.
		want   int
		body   string
		within time.Duration
	}{
		{"TLS HTTP/1.1, stalled body", "https://" + tlsAddr, client(true, false, false), 1,
			[]string{"abc"}, 0, true, http.StatusRequestTimeout, "stream timeout", 3 * idle},
		{"TLS HTTP/1.1, slow body that keeps coming", "https://" + tlsAddr, client(true, false, false), 1,
			strings.Split("0123456789", ""), idle / 4, false, http.StatusOK, "0123456789", 10 * idle},
		{"TLS HTTP/2, stalled body", "https://" + tlsAddr, client(false, true, false), 2,
			[]string{"abc"}, 0, true, 0, "", 3 * idle},
		{"TLS HTTP/2, slow body that keeps coming", "https://" + tlsAddr, client(false, true, false), 2,
			strings.Split("0123456789", ""), idle / 4, false, http.StatusOK, "0123456789", 10 * idle},
		{"h2c, stalled body", "http://" + plainAddr, client(false, false, true), 2,
			[]string{"abc"}, 0, true, 0, "", 3 * idle},
		{"h2c, slow body that keeps coming", "http://" + plainAddr, client(false, false, true), 2,
			strings.Split("0123456789", ""), idle / 4, false, http.StatusOK, "0123456789", 10 * idle},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pr, pw := io.Pipe()
			t.Cleanup(func() { pw.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), 20*idle)
			defer cancel()
			// The transport waits for the body's writer: a stalled one
			// would hold RoundTrip past the context's end.
			context.AfterFunc(ctx, func() { pw.CloseWithError(ctx.Err()) })
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, tt.url+"/", pr)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = "secure.example.com"
			req.ContentLength = 10
			last := make(chan time.Time, 1)
			go func() {
				for i, c := range tt.chunks {
					if i > 0 {
						time.Sleep(tt.every)
					}
					if _, err := io.WriteString(pw, c); err != nil {
						return
					}
				}
				last <- time.Now()
				if !tt.stall {
					pw.Close()
				}
			}()
			resp, err := tt.tr.RoundTrip(req)
			var b []byte
			if err == nil {
				b, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			sent := <-last
			if took := time.Since(sent); took > tt.within {
				t.Fatalf("answered %v after the last chunk, want within %v", took, tt.within)
			}
			if tt.want == 0 && err != nil {
				return // the stream was reset
			}
			if err != nil {
				t.Fatalf("no response: %v", err)
			}
			if resp.ProtoMajor != tt.proto {
				t.Errorf("served over HTTP/%d, want HTTP/%d", resp.ProtoMajor, tt.proto)
			}
			want := tt.want
			if want == 0 {
				want = http.StatusRequestTimeout
				tt.body = "stream timeout"
			}
			if resp.StatusCode != want || string(b) != tt.body {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, b, want, tt.body)
			}
		})
	}
}
