// Package bookinfo owns the Bookinfo sample application: productpage, details,
// reviews and ratings, re-implemented in Go with the HTTP API, JSON shapes,
// timeouts and header propagation of Istio's images, so every Istio exercise
// (traffic shifting, fault injection, request routing by end-user) behaves as
// it does with Istio's own containers.
package bookinfo

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/meshlab/meshlab/samples/serve"
)

// Services lists the Bookinfo services Run accepts.
var Services = []string{"productpage", "details", "reviews", "ratings"}

// Ratings fault variants, selected by Options.RatingsFault (env RATINGS_FAULT).
const (
	FaultNone      = ""
	FaultAlways503 = "always-503"
	FaultHalf500   = "half-500"
	FaultDelay7s   = "delay-7s"
)

// Options configures one Bookinfo service. The zero value is completed by
// defaults matching Istio's images (see withDefaults).
type Options struct {
	// Addr is the listen address; default ":9080".
	Addr string
	// Listener, when set, is served instead of listening on Addr.
	Listener net.Listener
	// Version is SERVICE_VERSION: reviews v1 (no stars), v2 (black), v3 (red).
	Version string
	// PodName is reported by reviews as "podname" (env POD_NAME or HOSTNAME).
	PodName string
	// ClusterName is reported by reviews as "clustername" (env CLUSTER_NAME).
	ClusterName string
	// Upstream hosts; a host may carry ":port", else port 9080 is used.
	DetailsHost, ReviewsHost, RatingsHost string
	// ServicesDomain, when set, is appended to upstream host names as
	// ".<domain>", as SERVICES_DOMAIN does in Istio's images.
	ServicesDomain string
	// RatingsFault selects a failure mode of ratings: always-503, half-500, delay-7s.
	RatingsFault string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Drain bounds how long requests in flight may take once ctx is done
	// (serve.DefaultDrain when zero).
	Drain time.Duration
}

func (o Options) withDefaults() Options {
	if o.Addr == "" {
		o.Addr = ":9080"
	}
	if o.ClusterName == "" {
		o.ClusterName = "Kubernetes"
	}
	if o.DetailsHost == "" {
		o.DetailsHost = "details"
	}
	if o.ReviewsHost == "" {
		o.ReviewsHost = "reviews"
	}
	if o.RatingsHost == "" {
		o.RatingsHost = "ratings"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Handler returns the HTTP handler of service with opts, without serving it.
func Handler(service string, opts Options) (http.Handler, error) {
	opts = opts.withDefaults()
	switch service {
	case "productpage":
		return newProductPage(opts), nil
	case "details":
		return newDetails(), nil
	case "reviews":
		return newReviews(opts)
	case "ratings":
		return newRatings(opts)
	}
	return nil, fmt.Errorf("unknown bookinfo service %q (want one of %v)", service, Services)
}

// Run serves service until ctx is done, then drains: requests in flight
// get opts.Drain to finish and see their context cancelled after it, so a
// delayed ratings response does not hold shutdown for seven seconds.
func Run(ctx context.Context, service string, opts Options) error {
	opts = opts.withDefaults()
	h, err := Handler(service, opts)
	if err != nil {
		return err
	}
	return serve.Run(ctx, opts.Listener, opts.Addr, h, opts.Drain, opts.Logger.With("service", service, "version", opts.Version))
}
