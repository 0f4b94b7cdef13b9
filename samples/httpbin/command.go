package httpbin

import (
	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/lab/drain"
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
			drain.Flag(),
		},
		Action: func(c *cli.Context) error {
			// c.Context ends on SIGTERM (main catches it): Run drains.
			return Run(c.Context, Options{Addr: c.String("addr"), Drain: drain.FromFlag(c)})
		},
	}
}
