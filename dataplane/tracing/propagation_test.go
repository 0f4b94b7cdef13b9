package tracing

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openzipkin/zipkin-go/model"
)

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

const (
	tid128 = "463ac35c9f6413ad48485a3953bb6124"
	tid64  = "48485a3953bb6124"
	sid    = "a2fb4a1d1a96d312"
	pid    = "0020000000000001"
)

func TestExtract(t *testing.T) {
	tests := []struct {
		name       string
		h          http.Header
		w3c        bool
		sampled    bool // the decision read (when decided)
		decided    bool
		found      bool
		bad        bool
		trace      string
		span, par  uint64
		ctxSampled bool // with the local decision traced=false
	}{
		{name: "B3 multi 128-bit", h: hdr("X-B3-TraceId", tid128, "X-B3-SpanId", sid, "X-B3-ParentSpanId", pid, "X-B3-Sampled", "1"),
			sampled: true, decided: true, found: true, trace: tid128, span: 0xa2fb4a1d1a96d312, par: 0x0020000000000001, ctxSampled: true},
		{name: "B3 multi 64-bit, not sampled", h: hdr("X-B3-TraceId", tid64, "X-B3-SpanId", sid, "X-B3-Sampled", "0"),
			decided: true, found: true, trace: tid64, span: 0xa2fb4a1d1a96d312},
		{name: "lenient true", h: hdr("X-B3-TraceId", tid64, "X-B3-SpanId", sid, "X-B3-Sampled", "true"),
			sampled: true, decided: true, found: true, trace: tid64, span: 0xa2fb4a1d1a96d312, ctxSampled: true},
		{name: "debug flag accepts", h: hdr("X-B3-TraceId", tid64, "X-B3-SpanId", sid, "X-B3-Flags", "1"),
			sampled: true, decided: true, found: true, trace: tid64, span: 0xa2fb4a1d1a96d312, ctxSampled: true},
		{name: "no sampled: deferred", h: hdr("X-B3-TraceId", tid128, "X-B3-SpanId", sid),
			found: true, trace: tid128, span: 0xa2fb4a1d1a96d312},
		{name: "single 128-bit with parent", h: hdr("b3", tid128+"-"+sid+"-1-"+pid),
			sampled: true, decided: true, found: true, trace: tid128, span: 0xa2fb4a1d1a96d312, par: 0x0020000000000001, ctxSampled: true},
		{name: "single 64-bit, no flag", h: hdr("b3", tid64+"-"+sid),
			found: true, trace: tid64, span: 0xa2fb4a1d1a96d312},
		{name: "single wins over multi", h: hdr("b3", tid64+"-"+sid+"-0", "X-B3-TraceId", tid128, "X-B3-SpanId", pid, "X-B3-Sampled", "1"),
			decided: true, found: true, trace: tid64, span: 0xa2fb4a1d1a96d312},
		{name: "b3: 0 denies", h: hdr("b3", "0"), decided: true},
		{name: "b3: d is debug", h: hdr("b3", "d"), sampled: true, decided: true},
		{name: "malformed single", h: hdr("b3", "zz"), bad: true},
		{name: "malformed trace id", h: hdr("X-B3-TraceId", "xyz", "X-B3-SpanId", sid), bad: true},
		{name: "malformed parent", h: hdr("X-B3-TraceId", tid64, "X-B3-SpanId", sid, "X-B3-ParentSpanId", "nothex"), bad: true},
		{name: "traceparent with W3C", w3c: true, h: hdr("traceparent", "00-"+tid128+"-"+sid+"-01", "tracestate", "a=b"),
			sampled: true, decided: true, found: true, trace: tid128, span: 0xa2fb4a1d1a96d312, ctxSampled: true},
		{name: "traceparent ignored without W3C", h: hdr("traceparent", "00-"+tid128+"-"+sid+"-01")},
		{name: "B3 wins over traceparent", w3c: true, h: hdr("traceparent", "00-"+tid128+"-"+pid+"-01", "X-B3-TraceId", tid64, "X-B3-SpanId", sid, "X-B3-Sampled", "0"),
			decided: true, found: true, trace: tid64, span: 0xa2fb4a1d1a96d312},
		{name: "bad traceparent is ignored", w3c: true, h: hdr("traceparent", "00-"+strings.Repeat("0", 32)+"-"+sid+"-01")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, ok := extractSampled(tt.h, tt.w3c)
			if ok != tt.decided || ok && s != tt.sampled {
				t.Errorf("sampled = %v (decided %v), want %v (decided %v)", s, ok, tt.sampled, tt.decided)
			}
			local := false
			if ok {
				local = s
			}
			c, found, err := extractContext(tt.h, tt.w3c, local)
			if (err != nil) != tt.bad {
				t.Fatalf("err = %v, want bad %v", err, tt.bad)
			}
			if found != tt.found {
				t.Fatalf("found = %v, want %v", found, tt.found)
			}
			if !found {
				return
			}
			if c.TraceID.String() != tt.trace || c.SpanID != tt.span || c.ParentID != tt.par || c.Sampled != tt.ctxSampled {
				t.Errorf("context = %s %x %x %v, want %s %x %x %v", c.TraceID, c.SpanID, c.ParentID, c.Sampled, tt.trace, tt.span, tt.par, tt.ctxSampled)
			}
		})
	}
}

// TestStart follows a request through Start and Inject: the span's ids
// and kind, and the headers the next hop reads.
func TestStart(t *testing.T) {
	rep := (*Reporter)(nil)
	tests := []struct {
		name      string
		tr        Tracer
		h         http.Header
		egress    bool
		traced    bool
		wantRoot  bool
		wantKind  Kind
		shared    bool
		sampled   bool
		traceLen  int
		wantW3C   bool
		wantB3One bool
	}{
		{name: "root 128-bit egress", tr: Tracer{TraceID128: true}, h: hdr(), egress: true, traced: true,
			wantRoot: true, wantKind: Client, sampled: true, traceLen: 32},
		{name: "root 64-bit ingress", tr: Tracer{}, h: hdr(), traced: true, wantRoot: true, wantKind: Server, sampled: true, traceLen: 16},
		{name: "child of a B3 caller, not shared", tr: Tracer{TraceID128: true}, h: hdr("X-B3-TraceId", tid128, "X-B3-SpanId", sid, "X-B3-Sampled", "1"),
			wantKind: Server, sampled: true, traceLen: 32},
		{name: "shared span context", tr: Tracer{SharedSpanContext: true}, h: hdr("X-B3-TraceId", tid64, "X-B3-SpanId", sid, "X-B3-ParentSpanId", pid, "X-B3-Sampled", "1"),
			wantKind: Server, shared: true, sampled: true, traceLen: 16},
		{name: "caller's 0 beats the local decision", tr: Tracer{TraceID128: true}, h: hdr("X-B3-TraceId", tid128, "X-B3-SpanId", sid, "X-B3-Sampled", "0"),
			egress: true, traced: true, wantKind: Client, traceLen: 32},
		{name: "caller's 1 beats not traced", tr: Tracer{}, h: hdr("b3", tid64+"-"+sid+"-1"),
			egress: true, wantKind: Client, sampled: true, traceLen: 16, wantB3One: true},
		{name: "W3C propagation", tr: Tracer{W3C: true}, h: hdr("traceparent", "00-"+tid128+"-"+sid+"-01", "tracestate", "x=y"),
			egress: true, wantKind: Client, sampled: true, traceLen: 32, wantW3C: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.tr.Reporter = rep
			s := tt.tr.Start(tt.h, "reviews:9080", tt.egress, tt.traced, time.Now())
			if s == nil {
				t.Fatal("no span")
			}
			if s.Kind != tt.wantKind || s.Sampled != tt.sampled || len(s.TraceID.String()) != tt.traceLen || s.Name != "reviews:9080" {
				t.Errorf("span = %v sampled %v trace %s name %q", s.Kind, s.Sampled, s.TraceID, s.Name)
			}
			switch {
			case tt.wantRoot:
				if s.ParentID != 0 || s.TraceID.Low != s.ID {
					t.Errorf("root: parent %x, trace low %x, id %x (Envoy's root reuses its id as the trace id)", s.ParentID, s.TraceID.Low, s.ID)
				}
			case tt.shared:
				if s.ID != 0xa2fb4a1d1a96d312 || s.ParentID != 0x0020000000000001 || !s.Shared {
					t.Errorf("shared: id %x parent %x", s.ID, s.ParentID)
				}
			default:
				if s.ParentID != 0xa2fb4a1d1a96d312 || s.ID == s.ParentID || s.ID == 0 {
					t.Errorf("child: id %x parent %x, want parent a2fb4a1d1a96d312", s.ID, s.ParentID)
				}
			}
			out := tt.h.Clone()
			s.Inject(out)
			if got := out.Get("X-B3-SpanId"); got != IDString(s.ID) {
				t.Errorf("x-b3-spanid = %s, want %s", got, IDString(s.ID))
			}
			if got := out.Get("X-B3-TraceId"); got != s.TraceID.String() {
				t.Errorf("x-b3-traceid = %s", got)
			}
			want := "0"
			if s.Sampled {
				want = "1"
			}
			if out.Get("X-B3-Sampled") != want {
				t.Errorf("x-b3-sampled = %q, want %q", out.Get("X-B3-Sampled"), want)
			}
			if s.ParentID == 0 && out.Get("X-B3-ParentSpanId") != "" || s.ParentID != 0 && out.Get("X-B3-ParentSpanId") != IDString(s.ParentID) {
				t.Errorf("x-b3-parentspanid = %q", out.Get("X-B3-ParentSpanId"))
			}
			if tt.wantB3One {
				if got := out.Get("b3"); got != s.TraceID.String()+"-"+IDString(s.ID)+"-"+want+"-"+IDString(s.ParentID) {
					t.Errorf("b3 = %q", got)
				}
			}
			if tt.wantW3C {
				if got := out.Get("traceparent"); got != "00-"+tid128+"-"+IDString(s.ID)+"-01" {
					t.Errorf("traceparent = %q", got)
				}
				if out.Get("tracestate") != "x=y" {
					t.Errorf("tracestate = %q, want it passed on", out.Get("tracestate"))
				}
			}
			// What the next hop reads is this span.
			c, found, err := extractContext(out, tt.tr.W3C, s.Sampled)
			if err != nil || !found || c.SpanID != s.ID || c.TraceID != s.TraceID {
				t.Errorf("next hop reads %v %v %+v", found, err, c)
			}
		})
	}
	if s := (&Tracer{}).Start(hdr("b3", "garbage-garbage-garbage-garbage"), "h", true, true, time.Now()); s != nil {
		t.Error("a malformed b3 header made a span; Envoy makes a null span")
	}
}

// TestSpanJSON decodes a span with zipkin-go's model, as a Zipkin server
// would.
func TestSpanJSON(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	s := &Span{TraceID: TraceID{High: 0x463ac35c9f6413ad, Low: 0x48485a3953bb6124, Is128: true}, ID: 0xa2fb4a1d1a96d312, ParentID: 1,
		Name: "reviews.default.svc.cluster.local:9080/*", Kind: Server, Start: start, Duration: 1500 * time.Microsecond,
		Local: &Endpoint{ServiceName: "reviews.default", IPv4: "10.1.2.3"}}
	s.SetTag("http.url", "http://reviews:9080/x?\"q\"\n\x01é")
	s.SetTag("error", "true")
	s.SetTag("empty", "")
	var got []model.SpanModel
	if err := json.Unmarshal(Encode([]*Span{s, s}), &got); err != nil {
		t.Fatalf("decode: %v\n%s", err, Encode([]*Span{s}))
	}
	if len(got) != 2 {
		t.Fatalf("%d spans", len(got))
	}
	g := got[0]
	if g.TraceID.String() != tid128 || g.ID.String() != sid || g.ParentID == nil || uint64(*g.ParentID) != 1 ||
		g.Kind != model.Server || g.Name != s.Name || !g.Timestamp.Equal(start) || g.Duration != 1500*time.Microsecond ||
		g.LocalEndpoint.ServiceName != "reviews.default" || g.LocalEndpoint.IPv4.String() != "10.1.2.3" {
		t.Errorf("decoded %+v", g)
	}
	if g.Tags["http.url"] != "http://reviews:9080/x?\"q\"\n\x01é" || g.Tags["error"] != "true" || len(g.Tags) != 2 {
		t.Errorf("tags %v", g.Tags)
	}
}

// BenchmarkRequestPath is what a traced request costs the proxy before
// and after its upstream call: the decision, the span, the injection.
func BenchmarkRequestPath(b *testing.B) {
	for _, sampled := range []bool{false, true} {
		name := "unsampled"
		s := Sampling{Client: 10000, Overall: 10000}
		if sampled {
			name, s.Random = "sampled", 10000
		}
		b.Run(name, func(b *testing.B) {
			tr := &Tracer{TraceID128: true, Local: &Endpoint{ServiceName: "a.b"}}
			b.ReportAllocs()
			for b.Loop() {
				h := http.Header{"X-Request-Id": {"00001387-9a2b-4c3d-8e4f-0123456789ab"}, "User-Agent": {"x"}}
				r := Decide(h, s, DefaultRequestID)
				sp := tr.Start(h, "host", true, r != NotTraceable, time.Now())
				sp.Inject(h)
			}
		})
	}
}
