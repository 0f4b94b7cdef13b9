package graph

import (
	"fmt"
	"time"

	"github.com/prometheus/common/model"
)

// Focus is a node's graph, Kiali's /api/namespaces/{ns}/{kind}/{name}/graph,
// cut from the graph of the node's namespace (whose queries hold every
// request into and out of the namespace's workloads): the nodes of the
// application, workload or service, their neighbours, and, in front of a
// service node that leads to them, that service's callers. kind is
// "applications", "workloads" or "services"; an unknown kind is a bad
// option. A focus with no edges says why in EmptyReason.
func (c *Config) Focus(kind, namespace, name string) (*Config, error) {
	match := func(d *NodeData) bool {
		if d.Namespace != namespace {
			return false
		}
		switch kind {
		case "applications":
			return d.App == name && (d.NodeType == "app" || d.NodeType == "workload")
		case "workloads":
			return d.Workload == name && (d.NodeType == "workload" || d.NodeType == "app")
		default: // services
			return d.Service == name && d.NodeType == "service"
		}
	}
	switch kind {
	case "applications", "workloads", "services":
	default:
		return nil, fmt.Errorf("%w: kind: %q, want applications, workloads or services", ErrBadOptions, kind)
	}
	focus := map[string]bool{}
	for _, n := range c.Elements.Nodes {
		if match(n.Data) {
			focus[n.Data.ID] = true
		}
	}
	// Service nodes leading into the focus: their callers belong to it.
	front := map[string]bool{}
	byID := map[string]*NodeData{}
	for _, n := range c.Elements.Nodes {
		byID[n.Data.ID] = n.Data
	}
	for _, e := range c.Elements.Edges {
		if focus[e.Data.Target] && !focus[e.Data.Source] && byID[e.Data.Source] != nil && byID[e.Data.Source].NodeType == "service" {
			front[e.Data.Source] = true
		}
	}
	out := &Config{Timestamp: c.Timestamp, Duration: c.Duration, GraphType: c.GraphType,
		Elements: Elements{Nodes: []NodeWrapper{}, Edges: []EdgeWrapper{}}}
	keep := map[string]bool{}
	for id := range focus {
		keep[id] = true
	}
	for _, e := range c.Elements.Edges {
		d := e.Data
		if focus[d.Source] || focus[d.Target] || (front[d.Target] && !focus[d.Source]) {
			out.Elements.Edges = append(out.Elements.Edges, e)
			keep[d.Source], keep[d.Target] = true, true
		}
	}
	for _, n := range c.Elements.Nodes {
		if keep[n.Data.ID] {
			out.Elements.Nodes = append(out.Elements.Nodes, n)
		}
	}
	if len(out.Elements.Edges) == 0 {
		out.EmptyReason = c.EmptyReason
		if out.EmptyReason == nil {
			what := map[string]string{"applications": "application", "workloads": "workload", "services": "service"}[kind]
			out.EmptyReason = &EmptyReason{Code: ReasonNoTraffic,
				Message: fmt.Sprintf("no requests to or from %s %s in %s in the last %s; send traffic or widen the duration",
					what, name, namespace, model.Duration(time.Duration(c.Duration)*time.Second))}
		}
	}
	return out, nil
}
