// Package serve owns how a sample application serves HTTP: listen, serve
// until the context ends, then drain as a pod does on SIGTERM: the listener
// closes, requests in flight get the drain duration to finish, and what is
// still running after it sees its context cancelled (a pending /delay or a
// delayed ratings answer ends then rather than hold the shutdown).
package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// DefaultDrain is how long requests in flight get when drain is zero.
const DefaultDrain = 5 * time.Second

// Run serves h on ln, or on a new listener on addr when ln is nil, until
// ctx ends, then drains for at most drain.
func Run(ctx context.Context, ln net.Listener, addr string, h http.Handler, drain time.Duration, log *slog.Logger) error {
	if ln == nil {
		var err error
		ln, err = new(net.ListenConfig).Listen(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", addr, err)
		}
	}
	if drain <= 0 {
		drain = DefaultDrain
	}
	// Requests outlive ctx by the drain, not more.
	reqCtx, cancelReqs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelReqs()
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return reqCtx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("serving", "addr", ln.Addr().String())

	select {
	case err := <-errc:
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	log.Info("draining", "timeout", drain)
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		// The drain is a bound, not a failure: what is left is cut, as
		// Istio's agent ends Envoy when terminationDrainDuration is up.
		log.Warn("drain ended with requests in flight; cutting them", "err", err)
		cancelReqs()
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	}
	return nil
}
