package proxy

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/meshlab/meshlab/dataplane/upstream"
)

// A custom access log format, as Istio's meshConfig.accessLogFormat (or
// the Telemetry API) gives Envoy a text format: literal text and
// %OPERATOR% commands. Istio's default line keeps its allocation-free
// writer (accesslog.go); a custom format is what brings the operators of
// the connection's TLS — the peer's SPIFFE ID above all — into the log.

// logEntry is what one line may draw on: a request (r and ex), or a TCP
// connection (the tcp fields).
type logEntry struct {
	start time.Time
	r     *http.Request
	ex    *exchange
	ci    *connInfo
	// A TCP connection's.
	cluster        string
	ep             *upstream.Endpoint
	flags          string
	received, sent int64
}

type logOp func(b []byte, e *logEntry) []byte

// valueKind is how an operator's value goes into a JSON log (Envoy's
// typed JSON values): a number, a string, or a string that is null when
// absent (what a text line shows as "-").
type valueKind uint8

const (
	kindNullable valueKind = iota
	kindString
	kindNumber
)

// logFormat is a compiled format.
type logFormat struct {
	ops []logOp
	// kinds are the ops' value kinds; literal ops are kindString.
	kinds []valueKind
	// literals counts the literal ops: a format that is one operator and
	// nothing else gives a typed JSON value.
	literals int
}

// ParseAccessLogFormat checks an Envoy text access log format: every
// %OPERATOR% must be one the proxy implements.
func ParseAccessLogFormat(format string) error {
	_, err := compileLogFormat(format)
	return err
}

func compileLogFormat(format string) (*logFormat, error) {
	f := &logFormat{}
	rest := format
	for rest != "" {
		i := strings.IndexByte(rest, '%')
		if i < 0 {
			f.literal(rest)
			break
		}
		if i > 0 {
			f.literal(rest[:i])
		}
		rest = rest[i+1:]
		j := strings.IndexByte(rest, '%')
		if j < 0 {
			return nil, fmt.Errorf("access log format: unterminated %%%s", rest)
		}
		cmd := rest[:j]
		rest = rest[j+1:]
		if cmd == "" {
			f.literal("%") // %% is a literal percent
			continue
		}
		op, kind, err := logOperator(cmd)
		if err != nil {
			return nil, fmt.Errorf("access log format: %w", err)
		}
		f.ops = append(f.ops, op)
		f.kinds = append(f.kinds, kind)
	}
	return f, nil
}

func (f *logFormat) literal(s string) {
	f.ops = append(f.ops, literal(s))
	f.kinds = append(f.kinds, kindString)
	f.literals++
}

func literal(s string) logOp {
	return func(b []byte, _ *logEntry) []byte { return append(b, s...) }
}

// logOperator compiles one command: Envoy's name, with REQ(...) and
// RESP(...) taking a header (an alternative after '?'), and an optional
// :N length limit.
func logOperator(cmd string) (logOp, valueKind, error) {
	limit := -1
	if k := strings.LastIndexByte(cmd, ':'); k > 0 && strings.HasSuffix(cmd[:k], ")") {
		n, err := strconv.Atoi(cmd[k+1:])
		if err != nil {
			return nil, 0, fmt.Errorf("%%%s%%: bad length", cmd)
		}
		cmd, limit = cmd[:k], n
	}
	op, err := baseOperator(cmd)
	kind := operatorKind(cmd)
	if err != nil || limit < 0 {
		return op, kind, err
	}
	return func(b []byte, e *logEntry) []byte {
		n := len(b)
		b = op(b, e)
		if len(b)-n > limit {
			b = b[:n+limit]
		}
		return b
	}, kind, nil
}

// operatorKind is the JSON type of a command's value, as Envoy's
// formatters give it: counts and codes are numbers, the start time,
// flags and the downstream addresses always strings, the rest strings
// or null.
func operatorKind(cmd string) valueKind {
	switch cmd {
	case "RESPONSE_CODE", "BYTES_RECEIVED", "BYTES_SENT", "DURATION":
		return kindNumber
	case "START_TIME", "RESPONSE_FLAGS", "DOWNSTREAM_LOCAL_ADDRESS", "DOWNSTREAM_REMOTE_ADDRESS":
		return kindString
	}
	return kindNullable
}

func baseOperator(cmd string) (logOp, error) {
	if arg, ok := strings.CutPrefix(cmd, "REQ("); ok && strings.HasSuffix(arg, ")") {
		return headerOp(strings.TrimSuffix(arg, ")"), true), nil
	}
	if arg, ok := strings.CutPrefix(cmd, "RESP("); ok && strings.HasSuffix(arg, ")") {
		return headerOp(strings.TrimSuffix(arg, ")"), false), nil
	}
	str := func(f func(e *logEntry) string) logOp {
		return func(b []byte, e *logEntry) []byte { return dash(b, f(e)) }
	}
	peer := func(f func(id *peerIdentity) string) logOp {
		return str(func(e *logEntry) string {
			if e.ci == nil || e.ci.id == nil {
				return ""
			}
			return f(e.ci.id)
		})
	}
	upTLS := func(f func(cs *tls.ConnectionState) string) logOp {
		return str(func(e *logEntry) string {
			if e.ex == nil || e.ex.upTLS == nil {
				return ""
			}
			return f(e.ex.upTLS)
		})
	}
	switch cmd {
	case "START_TIME":
		return func(b []byte, e *logEntry) []byte {
			return e.start.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z")
		}, nil
	case "PROTOCOL":
		return str(func(e *logEntry) string {
			if e.r == nil {
				return ""
			}
			return e.r.Proto
		}), nil
	case "RESPONSE_CODE":
		return func(b []byte, e *logEntry) []byte {
			if e.ex == nil {
				return append(b, '0')
			}
			return strconv.AppendInt(b, int64(e.ex.status), 10)
		}, nil
	case "RESPONSE_FLAGS":
		return func(b []byte, e *logEntry) []byte {
			if e.ex == nil {
				return dash(b, e.flags)
			}
			return e.ex.flags.appendTo(b)
		}, nil
	case "RESPONSE_CODE_DETAILS":
		return str(func(e *logEntry) string {
			if e.ex == nil {
				return ""
			}
			if e.ex.details == "" && e.ex.status != 0 {
				return "via_upstream"
			}
			return e.ex.details
		}), nil
	case "CONNECTION_TERMINATION_DETAILS":
		return str(func(*logEntry) string { return "" }), nil
	case "UPSTREAM_TRANSPORT_FAILURE_REASON":
		return str(func(e *logEntry) string {
			if e.ex == nil {
				return ""
			}
			return e.ex.transportFailure
		}), nil
	case "BYTES_RECEIVED":
		return func(b []byte, e *logEntry) []byte {
			if e.ex == nil {
				return strconv.AppendInt(b, e.received, 10)
			}
			return strconv.AppendInt(b, max(e.r.ContentLength, 0), 10)
		}, nil
	case "BYTES_SENT":
		return func(b []byte, e *logEntry) []byte {
			if e.ex == nil {
				return strconv.AppendInt(b, e.sent, 10)
			}
			return strconv.AppendInt(b, e.ex.bytes, 10)
		}, nil
	case "DURATION":
		return func(b []byte, e *logEntry) []byte {
			return strconv.AppendInt(b, time.Since(e.start).Milliseconds(), 10)
		}, nil
	case "UPSTREAM_HOST":
		return func(b []byte, e *logEntry) []byte {
			if e.ex != nil {
				return upstreamHost(b, e.ex.endpoint)
			}
			return upstreamHost(b, e.ep)
		}, nil
	case "UPSTREAM_CLUSTER":
		return str(func(e *logEntry) string {
			if e.ex != nil {
				if e.ex.cluster != nil {
					return e.ex.cluster.Name
				}
				return ""
			}
			return e.cluster
		}), nil
	case "UPSTREAM_LOCAL_ADDRESS":
		return str(func(*logEntry) string { return "" }), nil
	case "DOWNSTREAM_LOCAL_ADDRESS":
		return func(b []byte, e *logEntry) []byte {
			if e.ci.orig.IsValid() {
				return e.ci.orig.AppendTo(b)
			}
			return e.ci.local.AppendTo(b)
		}, nil
	case "DOWNSTREAM_REMOTE_ADDRESS":
		return func(b []byte, e *logEntry) []byte { return e.ci.remote.AppendTo(b) }, nil
	case "REQUESTED_SERVER_NAME":
		return str(func(e *logEntry) string { return e.ci.sni }), nil
	case "ROUTE_NAME":
		return str(func(e *logEntry) string {
			if e.ex == nil || e.ex.route == nil {
				return ""
			}
			return e.ex.route.Name
		}), nil
	case "DOWNSTREAM_PEER_URI_SAN":
		return peer(func(id *peerIdentity) string { return strings.Join(id.uriSANs, ",") }), nil
	case "DOWNSTREAM_LOCAL_URI_SAN":
		return peer(func(id *peerIdentity) string { return id.localURI }), nil
	case "DOWNSTREAM_PEER_SUBJECT":
		return peer(func(id *peerIdentity) string { return id.subject }), nil
	case "DOWNSTREAM_PEER_FINGERPRINT_256":
		return peer(func(id *peerIdentity) string { return id.hash }), nil
	case "DOWNSTREAM_TLS_VERSION":
		return peer(func(id *peerIdentity) string { return id.version }), nil
	case "UPSTREAM_PEER_URI_SAN":
		return upTLS(func(cs *tls.ConnectionState) string {
			if len(cs.PeerCertificates) == 0 {
				return ""
			}
			var uris []string
			for _, u := range cs.PeerCertificates[0].URIs {
				uris = append(uris, u.String())
			}
			return strings.Join(uris, ",")
		}), nil
	case "UPSTREAM_TLS_VERSION":
		return upTLS(func(cs *tls.ConnectionState) string { return tlsVersionName(cs.Version) }), nil
	}
	return nil, fmt.Errorf("%%%s%% is not an operator this proxy implements", cmd)
}

// headerOp is %REQ(h?alt)% / %RESP(h?alt)%: the header's value, else the
// alternative's; :method, :path and :authority are the request's.
func headerOp(arg string, req bool) logOp {
	name, alt, _ := strings.Cut(arg, "?")
	get := func(e *logEntry, h string) string {
		if e.ex == nil {
			return ""
		}
		if !req {
			return e.ex.Header().Get(h)
		}
		switch strings.ToLower(h) {
		case ":method":
			return e.r.Method
		case ":path":
			return e.r.RequestURI
		case ":authority":
			return e.r.Host
		}
		return e.r.Header.Get(h)
	}
	return func(b []byte, e *logEntry) []byte {
		v := get(e, name)
		if v == "" && alt != "" {
			v = get(e, alt)
		}
		return dash(b, v)
	}
}

// tlsVersionName is Envoy's spelling of a TLS version.
func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return ""
}

// append appends e's line in format f to b. Envoy adds nothing to a
// text format: its newline is the format's (Istio's formats end in one).
func (f *logFormat) append(b []byte, e *logEntry) []byte {
	for _, op := range f.ops {
		b = op(b, e)
	}
	return b
}
