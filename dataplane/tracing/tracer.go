package tracing

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// Reason is why a request is traced, as Envoy's uuid request id
// extension packs it into x-request-id.
type Reason uint8

// Trace reasons.
const (
	NotTraceable Reason = iota
	Sampled
	ServiceForced
	ClientForced
)

// reasonPos is the x-request-id character that carries the reason (the
// UUID's version digit), and these its values.
const (
	reasonPos     = 14
	charSampled   = '9'
	charForced    = 'a'
	charClient    = 'b'
	charNoTrace   = '4'
	uuidLen       = 36
	fullFraction  = 10000
	hashedIDChars = 8
)

// ReasonOf is the trace reason packed in a request id.
func ReasonOf(rid string) Reason {
	if len(rid) != uuidLen {
		return NotTraceable
	}
	switch rid[reasonPos] {
	case charSampled:
		return Sampled
	case charForced:
		return ServiceForced
	case charClient:
		return ClientForced
	}
	return NotTraceable
}

// withReason is rid with r packed in (rid unchanged unless it is a UUID).
func withReason(rid string, r Reason) string {
	if len(rid) != uuidLen {
		return rid
	}
	c := byte(charNoTrace)
	switch r {
	case Sampled:
		c = charSampled
	case ServiceForced:
		c = charForced
	case ClientForced:
		c = charClient
	}
	if rid[reasonPos] == c {
		return rid
	}
	b := []byte(rid)
	b[reasonPos] = c
	return string(b)
}

// Percent converts a percentage (type.v3.Percent, 0–100) to Envoy's
// fraction of 10,000, rounded as PROTOBUF_PERCENT_TO_ROUNDED_INTEGER does.
func Percent(p float64) uint32 {
	v := p * fullFraction / 100
	switch {
	case v <= 0:
		return 0
	case v >= fullFraction:
		return fullFraction
	}
	return uint32(v + 0.5)
}

// Sampling is a connection manager's sampling, each in 1/10,000.
type Sampling struct {
	Client, Random, Overall uint32
}

// FullSampling is Envoy's default: 100% each.
var FullSampling = Sampling{fullFraction, fullFraction, fullFraction}

// RequestID is the uuid request id extension's configuration.
type RequestID struct {
	// PackTraceReason: the decision is written into x-request-id.
	PackTraceReason bool
	// UseForSampling: random sampling hashes x-request-id, so that every
	// proxy a request passes decides alike.
	UseForSampling bool
}

// DefaultRequestID is the extension's default (both true), which Istio
// also sets.
var DefaultRequestID = RequestID{true, true}

// Decide makes the trace decision for a request, as Envoy's connection
// manager does before it starts a span: a reason already packed in
// x-request-id stands (an upstream proxy decided); otherwise
// x-client-trace-id (within client sampling), then x-envoy-force-trace,
// then random sampling — on x-request-id's first 8 hex digits modulo
// 10,000, so a request is decided alike at every hop — may trace it;
// overall sampling then caps any trace. The reason is packed back into
// x-request-id when the extension says so. A request without a
// well-formed x-request-id keeps whatever it carries.
func Decide(h http.Header, s Sampling, rid RequestID) Reason {
	v := h[HeaderRequestID]
	if len(v) == 0 {
		return NotTraceable
	}
	id := v[0]
	var result uint64
	if rid.UseForSampling {
		if len(id) < hashedIDChars {
			return ReasonOf(id)
		}
		n, err := strconv.ParseUint(id[:hashedIDChars], 16, 64)
		if err != nil {
			return ReasonOf(id)
		}
		result = n % fullFraction
	} else {
		result = rand.Uint64N(fullFraction)
	}
	reason := ReasonOf(id)
	final := reason
	if reason == NotTraceable {
		switch {
		case has(h, HeaderClientTrace) && uint32(rand.Uint64N(fullFraction)) < s.Client:
			final = ClientForced
		case has(h, HeaderForceTrace):
			final = ServiceForced
		case uint32(result) < s.Random:
			final = Sampled
		}
	}
	if final != NotTraceable && uint32(result) >= s.Overall {
		final = NotTraceable
	}
	if rid.PackTraceReason && final != reason {
		v[0] = withReason(id, final)
	}
	return final
}

func has(h http.Header, k string) bool {
	v, ok := h[k]
	return ok && len(v) > 0
}

// Tracer is one Zipkin provider configuration (ZipkinConfig) with the
// proxy's own endpoint and reporter.
type Tracer struct {
	// TraceID128: root spans get 128-bit trace ids (trace_id_128bit).
	TraceID128 bool
	// SharedSpanContext: an ingress span reuses its caller's span id
	// (shared_span_context; Istio sets false).
	SharedSpanContext bool
	// W3C: traceparent is read when no B3 header is present and injected
	// upstream (trace_context_option USE_B3_WITH_W3C_PROPAGATION).
	W3C bool
	// Local is the proxy's endpoint (localEndpoint).
	Local *Endpoint
	// Reporter receives the sampled spans; nil drops them.
	Reporter *Reporter
}

// Start starts the span of a request whose trace decision is traced, as
// Envoy's Zipkin driver: a sampling decision the request carries wins
// over traced; with the caller's context the span is its child (an egress
// span, or an ingress one without shared context, gets a new id whose
// parent is the caller's span), else it is a root. host names the span
// until the route decorator does. It returns nil when a trace header is
// malformed: no span, and the headers go on untouched.
func (t *Tracer) Start(h http.Header, host string, egress, traced bool, start time.Time) *Span {
	sampled, ok := extractSampled(h, t.W3C)
	if !ok {
		sampled = traced
	}
	c, found, err := extractContext(h, t.W3C, sampled)
	if err != nil {
		return nil
	}
	s := &Span{Name: host, Start: start, Local: t.Local, rep: t.Reporter, egress: egress, w3c: t.W3C, Sampled: sampled}
	s.single = has(h, HeaderB3)
	if egress {
		s.Kind = Client
	} else {
		s.Kind = Server
	}
	if !found {
		s.ID = newID()
		s.TraceID = TraceID{Low: s.ID}
		if t.TraceID128 {
			s.TraceID.High, s.TraceID.Is128 = newID(), true
		}
		return s
	}
	s.TraceID = c.TraceID
	s.Sampled = c.Sampled
	if egress || !t.SharedSpanContext {
		s.ID, s.ParentID = newID(), c.SpanID
	} else {
		s.ID, s.ParentID, s.Shared = c.SpanID, c.ParentID, true
	}
	return s
}
