package graph

import (
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/inject"
	"github.com/meshlab/meshlab/controlplane/registry"
)

// workloadInfo is one workload as telemetry names it (a Deployment, not a
// pod), with what the graph needs of its pods.
type workloadInfo struct {
	name, namespace string
	labels          map[string]string
	pods            int
	sidecars        int // pods with a sidecar
}

func (w *workloadInfo) app() string {
	for _, k := range []string{"service.istio.io/canonical-name", "app.kubernetes.io/name", "app"} {
		if v := w.labels[k]; v != "" {
			return v
		}
	}
	return w.name
}

func (w *workloadInfo) version() string {
	for _, k := range []string{"service.istio.io/canonical-revision", "app.kubernetes.io/version", "version"} {
		if v := w.labels[k]; v != "" {
			return v
		}
	}
	return "latest"
}

// isGateway: Istio's gateways are labelled istio=ingressgateway (or
// egressgateway); the lab's is also named so.
func (w *workloadInfo) isGateway() bool {
	return w.labels["istio"] == "ingressgateway" || strings.Contains(w.name, "ingressgateway")
}

// vsEntry is a VirtualService with its hosts resolved in its namespace.
type vsEntry struct {
	spec  *networking.VirtualService
	hosts []string // as written
	fqdns []string
}

// drEntry is a DestinationRule with its host resolved in its namespace.
type drEntry struct {
	spec *networking.DestinationRule
	host string
}

// meshIndex is Mesh indexed for lookups by the graph's identities.
type meshIndex struct {
	cluster   string
	workloads map[string]*workloadInfo // namespace/name
	services  map[string]registry.Service
	vs        []vsEntry
	dr        []drEntry
	se        []config.Resource
	gw        []config.Resource
}

func indexMesh(m Mesh, cluster string) *meshIndex {
	ix := &meshIndex{cluster: cluster, workloads: map[string]*workloadInfo{}, services: map[string]registry.Service{}}
	for _, w := range m.Workloads {
		name := TelemetryWorkload(w)
		key := w.Namespace + "/" + name
		wi := ix.workloads[key]
		if wi == nil {
			wi = &workloadInfo{name: name, namespace: w.Namespace, labels: w.Labels}
			ix.workloads[key] = wi
		}
		wi.pods++
		if hasSidecar(w) {
			wi.sidecars++
		}
	}
	for _, s := range m.Services {
		ix.services[s.Key()] = s
	}
	for _, r := range m.Config {
		switch r.Kind {
		case config.VirtualService:
			// A VirtualService bound only to gateways routes the gateway's
			// traffic, not the mesh's: its "*" would otherwise badge every
			// service.
			vs, ok := r.Spec.(*networking.VirtualService)
			if !ok || (len(vs.GetGateways()) > 0 && !slices.Contains(vs.GetGateways(), "mesh")) {
				continue
			}
			e := vsEntry{spec: vs}
			for _, h := range vs.GetHosts() {
				e.hosts = append(e.hosts, h)
				e.fqdns = append(e.fqdns, registry.FQDN(h, r.Namespace))
			}
			ix.vs = append(ix.vs, e)
		case config.DestinationRule:
			if dr, ok := r.Spec.(*networking.DestinationRule); ok {
				ix.dr = append(ix.dr, drEntry{spec: dr, host: registry.FQDN(dr.GetHost(), r.Namespace)})
			}
		case config.ServiceEntry:
			ix.se = append(ix.se, r)
		case config.Gateway:
			ix.gw = append(ix.gw, r)
		}
	}
	return ix
}

// hasSidecar: a workload whose pod the runtime does not describe is not
// accused of lacking one.
func hasSidecar(w registry.Workload) bool { return w.Pod == nil || Injected(w.Pod) }

// Injected reports whether a registered pod has a sidecar, as
// inject.Injected does for a pod spec: the injector's status annotation, or
// a proxy container for pods injected some other way.
func Injected(p *registry.Pod) bool {
	if p == nil {
		return false
	}
	if _, ok := p.Annotations[inject.StatusAnnotation]; ok {
		return true
	}
	for _, c := range p.Containers {
		if c.Name == inject.ProxyContainer {
			return true
		}
	}
	return false
}

// TelemetryWorkload is the workload name Istio's telemetry reports for a
// pod: its controller's (a ReplicaSet's Deployment), or the pod's name
// without its generated suffixes.
func TelemetryWorkload(w registry.Workload) string {
	if p := w.Pod; p != nil && p.ControllerName != "" {
		if p.ControllerKind != "ReplicaSet" {
			return p.ControllerName
		}
		if h := w.Labels["pod-template-hash"]; h != "" {
			return strings.TrimSuffix(p.ControllerName, "-"+h)
		}
		if i := strings.LastIndexByte(p.ControllerName, '-'); i > 0 {
			return p.ControllerName[:i]
		}
		return p.ControllerName
	}
	parts := strings.Split(w.Name, "-")
	if n := len(parts); n >= 3 && len(parts[n-1]) == 5 && len(parts[n-2]) >= 8 && len(parts[n-2]) <= 10 {
		return strings.Join(parts[:n-2], "-")
	}
	if n := len(parts); n >= 2 && parts[n-1] != "" && strings.Trim(parts[n-1], "0123456789") == "" {
		return strings.Join(parts[:n-1], "-")
	}
	return w.Name
}

func serviceHost(ns, name string) string {
	if strings.Contains(name, ".") {
		return name // a ServiceEntry host
	}
	return name + "." + ns + ".svc." + registry.ClusterDomain
}

// hasCircuitBreaker: a connection pool or outlier detection at the top
// level, per port, or in a subset (for a subset, only when it selects the
// workload's labels, if a workload is given).
func hasCircuitBreaker(dr *networking.DestinationRule, labels map[string]string) bool {
	cb := func(p *networking.TrafficPolicy) bool {
		if p == nil {
			return false
		}
		if p.ConnectionPool != nil || p.OutlierDetection != nil {
			return true
		}
		for _, pl := range p.PortLevelSettings {
			if pl != nil && (pl.ConnectionPool != nil || pl.OutlierDetection != nil) {
				return true
			}
		}
		return false
	}
	if cb(dr.GetTrafficPolicy()) {
		return true
	}
	for _, s := range dr.GetSubsets() {
		if !cb(s.GetTrafficPolicy()) {
			continue
		}
		if labels == nil || selects(s.GetLabels(), labels) {
			return true
		}
	}
	return false
}

func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return true
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// vsBadges are the VirtualService badges of one service host.
type vsBadges struct {
	hosts                                                  []string
	routing, fault, shifting, tcpShifting, timeout, mirror bool
}

func (ix *meshIndex) virtualServiceBadges(host string) (b vsBadges, any bool) {
	for _, e := range ix.vs {
		vs := e.spec
		matched := false
		for i, h := range e.fqdns {
			if registry.HostMatches(h, host) {
				matched = true
				if !slices.Contains(b.hosts, e.hosts[i]) {
					b.hosts = append(b.hosts, e.hosts[i])
				}
			}
		}
		if !matched {
			continue
		}
		any = true
		for _, hr := range vs.GetHttp() {
			if len(hr.GetMatch()) > 0 {
				b.routing = true
			}
			for _, d := range hr.GetRoute() {
				if d.GetDestination().GetSubset() != "" {
					b.routing = true
				}
			}
			if weighted(len(hr.GetRoute()), func(i int) int32 { return hr.GetRoute()[i].GetWeight() }) {
				b.shifting = true
			}
			if hr.GetFault() != nil {
				b.fault = true
			}
			if hr.GetTimeout() != nil {
				b.timeout = true
			}
			if hr.GetMirror() != nil || len(hr.GetMirrors()) > 0 {
				b.mirror = true
			}
		}
		for _, tr := range vs.GetTcp() {
			if weighted(len(tr.GetRoute()), func(i int) int32 { return tr.GetRoute()[i].GetWeight() }) {
				b.tcpShifting = true
			}
		}
		for _, tr := range vs.GetTls() {
			if len(tr.GetRoute()) > 1 {
				b.routing = true
			}
		}
	}
	slices.Sort(b.hosts)
	return b, any
}

// weighted: more than one destination sharing the traffic (a destination
// weighted 0 still counts: the wizard's 0/50/50 is traffic shifting).
func weighted(n int, weight func(int) int32) bool {
	if n < 2 {
		return false
	}
	for i := range n {
		if weight(i) > 0 {
			return true
		}
	}
	return false
}

// serviceEntry finds the ServiceEntry declaring host.
func (ix *meshIndex) serviceEntry(host string) *ServiceEntryInfo {
	for _, r := range ix.se {
		se, ok := r.Spec.(*networking.ServiceEntry)
		if !ok {
			continue
		}
		for _, h := range se.GetHosts() {
			if registry.HostMatches(registry.FQDN(h, r.Namespace), host) || h == host {
				loc := "MESH_EXTERNAL"
				if se.GetLocation() == networking.ServiceEntry_MESH_INTERNAL {
					loc = "MESH_INTERNAL"
				}
				hosts := slices.Clone(se.GetHosts())
				slices.Sort(hosts)
				return &ServiceEntryInfo{Location: loc, Hosts: hosts}
			}
		}
	}
	return nil
}

// gatewayHosts are the hosts of the Gateways whose selector picks labels.
func (ix *meshIndex) gatewayHosts(labels map[string]string) []string {
	var hosts []string
	for _, r := range ix.gw {
		gw, ok := r.Spec.(*networking.Gateway)
		if !ok || len(gw.GetSelector()) == 0 || !selects(gw.GetSelector(), labels) {
			continue
		}
		for _, s := range gw.GetServers() {
			for _, h := range s.GetHosts() {
				if i := strings.IndexByte(h, '/'); i >= 0 {
					h = h[i+1:]
				}
				if !slices.Contains(hosts, h) {
					hosts = append(hosts, h)
				}
			}
		}
	}
	slices.Sort(hosts)
	return hosts
}
