// Package zipkin owns the lab's trace store speaking the Zipkin v2 API: the
// `meshlab zipkin` mode that stands in for Istio's zipkin addon (Service
// zipkin in istio-system, port 9411). Proxies POST spans to /api/v2/spans;
// Kiali, the Zipkin UI or curl read them back through the same API.
//
// The store follows Zipkin's own InMemoryStorage (zipkin2.storage): spans are
// kept as reported, grouped by the low 64 bits of their trace id, the eldest
// traces go first when the span bound is reached, and queries answer with
// Zipkin's QueryRequest semantics and strictTraceId=true (its default).
package zipkin

import (
	"container/heap"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/openzipkin/zipkin-go/model"
)

// Options bound the store.
type Options struct {
	// MaxSpans is the most spans kept; the eldest traces are dropped whole
	// to make room (Zipkin's MEM_MAX_SPANS, default 500000).
	MaxSpans int
	// MaxAge drops traces whose newest span started longer ago. 0 keeps
	// traces until MaxSpans pushes them out.
	MaxAge time.Duration
	// AutocompleteKeys are the tag keys /api/v2/autocompleteKeys offers and
	// whose values /api/v2/autocompleteValues lists (Zipkin's
	// AUTOCOMPLETE_KEYS, empty by default).
	AutocompleteKeys []string
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Store holds spans in memory, indexed by trace.
type Store struct {
	opts Options

	mu      sync.RWMutex
	traces  map[uint64]*trace // by the low 64 bits of the trace id
	order   traceHeap         // eldest trace (by timestamp) on top
	spans   int
	strings map[string]string // interned names and tags
	// changed counts accepted or evicted spans, so a snapshot is written
	// only when there is something new.
	changed uint64
}

// trace is every span sharing the low 64 bits of a trace id: Zipkin's index,
// so a 128-bit and a 64-bit id of the same trace land together and
// strictTraceId then tells them apart.
type trace struct {
	low   uint64
	spans []*model.SpanModel
	// ts is the trace's place in the eviction order: its earliest span
	// timestamp (microseconds), as Zipkin's TraceIdTimestamp orders them.
	ts int64
	// newest is the latest span timestamp, for MaxAge.
	newest int64
	index  int // in Store.order
}

// New returns an empty store.
func New(opts Options) *Store {
	if opts.MaxSpans <= 0 {
		opts.MaxSpans = 500000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Store{opts: opts, traces: map[uint64]*trace{}, strings: map[string]string{}}
}

// micros is a span's timestamp in microseconds since the epoch; 0 when the
// span has none.
func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// normalize lower-cases what Zipkin lower-cases on the way in (span and
// service names), so queries compare as Zipkin's do.
//
// It also interns the strings: a proxy's spans repeat the same tag keys,
// node_id, cluster names and istio.* values, and a decoded span owns a copy
// of each; sharing them is most of what keeps a span small in the store.
func (st *Store) normalize(s *model.SpanModel) {
	switch s.Kind {
	case model.Client, model.Server, model.Producer, model.Consumer:
	default:
		// proto3's SPAN_KIND_UNSPECIFIED, as zipkin-go's decoder spells it.
		s.Kind = model.Undetermined
	}
	if s.ParentID != nil && *s.ParentID == 0 {
		// An all-zero parent is no parent (Zipkin's reading; zipkin-go's
		// proto3 decoder hands back a zero for an absent one).
		s.ParentID = nil
	}
	if !s.Timestamp.IsZero() && s.Timestamp.UnixMicro() <= 0 {
		// proto3 has no "absent": 0 is no timestamp, as in JSON.
		s.Timestamp = time.Time{}
	}
	s.Name = st.intern(strings.ToLower(s.Name))
	if s.LocalEndpoint != nil {
		s.LocalEndpoint.ServiceName = st.intern(strings.ToLower(s.LocalEndpoint.ServiceName))
	}
	if s.RemoteEndpoint != nil {
		s.RemoteEndpoint.ServiceName = st.intern(strings.ToLower(s.RemoteEndpoint.ServiceName))
	}
	for k, v := range s.Tags {
		// Same key, so the map is rewritten in place: only the strings move.
		s.Tags[st.intern(k)] = st.intern(v)
	}
}

// internCap bounds the interning table: request ids and URLs are mostly
// unique, and the table is only a cache (spans keep their strings when it is
// cleared).
const internCap = 1 << 16

// intern returns the table's copy of v. Called with s.mu held.
func (s *Store) intern(v string) string {
	if c, ok := s.strings[v]; ok {
		return c
	}
	if len(s.strings) >= internCap {
		clear(s.strings)
	}
	s.strings[v] = v
	return v
}

// Accept stores spans. A span the store already holds (the same trace, id,
// kind, service and timestamp: a reporter's retry) is kept once, as Zipkin's
// LinkedHashSet does.
func (s *Store) Accept(spans []*model.SpanModel) {
	if len(spans) == 0 {
		return
	}
	now := micros(s.opts.Now())
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sp := range spans {
		s.normalize(sp)
		ts := micros(sp.Timestamp)
		if ts == 0 {
			// Without a timestamp Zipkin files a span at 0, first out; here it
			// is filed at its arrival so MaxAge does not drop it at once.
			ts = now
		}
		t := s.traces[sp.TraceID.Low]
		if t == nil {
			t = &trace{low: sp.TraceID.Low, ts: ts, newest: ts}
			s.traces[t.low] = t
			heap.Push(&s.order, t)
		} else if slices.ContainsFunc(t.spans, func(o *model.SpanModel) bool { return sameSpan(o, sp) }) {
			continue
		}
		t.spans = append(t.spans, sp)
		s.spans++
		s.changed++
		t.newest = max(t.newest, ts)
		if ts < t.ts {
			t.ts = ts
			heap.Fix(&s.order, t.index)
		}
	}
	s.evictLocked(now)
}

func sameSpan(a, b *model.SpanModel) bool {
	return a.TraceID == b.TraceID && a.ID == b.ID && a.Kind == b.Kind && a.Shared == b.Shared &&
		serviceName(a.LocalEndpoint) == serviceName(b.LocalEndpoint) &&
		a.Timestamp.Equal(b.Timestamp) && a.Duration == b.Duration
}

// evictLocked drops the eldest traces until the span bound holds, then any
// trace older than MaxAge.
func (s *Store) evictLocked(now int64) {
	for s.spans > s.opts.MaxSpans && len(s.order) > 0 {
		s.dropLocked(heap.Pop(&s.order).(*trace))
	}
	if s.opts.MaxAge <= 0 {
		return
	}
	cutoff := now - s.opts.MaxAge.Microseconds()
	// The heap is ordered by a trace's first span; one whose first span is
	// old but whose newest is not stays, and so may shield younger-starting
	// old traces below it for a while: MaxAge is a bound, not a deadline.
	for len(s.order) > 0 && s.order[0].newest < cutoff {
		s.dropLocked(heap.Pop(&s.order).(*trace))
	}
}

func (s *Store) dropLocked(t *trace) {
	delete(s.traces, t.low)
	s.spans -= len(t.spans)
	s.changed += uint64(len(t.spans))
}

// Expire applies MaxAge now; the mode calls it periodically so an idle store
// also forgets old traces.
func (s *Store) Expire() {
	now := micros(s.opts.Now())
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evictLocked(now)
}

// Len returns the number of spans and traces (by low trace id) held.
func (s *Store) Len() (spans, traces int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.spans, len(s.traces)
}

// version is a counter that moves whenever spans come or go.
func (s *Store) version() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.changed
}

// all returns every span, eldest trace first, for a snapshot.
func (s *Store) all() []*model.SpanModel {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ts := slices.Clone(s.order)
	slices.SortFunc(ts, func(a, b *trace) int { return compareTrace(b, a) })
	out := make([]*model.SpanModel, 0, s.spans)
	for _, t := range ts {
		out = append(out, t.spans...)
	}
	return out
}

// compareTrace orders traces newest first, as Zipkin's TIMESTAMP_DESCENDING.
func compareTrace(a, b *trace) int {
	switch {
	case a.ts > b.ts:
		return -1
	case a.ts < b.ts:
		return 1
	case a.low > b.low:
		return -1
	case a.low < b.low:
		return 1
	}
	return 0
}

// traceHeap is a min-heap of traces by timestamp: the eldest on top.
type traceHeap []*trace

func (h traceHeap) Len() int           { return len(h) }
func (h traceHeap) Less(i, j int) bool { return compareTrace(h[i], h[j]) > 0 }
func (h traceHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *traceHeap) Push(x any) {
	t := x.(*trace)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *traceHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	t.index = -1
	return t
}

func serviceName(e *model.Endpoint) string {
	if e == nil {
		return ""
	}
	return e.ServiceName
}
