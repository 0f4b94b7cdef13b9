package zipkin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/lab/drain"
)

// Lab defaults: a lab's traces are for looking at what just happened, and
// the store must stay small next to the proxies it serves: an Envoy span
// with Istio's tags takes about 1.5 KiB in memory (BenchmarkMemory), so the
// default bound is about 75 MiB.
const (
	DefaultMaxSpans = 50000
	DefaultMaxAge   = 6 * time.Hour
	// DefaultSnapshotInterval bounds what a crash loses.
	DefaultSnapshotInterval = time.Minute
)

// RunOptions configure the mode.
type RunOptions struct {
	Listen           string
	StoragePath      string // empty: nothing persisted
	SnapshotInterval time.Duration
	Store            Options
	DrainTimeout     time.Duration
	Logger           *slog.Logger
	// Ready, when set, receives the address served once listening.
	Ready func(addr string)
}

// Run serves the store until ctx ends, then drains, writes the snapshot and
// returns.
func Run(ctx context.Context, o RunOptions) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = drain.DefaultDuration
	}
	if o.SnapshotInterval <= 0 {
		o.SnapshotInterval = DefaultSnapshotInterval
	}
	st := New(o.Store)
	if o.StoragePath != "" {
		if err := os.MkdirAll(o.StoragePath, 0o755); err != nil {
			return fmt.Errorf("creating --storage.path %s: %w", o.StoragePath, err)
		}
		n, err := st.Load(o.StoragePath)
		if err != nil {
			log.Warn("the previous traces are lost", "err", err)
		} else if n > 0 {
			log.Info("loaded traces", "spans", n, "path", o.StoragePath)
		}
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s for the Zipkin API: %w", o.Listen, err)
	}
	srv := &http.Server{Handler: Handler(st, log), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("zipkin API serving", "addr", ln.Addr().String(), "max-spans", st.opts.MaxSpans, "max-age", st.opts.MaxAge)
	if o.Ready != nil {
		o.Ready(ln.Addr().String())
	}

	// One owner for the periodic work: expiry and the snapshot.
	tick := time.NewTicker(min(o.SnapshotInterval, time.Minute))
	defer tick.Stop()
	saved := st.version()
	lastSave := time.Now()
	save := func() {
		if o.StoragePath == "" || st.version() == saved {
			return
		}
		v := st.version()
		if err := st.Save(o.StoragePath); err != nil {
			log.Error("saving traces", "err", err)
			return
		}
		saved, lastSave = v, time.Now()
	}
	for {
		select {
		case err := <-served:
			return fmt.Errorf("serving the Zipkin API on %s: %w", o.Listen, err)
		case <-tick.C:
			st.Expire()
			if time.Since(lastSave) >= o.SnapshotInterval {
				save()
			}
			continue
		case <-ctx.Done():
		}
		break
	}
	sctx, cancel := context.WithTimeout(context.Background(), o.DrainTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Warn("draining the Zipkin API", "err", err)
	}
	_ = srv.Close() // whatever did not finish within the drain
	save()
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving the Zipkin API on %s: %w", o.Listen, err)
	}
	return nil
}

// Command is `meshlab zipkin`, the lab's trace store: what Istio's zipkin
// addon runs in istio-system, as a mode of this binary.
func Command() *cli.Command {
	return &cli.Command{
		Name:  "zipkin",
		Usage: "run the lab's trace store (Istio's zipkin addon): the Zipkin v2 API on :9411",
		Description: `Takes spans as Envoy's Zipkin tracer sends them (POST /api/v2/spans, JSON or
proto3, gzip or plain; 202 Accepted) and answers Zipkin's v2 query API, so the
Zipkin UI, Kiali or curl read them back. The lab runs it as Deployment and
Service zipkin in istio-system, the address Istio's mesh config sends traces to
by default (zipkin.istio-system:9411).

The store is memory, bounded by --max-spans (the eldest traces go first) and
--max-age; with --storage.path it is written there every --snapshot-interval
and on SIGTERM, and read back at start.

Examples:
   # what the lab runs in the zipkin pod
   meshlab zipkin --listen :9411 --storage.path /var/lib/meshlab/zipkin

   # a throwaway store on loopback
   meshlab zipkin --listen 127.0.0.1:9411 --max-spans 10000 --max-age 30m

   # read it back
   curl -s localhost:9411/api/v2/services
   curl -s 'localhost:9411/api/v2/traces?serviceName=productpage.default&limit=5'
   curl -s 'localhost:9411/api/v2/traces?annotationQuery=http.status_code=500%20and%20error'
   curl -s localhost:9411/api/v2/trace/<traceId>
   curl -s "localhost:9411/api/v2/dependencies?endTs=$(date +%s000)"`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: ":9411", Usage: "address for the Zipkin API (port name http-query)"},
			&cli.StringFlag{Name: "storage.path", Usage: "directory the spans are kept in across restarts (" + SnapshotFile + "); empty keeps nothing"},
			&cli.IntFlag{Name: "max-spans", Value: DefaultMaxSpans, Usage: "most spans kept; the eldest traces are dropped whole to make room"},
			&cli.DurationFlag{Name: "max-age", Value: DefaultMaxAge, Usage: "drop traces whose newest span is older; 0 keeps them until --max-spans"},
			&cli.DurationFlag{Name: "snapshot-interval", Value: DefaultSnapshotInterval, Usage: "how often new spans are written to --storage.path (and always on SIGTERM)"},
			&cli.StringFlag{Name: "autocomplete-keys", Usage: "comma-separated tag keys /api/v2/autocompleteKeys offers (Zipkin's AUTOCOMPLETE_KEYS), e.g. http.method,istio.canonical_service"},
			&cli.BoolFlag{Name: "debug", Usage: "log at debug level (every rejected POST)"},
			drain.Flag(),
		},
		Action: func(c *cli.Context) error {
			if c.Int("max-spans") <= 0 {
				return cli.Exit("--max-spans: want a positive number of spans", 2)
			}
			if c.Duration("max-age") < 0 {
				return cli.Exit("--max-age: want a duration of 0 or more", 2)
			}
			level := slog.LevelInfo
			if c.Bool("debug") {
				level = slog.LevelDebug
			}
			var keys []string
			for _, k := range strings.Split(c.String("autocomplete-keys"), ",") {
				if k = strings.TrimSpace(k); k != "" {
					keys = append(keys, k)
				}
			}
			// c.Context ends on SIGTERM (main catches it): Run drains.
			return Run(c.Context, RunOptions{
				Listen:           c.String("listen"),
				StoragePath:      c.String("storage.path"),
				SnapshotInterval: c.Duration("snapshot-interval"),
				Store:            Options{MaxSpans: c.Int("max-spans"), MaxAge: c.Duration("max-age"), AutocompleteKeys: keys},
				DrainTimeout:     drain.FromFlag(c),
				Logger:           slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
			})
		},
	}
}
