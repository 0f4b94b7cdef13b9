package console

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Span is one span as the console's trace JSON has it: times in
// microseconds, tags as a map.
type Span struct {
	TraceID       string            `json:"traceID"`
	SpanID        string            `json:"spanID"`
	ParentSpanID  string            `json:"parentSpanID"`
	OperationName string            `json:"operationName"`
	StartTime     int64             `json:"startTime"`
	Duration      int64             `json:"duration"`
	ServiceName   string            `json:"serviceName"`
	Kind          string            `json:"kind"`
	Tags          map[string]string `json:"tags"`
	Error         bool              `json:"error"`
}

// Trace is one trace, with what a scatter plot needs up front.
type Trace struct {
	TraceID       string `json:"traceID"`
	Spans         []Span `json:"spans"`
	RootService   string `json:"rootService"`
	RootOperation string `json:"rootOperation"`
	Duration      int64  `json:"duration"`
	StartTime     int64  `json:"startTime"`
	Error         bool   `json:"error"`
}

// traceQuery is a search for a service's traces.
type traceQuery struct {
	Service     string // tracing service name, <app>.<namespace>
	Start, End  time.Time
	Limit       int
	MinDuration time.Duration
}

// tracer is a trace store's query API.
type tracer interface {
	Traces(ctx context.Context, q traceQuery) ([]Trace, error)
	// Trace returns nil, nil when the store has no such trace.
	Trace(ctx context.Context, id string) (*Trace, error)
	Ping(ctx context.Context) error
	Name() string
	URL() string
}

func newTracer(provider, base string) tracer {
	base = strings.TrimRight(base, "/")
	hc := &http.Client{Timeout: 15 * time.Second}
	if provider == "jaeger" {
		return &jaegerClient{base: base, http: hc}
	}
	return &zipkinClient{base: base, http: hc}
}

// getJSON fetches base+path and decodes it; a 404 is found=false.
func getJSON(ctx context.Context, hc *http.Client, base, path string, q url.Values, out any) (found bool, err error) {
	if base == "" {
		return false, fmt.Errorf("no trace store configured")
	}
	u := base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false, fmt.Errorf("GET %s: %w", u, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return false, fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.StatusCode == http.StatusNotFound {
		return false, nil
	}
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, out); err != nil {
		return false, fmt.Errorf("GET %s: decode: %w", u, err)
	}
	return true, nil
}

// zipkinClient speaks the Zipkin v2 API (the lab's store, Zipkin, Tempo's
// Zipkin-compatible query).
type zipkinClient struct {
	base string
	http *http.Client
}

func (z *zipkinClient) Name() string { return "zipkin" }
func (z *zipkinClient) URL() string  { return z.base }

type zipkinSpan struct {
	TraceID        string            `json:"traceId"`
	ID             string            `json:"id"`
	ParentID       string            `json:"parentId"`
	Name           string            `json:"name"`
	Kind           string            `json:"kind"`
	Timestamp      int64             `json:"timestamp"`
	Duration       int64             `json:"duration"`
	LocalEndpoint  *zipkinEndpoint   `json:"localEndpoint"`
	RemoteEndpoint *zipkinEndpoint   `json:"remoteEndpoint"`
	Tags           map[string]string `json:"tags"`
}

type zipkinEndpoint struct {
	ServiceName string `json:"serviceName"`
}

func (z *zipkinClient) Ping(ctx context.Context) error {
	var svcs []string
	_, err := getJSON(ctx, z.http, z.base, "/api/v2/services", nil, &svcs)
	return err
}

func (z *zipkinClient) Traces(ctx context.Context, q traceQuery) ([]Trace, error) {
	v := url.Values{
		// Zipkin keeps service names lower case.
		"serviceName": {strings.ToLower(q.Service)},
		"endTs":       {strconv.FormatInt(q.End.UnixMilli(), 10)},
		"lookback":    {strconv.FormatInt(q.End.Sub(q.Start).Milliseconds(), 10)},
		"limit":       {strconv.Itoa(q.Limit)},
	}
	if q.MinDuration > 0 {
		v.Set("minDuration", strconv.FormatInt(q.MinDuration.Microseconds(), 10))
	}
	var raw [][]zipkinSpan
	if _, err := getJSON(ctx, z.http, z.base, "/api/v2/traces", v, &raw); err != nil {
		return nil, fmt.Errorf("query traces of %s: %w", q.Service, err)
	}
	out := make([]Trace, 0, len(raw))
	for _, spans := range raw {
		out = append(out, fromZipkin(spans))
	}
	return out, nil
}

func (z *zipkinClient) Trace(ctx context.Context, id string) (*Trace, error) {
	var spans []zipkinSpan
	found, err := getJSON(ctx, z.http, z.base, "/api/v2/trace/"+url.PathEscape(id), nil, &spans)
	if err != nil || !found || len(spans) == 0 {
		return nil, err
	}
	t := fromZipkin(spans)
	return &t, nil
}

func fromZipkin(zs []zipkinSpan) Trace {
	spans := make([]Span, 0, len(zs))
	for _, z := range zs {
		sp := Span{TraceID: z.TraceID, SpanID: z.ID, ParentSpanID: z.ParentID, OperationName: z.Name,
			StartTime: z.Timestamp, Duration: z.Duration, Kind: strings.ToLower(z.Kind), Tags: z.Tags}
		if z.LocalEndpoint != nil {
			sp.ServiceName = z.LocalEndpoint.ServiceName
		}
		spans = append(spans, sp)
	}
	return assemble(spans)
}

// jaegerClient speaks Jaeger's HTTP query API.
type jaegerClient struct {
	base string
	http *http.Client
}

func (j *jaegerClient) Name() string { return "jaeger" }
func (j *jaegerClient) URL() string  { return j.base }

type jaegerAnswer struct {
	Data   []jaegerTrace `json:"data"`
	Errors []struct {
		Code int    `json:"code"`
		Msg  string `json:"msg"`
	} `json:"errors"`
}

type jaegerTrace struct {
	TraceID   string       `json:"traceID"`
	Spans     []jaegerSpan `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

type jaegerSpan struct {
	TraceID       string `json:"traceID"`
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	References    []struct {
		RefType string `json:"refType"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	StartTime int64 `json:"startTime"`
	Duration  int64 `json:"duration"`
	Tags      []struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	} `json:"tags"`
	ProcessID string `json:"processID"`
}

func (j *jaegerClient) Ping(ctx context.Context) error {
	var a struct{}
	_, err := getJSON(ctx, j.http, j.base, "/api/services", nil, &a)
	return err
}

func (j *jaegerClient) get(ctx context.Context, path string, q url.Values) ([]Trace, error) {
	var a jaegerAnswer
	found, err := getJSON(ctx, j.http, j.base, path, q, &a)
	if err != nil || !found {
		return nil, err
	}
	if len(a.Errors) > 0 {
		return nil, fmt.Errorf("jaeger: %d %s", a.Errors[0].Code, a.Errors[0].Msg)
	}
	out := make([]Trace, 0, len(a.Data))
	for _, jt := range a.Data {
		out = append(out, fromJaeger(jt))
	}
	return out, nil
}

func (j *jaegerClient) Traces(ctx context.Context, q traceQuery) ([]Trace, error) {
	v := url.Values{
		"service": {q.Service},
		"start":   {strconv.FormatInt(q.Start.UnixMicro(), 10)},
		"end":     {strconv.FormatInt(q.End.UnixMicro(), 10)},
		"limit":   {strconv.Itoa(q.Limit)},
	}
	if q.MinDuration > 0 {
		v.Set("minDuration", q.MinDuration.String())
	}
	ts, err := j.get(ctx, "/api/traces", v)
	if err != nil {
		return nil, fmt.Errorf("query traces of %s: %w", q.Service, err)
	}
	return ts, nil
}

func (j *jaegerClient) Trace(ctx context.Context, id string) (*Trace, error) {
	ts, err := j.get(ctx, "/api/traces/"+url.PathEscape(id), nil)
	if err != nil || len(ts) == 0 {
		return nil, err
	}
	return &ts[0], nil
}

func fromJaeger(jt jaegerTrace) Trace {
	spans := make([]Span, 0, len(jt.Spans))
	for _, js := range jt.Spans {
		sp := Span{TraceID: js.TraceID, SpanID: js.SpanID, OperationName: js.OperationName,
			StartTime: js.StartTime, Duration: js.Duration, Tags: map[string]string{}}
		for _, r := range js.References {
			if r.RefType == "CHILD_OF" {
				sp.ParentSpanID = r.SpanID
			}
		}
		for _, t := range js.Tags {
			sp.Tags[t.Key] = fmt.Sprint(t.Value)
		}
		sp.Kind = sp.Tags["span.kind"]
		if p, ok := jt.Processes[js.ProcessID]; ok {
			sp.ServiceName = p.ServiceName
		}
		spans = append(spans, sp)
	}
	return assemble(spans)
}

// assemble orders a trace's spans by start and fills in the root, the
// trace's extent and errors.
func assemble(spans []Span) Trace {
	sort.SliceStable(spans, func(i, j int) bool { return spans[i].StartTime < spans[j].StartTime })
	t := Trace{Spans: spans}
	ids := map[string]bool{}
	for _, sp := range spans {
		ids[sp.SpanID] = true
	}
	var end int64
	for i := range spans {
		sp := &spans[i]
		if sp.Tags == nil {
			sp.Tags = map[string]string{}
		}
		sp.Error = spanError(sp.Tags)
		t.Error = t.Error || sp.Error
		if t.TraceID == "" {
			t.TraceID = sp.TraceID
		}
		if t.StartTime == 0 || sp.StartTime < t.StartTime {
			t.StartTime = sp.StartTime
		}
		end = max(end, sp.StartTime+sp.Duration)
		if t.RootOperation == "" && (sp.ParentSpanID == "" || !ids[sp.ParentSpanID]) {
			t.RootService, t.RootOperation = sp.ServiceName, sp.OperationName
		}
	}
	if len(spans) > 0 {
		t.Duration = end - t.StartTime
	}
	return t
}

// spanError is Istio's and Kiali's reading of a failed span: error=true,
// or a 5xx status.
func spanError(tags map[string]string) bool {
	if tags["error"] == "true" {
		return true
	}
	code, err := strconv.Atoi(tags["http.status_code"])
	return err == nil && code >= 500
}

// tracingService is the name a pod's spans carry: <app>.<namespace>, as
// Istio sets Envoy's service cluster.
func tracingService(app, ns string) string { return app + "." + ns }

const (
	defaultTraceLimit    = 100
	defaultTraceLookback = time.Hour
)

func (s *server) entityTraces(r *http.Request, k entityKind) (any, error) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	q := r.URL.Query()
	now := time.Now()
	tq := traceQuery{End: now, Limit: defaultTraceLimit}
	micros := func(p string) (time.Time, bool, error) {
		v := q.Get(p)
		if v == "" {
			return time.Time{}, false, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return time.Time{}, false, badRequest("%s %q: want microseconds since the epoch", p, v)
		}
		return time.UnixMicro(n), true, nil
	}
	if t, ok, err := micros("endMicros"); err != nil {
		return nil, err
	} else if ok {
		tq.End = t
	}
	tq.Start = tq.End.Add(-defaultTraceLookback)
	if t, ok, err := micros("startMicros"); err != nil {
		return nil, err
	} else if ok {
		tq.Start = t
	}
	if !tq.Start.Before(tq.End) {
		return nil, badRequest("startMicros: must be before endMicros")
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 1000 {
			return nil, badRequest("limit %q: want a number from 1 to 1000", v)
		}
		tq.Limit = n
	}
	if v := q.Get("minDuration"); v != "" {
		d, err := parseMinDuration(v)
		if err != nil {
			return nil, err
		}
		tq.MinDuration = d
	}
	errorsOnly := false
	switch v := q.Get("errorsOnly"); v {
	case "", "false":
	case "true":
		errorsOnly = true
	default:
		return nil, badRequest("errorsOnly %q: want true or false", v)
	}
	m, err := s.meshSnapshot(r.Context())
	if err != nil {
		return nil, err
	}
	app, podPrefix := name, ""
	switch k {
	case kindWorkload:
		podPrefix = name + "-"
		for _, w := range workloadsIn(m, ns) {
			if w.Name == name && w.app() != "" {
				app = w.app()
			}
		}
	case kindService:
		for _, svc := range servicesIn(m, ns) {
			if svc.Name != name {
				continue
			}
			for _, w := range workloadsIn(m, ns) {
				if selects(svc, w) && w.app() != "" {
					app = w.app()
					break
				}
			}
		}
	}
	tq.Service = tracingService(app, ns)
	ts, err := s.traces.Traces(r.Context(), tq)
	if err != nil {
		return map[string]any{"data": []Trace{}, "errors": []string{err.Error()}}, nil
	}
	data := []Trace{}
	for _, t := range ts {
		if errorsOnly && !t.Error {
			continue
		}
		if podPrefix != "" && !fromPods(t, podPrefix, ns) {
			continue
		}
		data = append(data, t)
	}
	return map[string]any{"data": data, "errors": []string{}}, nil
}

// fromPods keeps a trace that has a span from a pod of the workload
// (Istio's node_id tag, sidecar~IP~pod.ns~ns.svc.cluster.local); a trace
// with no node_id at all is kept, there is nothing to tell.
func fromPods(t Trace, podPrefix, ns string) bool {
	any := false
	for _, sp := range t.Spans {
		id, ok := sp.Tags["node_id"]
		if !ok {
			continue
		}
		any = true
		parts := strings.Split(id, "~")
		if len(parts) >= 3 && strings.HasPrefix(parts[2], podPrefix) && strings.HasSuffix(parts[2], "."+ns) {
			return true
		}
	}
	return !any
}

var bareNumber = regexp.MustCompile(`^[0-9]+$`)

// parseMinDuration takes a Go duration, or a bare number of microseconds
// (Zipkin's minDuration unit).
func parseMinDuration(v string) (time.Duration, error) {
	if bareNumber.MatchString(v) {
		n, _ := strconv.ParseInt(v, 10, 64)
		return time.Duration(n) * time.Microsecond, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, badRequest("minDuration %q: want a duration such as 50ms, or microseconds", v)
	}
	return d, nil
}

func (s *server) trace(r *http.Request) (any, error) {
	id := r.PathValue("id")
	if !regexp.MustCompile(`^[0-9a-fA-F]{1,32}$`).MatchString(id) {
		return nil, badRequest("trace id %q: want 16 or 32 hex digits", id)
	}
	t, err := s.traces.Trace(r.Context(), id)
	if err != nil {
		return nil, &apiError{http.StatusBadGateway, fmt.Sprintf("read trace %s from %s: %v", id, s.traces.Name(), err)}
	}
	if t == nil {
		return nil, notFound("trace %s: not in %s at %s", id, s.traces.Name(), s.traces.URL())
	}
	return t, nil
}
