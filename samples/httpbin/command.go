package httpbin

import (
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
)

// Command returns `httpbin`, which runs the httpbin sample in the foreground.
func Command() *cli.Command {
	return &cli.Command{
		Name:  "httpbin",
		Usage: "run the httpbin sample (status codes, delays, header echo)",
		Description: `Serves the part of httpbin.org's API that Istio's tasks use.

Examples:
   meshlab sample httpbin
   meshlab sample httpbin --addr 127.0.0.1:8000
   curl -s localhost:8000/status/200,503      # 200 or 503, at random
   curl -s localhost:8000/delay/3             # answers after 3s (at most 10s)
   curl -s localhost:8000/headers`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "addr", Value: ":8000", Usage: "listen address", EnvVars: []string{"LISTEN_ADDR"}},
		},
		Action: func(c *cli.Context) error {
			ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return Run(ctx, Options{Addr: c.String("addr")})
		},
	}
}
