// Package sleep owns the sleep sample (also called curl, as Istio renamed
// it): the main process of a client pod. It serves nothing; people run
// their requests from inside the pod with `meshlab exec deploy/sleep -- curl
// ...`, so the pod only has to exist, carry its labels and service account,
// and leave promptly when it is told to stop.
package sleep

import (
	"context"
	"log/slog"

	"github.com/urfave/cli/v2"
)

// Run waits until ctx ends. It never fails: the pod's work is done by the
// commands exec'd into it, not by this process.
func Run(ctx context.Context, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	log.Info("sleeping until stopped; run commands in this pod with `meshlab exec`")
	<-ctx.Done()
	log.Info("stopped")
	return nil
}

// Command returns `sleep`, also reachable as `curl` so that Istio's two
// names for the client sample both work in a manifest's command.
func Command() *cli.Command {
	return &cli.Command{
		Name:    "sleep",
		Aliases: []string{"curl"},
		Usage:   "run the sleep/curl client sample: wait until stopped (SIGTERM), serving nothing",
		Description: `The main process of Istio's sleep (or curl) client pod. It does nothing
until SIGTERM or Ctrl-C, then exits 0 at once; requests are sent from inside
the pod with ` + "`meshlab exec`" + `, which runs the command in the pod's network.

Examples:
   meshlab sample sleep
   meshlab apply -n foo -f samples/sleep/sleep.yaml
   meshlab exec -n foo deploy/sleep -- curl -s http://httpbin.foo:8000/ip
   meshlab exec -n foo deploy/curl -c curl -- curl -sI http://helloworld:5000/hello`,
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return cli.Exit("sleep: takes no arguments; run commands in the pod with `meshlab exec`", 2)
			}
			// c.Context ends on SIGTERM (main catches it).
			return Run(c.Context, nil)
		},
	}
}
