package prometheus

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/alecthomas/units"
	"github.com/prometheus/common/model"
	"github.com/urfave/cli/v2"
)

// Command is `meshlab prometheus`: the lab's Prometheus, with Prometheus's
// own flag names so that a manifest written for prom/prometheus reads the
// same.
func Command() *cli.Command {
	return &cli.Command{
		Name:  "prometheus",
		Usage: "run a Prometheus server (Prometheus's own scrape manager, TSDB, PromQL and HTTP API v1)",
		Description: `Loads a Prometheus config file (Prometheus's YAML, as prom/prometheus reads
it), discovers targets with kubernetes_sd_configs, http_sd_configs or
static_configs, scrapes them into a local TSDB and answers Prometheus's HTTP
API v1 (/api/v1/query, query_range, series, labels, targets, metadata,
status/*, rules, alerts), so Grafana, Kiali and promtool use it unchanged.
There is no web UI, no remote write/read and no Alertmanager.

Retention is bounded for a lab: 6h unless --storage.tsdb.retention.time or
--storage.tsdb.retention.size (or the file's storage.tsdb.retention) says
otherwise. The config is read again on POST /-/reload (with
--web.enable-lifecycle). It stops cleanly on SIGTERM or Ctrl-C.

Examples:
   # what the lab runs as pod prometheus in istio-system
   meshlab prometheus --config.file /etc/prometheus/prometheus.yml \
       --storage.tsdb.path /prometheus --web.enable-lifecycle

   # a Prometheus on the host against a local lab, with the lab's jobs
   meshlab prometheus-config > /tmp/prom.yml
   meshlab prometheus --config.file /tmp/prom.yml --storage.tsdb.path /tmp/prom \
       --web.listen-address 127.0.0.1:9090
   curl -s 'http://127.0.0.1:9090/api/v1/query?query=up'
   promtool query instant http://127.0.0.1:9090 'sum(rate(istio_requests_total[1m])) by (destination_workload)'

   # keep at most 200MiB or 2h of samples
   meshlab prometheus --config.file prom.yml --storage.tsdb.path /tmp/prom \
       --storage.tsdb.retention.time 2h --storage.tsdb.retention.size 200MB`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config.file", Value: "prometheus.yml", Usage: "Prometheus configuration file path"},
			&cli.StringFlag{Name: "storage.tsdb.path", Value: "data/", Usage: "base path for metrics storage"},
			&cli.StringFlag{Name: "storage.tsdb.retention.time", Usage: "how long to retain samples in storage (default 6h when no size is set either)"},
			&cli.StringFlag{Name: "storage.tsdb.retention.size", Usage: "maximum number of bytes of blocks to keep, e.g. 512MB (units B, KB, MB, GB, TB, PB, EB, powers of 2)"},
			&cli.StringFlag{Name: "web.listen-address", Value: "0.0.0.0:9090", Usage: "address to listen on for the API and /metrics"},
			&cli.BoolFlag{Name: "web.enable-lifecycle", Usage: "enable config reload over HTTP (POST /-/reload)"},
			&cli.BoolFlag{Name: "web.enable-admin-api", Usage: "enable the admin endpoints (/api/v1/admin/tsdb/*)"},
			&cli.StringFlag{Name: "query.timeout", Value: "2m", Usage: "maximum time a query may take before being aborted"},
			&cli.IntFlag{Name: "query.max-samples", Value: 50000000, Usage: "maximum number of samples a single query can load into memory"},
			&cli.StringFlag{Name: "query.lookback-delta", Value: "5m", Usage: "the maximum lookback duration for retrieving metrics during expression evaluations"},
			&cli.StringFlag{Name: "log.level", Value: "info", Usage: "only log messages with the given severity or above: debug, info, warn, error"},
		},
		Action: func(c *cli.Context) error {
			opts, err := optionsFromFlags(c)
			if err != nil {
				return cli.Exit(err.Error(), 2)
			}
			// c.Context ends on SIGTERM (main catches it): Run shuts down.
			return Run(c.Context, opts)
		},
	}
}

func optionsFromFlags(c *cli.Context) (Options, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log.level"))); err != nil {
		return Options{}, fmt.Errorf("--log.level %q: want debug, info, warn or error", c.String("log.level"))
	}
	dur := func(name string) (time.Duration, error) {
		s := c.String(name)
		if s == "" {
			return 0, nil
		}
		d, err := model.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("--%s %q: want a Prometheus duration like 6h, 90m or 2d: %w", name, s, err)
		}
		return time.Duration(d), nil
	}
	opts := Options{
		ConfigFile:      c.String("config.file"),
		StoragePath:     c.String("storage.tsdb.path"),
		ListenAddress:   c.String("web.listen-address"),
		EnableLifecycle: c.Bool("web.enable-lifecycle"),
		EnableAdminAPI:  c.Bool("web.enable-admin-api"),
		QueryMaxSamples: c.Int("query.max-samples"),
		Logger:          slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
		Flags:           map[string]string{},
	}
	var err error
	if opts.RetentionTime, err = dur("storage.tsdb.retention.time"); err != nil {
		return Options{}, err
	}
	if opts.QueryTimeout, err = dur("query.timeout"); err != nil {
		return Options{}, err
	}
	if opts.LookbackDelta, err = dur("query.lookback-delta"); err != nil {
		return Options{}, err
	}
	if s := c.String("storage.tsdb.retention.size"); s != "" {
		b, err := units.ParseBase2Bytes(s)
		if err != nil {
			return Options{}, fmt.Errorf("--storage.tsdb.retention.size %q: want bytes like 512MB or 1GB: %w", s, err)
		}
		opts.RetentionSize = int64(b)
	}
	// /api/v1/status/flags lists every flag with its value, as Prometheus's.
	for _, f := range c.Command.Flags {
		name := f.Names()[0]
		if name == "help" {
			continue
		}
		opts.Flags[name] = fmt.Sprint(c.Value(name))
	}
	if opts.Flags["storage.tsdb.retention.time"] == "" && opts.RetentionSize == 0 {
		opts.Flags["storage.tsdb.retention.time"] = model.Duration(DefaultRetention).String()
	}
	return opts, nil
}
