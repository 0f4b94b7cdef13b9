package health

import (
	"context"
	"fmt"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// NamespaceRequests are the request rates of a namespace's apps (by
// canonical service), workloads and services (inbound only: a service
// sends nothing).
type NamespaceRequests struct {
	Apps      map[string]Requests `json:"apps"`
	Workloads map[string]Requests `json:"workloads"`
	Services  map[string]Requests `json:"services"`
}

// RateQueries are Kiali's two namespace rate queries: traffic from
// outside the namespace into it, and traffic its workloads send anywhere.
// Neither filters on reporter, so a meshed request appears twice (once
// per proxy); Fold picks one report per direction. cluster "" drops the
// cluster filter.
func RateQueries(ns, cluster string, rateInterval time.Duration) [2]string {
	interval := model.Duration(rateInterval).String()
	in := fmt.Sprintf(`destination_service_namespace=%q,source_workload_namespace!=%q`, ns, ns)
	out := fmt.Sprintf(`source_workload_namespace=%q`, ns)
	if cluster != "" {
		in += fmt.Sprintf(`,destination_cluster=%q`, cluster)
		out += fmt.Sprintf(`,source_cluster=%q`, cluster)
	}
	return [2]string{
		fmt.Sprintf(`rate(istio_requests_total{%s}[%s]) > 0`, in, interval),
		fmt.Sprintf(`rate(istio_requests_total{%s}[%s]) > 0`, out, interval),
	}
}

// QueryNamespace runs RateQueries at `at` (zero = now) and folds them.
func QueryNamespace(ctx context.Context, prom promv1.API, ns, cluster string, rateInterval time.Duration, at time.Time) (NamespaceRequests, error) {
	if rateInterval <= 0 {
		rateInterval = time.Minute
	}
	if at.IsZero() {
		at = time.Now()
	}
	var all model.Vector
	for _, q := range RateQueries(ns, cluster, rateInterval) {
		v, _, _, err := prom.Query(ctx, q, at)
		if err != nil {
			return NamespaceRequests{}, fmt.Errorf("query %s: %w", q, err)
		}
		vec, ok := v.(model.Vector)
		if !ok {
			return NamespaceRequests{}, fmt.Errorf("query %s: got a %s, want a vector", q, v.Type())
		}
		all = append(all, vec...)
	}
	return Fold(ns, all), nil
}

type entity struct {
	kind    int // app, workload, service
	name    string
	inbound bool
}

const (
	kindApp = iota
	kindWorkload
	kindService
)

// Fold turns istio_requests_total rates into the namespace's per-entity
// Requests. Inbound rates of a destination in ns come from the reports of
// the destination's proxy, outbound rates of a source in ns from the
// source's proxy — each request counted once — falling back, peer by
// peer, to the other proxy's report when the preferred one has none: the
// peer has no sidecar (a client outside the mesh, a service without one)
// or the request never reached the destination's proxy (a plaintext
// client refused by a STRICT server shows only in its own report). gRPC
// requests are keyed by grpc_response_status; a request that got no
// response (code 0) is "-".
func Fold(ns string, samples model.Vector) NamespaceRequests {
	// A pair is an entity and one peer it talks to; for each pair, only
	// the reports of the proxy that best describes the direction count
	// when there are any.
	type pair struct {
		e    entity
		peer string
	}
	type report struct {
		p                     pair
		reporter, proto, code string
		rate                  float64
	}
	// At most five entities per sample: its service, and app and workload at either end.
	reports := make([]report, 0, 5*len(samples))
	preferred := map[pair]bool{}
	for _, s := range samples {
		m := s.Metric
		rate := float64(s.Value)
		if rate <= 0 {
			continue
		}
		proto := string(m["request_protocol"])
		if proto == "" {
			proto = "http"
		}
		code := string(m["response_code"])
		if proto == "grpc" && m["grpc_response_status"] != "" {
			code = string(m["grpc_response_status"])
		} else if code == "0" || code == "" {
			code = "-"
		}
		reporter := string(m["reporter"])
		es := make([]entity, 0, 5)
		if string(m["destination_service_namespace"]) == ns {
			if svc := string(m["destination_service_name"]); svc != "" && svc != "unknown" {
				es = append(es, entity{kindService, svc, true})
			}
		}
		if string(m["destination_workload_namespace"]) == ns {
			if app := string(m["destination_canonical_service"]); app != "" && app != "unknown" {
				es = append(es, entity{kindApp, app, true})
			}
			if wl := string(m["destination_workload"]); wl != "" && wl != "unknown" {
				es = append(es, entity{kindWorkload, wl, true})
			}
		}
		if string(m["source_workload_namespace"]) == ns {
			if app := string(m["source_canonical_service"]); app != "" && app != "unknown" {
				es = append(es, entity{kindApp, app, false})
			}
			if wl := string(m["source_workload"]); wl != "" && wl != "unknown" {
				es = append(es, entity{kindWorkload, wl, false})
			}
		}
		src := string(m["source_workload_namespace"]) + "/" + string(m["source_workload"])
		dst := string(m["destination_service_namespace"]) + "/" + string(m["destination_service_name"]) + "/" + string(m["destination_workload"])
		for _, e := range es {
			p := pair{e, src}
			if !e.inbound {
				p.peer = dst
			}
			reports = append(reports, report{p, reporter, proto, code, rate})
			if reporter == want(e) {
				preferred[p] = true
			}
		}
	}
	out := NamespaceRequests{Apps: map[string]Requests{}, Workloads: map[string]Requests{}, Services: map[string]Requests{}}
	for _, r := range reports {
		e := r.p.e
		if preferred[r.p] && r.reporter != want(e) {
			continue
		}
		m := out.Apps
		switch e.kind {
		case kindWorkload:
			m = out.Workloads
		case kindService:
			m = out.Services
		}
		req := m[e.name]
		req.add(e.inbound, r.proto, r.code, r.rate)
		m[e.name] = req
	}
	return out
}

// want is the reporter whose view of e's direction is first hand.
func want(e entity) string {
	if e.inbound {
		return "destination"
	}
	return "source"
}
