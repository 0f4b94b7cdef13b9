package zipkin

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/openzipkin/zipkin-go/model"
	"github.com/openzipkin/zipkin-go/proto/zipkin_proto3"
)

// maxBody bounds one POST, compressed or not: Envoy sends a few spans at a
// time, and a store that must stay small in memory cannot take a body of any
// size.
const maxBody = 16 << 20

// DefaultLookback is Zipkin's QUERY_LOOKBACK default: one day.
const DefaultLookback = 24 * time.Hour

// Handler serves the Zipkin v2 API for s.
func Handler(s *Store, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &api{s: s, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v2/spans", a.postSpans)
	mux.HandleFunc("GET /api/v2/services", a.services)
	mux.HandleFunc("GET /api/v2/spans", a.spanNames)
	mux.HandleFunc("GET /api/v2/remoteServices", a.remoteServices)
	mux.HandleFunc("GET /api/v2/traces", a.traces)
	mux.HandleFunc("GET /api/v2/trace/{traceId}", a.trace)
	mux.HandleFunc("GET /api/v2/traceMany", a.traceMany)
	mux.HandleFunc("GET /api/v2/dependencies", a.dependencies)
	mux.HandleFunc("GET /api/v2/autocompleteKeys", a.autocompleteKeys)
	mux.HandleFunc("GET /api/v2/autocompleteValues", a.autocompleteValues)
	mux.HandleFunc("GET /health", a.health)
	return mux
}

type api struct {
	s   *Store
	log *slog.Logger
}

// DecodeSpans reads a Zipkin v2 span list in the given content type and
// encoding, as Zipkin's collector does: JSON (also when no type is given)
// or proto3 (application/x-protobuf), optionally gzip-compressed.
func DecodeSpans(body io.Reader, contentType, contentEncoding string) ([]*model.SpanModel, error) {
	return decodeSpans(body, contentType, contentEncoding, maxBody)
}

func decodeSpans(body io.Reader, contentType, contentEncoding string, limit int64) ([]*model.SpanModel, error) {
	switch strings.ToLower(strings.TrimSpace(contentEncoding)) {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, fmt.Errorf("reading the gzip body: %w", err)
		}
		defer func() { _ = zr.Close() }()
		body = zr
	default:
		return nil, fmt.Errorf("unsupported Content-Encoding %q: send the body plain or gzip", contentEncoding)
	}
	raw, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading the body: %w", err)
	}
	if int64(len(raw)) > limit {
		return nil, fmt.Errorf("the body is over %d bytes, uncompressed: send spans in smaller batches", limit)
	}
	mt := "application/json"
	if contentType != "" {
		if mt, _, err = mime.ParseMediaType(contentType); err != nil {
			return nil, fmt.Errorf("Content-Type %q: %w", contentType, err)
		}
	}
	var spans []*model.SpanModel
	switch mt {
	case "application/json":
		if err := json.Unmarshal(raw, &spans); err != nil {
			return nil, fmt.Errorf("decoding Zipkin v2 JSON spans (a JSON array of span objects): %w", err)
		}
	case "application/x-protobuf", "application/protobuf":
		if spans, err = zipkin_proto3.ParseSpans(raw, false); err != nil {
			return nil, fmt.Errorf("decoding Zipkin proto3 ListOfSpans: %w", err)
		}
	default:
		return nil, fmt.Errorf("unsupported Content-Type %q: send application/json or application/x-protobuf (Zipkin v2)", mt)
	}
	for i, s := range spans {
		if s == nil {
			return nil, fmt.Errorf("span %d is null", i)
		}
		if s.TraceID.Empty() {
			return nil, fmt.Errorf("span %d: %w", i, model.ErrValidTraceIDRequired)
		}
		if s.ID == 0 {
			return nil, fmt.Errorf("span %d: %w", i, model.ErrValidIDRequired)
		}
	}
	return spans, nil
}

func (a *api) postSpans(w http.ResponseWriter, r *http.Request) {
	spans, err := DecodeSpans(http.MaxBytesReader(w, r.Body, maxBody), r.Header.Get("Content-Type"), r.Header.Get("Content-Encoding"))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		a.log.Debug("rejected spans", "remote", r.RemoteAddr, "err", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.s.Accept(spans)
	w.WriteHeader(http.StatusAccepted)
}

func (a *api) write(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encoding the answer: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	// Zipkin's QUERY_ALLOWED_ORIGINS defaults to "*": a UI served from
	// elsewhere (a Zipkin UI on the host, Grafana in the browser) can read.
	w.Header().Set("Access-Control-Allow-Origin", "*")
	_, _ = w.Write(b) // a client that went away is not an error of ours
}

func badRequest(w http.ResponseWriter, err error) {
	http.Error(w, err.Error(), http.StatusBadRequest)
}

func (a *api) services(w http.ResponseWriter, _ *http.Request) { a.write(w, a.s.Services()) }

func (a *api) spanNames(w http.ResponseWriter, r *http.Request) {
	svc := r.URL.Query().Get("serviceName")
	if svc == "" {
		badRequest(w, errors.New("serviceName is required"))
		return
	}
	a.write(w, a.s.SpanNames(svc))
}

func (a *api) remoteServices(w http.ResponseWriter, r *http.Request) {
	svc := r.URL.Query().Get("serviceName")
	if svc == "" {
		badRequest(w, errors.New("serviceName is required"))
		return
	}
	a.write(w, a.s.RemoteServices(svc))
}

// intParam reads an optional integer query parameter.
func intParam(r *http.Request, name string, def int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s=%q is not an integer", name, v)
	}
	return n, nil
}

func (a *api) traces(w http.ResponseWriter, r *http.Request) {
	qv := r.URL.Query()
	q := Query{
		ServiceName:       qv.Get("serviceName"),
		RemoteServiceName: qv.Get("remoteServiceName"),
		SpanName:          qv.Get("spanName"),
		AnnotationQuery:   ParseAnnotationQuery(qv.Get("annotationQuery")),
	}
	var err error
	var limit int64
	for _, p := range []struct {
		name string
		dst  *int64
		def  int64
	}{
		{"minDuration", &q.MinDuration, 0},
		{"maxDuration", &q.MaxDuration, 0},
		{"endTs", &q.EndTs, a.s.opts.Now().UnixMilli()},
		{"lookback", &q.Lookback, DefaultLookback.Milliseconds()},
		{"limit", &limit, 10},
	} {
		if *p.dst, err = intParam(r, p.name, p.def); err != nil {
			badRequest(w, err)
			return
		}
	}
	q.Limit = int(limit)
	traces, err := a.s.Traces(q)
	if err != nil {
		badRequest(w, err)
		return
	}
	a.write(w, traces)
}

func (a *api) trace(w http.ResponseWriter, r *http.Request) {
	id, err := ParseTraceID(r.PathValue("traceId"))
	if err != nil {
		badRequest(w, err)
		return
	}
	spans := a.s.Trace(id)
	if len(spans) == 0 {
		http.Error(w, fmt.Sprintf("trace %s not found", id), http.StatusNotFound)
		return
	}
	a.write(w, spans)
}

func (a *api) traceMany(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query().Get("traceIds")
	if v == "" {
		badRequest(w, errors.New("traceIds is required: a comma-separated list of trace ids"))
		return
	}
	var ids []model.TraceID
	for _, h := range strings.Split(v, ",") {
		id, err := ParseTraceID(strings.TrimSpace(h))
		if err != nil {
			badRequest(w, err)
			return
		}
		ids = append(ids, id)
	}
	a.write(w, a.s.TraceMany(ids))
}

func (a *api) dependencies(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("endTs") == "" {
		badRequest(w, errors.New("endTs is required: epoch milliseconds"))
		return
	}
	endTs, err := intParam(r, "endTs", 0)
	if err != nil {
		badRequest(w, err)
		return
	}
	lookback, err := intParam(r, "lookback", DefaultLookback.Milliseconds())
	if err != nil {
		badRequest(w, err)
		return
	}
	links, err := a.s.Dependencies(endTs, lookback)
	if err != nil {
		badRequest(w, err)
		return
	}
	a.write(w, links)
}

func (a *api) autocompleteKeys(w http.ResponseWriter, _ *http.Request) {
	a.write(w, a.s.AutocompleteKeys())
}

func (a *api) autocompleteValues(w http.ResponseWriter, r *http.Request) {
	key := r.URL.Query().Get("key")
	if key == "" {
		badRequest(w, errors.New("key is required"))
		return
	}
	a.write(w, a.s.AutocompleteValues(key))
}

// health answers as Zipkin's /health (Armeria's health check shape).
func (a *api) health(w http.ResponseWriter, _ *http.Request) {
	a.write(w, map[string]any{
		"status": "UP",
		"zipkin": map[string]any{
			"status":  "UP",
			"details": map[string]any{"InMemoryStorage{}": map[string]string{"status": "UP"}},
		},
	})
}
