package console

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// series is one time series as Kiali's metrics JSON has it.
type series struct {
	Labels     map[string]string `json:"labels"`
	Datapoints [][2]float64      `json:"datapoints"` // [unix seconds, value]
}

var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// metricsFilter is the label selector of one entity's inbound or
// outbound telemetry, as Kiali builds it: inbound from the destination's
// reporter, outbound from the source's.
func metricsFilter(k entityKind, direction, ns, name, cluster string) (string, error) {
	var side, reporter string
	switch direction {
	case "", "inbound":
		side, reporter = "destination", "destination"
	case "outbound":
		if k == kindService {
			return "", badRequest("direction \"outbound\": a service has inbound metrics only")
		}
		side, reporter = "source", "source"
	default:
		return "", badRequest("direction %q: want inbound or outbound", direction)
	}
	nsLabel, nameLabel := side+"_workload_namespace", ""
	switch k {
	case kindApp:
		nameLabel = side + "_canonical_service"
	case kindWorkload:
		nameLabel = side + "_workload"
	case kindService:
		nsLabel, nameLabel = "destination_service_namespace", "destination_service_name"
	}
	return fmt.Sprintf(`reporter=%q,%s=%q,%s=%q,%s_cluster=%q`, reporter, nsLabel, ns, nameLabel, name, side, cluster), nil
}

// metricQueries are Kiali's metric names and their PromQL for one filter.
// Histograms give a map of stat ("avg", "0.5", ...) to query.
func metricQueries(filter, rate, by string) (map[string]string, map[string]map[string]string) {
	sumBy := func(expr string) string {
		if by == "" {
			return "sum(" + expr + ")"
		}
		return "sum(" + expr + ") by (" + by + ")"
	}
	rateOf := func(metric, extra string) string {
		f := filter
		if extra != "" {
			f += "," + extra
		}
		return fmt.Sprintf("rate(%s{%s}[%s])", metric, f, rate)
	}
	counters := map[string]string{
		"request_count": sumBy(rateOf("istio_requests_total", "")),
		// Kiali's errors: no response (0), 4xx and 5xx.
		"request_error_count": sumBy(rateOf("istio_requests_total", `response_code=~"^0$|^[4-5][0-9][0-9]$"`)),
		"tcp_sent":            sumBy(rateOf("istio_tcp_sent_bytes_total", "")),
		"tcp_received":        sumBy(rateOf("istio_tcp_received_bytes_total", "")),
		"tcp_opened":          sumBy(rateOf("istio_tcp_connections_opened_total", "")),
		"tcp_closed":          sumBy(rateOf("istio_tcp_connections_closed_total", "")),
	}
	hist := func(metric string) map[string]string {
		leBy := "le"
		if by != "" {
			leBy += "," + by
		}
		out := map[string]string{
			"avg": sumBy(rateOf(metric+"_sum", "")) + " / " + sumBy(rateOf(metric+"_count", "")),
		}
		for _, q := range []string{"0.5", "0.95", "0.99"} {
			out[q] = fmt.Sprintf("histogram_quantile(%s, sum(%s) by (%s))", q, rateOf(metric+"_bucket", ""), leBy)
		}
		return out
	}
	histograms := map[string]map[string]string{
		"request_duration_millis": hist("istio_request_duration_milliseconds"),
		"request_size":            hist("istio_request_bytes"),
		"response_size":           hist("istio_response_bytes"),
	}
	return counters, histograms
}

func (s *server) metrics(r *http.Request, k entityKind) (any, error) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	q := r.URL.Query()
	dur, err := durationParam(r, "duration", 10*time.Minute)
	if err != nil {
		return nil, err
	}
	step, err := durationParam(r, "step", 15*time.Second)
	if err != nil {
		return nil, err
	}
	if dur/step > 11000 { // Prometheus' own limit of points per series
		return nil, badRequest("step %s: too small for duration %s (at most 11000 points); use a larger step", step, dur)
	}
	rate, err := durationParam(r, "rateInterval", time.Minute)
	if err != nil {
		return nil, err
	}
	var by []string
	if v := q.Get("byLabels"); v != "" {
		for _, l := range strings.Split(v, ",") {
			if !labelName.MatchString(l) {
				return nil, badRequest("byLabels: %q is not a Prometheus label name", l)
			}
			by = append(by, l)
		}
	}
	end := time.Now()
	if v := q.Get("queryTime"); v != "" {
		var secs int64
		if _, err := fmt.Sscanf(v, "%d", &secs); err != nil || secs <= 0 {
			return nil, badRequest("queryTime %q: want unix seconds", v)
		}
		end = time.Unix(secs, 0)
	}
	filter, err := metricsFilter(k, q.Get("direction"), ns, name, s.o.Cluster)
	if err != nil {
		return nil, err
	}
	counters, hists := metricQueries(filter, promDuration(rate), strings.Join(by, ","))
	rng := promv1.Range{Start: end.Add(-dur), End: end, Step: step}

	out := map[string]any{}
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	run := func(query string, put func([]series)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ss, err := s.queryRange(r.Context(), query, rng)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			put(ss)
		}()
	}
	for name, query := range counters {
		run(query, func(ss []series) { out[name] = ss })
	}
	for name, stats := range hists {
		m := map[string][]series{}
		out[name] = m
		for stat, query := range stats {
			run(query, func(ss []series) { m[stat] = ss })
		}
	}
	wg.Wait()
	if firstErr != nil {
		return nil, &apiError{http.StatusBadGateway, firstErr.Error()}
	}
	return out, nil
}

// promDuration writes a duration as PromQL takes it.
func promDuration(d time.Duration) string { return model.Duration(d).String() }

// queryRange runs a range query and returns its series (never nil).
func (s *server) queryRange(ctx context.Context, query string, rng promv1.Range) ([]series, error) {
	v, _, _, err := s.prom.QueryRange(ctx, query, rng)
	if err != nil {
		return nil, fmt.Errorf("query Prometheus at %s: %s: %w", s.o.PrometheusURL, query, err)
	}
	out := []series{}
	mat, ok := v.(model.Matrix)
	if !ok {
		return out, nil
	}
	for _, ss := range mat {
		se := series{Labels: map[string]string{}, Datapoints: [][2]float64{}}
		for k, v := range ss.Metric {
			se.Labels[string(k)] = string(v)
		}
		for _, p := range ss.Values {
			f := float64(p.Value)
			if math.IsNaN(f) || math.IsInf(f, 0) {
				continue // JSON has no NaN; a gap is what it means
			}
			se.Datapoints = append(se.Datapoints, [2]float64{float64(p.Timestamp.Unix()), f})
		}
		out = append(out, se)
	}
	sort.Slice(out, func(i, j int) bool { return fmt.Sprint(out[i].Labels) < fmt.Sprint(out[j].Labels) })
	return out, nil
}

// queryScalar runs an instant query that yields one number; ok is false
// when it yields none.
func (s *server) queryScalar(ctx context.Context, query string, at time.Time) (float64, bool, error) {
	v, _, _, err := s.prom.Query(ctx, query, at)
	if err != nil {
		return 0, false, fmt.Errorf("query Prometheus at %s: %s: %w", s.o.PrometheusURL, query, err)
	}
	switch x := v.(type) {
	case model.Vector:
		if len(x) == 0 {
			return 0, false, nil
		}
		f := float64(x[0].Value)
		return f, !math.IsNaN(f) && !math.IsInf(f, 0), nil
	case *model.Scalar:
		f := float64(x.Value)
		return f, !math.IsNaN(f), nil
	}
	return 0, false, nil
}

// unreachableProm is the Prometheus client when no URL is configured:
// every query fails saying so, which the graph turns into its empty reason.
type unreachableProm struct{}

func (unreachableProm) URL(ep string, _ map[string]string) *url.URL {
	return &url.URL{Scheme: "http", Host: "prometheus.invalid", Path: ep}
}

func (unreachableProm) Do(context.Context, *http.Request) (*http.Response, []byte, error) {
	return nil, nil, fmt.Errorf("no Prometheus URL configured for the console")
}
