package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The plaintext HTTP/1.x connections of HTTP filter chains are served here,
// one goroutine per connection that reads a request, runs the handler and
// writes the response. net/http's server also starts a background read
// per request (to notice a client that leaves) and stops it when the
// handler returns: two goroutine wake-ups per request, a large share of
// what a sidecar adds at 1,000 rps. Envoy does not notice a client that
// leaves while its request is in flight either, until it writes. TLS and
// HTTP/2 (a connection that opens with the HTTP/2 preface) stay with
// net/http's server.

// h1MaxDrain is how much of a request body the handler left unread is
// read and dropped to keep the connection; a longer one closes it.
const h1MaxDrain = 256 << 10

// h1Hold is how much of a response without Content-Length is held before
// its head is written: a response that ends within it gets a
// Content-Length, as net/http does, a longer one is chunked.
const h1Hold = 2048

// h1Server tracks the connections it serves, for shutdown.
type h1Server struct {
	p     *Proxy
	mu    sync.Mutex
	conns map[*h1Conn]struct{}
	// draining: responses say Connection: close and end their connection,
	// idle connections close. A sidecar's outbound listeners stay open
	// while it drains, so new connections are still served, one request
	// each, until stopped.
	draining atomic.Bool
	stopped  bool // guarded by mu: new connections are refused
	wg       sync.WaitGroup
}

type h1Conn struct {
	net.Conn
	remote string // RemoteAddr().String(), once for every request
	lim    h1Limits
	br     *bufio.Reader
	bw     *bufio.Writer
	head   []byte // the request head being read, reused
	idle   atomic.Bool
	owned  bool // handed to net/http or hijacked: not ours to close
	// bodyFail is the status a request whose body broke its framing (400)
	// or stalled past the stream idle timeout (408) is answered with, if
	// its response has not started, as Envoy's codec answers.
	bodyFail atomic.Int32
	// draining is the server's: a response written while it drains
	// closes the connection and says so.
	draining *atomic.Bool
}

// setReadDeadline bounds the next reads by d from now; 0: no bound.
func (c *h1Conn) setReadDeadline(d time.Duration) {
	var t time.Time
	if d > 0 {
		t = time.Now().Add(d)
	}
	// It fails only on a closed connection, which the next read reports.
	_ = c.SetReadDeadline(t)
}

// serve runs c until the client closes it, a response closes it, or the
// server drains. hc carries the connection's filter chain to the handler.
func (s *h1Server) serve(hc *httpConn) {
	c := &h1Conn{Conn: hc, remote: hc.RemoteAddr().String(), lim: hc.info.chain.http.limits(), draining: &s.draining}
	c.br = bufio.NewReaderSize(hc, 4<<10)
	c.bw = bufio.NewWriterSize(hc, 4<<10)
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		_ = hc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.wg.Done()
		if !c.owned {
			_ = hc.Close() // the client's side of it is already done or gone
		}
	}()
	defer func() {
		if v := recover(); v != nil && v != http.ErrAbortHandler {
			s.p.log.Error("http handler panic", "panic", v)
		}
	}()

	// HTTP/2 with prior knowledge: net/http's server takes the connection,
	// its first bytes read again.
	// The first bytes wait under the idle timeout, the rest of the
	// preface under a request head's.
	c.setReadDeadline(c.lim.idle)
	if _, err := c.br.Peek(1); err != nil {
		return
	}
	c.setReadDeadline(c.lim.headTimeout())
	if b, err := c.br.Peek(4); err == nil && string(b) == "PRI " {
		buf, _ := c.br.Peek(c.br.Buffered())
		rc := &httpConn{Conn: &prefixConn{Conn: hc.Conn, r: io.MultiReader(bytes.NewReader(bytes.Clone(buf)), hc.Conn)}, info: hc.info}
		if s.p.httpLn.deliver(rc) {
			c.owned = true
		}
		return
	}

	// Requests share their connection's context: ended when the
	// connection is, which a request in flight does not notice (see above).
	// A context per request would cost a cancelable context and the
	// registrations on it of every request.
	// Derived from the proxy's context: requests still in flight when the
	// drain ends are cancelled, upstream calls included.
	base, cancel := context.WithCancel(connContext(s.p.ctx, hc))
	defer cancel()
	for first := true; ; first = false {
		c.idle.Store(true)
		// While the server drains, a connection ends after its response;
		// one accepted meanwhile (a sidecar's outbound listener stays
		// open) is served one request.
		if !first && s.draining.Load() {
			return
		}
		// Between requests the connection idle timeout applies; from the
		// first byte of a request, the request headers timeout and the
		// stream idle timeout, which Envoy arms when the stream starts and
		// which header bytes do not reset.
		c.setReadDeadline(c.lim.idle)
		if _, err := c.br.Peek(1); err != nil {
			return
		}
		c.idle.Store(false)
		c.setReadDeadline(c.lim.headTimeout())
		req, err := readRequest(c.br, &c.head, c.lim.maxHead, c.lim.maxHeaders)
		if err != nil {
			s.badRequest(c, err)
			return
		}
		if c.lim.streamIdle == 0 {
			// The body's reads set their own deadline otherwise.
			c.setReadDeadline(0)
		}
		if !s.exchange(base, c, req) {
			return
		}
	}
}

// badRequest answers a request that could not be read with Envoy's
// codec's status, unless the client just went away.
func (s *h1Server) badRequest(c *h1Conn, err error) {
	var he *h1Error
	var ne net.Error
	code, text := http.StatusBadRequest, ""
	switch {
	case errors.As(err, &he):
		code = he.code
	case errors.As(err, &ne) && ne.Timeout():
		code, text = http.StatusRequestTimeout, "request header timeout"
		if c.lim.requestHeaders == 0 || (c.lim.streamIdle > 0 && c.lim.streamIdle < c.lim.requestHeaders) {
			text = "stream timeout"
		}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return
	}
	if text == "" {
		text = http.StatusText(code)
	}
	fmt.Fprintf(c.bw, "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		code, http.StatusText(code), len(text), text)
	if err := c.bw.Flush(); err != nil {
		return // the client is gone: no answer to protect
	}
	// Closing with unread bytes would reset the connection, and the client
	// might lose the answer: end our side, read what the client still
	// sends for a moment, as net/http does. Each step is best effort; the
	// deadline bounds the read, so without it there is no read.
	if hc, ok := c.Conn.(*httpConn); ok {
		if cw, ok := hc.Conn.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
			if c.SetReadDeadline(time.Now().Add(500*time.Millisecond)) == nil {
				_, _ = io.Copy(io.Discard, hc.Conn)
			}
		}
	}
}

// exchange runs one request and writes its response; it reports whether
// the connection takes another request.
func (s *h1Server) exchange(base context.Context, c *h1Conn, req *http.Request) bool {
	req = req.WithContext(base)
	req.RemoteAddr = c.remote
	var body *h1Body
	if req.ContentLength != 0 {
		body = &h1Body{c: c, chunked: req.ContentLength < 0, remain: max(req.ContentLength, 0)}
		req.Body = body
	} else {
		req.Body = http.NoBody
	}
	w := &h1Response{c: c, req: req, contentLength: -1}
	if e := req.Header.Get("Expect"); e != "" && req.ProtoAtLeast(1, 1) {
		if !strings.EqualFold(e, "100-continue") {
			// As net/http answers an expectation it does not know.
			w.Header()["Connection"] = []string{"close"}
			localReply(w, http.StatusExpectationFailed, "")
			w.finish()
			return false
		}
		if req.ContentLength != 0 {
			req.Body = &continueReader{w: w, r: req.Body}
		}
	}
	s.p.ServeHTTP(w, req)
	if w.hijacked {
		c.owned = true
		return false
	}
	w.finish()
	if w.err != nil || w.close || s.draining.Load() || c.bodyFail.Load() != 0 {
		return false
	}
	// What the handler left of the body is read and dropped, if short.
	if cr, ok := req.Body.(*continueReader); ok && !cr.sent.Load() {
		return false // the client waits for a 100 that will not come
	}
	// The handler may have replaced req.Body (buffered for retries); the
	// connection's body is what framing depends on.
	return body == nil || body.drain(h1MaxDrain)
}

// shutdown stops taking requests: idle connections close now, the others
// after the response in flight.
func (s *h1Server) shutdown() {
	s.mu.Lock()
	s.draining.Store(true)
	for c := range s.conns {
		if c.idle.Load() {
			// Wakes the idle read; it fails only if c is already closed.
			_ = c.SetReadDeadline(time.Unix(1, 0))
		}
	}
	s.mu.Unlock()
}

// active is the number of connections being served.
func (s *h1Server) active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// closeAll refuses new connections and closes every connection, in flight
// or not.
func (s *h1Server) closeAll() {
	s.mu.Lock()
	s.stopped = true
	for c := range s.conns {
		_ = c.Close() // forced: in-flight data is abandoned by design
	}
	s.mu.Unlock()
}

// prefixConn is a connection whose first bytes were already read.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// continueReader sends 100 Continue when the handler first reads the body
// of a request that asked for it.
// The body may be read on another goroutine than the handler's (net/http's
// transport writes request bodies on its own), so the 100 and the
// response head are written under the response's lock.
type continueReader struct {
	w    *h1Response
	r    io.ReadCloser
	sent atomic.Bool
}

func (cr *continueReader) Read(b []byte) (int, error) {
	if cr.sent.CompareAndSwap(false, true) {
		w := cr.w
		w.mu.Lock()
		var err error
		if !w.committed {
			w.c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			err = w.c.bw.Flush()
		}
		w.mu.Unlock()
		if err != nil {
			return 0, err
		}
	}
	return cr.r.Read(b)
}

func (cr *continueReader) Close() error { return cr.r.Close() }

// h1Response is the http.ResponseWriter of h1Server.
type h1Response struct {
	// mu orders the head (and interim responses) with a 100 Continue
	// written from another goroutine; once the head is out no 100 is
	// written, so the body needs no lock.
	mu            sync.Mutex
	c             *h1Conn
	req           *http.Request
	header        http.Header
	status        int
	committed     bool // the head is written
	chunked       bool
	close         bool // the connection ends with this response
	noBody        bool
	contentLength int64 // -1: not given
	written       int64
	hold          []byte
	hijacked      bool
	replaced      bool // by a local reply for a broken request body
	err           error
}

// Header is allocated when first asked for: a proxied response adopts the
// upstream's instead (adoptHeader).
func (w *h1Response) Header() http.Header {
	if w.header == nil {
		w.header = make(http.Header, 8)
	}
	return w.header
}

// headerAdopter is a ResponseWriter that can take an upstream response's
// header map whole rather than copy it key by key.
type headerAdopter interface {
	adoptHeader(resp *http.Response) bool
}

// adoptHeader takes resp's header map as the response's, if nothing was
// set on the response yet. A Content-Type that may be text/event-stream
// stays on resp too, where ReverseProxy looks for it to flush at once.
// closeAfter makes this response the connection's last (Envoy drains a
// connection whose filter chain is gone).
func (w *h1Response) closeAfter() {
	w.mu.Lock()
	w.close = true
	w.mu.Unlock()
}

func (w *h1Response) adoptHeader(resp *http.Response) bool {
	if len(w.header) != 0 || w.status != 0 {
		return false
	}
	w.header = resp.Header
	resp.Header = http.Header{}
	if ct, ok := w.header["Content-Type"]; ok && mayBeEventStream(ct) {
		resp.Header["Content-Type"] = ct
		delete(w.header, "Content-Type")
	}
	return true
}

func (w *h1Response) WriteHeader(code int) {
	if w.status != 0 || w.hijacked {
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		// Interim responses go out at once; the final one follows.
		w.mu.Lock()
		defer w.mu.Unlock()
		// bw's error is sticky: the final response's flush reports it.
		fmt.Fprintf(w.c.bw, "HTTP/1.1 %d %s\r\n", code, http.StatusText(code))
		_ = w.header.Write(w.c.bw)
		w.c.bw.WriteString("\r\n")
		_ = w.c.bw.Flush()
		return
	}
	if f := w.c.bodyFail.Load(); f != 0 {
		w.replace(int(f))
		return
	}
	w.status = code
	if v := w.header.Get("Content-Length"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			w.contentLength = n
		} else {
			delete(w.header, "Content-Length")
		}
	}
	w.noBody = w.req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
}

// replace answers, instead of the handler's response, the request whose
// body broke (h1Conn.bodyFail); what the handler writes is dropped.
func (w *h1Response) replace(code int) {
	text := http.StatusText(code)
	if code == http.StatusRequestTimeout {
		text = "stream timeout"
	}
	w.status, w.replaced, w.close = code, true, true
	w.header = http.Header{"Content-Type": {"text/plain"}, "Content-Length": {strconv.Itoa(len(text))}}
	w.contentLength, w.written = int64(len(text)), int64(len(text))
	w.hold = append(w.hold[:0], text...)
}

func (w *h1Response) Write(b []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.replaced {
		return len(b), nil
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.noBody {
		if w.req.Method == http.MethodHead {
			return len(b), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if w.contentLength >= 0 && w.written+int64(len(b)) > w.contentLength {
		return 0, http.ErrContentLength
	}
	if !w.committed {
		if w.contentLength < 0 && len(w.hold)+len(b) <= h1Hold {
			w.hold = append(w.hold, b...)
			w.written += int64(len(b))
			return len(b), nil
		}
		w.commit(false)
	}
	n, err := w.body(b)
	w.written += int64(n)
	return n, err
}

// body writes b as the response's framing says.
func (w *h1Response) body(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if w.chunked {
		fmt.Fprintf(w.c.bw, "%x\r\n", len(b))
	}
	n, err := w.c.bw.Write(b)
	if err == nil && w.chunked {
		_, err = w.c.bw.WriteString("\r\n")
	}
	if err != nil {
		w.err = err
	}
	return n, err
}

// commit writes the head. final: the handler is done, so a response
// without Content-Length that fit in the hold gets one.
func (w *h1Response) commit(final bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.committed {
		return
	}
	w.committed = true
	h := w.Header()
	switch {
	case w.noBody || w.status == http.StatusSwitchingProtocols:
	case w.contentLength >= 0:
	case final:
		w.contentLength = int64(len(w.hold))
		h["Content-Length"] = []string{strconv.Itoa(len(w.hold))}
	case w.req.ProtoAtLeast(1, 1):
		w.chunked = true
		h["Transfer-Encoding"] = []string{"chunked"}
	default:
		w.close = true // HTTP/1.0: the body ends with the connection
	}
	if w.req.Close || w.c.draining.Load() || hasToken(h, "Connection", "close") {
		w.close = true
	}
	if w.close {
		h["Connection"] = []string{"close"}
	} else if !w.req.ProtoAtLeast(1, 1) {
		h["Connection"] = []string{"keep-alive"}
	}
	if _, ok := h["Date"]; !ok {
		h["Date"] = []string{time.Now().UTC().Format(http.TimeFormat)}
	}
	bw := w.c.bw
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(strconv.Itoa(w.status))
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(w.status))
	bw.WriteString("\r\n")
	// Trailers are written after the body.
	for k, vs := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		for _, v := range vs {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(headerValue(v))
			bw.WriteString("\r\n")
		}
	}
	bw.WriteString("\r\n")
	if len(w.hold) > 0 {
		hold := w.hold
		w.hold = nil
		_, _ = w.body(hold) // body keeps its error in w.err
	}
}

// headerValue keeps a value on its line.
func headerValue(v string) string {
	if strings.ContainsAny(v, "\r\n") {
		return strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
	}
	return v
}

func hasToken(h http.Header, key, token string) bool {
	for _, v := range h[key] {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// Flush sends what is written so far (server-sent events, streaming).
func (w *h1Response) Flush() {
	_ = w.FlushError() // kept in w.err, which the next Write returns
}

func (w *h1Response) FlushError() error {
	if w.hijacked {
		return http.ErrHijacked
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	w.commit(false)
	if err := w.c.bw.Flush(); err != nil {
		w.err = err
		return err
	}
	return w.err
}

// Hijack hands the connection over (protocol upgrades).
func (w *h1Response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	// bw's error is sticky and bw goes to the hijacker, whose next flush
	// sees it; a closed connection fails its next read too.
	if w.committed {
		_ = w.c.bw.Flush()
	}
	w.hijacked = true
	_ = w.c.SetReadDeadline(time.Time{})
	return w.c.Conn, bufio.NewReadWriter(w.c.br, w.c.bw), nil
}

// finish ends the response: the head if not yet written, the last chunk
// and trailers, then everything out.
func (w *h1Response) finish() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	w.commit(true)
	if w.chunked {
		w.c.bw.WriteString("0\r\n")
		for _, k := range w.trailers() {
			for _, v := range w.header[k] {
				w.c.bw.WriteString(strings.TrimPrefix(k, http.TrailerPrefix))
				w.c.bw.WriteString(": ")
				w.c.bw.WriteString(headerValue(v))
				w.c.bw.WriteString("\r\n")
			}
		}
		w.c.bw.WriteString("\r\n")
	}
	if w.contentLength >= 0 && !w.noBody && w.written < w.contentLength {
		w.close = true // the client would wait for the rest
	}
	if err := w.c.bw.Flush(); err != nil && w.err == nil {
		w.err = err
	}
}

// trailers are the header keys declared in Trailer and those set with
// http.TrailerPrefix, as net/http sends them.
func (w *h1Response) trailers() []string {
	var keys []string
	for _, v := range w.header["Trailer"] {
		for _, k := range strings.Split(v, ",") {
			if k = http.CanonicalHeaderKey(strings.TrimSpace(k)); k != "" {
				keys = append(keys, k)
			}
		}
	}
	for k := range w.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			keys = append(keys, k)
		}
	}
	return keys
}
