// Package console is H4's; this file is H5's compile-only placeholder of
// the contract's signatures, deleted at merge.
package console

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/meshlab/meshlab/lab"
)

type Options struct {
	Listen          string
	WebRoot         string
	ControlPlaneURL string
	TokenFile       string
	PrometheusURL   string
	TracingProvider string
	TracingURL      string
	AuthStrategy    string
	AuthTokenFile   string
	Runtime         lab.Runtime
	Cluster         string
	Log             *slog.Logger
}

func Run(ctx context.Context, o Options) error { return errors.New("placeholder") }

func NewHandler(ctx context.Context, o Options) (http.Handler, error) {
	return nil, errors.New("placeholder")
}
