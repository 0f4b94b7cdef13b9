// Package prometheus owns the lab's Prometheus server: Prometheus's own
// engine (config loader, service discovery, scrape manager, TSDB, PromQL,
// rule manager and HTTP API v1, all from github.com/prometheus/prometheus)
// run as a mode of the meshlab binary, plus the scrape configs the lab ships
// (the Istio walkthrough's two jobs, for Kubernetes SD and for the control
// plane's HTTP SD) and the `meshlab prometheus` command.
//
// Only the service discovery mechanisms the lab needs are linked in
// (kubernetes, http and the built-in static_configs), not
// discovery/install, which pulls in every cloud provider's SDK. A config
// that names another mechanism fails to load with Prometheus's own error.
package prometheus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alecthomas/units"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/route"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/util/notifications"
	apiv1 "github.com/prometheus/prometheus/web/api/v1"

	// The service discovery mechanisms the lab's configs use; each
	// registers its *_sd_configs key with the config loader.
	_ "github.com/prometheus/prometheus/discovery/http"
	_ "github.com/prometheus/prometheus/discovery/kubernetes"
)

// DefaultRetention is how long the lab keeps samples when neither
// --storage.tsdb.retention.time nor .size is given: a lab's session, not
// Prometheus's 15 days.
const DefaultRetention = 6 * time.Hour

// Options are the mode's settings, named after Prometheus's flags.
type Options struct {
	ConfigFile      string        // --config.file
	StoragePath     string        // --storage.tsdb.path
	RetentionTime   time.Duration // --storage.tsdb.retention.time; 0 with RetentionSize 0 means DefaultRetention
	RetentionSize   int64         // --storage.tsdb.retention.size, bytes; 0 = unbounded by size
	ListenAddress   string        // --web.listen-address
	EnableLifecycle bool          // --web.enable-lifecycle: POST /-/reload
	EnableAdminAPI  bool          // --web.enable-admin-api
	QueryTimeout    time.Duration // --query.timeout
	QueryMaxSamples int           // --query.max-samples
	LookbackDelta   time.Duration // --query.lookback-delta
	// Flags is what /api/v1/status/flags reports: the flags as given.
	Flags  map[string]string
	Logger *slog.Logger
}

// readiness states, as Prometheus's web handler has them.
const (
	notReady uint32 = iota
	ready
	stopping
)

// Server is one running Prometheus. Start opens it; it stops when the
// context given to Start ends, and Wait returns after every part has
// stopped and the TSDB is closed.
type Server struct {
	opts   Options
	logger *slog.Logger
	reg    *prometheus.Registry

	db        *tsdb.DB
	dbStats   *tsdb.DBStats
	engine    *promql.Engine
	discovery *discovery.Manager
	scrape    *scrape.Manager
	rules     *rules.Manager
	ln        net.Listener
	srv       *http.Server

	mu  sync.RWMutex
	cfg *config.Config

	reloadMu      sync.Mutex
	reloadOK      prometheus.Gauge
	reloadOKTime  prometheus.Gauge
	state         atomic.Uint32
	birth         time.Time
	externalURL   *url.URL
	retentionDesc string

	done chan struct{}
	err  error
}

// Run starts a server and blocks until ctx ends and it has shut down.
func Run(ctx context.Context, opts Options) error {
	s, err := Start(ctx, opts)
	if err != nil {
		return err
	}
	return s.Wait()
}

// Start loads the config, opens the TSDB, starts discovery, scraping and
// rule evaluation, and listens on opts.ListenAddress. Everything it starts
// stops when ctx ends.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ConfigFile == "" {
		return nil, errors.New("prometheus: --config.file is required")
	}
	if opts.StoragePath == "" {
		return nil, errors.New("prometheus: --storage.tsdb.path is required")
	}
	if opts.RetentionTime == 0 && opts.RetentionSize == 0 {
		opts.RetentionTime = DefaultRetention
	}
	if opts.QueryTimeout == 0 {
		opts.QueryTimeout = 2 * time.Minute
	}
	if opts.QueryMaxSamples == 0 {
		opts.QueryMaxSamples = 50000000
	}
	if opts.LookbackDelta == 0 {
		opts.LookbackDelta = 5 * time.Minute
	}
	s := &Server{
		opts:    opts,
		logger:  opts.Logger,
		reg:     prometheus.NewRegistry(),
		birth:   time.Now().UTC(),
		done:    make(chan struct{}),
		dbStats: tsdb.NewDBStats(),
	}
	s.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	s.reloadOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "prometheus_config_last_reload_successful",
		Help: "Whether the last configuration reload attempt was successful.",
	})
	s.reloadOKTime = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "prometheus_config_last_reload_success_timestamp_seconds",
		Help: "Timestamp of the last successful configuration reload.",
	})
	s.reg.MustRegister(s.reloadOK, s.reloadOKTime)

	// As Prometheus's main: the flags are the retention default, a
	// storage.tsdb.retention block in the file overrides them.
	// Every load fills the file's retention from this default, and every
	// apply hands it to the TSDB, so both bounds must be in it.
	config.DefaultTSDBRetentionConfig = config.TSDBRetentionConfig{
		Time: model.Duration(opts.RetentionTime),
		Size: units.Base2Bytes(opts.RetentionSize),
	}
	cfg, err := s.loadConfig()
	if err != nil {
		return nil, err
	}

	if err := os.MkdirAll(opts.StoragePath, 0o755); err != nil {
		return nil, fmt.Errorf("prometheus: create storage directory %s: %w", opts.StoragePath, err)
	}
	tsdbOpts := tsdb.DefaultOptions()
	tsdbOpts.RetentionDuration = int64(opts.RetentionTime / time.Millisecond)
	tsdbOpts.MaxBytes = opts.RetentionSize
	if r := cfg.StorageConfig.TSDBConfig; r != nil && r.Retention != nil {
		tsdbOpts.RetentionDuration = int64(time.Duration(r.Retention.Time) / time.Millisecond)
		tsdbOpts.MaxBytes = int64(r.Retention.Size)
	}
	// Prometheus's main caps blocks at a tenth of the retention so that
	// retention removes data in small steps; never below the 2h head block.
	if maxBlock := tsdbOpts.RetentionDuration / 10; maxBlock > tsdbOpts.MinBlockDuration {
		tsdbOpts.MaxBlockDuration = min(maxBlock, int64(31*24*time.Hour/time.Millisecond))
	} else {
		tsdbOpts.MaxBlockDuration = tsdbOpts.MinBlockDuration
	}
	// The lab's few thousand series need far fewer hash stripes than the
	// 16384 sized for a production server; each stripe is a map and a lock.
	tsdbOpts.StripeSize = 1024
	s.retentionDesc = retentionString(tsdbOpts)
	s.db, err = tsdb.Open(opts.StoragePath, s.logger.With("component", "tsdb"), s.reg, tsdbOpts, s.dbStats)
	if err != nil {
		return nil, fmt.Errorf("prometheus: open TSDB in %s (is another Prometheus using it?): %w", opts.StoragePath, err)
	}

	promqlParser := parser.NewParser(parser.Options{})
	s.engine = promql.NewEngine(promql.EngineOpts{
		Logger:               s.logger.With("component", "query engine"),
		Reg:                  s.reg,
		MaxSamples:           opts.QueryMaxSamples,
		Timeout:              opts.QueryTimeout,
		LookbackDelta:        opts.LookbackDelta,
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
		Parser:               promqlParser,
	})

	// Everything below runs until runCtx ends: ctx's end, or a failed
	// start (then Start cleans up before returning).
	runCtx, cancel := context.WithCancel(ctx)
	started := false
	defer func() {
		if !started {
			cancel()
			_ = s.db.Close()
		}
	}()

	sdMetrics, err := discovery.CreateAndRegisterSDMetrics(s.reg)
	if err != nil {
		return nil, fmt.Errorf("prometheus: register service discovery metrics: %w", err)
	}
	s.discovery = discovery.NewManager(runCtx, s.logger.With("component", "discovery manager scrape"), s.reg, sdMetrics, discovery.Name("scrape"))
	if s.discovery == nil {
		return nil, errors.New("prometheus: create the discovery manager")
	}
	s.scrape, err = scrape.NewManager(&scrape.Options{}, s.logger.With("component", "scrape manager"), nil, nil, s.db, s.reg)
	if err != nil {
		return nil, fmt.Errorf("prometheus: create the scrape manager: %w", err)
	}
	s.externalURL = &url.URL{Scheme: "http", Host: externalHost(opts.ListenAddress), Path: "/"}
	s.rules = rules.NewManager(&rules.ManagerOptions{
		NameValidationScheme: cfg.GlobalConfig.MetricNameValidationScheme,
		AppendableV2:         s.db,
		Queryable:            s.db,
		QueryFunc:            rules.EngineQueryFunc(s.engine, s.db),
		// No Alertmanager in the lab (a config naming one is refused):
		// alerts show in /api/v1/alerts and are sent nowhere.
		NotifyFunc:      func(context.Context, string, ...*rules.Alert) {},
		Context:         runCtx,
		ExternalURL:     s.externalURL,
		Registerer:      s.reg,
		Logger:          s.logger.With("component", "rule manager"),
		Parser:          promqlParser,
		ResendDelay:     time.Minute,
		OutageTolerance: time.Hour,
		ForGracePeriod:  10 * time.Minute,
	})

	if err := s.apply(cfg); err != nil {
		return nil, err
	}

	s.ln, err = net.Listen("tcp", opts.ListenAddress)
	if err != nil {
		return nil, fmt.Errorf("prometheus: listen on --web.listen-address %s: %w", opts.ListenAddress, err)
	}
	s.srv = &http.Server{
		Handler:           s.handler(promqlParser),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelError),
	}

	started = true
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	wg.Add(4)
	go func() {
		defer wg.Done()
		if err := s.discovery.Run(); err != nil && !errors.Is(err, context.Canceled) {
			errs <- fmt.Errorf("prometheus: discovery: %w", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := s.scrape.Run(s.discovery.SyncCh()); err != nil {
			errs <- fmt.Errorf("prometheus: scrape manager: %w", err)
		}
	}()
	go func() {
		defer wg.Done()
		s.rules.Run()
	}()
	go func() {
		defer wg.Done()
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("prometheus: serve HTTP on %s: %w", s.ln.Addr(), err)
			cancel()
		}
	}()
	s.state.Store(ready)
	s.logger.Info("Prometheus is ready", "address", s.ln.Addr().String(), "storage", opts.StoragePath, "retention", s.retentionDesc)

	go func() {
		<-runCtx.Done()
		s.shutdown()
		wg.Wait()
		close(errs)
		var all []error
		for e := range errs {
			all = append(all, e)
		}
		if err := s.db.Close(); err != nil {
			all = append(all, fmt.Errorf("prometheus: close TSDB: %w", err))
		}
		cancel()
		s.err = errors.Join(all...)
		close(s.done)
	}()
	return s, nil
}

// shutdown stops the parts in Prometheus's order: no new scrapes or rule
// evaluations, then the HTTP server (bounded, so a slow client cannot hold
// the process), leaving the TSDB for last.
func (s *Server) shutdown() {
	s.state.Store(stopping)
	s.scrape.Stop()
	s.rules.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close()
	}
}

// Wait blocks until the server has stopped and returns what went wrong
// while it ran, if anything.
func (s *Server) Wait() error {
	<-s.done
	return s.err
}

// Addr is the address the HTTP API listens on (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Registry is the server's own metrics registry, served on /metrics.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Reload reads --config.file again and applies it to every part, as
// Prometheus's /-/reload and SIGHUP do. A config that fails to load leaves
// the running one in place.
func (s *Server) Reload() error {
	cfg, err := s.loadConfig()
	if err != nil {
		s.reloadOK.Set(0)
		return err
	}
	return s.apply(cfg)
}

func (s *Server) loadConfig() (*config.Config, error) {
	cfg, err := config.LoadFile(s.opts.ConfigFile, false, s.logger)
	if err != nil {
		return nil, fmt.Errorf("prometheus: load --config.file %s: %w", s.opts.ConfigFile, err)
	}
	if _, err := cfg.GetScrapeConfigs(); err != nil {
		return nil, fmt.Errorf("prometheus: load the scrape configs of %s: %w", s.opts.ConfigFile, err)
	}
	// What this mode does not run is refused, not silently ignored: a
	// stock Prometheus does these.
	switch {
	case len(cfg.RemoteWriteConfigs) > 0:
		return nil, fmt.Errorf("prometheus: %s: remote_write is not supported by meshlab's Prometheus; run a stock Prometheus for it", s.opts.ConfigFile)
	case len(cfg.RemoteReadConfigs) > 0:
		return nil, fmt.Errorf("prometheus: %s: remote_read is not supported by meshlab's Prometheus; run a stock Prometheus for it", s.opts.ConfigFile)
	case len(cfg.AlertingConfig.AlertmanagerConfigs) > 0:
		return nil, fmt.Errorf("prometheus: %s: alerting.alertmanagers is not supported by meshlab's Prometheus (alerts are evaluated and listed, not sent); run a stock Prometheus for it", s.opts.ConfigFile)
	}
	if err := rules.ParseFiles(cfg.RuleFiles, cfg.GlobalConfig.MetricNameValidationScheme, parser.NewParser(parser.Options{}), s.logger); err != nil {
		return nil, fmt.Errorf("prometheus: rule files of %s: %w", s.opts.ConfigFile, err)
	}
	return cfg, nil
}

// apply hands cfg to every part in Prometheus's reload order: storage,
// scrape manager before discovery (it must know a job before its targets
// arrive), then the rules.
func (s *Server) apply(cfg *config.Config) (err error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	defer func() {
		if err != nil {
			s.reloadOK.Set(0)
			return
		}
		s.reloadOK.Set(1)
		s.reloadOKTime.SetToCurrentTime()
	}()
	if err := s.db.ApplyConfig(cfg); err != nil {
		return fmt.Errorf("prometheus: apply config to the TSDB: %w", err)
	}
	if err := s.scrape.ApplyConfig(cfg); err != nil {
		return fmt.Errorf("prometheus: apply config to the scrape manager: %w", err)
	}
	scfgs, err := cfg.GetScrapeConfigs()
	if err != nil {
		return fmt.Errorf("prometheus: scrape configs: %w", err)
	}
	sd := make(map[string]discovery.Configs, len(scfgs))
	for _, sc := range scfgs {
		sd[sc.JobName] = sc.ServiceDiscoveryConfigs
	}
	if err := s.discovery.ApplyConfig(sd); err != nil {
		return fmt.Errorf("prometheus: apply config to service discovery: %w", err)
	}
	var files []string
	for _, pat := range cfg.RuleFiles {
		fs, err := filepath.Glob(pat)
		if err != nil {
			return fmt.Errorf("prometheus: rule_files pattern %q: %w", pat, err)
		}
		files = append(files, fs...)
	}
	if err := s.rules.Update(time.Duration(cfg.GlobalConfig.EvaluationInterval), files, cfg.GlobalConfig.ExternalLabels, s.externalURL.String(), nil); err != nil {
		return fmt.Errorf("prometheus: load rules: %w", err)
	}
	s.mu.Lock()
	s.cfg = cfg
	s.mu.Unlock()
	return nil
}

func (s *Server) config() config.Config {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return *s.cfg
}

// handler serves what Prometheus's web package serves minus the UI: the
// HTTP API v1 (Prometheus's own package, so the answers are Prometheus's),
// the lifecycle endpoints and /metrics.
func (s *Server) handler(p parser.Parser) http.Handler {
	api := apiv1.NewAPI(
		s.engine, s.db, nil, s.db,
		func(context.Context) apiv1.ScrapePoolsRetriever { return s.scrape },
		func(context.Context) apiv1.TargetRetriever { return s.scrape },
		func(context.Context) apiv1.AlertmanagerRetriever { return noAlertmanagers{} },
		s.config,
		s.opts.Flags,
		apiv1.GlobalURLOptions{ListenAddress: s.opts.ListenAddress, Host: s.externalURL.Host, Scheme: s.externalURL.Scheme},
		s.testReady,
		adminStats{s.db, s.dbStats},
		s.opts.StoragePath,
		s.opts.EnableAdminAPI,
		false, 0,
		s.logger.With("component", "api"),
		func(context.Context) apiv1.RulesRetriever { return s.rules },
		5e7, 10, 1048576, // Prometheus's remote-read defaults
		false, nil,
		s.runtimeInfo,
		buildInfo(),
		func() []notifications.Notification { return nil },
		func() (<-chan notifications.Notification, func(), bool) { return nil, func() {}, false },
		s.reg, s.reg,
		nil,
		false, nil, false, false, false,
		s.opts.LookbackDelta,
		false, false,
		nil, nil,
		apiv1.OpenAPIOptions{ExternalURL: s.externalURL.String(), Version: buildInfo().Version},
		p,
		false,
		s.opts.QueryTimeout,
	)
	av1 := route.New()
	api.Register(av1)

	mux := http.NewServeMux()
	mux.Handle("/api/v1/", http.StripPrefix("/api/v1", av1))
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, "Prometheus Server is Healthy.")
	})
	mux.HandleFunc("HEAD /-/healthy", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("GET /-/ready", s.testReady(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, "Prometheus Server is Ready.")
	}))
	mux.HandleFunc("HEAD /-/ready", s.testReady(func(http.ResponseWriter, *http.Request) {}))
	reload := func(w http.ResponseWriter, _ *http.Request) {
		if !s.opts.EnableLifecycle {
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte("Lifecycle API is not enabled."))
			return
		}
		if err := s.Reload(); err != nil {
			http.Error(w, fmt.Sprintf("failed to reload config: %s", err), http.StatusInternalServerError)
		}
	}
	mux.HandleFunc("POST /-/reload", reload)
	mux.HandleFunc("PUT /-/reload", reload)
	mux.HandleFunc("GET /-/reload", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "Only POST or PUT requests allowed", http.StatusMethodNotAllowed)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintln(w, "meshlab's Prometheus: Prometheus's HTTP API is under /api/v1 (no web UI; point Grafana, Kiali or promtool here)")
	})
	return mux
}

func (s *Server) testReady(f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch s.state.Load() {
		case ready:
			f(w, r)
		case stopping:
			w.Header().Set("X-Prometheus-Stopping", "true")
			http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
		default:
			w.Header().Set("X-Prometheus-Stopping", "false")
			http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
		}
	}
}

func (s *Server) runtimeInfo() (apiv1.RuntimeInfo, error) {
	cwd, _ := os.Getwd()
	host, _ := os.Hostname()
	info := apiv1.RuntimeInfo{
		StartTime:      s.birth,
		CWD:            cwd,
		Hostname:       host,
		ServerTime:     time.Now().UTC(),
		GoroutineCount: runtime.NumGoroutine(),
		GOMAXPROCS:     runtime.GOMAXPROCS(0),
		GOMEMLIMIT:     debug.SetMemoryLimit(-1),
		GOGC:           os.Getenv("GOGC"),
		GODEBUG:        os.Getenv("GODEBUG"),
	}
	// The bounds the TSDB enforces now: the applied config's, which a
	// reload may have changed.
	if r := s.config().StorageConfig.TSDBConfig; r != nil && r.Retention != nil {
		info.StorageRetention = retentionString(&tsdb.Options{
			RetentionDuration: int64(time.Duration(r.Retention.Time) / time.Millisecond),
			MaxBytes:          int64(r.Retention.Size),
		})
	}
	mfs, err := s.reg.Gather()
	if err != nil {
		return info, fmt.Errorf("gather runtime status: %w", err)
	}
	for _, mf := range mfs {
		if len(mf.GetMetric()) == 0 {
			continue
		}
		m := mf.GetMetric()[0]
		v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
		switch mf.GetName() {
		case "prometheus_tsdb_wal_corruptions_total":
			info.CorruptionCount = int64(v)
		case "prometheus_config_last_reload_successful":
			info.ReloadConfigSuccess = v != 0
		case "prometheus_config_last_reload_success_timestamp_seconds":
			info.LastConfigTime = time.Unix(int64(v), 0).UTC()
		}
	}
	return info, nil
}

// retentionString is /status/runtimeinfo's storageRetention, as Prometheus
// words it ("6h", "512MiB", "6h or 512MiB").
func retentionString(o *tsdb.Options) string {
	var parts []string
	if o.RetentionDuration > 0 {
		parts = append(parts, model.Duration(time.Duration(o.RetentionDuration)*time.Millisecond).String())
	}
	if o.MaxBytes > 0 {
		parts = append(parts, units.Base2Bytes(o.MaxBytes).String())
	}
	return strings.Join(parts, " or ")
}

// buildInfo reports the Prometheus version whose engine is linked in, read
// from the module's version (v0.316.0 is Prometheus 3.16.0), so
// /status/buildinfo tells Grafana which features the server has.
func buildInfo() *apiv1.PrometheusVersion {
	v := &apiv1.PrometheusVersion{Version: "3.0.0", Branch: "meshlab", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	for _, dep := range bi.Deps {
		if dep.Path == "github.com/prometheus/prometheus" {
			v.Version = moduleToRelease(dep.Version)
		}
	}
	return v
}

// moduleToRelease maps Prometheus's Go module version to its release:
// v0.MMmPP.X is release M.mm.X (v0.316.0 → 3.16.0, v0.305.1 → 3.5.1).
func moduleToRelease(mod string) string {
	parts := strings.Split(strings.TrimPrefix(mod, "v"), ".")
	if len(parts) < 3 || parts[0] != "0" || len(parts[1]) < 3 {
		return "3.0.0"
	}
	minor, err := strconv.Atoi(parts[1][1:])
	if err != nil {
		return "3.0.0"
	}
	patch := strings.SplitN(parts[2], "-", 2)[0]
	return parts[1][:1] + "." + strconv.Itoa(minor) + "." + patch
}

// externalHost is the host:port links in API answers point at.
func externalHost(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		if h, err := os.Hostname(); err == nil {
			host = h
		} else {
			host = "localhost"
		}
	}
	return net.JoinHostPort(host, port)
}

type noAlertmanagers struct{}

func (noAlertmanagers) Alertmanagers() []*url.URL        { return nil }
func (noAlertmanagers) DroppedAlertmanagers() []*url.URL { return nil }

// adminStats is the TSDB as the API's status and admin calls see it (what
// Prometheus's readyStorage adapts for the same calls).
type adminStats struct {
	db    *tsdb.DB
	stats *tsdb.DBStats
}

func (a adminStats) CleanTombstones() error { return a.db.CleanTombstones() }
func (a adminStats) Delete(ctx context.Context, mint, maxt int64, ms ...*labels.Matcher) error {
	return a.db.Delete(ctx, mint, maxt, ms...)
}
func (a adminStats) Snapshot(dir string, withHead bool) error { return a.db.Snapshot(dir, withHead) }
func (a adminStats) Stats(name string, limit int) (*tsdb.Stats, error) {
	return a.db.Head().Stats(name, limit), nil
}
func (a adminStats) WALReplayStatus() (tsdb.WALReplayStatus, error) {
	return a.stats.Head.WALReplayStatus.GetWALReplayStatus(), nil
}
func (a adminStats) BlockMetas() ([]tsdb.BlockMeta, error) { return a.db.BlockMetas(), nil }
