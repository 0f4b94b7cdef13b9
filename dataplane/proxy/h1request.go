package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// The request side of h1Server: a request head parser and the body
// readers, as strict as Envoy's HTTP/1 codec (BalsaParser with Envoy's
// validation policy, then the codec's and the connection manager's checks)
// rather than as lenient as net/http's ReadRequest, which a proxy cannot
// afford: it forwards what it accepts to servers that may frame it
// differently (request smuggling). Where the two differ docs/traffic.md
// says which way this goes.

// h1Error is a request the proxy answers itself and then closes the
// connection on, with the status Envoy's codec would send.
type h1Error struct {
	code int
	msg  string
}

func (e *h1Error) Error() string { return e.msg }

func badHead(msg string) error { return &h1Error{code: http.StatusBadRequest, msg: msg} }

var (
	errHeadTooLarge   = &h1Error{code: http.StatusRequestHeaderFieldsTooLarge, msg: "headers size exceeds limit"}
	errTooManyHeaders = &h1Error{code: http.StatusRequestHeaderFieldsTooLarge, msg: "headers count exceeds limit"}
	errVersion        = &h1Error{code: http.StatusHTTPVersionNotSupported, msg: "unsupported HTTP version"}
	errTE             = &h1Error{code: http.StatusNotImplemented, msg: "unsupported transfer encoding"}
	errConnect        = &h1Error{code: http.StatusForbidden, msg: "CONNECT is not configured"}
	errChunk          = badHead("invalid chunk size")
)

// Envoy's connection manager defaults, used when the HCM leaves a field
// unset (max_request_headers_kb, common_http_protocol_options).
const (
	defaultMaxHeadBytes = 60 << 10
	defaultMaxHeaders   = 100
)

// chunkedTE is the TransferEncoding of a chunked request; cap 1, so an
// append copies.
var chunkedTE = []string{"chunked"}

// readRequest reads one request head from br. scratch is the connection's
// buffer for the head, reused from request to request. The head (request
// line, headers, line ends) may take up to maxHead bytes and carry up to
// maxHeaders header lines, as Envoy bounds them; nothing longer is held.
// It returns io.EOF if the connection ends before a request starts.
func readRequest(br *bufio.Reader, scratch *[]byte, maxHead, maxHeaders int) (*http.Request, error) {
	buf := (*scratch)[:0]
	defer func() {
		// A connection keeps a usual head's buffer, not a large one's.
		if cap(buf) <= 8<<10 {
			*scratch = buf[:0]
		}
	}()
	start := 0 // where the current line starts in buf
	lines := 0 // header lines, request line and folded lines not counted
	for {
		frag, err := br.ReadSlice('\n')
		if len(buf)+len(frag) > maxHead {
			return nil, errHeadTooLarge
		}
		buf = append(buf, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if len(buf) == 0 && err == io.EOF {
				return nil, io.EOF
			}
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		line := buf[start:]
		if len(line) == 1 || (len(line) == 2 && line[0] == '\r') {
			if start == 0 {
				// Empty lines before the request line are skipped
				// (RFC 9112 section 2.2).
				buf = buf[:0]
				continue
			}
			break
		}
		if start > 0 && line[0] != ' ' && line[0] != '\t' {
			if lines++; lines > maxHeaders {
				return nil, errTooManyHeaders
			}
		}
		start = len(buf)
	}
	return parseHead(string(buf), lines)
}

// nextLine splits s at its first line end (LF, or CRLF). A CR anywhere
// else is invalid, as Envoy's parser treats it.
func nextLine(s string) (line, rest string, ok bool) {
	i := strings.IndexByte(s, '\n')
	if i < 0 {
		return s, "", false
	}
	line, rest = s[:i], s[i+1:]
	line = strings.TrimSuffix(line, "\r")
	return line, rest, strings.IndexByte(line, '\r') < 0
}

// parseHead parses a complete head of nlines header lines; every string
// in the request is a substring of head, so a header costs no allocation
// beyond its map entry.
func parseHead(head string, nlines int) (*http.Request, error) {
	line, rest, ok := nextLine(head)
	if !ok {
		return nil, badHead("invalid request line")
	}
	method, line, ok1 := strings.Cut(line, " ")
	target, version, ok2 := strings.Cut(line, " ")
	if !ok1 || !ok2 || !knownMethod(method) {
		return nil, badHead("invalid request line")
	}
	major, minor, ok := parseVersion(version)
	if !ok {
		return nil, badHead("invalid HTTP version")
	}
	if major != 1 {
		return nil, errVersion
	}
	if !validTarget(target) {
		return nil, badHead("invalid request target")
	}

	req := &http.Request{
		Method: method, Proto: version, ProtoMajor: major, ProtoMinor: minor,
		RequestURI: target, Header: make(http.Header, nlines),
	}
	// Each new key's value slice is cut from one array, as net/http does.
	strs := make([]string, nlines)
	var (
		host, cl, te           string
		hosts, cls, tes, conns int
		last                   string // the key of the last header, for folded lines
	)
	for {
		line, rest, ok = nextLine(rest)
		if !ok {
			return nil, badHead("invalid header line")
		}
		if line == "" {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			// obs-fold: Envoy joins the lines (RFC 9112 section 5.2
			// allows replacing the fold with a space).
			v := trimOWS(line)
			// A folded Content-Length or Transfer-Encoding would have to
			// be framed again: refused instead.
			if last == "" || last == "Content-Length" || last == "Transfer-Encoding" || !validValue(v) {
				return nil, badHead("invalid folded header line")
			}
			vs := req.Header[last]
			vs[len(vs)-1] = strings.TrimRight(vs[len(vs)-1]+" "+v, " \t")
			continue
		}
		name, value, found := strings.Cut(line, ":")
		if !found || !validName(name) {
			return nil, badHead("invalid header name")
		}
		value = trimOWS(value)
		if !validValue(value) {
			return nil, badHead("invalid header value")
		}
		key := http.CanonicalHeaderKey(name)
		switch key {
		case "Host":
			host, hosts = value, hosts+1
			last = ""
			continue
		case "Content-Length":
			cl, cls = value, cls+1
		case "Transfer-Encoding":
			if tes > 0 {
				te += ","
			}
			te, tes = te+value, tes+1
		case "Connection":
			conns++
		}
		last = key
		if vs, ok := req.Header[key]; ok {
			req.Header[key] = append(vs, value)
		} else {
			vs, strs = strs[:1:1], strs[1:]
			vs[0] = value
			req.Header[key] = vs
		}
	}

	connect := method == http.MethodConnect
	// The order of the checks is Envoy's codec's: CONNECT with a body,
	// Content-Length with Transfer-Encoding, the transfer coding.
	if connect && cls > 0 && cl != "0" {
		return nil, badHead("CONNECT with a body")
	}
	if tes > 0 && cls > 0 {
		return nil, badHead("both Content-Length and Transfer-Encoding")
	}
	if tes > 0 && minor == 0 {
		// RFC 9112 section 6.1: HTTP/1.0 has no transfer codings, so the
		// framing is faulty whatever follows.
		return nil, badHead("Transfer-Encoding in HTTP/1.0")
	}
	if tes > 0 && (connect || !strings.EqualFold(trimOWS(te), "chunked")) {
		return nil, errTE
	}
	switch {
	case cls > 1:
		return nil, badHead("multiple Content-Length")
	case cls == 1:
		n, ok := parseContentLength(cl)
		if !ok {
			return nil, badHead("invalid Content-Length")
		}
		req.ContentLength = n
	case tes > 0:
		req.ContentLength = -1
		req.TransferEncoding = chunkedTE
	}

	switch {
	case target[0] == '/' || (target == "*" && method == http.MethodOptions):
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return nil, badHead("invalid request target")
		}
		req.URL = u
		if hosts != 1 {
			return nil, badHead("missing or repeated Host")
		}
	case connect:
		// authority-form; Envoy answers 403 unless the connection
		// manager's upgrade_configs allow CONNECT, which the proxy never
		// tunnels.
		if !validAuthority(target) {
			return nil, badHead("invalid CONNECT target")
		}
		return nil, errConnect
	default:
		// absolute-form: the target's authority is the Host, whatever the
		// Host header says (RFC 9112 section 3.2.2), as Envoy sets it.
		u, err := url.ParseRequestURI(target)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" || u.User != nil {
			return nil, badHead("invalid request target")
		}
		req.URL = u
		if hosts > 1 {
			return nil, badHead("repeated Host")
		}
		host = u.Host
	}
	if host == "" || !validAuthority(host) {
		return nil, badHead("invalid Host")
	}
	req.Host = host
	if conns > 0 || minor == 0 {
		req.Close = shouldClose(minor, req.Header["Connection"])
	}
	return req, nil
}

// shouldClose: HTTP/1.0 closes unless the client asks to keep alive,
// HTTP/1.1 keeps alive unless it asks to close.
func shouldClose(minor int, conn []string) bool {
	for _, v := range conn {
		for t := range strings.SplitSeq(v, ",") {
			t = trimOWS(t)
			if strings.EqualFold(t, "close") {
				return true
			}
			if minor == 0 && strings.EqualFold(t, "keep-alive") {
				return false
			}
		}
	}
	return minor == 0
}

// knownMethod: Envoy's parser accepts only the methods it knows unless
// allow_custom_methods is set, which Istio never does.
func knownMethod(m string) bool {
	switch m {
	case "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
		"ACL", "BIND", "CHECKOUT", "COPY", "LINK", "LOCK", "MERGE", "MKACTIVITY", "MKCALENDAR",
		"MKCOL", "MOVE", "MSEARCH", "NOTIFY", "PROPFIND", "PROPPATCH", "PURGE", "REBIND", "REPORT",
		"SEARCH", "SOURCE", "SUBSCRIBE", "UNBIND", "UNLINK", "UNLOCK", "UNSUBSCRIBE":
		return true
	}
	return false
}

// parseVersion accepts HTTP/d.d only (RFC 9112 section 2.3).
func parseVersion(v string) (major, minor int, ok bool) {
	if len(v) != 8 || v[:5] != "HTTP/" || v[6] != '.' || !isDigit(v[5]) || !isDigit(v[7]) {
		return 0, 0, false
	}
	return int(v[5] - '0'), int(v[7] - '0'), true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// validTarget: the request target's bytes as Envoy's parser allows them
// (visible ASCII); the form is checked by the caller.
func validTarget(t string) bool {
	if t == "" {
		return false
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// alnumAnd is a byte table of letters, digits and the bytes of extra.
func alnumAnd(extra string) (t [256]bool) {
	for i := 0; i < len(extra); i++ {
		t[extra[i]] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	return t
}

// allIn reports whether s is not empty and every byte of it is in t.
func allIn(t *[256]bool, s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !t[s[i]] {
			return false
		}
	}
	return true
}

// tokenChars are RFC 9110's tchar, for header names.
var tokenChars = alnumAnd("!#$%&'*+-.^_`|~")

func validName(n string) bool { return allIn(&tokenChars, n) }

// validValue: field-content, no control characters but HT (a NUL, CR or
// LF Envoy rejects; the other controls RFC 9110 forbids).
func validValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// authorityChars are those Envoy accepts in :authority (nghttp2's
// check_authority): unreserved, sub-delims, ':', '@', '[', ']', '%'.
var authorityChars = alnumAnd("-._~!$&'()*+,;=:@[]%")

func validAuthority(a string) bool { return allIn(&authorityChars, a) }

func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// parseContentLength accepts 1*DIGIT that fits an int64.
func parseContentLength(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) || n > (math.MaxInt64-9)/10 {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}

// parseChunkSize parses a chunk-size line without its line end:
// 1*HEXDIG, then extensions (ignored, but without control characters) or
// whitespace. The size must fit an int64.
func parseChunkSize(line []byte) (int64, bool) {
	var n int64
	i := 0
	for ; i < len(line); i++ {
		c := line[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			goto ext
		}
		// More than 16 digits, even leading zeros, is refused as net/http
		// refuses it: a size two parsers read differently is how bodies
		// get smuggled (FuzzChunked found 17 digits meaning 16).
		if i == 16 || n > math.MaxInt64>>4 {
			return 0, false
		}
		n = n<<4 | int64(d)
	}
ext:
	if i == 0 {
		return 0, false
	}
	if i == len(line) || len(bytes.Trim(line[i:], " \t")) == 0 {
		// Trailing whitespace, as net/http allows it.
		return n, true
	}
	// Extensions follow the size at once: RFC 9112 allows whitespace
	// before the ';', net/http does not, and an upstream may be either.
	if line[i] != ';' {
		return 0, false
	}
	for _, c := range line[i:] {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return 0, false
		}
	}
	return n, true
}

// h1Body is a request body read from the connection as the head framed
// it: Content-Length bytes, or chunks up to the last one and its trailers
// (which are read, bounded and dropped, as Envoy does without
// enable_trailers). Errors are sticky: once the framing is broken nothing
// more is read. The body may be read on another goroutine than the
// handler's (the transport writes request bodies on its own), hence the
// lock.
type h1Body struct {
	mu      sync.Mutex
	c       *h1Conn
	chunked bool
	// remain is what is left of the body (Content-Length) or of the
	// current chunk; crlf: the chunk's data is read, its line end is not.
	remain int64
	crlf   bool
	bareLF bool // the last line read ended with LF alone
	done   bool
	closed bool
	err    error
}

// errBodyAfterClose is what a read of a closed body gets, as net/http's.
var errBodyAfterClose = errors.New("http: invalid Read on closed Body")

func (b *h1Body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errBodyAfterClose
	}
	return b.read(p)
}

// Close stops reads through the body; the connection reads (and drops)
// what is left only if it is to be kept (h1Server.exchange).
func (b *h1Body) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

// drain reads and drops up to max bytes of what is left, and reports
// whether the body then ended as framed.
func (b *h1Body) drain(max int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	var buf [4096]byte
	for max > 0 {
		n, err := b.read(buf[:min(int64(len(buf)), max)])
		max -= int64(n)
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
	}
	return b.done
}

func (b *h1Body) read(p []byte) (n int, err error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.done {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	br := b.c.br
	if idle := b.c.lim.streamIdle; idle > 0 && br.Buffered() == 0 {
		// Each read that waits for the client restarts the stream idle
		// timeout, as data does in Envoy.
		if err := b.c.SetReadDeadline(time.Now().Add(idle)); err != nil {
			return 0, b.fail(err)
		}
	}
	if !b.chunked {
		n, err = br.Read(p[:min(int64(len(p)), b.remain)])
		b.remain -= int64(n)
		if b.remain == 0 {
			b.done = true
			return n, io.EOF
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return n, b.fail(err)
		}
		return n, nil
	}
	for b.remain == 0 {
		if b.crlf {
			if err := b.lineEnd(); err != nil {
				return 0, b.fail(err)
			}
			b.crlf = false
		}
		line, err := b.line()
		if err != nil {
			return 0, b.fail(err)
		}
		if len(line) == 0 || b.bareLF {
			// The size line ends with CRLF only, as net/http requires.
			return 0, b.fail(errChunk)
		}
		size, ok := parseChunkSize(line)
		if !ok {
			return 0, b.fail(errChunk)
		}
		if size == 0 {
			if err := b.trailers(); err != nil {
				return 0, b.fail(err)
			}
			b.done = true
			return 0, io.EOF
		}
		b.remain, b.crlf = size, true
	}
	n, err = br.Read(p[:min(int64(len(p)), b.remain)])
	b.remain -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return n, b.fail(err)
	}
	return n, nil
}

// fail makes err sticky and, for a framing error or a stall, tells the
// response what to answer.
func (b *h1Body) fail(err error) error {
	b.err = err
	var he *h1Error
	var ne net.Error
	switch {
	case errors.As(err, &he):
		b.c.bodyFail.Store(int32(he.code))
	case errors.As(err, &ne) && ne.Timeout():
		b.c.bodyFail.Store(http.StatusRequestTimeout)
	}
	return err
}

// line reads one line of the chunked framing without its line end; a
// line longer than the reader's buffer is invalid (net/http allows 4 KiB).
func (b *h1Body) line() ([]byte, error) {
	line, err := b.c.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, badHead("chunk line too long")
	}
	if err == io.EOF {
		return nil, io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, err
	}
	line = line[:len(line)-1]
	b.bareLF = true
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line, b.bareLF = line[:n-1], false
	}
	return line, nil
}

// lineEnd reads the CRLF after a chunk's data; unlike the lines of the
// framing, nothing else ends chunk data (RFC 9112 section 7.1, and
// net/http).
func (b *h1Body) lineEnd() error {
	var crlf [2]byte
	if _, err := io.ReadFull(b.c.br, crlf[:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	if crlf != [2]byte{'\r', '\n'} {
		return badHead("chunk data longer than its size")
	}
	return nil
}

// trailers reads the trailer section up to its empty line.
func (b *h1Body) trailers() error {
	total, count := 0, 0
	for {
		line, err := b.line()
		if err != nil {
			return err
		}
		if len(line) == 0 {
			return nil
		}
		total += len(line)
		count++
		if total > b.c.lim.maxHead || count > b.c.lim.maxHeaders {
			return errHeadTooLarge
		}
		name, _, ok := bytes.Cut(line, []byte(":"))
		if !ok || !validName(string(name)) {
			return badHead("invalid trailer")
		}
	}
}
