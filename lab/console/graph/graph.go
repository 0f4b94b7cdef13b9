// Package graph owns the console's traffic graph: Kiali's graph built from
// the lab's Prometheus with Kiali's own PromQL (istio_requests_total and the
// TCP byte counters, per namespace, destination telemetry preferred), the
// appenders that decorate it (response time, throughput, mTLS, Istio config
// badges, ServiceEntry, gateway, dead/idle nodes, missing sidecars), its
// cytoscape JSON as Kiali's /api/namespaces/graph returns it, and, where
// Kiali shows an empty canvas, the reason the graph is empty.
//
// The package is pure apart from its promv1.API calls: the mesh's config,
// services and workloads come in as arguments.
package graph

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/registry"
)

// ErrBadOptions wraps every error about the Options given to Build.
var ErrBadOptions = errors.New("bad graph options")

// Graph types, as Kiali's graphType parameter spells them.
const (
	TypeApp          = "app"
	TypeVersionedApp = "versionedApp"
	TypeWorkload     = "workload"
	TypeService      = "service"
)

// Appender names, as Kiali's appenders parameter spells them.
const (
	AppenderDeadNode       = "deadNode"
	AppenderHealth         = "health"
	AppenderIdleNode       = "idleNode"
	AppenderIstio          = "istio"
	AppenderResponseTime   = "responseTime"
	AppenderSecurityPolicy = "securityPolicy"
	AppenderServiceEntry   = "serviceEntry"
	AppenderSidecarsCheck  = "sidecarsCheck"
	AppenderThroughput     = "throughput"
)

// knownAppenders are the appenders Build runs when Options.Appenders is
// nil. Kiali's others (health, labeler, ambient, ...) are accepted and
// ignored, so a Kiali client's appenders list does not fail here.
var knownAppenders = []string{AppenderDeadNode, AppenderHealth, AppenderIdleNode, AppenderIstio, AppenderResponseTime,
	AppenderSecurityPolicy, AppenderServiceEntry, AppenderSidecarsCheck, AppenderThroughput}

var ignoredAppenders = []string{"aggregateNode", "ambient", "labeler", "meshCheck", "outsider",
	"trafficGenerator", "workloadEntry"}

// DefaultCluster is Istio's default cluster name, what source_cluster and
// destination_cluster say on a single-cluster mesh.
const DefaultCluster = "Kubernetes"

// Options are the graph's parameters, Kiali's query parameters of
// /api/namespaces/graph.
type Options struct {
	Namespaces           []string      // required, at least one
	GraphType            string        // "app" | "versionedApp" | "workload" | "service"; "" = "workload" (Kiali's server default)
	Duration             time.Duration // window of rate(); 0 = 10m
	QueryTime            time.Time     // zero = now
	InjectServiceNodes   bool          // Kiali default true
	IdleEdges, IdleNodes bool
	Appenders            []string // nil = every appender; names as Kiali's (responseTime, securityPolicy, ...)
	ResponseTime         string   // "avg" (default) | "50" | "95" | "99"
	Throughput           string   // "request" (default) | "response"
	Cluster              string   // "" = "Kubernetes"
	// PrometheusURL is only for the messages of an empty graph ("cannot
	// reach Prometheus at <url>"); the queries go through the promv1.API.
	PrometheusURL string
}

// Mesh is what the graph needs beyond telemetry: the Istio config for the
// badges, the registry for idle and dead nodes, gateways and sidecars.
type Mesh struct {
	Config    []config.Resource
	Services  []registry.Service
	Workloads []registry.Workload
}

// Config is Kiali's cytoscape JSON, plus meshlab's EmptyReason.
type Config struct {
	Timestamp   int64        `json:"timestamp"` // unix seconds of QueryTime
	Duration    int64        `json:"duration"`  // seconds
	GraphType   string       `json:"graphType"`
	Elements    Elements     `json:"elements"`
	EmptyReason *EmptyReason `json:"emptyReason,omitempty"`
}

// EmptyReason says why a graph has no edges, in words a user can act on.
type EmptyReason struct {
	Code    string `json:"code"` // one of the Reason* constants
	Message string `json:"message"`
}

// EmptyReason codes.
const (
	ReasonPrometheusUnreachable = "prometheus-unreachable"
	ReasonNoScrapes             = "no-scrapes"
	ReasonNoSidecars            = "no-sidecars"
	ReasonNoTraffic             = "no-traffic"
)

// Elements are cytoscape's elements; the arrays are never null.
type Elements struct {
	Nodes []NodeWrapper `json:"nodes"`
	Edges []EdgeWrapper `json:"edges"`
}

// NodeWrapper is cytoscape's {data: ...} around a node.
type NodeWrapper struct {
	Data *NodeData `json:"data"`
}

// EdgeWrapper is cytoscape's {data: ...} around an edge.
type EdgeWrapper struct {
	Data *EdgeData `json:"data"`
}

// NodeData is a node as Kiali's cytoscape JSON has it, plus Explain.
type NodeData struct {
	ID                    string             `json:"id"`
	NodeType              string             `json:"nodeType"` // app | service | workload | unknown
	Cluster               string             `json:"cluster"`
	Namespace             string             `json:"namespace"`
	Workload              string             `json:"workload,omitempty"`
	App                   string             `json:"app,omitempty"`
	Version               string             `json:"version,omitempty"`
	Service               string             `json:"service,omitempty"`
	DestServices          []ServiceName      `json:"destServices,omitempty"`
	Traffic               []ProtocolTraffic  `json:"traffic,omitempty"`
	HealthData            *HealthData        `json:"healthData,omitempty"`
	HasCB                 bool               `json:"hasCB,omitempty"`
	HasFaultInjection     bool               `json:"hasFaultInjection,omitempty"`
	HasMirroring          bool               `json:"hasMirroring,omitempty"`
	HasRequestRouting     bool               `json:"hasRequestRouting,omitempty"`
	HasRequestTimeout     bool               `json:"hasRequestTimeout,omitempty"`
	HasTCPTrafficShifting bool               `json:"hasTCPTrafficShifting,omitempty"`
	HasTrafficShifting    bool               `json:"hasTrafficShifting,omitempty"`
	HasVS                 *VSInfo            `json:"hasVS,omitempty"`
	HasMissingSC          bool               `json:"hasMissingSC,omitempty"`
	IsDead                bool               `json:"isDead,omitempty"`
	IsGateway             *GatewayInfo       `json:"isGateway,omitempty"`
	IsIdle                bool               `json:"isIdle,omitempty"`
	IsInaccessible        bool               `json:"isInaccessible,omitempty"`
	IsOutOfMesh           bool               `json:"isOutOfMesh,omitempty"`
	IsOutside             bool               `json:"isOutside,omitempty"`
	IsRoot                bool               `json:"isRoot,omitempty"`
	IsServiceEntry        *ServiceEntryInfo  `json:"isServiceEntry,omitempty"`
	Explain               string             `json:"explain,omitempty"`
	rates                 map[string]float64 // node traffic, by Kiali's rate key
}

// HealthData is a node's request health as Kiali's health JSON has it:
// request rates by direction, protocol and response code ("-" = no
// response), from the graph's own edges; the UI applies the tolerances.
type HealthData struct {
	Requests HealthRequests `json:"requests"`
}

// HealthRequests are req/s by protocol and code, inbound and outbound.
type HealthRequests struct {
	Inbound  map[string]map[string]float64 `json:"inbound"`
	Outbound map[string]map[string]float64 `json:"outbound"`
}

// ServiceName is one of destServices: a service a node was reached as.
type ServiceName struct {
	Cluster   string `json:"cluster"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// VSInfo is hasVS: the hosts of the VirtualServices routing to the node.
type VSInfo struct {
	Hostnames []string `json:"hostnames,omitempty"`
}

// GatewayInfo is isGateway: the hosts an ingress gateway serves.
type GatewayInfo struct {
	IngressInfo GatewayHosts `json:"ingressInfo"`
}

// GatewayHosts are the hostnames of the Gateways selecting a gateway workload.
type GatewayHosts struct {
	Hostnames []string `json:"hostnames,omitempty"`
}

// ServiceEntryInfo is isServiceEntry.
type ServiceEntryInfo struct {
	Location string   `json:"location"` // MESH_EXTERNAL | MESH_INTERNAL
	Hosts    []string `json:"hosts"`
}

// ProtocolTraffic is one protocol's traffic of a node or an edge: rates by
// Kiali's keys, formatted as Kiali formats them, and an edge's responses.
type ProtocolTraffic struct {
	Protocol  string            `json:"protocol"`
	Rates     map[string]string `json:"rates,omitempty"`
	Responses Responses         `json:"responses,omitempty"`
}

// Responses are an edge's responses by code ("-" = no response): for each,
// the percentage of the edge's requests by response flags and by host.
type Responses map[string]*ResponseDetail

// ResponseDetail is one response code's flags and hosts, in percent of the
// edge's traffic, as strings ("100.0").
type ResponseDetail struct {
	Flags map[string]string `json:"flags"`
	Hosts map[string]string `json:"hosts"`
}

// EdgeData is an edge as Kiali's cytoscape JSON has it.
type EdgeData struct {
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Target          string          `json:"target"`
	DestPrincipal   string          `json:"destPrincipal,omitempty"`
	IsMTLS          string          `json:"isMTLS,omitempty"`       // percent of the traffic with mTLS, "100"
	ResponseTime    string          `json:"responseTime,omitempty"` // ms
	SourcePrincipal string          `json:"sourcePrincipal,omitempty"`
	Throughput      string          `json:"throughput,omitempty"` // bytes/s
	Traffic         ProtocolTraffic `json:"traffic"`
}

// namespaceName is a Kubernetes namespace name, a DNS label; it goes into
// PromQL selectors and regexes, so nothing else may.
var namespaceName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// options are Options checked and defaulted.
type options struct {
	Options
	appenders map[string]bool
	quantile  string // "" for the average
}

func (o Options) check() (options, error) {
	out := options{Options: o, appenders: map[string]bool{}}
	if len(o.Namespaces) == 0 {
		return out, fmt.Errorf("%w: namespaces: at least one namespace is required", ErrBadOptions)
	}
	seen := map[string]bool{}
	out.Namespaces = nil
	for _, ns := range o.Namespaces {
		ns = strings.TrimSpace(ns)
		if !namespaceName.MatchString(ns) {
			return out, fmt.Errorf("%w: namespaces: %q is not a namespace name (a DNS label: lower-case letters, digits and '-', at most 63)", ErrBadOptions, ns)
		}
		if !seen[ns] {
			seen[ns] = true
			out.Namespaces = append(out.Namespaces, ns)
		}
	}
	slices.Sort(out.Namespaces)
	switch o.GraphType {
	case "":
		out.GraphType = TypeWorkload
	case TypeApp, TypeVersionedApp, TypeWorkload, TypeService:
	default:
		return out, fmt.Errorf("%w: graphType: %q, want app, versionedApp, workload or service", ErrBadOptions, o.GraphType)
	}
	if out.GraphType == TypeService {
		// A service graph is a workload graph with service nodes, reduced.
		out.InjectServiceNodes = true
	}
	switch {
	case o.Duration == 0:
		out.Duration = 10 * time.Minute
	case o.Duration < time.Second:
		return out, fmt.Errorf("%w: duration: %s, want at least 1s", ErrBadOptions, o.Duration)
	}
	out.Duration = out.Duration.Truncate(time.Second)
	if o.QueryTime.IsZero() {
		out.QueryTime = time.Now()
	}
	out.QueryTime = out.QueryTime.Truncate(time.Second)
	switch o.ResponseTime {
	case "", "avg":
		out.ResponseTime = "avg"
	case "50", "95", "99":
		out.quantile = "0." + o.ResponseTime
	default:
		return out, fmt.Errorf("%w: responseTime: %q, want avg, 50, 95 or 99", ErrBadOptions, o.ResponseTime)
	}
	switch o.Throughput {
	case "":
		out.Throughput = "request"
	case "request", "response":
	default:
		return out, fmt.Errorf("%w: throughput: %q, want request or response", ErrBadOptions, o.Throughput)
	}
	if o.Cluster == "" {
		out.Cluster = DefaultCluster
	}
	if o.Appenders == nil {
		for _, a := range knownAppenders {
			out.appenders[a] = true
		}
	}
	for _, a := range o.Appenders {
		a = strings.TrimSpace(a)
		switch {
		case a == "":
		case slices.Contains(knownAppenders, a):
			out.appenders[a] = true
		case slices.Contains(ignoredAppenders, a):
		default:
			return out, fmt.Errorf("%w: appenders: unknown appender %q, want some of %s", ErrBadOptions, a,
				strings.Join(append(slices.Clone(knownAppenders), ignoredAppenders...), ", "))
		}
	}
	// Idle nodes are an option in Kiali's UI, run by the idleNode appender.
	out.appenders[AppenderIdleNode] = o.IdleNodes
	return out, nil
}

// Build queries Prometheus for the namespaces' traffic and returns the
// graph. The error is only for bad Options (wrapping ErrBadOptions) or an
// ended ctx; Prometheus being down or empty is the graph's EmptyReason.
func Build(ctx context.Context, prom promv1.API, mesh Mesh, o Options) (*Config, error) {
	opts, err := o.check()
	if err != nil {
		return nil, err
	}
	b := newBuilder(prom, mesh, opts)
	if err := b.build(ctx); err != nil {
		return nil, err
	}
	return b.config(ctx)
}
