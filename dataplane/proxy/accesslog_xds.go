package proxy

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	celv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/filters/cel/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshlab/meshlab/dataplane/fieldcheck"
	"github.com/meshlab/meshlab/dataplane/upstream"
)

// Access logs as the control plane configures them: the access_log
// entries of each HTTP connection manager and tcp_proxy (Istio's
// meshConfig.accessLogFile/accessLogFormat/accessLogEncoding and the
// Telemetry API's accessLogging), each an envoy.access_loggers.file with
// a path and a text or JSON format. A listener without an entry logs
// nothing.

const (
	fileAccessLogName = "envoy.access_loggers.file"
	celFilterName     = "envoy.access_loggers.extension_filters.cel"
	stdoutPath        = "/dev/stdout"
)

// istioTextFormat is Istio's default access log format (its
// EnvoyTextLogFormat), which the allocation-free writer prints.
const istioTextFormat = `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%` + "\n"

// envoyTextFormat is Envoy's format for a file log that names none.
const envoyTextFormat = `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"` + "\n"

// accessLogger is one compiled access_log entry.
type accessLogger struct {
	w *logWriter
	// text or json is the format; neither: Istio's default line.
	text *logFormat
	json *jsonFormat
	// filter is the entry's CEL filter (nil: every line is written).
	filter *celExpr
}

// compileLogFilter compiles an access_log entry's filter: Envoy's CEL
// extension filter is the one the proxy implements (the Telemetry API's
// accessLogging[].filter); any other is refused, since skipping it would
// log what the user asked to keep out.
func compileLogFilter(f *accesslogv3.AccessLogFilter, node *corev3.Node) (*celExpr, error) {
	if f == nil {
		return nil, nil
	}
	x := f.GetExtensionFilter()
	if x == nil {
		return nil, fmt.Errorf("filter %T is not one this proxy implements", f.GetFilterSpecifier())
	}
	if err := fieldcheck.Only(x, "name", "typed_config"); err != nil {
		return nil, fmt.Errorf("filter %s: %w", x.GetName(), err)
	}
	var ef celv3.ExpressionFilter
	tc := x.GetTypedConfig()
	if tc == nil || !tc.MessageIs(&ef) {
		return nil, fmt.Errorf("filter %s: only %s (ExpressionFilter) is supported", x.GetName(), celFilterName)
	}
	if err := tc.UnmarshalTo(&ef); err != nil {
		return nil, fmt.Errorf("filter %s: decode ExpressionFilter: %w", x.GetName(), err)
	}
	if err := fieldcheck.Only(&ef, "expression", "cel_config"); err != nil {
		return nil, fmt.Errorf("filter %s: %w", x.GetName(), err)
	}
	o := envoyFilterCEL
	if cfg := ef.GetCelConfig(); cfg != nil {
		if err := fieldcheck.Only(cfg, "enable_string_conversion", "enable_string_concat"); err != nil {
			return nil, fmt.Errorf("filter %s: cel_config: %w", x.GetName(), err)
		}
		o.stringConversion, o.stringConcat = cfg.GetEnableStringConversion(), cfg.GetEnableStringConcat()
	}
	c, err := compileCEL(ef.GetExpression(), o, node)
	if err != nil {
		return nil, fmt.Errorf("filter %s: %w", x.GetName(), err)
	}
	return c, nil
}

// logSinks hands out the destinations of access_log entries while a
// configuration is built: one writer per path, kept across updates.
type logSinks interface {
	sink(path string) (*logWriter, error)
}

// compileAccessLogs compiles a connection manager's or tcp_proxy's
// access_log entries. An entry the proxy cannot honour is refused: a
// filter skipped would log what the user asked to keep out.
// node is the proxy's, which a filter reads as xds.node.
func compileAccessLogs(entries []*accesslogv3.AccessLog, sinks logSinks, node *corev3.Node) ([]*accessLogger, error) {
	var out []*accessLogger
	for i, e := range entries {
		if err := fieldcheck.Only(e, "name", "typed_config", "filter"); err != nil {
			return nil, fmt.Errorf("access_log %d: %w", i, err)
		}
		filter, err := compileLogFilter(e.GetFilter(), node)
		if err != nil {
			return nil, fmt.Errorf("access_log %d: %w", i, err)
		}
		tc := e.GetTypedConfig()
		if tc == nil || !tc.MessageIs((*filev3.FileAccessLog)(nil)) {
			return nil, fmt.Errorf("access_log %d (%s): only %s (FileAccessLog) is supported", i, e.GetName(), fileAccessLogName)
		}
		var fal filev3.FileAccessLog
		if err := tc.UnmarshalTo(&fal); err != nil {
			return nil, fmt.Errorf("access_log %d: decode FileAccessLog: %w", i, err)
		}
		al, err := compileFileLog(&fal, sinks)
		if err != nil {
			return nil, fmt.Errorf("access_log %d (%s): %w", i, fal.GetPath(), err)
		}
		if al != nil {
			al.filter = filter
			out = append(out, al)
		}
	}
	return out, nil
}

// compileFileLog compiles a FileAccessLog; nil when its destination is
// the proxy's stdout and the proxy has none (--no-access-log).
func compileFileLog(fal *filev3.FileAccessLog, sinks logSinks) (*accessLogger, error) {
	if err := fieldcheck.Only(fal, "path", "log_format"); err != nil {
		return nil, err
	}
	if fal.GetPath() == "" {
		return nil, fmt.Errorf("FileAccessLog without a path")
	}
	al := &accessLogger{}
	if lf := fal.GetLogFormat(); lf != nil {
		if err := fieldcheck.Only(lf, "text_format_source", "json_format"); err != nil {
			return nil, err
		}
		switch {
		case lf.GetTextFormatSource() != nil:
			src := lf.GetTextFormatSource()
			if err := fieldcheck.Only(src, "inline_string"); err != nil {
				return nil, err
			}
			if f := src.GetInlineString(); f != istioTextFormat {
				t, err := compileLogFormat(f)
				if err != nil {
					return nil, err
				}
				al.text = t
			}
		case lf.GetJsonFormat() != nil:
			j, err := compileJSONFormat(lf.GetJsonFormat())
			if err != nil {
				return nil, err
			}
			al.json = j
		}
	} else {
		t, err := compileLogFormat(envoyTextFormat)
		if err != nil {
			return nil, err
		}
		al.text = t
	}
	w, err := sinks.sink(fal.GetPath())
	if err != nil || w == nil {
		return nil, err
	}
	al.w = w
	return al, nil
}

// logHTTP writes a finished request's line to every access log of the
// connection manager it ran through.
func (p *Proxy) logHTTP(start time.Time, r *http.Request, ex *exchange) {
	h := ex.hcm
	if h == nil {
		h = ex.conn.chain.http
	}
	var e *logEntry
	entry := func() *logEntry {
		if e == nil {
			e = &logEntry{start: start, r: r, ex: ex, ci: ex.conn}
		}
		return e
	}
	for _, al := range h.logs {
		if al.filter != nil && !al.filter.matches(&logEntry{start: start, r: r, ex: ex, ci: ex.conn}) {
			continue
		}
		w := al.w
		b := w.begin()
		n := len(b)
		switch {
		case al.json != nil:
			b = al.json.line(b, w, entry())
		case al.text != nil:
			b = al.text.append(b, entry())
		default:
			b = w.http(b, start, r, ex)
		}
		w.end(b, n)
	}
}

// logTCP writes a proxied connection's line to its tcp_proxy's logs.
func (p *Proxy) logTCP(start time.Time, ci *connInfo, cluster string, ep *upstream.Endpoint, flags string, received, sent int64) {
	var le *logEntry
	e := func() *logEntry {
		if le == nil {
			le = &logEntry{start: start, ci: ci, cluster: cluster, ep: ep, flags: flags, received: received, sent: sent}
		}
		return le
	}
	for _, al := range ci.chain.tcp.logs {
		if al.filter != nil && !al.filter.matches(&logEntry{start: start, ci: ci, cluster: cluster, ep: ep, flags: flags, received: received, sent: sent}) {
			continue
		}
		w := al.w
		b := w.begin()
		n := len(b)
		switch {
		case al.json != nil:
			b = al.json.line(b, w, e())
		case al.text != nil:
			b = al.text.append(b, e())
		default:
			b = w.tcp(b, start, ci, cluster, ep, flags, received, sent)
		}
		w.end(b, n)
	}
}

// jsonFormat is Envoy's json_format: an object whose string values are
// format strings. A value that is one operator alone is typed (numbers
// as numbers, an absent value null); any other string is a string, its
// absent values "-"; numbers, booleans and nested objects are kept.
type jsonFormat struct {
	fields []jsonField
}

type jsonField struct {
	// key is the quoted key and its colon.
	key    []byte
	format *logFormat
	object *jsonFormat
	// raw is a literal non-string value, as JSON.
	raw []byte
}

func compileJSONFormat(s *structpb.Struct) (*jsonFormat, error) {
	keys := make([]string, 0, len(s.GetFields()))
	for k := range s.GetFields() {
		keys = append(keys, k)
	}
	// The Struct has no order; Envoy's follows its map, so a fixed
	// (sorted) one is as faithful and reproducible.
	sort.Strings(keys)
	j := &jsonFormat{}
	for _, k := range keys {
		v := s.GetFields()[k]
		f := jsonField{key: append(appendJSONString(nil, k), ':')}
		switch v.GetKind().(type) {
		case *structpb.Value_StringValue:
			lf, err := compileLogFormat(v.GetStringValue())
			if err != nil {
				return nil, fmt.Errorf("json_format %q: %w", k, err)
			}
			f.format = lf
		case *structpb.Value_StructValue:
			o, err := compileJSONFormat(v.GetStructValue())
			if err != nil {
				return nil, fmt.Errorf("json_format %q: %w", k, err)
			}
			f.object = o
		case *structpb.Value_NumberValue:
			f.raw = strconv.AppendFloat(nil, v.GetNumberValue(), 'g', -1, 64)
		case *structpb.Value_BoolValue:
			f.raw = strconv.AppendBool(nil, v.GetBoolValue())
		case *structpb.Value_NullValue:
			f.raw = []byte("null")
		default:
			return nil, fmt.Errorf("json_format %q: a list value is not supported", k)
		}
		j.fields = append(j.fields, f)
	}
	return j, nil
}

// line appends e as a JSON object and a newline, as Envoy writes one.
func (j *jsonFormat) line(b []byte, w *logWriter, e *logEntry) []byte {
	return append(j.append(b, w, e), '\n')
}

func (j *jsonFormat) append(b []byte, w *logWriter, e *logEntry) []byte {
	b = append(b, '{')
	for i, f := range j.fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, f.key...)
		switch {
		case f.object != nil:
			b = f.object.append(b, w, e)
		case f.raw != nil:
			b = append(b, f.raw...)
		default:
			b = f.format.appendJSON(b, w, e)
		}
	}
	return append(b, '}')
}

// appendJSON appends f's value for e as a JSON value.
func (f *logFormat) appendJSON(b []byte, w *logWriter, e *logEntry) []byte {
	w.scratch = f.append(w.scratch[:0], e)
	v := w.scratch
	if len(f.ops) == 1 && f.literals == 0 {
		switch f.kinds[0] {
		case kindNumber:
			return append(b, v...)
		case kindNullable:
			if len(v) == 0 || len(v) == 1 && v[0] == '-' {
				return append(b, "null"...)
			}
		}
	}
	return appendJSONString(b, string(v))
}

// appendJSONString appends s quoted as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// logSinkSet is the proxy's access log destinations by path.
type logSinkSet struct {
	p *Proxy
	// m is guarded by p.mu (builds and applies hold it).
	m map[string]*logWriter
}

// sink returns the writer of path, opening a file the first time it is
// named. Requires p.mu.
func (s *logSinkSet) sink(path string) (*logWriter, error) {
	if w := s.m[path]; w != nil {
		return w, nil
	}
	if path == stdoutPath {
		if s.p.cfg.AccessLog == nil {
			return nil, nil
		}
		w := newLogWriter(s.p.cfg.AccessLog)
		w.kick = s.p.logKick
		s.m[path] = w
		return w, nil
	}
	f, err := openLogFile(path)
	if err != nil {
		return nil, err
	}
	w := &logWriter{path: path, out: f, file: f, kick: s.p.logKick}
	s.m[path] = w
	return w, nil
}

func openLogFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open access log file: %w", err)
	}
	return f, nil
}

// applied keeps the destinations rt's logs use, reopening their files
// (so that a rotated file is let go, as Envoy reopens its logs on a
// configuration change), and closes the others. Requires p.mu.
func (s *logSinkSet) applied(rt *runtime) {
	used := map[*logWriter]bool{}
	for _, l := range rt.listeners {
		for _, c := range l.chains {
			var logs []*accessLogger
			if c.http != nil {
				logs = c.http.logs
			} else if c.tcp != nil {
				logs = c.tcp.logs
			}
			for _, al := range logs {
				used[al.w] = true
			}
		}
	}
	for path, w := range s.m {
		if !used[w] {
			delete(s.m, path)
			w.close()
			continue
		}
		w.reopen(s.p.log.Warn)
	}
}

// reopen writes what is pending, then swaps the file for a fresh open of
// its path; a file that cannot be opened again keeps the old one.
func (l *logWriter) reopen(warn func(string, ...any)) {
	if l.file == nil {
		return
	}
	f, err := openLogFile(l.path)
	if err != nil {
		warn("reopen access log", "path", l.path, "err", err)
		return
	}
	l.Flush()
	l.outMu.Lock()
	old := l.file
	l.file, l.out = f, f
	l.outMu.Unlock()
	_ = old.Close() // written and flushed; nothing is lost with it
}

// close writes what is pending and closes the file, if any; lines of
// requests still finishing on the old configuration go nowhere after.
func (l *logWriter) close() {
	l.Flush()
	l.outMu.Lock()
	defer l.outMu.Unlock()
	if l.file != nil {
		_ = l.file.Close()
		l.file = nil
	}
	l.out = nil
}

// flushLogs writes every destination's pending lines.
func (p *Proxy) flushLogs() {
	p.mu.Lock()
	ws := make([]*logWriter, 0, len(p.sinks.m))
	for _, w := range p.sinks.m {
		ws = append(ws, w)
	}
	p.mu.Unlock()
	for _, w := range ws {
		w.Flush()
	}
}

// runLogFlusher writes the access logs out every second, or sooner when
// a buffer fills, until ctx ends.
func (p *Proxy) runLogFlusher(ctx context.Context, kick <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-kick:
		}
		p.flushLogs()
	}
}

// closeLogs flushes and closes every destination (the proxy is done).
func (p *Proxy) closeLogs() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for path, w := range p.sinks.m {
		w.close()
		delete(p.sinks.m, path)
	}
}
