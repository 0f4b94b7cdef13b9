package proxy

import (
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshlab/meshlab/dataplane/upstream"
)

// logWriter is one access log destination, Envoy's FileAccessLog path:
// /dev/stdout (the proxy's Config.AccessLog writer) or a file. Lines are
// formatted into pending, bounded by maxPending, and written out by the
// proxy's flusher (flushLogs), never on a request's path: a slow or
// stuck destination costs lines (counted in dropped), never a request's
// time.
type logWriter struct {
	path string

	mu      sync.Mutex
	pending []byte
	// sec and stamp cache %START_TIME% up to the seconds: formatting a
	// time was a third of the line's cost, and the lines of one second
	// share all but their milliseconds.
	sec   int64
	stamp []byte
	// scratch holds a JSON value while it is escaped.
	scratch []byte
	dropped atomic.Uint64

	// outMu serializes writes out and reopens.
	outMu sync.Mutex
	out   io.Writer
	file  *os.File
	spare []byte
	// kick asks the flusher for a write before the next tick.
	kick chan<- struct{}
}

// Bounds of a destination's buffer: past flushAt the flusher is woken,
// past maxPending lines are dropped until it has written.
const (
	flushAt    = 64 << 10
	maxPending = 1 << 20
)

func newLogWriter(w io.Writer) *logWriter {
	return &logWriter{path: stdoutPath, out: w}
}

// begin locks l and returns its pending buffer, the line to be appended
// at its end.
func (l *logWriter) begin() []byte {
	l.mu.Lock()
	return l.pending
}

// end keeps the line appended to b past n, unless that outgrows the
// buffer, and unlocks l.
func (l *logWriter) end(b []byte, n int) {
	if len(b) > maxPending {
		b = b[:n]
		l.dropped.Add(1)
	}
	l.pending = b
	full := len(b) >= flushAt
	l.mu.Unlock()
	if full && l.kick != nil {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
}

// Flush writes what is pending out.
func (l *logWriter) Flush() {
	l.outMu.Lock()
	defer l.outMu.Unlock()
	l.mu.Lock()
	b := l.pending
	l.pending = l.spare[:0]
	l.mu.Unlock()
	if len(b) > 0 && l.out != nil {
		// A destination that fails loses the lines; requests never wait
		// on, or fail for, their log line.
		_, _ = l.out.Write(b)
	}
	l.spare = b[:0]
}

// http writes Istio's default access log line (Envoy's format plus the
// upstream cluster and addresses):
//
//	[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS%
//	%RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED%
//	%BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"
//	"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER% %UPSTREAM_LOCAL_ADDRESS%
//	%DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%
func (l *logWriter) http(b []byte, start time.Time, r *http.Request, ex *exchange) []byte {
	b = append(b, '[')
	b = l.appendStart(b, start)
	b = append(b, "] \""...)
	b = append(b, r.Method...)
	b = append(b, ' ')
	b = append(b, r.RequestURI...)
	b = append(b, ' ')
	b = append(b, r.Proto...)
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, int64(ex.status), 10)
	b = append(b, ' ')
	b = ex.flags.appendTo(b)
	b = append(b, ' ')
	d := ex.details
	if d == "" && ex.status != 0 {
		d = "via_upstream"
	}
	b = dash(b, d)
	b = append(b, " - \""...)
	b = dash(b, ex.transportFailure)
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, max(r.ContentLength, 0), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, ex.bytes, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, time.Since(start).Milliseconds(), 10)
	b = append(b, ' ')
	if ex.endpoint != nil && ex.upstreamDur > 0 {
		b = strconv.AppendInt(b, ex.upstreamDur.Milliseconds(), 10)
	} else {
		b = append(b, '-')
	}
	b = append(b, " \""...)
	b = dash(b, r.Header.Get("X-Forwarded-For"))
	b = append(b, "\" \""...)
	b = dash(b, r.Header.Get("User-Agent"))
	b = append(b, "\" \""...)
	b = dash(b, r.Header.Get("X-Request-Id"))
	b = append(b, "\" \""...)
	b = dash(b, r.Host)
	b = append(b, "\" \""...)
	b = upstreamHost(b, ex.endpoint)
	b = append(b, "\" "...)
	if ex.cluster != nil {
		b = append(b, ex.cluster.Name...)
	} else {
		b = append(b, '-')
	}
	b = append(b, " - "...)
	b = ex.conn.local.AppendTo(b)
	b = append(b, ' ')
	b = ex.conn.remote.AppendTo(b)
	b = append(b, ' ')
	b = dash(b, ex.conn.sni)
	b = append(b, ' ')
	if ex.route != nil {
		b = dash(b, ex.route.Name)
	} else {
		b = append(b, '-')
	}
	return append(b, '\n')
}

// tcp writes the line of a proxied TCP connection in the same format.
func (l *logWriter) tcp(b []byte, start time.Time, ci *connInfo, cluster string, ep *upstream.Endpoint, flags string, received, sent int64) []byte {
	b = append(b, '[')
	b = l.appendStart(b, start)
	b = append(b, "] \"- - -\" 0 "...)
	b = dash(b, flags)
	b = append(b, " - - \"-\" "...)
	b = strconv.AppendInt(b, received, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, sent, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, time.Since(start).Milliseconds(), 10)
	b = append(b, " - \"-\" \"-\" \"-\" \"-\" \""...)
	b = upstreamHost(b, ep)
	b = append(b, "\" "...)
	b = dash(b, cluster)
	b = append(b, " - "...)
	b = ci.orig.AppendTo(b)
	b = append(b, ' ')
	b = ci.remote.AppendTo(b)
	b = append(b, ' ')
	b = dash(b, ci.sni)
	return append(b, " -\n"...)
}

// appendStart appends t as Envoy's %START_TIME%, 2006-01-02T15:04:05.000Z
// (milliseconds truncated, as Go's layout does). Requires l.mu.
func (l *logWriter) appendStart(b []byte, t time.Time) []byte {
	t = t.UTC()
	if sec := t.Unix(); sec != l.sec || l.stamp == nil {
		l.sec = sec
		l.stamp = t.Truncate(time.Second).AppendFormat(l.stamp[:0], "2006-01-02T15:04:05.")
	}
	b = append(b, l.stamp...)
	ms := t.Nanosecond() / int(time.Millisecond)
	return append(b, byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
}

func dash(b []byte, s string) []byte {
	if s == "" {
		return append(b, '-')
	}
	return append(b, s...)
}

func upstreamHost(b []byte, ep *upstream.Endpoint) []byte {
	if ep == nil {
		return append(b, '-')
	}
	return append(b, ep.Addr...)
}

// responseFlags are Envoy's %RESPONSE_FLAGS% of an HTTP request.
type responseFlags uint32

// The flags the proxy sets, in the order Envoy prints them.
const (
	flagUH   responseFlags = 1 << iota // no healthy upstream
	flagUT                             // upstream request timeout
	flagUF                             // upstream connection failure
	flagUC                             // upstream connection termination
	flagNR                             // no route
	flagDI                             // delay injected
	flagFI                             // fault (abort) injected
	flagDC                             // downstream connection termination
	flagURX                            // upstream retry limit exceeded
	flagUO                             // upstream overflow (circuit breaking)
	flagUPE                            // upstream protocol error
	flagDPE                            // downstream protocol error
	flagSI                             // stream idle timeout
	flagUAEX                           // denied by the external authorization service
)

var flagNames = [...]string{"UH", "UT", "UF", "UC", "NR", "DI", "FI", "DC", "URX", "UO", "UPE", "DPE", "SI", "UAEX"}

// appendTo writes the flags comma-separated, as Envoy does, or "-".
func (f responseFlags) appendTo(b []byte) []byte {
	if f == 0 {
		return append(b, '-')
	}
	first := true
	for i, n := range flagNames {
		if f&(1<<i) == 0 {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, n...)
	}
	return b
}

func (f responseFlags) String() string { return string(f.appendTo(nil)) }
