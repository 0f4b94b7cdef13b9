package tracing

import (
	"net/http"
	"testing"
	"time"
)

// FuzzTraceHeaders: the trace headers come from the network. Whatever they
// hold, the decision and the span start never panic; a span that starts
// injects headers the next hop reads back as the same trace, its own span
// as the parent.
func FuzzTraceHeaders(f *testing.F) {
	f.Add("", "", "", "", "", "", "")
	f.Add("80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1", "05e3ac9a4f6e3b90", "1", "", "", "4e7ac0f8-4c3b-4d6e-9f5a-1f0d5b2e7c11")
	f.Add("", "", "", "", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90", "", "")
	f.Add("", "", "", "", "0", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "not-a-uuid")
	f.Add("463ac35c9f6413ad", "72485a3953bb6124", "", "true", "", "", "4e7ac0f8-4c3b-9d6e-9f5a-1f0d5b2e7c11")
	f.Fuzz(func(t *testing.T, traceID, spanID, parentID, sampledHdr, b3, traceparent, requestID string) {
		h := http.Header{}
		set := func(k, v string) {
			if v != "" {
				h[k] = []string{v}
			}
		}
		set("X-B3-Traceid", traceID)
		set("X-B3-Spanid", spanID)
		set("X-B3-Parentspanid", parentID)
		set("X-B3-Sampled", sampledHdr)
		set(HeaderB3, b3)
		set("Traceparent", traceparent)
		set(HeaderRequestID, requestID)
		Decide(h, FullSampling, DefaultRequestID)
		for _, w3c := range []bool{false, true} {
			tr := &Tracer{TraceID128: true, W3C: w3c, Local: &Endpoint{ServiceName: "a.ns"}}
			s := tr.Start(h.Clone(), "host", true, true, time.Now())
			if s == nil {
				continue
			}
			out := http.Header{}
			s.Inject(out)
			next := tr.Start(out, "host", false, false, time.Now())
			if next == nil {
				t.Fatalf("a span's own headers %v do not start the next hop's span", out)
			}
			if next.TraceID != s.TraceID || next.ParentID != s.ID {
				t.Fatalf("next hop: trace %v parent %x, want trace %v parent %x (headers %v)", next.TraceID, next.ParentID, s.TraceID, s.ID, out)
			}
			_ = Encode([]*Span{s, next})
		}
	})
}
