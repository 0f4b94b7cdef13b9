package tracing

import (
	"errors"
	"net/http"
	"strconv"
)

// The headers, in net/http's canonical form.
const (
	HeaderTraceID      = "X-B3-Traceid"
	HeaderSpanID       = "X-B3-Spanid"
	HeaderParentSpanID = "X-B3-Parentspanid"
	HeaderSampled      = "X-B3-Sampled"
	HeaderFlags        = "X-B3-Flags"
	HeaderB3           = "B3"
	HeaderTraceparent  = "Traceparent"
	HeaderTracestate   = "Tracestate"
	HeaderRequestID    = "X-Request-Id"
	HeaderClientTrace  = "X-Client-Trace-Id"
	HeaderForceTrace   = "X-Envoy-Force-Trace"
	HeaderOperation    = "X-Envoy-Decorator-Operation"
)

// Context is a span context read from a request.
type Context struct {
	TraceID  TraceID
	SpanID   uint64
	ParentID uint64
	Sampled  bool
}

// errBadContext is a trace context header that does not parse: Envoy's
// Zipkin tracer then creates no span (a null span) and leaves the headers
// as they came.
var errBadContext = errors.New("malformed trace context")

func first(h http.Header, k string) (string, bool) {
	v, ok := h[k]
	if !ok || len(v) == 0 {
		return "", false
	}
	return v[0], true
}

// extractSampled is the sampling decision the request carries, as Envoy's
// SpanContextExtractor reads it: the single header's flag (`0` denies,
// `1` and `d` accept), else X-B3-Sampled (`1` or the old `true` accept,
// anything else denies), else — B3's debug flag, X-B3-Flags: 1 — accept;
// else, with w3c, traceparent's sampled flag. ok is false when the request
// defers the decision.
func extractSampled(h http.Header, w3c bool) (sampled, ok bool) {
	if b3, present := first(h, HeaderB3); present {
		pos := -1
		switch len(b3) {
		case 1:
			pos = 0
		case 35, 52: // traceid64-spanid-s[-parentid]
			pos = 34
		case 51, 68: // traceid128-spanid-s[-parentid]
			pos = 50
		}
		if pos < 0 {
			return false, false
		}
		switch b3[pos] {
		case '0':
			return false, true
		case '1', 'd':
			return true, true
		}
		return false, false
	}
	if v, present := first(h, HeaderSampled); present {
		return v == "1" || v == "true", true
	}
	if v, present := first(h, HeaderFlags); present && v == "1" {
		return true, true
	}
	if w3c {
		if _, hasB3 := h[HeaderTraceID]; !hasB3 {
			if tp, present := first(h, HeaderTraceparent); present {
				if c, err := parseTraceparent(tp); err == nil {
					return c.Sampled, true
				}
			}
		}
	}
	return false, false
}

// extractContext reads the caller's span context: the B3 single header
// when present (it wins over the multi headers), else X-B3-TraceId and
// X-B3-SpanId, else, with w3c, traceparent. found is false when there is
// none; err when a header is malformed.
func extractContext(h http.Header, w3c, sampled bool) (c Context, found bool, err error) {
	if b3, present := first(h, HeaderB3); present {
		return parseB3Single(b3, sampled)
	}
	tid, okT := first(h, HeaderTraceID)
	sid, okS := first(h, HeaderSpanID)
	if okT && okS {
		c.Sampled = sampled
		if c.TraceID, err = parseTraceID(tid); err != nil {
			return c, false, err
		}
		if c.SpanID, err = parseHex64(sid); err != nil {
			return c, false, err
		}
		if p, ok := first(h, HeaderParentSpanID); ok && p != "" {
			if c.ParentID, err = parseHex64(p); err != nil {
				return c, false, err
			}
		}
		return c, true, nil
	}
	if w3c {
		if tp, ok := first(h, HeaderTraceparent); ok {
			c, err := parseTraceparent(tp)
			if err != nil {
				// W3C: a traceparent that does not parse is ignored.
				return Context{}, false, nil
			}
			c.Sampled = sampled
			return c, true, nil
		}
	}
	return c, false, nil
}

// parseTraceID reads 32 (128-bit) or up to 16 (64-bit) hex digits.
func parseTraceID(s string) (TraceID, error) {
	if len(s) == 32 {
		hi, err := parseHex64(s[:16])
		if err != nil {
			return TraceID{}, err
		}
		lo, err := parseHex64(s[16:])
		if err != nil {
			return TraceID{}, err
		}
		return TraceID{High: hi, Low: lo, Is128: true}, nil
	}
	lo, err := parseHex64(s)
	return TraceID{Low: lo}, err
}

func parseHex64(s string) (uint64, error) {
	if len(s) == 0 || len(s) > 16 {
		return 0, errBadContext
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, errBadContext
	}
	return v, nil
}

// parseB3Single reads `{traceid}-{spanid}[-{sampled}[-{parentid}]]`, or a
// lone sampling flag (no context), as Envoy's extractor.
func parseB3Single(b3 string, sampled bool) (Context, bool, error) {
	switch {
	case len(b3) == 1:
		if b3 == "0" || b3 == "1" || b3 == "d" {
			return Context{}, false, nil
		}
		return Context{}, false, errBadContext
	case len(b3) < 16+1+16, len(b3) > 32+1+16+3+16:
		return Context{}, false, errBadContext
	}
	var c Context
	c.Sampled = sampled
	pos := 16
	if len(b3) > 32 && b3[32] == '-' {
		pos = 32
	}
	var err error
	if c.TraceID, err = parseTraceID(b3[:pos]); err != nil {
		return c, false, err
	}
	if b3[pos] != '-' || len(b3) < pos+17 {
		return c, false, errBadContext
	}
	pos++
	if c.SpanID, err = parseHex64(b3[pos : pos+16]); err != nil {
		return c, false, err
	}
	pos += 16
	if len(b3) == pos {
		return c, true, nil
	}
	// -{sampled}[-{parentid}]
	if len(b3) < pos+2 || b3[pos] != '-' {
		return c, false, errBadContext
	}
	switch b3[pos+1] {
	case '0', '1', 'd':
	default:
		return c, false, errBadContext
	}
	pos += 2
	if len(b3) == pos {
		return c, true, nil
	}
	if len(b3) != pos+17 || b3[pos] != '-' {
		return c, false, errBadContext
	}
	if c.ParentID, err = parseHex64(b3[pos+1:]); err != nil {
		return c, false, err
	}
	return c, true, nil
}

// parseTraceparent reads W3C's `00-{traceid32}-{parentid16}-{flags2}`;
// a later version may append fields, which are ignored.
func parseTraceparent(tp string) (Context, error) {
	if len(tp) < 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' || (len(tp) > 55 && tp[55] != '-') {
		return Context{}, errBadContext
	}
	if tp[:2] == "ff" || (tp[:2] == "00" && len(tp) != 55) {
		return Context{}, errBadContext
	}
	tid, err := parseTraceID(tp[3:35])
	if err != nil || tid.High == 0 && tid.Low == 0 {
		return Context{}, errBadContext
	}
	sid, err := parseHex64(tp[36:52])
	if err != nil || sid == 0 {
		return Context{}, errBadContext
	}
	flags, err := strconv.ParseUint(tp[53:55], 16, 8)
	if err != nil {
		return Context{}, errBadContext
	}
	return Context{TraceID: tid, SpanID: sid, Sampled: flags&1 == 1}, nil
}

// Inject writes the span's context into an upstream request's headers as
// Envoy's Zipkin span does: X-B3-TraceId, X-B3-SpanId, X-B3-ParentSpanId
// (not on a root), X-B3-Sampled; traceparent too with W3C propagation
// (tracestate goes on as it came). A B3 single header the request carried
// is rewritten to this span, so that the next hop, for which it wins over
// the multi headers, does not read the caller's context.
func (s *Span) Inject(h http.Header) {
	flag := byte('0')
	if s.Sampled {
		flag = '1'
	}
	// One string holds every value and one array every header's slice:
	// two allocations, however many headers.
	var buf [32 + 16 + 16 + 1 + 68 + 55]byte
	b := s.TraceID.appendHex(buf[:0])
	tEnd := len(b)
	b = appendID(b, s.ID)
	sEnd := len(b)
	if s.ParentID != 0 {
		b = appendID(b, s.ParentID)
	}
	pEnd := len(b)
	b = append(b, flag)
	fEnd := len(b)
	if s.single {
		b = append(b, buf[:tEnd]...)
		b = append(b, '-')
		b = append(b, buf[tEnd:sEnd]...)
		b = append(b, '-', flag)
		if s.ParentID != 0 {
			b = append(b, '-')
			b = append(b, buf[sEnd:pEnd]...)
		}
	}
	oEnd := len(b)
	if s.w3c {
		b = append(b, "00-"...)
		if !s.TraceID.Is128 {
			b = append(b, "0000000000000000"...) // W3C's ids are 128-bit
		}
		b = append(b, buf[:tEnd]...)
		b = append(b, '-')
		b = append(b, buf[tEnd:sEnd]...)
		b = append(b, '-', '0', flag)
	}
	all := string(b)
	vs := make([]string, 6)
	vs[0], vs[1], vs[2], vs[3] = all[:tEnd], all[tEnd:sEnd], all[sEnd:pEnd], all[pEnd:fEnd]
	h[HeaderTraceID] = vs[0:1:1]
	h[HeaderSpanID] = vs[1:2:2]
	if s.ParentID != 0 {
		h[HeaderParentSpanID] = vs[2:3:3]
	} else {
		delete(h, HeaderParentSpanID)
	}
	h[HeaderSampled] = vs[3:4:4]
	if s.single {
		vs[4] = all[fEnd:oEnd]
		h[HeaderB3] = vs[4:5:5]
	}
	if s.w3c {
		vs[5] = all[oEnd:]
		h[HeaderTraceparent] = vs[5:6:6]
	}
}
