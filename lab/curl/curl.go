// Package curl is the curl the meshlab image carries: the subset of curl's
// command line Istio's exercises use (`kubectl exec deploy/sleep -- curl -sS
// ...`), over Go's net/http, with curl's output, messages and exit codes. The
// image is FROM scratch, so without it those exercises find no curl on a kind
// lab. It speaks HTTP/1.1 (and HTTPS), one connection per request.
package curl

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// userAgent is what curl would send; servers and exercises that look at it
// expect curl's product token.
const userAgent = "curl/8.11.1"

// tryHelp ends a usage error's message, as curl's does.
const tryHelp = "curl: try 'curl --help' or 'curl --manual' for more information\n"

// maxRedirects is curl's default --max-redirs.
const maxRedirects = 50

// Run runs curl with args (without argv[0]) and returns curl's exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return run(ctx, args, stdout, stderr, env{})
}

// env is what the outside world gives a run; tests replace the resolver so
// no lookup leaves the machine.
type env struct {
	lookup func(ctx context.Context, host string) ([]string, error)
	stdin  io.Reader
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, e env) int {
	if e.lookup == nil {
		e.lookup = func(ctx context.Context, host string) ([]string, error) {
			return net.DefaultResolver.LookupHost(ctx, host)
		}
	}
	if e.stdin == nil {
		e.stdin = os.Stdin
	}
	o, err := parse(args)
	if err != nil {
		fmt.Fprintf(stderr, "curl: %v\n%s", err, tryHelp)
		return 2
	}
	if len(o.urls) == 0 {
		fmt.Fprint(stderr, "curl: no URL specified!\n"+tryHelp)
		return 2
	}
	c := &client{o: o, env: e, stderr: stderr}
	if err := c.prepare(); err != nil {
		if err.msg != "" {
			c.report(err)
		}
		return err.code
	}
	code := 0
	for i, u := range o.urls {
		out := ""
		if i < len(o.outputs) {
			out = o.outputs[i]
		}
		if rc := c.transfer(ctx, u, out, stdout); rc != 0 {
			code = rc
		}
	}
	return code
}

// curlError is a failed transfer as curl reports it: `curl: (code) msg`.
type curlError struct {
	code int
	msg  string
}

func (e *curlError) Error() string { return e.msg }

type client struct {
	o       *options
	env     env
	stderr  io.Writer
	body    []byte // the -d data, joined
	resolve map[string][]string
	wout    string // the -w format, read from its file when it names one
}

// prepare reads what the options name (data and format files) and checks
// they fit together, before any transfer.
func (c *client) prepare() *curlError {
	o := c.o
	if o.head && len(o.data) > 0 {
		// A warning, so -s hides it; the exit code is a usage error's.
		if !o.silent {
			fmt.Fprint(c.stderr, "Warning: You can only select one HTTP request method! You asked for both POST \nWarning: (-d, --data) and HEAD (-I, --head).\n")
		}
		return &curlError{code: 2}
	}
	var parts []string
	for _, d := range o.data {
		if name, ok := strings.CutPrefix(d, "@"); ok {
			b, err := c.readFile(name)
			if err != nil {
				fmt.Fprintf(c.stderr, "Warning: Couldn't read data from file \"%s\", this makes an empty POST.\n", name)
			}
			// -d strips line breaks from a file, as curl does (--data-binary would not).
			d = strings.NewReplacer("\r", "", "\n", "").Replace(string(b))
		}
		parts = append(parts, d)
	}
	c.body = []byte(strings.Join(parts, "&"))
	c.wout = o.writeOut
	if name, ok := strings.CutPrefix(o.writeOut, "@"); ok {
		b, err := c.readFile(name)
		if err != nil {
			return &curlError{26, fmt.Sprintf("Failed to open %s", name)}
		}
		c.wout = string(b)
	}
	c.resolve = map[string][]string{}
	for _, r := range o.resolve {
		host, rest, ok1 := strings.Cut(strings.TrimPrefix(r, "+"), ":")
		port, addrs, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 || host == "" || addrs == "" {
			fmt.Fprintf(c.stderr, "Warning: Couldn't parse CURLOPT_RESOLVE entry '%s'\n", r)
			continue
		}
		var ips []string
		for _, a := range strings.Split(addrs, ",") {
			ips = append(ips, strings.Trim(a, "[]"))
		}
		c.resolve[strings.ToLower(host)+":"+port] = ips
	}
	return nil
}

func (c *client) readFile(name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(c.env.stdin)
	}
	return os.ReadFile(name)
}

// report prints a failed transfer's message as curl does: not with -s
// unless -S asks for errors.
func (c *client) report(err *curlError) {
	if !c.o.silent || c.o.showError {
		fmt.Fprintf(c.stderr, "curl: (%d) %s\n", err.code, err.msg)
	}
}

func (c *client) verbose(format string, args ...any) {
	if c.o.verbose {
		fmt.Fprintf(c.stderr, "* "+format+"\n", args...)
	}
}

// result is what -w reports of a transfer.
type result struct {
	code      int
	size      int64
	start     time.Time
	total     time.Duration
	url       string
	redirects int
	ctype     string
	remoteIP  string
	port      string
	method    string
	exit      int
	errmsg    string
}

// transfer fetches one URL into stdout or the file output names, prints
// -w's report and returns the exit code.
func (c *client) transfer(ctx context.Context, raw, output string, stdout io.Writer) int {
	if c.o.maxTime > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.o.maxTime)
		defer cancel()
	}
	res := &result{start: time.Now(), url: raw}
	out := &sink{w: stdout}
	if output != "" {
		out = &sink{path: output}
	}
	err := c.fetch(ctx, raw, out, res)
	if cerr := out.close(); cerr != nil && err == nil {
		err = &curlError{23, "Failure writing output to destination"}
	}
	res.total = time.Since(res.start)
	if err != nil {
		res.exit, res.errmsg = err.code, err.msg
	}
	if c.wout != "" {
		c.writeOut(stdout, res)
	}
	if err != nil {
		c.report(err)
		return err.code
	}
	return 0
}

// sink is a transfer's output: a writer, or a file created when the
// transfer has something to write. It counts what it is given and keeps the
// first write error apart from read errors.
type sink struct {
	w      io.Writer
	path   string
	f      *os.File
	n      int64
	werr   error
	opened bool
}

func (s *sink) Write(p []byte) (int, error) {
	if s.werr != nil {
		return 0, s.werr
	}
	if s.w == nil && !s.opened {
		s.opened = true
		f, err := os.Create(s.path)
		if err != nil {
			s.werr = err
			return 0, err
		}
		s.f, s.w = f, f
	}
	n, err := s.w.Write(p)
	s.n += int64(n)
	if err != nil {
		s.werr = err
	}
	return n, err
}

// open creates the output file even when nothing is written to it, as curl
// does for an empty body.
func (s *sink) open() error {
	_, err := s.Write(nil)
	return err
}

func (s *sink) close() error {
	if s.f == nil {
		return nil
	}
	return s.f.Close()
}

func (c *client) fetch(ctx context.Context, raw string, out *sink, res *result) *curlError {
	u, err := parseURL(raw)
	if err != nil {
		return err
	}
	origHost := u.Host
	method := http.MethodGet
	var body []byte
	if len(c.o.data) > 0 {
		method, body = http.MethodPost, c.body
	}
	if c.o.head {
		method = http.MethodHead
	}
	if c.o.method != "" {
		method = c.o.method
	}
	for {
		res.url, res.method = u.String(), method
		resp, head, conn, err := c.roundTrip(ctx, u, method, body, u.Host == origHost, res)
		if err != nil {
			return err
		}
		res.code = resp.StatusCode
		res.ctype = resp.Header.Get("Content-Type")
		loc := resp.Header.Get("Location")
		redirect := c.o.location && loc != "" && resp.StatusCode >= 300 && resp.StatusCode < 400
		failed := c.o.fail && resp.StatusCode >= 400
		if (c.o.include || c.o.head) && !failed {
			if err := out.open(); err != nil {
				_ = conn.Close()
				return &curlError{23, "Failure writing output to destination"}
			}
			_, _ = out.Write(head)
		}
		var rerr *curlError
		// -I outputs the header only, even of a response with a body (-X GET).
		if !failed && !redirect && !c.o.head {
			if err := out.open(); err != nil {
				_ = conn.Close()
				return &curlError{23, "Failure writing output to destination"}
			}
			before := out.n
			_, cerr := io.Copy(out, resp.Body)
			res.size += out.n - before
			if cerr != nil {
				rerr = c.bodyError(ctx, cerr, out, resp, res.size)
			}
		}
		_ = conn.Close()
		if rerr != nil {
			return rerr
		}
		if failed {
			return &curlError{22, fmt.Sprintf("The requested URL returned error: %d", resp.StatusCode)}
		}
		if !redirect {
			c.verbose("Closing connection")
			return nil
		}
		if res.redirects == maxRedirects {
			return &curlError{47, fmt.Sprintf("Maximum (%d) redirects followed", maxRedirects)}
		}
		ref, perr := u.Parse(loc)
		if perr != nil {
			return &curlError{3, "URL rejected: Malformed input to a URL function"}
		}
		// A redirect elsewhere than http or https is as unsupported as such
		// a URL on the command line.
		next, cerr := parseURL(ref.String())
		if cerr != nil {
			return cerr
		}
		res.redirects++
		c.verbose("Issue another request to this URL: '%s'", next)
		// curl's defaults: a POST becomes a GET after 301, 302 and 303,
		// anything but HEAD after 303. -X names the method throughout, but
		// the body goes as it would without it.
		switch resp.StatusCode {
		case http.StatusMovedPermanently, http.StatusFound:
			if len(c.o.data) > 0 && body != nil {
				method, body = http.MethodGet, nil
			}
		case http.StatusSeeOther:
			if method != http.MethodHead {
				method, body = http.MethodGet, nil
			}
		}
		if c.o.method != "" {
			method = c.o.method
		}
		u = next
	}
}

// bodyError says why reading a response body stopped short.
func (c *client) bodyError(ctx context.Context, err error, out *sink, resp *http.Response, got int64) *curlError {
	if out.werr != nil {
		return &curlError{23, "Failure writing output to destination"}
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		if resp.ContentLength >= 0 {
			return &curlError{28, fmt.Sprintf("Operation timed out after %d milliseconds with %d out of %d bytes received", c.o.maxTime.Milliseconds(), got, resp.ContentLength)}
		}
		return &curlError{28, fmt.Sprintf("Operation timed out after %d milliseconds with %d bytes received", c.o.maxTime.Milliseconds(), got)}
	}
	if ctx.Err() != nil {
		return &curlError{42, "Operation was aborted by an application callback"}
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		if resp.ContentLength >= 0 {
			return &curlError{18, fmt.Sprintf("end of response with %d bytes missing", resp.ContentLength-got)}
		}
		return &curlError{18, "transfer closed with outstanding read data remaining"}
	}
	return recvError(err)
}

func recvError(err error) *curlError {
	if errors.Is(err, syscall.ECONNRESET) {
		return &curlError{56, "Recv failure: Connection reset by peer"}
	}
	return &curlError{56, "Recv failure: " + err.Error()}
}

// roundTrip sends one request on a new connection and reads the response's
// header. It returns the response's header block as received, for -i, -I
// and -v, and the connection the body is still to be read from.
func (c *client) roundTrip(ctx context.Context, u *url.URL, method string, body []byte, sameHost bool, res *result) (*http.Response, []byte, net.Conn, *curlError) {
	reqHead := c.requestHead(u, method, body, sameHost)
	conn, cerr := c.dial(ctx, u, res)
	if cerr != nil {
		return nil, nil, nil, cerr
	}
	tap := &tapConn{Conn: conn}
	// A deadline on the connection is what makes a blocked read or write
	// see --max-time or the caller giving up.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (*http.Response, []byte, net.Conn, *curlError) {
		stop()
		_ = conn.Close()
		return nil, nil, nil, c.requestError(ctx, err)
	}
	if _, err := conn.Write(append([]byte(reqHead), body...)); err != nil {
		return fail(err)
	}
	c.printHeaderBlock("> ", []byte(reqHead))
	br := bufio.NewReader(tap)
	// ReadResponse needs the method only: a HEAD's response has no body.
	req := &http.Request{Method: method}
	var resp *http.Response
	for {
		var err error
		resp, err = http.ReadResponse(br, req)
		if err != nil {
			return fail(err)
		}
		// Interim responses come before the real one; -i shows them all.
		if resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			continue
		}
		break
	}
	head := tap.received()
	c.printHeaderBlock("< ", head)
	return resp, head, &stopConn{Conn: conn, stop: stop}, nil
}

// stopConn releases the deadline hook when the transfer is done with the
// connection.
type stopConn struct {
	net.Conn
	stop func() bool
}

func (s *stopConn) Close() error {
	s.stop()
	return s.Conn.Close()
}

func (c *client) printHeaderBlock(prefix string, b []byte) {
	if !c.o.verbose {
		return
	}
	for _, line := range strings.SplitAfter(string(b), "\r\n") {
		if line == "" {
			continue
		}
		fmt.Fprint(c.stderr, prefix+line)
	}
}

// requestError says why a request got no response.
func (c *client) requestError(ctx context.Context, err error) *curlError {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &curlError{28, fmt.Sprintf("Operation timed out after %d milliseconds with 0 bytes received", c.o.maxTime.Milliseconds())}
	}
	if ctx.Err() != nil {
		return &curlError{42, "Operation was aborted by an application callback"}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &curlError{52, "Empty reply from server"}
	}
	if errors.Is(err, syscall.EPIPE) {
		return &curlError{55, "Send failure: Broken pipe"}
	}
	return recvError(err)
}

// hostHeader is the URL's host as curl sends it: without the scheme's
// default port.
func hostHeader(u *url.URL) string {
	if p := u.Port(); (p == "80" && u.Scheme == "http") || (p == "443" && u.Scheme == "https") {
		h := u.Hostname()
		if strings.Contains(h, ":") {
			return "[" + h + "]"
		}
		return h
	}
	return u.Host
}

// requestHead is the request line and header block as curl writes them:
// Host, Authorization, User-Agent and Accept, then the -H headers in their
// order, then the body's Content-Length and Content-Type. A -H header
// replaces curl's own of that name ("Name:" with no value just removes it,
// "Name;" sends it empty); a Host one takes the Host line's place.
func (c *client) requestHead(u *url.URL, method string, body []byte, sameHost bool) string {
	host := hostHeader(u)
	custom := map[string]bool{}
	noHost := false
	var extra []string
	for _, h := range c.o.headers {
		name, value, ok := strings.Cut(h, ":")
		empty := false
		if !ok {
			n, semi := strings.CutSuffix(strings.TrimSpace(h), ";")
			if !semi {
				continue // curl ignores a header with neither
			}
			name, empty = n, true
		}
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if name == "" {
			continue
		}
		key := strings.ToLower(name)
		custom[key] = true
		switch {
		case key == "host":
			host, noHost = value, value == "" && !empty
		case value != "" || empty:
			extra = append(extra, name+": "+value)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", method, u.RequestURI())
	if !noHost {
		fmt.Fprintf(&b, "Host: %s\r\n", host)
	}
	if c.o.userSet && sameHost && !custom["authorization"] {
		user, pass := c.credentials()
		fmt.Fprintf(&b, "Authorization: Basic %s\r\n", base64.StdEncoding.EncodeToString([]byte(user+":"+pass)))
	}
	if !custom["user-agent"] {
		fmt.Fprintf(&b, "User-Agent: %s\r\n", userAgent)
	}
	if !custom["accept"] {
		b.WriteString("Accept: */*\r\n")
	}
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	if body != nil {
		if !custom["content-length"] {
			fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
		}
		if !custom["content-type"] {
			b.WriteString("Content-Type: application/x-www-form-urlencoded\r\n")
		}
	}
	b.WriteString("\r\n")
	return b.String()
}

// credentials splits -u's user:password. Without a password curl asks for
// one on the terminal; here the answer is read from stdin, once.
func (c *client) credentials() (string, string) {
	user, pass, ok := strings.Cut(c.o.user, ":")
	if !ok {
		fmt.Fprintf(c.stderr, "Enter host password for user '%s':", user)
		line, _ := bufio.NewReader(c.env.stdin).ReadString('\n')
		pass = strings.TrimRight(line, "\r\n")
		fmt.Fprintln(c.stderr)
		c.o.user = user + ":" + pass
	}
	return user, pass
}

// dial resolves the URL's host (through --resolve first) and connects, with
// TLS for https.
func (c *client) dial(ctx context.Context, u *url.URL, res *result) (net.Conn, *curlError) {
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	start := time.Now()
	dctx := ctx
	if c.o.connectTimeout > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, c.o.connectTimeout)
		defer cancel()
	}
	timedOut := func() *curlError {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return &curlError{28, fmt.Sprintf("Connection timed out after %d milliseconds", time.Since(start).Milliseconds())}
		}
		if ctx.Err() != nil {
			return &curlError{42, "Operation was aborted by an application callback"}
		}
		if dctx.Err() != nil {
			return &curlError{28, fmt.Sprintf("Failed to connect to %s port %s after %d ms: Timeout was reached", host, port, time.Since(start).Milliseconds())}
		}
		return nil
	}
	ips, ok := c.resolve[strings.ToLower(host)+":"+port]
	if !ok {
		if net.ParseIP(host) != nil {
			ips = []string{host}
		} else {
			var err error
			ips, err = c.env.lookup(dctx, host)
			if err != nil || len(ips) == 0 {
				if t := timedOut(); t != nil {
					return nil, t
				}
				return nil, &curlError{6, "Could not resolve host: " + host}
			}
		}
	}
	var conn net.Conn
	var d net.Dialer
	for _, ip := range ips {
		addr := net.JoinHostPort(ip, port)
		c.verbose("  Trying %s...", addr)
		var err error
		if conn, err = d.DialContext(dctx, "tcp", addr); err == nil {
			c.verbose("Connected to %s (%s) port %s", host, ip, port)
			res.remoteIP, res.port = ip, port
			break
		}
		if t := timedOut(); t != nil {
			return nil, t
		}
	}
	if conn == nil {
		return nil, &curlError{7, fmt.Sprintf("Failed to connect to %s port %s after %d ms: Couldn't connect to server", host, port, time.Since(start).Milliseconds())}
	}
	if u.Scheme != "https" {
		return conn, nil
	}
	// An IP address as ServerName is checked against the certificate's IP
	// SANs and sent as no SNI, as curl does.
	cfg := &tls.Config{ServerName: host, InsecureSkipVerify: c.o.insecure, NextProtos: []string{"http/1.1"}} // #nosec G402 -- -k asks for it
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(dctx); err != nil {
		_ = conn.Close()
		if t := timedOut(); t != nil {
			return nil, t
		}
		var verr *tls.CertificateVerificationError
		if errors.As(err, &verr) {
			return nil, &curlError{60, "SSL certificate problem: " + verr.Err.Error()}
		}
		return nil, &curlError{35, "TLS connect error: " + err.Error()}
	}
	c.verbose("SSL connection using %s / %s", tls.VersionName(tc.ConnectionState().Version), tls.CipherSuiteName(tc.ConnectionState().CipherSuite))
	return tc, nil
}

// parseURL reads a URL as curl does: without a scheme it is http.
func parseURL(raw string) (*url.URL, *curlError) {
	s := raw
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		if strings.Contains(err.Error(), "port") {
			return nil, &curlError{3, "URL rejected: Port number was not a decimal number between 0 and 65535"}
		}
		return nil, &curlError{3, "URL rejected: Malformed input to a URL function"}
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, &curlError{1, fmt.Sprintf("Protocol \"%s\" not supported", u.Scheme)}
	}
	if u.Hostname() == "" {
		return nil, &curlError{3, "URL rejected: No host part in the URL"}
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n > 65535 {
			return nil, &curlError{3, "URL rejected: Port number was not a decimal number between 0 and 65535"}
		}
	}
	if u.Path == "" {
		u.Path = "/"
	}
	u.Fragment = ""
	return u, nil
}

// tapConn keeps the bytes of the response's header blocks as received, for
// -v, -i and -I: what the server sent, in its order and case.
type tapConn struct {
	net.Conn
	recv     bytes.Buffer
	recvDone bool
}

func (t *tapConn) Read(p []byte) (int, error) {
	n, err := t.Conn.Read(p)
	if !t.recvDone && n > 0 {
		t.recv.Write(p[:n])
		if end := headerEnd(t.recv.Bytes()); end >= 0 {
			t.recv.Truncate(end)
			t.recvDone = true
		}
	}
	return n, err
}

func (t *tapConn) received() []byte { return t.recv.Bytes() }

// headerEnd is where the final response's header blocks end in b, past
// any interim (1xx) ones, or -1 while they have not all arrived.
func headerEnd(b []byte) int {
	start := 0
	for {
		i := bytes.Index(b[start:], []byte("\r\n\r\n"))
		if i < 0 {
			return -1
		}
		block := b[start : start+i]
		_, status, _ := bytes.Cut(block, []byte(" "))
		if len(status) > 0 && status[0] == '1' && !bytes.HasPrefix(status, []byte("101")) {
			start += i + 4
			continue
		}
		return start + i + 4
	}
}
