package graph

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/prometheus/common/model"
)

// config finishes the graph (roots, outsiders, the service graph's
// reduction) and renders Kiali's cytoscape JSON, nodes and edges sorted by
// id so that the same traffic gives the same bytes.
func (b *builder) config(ctx context.Context) (*Config, error) {
	b.markRootsAndOutsiders()
	if b.o.GraphType == TypeService {
		b.reduceToServiceGraph()
	}
	if b.o.appenders[AppenderHealth] {
		b.appendHealth()
	}
	cfg := &Config{
		Timestamp: b.o.QueryTime.Unix(),
		Duration:  int64(b.o.Duration.Seconds()),
		GraphType: b.o.GraphType,
		Elements:  Elements{Nodes: []NodeWrapper{}, Edges: []EdgeWrapper{}},
	}
	for _, id := range sortedKeys(b.nodes) {
		n := b.nodes[id]
		n.data.DestServices = sortedServiceNames(n.dest)
		n.data.Traffic = nodeTraffic(n.data.rates)
		cfg.Elements.Nodes = append(cfg.Elements.Nodes, NodeWrapper{Data: n.data})
		for _, key := range sortedKeys(n.out) {
			cfg.Elements.Edges = append(cfg.Elements.Edges, EdgeWrapper{Data: edgeData(n.out[key])})
		}
	}
	if len(cfg.Elements.Edges) == 0 {
		r, err := b.emptyReason(ctx)
		if err != nil {
			return nil, err
		}
		cfg.EmptyReason = r
	}
	return cfg, nil
}

// markRootsAndOutsiders: a root sends and receives nothing (a traffic
// generator, e.g. the ingress gateway); an outsider lives in a namespace
// that was not asked for.
func (b *builder) markRootsAndOutsiders() {
	for _, n := range b.nodes {
		d := n.data
		d.IsRoot = n.in == 0 && len(n.out) > 0
		if d.Namespace != unknown && !slices.Contains(b.o.Namespaces, d.Namespace) {
			d.IsOutside = true
		}
	}
}

// reduceToServiceGraph keeps service nodes, joining service → workload →
// service into service → service edges, and the root nodes that send to
// services (so the graph still shows where traffic enters).
func (b *builder) reduceToServiceGraph() {
	for id, n := range b.nodes {
		if n.data.NodeType == "service" {
			continue
		}
		if !n.data.IsRoot {
			delete(b.nodes, id)
			continue
		}
		for k, e := range n.out {
			if e.dst.data.NodeType != "service" {
				delete(n.out, k)
			}
		}
	}
	for _, n := range b.nodes {
		if n.data.NodeType != "service" {
			continue
		}
		reduced := map[string]*edge{}
		for _, we := range n.out {
			if we.dst.data.NodeType == "service" {
				mergeEdge(reduced, n, we)
				continue
			}
			for _, se := range we.dst.out {
				if se.dst.data.NodeType == "service" {
					mergeEdge(reduced, n, se)
				}
			}
		}
		n.out = reduced
		// The service's outgoing traffic is now what its workloads sent
		// to other services.
		for _, k := range []string{"httpOut", "grpcOut", "tcpOut"} {
			delete(n.data.rates, k)
		}
		for _, e := range reduced {
			if n.data.rates == nil {
				n.data.rates = map[string]float64{}
			}
			n.data.rates[e.protocol+"Out"] += e.rates[e.protocol]
		}
	}
	for _, n := range b.nodes {
		n.in = 0
	}
	for _, n := range b.nodes {
		for _, e := range n.out {
			e.dst.in++
		}
	}
}

func mergeEdge(into map[string]*edge, src *node, e *edge) {
	key := e.dst.data.ID + "\x00" + e.protocol
	m := into[key]
	if m == nil {
		m = &edge{src: src, dst: e.dst, protocol: e.protocol, rates: map[string]float64{}, responses: map[string]*respAcc{}}
		into[key] = m
	}
	for k, v := range e.rates {
		m.rates[k] += v
	}
	for code, r := range e.responses {
		mr := m.responses[code]
		if mr == nil {
			mr = &respAcc{flags: map[string]float64{}, hosts: map[string]float64{}}
			m.responses[code] = mr
		}
		for k, v := range r.flags {
			mr.flags[k] += v
		}
		for k, v := range r.hosts {
			mr.hosts[k] += v
		}
	}
	m.rtSum += e.rtSum
	m.rtCount += e.rtCount
	m.rtQ = max(m.rtQ, e.rtQ)
	m.rtSet = m.rtSet || e.rtSet
	m.bytes += e.bytes
	m.mtls += e.mtls
	m.plain += e.plain
	for _, p := range e.srcPrin {
		if !slices.Contains(m.srcPrin, p) {
			m.srcPrin = append(m.srcPrin, p)
		}
	}
	for _, p := range e.dstPrin {
		if !slices.Contains(m.dstPrin, p) {
			m.dstPrin = append(m.dstPrin, p)
		}
	}
}

// Kiali's rate formats: rates with two decimals, percentages with one.
func fmtRate(v float64) string    { return fmt.Sprintf("%.2f", v) }
func fmtPercent(v float64) string { return fmt.Sprintf("%.1f", v) }

// nodeRateKeys are Kiali's node rates per protocol, in Kiali's order.
var nodeRateKeys = map[string][]string{
	"grpc": {"grpcIn", "grpcInErr", "grpcInNoResponse", "grpcOut"},
	"http": {"httpIn", "httpIn3xx", "httpIn4xx", "httpIn5xx", "httpInNoResponse", "httpOut"},
	"tcp":  {"tcpIn", "tcpOut"},
}

func nodeTraffic(rates map[string]float64) []ProtocolTraffic {
	var out []ProtocolTraffic
	for _, p := range []string{"grpc", "http", "tcp"} {
		pt := ProtocolTraffic{Protocol: p, Rates: map[string]string{}}
		for _, k := range nodeRateKeys[p] {
			if v, ok := rates[k]; ok {
				pt.Rates[k] = fmtRate(v)
			}
		}
		if len(pt.Rates) > 0 {
			out = append(out, pt)
		}
	}
	return out
}

func edgeData(e *edge) *EdgeData {
	ed := &EdgeData{
		ID:     "e:" + e.src.data.ID + "|" + e.dst.data.ID + "|" + e.protocol,
		Source: e.src.data.ID,
		Target: e.dst.data.ID,
	}
	total := e.rates[e.protocol]
	rates := map[string]string{}
	for k, v := range e.rates {
		rates[k] = fmtRate(v)
	}
	if out := e.src.data.rates[e.protocol+"Out"]; out > 0 && e.protocol != "tcp" {
		rates[e.protocol+"PercentReq"] = fmtPercent(total / out * 100)
	}
	if total > 0 {
		var errs float64
		switch e.protocol {
		case "http":
			errs = e.rates["http4xx"] + e.rates["http5xx"] + e.rates["httpNoResponse"]
		case "grpc":
			errs = e.rates["grpcErr"] + e.rates["grpcNoResponse"]
		}
		if errs > 0 {
			rates[e.protocol+"PercentErr"] = fmtPercent(errs / total * 100)
		}
	}
	ed.Traffic = ProtocolTraffic{Protocol: e.protocol, Rates: rates, Responses: Responses{}}
	for code, r := range e.responses {
		rd := &ResponseDetail{Flags: map[string]string{}, Hosts: map[string]string{}}
		for f, v := range r.flags {
			rd.Flags[f] = fmtPercent(percent(v, total))
		}
		for h, v := range r.hosts {
			rd.Hosts[h] = fmtPercent(percent(v, total))
		}
		ed.Traffic.Responses[code] = rd
	}
	if e.rtSet {
		rt := e.rtQ
		if e.rtCount > 0 {
			rt = e.rtSum / e.rtCount
		}
		if rt > 0 {
			ed.ResponseTime = fmtMillis(rt)
		}
	}
	if e.bytes > 0 {
		ed.Throughput = fmt.Sprintf("%.0f", e.bytes)
	}
	if all := e.mtls + e.plain; all > 0 && e.mtls > 0 {
		ed.IsMTLS = fmt.Sprintf("%.0f", e.mtls/all*100)
	}
	slices.Sort(e.srcPrin)
	slices.Sort(e.dstPrin)
	ed.SourcePrincipal = strings.Join(e.srcPrin, ",")
	ed.DestPrincipal = strings.Join(e.dstPrin, ",")
	return ed
}

func percent(v, total float64) float64 {
	if total <= 0 {
		return 0
	}
	return v / total * 100
}

// fmtMillis is Kiali's whole milliseconds, with two decimals below 10 ms
// where a whole number would say 0 or hide a tenfold difference.
func fmtMillis(ms float64) string {
	if ms < 10 {
		return fmt.Sprintf("%.2f", ms)
	}
	return fmt.Sprintf("%.0f", ms)
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

func sortedServiceNames(m map[ServiceName]bool) []ServiceName {
	out := slices.Collect(maps.Keys(m))
	slices.SortFunc(out, func(a, b ServiceName) int {
		return cmp.Or(cmp.Compare(a.Cluster, b.Cluster), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out
}

func sortedWorkloads(ix *meshIndex) []*workloadInfo {
	out := make([]*workloadInfo, 0, len(ix.workloads))
	for _, k := range sortedKeys(ix.workloads) {
		out = append(out, ix.workloads[k])
	}
	return out
}

func fmtSelector(sel map[string]string) string {
	var parts []string
	for _, k := range sortedKeys(sel) {
		parts = append(parts, k+"="+sel[k])
	}
	return strings.Join(parts, ",")
}

func joinNames(names []string) string {
	return strings.Join(names, ", ")
}

// fmtWindow is a duration as a user wrote it: 1m, 10m, 1h30m.
func fmtWindow(b *builder) string {
	return model.Duration(b.o.Duration).String()
}

// appendHealth sums each node's edges' responses into Kiali's health
// requests: what came in, by code, and what went out.
func (b *builder) appendHealth() {
	add := func(m map[string]map[string]float64, protocol, code string, v float64) {
		if m[protocol] == nil {
			m[protocol] = map[string]float64{}
		}
		m[protocol][code] += v
	}
	for _, n := range b.nodes {
		if n.data.HealthData == nil {
			n.data.HealthData = &HealthData{Requests: HealthRequests{Inbound: map[string]map[string]float64{}, Outbound: map[string]map[string]float64{}}}
		}
	}
	for _, n := range b.nodes {
		for _, e := range n.out {
			if e.protocol == "tcp" {
				continue // Kiali: no request health for TCP
			}
			for code, r := range e.responses {
				var v float64
				for _, f := range r.flags {
					v += f
				}
				v = roundRate(v)
				add(n.data.HealthData.Requests.Outbound, e.protocol, code, v)
				add(e.dst.data.HealthData.Requests.Inbound, e.protocol, code, v)
			}
		}
	}
}
