package graph

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/prometheus/common/model"
)

// emptyReason says why the graph has no edges, checking from the far end
// of the pipeline: Prometheus answering, sidecars to report, scrapes
// holding Istio's metrics, and last the window holding requests.
func (b *builder) emptyReason(ctx context.Context) (*EmptyReason, error) {
	where := b.o.PrometheusURL
	if where == "" {
		where = "the console's Prometheus"
	}
	nsList := strings.Join(b.o.Namespaces, ", ")
	if b.promErr != nil {
		return &EmptyReason{Code: ReasonPrometheusUnreachable,
			Message: fmt.Sprintf("cannot query Prometheus at %s: %s; check that it runs and that the console's Prometheus URL points at it", where, shortError(b.promErr))}, nil
	}
	total, injected := 0, 0
	for _, w := range b.mesh.workloads {
		for _, ns := range b.o.Namespaces {
			if w.namespace == ns {
				total++
				if w.sidecars > 0 {
					injected++
				}
			}
		}
	}
	if total == 0 {
		return &EmptyReason{Code: ReasonNoSidecars,
			Message: fmt.Sprintf("no workloads in %s: deploy an application with sidecars there (label the namespace istio-injection=enabled first)", nsList)}, nil
	}
	if injected == 0 {
		return &EmptyReason{Code: ReasonNoSidecars,
			Message: fmt.Sprintf("no workload in %s has a sidecar (pod annotation sidecar.istio.io/status), so no proxy reports its traffic: label the namespace istio-injection=enabled and restart its workloads", nsList)}, nil
	}
	up, err := b.count(ctx, "count(up)")
	if err != nil {
		return nil, err
	}
	if up < 0 {
		return &EmptyReason{Code: ReasonPrometheusUnreachable,
			Message: fmt.Sprintf("cannot query Prometheus at %s: %s; check that it runs and that the console's Prometheus URL points at it", where, shortError(b.promErr))}, nil
	}
	if up == 0 {
		return &EmptyReason{Code: ReasonNoScrapes,
			Message: fmt.Sprintf("Prometheus at %s has not scraped anything yet (no up series): wait a scrape interval, or check its scrape configuration finds the mesh's pods", where)}, nil
	}
	istio, err := b.count(ctx, `count({__name__=~"istio_requests_total|istio_tcp_received_bytes_total"})`)
	if err != nil {
		return nil, err
	}
	if istio == 0 {
		return &EmptyReason{Code: ReasonNoScrapes,
			Message: fmt.Sprintf("Prometheus at %s has no Istio metrics yet (no istio_requests_total series): no scraped proxy has handled a request; send traffic and wait a scrape interval", where)}, nil
	}
	return &EmptyReason{Code: ReasonNoTraffic,
		Message: fmt.Sprintf("no requests in the last %s in %s; send traffic or widen the duration", fmtWindow(b), nsList)}, nil
}

// count runs a count() query: -1 when Prometheus failed (remembered in
// promErr), 0 when it had no series.
func (b *builder) count(ctx context.Context, q string) (int, error) {
	if b.prom == nil {
		b.promErr = errNoPrometheus
		return -1, nil
	}
	v, _, _, err := b.prom.Query(ctx, q, b.o.QueryTime)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		b.promErr = fmt.Errorf("query %s: %w", q, err)
		return -1, nil
	}
	vec, ok := v.(model.Vector)
	if !ok || len(vec) == 0 {
		return 0, nil
	}
	return int(vec[0].Value), nil
}

// shortError is the part of a query error a user can act on: the network
// error rather than the whole chain with the query text.
func shortError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		var oe *net.OpError
		if errors.As(ue.Err, &oe) {
			return oe.Error()
		}
		return ue.Err.Error()
	}
	return err.Error()
}
