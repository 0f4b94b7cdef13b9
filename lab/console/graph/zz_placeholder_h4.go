// Package graph is a compile-only placeholder (H4) until H1's package is merged; the lead deletes this file.
package graph

import (
	"context"
	"errors"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/registry"
)

type Options struct {
	Namespaces           []string
	GraphType            string
	Duration             time.Duration
	QueryTime            time.Time
	InjectServiceNodes   bool
	IdleEdges, IdleNodes bool
	Appenders            []string
	ResponseTime         string
	Throughput           string
	Cluster              string
	PrometheusURL        string
}

type Mesh struct {
	Config    []config.Resource
	Services  []registry.Service
	Workloads []registry.Workload
}

func Build(ctx context.Context, prom promv1.API, mesh Mesh, o Options) (*Config, error) {
	return nil, errors.New("placeholder")
}

var ErrBadOptions = errors.New("bad graph options")

type Config struct {
	Timestamp   int64        `json:"timestamp"`
	Duration    int64        `json:"duration"`
	GraphType   string       `json:"graphType"`
	Elements    Elements     `json:"elements"`
	EmptyReason *EmptyReason `json:"emptyReason,omitempty"`
}

type Elements struct {
	Nodes []any `json:"nodes"`
	Edges []any `json:"edges"`
}

type EmptyReason struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}
