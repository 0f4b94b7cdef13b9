package zipkin

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/openzipkin/zipkin-go/model"
)

// Query is Zipkin's QueryRequest: every condition must hold for a trace to
// match. Times are milliseconds since the epoch and durations microseconds,
// as in Zipkin's API.
type Query struct {
	ServiceName       string
	RemoteServiceName string
	SpanName          string
	// AnnotationQuery maps a tag key to the value it must have; an empty
	// value matches a tag key or an annotation value alone.
	AnnotationQuery map[string]string
	MinDuration     int64 // 0: none
	MaxDuration     int64 // 0: none; only with MinDuration
	EndTs           int64
	Lookback        int64
	Limit           int
}

// ParseAnnotationQuery reads Zipkin's annotationQuery syntax, e.g.
// `http.method=GET and error`: terms joined by " and ", a term with "=" a
// tag that must have that value, a term without one a tag key or annotation
// that must be present (and does not override a tag term for the same key).
func ParseAnnotationQuery(q string) map[string]string {
	out := map[string]string{}
	if q == "" {
		return out
	}
	for _, term := range strings.Split(q, " and ") {
		k, v, ok := strings.Cut(term, "=")
		if !ok {
			k = strings.TrimSpace(term)
			if _, dup := out[k]; !dup {
				out[k] = ""
			}
			continue
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out
}

// normalizeQuery lower-cases names and checks the bounds as Zipkin's
// QueryRequest.Builder.build does.
func (q *Query) normalize() error {
	q.ServiceName = strings.ToLower(q.ServiceName)
	q.RemoteServiceName = strings.ToLower(q.RemoteServiceName)
	q.SpanName = strings.ToLower(q.SpanName)
	if q.SpanName == "all" {
		q.SpanName = ""
	}
	switch {
	case q.EndTs <= 0:
		return errors.New("endTs <= 0")
	case q.Limit <= 0:
		return errors.New("limit <= 0")
	case q.Lookback <= 0:
		return errors.New("lookback <= 0")
	case q.MinDuration < 0:
		return errors.New("minDuration <= 0")
	case q.MinDuration == 0 && q.MaxDuration != 0:
		return errors.New("maxDuration is only valid with minDuration")
	case q.MaxDuration != 0 && q.MaxDuration < q.MinDuration:
		return errors.New("maxDuration < minDuration")
	}
	return nil
}

// test is Zipkin's QueryRequest.test on one trace's spans.
func (q *Query) test(spans []*model.SpanModel) bool {
	// The root's timestamp, else the earliest.
	var ts int64
	for _, s := range spans {
		st := micros(s.Timestamp)
		if st == 0 {
			continue
		}
		if s.ParentID == nil {
			ts = st
			break
		}
		if ts == 0 || ts > st {
			ts = st
		}
	}
	if ts == 0 || ts < (q.EndTs-q.Lookback)*1000 || ts > q.EndTs*1000 {
		return false
	}
	testedDuration := q.MinDuration == 0 && q.MaxDuration == 0
	serviceMatched := q.ServiceName == ""
	remoteLeft := q.RemoteServiceName
	nameLeft := q.SpanName
	remaining := make(map[string]string, len(q.AnnotationQuery))
	for k, v := range q.AnnotationQuery {
		remaining[k] = v
	}
	for _, s := range spans {
		if q.ServiceName != "" && q.ServiceName != serviceName(s.LocalEndpoint) {
			continue
		}
		serviceMatched = true
		for _, a := range s.Annotations {
			if v, ok := remaining[a.Value]; ok && v == "" {
				delete(remaining, a.Value)
			}
		}
		for k, v := range s.Tags {
			want, ok := remaining[k]
			if ok && (want == "" || want == v) {
				delete(remaining, k)
			}
		}
		if remoteLeft != "" && remoteLeft == serviceName(s.RemoteEndpoint) {
			remoteLeft = ""
		}
		if nameLeft != "" && nameLeft == s.Name {
			nameLeft = ""
		}
		if !testedDuration {
			d := s.Duration.Microseconds()
			if q.MaxDuration != 0 {
				testedDuration = d >= q.MinDuration && d <= q.MaxDuration
			} else {
				testedDuration = d >= q.MinDuration
			}
		}
	}
	return serviceMatched && remoteLeft == "" && nameLeft == "" && len(remaining) == 0 && testedDuration
}

// Traces answers /api/v2/traces: the newest matching traces first, at most
// q.Limit, each a list of spans sharing one full trace id.
func (s *Store) Traces(q Query) ([][]*model.SpanModel, error) {
	if err := q.normalize(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	ts := make([]*trace, 0, len(s.traces))
	for _, t := range s.traces {
		ts = append(ts, t)
	}
	// Newest first by their latest span, as Zipkin walks its
	// (trace, timestamp) index from the top.
	slices.SortFunc(ts, func(a, b *trace) int {
		if a.newest != b.newest {
			return cmp.Compare(b.newest, a.newest)
		}
		return cmp.Compare(b.low, a.low)
	})
	out := [][]*model.SpanModel{}
	for _, t := range ts {
		if len(out) >= q.Limit {
			break
		}
		if !q.test(t.spans) {
			continue
		}
		// Re-run the query on each full trace id, as Zipkin does with
		// strictTraceId.
		for _, strict := range strictByTraceID(t.spans) {
			if q.test(strict) {
				out = append(out, strict)
			}
		}
	}
	return out, nil
}

func strictByTraceID(spans []*model.SpanModel) [][]*model.SpanModel {
	var ids []model.TraceID
	by := map[model.TraceID][]*model.SpanModel{}
	for _, s := range spans {
		if _, ok := by[s.TraceID]; !ok {
			ids = append(ids, s.TraceID)
		}
		by[s.TraceID] = append(by[s.TraceID], s)
	}
	out := make([][]*model.SpanModel, 0, len(ids))
	for _, id := range ids {
		out = append(out, by[id])
	}
	return out
}

// ParseTraceID reads a trace id as Zipkin's API takes it: 1 to 32 hex
// digits, left-padded, a 128-bit id whose high half is zero the same as its
// 64-bit form.
func ParseTraceID(h string) (model.TraceID, error) {
	if h == "" || len(h) > 32 || strings.Trim(strings.ToLower(h), "0123456789abcdef") != "" {
		return model.TraceID{}, fmt.Errorf("traceId %q is not 1 to 32 hex characters", h)
	}
	id, err := model.TraceIDFromHex(h)
	if err != nil {
		return model.TraceID{}, fmt.Errorf("traceId %q: %w", h, err)
	}
	if id.Empty() {
		return model.TraceID{}, fmt.Errorf("traceId %q is all zeros", h)
	}
	return id, nil
}

// Trace answers /api/v2/trace/{id}: the spans with exactly that trace id
// (strictTraceId, Zipkin's default), nil when none.
func (s *Store) Trace(id model.TraceID) []*model.SpanModel {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.traces[id.Low]
	if t == nil {
		return nil
	}
	var out []*model.SpanModel
	for _, sp := range t.spans {
		if sp.TraceID == id {
			out = append(out, sp)
		}
	}
	return out
}

// TraceMany answers /api/v2/traceMany: the traces found, in the order asked.
func (s *Store) TraceMany(ids []model.TraceID) [][]*model.SpanModel {
	out := [][]*model.SpanModel{}
	seen := map[model.TraceID]bool{}
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		if t := s.Trace(id); len(t) > 0 {
			out = append(out, t)
		}
	}
	return out
}

// names collects a sorted set of strings from every span.
func (s *Store) names(pick func(*model.SpanModel) string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	set := map[string]struct{}{}
	for _, t := range s.traces {
		for _, sp := range t.spans {
			if n := pick(sp); n != "" {
				set[n] = struct{}{}
			}
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Services answers /api/v2/services: every local service name.
func (s *Store) Services() []string {
	return s.names(func(sp *model.SpanModel) string { return serviceName(sp.LocalEndpoint) })
}

// SpanNames answers /api/v2/spans?serviceName=: the span names of a service.
func (s *Store) SpanNames(service string) []string {
	service = strings.ToLower(service)
	return s.names(func(sp *model.SpanModel) string {
		if serviceName(sp.LocalEndpoint) != service {
			return ""
		}
		return sp.Name
	})
}

// RemoteServices answers /api/v2/remoteServices?serviceName=.
func (s *Store) RemoteServices(service string) []string {
	service = strings.ToLower(service)
	return s.names(func(sp *model.SpanModel) string {
		if serviceName(sp.LocalEndpoint) != service {
			return ""
		}
		return serviceName(sp.RemoteEndpoint)
	})
}

// AutocompleteKeys answers /api/v2/autocompleteKeys: the configured keys.
func (s *Store) AutocompleteKeys() []string {
	return append([]string{}, s.opts.AutocompleteKeys...)
}

// AutocompleteValues answers /api/v2/autocompleteValues?key=: the values
// seen for a configured key (none for a key not configured, as Zipkin).
func (s *Store) AutocompleteValues(key string) []string {
	if !slices.Contains(s.opts.AutocompleteKeys, key) {
		return []string{}
	}
	return s.names(func(sp *model.SpanModel) string { return sp.Tags[key] })
}

// DependencyLink is Zipkin's: calls from parent service to child service.
type DependencyLink struct {
	Parent     string `json:"parent"`
	Child      string `json:"child"`
	CallCount  int64  `json:"callCount"`
	ErrorCount int64  `json:"errorCount,omitempty"`
}

// Dependencies answers /api/v2/dependencies: the links of traces with a span
// in [endTs-lookback, endTs] (milliseconds), as Zipkin's DependencyLinker
// derives them.
func (s *Store) Dependencies(endTs, lookback int64) ([]DependencyLink, error) {
	if endTs <= 0 {
		return nil, errors.New("endTs <= 0")
	}
	if lookback <= 0 {
		return nil, errors.New("lookback <= 0")
	}
	begin, end := (endTs-lookback)*1000, endTs*1000
	s.mu.RLock()
	defer s.mu.RUnlock()
	ts := make([]*trace, 0, len(s.traces))
	for _, t := range s.traces {
		if slices.ContainsFunc(t.spans, func(sp *model.SpanModel) bool {
			m := micros(sp.Timestamp)
			return m >= begin && m <= end
		}) {
			ts = append(ts, t)
		}
	}
	slices.SortFunc(ts, compareTrace)
	l := newLinker()
	for _, t := range ts {
		l.putTrace(t.spans)
	}
	return l.links(), nil
}
