package graph

import (
	"fmt"
	"strings"

	"github.com/prometheus/common/model"
)

// unknown is what Istio's telemetry says for a label it could not fill.
const unknown = "unknown"

// passthrough is the destination service name of traffic Envoy passed
// through to an address outside the registry.
const passthrough = "PassthroughCluster"

func isOK(s string) bool { return s != "" && s != unknown }

// groupBy is the label set Kiali's namespace traffic queries group by.
const groupBy = "source_cluster,source_workload_namespace,source_workload,source_canonical_service,source_canonical_revision," +
	"destination_cluster,destination_service_namespace,destination_service,destination_service_name," +
	"destination_workload_namespace,destination_workload,destination_canonical_service,destination_canonical_revision," +
	"request_protocol,response_code,grpc_response_status,response_flags"

// tcpGroupBy is groupBy without the request-only labels.
const tcpGroupBy = "source_cluster,source_workload_namespace,source_workload,source_canonical_service,source_canonical_revision," +
	"destination_cluster,destination_service_namespace,destination_service,destination_service_name," +
	"destination_workload_namespace,destination_workload,destination_canonical_service,destination_canonical_revision," +
	"response_flags"

// edgeGroupBy identifies an edge's series without response details: what
// the appenders group by.
const edgeGroupBy = "source_cluster,source_workload_namespace,source_workload,source_canonical_service,source_canonical_revision," +
	"destination_cluster,destination_service_namespace,destination_service,destination_service_name," +
	"destination_workload_namespace,destination_workload,destination_canonical_service,destination_canonical_revision"

// The traffic metrics. Kiali's default TCP rate is "sent", which is the
// istio_tcp_received_bytes_total counter: L4 telemetry names bytes from the
// proxy's point of view (istio/istio#32399).
const (
	requestsMetric = "istio_requests_total"
	tcpMetric      = "istio_tcp_received_bytes_total"
)

// trafficQueries are Kiali's three namespace queries for one metric, in
// the order their results are applied (the first series of an edge wins, so
// destination telemetry is preferred to source telemetry):
// 0) source telemetry of requests from other namespaces that reached no
// workload in ns; 2) destination telemetry of ns's workloads; 3) source
// telemetry of ns's workloads.
func trafficQueries(metric, ns string, dur int, group string, idle bool) []string {
	cond := " > 0"
	if idle {
		cond = ""
	}
	return []string{
		fmt.Sprintf(`sum(rate(%s{reporter="source",source_workload_namespace!="%s",destination_workload_namespace="unknown",destination_workload="unknown",destination_service=~"^.+\\.%s\\..+$"}[%ds])) by (%s)%s`,
			metric, ns, ns, dur, group, cond),
		fmt.Sprintf(`sum(rate(%s{reporter="destination",destination_workload_namespace="%s"}[%ds])) by (%s)%s`,
			metric, ns, dur, group, cond),
		fmt.Sprintf(`sum(rate(%s{reporter="source",source_workload_namespace="%s"}[%ds])) by (%s)%s`,
			metric, ns, dur, group, cond),
	}
}

// series is one time series' labels as the graph reads them, after Kiali's
// corrections of unusual telemetry.
type series struct {
	srcCluster, srcNs, srcWl, srcApp, srcVer                                 string
	dstCluster, dstSvcNs, dstSvc, dstSvcName, dstWlNs, dstWl, dstApp, dstVer string
	protocol, code, flags                                                    string
}

// parseSeries reads m's labels; ok is false for series Kiali skips: labels
// missing, or telemetry known to be bad.
func parseSeries(m model.Metric, requests bool, cluster string) (s series, ok bool) {
	get := func(name string) (string, bool) {
		v, ok := m[model.LabelName(name)]
		return string(v), ok
	}
	var okAll = true
	need := func(name string) string {
		v, ok := get(name)
		if !ok {
			okAll = false
		}
		return v
	}
	s.srcNs = need("source_workload_namespace")
	s.srcWl = need("source_workload")
	s.srcApp = need("source_canonical_service")
	s.srcVer = need("source_canonical_revision")
	s.dstSvcNs = need("destination_service_namespace")
	s.dstSvc = need("destination_service")
	s.dstSvcName = need("destination_service_name")
	s.dstWlNs = need("destination_workload_namespace")
	s.dstWl = need("destination_workload")
	s.dstApp = need("destination_canonical_service")
	s.dstVer = need("destination_canonical_revision")
	if !okAll {
		return s, false
	}
	s.srcCluster, _ = get("source_cluster")
	s.dstCluster, _ = get("destination_cluster")
	if !isOK(s.srcCluster) {
		s.srcCluster = cluster
	}
	if !isOK(s.dstCluster) {
		s.dstCluster = cluster
	}
	s.flags, _ = get("response_flags")
	if requests {
		protocol, ok1 := get("request_protocol")
		code, ok2 := get("response_code")
		if !ok1 || !ok2 {
			return s, false
		}
		grpcStatus, _ := get("grpc_response_status")
		s.protocol = protocol
		s.code = responseCode(protocol, code, grpcStatus)
	} else {
		s.protocol = "tcp"
		s.code = "-"
	}
	// A namespace with neither workload nor app: incomplete telemetry from
	// a pod's start or end.
	if isOK(s.srcNs) && !isOK(s.srcWl) && !isOK(s.srcApp) {
		return s, false
	}
	s.fixDestination()
	// During pod lifecycle changes a proxy may report the service's bare
	// name as its host and no workload: incomplete, skipped as Kiali does.
	// A ServiceEntry's host is its own name too, but a DNS name.
	if !isOK(s.dstWl) && isOK(s.dstSvc) && s.dstSvc == s.dstSvcName && !strings.Contains(s.dstSvc, ".") &&
		s.dstSvc != passthrough && s.dstSvc != "BlackHoleCluster" {
		return s, false
	}
	return s, true
}

// fixDestination fills a destination's service namespace and name from its
// host when the proxy could not (requests that reached no workload).
func (s *series) fixDestination() {
	if isOK(s.dstSvc) && (!isOK(s.dstSvcNs) || !isOK(s.dstSvcName)) {
		parts := strings.Split(s.dstSvc, ".")
		if len(parts) >= 3 && parts[2] == "svc" {
			if !isOK(s.dstSvcNs) {
				s.dstSvcNs = parts[1]
			}
			if !isOK(s.dstSvcName) {
				s.dstSvcName = parts[0]
			}
		} else if !isOK(s.dstSvcName) {
			s.dstSvcName = s.dstSvc
		}
	}
	if !isOK(s.dstWlNs) && isOK(s.dstWl) {
		s.dstWlNs = s.dstSvcNs
	}
}

// responseCode is the code the graph shows: "-" when there was no response
// (Istio reports 0), gRPC's status for gRPC.
func responseCode(protocol, code, grpcStatus string) string {
	if protocol == "grpc" && grpcStatus != "" {
		if code == "0" && grpcStatus == "0" {
			return "-"
		}
		return grpcStatus
	}
	if code == "0" || code == "" {
		return "-"
	}
	return code
}

// nodeKey is what identifies a node: Kiali's Id inputs.
type nodeKey struct {
	cluster, svcNs, svc, wlNs, wl, app, ver string
}

// nodeID is Kiali's node identity for a graph type: which node a series'
// source or destination is, and its type. ok is false when the labels
// name nothing.
func nodeID(k nodeKey, graphType string) (id, nodeType string, ok bool) {
	ns := k.wlNs
	if !isOK(ns) {
		ns = k.svcNs
	}
	// A request from outside the mesh: no source workload at all.
	if ns == unknown && k.wl == unknown && k.app == unknown && k.svc == "" {
		return "unknown:" + k.cluster + ":source", "unknown", true
	}
	// A request that reached no service: one unknown node per namespace.
	if k.wl == unknown && k.app == unknown && k.svc == unknown {
		return "unknown:" + k.cluster + ":" + ns, "unknown", true
	}
	wlOK, appOK, svcOK := isOK(k.wl), isOK(k.app), isOK(k.svc)
	if !wlOK && !appOK && !svcOK {
		return "", "", false
	}
	svcID := "svc:" + k.cluster + ":" + k.svcNs + ":" + k.svc
	wlID := "wl:" + k.cluster + ":" + ns + ":" + k.wl
	if graphType == TypeWorkload || graphType == TypeService {
		switch {
		case wlOK:
			return wlID, "workload", true
		case svcOK:
			return svcID, "service", true
		}
		return "", "", false
	}
	if appOK {
		if graphType == TypeVersionedApp {
			switch {
			case wlOK:
				// The workload keeps app+version pairs apart even when
				// two workloads are mislabelled with the same version.
				return "vapp:" + k.cluster + ":" + ns + ":" + k.wl, "app", true
			case isOK(k.ver):
				return "vapp:" + k.cluster + ":" + ns + ":" + k.app + ":" + k.ver, "app", true
			}
		}
		return "app:" + k.cluster + ":" + ns + ":" + k.app, "app", true
	}
	if wlOK {
		return wlID, "workload", true
	}
	return svcID, "service", true
}

// newNodeData is a node's JSON fields for its type, trimmed as Kiali trims
// them: a workload keeps app and version, an app graph's app node only the
// app, a service node only the service.
func newNodeData(id, nodeType, graphType string, k nodeKey) *NodeData {
	ns := k.wlNs
	if !isOK(ns) {
		ns = k.svcNs
	}
	n := &NodeData{ID: id, NodeType: nodeType, Cluster: k.cluster, Namespace: ns}
	clean := func(s string) string {
		if s == unknown {
			return ""
		}
		return s
	}
	switch nodeType {
	case "workload":
		n.Workload, n.App, n.Version = k.wl, clean(k.app), clean(k.ver)
	case "app":
		n.App = k.app
		if graphType == TypeVersionedApp {
			n.Workload, n.Version = clean(k.wl), clean(k.ver)
		}
	case "service":
		n.Service = k.svc
		switch k.svc {
		case passthrough:
			n.Explain = "requests to addresses outside the mesh's registry, passed through by the sidecar (PassthroughCluster): add a ServiceEntry to see their hosts"
		case "BlackHoleCluster":
			n.Explain = "requests the sidecar dropped: outboundTrafficPolicy REGISTRY_ONLY and no ServiceEntry for the host (BlackHoleCluster)"
		}
	case "unknown":
		n.Workload = unknown
		if strings.HasSuffix(id, ":source") {
			n.Namespace = unknown
			n.Explain = "requests from outside the mesh: no source workload reported (probes, Prometheus, out-of-mesh clients, or a client without a sidecar)"
		} else {
			n.Service = unknown
			n.Explain = "requests that reached no service: the proxy could not route them (e.g. 404 with response flag NR at a gateway, or a host missing from the registry)"
		}
	}
	return n
}
