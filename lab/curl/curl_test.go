package curl

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// testServer answers the requests the cases make, on loopback.
func testServer() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Test", "yes")
		fmt.Fprint(w, "hello\n")
	})
	mux.HandleFunc("/404", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, "nope\n")
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "method=%s host=%s body=%s\n", r.Method, r.Host, body)
		var names []string
		for k := range r.Header {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			fmt.Fprintf(w, "%s=%s\n", k, strings.Join(r.Header[k], ","))
		}
	})
	mux.HandleFunc("/auth", func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "user" || p != "pass" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, "welcome\n")
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/echo", http.StatusFound)
	})
	mux.HandleFunc("/r303", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/echo", http.StatusSeeOther)
	})
	mux.HandleFunc("/r307", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/echo", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/sleep", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	mux.HandleFunc("/slowbody", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		fmt.Fprint(w, "abc")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	mux.HandleFunc("/short", func(w http.ResponseWriter, r *http.Request) {
		conn, _, _ := w.(http.Hijacker).Hijack()
		fmt.Fprint(conn, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
		conn.Close()
	})
	mux.HandleFunc("/empty", func(w http.ResponseWriter, r *http.Request) {
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
	})
	mux.HandleFunc("/raw", func(w http.ResponseWriter, r *http.Request) {
		conn, _, _ := w.(http.Hijacker).Hijack()
		fmt.Fprint(conn, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nx-envoy-upstream-service-time: 3\r\ncontent-length: 3\r\n\r\nraw")
		conn.Close()
	})
	return mux
}

// closedPort is a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestRun(t *testing.T) {
	srv := httptest.NewServer(testServer())
	defer srv.Close()
	tlsSrv := httptest.NewUnstartedServer(testServer())
	// The unverified case ends a handshake on purpose.
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0)
	tlsSrv.StartTLS()
	defer tlsSrv.Close()
	hostport := strings.TrimPrefix(srv.URL, "http://")
	_, port, _ := net.SplitHostPort(hostport)
	refused := closedPort(t)
	out := filepath.Join(t.TempDir(), "out")

	type tc struct {
		name     string
		args     []string
		code     int
		stdout   string // exact, unless stdoutRE is set
		stdoutRE string
		stderr   string // exact, unless stderrRE is set
		stderrRE string
		file     string // what -o wrote to out
		stdin    string
		lookedUp []string
	}
	re := regexp.QuoteMeta
	for _, c := range []tc{
		{name: "get", args: []string{srv.URL + "/"}, stdout: "hello\n"},
		{name: "no scheme", args: []string{"-sS", hostport + "/"}, stdout: "hello\n"},
		{name: "no path", args: []string{"-sS", hostport}, stdout: "hello\n"},
		{name: "head", args: []string{"-I", srv.URL + "/"},
			stdoutRE: `^HTTP/1\.1 200 OK\r\n(.+\r\n)*X-Test: yes\r\n(.+\r\n)*\r\n$`},
		{name: "head combined", args: []string{"-sSI", srv.URL + "/"},
			stdoutRE: `^HTTP/1\.1 200 OK\r\n(.+\r\n)*Content-Length: 6\r\n(.+\r\n)*\r\n$`},
		{name: "include", args: []string{"-si", srv.URL + "/"},
			stdoutRE: `^HTTP/1\.1 200 OK\r\n(.+\r\n)*X-Test: yes\r\n(.+\r\n)*\r\nhello\n$`},
		{name: "include shows the server's header case and interim responses", args: []string{"--include", srv.URL + "/raw"},
			stdout: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nx-envoy-upstream-service-time: 3\r\ncontent-length: 3\r\n\r\nraw"},
		{name: "output dev null with code", args: []string{"-s", "-o", "/dev/null", "-w", "%{http_code}", srv.URL + "/"}, stdout: "200"},
		{name: "output dev null combined", args: []string{"-sSo", "/dev/null", "-w", "%{http_code}\\n", srv.URL + "/404"}, stdout: "404\n"},
		{name: "output file", args: []string{"--silent", "--output", out, srv.URL + "/"}, file: "hello\n"},
		{name: "write-out variables", args: []string{"-s", "-w", "\\n%{response_code} %{size_download} 100%%\\t%{method}", srv.URL + "/"},
			stdout: "hello\n\n200 6 100%\tGET"},
		{name: "write-out time", args: []string{"-s", "-o", "/dev/null", "--write-out", "%{time_total}", srv.URL + "/"},
			stdoutRE: `^0\.\d{6}$`},
		{name: "write-out from a file", args: []string{"-s", "-o", "/dev/null", "-w", "@testdata/format.txt", srv.URL + "/"},
			stdout: "200 from file\n"},
		{name: "write-out unknown variable", args: []string{"-s", "-o", "/dev/null", "-w", "%{nope}.", srv.URL + "/"},
			stdout: ".", stderr: "curl: unknown --write-out variable: 'nope'\n"},
		{name: "404 without fail", args: []string{"-s", srv.URL + "/404"}, stdout: "nope\n"},
		{name: "fail", args: []string{"-f", srv.URL + "/404"}, code: 22,
			stderr: "curl: (22) The requested URL returned error: 404\n"},
		{name: "fail silent", args: []string{"-sf", srv.URL + "/404"}, code: 22},
		{name: "fail silent show-error", args: []string{"-sSf", "-w", "%{http_code}", srv.URL + "/404"}, code: 22,
			stdout: "404", stderr: "curl: (22) The requested URL returned error: 404\n"},
		{name: "fail on success", args: []string{"--fail", "-s", srv.URL + "/"}, stdout: "hello\n"},
		{name: "default request headers", args: []string{"-s", srv.URL + "/echo"},
			stdout: "method=GET host=" + hostport + " body=\nAccept=*/*\nUser-Agent=" + userAgent + "\n"},
		{name: "host header", args: []string{"-s", "-H", "Host: productpage.example", "-H", "X-A: 1", "--header", "X-A: 2", "-H", "Accept:", srv.URL + "/echo"},
			stdout: "method=GET host=productpage.example body=\nUser-Agent=" + userAgent + "\nX-A=1,2\n"},
		{name: "empty and removed headers", args: []string{"-s", "-H", "X-Empty;", "-H", "User-Agent:", srv.URL + "/echo"},
			stdout: "method=GET host=" + hostport + " body=\nAccept=*/*\nX-Empty=\n"},
		{name: "no host header", args: []string{"-s", "-H", "Host:", srv.URL + "/echo"},
			stdoutRE: `^400 Bad Request`},
		{name: "header order", args: []string{"-sv", "-o", "/dev/null", "-u", "a:b", "-H", "User-Agent: me", "-H", "Content-Type: text/plain", "-H", "X-A: 1", "-d", "x", srv.URL + "/echo"},
			stderrRE: `\n> POST /echo HTTP/1\.1\r\n> Host: ` + re(hostport) + `\r\n> Authorization: Basic YTpi\r\n> Accept: \*/\*\r\n` +
				`> User-Agent: me\r\n> Content-Type: text/plain\r\n> X-A: 1\r\n> Content-Length: 1\r\n> \r\n< `},
		{name: "user without password reads it", args: []string{"-s", "-u", "user", srv.URL + "/auth"}, stdin: "pass\n",
			stdout: "welcome\n", stderr: "Enter host password for user 'user':\n"},
		{name: "head with a get", args: []string{"-s", "-I", "-X", "GET", srv.URL + "/"},
			stdoutRE: `^HTTP/1\.1 200 OK\r\n(.+\r\n)*\r\n$`},
		{name: "location after 303 keeps -X without the body", args: []string{"-s", "-L", "-X", "PUT", "-d", "x", srv.URL + "/r303"},
			stdoutRE: `^method=PUT host=\S+ body=\n`},
		{name: "location after 302 keeps -X POST without the body", args: []string{"-s", "-L", "-X", "POST", "-d", "x", srv.URL + "/redirect"},
			stdoutRE: `^method=POST host=\S+ body=\n`},
		{name: "location after 307 keeps the body", args: []string{"-s", "-L", "-d", "x", srv.URL + "/r307"},
			stdoutRE: `^method=POST host=\S+ body=x\n`},
		{name: "request", args: []string{"-s", "-X", "DELETE", srv.URL + "/echo"},
			stdoutRE: `^method=DELETE `},
		{name: "data", args: []string{"-s", "-d", "a=1", "--data", "b=2", srv.URL + "/echo"},
			stdoutRE: `^method=POST host=\S+ body=a=1&b=2\n(.*\n)*Content-Length=7\nContent-Type=application/x-www-form-urlencoded\n`},
		{name: "data from a file", args: []string{"-s", "-d", "@testdata/form.txt", srv.URL + "/echo"},
			stdoutRE: `^method=POST host=\S+ body=a=1&b=2\n`},
		{name: "data with its own type and method", args: []string{"-s", "-X", "PUT", "-H", "Content-Type: application/json", "-d", `{"a":1}`, srv.URL + "/echo"},
			stdoutRE: `^method=PUT host=\S+ body=\{"a":1\}\n(.*\n)*Content-Type=application/json\n`},
		{name: "data with head", args: []string{"-I", "-d", "a", srv.URL + "/echo"}, code: 2,
			stderr: "Warning: You can only select one HTTP request method! You asked for both POST \nWarning: (-d, --data) and HEAD (-I, --head).\n"},
		{name: "user", args: []string{"-s", "-u", "user:pass", srv.URL + "/auth"}, stdout: "welcome\n"},
		{name: "no user", args: []string{"-s", "-w", "%{http_code}", srv.URL + "/auth"}, stdout: "401"},
		{name: "no location", args: []string{"-s", "-o", "/dev/null", "-w", "%{http_code}", srv.URL + "/redirect"}, stdout: "302"},
		{name: "location", args: []string{"-sL", "-w", "%{http_code} %{num_redirects} %{url_effective}", srv.URL + "/redirect"},
			stdoutRE: `^method=GET (.*\n)*200 1 ` + re(srv.URL+"/echo") + `$`},
		{name: "location turns a post into a get", args: []string{"-s", "--location", "-d", "x", srv.URL + "/redirect"},
			stdoutRE: `^method=GET host=\S+ body=\n`},
		{name: "location keeps -X", args: []string{"-s", "-L", "-X", "PATCH", srv.URL + "/redirect"},
			stdoutRE: `^method=PATCH `},
		{name: "location include", args: []string{"-siL", srv.URL + "/redirect"},
			stdoutRE: `^HTTP/1\.1 302 Found\r\n(.+\r\n)*Location: /echo\r\n(.+\r\n)*\r\nHTTP/1\.1 200 OK\r\n(.+\r\n)*\r\nmethod=GET `},
		{name: "verbose", args: []string{"-sv", srv.URL + "/"}, stdout: "hello\n",
			stderrRE: `^\*   Trying ` + re(hostport) + `\.\.\.\n\* Connected to 127\.0\.0\.1 \(127\.0\.0\.1\) port ` + port + `\n` +
				`> GET / HTTP/1\.1\r\n> Host: ` + re(hostport) + `\r\n> User-Agent: curl/\S+\r\n> Accept: \*/\*\r\n> \r\n` +
				`< HTTP/1\.1 200 OK\r\n(< .+\r\n)*< X-Test: yes\r\n(< .+\r\n)*< \r\n\* Closing connection\n$`},
		{name: "resolve", args: []string{"-s", "--resolve", "bookinfo.meshlab.test:" + port + ":127.0.0.1", "http://bookinfo.meshlab.test:" + port + "/echo"},
			stdoutRE: `^method=GET host=bookinfo\.meshlab\.test:` + port + ` `},
		{name: "http1.1", args: []string{"-s", "--http1.1", srv.URL + "/"}, stdout: "hello\n"},
		{name: "insecure https", args: []string{"-sk", tlsSrv.URL + "/"}, stdout: "hello\n"},
		{name: "https unverified", args: []string{"-sS", tlsSrv.URL + "/"}, code: 60,
			stderrRE: `^curl: \(60\) SSL certificate problem: .*\n$`},
		{name: "cannot resolve", args: []string{"http://nothing.invalid/"}, code: 6,
			stderr: "curl: (6) Could not resolve host: nothing.invalid\n", lookedUp: []string{"nothing.invalid"}},
		{name: "cannot resolve silent", args: []string{"-s", "-w", "%{http_code}", "nothing.invalid:9080/productpage"}, code: 6,
			stdout: "000", lookedUp: []string{"nothing.invalid"}},
		{name: "refused", args: []string{"http://" + refused + "/"}, code: 7,
			stderrRE: `^curl: \(7\) Failed to connect to 127\.0\.0\.1 port \d+ after \d+ ms: Couldn't connect to server\n$`},
		{name: "refused silent", args: []string{"-s", "-w", "%{http_code}", refused}, code: 7, stdout: "000"},
		{name: "max-time", args: []string{"-sS", "--max-time", "0.3", srv.URL + "/sleep"}, code: 28,
			stderr: "curl: (28) Operation timed out after 300 milliseconds with 0 bytes received\n"},
		{name: "max-time attached", args: []string{"-sSm0.3", srv.URL + "/slowbody"}, code: 28, stdout: "abc",
			stderr: "curl: (28) Operation timed out after 300 milliseconds with 3 out of 10 bytes received\n"},
		{name: "max-time not reached", args: []string{"-s", "-m", "5", "--connect-timeout", "2", srv.URL + "/"}, stdout: "hello\n"},
		{name: "short body", args: []string{"-sS", srv.URL + "/short"}, code: 18, stdout: "abc",
			stderr: "curl: (18) end of response with 7 bytes missing\n"},
		{name: "empty reply", args: []string{"-sS", srv.URL + "/empty"}, code: 52,
			stderr: "curl: (52) Empty reply from server\n"},
		{name: "unknown long option", args: []string{"--nope", srv.URL}, code: 2,
			stderr: "curl: option --nope: is unknown\ncurl: try 'curl --help' or 'curl --manual' for more information\n"},
		{name: "unknown short option", args: []string{"-sW", srv.URL}, code: 2,
			stderr: "curl: option -sW: is unknown\ncurl: try 'curl --help' or 'curl --manual' for more information\n"},
		{name: "missing parameter", args: []string{srv.URL, "-o"}, code: 2,
			stderr: "curl: option -o: requires parameter\ncurl: try 'curl --help' or 'curl --manual' for more information\n"},
		{name: "bad number", args: []string{"--max-time", "soon", srv.URL}, code: 2,
			stderr: "curl: option --max-time: expected a proper numerical parameter\ncurl: try 'curl --help' or 'curl --manual' for more information\n"},
		{name: "no url", args: []string{"-s"}, code: 2,
			stderr: "curl: no URL specified!\ncurl: try 'curl --help' or 'curl --manual' for more information\n"},
		{name: "bad port", args: []string{"http://127.0.0.1:99999/"}, code: 3,
			stderr: "curl: (3) URL rejected: Port number was not a decimal number between 0 and 65535\n"},
		{name: "no host", args: []string{"http:///x"}, code: 3,
			stderr: "curl: (3) URL rejected: No host part in the URL\n"},
		{name: "malformed silent", args: []string{"-s", "http://[::1/"}, code: 3},
		{name: "other protocol", args: []string{"ftp://127.0.0.1/"}, code: 1,
			stderr: "curl: (1) Protocol \"ftp\" not supported\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			os.Remove(out)
			var mu sync.Mutex
			var looked []string
			e := env{
				// No name leaves the machine: every lookup fails as a
				// .invalid name does, and is recorded.
				lookup: func(_ context.Context, host string) ([]string, error) {
					mu.Lock()
					defer mu.Unlock()
					looked = append(looked, host)
					return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
				},
				stdin: strings.NewReader(c.stdin),
			}
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), c.args, &stdout, &stderr, e)
			if code != c.code {
				t.Errorf("curl %q exited %d, want %d; stderr:\n%s", c.args, code, c.code, stderr.String())
			}
			check := func(what, got, want, wantRE string) {
				t.Helper()
				if wantRE != "" {
					if !regexp.MustCompile(wantRE).MatchString(got) {
						t.Errorf("%s:\n%q\nwant it to match\n%q", what, got, wantRE)
					}
					return
				}
				if got != want {
					t.Errorf("%s:\n%q\nwant\n%q", what, got, want)
				}
			}
			check("stdout", stdout.String(), c.stdout, c.stdoutRE)
			check("stderr", stderr.String(), c.stderr, c.stderrRE)
			if c.file != "" {
				b, err := os.ReadFile(out)
				if err != nil || string(b) != c.file {
					t.Errorf("-o wrote %q (%v), want %q", b, err, c.file)
				}
			}
			if strings.Join(looked, " ") != strings.Join(c.lookedUp, " ") {
				t.Errorf("looked up %q, want %q", looked, c.lookedUp)
			}
		})
	}
}
