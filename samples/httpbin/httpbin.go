// Package httpbin owns the httpbin sample: the subset of httpbin.org's API
// that Istio's tasks use (status codes, delays, header and origin echo), so
// Istio's fault, timeout, retry, circuit-breaking and auth exercises work
// against it unchanged.
package httpbin

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/meshlab/meshlab/samples/serve"
)

// MaxDelay caps /delay/{s}, as httpbin does.
const MaxDelay = 10 * time.Second

// Options configures Run.
type Options struct {
	// Addr is the listen address; default ":8000".
	Addr string
	// Listener, when set, is served instead of listening on Addr.
	Listener net.Listener
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Drain bounds how long requests in flight may take once ctx is done
	// (serve.DefaultDrain when zero).
	Drain time.Duration
}

// Run serves httpbin until ctx is done, then drains.
func Run(ctx context.Context, opts Options) error {
	if opts.Addr == "" {
		opts.Addr = ":8000"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return serve.Run(ctx, opts.Listener, opts.Addr, Handler(), opts.Drain, opts.Logger.With("service", "httpbin"))
}

// Handler returns httpbin's HTTP handler.
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "httpbin: /status/{codes} /delay/{seconds} /headers /get /ip /user-agent /anything /health")
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("/status/{codes}", status)
	mux.HandleFunc("/delay/{seconds}", delay)
	mux.HandleFunc("GET /headers", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"headers": headers(r)})
	})
	mux.HandleFunc("GET /ip", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"origin": origin(r)})
	})
	mux.HandleFunc("GET /user-agent", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"user-agent": r.UserAgent()})
	})
	mux.HandleFunc("GET /get", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, echo(r))
	})
	mux.HandleFunc("/anything", anything)
	mux.HandleFunc("/anything/", anything)
	return mux
}

func anything(w http.ResponseWriter, r *http.Request) {
	e := echo(r)
	e["method"] = r.Method
	writeJSON(w, http.StatusOK, e)
}

// echo is the body of /get and /delay: what httpbin saw of the request.
func echo(r *http.Request) map[string]any {
	args := map[string]any{}
	for k, vs := range r.URL.Query() {
		if len(vs) == 1 {
			args[k] = vs[0]
		} else {
			args[k] = vs
		}
	}
	return map[string]any{
		"args":    args,
		"headers": headers(r),
		"origin":  origin(r),
		"url":     fullURL(r),
	}
}

// headers flattens r's headers as httpbin does: canonical names, repeated
// values joined by commas, and Host included.
func headers(r *http.Request) map[string]string {
	out := make(map[string]string, len(r.Header)+1)
	for k, vs := range r.Header {
		out[http.CanonicalHeaderKey(k)] = strings.Join(vs, ",")
	}
	out["Host"] = r.Host
	return out
}

// origin is the client address httpbin reports: the X-Forwarded-For chain a
// proxy added, else the peer's IP.
func origin(r *http.Request) string {
	if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
		return xff
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func fullURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
		scheme = p
	}
	return scheme + "://" + r.Host + r.URL.RequestURI()
}

// status answers with the code in the path or, for a list such as
// "200,500" or "200:0.9,503:0.1", one picked at random by weight.
func status(w http.ResponseWriter, r *http.Request) {
	code, err := pickStatus(r.PathValue("codes"), rand.Float64())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	switch code {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusUseProxy, http.StatusTemporaryRedirect:
		w.Header().Set("Location", "/redirect/1")
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Basic realm="Fake Realm"`)
	case http.StatusTeapot:
		w.Header().Set("X-More-Info", "http://tools.ietf.org/html/rfc2324")
		w.WriteHeader(code)
		fmt.Fprint(w, "\n    -=[ teapot ]=-\n")
		return
	}
	w.WriteHeader(code)
}

// pickStatus chooses a code from spec using u, a uniform number in [0,1).
func pickStatus(spec string, u float64) (int, error) {
	type choice struct {
		code   int
		weight float64
	}
	var choices []choice
	var total float64
	for _, part := range strings.Split(spec, ",") {
		c, w, hasWeight := strings.Cut(strings.TrimSpace(part), ":")
		code, err := strconv.Atoi(c)
		if err != nil || code < 100 || code > 599 {
			return 0, fmt.Errorf("invalid status code %q", c)
		}
		weight := 1.0
		if hasWeight {
			if weight, err = strconv.ParseFloat(w, 64); err != nil || weight < 0 {
				return 0, fmt.Errorf("invalid weight %q for status %d", w, code)
			}
		}
		choices = append(choices, choice{code, weight})
		total += weight
	}
	if total == 0 {
		return 0, fmt.Errorf("status weights in %q sum to zero", spec)
	}
	x := u * total
	for _, c := range choices {
		if x < c.weight {
			return c.code, nil
		}
		x -= c.weight
	}
	return choices[len(choices)-1].code, nil
}

func delay(w http.ResponseWriter, r *http.Request) {
	secs, err := strconv.ParseFloat(r.PathValue("seconds"), 64)
	if err != nil || secs < 0 {
		http.Error(w, "invalid delay", http.StatusBadRequest)
		return
	}
	d := min(time.Duration(secs*float64(time.Second)), MaxDelay)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		return
	}
	writeJSON(w, http.StatusOK, echo(r))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n')) // a failed write: the client is gone
}
