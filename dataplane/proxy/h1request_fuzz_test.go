package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"strings"
	"testing"
)

// h1Seeds are request heads (and bodies) from the conformance table and
// around it.
var h1Seeds = []string{
	"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;a=b\r\nabc\r\n0\r\nT: v\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
	"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
	"GET / HTTP/1.1\nHost: x\nX: a\n\n",
	"GET http://other.example:81/p?q HTTP/1.1\r\nHost: x\r\n\r\n",
	"CONNECT other.example:443 HTTP/1.1\r\nHost: other.example:443\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a b/c@d\r\n\r\n",
	"\r\nGET / HTTP/1.1\r\nHost: [::1]:80\r\nConnection: close\r\n\r\n",
}

// fuzzConn is an h1Conn reading r, with the default limits and no
// timeouts (no net.Conn behind it).
func fuzzConn(r io.Reader) *h1Conn {
	lim := defaultLimits
	lim.streamIdle, lim.idle = 0, 0
	return &h1Conn{br: bufio.NewReaderSize(r, 4<<10), lim: lim}
}

// FuzzH1Request feeds raw bytes to the request parser and the body
// readers. Invariants: no panic; an accepted request never has both
// Content-Length and Transfer-Encoding, and its framing and body are the
// ones net/http's parser (which accepts more) reads from the same bytes.
func FuzzH1Request(f *testing.F) {
	for _, s := range h1Seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := fuzzConn(bytes.NewReader(data))
		req, err := readRequest(c.br, &c.head, c.lim.maxHead, c.lim.maxHeaders)
		if err != nil {
			return
		}
		_, hasCL := req.Header["Content-Length"]
		_, hasTE := req.Header["Transfer-Encoding"]
		switch {
		case hasCL && hasTE:
			t.Fatalf("accepted both Content-Length and Transfer-Encoding: %q", data)
		case hasTE && (req.ContentLength != -1 || len(req.TransferEncoding) != 1 || req.TransferEncoding[0] != "chunked"):
			t.Fatalf("Transfer-Encoding framed as %d %v", req.ContentLength, req.TransferEncoding)
		case !hasTE && req.ContentLength < 0:
			t.Fatalf("no Transfer-Encoding but length %d", req.ContentLength)
		case req.ProtoMajor != 1 || !validAuthority(req.Host) || req.URL == nil:
			t.Fatalf("accepted %q with %d, Host %q", data, req.ProtoMajor, req.Host)
		}
		// net/http's parser is the oracle for the framing of what is
		// accepted.
		// (It does not skip empty lines before the request line.)
		oracle, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(bytes.TrimLeft(data, "\r\n"))))
		if err != nil {
			t.Fatalf("accepted what net/http refuses (%v): %q", err, data)
		}
		if oracle.ContentLength != req.ContentLength || len(oracle.TransferEncoding) != len(req.TransferEncoding) {
			t.Fatalf("framed as %d %v, net/http %d %v: %q", req.ContentLength, req.TransferEncoding,
				oracle.ContentLength, oracle.TransferEncoding, data)
		}
		if req.ContentLength == 0 {
			return
		}
		body := &h1Body{c: c, chunked: req.ContentLength < 0, remain: max(req.ContentLength, 0)}
		got, err := io.ReadAll(body)
		if err != nil {
			return
		}
		want, err := io.ReadAll(oracle.Body)
		if err == nil && !bytes.Equal(got, want) {
			t.Fatalf("body %q, net/http %q: %q", got, want, data)
		}
	})
}

// FuzzChunked decodes a chunked body. Invariants: no panic; it never
// reads past the message (its trailers' empty line); what it accepts,
// net/http's chunked reader (httputil.NewChunkedReader) decodes to the
// same bytes.
func FuzzChunked(f *testing.F) {
	for _, s := range []string{
		"3\r\nabc\r\n0\r\n\r\n",
		"3;a=b;c\r\nabc\r\n0\r\n\r\n",
		"3 ;a\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: v\r\n\r\n",
		"A\nabcdefghij\r\n0\n\n",
		"zz\r\nabc\r\n0\r\n\r\n",
		"fffffffffffffffff\r\nabc\r\n0\r\n\r\n",
		"7fffffffffffffff\r\nabc",
		"2\r\nabc\r\n0\r\n\r\n",
		"0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const sentinel = "\x00END"
		c := fuzzConn(io.MultiReader(bytes.NewReader(data), strings.NewReader(sentinel)))
		body := &h1Body{c: c, chunked: true}
		got, err := io.ReadAll(body)
		var he *h1Error
		if err != nil && !errors.As(err, &he) && err != io.ErrUnexpectedEOF {
			t.Fatalf("error %v is neither a framing error nor a short body", err)
		}
		if err != nil {
			return
		}
		// The message ends after the last chunk's line (where net/http's
		// reader stops) and the trailer section; the decoder must have
		// read exactly that far.
		rest, _ := io.ReadAll(c.br)
		consumed := len(data) + len(sentinel) - len(rest)
		r := bytes.NewReader(data)
		br := bufio.NewReader(r)
		want, oerr := io.ReadAll(httputil.NewChunkedReader(br))
		if oerr != nil {
			t.Fatalf("accepted what net/http refuses (%v): %q", oerr, data)
		}
		end := len(data) - r.Len() - br.Buffered()
		for {
			i := bytes.IndexByte(data[end:], '\n')
			if i < 0 {
				t.Fatalf("accepted a message without the end of its trailers: %q", data)
			}
			line := data[end : end+i]
			end += i + 1
			if len(line) == 0 || string(line) == "\r" {
				break
			}
		}
		if consumed != end {
			t.Fatalf("read %d bytes of a %d-byte message: %q", consumed, end, data)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("decoded %q, net/http %q: %q", got, want, data[:consumed])
		}
	})
}
