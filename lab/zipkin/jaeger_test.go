package zipkin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/openzipkin/zipkin-go/model"

	"github.com/meshlab/meshlab/lab/zipkin/jaegertest"
)

// TestSameTraceAsJaeger posts the same Envoy-shaped spans (CLIENT and
// SERVER pairs with their own ids, 128-bit and 64-bit trace ids, Envoy's
// and Istio's tags) to the lab's store and to a real Zipkin-protocol
// receiver — Jaeger v2's zipkin receiver, the OpenTelemetry Collector's that
// Tempo embeds — and checks both give back the same trace: ids, parents,
// names, service names, kinds and tags. What a proxy sends to the lab's
// store it can send to a user's Jaeger or Tempo unchanged.
func TestSameTraceAsJaeger(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Jaeger")
	}
	j := jaegertest.Start(t)

	var spans []*model.SpanModel
	for _, f := range []string{"bookinfo-trace.json", "more-traces.json"} {
		var s []*model.SpanModel
		if err := json.Unmarshal(readFixture(t, f), &s); err != nil {
			t.Fatal(err)
		}
		spans = append(spans, s...)
	}
	// Jaeger looks back from now: move the fixtures to the last minute.
	shift := time.Since(spans[0].Timestamp) - time.Minute
	for _, s := range spans {
		s.Timestamp = s.Timestamp.Add(shift)
	}
	body, err := json.Marshal(spans)
	if err != nil {
		t.Fatal(err)
	}

	st := New(Options{})
	ours := httptest.NewServer(Handler(st, nil))
	defer ours.Close()
	post(t, ours.URL, "application/json", "", body, http.StatusAccepted)
	// Jaeger's receiver answers 202 too: the same contract.
	post(t, "http://"+j.ZipkinAddr, "application/json", "", body, http.StatusAccepted)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct {
		traceID string
		spans   int
	}{
		{"6d1f0e8a4c2b9a7e3f5d1c0b8a9e7f61", 8}, // bookinfo through the gateway, 128-bit
		{"3f5d1c0b8a9e7f62", 3},                 // a 64-bit id, with a 503 UF error
	} {
		t.Run(tc.traceID, func(t *testing.T) {
			id, err := ParseTraceID(tc.traceID)
			if err != nil {
				t.Fatal(err)
			}
			mine := st.Trace(id)
			if len(mine) != tc.spans {
				t.Fatalf("our store: %d spans, want %d", len(mine), tc.spans)
			}
			var theirs *jaegertest.Trace
			for {
				theirs, err = j.Trace(ctx, tc.traceID)
				if err != nil {
					t.Fatal(err)
				}
				if theirs != nil && len(theirs.Spans) >= tc.spans {
					break
				}
				select {
				case <-ctx.Done():
					t.Fatalf("Jaeger has %v of trace %s after 30s", theirs, tc.traceID)
				case <-time.After(100 * time.Millisecond):
				}
			}
			compareWithJaeger(t, mine, theirs)
		})
	}

	// And by service, as Kiali's Jaeger client asks (/api/traces?service=).
	traces, err := j.Traces(ctx, "ratings.default")
	if err != nil {
		t.Fatal(err)
	}
	ourTraces, err := st.Traces(Query{ServiceName: "ratings.default", EndTs: time.Now().UnixMilli(), Lookback: time.Hour.Milliseconds(), Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(traces) != len(ourTraces) || len(traces) != 1 {
		t.Errorf("traces of ratings.default: Jaeger %d, ours %d; want 1 each (only the v2 request reached ratings' server)", len(traces), len(ourTraces))
	}
}

// compareWithJaeger checks one trace span by span.
func compareWithJaeger(t *testing.T, mine []*model.SpanModel, theirs *jaegertest.Trace) {
	t.Helper()
	if len(theirs.Spans) != len(mine) {
		t.Errorf("Jaeger has %d spans, our store %d", len(theirs.Spans), len(mine))
	}
	byID := map[string]jaegertest.Span{}
	for _, s := range theirs.Spans {
		byID[s.SpanID] = s
	}
	for _, m := range mine {
		id := m.ID.String()
		js, ok := byID[id]
		if !ok {
			t.Errorf("span %s (%s) is not in Jaeger's trace", id, m.Name)
			continue
		}
		if tid, err := ParseTraceID(js.TraceID); err != nil || tid != m.TraceID {
			t.Errorf("span %s: trace id %s in Jaeger, %s in ours", id, js.TraceID, m.TraceID)
		}
		parent := ""
		if m.ParentID != nil {
			parent = m.ParentID.String()
		}
		if js.Parent() != parent {
			t.Errorf("span %s: parent %q in Jaeger, %q in ours", id, js.Parent(), parent)
		}
		if js.OperationName != m.Name {
			t.Errorf("span %s: name %q in Jaeger, %q in ours", id, js.OperationName, m.Name)
		}
		if svc := theirs.Processes[js.ProcessID].ServiceName; svc != serviceName(m.LocalEndpoint) {
			t.Errorf("span %s: service %q in Jaeger, %q in ours", id, svc, serviceName(m.LocalEndpoint))
		}
		if kind, _ := js.Tag("span.kind"); kind != map[model.Kind]string{model.Client: "client", model.Server: "server"}[m.Kind] {
			t.Errorf("span %s: span.kind %q in Jaeger, kind %s in ours", id, kind, m.Kind)
		}
		if js.StartTime != m.Timestamp.UnixMicro() || js.Duration != m.Duration.Microseconds() {
			t.Errorf("span %s: start/duration %d/%d µs in Jaeger, %d/%d in ours", id, js.StartTime, js.Duration, m.Timestamp.UnixMicro(), m.Duration.Microseconds())
		}
		keys := make([]string, 0, len(m.Tags))
		for k := range m.Tags {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			got, ok := js.Tag(k)
			if !ok || got != m.Tags[k] {
				t.Errorf("span %s: tag %s = %q (present %v) in Jaeger, %q in ours", id, k, got, ok, m.Tags[k])
			}
		}
	}
}
