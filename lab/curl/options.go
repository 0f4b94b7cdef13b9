package curl

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// options is a parsed command line.
type options struct {
	silent, showError, head, include, verbose, insecure, location, fail bool

	outputs        []string // -o, one for each URL in turn
	writeOut       string
	headers        []string
	method         string
	data           []string
	maxTime        time.Duration
	connectTimeout time.Duration
	resolve        []string
	user           string
	userSet        bool
	urls           []string
}

// flag is one option curl knows, by its long and short names.
type flag struct {
	long  string
	short byte
	arg   bool
	set   func(o *options, v string) error
}

func on(f func(o *options)) func(*options, string) error {
	return func(o *options, _ string) error { f(o); return nil }
}

func seconds(dst func(o *options) *time.Duration) func(*options, string) error {
	return func(o *options, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 {
			return errNumber
		}
		*dst(o) = time.Duration(f * float64(time.Second))
		return nil
	}
}

var errNumber = fmt.Errorf("expected a proper numerical parameter")

var flags = []flag{
	{"silent", 's', false, on(func(o *options) { o.silent = true })},
	{"show-error", 'S', false, on(func(o *options) { o.showError = true })},
	{"head", 'I', false, on(func(o *options) { o.head = true })},
	{"include", 'i', false, on(func(o *options) { o.include = true })},
	{"verbose", 'v', false, on(func(o *options) { o.verbose = true })},
	{"insecure", 'k', false, on(func(o *options) { o.insecure = true })},
	{"location", 'L', false, on(func(o *options) { o.location = true })},
	{"fail", 'f', false, on(func(o *options) { o.fail = true })},
	// Only HTTP/1.1 is spoken, so asking for it changes nothing.
	{"http1.1", 0, false, on(func(*options) {})},
	{"output", 'o', true, func(o *options, v string) error { o.outputs = append(o.outputs, v); return nil }},
	{"write-out", 'w', true, func(o *options, v string) error { o.writeOut = v; return nil }},
	{"header", 'H', true, func(o *options, v string) error { o.headers = append(o.headers, v); return nil }},
	{"request", 'X', true, func(o *options, v string) error { o.method = v; return nil }},
	{"data", 'd', true, func(o *options, v string) error { o.data = append(o.data, v); return nil }},
	{"max-time", 'm', true, seconds(func(o *options) *time.Duration { return &o.maxTime })},
	{"connect-timeout", 0, true, seconds(func(o *options) *time.Duration { return &o.connectTimeout })},
	{"resolve", 0, true, func(o *options, v string) error { o.resolve = append(o.resolve, v); return nil }},
	{"user", 'u', true, func(o *options, v string) error { o.user, o.userSet = v, true; return nil }},
	{"url", 0, true, func(o *options, v string) error { o.urls = append(o.urls, v); return nil }},
}

// parse reads curl's command line: long options, short ones alone or
// combined (-sSI), a short option's argument attached (-m5) or next, and
// every other word a URL. Its errors are curl's `option X: ...` messages.
func parse(args []string) (*options, error) {
	o := &options{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		next := func(name string) (string, error) {
			if i+1 >= len(args) {
				return "", fmt.Errorf("option %s: requires parameter", name)
			}
			i++
			return args[i], nil
		}
		switch {
		case strings.HasPrefix(a, "--"):
			f := lookupLong(a[2:])
			if f == nil {
				return nil, fmt.Errorf("option %s: is unknown", a)
			}
			v := ""
			if f.arg {
				var err error
				if v, err = next(a); err != nil {
					return nil, err
				}
			}
			if err := f.set(o, v); err != nil {
				return nil, fmt.Errorf("option %s: %w", a, err)
			}
		case strings.HasPrefix(a, "-") && len(a) > 1:
			for j := 1; j < len(a); j++ {
				f := lookupShort(a[j])
				if f == nil {
					return nil, fmt.Errorf("option %s: is unknown", a)
				}
				name := "-" + string(a[j])
				v := ""
				if f.arg {
					if j+1 < len(a) {
						v = a[j+1:]
					} else {
						var err error
						if v, err = next(name); err != nil {
							return nil, err
						}
					}
					j = len(a)
				}
				if err := f.set(o, v); err != nil {
					return nil, fmt.Errorf("option %s: %w", name, err)
				}
			}
		default:
			o.urls = append(o.urls, a)
		}
	}
	return o, nil
}

func lookupLong(name string) *flag {
	for i := range flags {
		if flags[i].long == name {
			return &flags[i]
		}
	}
	return nil
}

func lookupShort(c byte) *flag {
	for i := range flags {
		if flags[i].short != 0 && flags[i].short == c {
			return &flags[i]
		}
	}
	return nil
}

// writeOut prints -w's format for a finished transfer: %{variable}, %% and
// the escapes \n \r \t \\.
func (c *client) writeOut(w io.Writer, r *result) {
	var b strings.Builder
	f := c.wout
	for i := 0; i < len(f); i++ {
		switch {
		case f[i] == '%' && i+1 < len(f) && f[i+1] == '%':
			b.WriteByte('%')
			i++
		case f[i] == '%' && i+1 < len(f) && f[i+1] == '{':
			end := strings.IndexByte(f[i:], '}')
			if end < 0 {
				b.WriteString(f[i:])
				i = len(f)
				continue
			}
			name := f[i+2 : i+end]
			if v, ok := variable(name, r); ok {
				b.WriteString(v)
			} else {
				fmt.Fprintf(c.stderr, "curl: unknown --write-out variable: '%s'\n", name)
			}
			i += end
		case f[i] == '\\' && i+1 < len(f):
			switch f[i+1] {
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case '\\':
				b.WriteByte('\\')
			default:
				b.WriteByte('\\')
				b.WriteByte(f[i+1])
			}
			i++
		default:
			b.WriteByte(f[i])
		}
	}
	fmt.Fprint(w, b.String())
}

func variable(name string, r *result) (string, bool) {
	secs := func(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 6, 64) }
	switch name {
	case "http_code", "response_code":
		return fmt.Sprintf("%03d", r.code), true
	case "time_total":
		return secs(r.total), true
	case "size_download":
		return strconv.FormatInt(r.size, 10), true
	case "url_effective":
		return r.url, true
	case "num_redirects":
		return strconv.Itoa(r.redirects), true
	case "content_type":
		return r.ctype, true
	case "remote_ip":
		return r.remoteIP, true
	case "remote_port":
		return r.port, true
	case "method":
		return r.method, true
	case "exitcode":
		return strconv.Itoa(r.exit), true
	case "errormsg":
		return r.errmsg, true
	}
	return "", false
}
