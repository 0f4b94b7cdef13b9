// Package console owns meshlab's console server (`meshlab kiali`): the HTTP
// server on 20001 that serves the embedded web UI under the web root and
// Kiali's JSON API beside it, the console's authentication, and the data
// sources it reads — the control plane's API (config, registry, proxy
// status), the lab's Prometheus and the trace store (Zipkin or Jaeger API).
// The graph, health, validation and wizard logic live in its subpackages;
// this package gathers their inputs and answers HTTP.
package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"

	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/console/web"
)

// Options configure a console.
type Options struct {
	Listen          string // ":20001"
	WebRoot         string // "/kiali" default (Kiali's); walkthrough uses "/dashboards/kiali"; "/" on Listen redirects to it
	ControlPlaneURL string // "http://istiod.istio-system:15014"
	TokenFile       string // the control plane API token the console acts with (local runtime: the lab's)
	PrometheusURL   string // "http://prometheus.istio-system:9090"
	TracingProvider string // "zipkin" (default) | "jaeger"
	TracingURL      string // "http://zipkin.istio-system:9411"
	AuthStrategy    string // "anonymous" (default) | "token": every /api call needs the console token (Bearer or cookie)
	AuthTokenFile   string // the token a user must present under "token" ("" = TokenFile's)
	// Runtime lists pods and deployments and reads logs (local:
	// local.Open(stateDir, WithControlPlane(...)); kube: in-cluster); nil
	// = no logs, pods from the registry.
	Runtime lab.Runtime
	Cluster string // "Kubernetes"
	Log     *slog.Logger
}

// Defaults of Options, as Kiali's and the lab's.
const (
	DefaultListen   = ":20001"
	DefaultWebRoot  = "/kiali"
	DefaultCluster  = "Kubernetes"
	shutdownTimeout = 5 * time.Second
	// cookieName carries the console token after api/authenticate.
	cookieName = "meshlab-console"
)

// Run serves the console on o.Listen until ctx ends, then shuts down
// within 5 s.
func Run(ctx context.Context, o Options) error {
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	h, err := NewHandler(ctx, o)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("console: listen on %s: %w", o.Listen, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	logger(o).Info("console serving", "addr", ln.Addr().String(), "webRoot", normalizeRoot(o.WebRoot))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("console: serve on %s: %w", o.Listen, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	if err != nil {
		// Requests still running after the bound are cut, not waited for.
		_ = srv.Close()
	}
	if serr := <-served; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return fmt.Errorf("console: serve: %w", serr)
	}
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("console: shut down: %w", err)
	}
	return nil
}

func logger(o Options) *slog.Logger {
	if o.Log != nil {
		return o.Log
	}
	return slog.New(slog.DiscardHandler)
}

// normalizeRoot turns a web root into "/x/y" form ("" for "/").
func normalizeRoot(root string) string {
	if root == "" {
		root = DefaultWebRoot
	}
	root = "/" + strings.Trim(root, "/")
	if root == "/" {
		return ""
	}
	return root
}

// server is one console: its data sources and settings.
type server struct {
	o      Options
	log    *slog.Logger
	root   string // web root without a trailing slash; "" for "/"
	cp     *api.Client
	prom   promv1.API
	traces tracer
	// authToken is what a user presents under the token strategy.
	authToken string

	meshMu sync.Mutex
	mesh   *snapshot
	ttl    time.Duration // how long a snapshot serves: snapshotTTL
}

// NewHandler builds the console's handler: the web UI under the web root,
// the API under its api/, healthz. ctx bounds nothing in a request; it is
// there so data sources that need a background owner have one.
func NewHandler(ctx context.Context, o Options) (http.Handler, error) {
	s, err := newServer(o)
	if err != nil {
		return nil, err
	}
	_ = ctx
	return s.handler(), nil
}

func newServer(o Options) (*server, error) {
	if o.Cluster == "" {
		o.Cluster = DefaultCluster
	}
	switch o.AuthStrategy {
	case "":
		o.AuthStrategy = "anonymous"
	case "anonymous", "token":
	default:
		return nil, fmt.Errorf("console: auth strategy %q: want anonymous or token", o.AuthStrategy)
	}
	switch o.TracingProvider {
	case "":
		o.TracingProvider = "zipkin"
	case "zipkin", "jaeger":
	default:
		return nil, fmt.Errorf("console: tracing provider %q: want zipkin or jaeger", o.TracingProvider)
	}
	if o.ControlPlaneURL == "" {
		return nil, errors.New("console: control plane URL is required (e.g. http://istiod.istio-system:15014)")
	}
	s := &server{o: o, log: logger(o), root: normalizeRoot(o.WebRoot),
		cp: api.NewClient(o.ControlPlaneURL), ttl: snapshotTTL}
	if o.TokenFile != "" {
		t, err := readToken(o.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("console: control plane token: %w", err)
		}
		s.cp.Token = t
	}
	if o.AuthStrategy == "token" {
		f := o.AuthTokenFile
		if f == "" {
			f = o.TokenFile
		}
		if f == "" {
			return nil, errors.New("console: auth strategy token needs a token file (AuthTokenFile or TokenFile)")
		}
		t, err := readToken(f)
		if err != nil {
			return nil, fmt.Errorf("console: auth token: %w", err)
		}
		s.authToken = t
	}
	if o.PrometheusURL != "" {
		c, err := promapi.NewClient(promapi.Config{Address: o.PrometheusURL})
		if err != nil {
			return nil, fmt.Errorf("console: Prometheus client for %s: %w", o.PrometheusURL, err)
		}
		s.prom = promv1.NewAPI(c)
	} else {
		s.prom = promv1.NewAPI(unreachableProm{})
	}
	s.traces = newTracer(o.TracingProvider, o.TracingURL)
	return s, nil
}

func readToken(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", file, err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("%s is empty", file)
	}
	return t, nil
}

func (s *server) handler() http.Handler {
	top := http.NewServeMux()
	root := s.root
	webH := web.Handler()
	if root != "" {
		redirect := http.RedirectHandler(root+"/", http.StatusFound)
		top.Handle("GET /{$}", redirect)
		top.Handle("GET "+root, redirect)
		top.Handle(root+"/", http.StripPrefix(root, webH))
	} else {
		top.Handle("/", webH)
	}
	top.HandleFunc("GET "+root+"/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok"))
	})
	apiMux := s.apiRoutes()
	top.Handle(root+"/api/", s.guard(http.StripPrefix(root, apiMux)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// No page may frame the console: a framed console is driven by
		// clicks the user means for the page around it.
		h := w.Header()
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		top.ServeHTTP(w, r)
	})
}

// apiError is an API failure with its HTTP status.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, a ...any) error {
	return &apiError{http.StatusBadRequest, fmt.Sprintf(format, a...)}
}

func notFound(format string, a ...any) error {
	return &apiError{http.StatusNotFound, fmt.Sprintf(format, a...)}
}

// handle adapts a handler that returns a value or an error into JSON.
func handle(f func(r *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := f(r)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	}
}

func writeErr(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	var ae *apiError
	var ce *api.APIError
	switch {
	case errors.As(err, &ae):
		status = ae.status
	case errors.As(err, &ce) && ce.Status/100 == 4:
		status = ce.Status
	case errors.Is(err, api.ErrUnreachable):
		status = http.StatusBadGateway
	}
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v) // the client went away: nothing to tell it
}
