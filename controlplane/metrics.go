package controlplane

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	networking "istio.io/api/networking/v1alpha3"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/meshconfig"
	"github.com/meshlab/meshlab/controlplane/monitoring"
	"github.com/meshlab/meshlab/controlplane/registry"
	"github.com/meshlab/meshlab/controlplane/store"
	"github.com/meshlab/meshlab/controlplane/webhook"
	"github.com/meshlab/meshlab/controlplane/xds"
)

// initMetrics makes istiod's series and hooks the xDS server to them;
// the CSR server's citadel_server_* were made with it.
func (s *Server) initMetrics() {
	s.metrics = monitoring.NewMetrics(s.opts.Version)
	// What the store held before this control plane started is no event
	// of this one: its history is not replayed into the counters.
	s.pushState.rev = s.store.Revision()
	s.xds.SetObserver(s.metrics)
	s.metrics.Register(s.csr.Collectors()...)
	s.metrics.Register(&connectedCollector{s: s, desc: prometheus.NewDesc("pilot_xds",
		"Number of endpoints connected to this pilot using XDS.", []string{"version"}, nil)})
	s.metrics.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "meshlab_store_revision", Help: "The store's current revision.",
	}, func() float64 { return float64(s.store.Revision()) }))
}

// connectedCollector is pilot_xds{version}, counted when scraped so the
// xDS streams pay nothing for it. A proxy that does not say its version
// (meshlab's own do not send ISTIO_VERSION) runs this binary, so it has
// the control plane's.
type connectedCollector struct {
	s    *Server
	desc *prometheus.Desc
}

func (c *connectedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *connectedCollector) Collect(ch chan<- prometheus.Metric) {
	byVersion := map[string]int{}
	for v, n := range c.s.xds.ConnectedVersions() {
		if v == "" {
			v = c.s.opts.Version
		}
		byVersion[v] += n
	}
	for v, n := range byVersion {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), v)
	}
}

// pushState is what the push loop remembers between pushes to tell what
// triggered the next one; only the push loop's goroutine touches it.
type pushState struct {
	rev      uint64
	services []registry.Service
	regGen   uint64
	secret   bool // a secret changed since the last push
}

// recordTriggers counts why a push runs (pilot_push_triggers), the config
// events it carries (pilot_k8s_cfg_events, pilot_inbound_updates{config},
// from the store's history, so every writer of the store is counted) and
// the delay since the oldest of them (pilot_debounce_time).
func (s *Server) recordTriggers(rev uint64, reg registry.Snapshot, start time.Time) {
	m, ps := s.metrics, &s.pushState
	if rev > ps.rev {
		m.Triggered(monitoring.TriggerConfig)
		if batches, err := s.store.History(ps.rev); err == nil {
			for i, b := range batches {
				if i == 0 {
					m.Debounced(start.Sub(b.Time))
				}
				for _, c := range b.Changes {
					kind, _, _ := strings.Cut(c.Key, "/")
					if _, ok := config.LookupKind(kind); !ok {
						continue // a Kubernetes object (Service, Deployment…), not Istio config
					}
					m.Inbound(monitoring.InboundConfig)
					m.ConfigEvent(kind, cfgEvent(c.Op))
				}
			}
		}
		ps.rev = rev
	}
	if reg.Generation != ps.regGen {
		if reflect.DeepEqual(reg.Services, ps.services) {
			m.Triggered(monitoring.TriggerEndpoint)
		} else {
			m.Triggered(monitoring.TriggerService)
		}
		ps.regGen, ps.services = reg.Generation, reg.Services
	}
	if ps.secret {
		m.Triggered(monitoring.TriggerSecret)
		ps.secret = false
	}
}

// cfgEvent is an informer's name for a store op.
func cfgEvent(op store.Op) string {
	switch op {
	case store.Created:
		return "add"
	case store.Deleted:
		return "delete"
	}
	return "update"
}

// meshState is Istio's push context gauges for a push's input.
func meshState(cfg []config.Resource, reg registry.Snapshot) monitoring.Mesh {
	out := monitoring.Mesh{Services: len(reg.Services)}
	clusters := map[string]int{}
	for _, svc := range reg.Services {
		eps := reg.Endpoints(svc)
		for _, p := range svc.Ports {
			name := fmt.Sprintf("outbound|%d||%s", p.Port, svc.Hostname())
			clusters[name]++
			if len(eps) == 0 {
				out.EmptyClusters = append(out.EmptyClusters, name)
			}
		}
	}
	// Services by hostname, as the inbound listeners take them.
	for _, w := range reg.Workloads {
		first := map[uint32]bool{}
		seen := map[uint32]bool{}
		for _, svc := range reg.Services {
			if !svc.Selects(w) {
				continue
			}
			for _, p := range svc.Ports {
				t, http := p.Target(), xds.IsHTTPPort(p)
				if !seen[t] {
					seen[t], first[t] = true, http
				} else if first[t] != http {
					out.InboundConflicts++
				}
			}
		}
	}
	vsHosts := map[string]int{}
	subsets := map[string]int{}
	for _, r := range cfg {
		switch spec := r.Spec.(type) {
		case *networking.ServiceEntry:
			for _, h := range spec.GetHosts() {
				out.Services++
				for _, p := range spec.GetPorts() {
					clusters[fmt.Sprintf("outbound|%d||%s", p.GetNumber(), h)]++
				}
			}
		case *networking.VirtualService:
			out.VirtualServices++
			if meshBound(spec.GetGateways()) {
				for _, h := range spec.GetHosts() {
					vsHosts[fqdn(h, r.Namespace)]++
				}
			}
		case *networking.DestinationRule:
			host := fqdn(spec.GetHost(), r.Namespace)
			for _, ss := range spec.GetSubsets() {
				subsets[r.Namespace+"/"+host+"/"+ss.GetName()]++
			}
		}
	}
	for _, n := range clusters {
		out.DuplicateClusters += n - 1
	}
	for _, n := range vsHosts {
		if n > 1 {
			out.VSDupDomains++
		}
	}
	for _, n := range subsets {
		out.DuplicateSubsets += n - 1
	}
	return out
}

// meshBound: a VirtualService applies to sidecars when it names no
// gateway or names "mesh".
func meshBound(gateways []string) bool {
	if len(gateways) == 0 {
		return true
	}
	for _, g := range gateways {
		if g == "mesh" {
			return true
		}
	}
	return false
}

// fqdn qualifies a short host with the config's namespace, as Istio does.
func fqdn(host, ns string) string {
	if strings.Contains(host, ".") || strings.HasPrefix(host, "*") {
		return host
	}
	return host + "." + ns + ".svc." + registry.ClusterDomain
}

// validate is the validating webhook, counted as Istio's
// galley_validation_passed/failed{group,version,resource[,reason]}.
func (s *Server) validate(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	resp := webhook.Validate(req)
	if config.IsIstioKind(req.Kind.Group+"/"+req.Kind.Version, req.Kind.Kind) &&
		(req.Operation == admissionv1.Create || req.Operation == admissionv1.Update) {
		reason := ""
		if !resp.Allowed {
			// Istio's reasons: a body that does not decode, or a resource
			// its validation refuses.
			reason = "invalid_resource"
			if resp.Result != nil && resp.Result.Code == 400 {
				reason = "yaml_decode_error"
			}
		}
		s.metrics.Validated(req.Resource.Group, req.Resource.Version, req.Resource.Resource, reason)
	}
	return resp
}

// prometheusMerge is the mesh config's enablePrometheusMerge as the
// injector reads it at each pod: on unless the istio ConfigMap turns it
// off (Istio's default); a store that cannot be read keeps the default.
func (s *Server) prometheusMerge() bool {
	cm, ok, err := s.store.Get(config.ConfigMap, meshconfig.Namespace, meshconfig.ConfigMapName)
	if err != nil || !ok {
		return true
	}
	mc, err := meshconfig.FromResource(cm)
	if err != nil || mc.GetEnablePrometheusMerge() == nil {
		return true
	}
	return mc.GetEnablePrometheusMerge().GetValue()
}
