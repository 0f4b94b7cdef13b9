// Package tracing owns the proxy's distributed tracing as Envoy's Zipkin
// tracer does it under Istio: the trace decision carried in x-request-id,
// B3 (and, when configured, W3C trace context) extraction and injection,
// spans in Zipkin's v2 model, and a reporter that batches them to a
// collector without ever holding up a request.
package tracing

import (
	"encoding/hex"
	"math/rand/v2"
	"strconv"
	"time"
	"unicode/utf8"
)

// Kind is a span's Zipkin kind.
type Kind uint8

// Span kinds: an egress (outbound, gateway) span is a CLIENT span, an
// ingress (inbound) one a SERVER span, as Envoy's Zipkin tracer annotates
// them (cs / sr).
const (
	Client Kind = iota
	Server
)

func (k Kind) String() string {
	if k == Server {
		return "SERVER"
	}
	return "CLIENT"
}

// TraceID is a 64- or 128-bit trace id.
type TraceID struct {
	High, Low uint64
	// Is128 is set for 128-bit ids, which print as 32 hex digits.
	Is128 bool
}

// String is the id in lower hex, 16 or 32 digits.
func (t TraceID) String() string {
	var b [32]byte
	return string(t.appendHex(b[:0]))
}

func (t TraceID) appendHex(b []byte) []byte {
	if t.Is128 {
		b = appendID(b, t.High)
	}
	return appendID(b, t.Low)
}

// appendID appends id as 16 lower-hex digits.
func appendID(b []byte, id uint64) []byte {
	var raw [8]byte
	for i := 7; i >= 0; i-- {
		raw[i] = byte(id)
		id >>= 8
	}
	var out [16]byte
	hex.Encode(out[:], raw[:])
	return append(b, out[:]...)
}

// IDString is a span id as Zipkin prints it: 16 lower-hex digits.
func IDString(id uint64) string {
	var b [16]byte
	return string(appendID(b[:0], id))
}

// newID is a random non-zero 64-bit id (Envoy's random generator is not
// a CSPRNG either: ids need uniqueness, not secrecy).
func newID() uint64 {
	for {
		if v := rand.Uint64(); v != 0 {
			return v
		}
	}
}

// Endpoint is a Zipkin endpoint: the proxy's own (localEndpoint).
type Endpoint struct {
	ServiceName string
	// IPv4 or IPv6, as a literal; empty when unknown.
	IPv4, IPv6 string
}

// Tag is one span tag.
type Tag struct{ Key, Value string }

// Span is one Zipkin v2 span, with what the proxy needs to propagate it.
type Span struct {
	TraceID  TraceID
	ID       uint64
	ParentID uint64 // 0: a root span
	Name     string
	Kind     Kind
	// Shared is a SERVER span that kept its caller's span id
	// (shared_span_context).
	Shared  bool
	Sampled bool
	Start   time.Time
	// Duration is set by Finish.
	Duration time.Duration
	Local    *Endpoint
	Tags     []Tag

	// Decorated is the route decorator's operation, when the span took
	// its name from one; Propagate whether it travels in
	// x-envoy-decorator-operation.
	Decorated string
	Propagate bool
	// egress: the span belongs to an egress connection manager.
	egress bool
	// single: the request carried B3's single header, which is rewritten
	// along with the multi headers; w3c: traceparent is injected too.
	single, w3c bool
	rep         *Reporter
}

// Egress reports whether the span is an egress (CLIENT) one.
func (s *Span) Egress() bool { return s.egress }

// SetTag sets a tag, replacing one of the same key; an empty key or value
// sets nothing, as in Envoy's Zipkin span.
func (s *Span) SetTag(k, v string) {
	if k == "" || v == "" {
		return
	}
	for i := range s.Tags {
		if s.Tags[i].Key == k {
			s.Tags[i].Value = v
			return
		}
	}
	s.Tags = append(s.Tags, Tag{k, v})
}

// Tag returns a tag's value.
func (s *Span) Tag(k string) (string, bool) {
	for _, t := range s.Tags {
		if t.Key == k {
			return t.Value, true
		}
	}
	return "", false
}

// Finish ends the span at end and hands it to its reporter when sampled.
// The span must not be used afterwards.
func (s *Span) Finish(end time.Time) {
	s.Duration = end.Sub(s.Start)
	if s.Sampled && s.rep != nil {
		s.rep.Report(s)
	}
}

// AppendJSON appends the span as a Zipkin v2 JSON object.
func (s *Span) AppendJSON(b []byte) []byte {
	b = append(b, `{"traceId":"`...)
	b = s.TraceID.appendHex(b)
	b = append(b, `","id":"`...)
	b = appendID(b, s.ID)
	b = append(b, '"')
	if s.ParentID != 0 {
		b = append(b, `,"parentId":"`...)
		b = appendID(b, s.ParentID)
		b = append(b, '"')
	}
	b = append(b, `,"kind":"`...)
	b = append(b, s.Kind.String()...)
	b = append(b, '"')
	if s.Name != "" {
		b = append(b, `,"name":`...)
		b = appendString(b, s.Name)
	}
	b = append(b, `,"timestamp":`...)
	b = strconv.AppendInt(b, s.Start.UnixMicro(), 10)
	// Zipkin takes a duration of at least 1µs.
	b = append(b, `,"duration":`...)
	b = strconv.AppendInt(b, max(s.Duration.Microseconds(), 1), 10)
	if s.Shared {
		b = append(b, `,"shared":true`...)
	}
	if e := s.Local; e != nil {
		b = append(b, `,"localEndpoint":{`...)
		sep := false
		field := func(k, v string) {
			if v == "" {
				return
			}
			if sep {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, v)
			sep = true
		}
		field("serviceName", e.ServiceName)
		field("ipv4", e.IPv4)
		field("ipv6", e.IPv6)
		b = append(b, '}')
	}
	if len(s.Tags) > 0 {
		b = append(b, `,"tags":{`...)
		for i, t := range s.Tags {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, t.Key)
			b = append(b, ':')
			b = appendString(b, t.Value)
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// appendString appends v as a JSON string; invalid UTF-8 becomes U+FFFD,
// as encoding/json writes it.
func appendString(b []byte, v string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(v); {
		c := v[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(v[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, v[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}
