package tracing

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Envoy's reporter defaults (tracing.zipkin.min_flush_spans,
// tracing.zipkin.flush_interval_ms, tracing.zipkin.request_timeout).
const (
	DefaultMinFlushSpans = 5
	DefaultFlushInterval = 5 * time.Second
	DefaultTimeout       = 5 * time.Second
	// DefaultQueue bounds the spans waiting for the reporter; past it new
	// spans are dropped (Envoy drops a span its full buffer cannot take).
	DefaultQueue = 1024
	// DefaultInFlight bounds the reports being sent at once.
	DefaultInFlight = 2
)

// ErrNoCluster is what a Sender answers when the collector cluster is not
// in the proxy's configuration (reports_skipped_no_cluster).
var ErrNoCluster = errors.New("collector cluster not found")

// Sender POSTs one report (a JSON array of spans) to the collector and
// returns the status it answered.
type Sender func(ctx context.Context, body []byte) (status int, err error)

// Stats are Envoy's tracing.zipkin.* counters, shared by every reporter
// of a proxy as Envoy's scope is.
type Stats struct {
	SpansSent               atomic.Uint64 // spans_sent
	TimerFlushed            atomic.Uint64 // timer_flushed
	ReportsSent             atomic.Uint64 // reports_sent: the collector answered 202
	ReportsDropped          atomic.Uint64 // reports_dropped: it answered something else
	ReportsFailed           atomic.Uint64 // reports_failed: no answer
	ReportsSkippedNoCluster atomic.Uint64 // reports_skipped_no_cluster
	// SpansDropped (meshlab's) counts spans dropped because the queue or
	// every report slot was full: the collector is slow or down.
	SpansDropped atomic.Uint64
}

// Each calls f with every counter under Envoy's name.
func (s *Stats) Each(f func(name string, v uint64)) {
	f("tracing.zipkin.reports_dropped", s.ReportsDropped.Load())
	f("tracing.zipkin.reports_failed", s.ReportsFailed.Load())
	f("tracing.zipkin.reports_sent", s.ReportsSent.Load())
	f("tracing.zipkin.reports_skipped_no_cluster", s.ReportsSkippedNoCluster.Load())
	f("tracing.zipkin.spans_dropped", s.SpansDropped.Load())
	f("tracing.zipkin.spans_sent", s.SpansSent.Load())
	f("tracing.zipkin.timer_flushed", s.TimerFlushed.Load())
}

// ReporterConfig configures a Reporter; zero fields take the defaults.
type ReporterConfig struct {
	Send          Sender
	Stats         *Stats
	MinFlushSpans int
	FlushInterval time.Duration
	Timeout       time.Duration
	Queue         int
	InFlight      int
	Logger        *slog.Logger
}

// Reporter batches finished spans and sends them to the collector as
// Envoy's Zipkin reporter: a report when min_flush_spans are buffered, and
// whatever is buffered every flush_interval. A request only ever enqueues
// a span without waiting; when the queue is full the span is dropped and
// counted, so a slow or absent collector costs memory bounded by the
// queue and the reports in flight.
type Reporter struct {
	cfg   ReporterConfig
	queue chan *Span
	once  sync.Once
	ctx   context.Context
	wg    *sync.WaitGroup
}

// NewReporter returns a reporter that starts its goroutines, owned by wg
// and stopped by ctx, on its first span.
func NewReporter(ctx context.Context, wg *sync.WaitGroup, cfg ReporterConfig) *Reporter {
	if cfg.MinFlushSpans <= 0 {
		cfg.MinFlushSpans = DefaultMinFlushSpans
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultQueue
	}
	if cfg.InFlight <= 0 {
		cfg.InFlight = DefaultInFlight
	}
	if cfg.Stats == nil {
		cfg.Stats = &Stats{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Reporter{cfg: cfg, queue: make(chan *Span, cfg.Queue), ctx: ctx, wg: wg}
}

// Stats are the reporter's counters.
func (r *Reporter) Stats() *Stats { return r.cfg.Stats }

// Report enqueues a finished span; it never blocks.
func (r *Reporter) Report(s *Span) {
	r.once.Do(r.start)
	select {
	case r.queue <- s:
	default:
		r.cfg.Stats.SpansDropped.Add(1)
	}
}

func (r *Reporter) start() {
	if r.ctx.Err() != nil {
		return
	}
	// As many batches may wait as are being sent; past that a batch is
	// dropped.
	batches := make(chan []*Span, r.cfg.InFlight)
	r.wg.Add(1 + r.cfg.InFlight)
	for range r.cfg.InFlight {
		go func() {
			defer r.wg.Done()
			for b := range batches {
				r.send(b)
			}
		}()
	}
	go func() {
		defer r.wg.Done()
		defer close(batches)
		r.run(batches)
	}()
}

// maxBatch bounds a report: while every sender is busy, spans gather in
// the buffer up to this many, then new ones are dropped.
const maxBatch = 256

// run buffers spans and hands a batch to a sender once it holds
// min_flush_spans, or on each tick whatever is buffered. While the senders
// are busy (a slow collector, a burst) the batch grows, up to maxBatch,
// rather than being dropped: Envoy would open another request instead.
func (r *Reporter) run(batches chan<- []*Span) {
	t := time.NewTicker(r.cfg.FlushInterval)
	defer t.Stop()
	buf := make([]*Span, 0, r.cfg.MinFlushSpans)
	due := false // the interval passed with spans buffered
	for {
		var out chan<- []*Span
		if len(buf) >= r.cfg.MinFlushSpans || due && len(buf) > 0 {
			out = batches
			select {
			case out <- buf:
				buf, due = make([]*Span, 0, r.cfg.MinFlushSpans), false
				continue
			default:
			}
		}
		select {
		case <-r.ctx.Done():
			return
		case out <- buf:
			buf, due = make([]*Span, 0, r.cfg.MinFlushSpans), false
		case s := <-r.queue:
			if len(buf) >= maxBatch {
				r.cfg.Stats.SpansDropped.Add(1)
				continue
			}
			buf = append(buf, s)
		case <-t.C:
			r.cfg.Stats.TimerFlushed.Add(1)
			due = len(buf) > 0
		}
	}
}

// send POSTs one batch, counting the outcome as Envoy does.
func (r *Reporter) send(spans []*Span) {
	st := r.cfg.Stats
	st.SpansSent.Add(uint64(len(spans)))
	body := Encode(spans)
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.Timeout)
	defer cancel()
	code, err := r.cfg.Send(ctx, body)
	switch {
	case errors.Is(err, ErrNoCluster):
		st.ReportsSkippedNoCluster.Add(1)
	case err != nil:
		st.ReportsFailed.Add(1)
		r.cfg.Logger.Debug("zipkin report", "spans", len(spans), "err", err)
	case code != http.StatusAccepted:
		st.ReportsDropped.Add(1)
		r.cfg.Logger.Debug("zipkin report", "spans", len(spans), "status", code)
	default:
		st.ReportsSent.Add(1)
	}
}

// Encode is spans as Zipkin v2 JSON (a list of spans).
func Encode(spans []*Span) []byte {
	b := make([]byte, 0, 768*len(spans)+2)
	b = append(b, '[')
	for i, s := range spans {
		if i > 0 {
			b = append(b, ',')
		}
		b = s.AppendJSON(b)
	}
	return append(b, ']')
}
