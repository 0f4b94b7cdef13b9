package bookinfo

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/lab/drain"
)

// Command returns `bookinfo`, whose subcommands (productpage, details,
// reviews, ratings) each run one Bookinfo service in the foreground. Every
// flag can also be set by the environment variable Istio's images read, so
// Istio's manifests need no change but the image.
func Command() *cli.Command {
	cmd := &cli.Command{
		Name:      "bookinfo",
		Usage:     "run one service of the Bookinfo sample",
		ArgsUsage: "<productpage|details|reviews|ratings> [flags]",
		Description: `Runs one Bookinfo service with the HTTP API of Istio's sample images.

Examples:
   # the product page, calling details, reviews and ratings on port 9080
   meshlab sample bookinfo productpage

   # reviews v3 (red stars), calling ratings at a fixed address
   SERVICE_VERSION=v3 meshlab sample bookinfo reviews --ratings-hostname 127.0.0.1:9082

   # a ratings service that fails half of its requests with 500
   meshlab sample bookinfo ratings --ratings-fault half-500`,
		// Reached only when no service subcommand matched.
		Action: func(c *cli.Context) error {
			return cli.Exit(fmt.Sprintf("bookinfo: want one service of %v, got %q", Services, c.Args().Slice()), 2)
		},
	}
	for _, svc := range Services {
		cmd.Subcommands = append(cmd.Subcommands, serviceCommand(svc))
	}
	return cmd
}

var serviceUsage = map[string]string{
	"productpage": "the web page; calls details and reviews",
	"details":     "book details",
	"reviews":     "book reviews; v2 and v3 call ratings",
	"ratings":     "book ratings; optionally faulty",
}

func serviceCommand(svc string) *cli.Command {
	return &cli.Command{
		Name:  svc,
		Usage: serviceUsage[svc],
		// Flags are built per command: urfave/cli keeps parse state in them.
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "addr", Value: ":9080", Usage: "listen address", EnvVars: []string{"LISTEN_ADDR"}},
			&cli.StringFlag{Name: "service-version", Usage: "version: reviews v1 (no stars), v2 (black stars), v3 (red stars)", EnvVars: []string{"SERVICE_VERSION"}},
			&cli.StringFlag{Name: "pod-name", Usage: "pod name reported by reviews (default: the host name)", EnvVars: []string{"POD_NAME", "HOSTNAME"}},
			&cli.StringFlag{Name: "cluster-name", Value: "Kubernetes", Usage: "cluster name reported by reviews", EnvVars: []string{"CLUSTER_NAME"}},
			&cli.StringFlag{Name: "details-hostname", Value: "details", Usage: "details host, optionally with :port (default port 9080)", EnvVars: []string{"DETAILS_HOSTNAME"}},
			&cli.StringFlag{Name: "reviews-hostname", Value: "reviews", Usage: "reviews host, optionally with :port (default port 9080)", EnvVars: []string{"REVIEWS_HOSTNAME"}},
			&cli.StringFlag{Name: "ratings-hostname", Value: "ratings", Usage: "ratings host, optionally with :port (default port 9080)", EnvVars: []string{"RATINGS_HOSTNAME"}},
			&cli.StringFlag{Name: "services-domain", Usage: "domain appended to upstream host names, e.g. default.svc.cluster.local", EnvVars: []string{"SERVICES_DOMAIN"}},
			&cli.StringFlag{Name: "ratings-fault", Usage: "ratings failure mode: always-503, half-500 or delay-7s", EnvVars: []string{"RATINGS_FAULT"}},
			drain.Flag(),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return cli.Exit(fmt.Sprintf("bookinfo %s: unexpected arguments %q", svc, c.Args().Slice()), 2)
			}
			// c.Context ends on SIGTERM (main catches it): Run drains.
			return Run(c.Context, svc, Options{
				Addr:           c.String("addr"),
				Version:        c.String("service-version"),
				PodName:        c.String("pod-name"),
				ClusterName:    c.String("cluster-name"),
				DetailsHost:    c.String("details-hostname"),
				ReviewsHost:    c.String("reviews-hostname"),
				RatingsHost:    c.String("ratings-hostname"),
				ServicesDomain: c.String("services-domain"),
				RatingsFault:   c.String("ratings-fault"),

				Drain: drain.FromFlag(c),
			})
		},
	}
}
