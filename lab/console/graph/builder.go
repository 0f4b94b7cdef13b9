package graph

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"sync"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// maxConcurrentQueries bounds the queries in flight to Prometheus: enough
// to overlap their latency, few enough not to swamp a lab's Prometheus.
const maxConcurrentQueries = 8

// minRate is Kiali's floor (its FAQ: "Kiali only records request rates
// >= .01 request-per-minute"): a series below it is not an edge, unless
// idle edges are asked for.
const minRate = 0.01 / 60

type node struct {
	data     *NodeData
	out      map[string]*edge // by target id + protocol
	in       int
	injected bool // a service node put between source and destination
	dest     map[ServiceName]bool
	// keys are the telemetry identities that fell into this node, for the
	// appenders that look workloads up.
	keys map[nodeKey]bool
}

type edge struct {
	src, dst  *node
	protocol  string
	rates     map[string]float64
	responses map[string]*respAcc
	rtSum     float64 // response time: duration sum and count rates, or a quantile
	rtCount   float64
	rtQ       float64
	rtSet     bool
	bytes     float64
	mtls      float64
	plain     float64
	srcPrin   []string
	dstPrin   []string
}

type respAcc struct {
	flags map[string]float64
	hosts map[string]float64
}

type builder struct {
	prom  promv1.API
	mesh  *meshIndex
	o     options
	nodes map[string]*node
	// seen guards against counting one series twice: the same request is
	// reported by the source and the destination proxy, and edges within
	// the requested namespaces come back from two queries.
	seen map[seenKey]bool
	// promErr is the first failed query, the graph's reason when empty.
	promErr error
	// results of the appenders' queries, filled by fetch.
	results map[string]model.Vector
}

// errNoPrometheus is the reason when the console has no Prometheus client.
var errNoPrometheus = errors.New("no Prometheus is configured")

type seenKey struct {
	kind string
	fp   model.Fingerprint
}

func newBuilder(prom promv1.API, mesh Mesh, o options) *builder {
	return &builder{
		prom:    prom,
		mesh:    indexMesh(mesh, o.Cluster),
		o:       o,
		nodes:   map[string]*node{},
		seen:    map[seenKey]bool{},
		results: map[string]model.Vector{},
	}
}

// query is one PromQL query and where its answer goes.
type query struct {
	name string // key into results
	text string
}

// fetch runs the queries concurrently (bounded) and keeps their answers
// by name. A failed query leaves its answer empty and is remembered as
// promErr; only ctx's end is an error.
func (b *builder) fetch(ctx context.Context, qs []query) error {
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		sem = make(chan struct{}, maxConcurrentQueries)
	)
	if b.prom == nil {
		b.promErr = errNoPrometheus
		return ctx.Err()
	}
	at := b.o.QueryTime
	// A Prometheus that cannot be reached fails every query alike: the
	// first such failure stops the rest, so an unreachable Prometheus is
	// reported at once rather than after each query's timeout.
	qctx, unreachable := context.WithCancel(ctx)
	defer unreachable()
loop:
	for _, q := range qs {
		select {
		case sem <- struct{}{}:
		case <-qctx.Done():
			break loop
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			v, _, _, err := b.prom.Query(qctx, q.text, at)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				var ue *url.Error
				if errors.As(err, &ue) && qctx.Err() == nil {
					unreachable()
				}
				if b.promErr == nil {
					b.promErr = fmt.Errorf("query %s: %w", q.text, err)
				}
				return
			}
			if vec, ok := v.(model.Vector); ok {
				b.results[q.name] = vec
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	return nil
}

// build queries Prometheus and assembles the traffic map with its
// appenders' data.
func (b *builder) build(ctx context.Context) error {
	dur := int(b.o.Duration.Seconds())
	var qs []query
	for _, ns := range b.o.Namespaces {
		for i, q := range trafficQueries(requestsMetric, ns, dur, groupBy, b.o.IdleEdges) {
			qs = append(qs, query{fmt.Sprintf("http/%s/%d", ns, i), q})
		}
		for i, q := range trafficQueries(tcpMetric, ns, dur, tcpGroupBy, b.o.IdleEdges) {
			qs = append(qs, query{fmt.Sprintf("tcp/%s/%d", ns, i), q})
		}
		qs = append(qs, b.appenderQueries(ns, dur)...)
	}
	if err := b.fetch(ctx, qs); err != nil {
		return err
	}
	for _, kind := range []string{"http", "tcp"} {
		for _, ns := range b.o.Namespaces {
			for i := range 3 {
				b.addTraffic(kind, b.results[fmt.Sprintf("%s/%s/%d", kind, ns, i)])
			}
		}
	}
	b.runAppenders()
	return nil
}

// endpoints maps a series onto the graph: the source and destination
// nodes, and the service node between them when service nodes are
// injected. It creates the nodes when create is set; otherwise ok is false
// when a node does not exist.
func (b *builder) endpoints(s series, create bool) (src, svc, dst *node, ok bool) {
	srcKey := nodeKey{cluster: s.srcCluster, svcNs: s.srcNs, wlNs: s.srcNs, wl: s.srcWl, app: s.srcApp, ver: s.srcVer}
	dstKey := nodeKey{cluster: s.dstCluster, svcNs: s.dstSvcNs, svc: s.dstSvcName, wlNs: s.dstWlNs, wl: s.dstWl, app: s.dstApp, ver: s.dstVer}
	src, ok = b.node(srcKey, create)
	if !ok {
		return nil, nil, nil, false
	}
	dst, ok = b.node(dstKey, create)
	if !ok {
		return nil, nil, nil, false
	}
	if b.o.InjectServiceNodes && isOK(s.dstSvcName) && s.dstSvcName != passthrough && dst.data.NodeType != "service" {
		svcKey := nodeKey{cluster: s.dstCluster, svcNs: s.dstSvcNs, svc: s.dstSvcName}
		svc, ok = b.node(svcKey, create)
		if !ok {
			return nil, nil, nil, false
		}
		svc.injected = true
	}
	return src, svc, dst, true
}

func (b *builder) node(k nodeKey, create bool) (*node, bool) {
	id, nodeType, ok := nodeID(k, b.o.GraphType)
	if !ok {
		return nil, false
	}
	n, found := b.nodes[id]
	if !found {
		if !create {
			return nil, false
		}
		n = &node{data: newNodeData(id, nodeType, b.o.GraphType, k), out: map[string]*edge{}, dest: map[ServiceName]bool{}, keys: map[nodeKey]bool{}}
		b.nodes[id] = n
	}
	if create && nodeType != "service" && nodeType != "unknown" {
		n.keys[k] = true
	}
	return n, true
}

func (b *builder) edge(src, dst *node, protocol string, create bool) *edge {
	key := dst.data.ID + "\x00" + protocol
	e := src.out[key]
	if e == nil && create {
		e = &edge{src: src, dst: dst, protocol: protocol, rates: map[string]float64{}, responses: map[string]*respAcc{}}
		src.out[key] = e
		dst.in++
	}
	return e
}

// first reports whether a series is seen for the first time under kind.
func (b *builder) first(kind string, m model.Metric) bool {
	k := seenKey{kind, m.FastFingerprint()}
	if b.seen[k] {
		return false
	}
	b.seen[k] = true
	return true
}

// roundRate rounds a rate to 0.001, as Kiali's queries round(…, 0.001).
func roundRate(v float64) float64 {
	return math.Round(v*1000) / 1000
}

func (b *builder) addTraffic(kind string, vec model.Vector) {
	requests := kind == "http"
	for _, smp := range vec {
		val := float64(smp.Value)
		if math.IsNaN(val) || math.IsInf(val, 0) {
			continue
		}
		if val < minRate && !b.o.IdleEdges {
			continue
		}
		s, ok := parseSeries(smp.Metric, requests, b.o.Cluster)
		if !ok {
			continue
		}
		if !requests && s.protocol != "tcp" {
			continue
		}
		if !b.first(kind, smp.Metric) {
			continue
		}
		src, svc, dst, ok := b.endpoints(s, true)
		if !ok {
			continue
		}
		host := s.dstSvc
		dname := ServiceName{Cluster: s.dstCluster, Namespace: s.dstSvcNs, Name: s.dstSvcName}
		if svc != nil {
			b.addEdgeTraffic(src, svc, s.protocol, s.code, s.flags, host, val)
			b.addEdgeTraffic(svc, dst, s.protocol, s.code, s.flags, host, val)
			if isOK(s.dstSvcName) {
				svc.dest[dname] = true
			}
		} else {
			b.addEdgeTraffic(src, dst, s.protocol, s.code, s.flags, host, val)
		}
		if isOK(s.dstSvcName) {
			dst.dest[dname] = true
		}
	}
}

func (b *builder) addEdgeTraffic(src, dst *node, protocol, code, flags, host string, val float64) {
	e := b.edge(src, dst, protocol, true)
	addRates(src, dst, e, protocol, code, val)
	r := e.responses[code]
	if r == nil {
		r = &respAcc{flags: map[string]float64{}, hosts: map[string]float64{}}
		e.responses[code] = r
	}
	if flags == "" {
		flags = "-"
	}
	r.flags[flags] += val
	if host != "" {
		r.hosts[host] += val
	}
}

// addRates adds a series' rate under Kiali's rate keys: the edge's total
// and error classes, the destination's In rates and the source's Out rate.
func addRates(src, dst *node, e *edge, protocol, code string, val float64) {
	if src.data.rates == nil {
		src.data.rates = map[string]float64{}
	}
	if dst.data.rates == nil {
		dst.data.rates = map[string]float64{}
	}
	switch protocol {
	case "http":
		e.rates["http"] += val
		dst.data.rates["httpIn"] += val
		src.data.rates["httpOut"] += val
		class := ""
		switch {
		case code == "-":
			class = "NoResponse"
		case len(code) == 3 && code[0] == '3':
			class = "3xx"
		case len(code) == 3 && code[0] == '4':
			class = "4xx"
		case len(code) == 3 && code[0] == '5':
			class = "5xx"
		}
		if class != "" {
			e.rates["http"+class] += val
			dst.data.rates["httpIn"+class] += val
		}
	case "grpc":
		e.rates["grpc"] += val
		dst.data.rates["grpcIn"] += val
		src.data.rates["grpcOut"] += val
		switch code {
		case "0":
		case "-":
			e.rates["grpcNoResponse"] += val
			dst.data.rates["grpcInNoResponse"] += val
		default:
			e.rates["grpcErr"] += val
			dst.data.rates["grpcInErr"] += val
		}
	case "tcp":
		e.rates["tcp"] += val
		dst.data.rates["tcpIn"] += val
		src.data.rates["tcpOut"] += val
	}
}
