package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The HTTP/1.1 path writes a request and reads its response on the
// caller's goroutine, over connections pooled per endpoint. net/http's
// Transport hands every request to a connection's write goroutine and
// takes the response back from its read goroutine: two goroutine wake-ups
// each way, which profiles put at a large share of a sidecar's added
// latency and CPU. Requests the synchronous path cannot serve as well
// (upgrades, Expect: 100-continue, large or unknown-length bodies, which
// the server may answer before reading) go to net/http's Transport.

// h1MaxBody is the largest request body written before the response is
// read: it fits in the sockets' buffers, so a server that answers early
// cannot leave the write blocked.
const h1MaxBody = 64 << 10

// Envoy's limits on an HTTP/1 upstream response: its HTTP/1 client codec
// reads at most 80 KiB of head (MAX_RESPONSE_HEADERS_KB, http_parser's
// own limit; max_response_headers_kb changes it) and 100 headers
// (max_headers_count of the cluster's common_http_protocol_options).
// Interim responses count toward the same 80 KiB, as net/http's Transport
// counts those it does not hand to the caller, and at most h1Max1xx of
// them are read: Envoy documents no count, but only one 100 Continue means
// anything, so a handful is generous.
const (
	h1MaxHead    = 80 << 10
	h2MaxHead    = 60 << 10
	h1MaxHeaders = 100
	h1Max1xx     = MaxInterimResponses
)

// MaxInterimResponses bounds the interim (1xx) responses of one request.
// The synchronous path reads and drops them; on net/http's transports,
// which hand each to the caller's httptrace hook and bound none then, the
// proxy stops the request past it.
const MaxInterimResponses = 5

var errHeadTooLarge = fmt.Errorf("%w: response head over %d KiB", ErrProtocol, h1MaxHead>>10)

// h1MaxIdle bounds the idle connections kept per endpoint, as the
// Transport's MaxIdleConnsPerHost does.
const h1MaxIdle = 256

// h1Eligible reports whether req can take the synchronous path.
func h1Eligible(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody && (req.ContentLength <= 0 || req.ContentLength > h1MaxBody) {
		return false
	}
	if _, ok := req.Header["Upgrade"]; ok {
		return false
	}
	if _, ok := req.Header["Expect"]; ok {
		return false
	}
	return req.URL.Scheme == "http"
}

// h1Pool holds a cluster's idle HTTP/1.1 connections, most recently used
// last, so that a burst's spare connections age out at the front.
type h1Pool struct {
	t      *Transport
	mu     sync.Mutex
	idle   map[string][]*h1Conn
	closed bool
	// swept is when put last dropped the expired connections of every
	// endpoint, not only its own: endpoints that are gone, or original
	// destinations not used again, would otherwise keep theirs.
	swept time.Time
}

// h1SweepEvery is how often put looks at every endpoint's idle list.
const h1SweepEvery = time.Minute

type h1Conn struct {
	cc *countedConn
	// sock is the transport socket it was made with; a connection whose
	// endpoint has since changed sockets is not reused.
	sock   *ClientTLS
	addr   string
	r      countingReader
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
	// raw and probe look at the socket of an idle connection without
	// blocking (quiet); both are set once, so that a reuse allocates
	// nothing. raw is nil when the connection has no file descriptor.
	raw      syscall.RawConn
	probe    func(fd uintptr) bool
	one      [1]byte
	readable bool
}

// countingReader counts what the server sent, so that a failure on a
// reused connection that got nothing back can be told from one that did,
// and bounds what a response head may read (left).
type countingReader struct {
	c    net.Conn
	n    int64
	left int64
}

func (r *countingReader) Read(b []byte) (int, error) {
	if r.left <= 0 {
		return 0, errHeadTooLarge
	}
	if int64(len(b)) > r.left {
		b = b[:r.left]
	}
	n, err := r.c.Read(b)
	r.n += int64(n)
	r.left -= int64(n)
	return n, err
}

func newH1Conn(cc *countedConn, addr string) *h1Conn {
	c := &h1Conn{cc: cc, addr: addr}
	c.r.c, c.r.left = cc, math.MaxInt64
	c.br = bufio.NewReaderSize(&c.r, 4<<10)
	c.bw = bufio.NewWriterSize(cc, 4<<10)
	if sc, ok := cc.Conn.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw, c.probe = raw, c.probeFD
		}
	}
	return c
}

// quiet reports whether an idle connection has nothing to read. A server
// sends nothing unasked on HTTP/1.1: bytes after a response (an upstream
// that lied about a body, or one trying to answer the next client's
// request ahead of time) or its close make the connection unusable, as
// net/http's Transport decides when its idle read loop wakes up. Here the
// socket is read once without blocking instead of keeping a reader
// goroutine per idle connection.
func (c *h1Conn) quiet() bool {
	if c.br.Buffered() > 0 {
		return false
	}
	if c.raw == nil {
		return true
	}
	c.readable = true
	if err := c.raw.Read(c.probe); err != nil {
		return false
	}
	return !c.readable
}

// get takes the most recently used idle connection to addr that is still
// usable; the ones found closed, retired or idle too long are closed.
func (p *h1Pool) get(addr string) *h1Conn {
	var stale []*h1Conn
	var found *h1Conn
	p.mu.Lock()
	list := p.idle[addr]
	for len(list) > 0 {
		c := list[len(list)-1]
		list[len(list)-1] = nil
		list = list[:len(list)-1]
		if c.cc.closed.Load() || c.cc.retire.Load() || p.expired(c, time.Now()) || c.sock != p.t.cl.Socket(addr) {
			stale = append(stale, c)
			continue
		}
		found = c
		break
	}
	p.idle[addr] = list
	p.mu.Unlock()
	for _, c := range stale {
		closeConn(c.cc)
	}
	return found
}

// take is get, with the connection checked for stray bytes outside the
// pool's lock.
func (p *h1Pool) take(addr string) *h1Conn {
	for {
		c := p.get(addr)
		if c == nil || c.quiet() {
			return c
		}
		closeConn(c.cc)
	}
}

// closeConn closes a connection the pool gives up on. Its error says
// nothing the caller can act on: the connection is dropped either way.
func closeConn(c io.Closer) { _ = c.Close() }

func (p *h1Pool) expired(c *h1Conn, now time.Time) bool {
	return p.t.base.IdleConnTimeout > 0 && now.Sub(c.idleAt) > p.t.base.IdleConnTimeout
}

// put returns c to the pool, dropping the connections to its endpoint
// that have been idle too long; it closes c if the pool is full or closed.
func (p *h1Pool) put(c *h1Conn) {
	now := time.Now()
	c.idleAt = now
	var drop []*h1Conn
	p.mu.Lock()
	list := p.idle[c.addr]
	n := 0
	for n < len(list) && p.expired(list[n], now) {
		n++
	}
	if n > 0 {
		drop = append(drop, list[:n]...)
		list = append(list[:0], list[n:]...)
	}
	if p.closed || len(list) >= h1MaxIdle {
		drop = append(drop, c)
	} else {
		list = append(list, c)
	}
	p.idle[c.addr] = list
	if now.Sub(p.swept) >= h1SweepEvery {
		p.swept = now
		for addr, l := range p.idle {
			kept := l[:0]
			for _, ic := range l {
				if p.expired(ic, now) {
					drop = append(drop, ic)
				} else {
					kept = append(kept, ic)
				}
			}
			if len(kept) == 0 {
				delete(p.idle, addr)
			} else {
				p.idle[addr] = kept
			}
		}
	}
	p.mu.Unlock()
	for _, d := range drop {
		closeConn(d.cc)
	}
}

// forget closes the idle connections to an endpoint that left the cluster.
func (p *h1Pool) forget(addr string) {
	p.mu.Lock()
	list := p.idle[addr]
	delete(p.idle, addr)
	p.mu.Unlock()
	for _, c := range list {
		closeConn(c.cc)
	}
}

// close closes every idle connection, and each connection in use once its
// response is read: the cluster is gone.
func (p *h1Pool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle = map[string][]*h1Conn{}
	p.closed = true
	p.mu.Unlock()
	for _, list := range idle {
		for _, c := range list {
			closeConn(c.cc)
		}
	}
}

// roundTrip sends req on a pooled or new connection to req.URL.Host. A
// reused connection that fails before the server sent anything was most
// likely closed by the server while idle; the request is sent again on a
// new connection if its body can be sent again, as net/http does.
func (p *h1Pool) roundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	addr := req.URL.Host
	for {
		c := p.take(addr)
		reused := c != nil
		if c == nil {
			nc, err := p.t.cl.dialCounted(ctx, "tcp", addr, p.t.maxDuration, false)
			if err != nil {
				return nil, err
			}
			c = newH1Conn(nc.(*countedConn), addr)
			c.sock = p.t.cl.Socket(addr)
		}
		read := c.r.n
		resp, err := p.exchange(c, req)
		if err == nil {
			return resp, nil
		}
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		if !reused || c.r.n != read {
			return nil, err
		}
		if req.Body != nil && req.Body != http.NoBody {
			if req.GetBody == nil {
				return nil, err
			}
			b, gerr := req.GetBody()
			if gerr != nil {
				return nil, err
			}
			req.Body = b
		}
	}
}

// aLongTimeAgo is a deadline in the past: setting it unblocks a
// connection's pending reads and writes.
var aLongTimeAgo = time.Unix(1, 0)

// exchange writes req on c and reads the response head. The response's
// body owns c from then on: reading it to the end returns c to the pool,
// closing it early closes c.
func (p *h1Pool) exchange(c *h1Conn, req *http.Request) (*http.Response, error) {
	cc := c.cc
	cc.inflight.Add(1)
	if n := cc.served.Add(1); p.t.maxRequests != 0 && n >= p.t.maxRequests {
		cc.retire.Store(true)
	}
	last := cc.retire.Load()
	// SetDeadline fails only on a closed connection, which has nothing
	// left to unblock.
	stop := context.AfterFunc(req.Context(), func() { _ = cc.SetDeadline(aLongTimeAgo) })
	fail := func(err error) (*http.Response, error) {
		stop()
		cc.inflight.Add(-1)
		closeConn(cc)
		return nil, err
	}
	// The connection's last request says so (Connection: close), as
	// Envoy does when it drains a connection.
	wasClose := req.Close
	req.Close = wasClose || last
	err := req.Write(c.bw)
	req.Close = wasClose
	if err == nil {
		err = c.bw.Flush()
	}
	if err != nil {
		return fail(err)
	}
	var resp *http.Response
	c.r.left = h1MaxHead
	sent := c.r.n
	for interim := 0; ; interim++ {
		resp, err = http.ReadResponse(c.br, req)
		if err != nil {
			if c.r.n != sent && !errors.Is(err, ErrProtocol) && req.Context().Err() == nil {
				// Part of a head came, then no more of it, or it was not
				// HTTP: Envoy's codec calls both a protocol error.
				err = fmt.Errorf("%w: %w", ErrProtocol, err)
			}
			return fail(err)
		}
		if n := headerLines(resp.Header); n > h1MaxHeaders {
			closeConn(resp.Body)
			return fail(fmt.Errorf("%w: %d response headers, over %d", ErrProtocol, n, h1MaxHeaders))
		}
		// Interim responses (100 Continue, 103 Early Hints) are not
		// forwarded; 101 ends HTTP on the connection and never comes here
		// (upgrades take net/http's path).
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		closeConn(resp.Body)
		if interim == h1Max1xx {
			return fail(fmt.Errorf("%w: more than %d interim responses", ErrProtocol, h1Max1xx))
		}
	}
	c.r.left = math.MaxInt64
	resp.TLS = c.cc.tls
	keep := !resp.Close && !req.Close && !last
	b := &h1Body{p: p, c: c, body: resp.Body, stop: stop, keep: keep}
	if resp.Body == http.NoBody {
		b.finish(true)
		return resp, nil
	}
	resp.Body = b
	return resp, nil
}

// h1Body is a response body read straight off its connection.
type h1Body struct {
	p    *h1Pool
	c    *h1Conn
	body io.ReadCloser
	stop func() bool
	keep bool
	done atomic.Bool
	eof  bool
}

func (b *h1Body) Read(buf []byte) (int, error) {
	n, err := b.body.Read(buf)
	if err == io.EOF {
		b.eof = true
		b.finish(true)
	} else if err != nil {
		b.finish(false)
	}
	return n, err
}

// Close before the end closes the connection rather than reading the
// rest, which may never end.
func (b *h1Body) Close() error {
	if !b.eof {
		b.finish(false)
	}
	return b.body.Close()
}

// finish gives the connection back (whole response read, keep-alive) or
// closes it; only the first call counts.
func (b *h1Body) finish(whole bool) {
	if !b.done.CompareAndSwap(false, true) {
		return
	}
	cc := b.c.cc
	live := b.stop() // false: the request's context ended and set a deadline
	cc.inflight.Add(-1)
	if whole && live && b.keep && !cc.retire.Load() && b.c.br.Buffered() == 0 {
		b.p.put(b.c)
		return
	}
	closeConn(cc)
}

// headerLines counts a head's header lines, as Envoy's max_headers_count
// does (a repeated name counts each time).
func headerLines(h http.Header) int {
	n := 0
	for _, vs := range h {
		n += len(vs)
	}
	return n
}
