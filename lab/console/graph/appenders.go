package graph

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/meshlab/meshlab/controlplane/registry"
	"github.com/prometheus/common/model"
)

// edgeQueries are an appender's two queries for one namespace, PromQL
// built by expr from a selector and a grouping: destination telemetry of
// the namespace's workloads, then source telemetry of its workloads minus
// what the first query of a requested namespace already returns (a
// request between two proxies is reported by both). The subtraction runs
// in Prometheus, so the console decodes each edge's series once; what is
// left is source telemetry alone: destinations without a sidecar, outside
// the requested namespaces, or requests that reached no workload.
func (b *builder) edgeQueries(ns string, expr func(sel, group string) string, group string) []string {
	in := fmt.Sprintf(`reporter="destination",destination_workload_namespace="%s"`, ns)
	out := fmt.Sprintf(`reporter="source",source_workload_namespace="%s"`, ns)
	covered := fmt.Sprintf(`reporter="destination",source_workload_namespace="%s",destination_workload_namespace=~"%s"`, ns, b.nsRegex())
	return []string{
		expr(in, group),
		fmt.Sprintf(`%s unless on(%s) %s`, expr(out, group), group, expr(covered, group)),
	}
}

// securityQueries: the mTLS state of a request is what the destination
// proxy saw, so only destination telemetry: into the namespace, and from
// it to namespaces not requested (the others' first query has those).
func (b *builder) securityQueries(ns string, expr func(sel string) string) []string {
	return []string{
		expr(fmt.Sprintf(`reporter="destination",destination_workload_namespace="%s"`, ns)),
		expr(fmt.Sprintf(`reporter="destination",source_workload_namespace="%s",destination_workload_namespace!~"%s"`, ns, b.nsRegex())),
	}
}

// nsRegex matches the requested namespaces (DNS labels: no regex
// metacharacters to escape).
func (b *builder) nsRegex() string {
	return strings.Join(b.o.Namespaces, "|")
}

func (b *builder) appenderQueries(ns string, dur int) []query {
	var qs []query
	add := func(kind string, texts []string) {
		for i, q := range texts {
			qs = append(qs, query{fmt.Sprintf("%s/%s/%d", kind, ns, i), q})
		}
	}
	group := edgeGroupBy + ",request_protocol"
	rate := func(metric string) func(sel, group string) string {
		return func(sel, group string) string {
			return fmt.Sprintf(`sum(rate(%s{%s}[%ds])) by (%s)`, metric, sel, dur, group)
		}
	}
	if b.o.appenders[AppenderResponseTime] {
		if b.o.quantile != "" {
			add("rtq", b.edgeQueries(ns, func(sel, group string) string {
				return fmt.Sprintf(`histogram_quantile(%s, sum(rate(istio_request_duration_milliseconds_bucket{%s}[%ds])) by (%s,le))`, b.o.quantile, sel, dur, group)
			}, group))
		} else {
			// Kiali's average is sum(rate(_sum))/sum(rate(_count)); the two
			// sides are queried apart so that series falling into one edge
			// (an app graph's versions) average by their weight.
			add("rtsum", b.edgeQueries(ns, rate("istio_request_duration_milliseconds_sum"), group))
			add("rtcount", b.edgeQueries(ns, rate("istio_request_duration_milliseconds_count"), group))
		}
	}
	if b.o.appenders[AppenderThroughput] {
		add("tp", b.edgeQueries(ns, rate("istio_"+b.o.Throughput+"_bytes_sum"), group))
	}
	if b.o.appenders[AppenderSecurityPolicy] {
		add("sec", b.securityQueries(ns, func(sel string) string {
			return fmt.Sprintf(`sum(rate(istio_requests_total{%s}[%ds])) by (%s,source_principal,destination_principal,connection_security_policy) > 0`, sel, dur, group)
		}))
		add("sectcp", b.securityQueries(ns, func(sel string) string {
			return fmt.Sprintf(`sum(rate(%s{%s}[%ds])) by (%s,source_principal,destination_principal,connection_security_policy) > 0`, tcpMetric, sel, dur, edgeGroupBy)
		}))
	}
	return qs
}

// edgeSeries maps an appender's series onto the graph's existing edges:
// the edge into the destination workload, and, with a service node
// between, the edge into the service.
func (b *builder) edgeSeries(kind string, m model.Metric) (leg1, leg2 *edge, ok bool) {
	s, ok := parseSeries(m, false, b.o.Cluster)
	if !ok {
		return nil, nil, false
	}
	if p, found := m["request_protocol"]; found {
		s.protocol = string(p)
	}
	if !b.first(kind, m) {
		return nil, nil, false
	}
	src, svc, dst, ok := b.endpoints(s, false)
	if !ok {
		return nil, nil, false
	}
	if svc != nil {
		return b.edge(src, svc, s.protocol, false), b.edge(svc, dst, s.protocol, false), true
	}
	return nil, b.edge(src, dst, s.protocol, false), true
}

func (b *builder) eachAppenderSample(kind string, f func(m model.Metric, v float64)) {
	for _, ns := range b.o.Namespaces {
		for i := range 2 {
			for _, smp := range b.results[fmt.Sprintf("%s/%s/%d", kind, ns, i)] {
				v := float64(smp.Value)
				if math.IsNaN(v) || math.IsInf(v, 0) {
					continue
				}
				f(smp.Metric, v)
			}
		}
	}
}

func (b *builder) runAppenders() {
	if b.o.appenders[AppenderIdleNode] {
		b.appendIdleNodes()
	}
	if b.o.appenders[AppenderResponseTime] {
		b.appendResponseTime()
	}
	if b.o.appenders[AppenderThroughput] {
		b.eachAppenderSample("tp", func(m model.Metric, v float64) {
			leg1, leg2, _ := b.edgeSeries("tp", m)
			for _, e := range []*edge{leg1, leg2} {
				if e != nil {
					e.bytes += v
				}
			}
		})
	}
	if b.o.appenders[AppenderSecurityPolicy] {
		b.appendSecurity()
	}
	if b.o.appenders[AppenderDeadNode] {
		b.appendDeadNodes()
	}
	if b.o.appenders[AppenderSidecarsCheck] {
		b.appendSidecarsCheck()
	}
	if b.o.appenders[AppenderServiceEntry] {
		b.appendServiceEntries()
	}
	if b.o.appenders[AppenderIstio] {
		b.appendIstio()
	}
}

// appendResponseTime sets the response time on the edge into the
// workload: as Kiali (kiali-2297), not on the edge into an injected
// service node, whose requests go to several workloads. A service graph
// keeps only the edges into services, so there the edge into the service
// gets it too: the average of its workloads by their requests (for a
// quantile, the slowest workload's).
func (b *builder) appendResponseTime() {
	legs := func(kind string, m model.Metric) []*edge {
		leg1, leg2, ok := b.edgeSeries(kind, m)
		if !ok {
			return nil
		}
		if b.o.GraphType == TypeService {
			return []*edge{leg1, leg2}
		}
		return []*edge{leg2}
	}
	if b.o.quantile != "" {
		b.eachAppenderSample("rtq", func(m model.Metric, v float64) {
			for _, e := range legs("rtq", m) {
				if e != nil {
					e.rtQ = max(e.rtQ, v)
					e.rtSet = true
				}
			}
		})
		return
	}
	b.eachAppenderSample("rtsum", func(m model.Metric, v float64) {
		for _, e := range legs("rtsum", m) {
			if e != nil {
				e.rtSum += v
			}
		}
	})
	b.eachAppenderSample("rtcount", func(m model.Metric, v float64) {
		for _, e := range legs("rtcount", m) {
			if e != nil {
				e.rtCount += v
				e.rtSet = true
			}
		}
	})
}

func (b *builder) appendSecurity() {
	apply := func(kind string) {
		b.eachAppenderSample(kind, func(m model.Metric, v float64) {
			leg1, leg2, ok := b.edgeSeries(kind, m)
			if !ok {
				return
			}
			mtls := string(m["connection_security_policy"]) == "mutual_tls"
			sp, dp := string(m["source_principal"]), string(m["destination_principal"])
			for _, e := range []*edge{leg1, leg2} {
				if e == nil {
					continue
				}
				if mtls {
					e.mtls += v
				} else {
					e.plain += v
				}
				if isOK(sp) && !slices.Contains(e.srcPrin, sp) {
					e.srcPrin = append(e.srcPrin, sp)
				}
				if isOK(dp) && !slices.Contains(e.dstPrin, dp) {
					e.dstPrin = append(e.dstPrin, dp)
				}
			}
		})
	}
	apply("sec")
	apply("sectcp")
}

// appendIdleNodes adds the requested namespaces' workloads and services
// that had no traffic in the window, marked isIdle.
func (b *builder) appendIdleNodes() {
	for _, w := range sortedWorkloads(b.mesh) {
		if !slices.Contains(b.o.Namespaces, w.namespace) {
			continue
		}
		k := nodeKey{cluster: b.o.Cluster, svcNs: w.namespace, wlNs: w.namespace, wl: w.name, app: w.app(), ver: w.version()}
		if b.o.GraphType == TypeService {
			continue
		}
		if _, ok := b.node(k, false); ok {
			continue
		}
		if n, ok := b.node(k, true); ok {
			n.data.IsIdle = true
		}
	}
	if !b.o.InjectServiceNodes {
		return
	}
	for _, key := range sortedKeys(b.mesh.services) {
		s := b.mesh.services[key]
		if !slices.Contains(b.o.Namespaces, s.Namespace) {
			continue
		}
		k := nodeKey{cluster: b.o.Cluster, svcNs: s.Namespace, svc: s.Name}
		if _, ok := b.node(k, false); ok {
			continue
		}
		if n, ok := b.node(k, true); ok {
			n.data.IsIdle = true
		}
	}
}

// appendDeadNodes marks service nodes of the registry that select no
// workload: requests to them can only fail.
func (b *builder) appendDeadNodes() {
	for _, n := range b.nodes {
		d := n.data
		if d.NodeType != "service" {
			continue
		}
		s, ok := b.mesh.services[d.Namespace+"/"+d.Service]
		if !ok || len(s.Selector) == 0 {
			continue
		}
		found := false
		for _, w := range b.mesh.workloads {
			if w.namespace == s.Namespace && selects(s.Selector, w.labels) {
				found = true
				break
			}
		}
		if !found {
			d.IsDead = true
			if d.Explain == "" {
				d.Explain = fmt.Sprintf("service %s selects no workload (selector %s): requests to it fail", s.Name, fmtSelector(s.Selector))
			}
		}
	}
}

// appendSidecarsCheck marks workload and app nodes whose pods run without
// a sidecar: their traffic is only seen by the other side's proxy.
func (b *builder) appendSidecarsCheck() {
	for _, n := range b.nodes {
		d := n.data
		if d.NodeType != "workload" && d.NodeType != "app" {
			continue
		}
		var missing []string
		for k := range n.keys {
			w := b.mesh.workloads[k.wlNs+"/"+k.wl]
			if w == nil || w.isGateway() {
				continue
			}
			if w.sidecars < w.pods {
				missing = append(missing, w.name)
			}
		}
		if len(missing) == 0 {
			continue
		}
		slices.Sort(missing)
		d.HasMissingSC = true
		d.IsOutOfMesh = true
		d.Explain = fmt.Sprintf("out of the mesh: workload %s has pods without a sidecar (no %s annotation); only the other side's proxy reports its traffic, and it gets no mTLS",
			joinNames(missing), "sidecar.istio.io/status")
	}
}

func (b *builder) appendServiceEntries() {
	for _, n := range b.nodes {
		d := n.data
		if d.NodeType != "service" {
			continue
		}
		if se := b.mesh.serviceEntry(serviceHost(d.Namespace, d.Service)); se != nil {
			d.IsServiceEntry = se
			if d.Explain == "" {
				d.Explain = fmt.Sprintf("ServiceEntry host (%s): a destination the mesh does not run", se.Location)
			}
		}
	}
}

// appendIstio puts the config badges on the nodes: circuit breakers from
// DestinationRules, routing badges from VirtualServices, gateways.
func (b *builder) appendIstio() {
	hasServiceNodes := false
	for _, n := range b.nodes {
		if n.data.NodeType == "service" {
			hasServiceNodes = true
			break
		}
	}
	for _, n := range b.nodes {
		d := n.data
		var hosts []string
		switch d.NodeType {
		case "service":
			hosts = []string{serviceHost(d.Namespace, d.Service)}
		case "workload", "app":
			for sn := range n.dest {
				hosts = append(hosts, serviceHost(sn.Namespace, sn.Name))
			}
			slices.Sort(hosts)
		}
		// Circuit breakers: service nodes by any rule for their host, the
		// others by the rules whose subsets select their workloads.
		for _, de := range b.mesh.dr {
			dr := de.spec
			for _, h := range hosts {
				if !registry.HostMatches(de.host, h) {
					continue
				}
				if d.NodeType == "service" {
					if hasCircuitBreaker(dr, nil) {
						d.HasCB = true
					}
					continue
				}
				for k := range n.keys {
					if w := b.mesh.workloads[k.wlNs+"/"+k.wl]; w != nil && hasCircuitBreaker(dr, w.labels) {
						d.HasCB = true
					}
				}
			}
		}
		// VirtualService badges belong on service nodes; without service
		// nodes, on the nodes the services reached.
		if d.NodeType == "service" || (!hasServiceNodes && len(hosts) > 0) {
			var all vsBadges
			found := false
			for _, h := range hosts {
				vb, ok := b.mesh.virtualServiceBadges(h)
				if !ok {
					continue
				}
				found = true
				all.hosts = append(all.hosts, vb.hosts...)
				all.routing = all.routing || vb.routing
				all.fault = all.fault || vb.fault
				all.shifting = all.shifting || vb.shifting
				all.tcpShifting = all.tcpShifting || vb.tcpShifting
				all.timeout = all.timeout || vb.timeout
				all.mirror = all.mirror || vb.mirror
			}
			if found {
				slices.Sort(all.hosts)
				d.HasVS = &VSInfo{Hostnames: slices.Compact(all.hosts)}
				d.HasRequestRouting = all.routing
				d.HasFaultInjection = all.fault
				d.HasTrafficShifting = all.shifting
				d.HasTCPTrafficShifting = all.tcpShifting
				d.HasRequestTimeout = all.timeout
				d.HasMirroring = all.mirror
			}
		}
		// Gateways.
		if d.NodeType == "workload" || d.NodeType == "app" {
			for k := range n.keys {
				w := b.mesh.workloads[k.wlNs+"/"+k.wl]
				isGW := (w != nil && w.isGateway()) || (w == nil && (k.wl == "istio-ingressgateway" || k.app == "istio-ingressgateway"))
				if !isGW {
					continue
				}
				var labels map[string]string
				if w != nil {
					labels = w.labels
				} else {
					labels = map[string]string{"istio": "ingressgateway"}
				}
				d.IsGateway = &GatewayInfo{IngressInfo: GatewayHosts{Hostnames: b.mesh.gatewayHosts(labels)}}
				if d.Explain == "" {
					d.Explain = "ingress gateway: where requests from outside enter the mesh"
					if hs := d.IsGateway.IngressInfo.Hostnames; len(hs) > 0 {
						d.Explain += " (Gateway hosts " + strings.Join(hs, ", ") + ")"
					}
				}
			}
		}
	}
}
