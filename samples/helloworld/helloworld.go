// Package helloworld owns the helloworld sample: Istio's two-version HTTP
// service on port 5000 whose answer names its version and instance, so
// traffic shifting, locality and multicluster exercises can see which pod
// served each request.
package helloworld

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/lab/drain"
	"github.com/meshlab/meshlab/samples/serve"
)

// Options configures Run.
type Options struct {
	// Addr is the listen address; default ":5000".
	Addr string
	// Listener, when set, is served instead of listening on Addr.
	Listener net.Listener
	// Version is SERVICE_VERSION, shown in every answer; default "v1",
	// the default Istio's image is built with.
	Version string
	// Instance is the pod's name (HOSTNAME); default the host name.
	Instance string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Drain bounds how long requests in flight may take once ctx is done.
	Drain time.Duration
}

// Run serves helloworld until ctx is done, then drains.
func Run(ctx context.Context, opts Options) error {
	if opts.Addr == "" {
		opts.Addr = ":5000"
	}
	if opts.Version == "" {
		opts.Version = "v1"
	}
	if opts.Instance == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("helloworld: find the instance name (set HOSTNAME): %w", err)
		}
		opts.Instance = h
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	log := opts.Logger.With("service", "helloworld", "version", opts.Version)
	return serve.Run(ctx, opts.Listener, opts.Addr, Handler(opts.Version, opts.Instance), opts.Drain, log)
}

// Handler returns helloworld's HTTP handler: GET /hello and GET /health,
// with the bodies of Istio's Flask app.
func Handler(version, instance string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "Hello version: %s, instance: %s\n", version, instance)
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, "Helloworld is healthy")
	})
	return mux
}

// Command returns `helloworld`, which runs the sample in the foreground.
func Command() *cli.Command {
	return &cli.Command{
		Name:  "helloworld",
		Usage: "run the helloworld sample (GET /hello names the version and instance)",
		Description: `Serves Istio's helloworld on port 5000: GET /hello answers
"Hello version: $SERVICE_VERSION, instance: $HOSTNAME", GET /health answers 200.

Examples:
   meshlab sample helloworld
   SERVICE_VERSION=v2 meshlab sample helloworld --addr 127.0.0.1:5001
   curl -s localhost:5000/hello            # Hello version: v1, instance: mybox
   meshlab apply -n sample -f samples/helloworld/helloworld.yaml`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "addr", Value: ":5000", Usage: "listen address", EnvVars: []string{"LISTEN_ADDR"}},
			&cli.StringFlag{Name: "service-version", Value: "v1", Usage: "version named in every answer", EnvVars: []string{"SERVICE_VERSION"}},
			&cli.StringFlag{Name: "instance", Usage: "instance named in every answer (default: the host name)", EnvVars: []string{"HOSTNAME"}},
			drain.Flag(),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return cli.Exit(fmt.Sprintf("helloworld: unexpected arguments %q", c.Args().Slice()), 2)
			}
			// c.Context ends on SIGTERM (main catches it): Run drains.
			return Run(c.Context, Options{
				Addr:     c.String("addr"),
				Version:  c.String("service-version"),
				Instance: c.String("instance"),
				Drain:    drain.FromFlag(c),
			})
		},
	}
}
