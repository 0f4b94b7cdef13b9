package tracing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/openzipkin/zipkin-go/model"
)

func testSpan() *Span {
	return &Span{TraceID: TraceID{Low: newID()}, ID: newID(), Name: "x", Sampled: true, Start: time.Now(),
		Local: &Endpoint{ServiceName: "a.b"}}
}

func startReporter(t *testing.T, cfg ReporterConfig) (*Reporter, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	cfg.Logger = slog.New(slog.DiscardHandler)
	r := NewReporter(ctx, &wg, cfg)
	stop := func() { cancel(); wg.Wait() }
	t.Cleanup(stop)
	return r, stop
}

// collector is a loopback Zipkin receiver decoding each report.
func collector(t *testing.T, status int) (string, chan []model.SpanModel) {
	t.Helper()
	reports := make(chan []model.SpanModel, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/api/v2/spans" || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("report %s %s %q", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
		}
		var spans []model.SpanModel
		if err := json.NewDecoder(r.Body).Decode(&spans); err != nil {
			t.Errorf("decode report: %v", err)
		}
		reports <- spans
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/api/v2/spans", reports
}

func httpSender(url string) Sender {
	return func(ctx context.Context, body []byte) (int, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
}

func TestReporterBatches(t *testing.T) {
	url, reports := collector(t, http.StatusAccepted)
	var st Stats
	// A long interval: only the span count flushes.
	r, _ := startReporter(t, ReporterConfig{Send: httpSender(url), Stats: &st, FlushInterval: time.Hour})
	for range 12 {
		r.Report(testSpan())
	}
	for i := range 2 {
		select {
		case got := <-reports:
			if len(got) != 5 {
				t.Fatalf("report %d has %d spans, want 5 (min_flush_spans)", i, len(got))
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no report after 5 spans")
		}
	}
	select {
	case got := <-reports:
		t.Fatalf("a report of %d spans before 5 were buffered or the interval passed", len(got))
	case <-time.After(200 * time.Millisecond):
	}
	waitStat(t, "reports_sent 2", func() bool { return st.ReportsSent.Load() == 2 && st.SpansSent.Load() == 10 })

	// The interval flushes what is buffered.
	url2, reports2 := collector(t, http.StatusAccepted)
	r2, _ := startReporter(t, ReporterConfig{Send: httpSender(url2), FlushInterval: 50 * time.Millisecond})
	start := time.Now()
	r2.Report(testSpan())
	r2.Report(testSpan())
	select {
	case got := <-reports2:
		if len(got) != 2 {
			t.Fatalf("interval report has %d spans, want 2", len(got))
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("interval report after %v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no report after the flush interval")
	}
}

func TestReporterOutcomes(t *testing.T) {
	tests := []struct {
		name string
		send Sender
		want func(*Stats) uint64
	}{
		{"collector answers 500: dropped", func(context.Context, []byte) (int, error) { return 500, nil }, func(s *Stats) uint64 { return s.ReportsDropped.Load() }},
		{"no answer: failed", func(context.Context, []byte) (int, error) { return 0, errors.New("refused") }, func(s *Stats) uint64 { return s.ReportsFailed.Load() }},
		{"no cluster: skipped", func(context.Context, []byte) (int, error) { return 0, ErrNoCluster }, func(s *Stats) uint64 { return s.ReportsSkippedNoCluster.Load() }},
		{"202: sent", func(context.Context, []byte) (int, error) { return 202, nil }, func(s *Stats) uint64 { return s.ReportsSent.Load() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st Stats
			r, _ := startReporter(t, ReporterConfig{Send: tt.send, Stats: &st, MinFlushSpans: 1})
			r.Report(testSpan())
			waitStat(t, tt.name, func() bool { return tt.want(&st) == 1 })
		})
	}
}

// TestReporterCollectorDown: a collector that never answers (a black hole)
// or refuses: Report never blocks, spans past the queue are dropped and
// counted, and the heap stays flat however many spans come.
func TestReporterCollectorDown(t *testing.T) {
	for _, hang := range []bool{true, false} {
		name := "refusing"
		if hang {
			name = "hanging"
		}
		t.Run(name, func(t *testing.T) {
			var st Stats
			send := func(ctx context.Context, _ []byte) (int, error) {
				if hang {
					<-ctx.Done()
					return 0, ctx.Err()
				}
				return 0, errors.New("connection refused")
			}
			r, stop := startReporter(t, ReporterConfig{Send: send, Stats: &st, Timeout: time.Hour})
			heap := func() uint64 {
				runtime.GC()
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				return m.HeapAlloc
			}
			for range 5000 {
				r.Report(testSpan())
			}
			before := heap()
			const n = 200000
			start := time.Now()
			for range n {
				r.Report(testSpan())
			}
			perSpan := time.Since(start) / n
			after := heap()
			if perSpan > 20*time.Microsecond {
				t.Errorf("Report took %v per span: it must not wait for the collector", perSpan)
			}
			if len(r.queue) > cap(r.queue) || cap(r.queue) != DefaultQueue {
				t.Errorf("queue %d/%d", len(r.queue), cap(r.queue))
			}
			if st.SpansDropped.Load() == 0 {
				t.Error("no span dropped with the collector down")
			}
			if after > before+8<<20 {
				t.Errorf("heap grew %d → %d bytes over %d spans", before, after, n)
			}
			if !hang && st.ReportsFailed.Load() == 0 {
				t.Error("reports_failed 0 with a refusing collector")
			}
			stop()
		})
	}
}

func waitStat(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for range 500 {
		if ok() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}
