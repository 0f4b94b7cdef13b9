// Package health is a compile-only placeholder (H4) until H2's package is merged; the lead deletes this file.
package health

import (
	"context"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
)

type Status string

type Tolerance struct {
	Code      string
	Protocol  string
	Direction string
	Degraded  float64
	Failure   float64
}

func DefaultTolerances() []Tolerance { return nil }

type Requests struct {
	Inbound, Outbound map[string]map[string]float64
}

func (r Requests) Evaluate(tol []Tolerance) (Status, float64) { return "", 0 }

type WorkloadStatus struct {
	Name                                                               string `json:"name"`
	DesiredReplicas, CurrentReplicas, AvailableReplicas, SyncedProxies int32
}

func (w WorkloadStatus) Evaluate() Status { return "" }

func Worst(s ...Status) Status { return "" }

type NamespaceRequests struct {
	Apps, Workloads, Services map[string]Requests
}

func QueryNamespace(ctx context.Context, prom promv1.API, ns, cluster string, rateInterval time.Duration, at time.Time) (NamespaceRequests, error) {
	return NamespaceRequests{}, nil
}
