// Package health owns the console's health statuses as Kiali computes them:
// request health from error ratios against tolerances (Kiali's defaults: any
// 5xx degrades, 10 % 5xx fails, 4xx at 10 %/20 %, gRPC errors and
// no-response at 10 %), workload health from replicas and synced proxies,
// and the namespace rate queries that feed request health from Prometheus.
package health

import (
	"regexp"
	"sort"
	"strings"
)

// Status is a health status, with Kiali's names.
type Status string

// The statuses, from no information to the worst.
const (
	NA       Status = "NA" // no health information: no traffic, nothing to count
	Healthy  Status = "Healthy"
	NotReady Status = "NotReady" // scaled to zero: neither healthy nor failing
	Degraded Status = "Degraded"
	Failure  Status = "Failure"
)

// rank orders statuses as Kiali's priority does: a Failure hides a
// Degraded, which hides NotReady, which hides Healthy, which hides NA.
func rank(s Status) int {
	switch s {
	case Healthy:
		return 1
	case NotReady:
		return 2
	case Degraded:
		return 3
	case Failure:
		return 4
	}
	return 0
}

// Worst is the status that decides the overall health: an app is as
// healthy as its worst part.
func Worst(s ...Status) Status {
	w := NA
	for _, x := range s {
		if rank(x) > rank(w) {
			w = x
		}
	}
	return w
}

// Tolerance says when the share of requests with a matching code degrades
// or fails the health. Code, Protocol and Direction are regular
// expressions (Kiali's health config), matched against the whole value.
type Tolerance struct {
	Code      string  `json:"code"`
	Protocol  string  `json:"protocol"`  // "http" | "grpc"
	Direction string  `json:"direction"` // "inbound" | "outbound" | ".*"
	Degraded  float64 `json:"degraded"`  // percent; 0 = any matching request degrades
	Failure   float64 `json:"failure"`   // percent
}

// DefaultTolerances are Kiali's defaults: for HTTP, any 5xx is Degraded
// and 10 % Failure, 4xx are Degraded from 10 % and Failure from 20 %; gRPC
// error statuses 1–16 and requests without a response ("-") fail at 10 %
// and degrade from the first one.
func DefaultTolerances() []Tolerance {
	return []Tolerance{
		{Code: `5\d\d`, Protocol: "http", Direction: ".*", Degraded: 0, Failure: 10},
		{Code: `4\d\d`, Protocol: "http", Direction: ".*", Degraded: 10, Failure: 20},
		{Code: `[1-9]|1[0-6]`, Protocol: "grpc", Direction: ".*", Degraded: 0, Failure: 10},
		{Code: `-`, Protocol: "http|grpc", Direction: ".*", Degraded: 0, Failure: 10},
	}
}

// Requests are an entity's request rates: protocol → response code →
// requests per second, inbound and outbound. A request that got no
// response has code "-" (Istio reports 0).
type Requests struct {
	Inbound  map[string]map[string]float64 `json:"inbound"`
	Outbound map[string]map[string]float64 `json:"outbound"`
}

func (r *Requests) add(inbound bool, protocol, code string, rate float64) {
	m := &r.Outbound
	if inbound {
		m = &r.Inbound
	}
	if *m == nil {
		*m = map[string]map[string]float64{}
	}
	if (*m)[protocol] == nil {
		(*m)[protocol] = map[string]float64{}
	}
	(*m)[protocol][code] += rate
}

// anchored compiles a tolerance's expression to match a whole value; an X
// stands for a digit, so Kiali's config spelling "5XX" works too. A bad
// expression matches nothing.
func anchored(expr string) *regexp.Regexp {
	re, err := regexp.Compile("^(?:" + strings.ReplaceAll(expr, "X", `\d`) + ")$")
	if err != nil {
		return regexp.MustCompile(`$.^`)
	}
	return re
}

// Evaluate is the request health: for every tolerance, direction and
// protocol it matches, the percentage of requests whose code matches;
// Failure from the failure threshold, Degraded from the degraded one (and
// above zero), else Healthy. It returns the worst status and the error
// percentage that decided it; NA with no traffic at all.
func (r Requests) Evaluate(tol []Tolerance) (Status, float64) {
	status, pct := NA, 0.0
	dirs := []struct {
		name string
		m    map[string]map[string]float64
	}{{"inbound", r.Inbound}, {"outbound", r.Outbound}}
	for _, d := range dirs {
		for _, proto := range sortedKeys(d.m) {
			codes := d.m[proto]
			total := 0.0
			for _, v := range codes {
				total += v
			}
			if total <= 0 {
				continue
			}
			if status == NA {
				status = Healthy
			}
			for _, t := range tol {
				if !anchored(t.Direction).MatchString(d.name) || !anchored(t.Protocol).MatchString(proto) {
					continue
				}
				code := anchored(t.Code)
				matching := 0.0
				for c, v := range codes {
					if code.MatchString(c) {
						matching += v
					}
				}
				value := 100 * matching / total
				s := Healthy
				switch {
				case value <= 0:
				case value >= t.Failure:
					s = Failure
				case value >= t.Degraded:
					s = Degraded
				}
				if rank(s) > rank(status) || s == status && s != Healthy && value > pct {
					status, pct = s, value
				}
			}
		}
	}
	return status, pct
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// WorkloadStatus is a workload's replicas as Kiali reports them; a
// negative SyncedProxies means the proxy status is unknown.
type WorkloadStatus struct {
	Name              string `json:"name"`
	DesiredReplicas   int32  `json:"desiredReplicas"`
	CurrentReplicas   int32  `json:"currentReplicas"`
	AvailableReplicas int32  `json:"availableReplicas"`
	SyncedProxies     int32  `json:"syncedProxies"`
}

// Evaluate is the workload's pod health: scaled to zero is NotReady, no
// available pod is Failure, fewer available than desired or proxies not
// synced with the control plane is Degraded.
func (w WorkloadStatus) Evaluate() Status {
	switch {
	case w.DesiredReplicas == 0:
		return NotReady
	case w.AvailableReplicas == 0:
		return Failure
	case w.AvailableReplicas < w.DesiredReplicas:
		return Degraded
	case w.SyncedProxies >= 0 && w.SyncedProxies < w.AvailableReplicas:
		return Degraded
	}
	return Healthy
}
