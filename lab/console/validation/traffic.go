package validation

import (
	"fmt"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlab/meshlab/controlplane/config"
)

// destinationRules: KIA0201 duplicates, KIA0202 unknown host, KIA0203
// subsets selecting nothing, KIA0209 subsets without labels.
func (m *mesh) destinationRules(add addFunc) {
	drs := m.of(config.DestinationRule)
	referenced := m.referencedSubsets()
	byHost := map[string][]config.Resource{}
	for _, r := range drs {
		h := m.fqdn(drOf(r).GetHost(), r.Namespace)
		byHost[h] = append(byHost[h], r)
	}
	for _, r := range drs {
		dr := drOf(r)
		host := m.fqdn(dr.GetHost(), r.Namespace)
		same := byHost[host]
		if !strings.HasPrefix(host, "*") && !m.known(host) {
			add(r, "KIA0202", Error, "spec/host", fmt.Sprintf("%s is neither a service nor a ServiceEntry host", host))
		}
		// KIA0201: two rules for one host, unless they split its subsets
		// between them; Istio keeps only one of them per subset.
		for _, o := range same[slices.IndexFunc(same, func(x config.Resource) bool { return x.Key() == r.Key() })+1:] {
			odr := drOf(o)
			if dr.GetWorkloadSelector() != nil || odr.GetWorkloadSelector() != nil {
				continue
			}
			if shared := overlap(dr, odr); shared != "" {
				add(r, "KIA0201", Warning, "spec/host", fmt.Sprintf("%s also in DestinationRule %s/%s", shared, o.Namespace, o.Name))
				add(o, "KIA0201", Warning, "spec/host", fmt.Sprintf("%s also in DestinationRule %s/%s", shared, r.Namespace, r.Name))
			}
		}
		svcs := m.servicesFor(host)
		anyLabels := slices.ContainsFunc(dr.GetSubsets(), func(s *networking.Subset) bool { return len(s.GetLabels()) > 0 })
		for j, ss := range dr.GetSubsets() {
			path := fmt.Sprintf("spec/subsets[%d]", j)
			if len(ss.GetLabels()) == 0 {
				sev := Warning
				if anyLabels {
					sev = Info
				}
				add(r, "KIA0209", sev, path, fmt.Sprintf("subset %s selects every endpoint of the host", ss.GetName()))
				continue
			}
			if len(svcs) == 0 || strings.HasPrefix(host, "*") {
				continue // a ServiceEntry's endpoints, or a wildcard: nothing to compare with
			}
			found := false
			for _, s := range svcs {
				for _, w := range m.endpoints(s) {
					if matches(ss.GetLabels(), w.Labels) {
						found = true
					}
				}
			}
			if !found {
				sev := Error
				if !referenced[host+"|"+ss.GetName()] {
					sev = Info
				}
				add(r, "KIA0203", sev, path+"/labels", fmt.Sprintf("no workload of %s has labels %s", host, labelString(ss.GetLabels())))
			}
		}
	}
}

// overlap names what two rules for the same host both configure: the
// whole host when either has no subsets, else their common subsets.
func overlap(a, b *networking.DestinationRule) string {
	if len(a.GetSubsets()) == 0 || len(b.GetSubsets()) == 0 {
		return "the host"
	}
	var shared []string
	for _, s := range a.GetSubsets() {
		for _, o := range b.GetSubsets() {
			if s.GetName() == o.GetName() {
				shared = append(shared, s.GetName())
			}
		}
	}
	if len(shared) == 0 {
		return ""
	}
	return "subset " + strings.Join(shared, ", ")
}

// route is one destination of a VirtualService with the path to it.
type route struct {
	path   string // e.g. spec/http[0]/route[1]
	dest   *networking.Destination
	weight int32
}

// routes lists a VirtualService's route destinations, grouped by route.
func routes(vs *networking.VirtualService) [][]route {
	var out [][]route
	for i, h := range vs.GetHttp() {
		var rs []route
		for j, d := range h.GetRoute() {
			rs = append(rs, route{fmt.Sprintf("spec/http[%d]/route[%d]", i, j), d.GetDestination(), d.GetWeight()})
		}
		out = append(out, rs)
	}
	for i, t := range vs.GetTcp() {
		var rs []route
		for j, d := range t.GetRoute() {
			rs = append(rs, route{fmt.Sprintf("spec/tcp[%d]/route[%d]", i, j), d.GetDestination(), d.GetWeight()})
		}
		out = append(out, rs)
	}
	for i, t := range vs.GetTls() {
		var rs []route
		for j, d := range t.GetRoute() {
			rs = append(rs, route{fmt.Sprintf("spec/tls[%d]/route[%d]", i, j), d.GetDestination(), d.GetWeight()})
		}
		out = append(out, rs)
	}
	return out
}

// referencedSubsets are the host|subset pairs routes send to.
func (m *mesh) referencedSubsets() map[string]bool {
	out := map[string]bool{}
	for _, r := range m.of(config.VirtualService) {
		for _, rs := range routes(vsOf(r)) {
			for _, d := range rs {
				if d.dest.GetSubset() != "" {
					out[m.fqdn(d.dest.GetHost(), r.Namespace)+"|"+d.dest.GetSubset()] = true
				}
			}
		}
		for _, h := range vsOf(r).GetHttp() {
			if mi := h.GetMirror(); mi.GetSubset() != "" {
				out[m.fqdn(mi.GetHost(), r.Namespace)+"|"+mi.GetSubset()] = true
			}
		}
	}
	return out
}

// subsetDefined reports whether a DestinationRule for the host defines the subset.
func (m *mesh) subsetDefined(host, subset string) bool {
	if m.subsets[host][subset] {
		return true
	}
	for _, r := range m.wildDRs {
		dr := drOf(r)
		if !hostMatches(m.fqdn(dr.GetHost(), r.Namespace), host) {
			continue
		}
		for _, s := range dr.GetSubsets() {
			if s.GetName() == subset {
				return true
			}
		}
	}
	return false
}

// gatewayRef resolves a VirtualService's gateway reference to
// namespace/name ("" for mesh).
func gatewayRef(ref, ns string) string {
	if ref == "mesh" {
		return ""
	}
	if strings.Contains(ref, "/") {
		return ref
	}
	// The old form name.namespace.svc.cluster.local, or a bare name.
	if name, rest, ok := strings.Cut(ref, "."); ok {
		gwNS, _, _ := strings.Cut(rest, ".")
		return gwNS + "/" + name
	}
	return ns + "/" + ref
}

// appliesTo is the set of gateways ("" = the sidecars) a VirtualService binds to.
func appliesTo(vs *networking.VirtualService, ns string) []string {
	if len(vs.GetGateways()) == 0 {
		return []string{""}
	}
	var out []string
	for _, g := range vs.GetGateways() {
		out = append(out, gatewayRef(g, ns))
	}
	return out
}

// virtualServices: KIA1101 unknown destination host, KIA1102 unknown
// gateway, KIA1104 a lone destination's weight, KIA1105 a destination
// twice in a route, KIA1106 two VirtualServices for a host, KIA1107
// unknown subset.
func (m *mesh) virtualServices(add addFunc) {
	gws := map[string]bool{}
	for _, g := range m.of(config.Gateway) {
		gws[g.Namespace+"/"+g.Name] = true
	}
	vss := m.of(config.VirtualService)
	byHost := map[string][]config.Resource{}
	for _, r := range vss {
		seen := map[string]bool{}
		for _, h := range vsOf(r).GetHosts() {
			if f := m.fqdn(h, r.Namespace); !seen[f] {
				seen[f] = true
				byHost[f] = append(byHost[f], r)
			}
		}
	}
	for _, r := range vss {
		vs := vsOf(r)
		for j, g := range vs.GetGateways() {
			if ref := gatewayRef(g, r.Namespace); ref != "" && !gws[ref] {
				add(r, "KIA1102", Error, fmt.Sprintf("spec/gateways[%d]", j), fmt.Sprintf("no Gateway %s", ref))
			}
		}
		for _, rs := range routes(vs) {
			seen := map[string]string{}
			for _, d := range rs {
				host := m.fqdn(d.dest.GetHost(), r.Namespace)
				if !m.known(host) {
					add(r, "KIA1101", Error, d.path+"/destination/host", fmt.Sprintf("%s is neither a service nor a ServiceEntry host", host))
				} else if s := d.dest.GetSubset(); s != "" && !m.subsetDefined(host, s) {
					add(r, "KIA1107", Error, d.path+"/destination/subset", fmt.Sprintf("no DestinationRule for %s defines subset %s", host, s))
				}
				key := host + "|" + d.dest.GetSubset()
				if prev, dup := seen[key]; dup {
					add(r, "KIA1105", Warning, d.path+"/destination", "also at "+prev)
				}
				seen[key] = d.path
				if len(rs) == 1 && d.weight > 0 && d.weight < 100 {
					add(r, "KIA1104", Warning, d.path+"/weight", fmt.Sprintf("weight %d is taken as 100", d.weight))
				}
			}
		}
		for j, mi := range vs.GetHttp() {
			if d := mi.GetMirror(); d != nil {
				host := m.fqdn(d.GetHost(), r.Namespace)
				if !m.known(host) {
					add(r, "KIA1101", Error, fmt.Sprintf("spec/http[%d]/mirror/host", j), fmt.Sprintf("%s is neither a service nor a ServiceEntry host", host))
				} else if s := d.GetSubset(); s != "" && !m.subsetDefined(host, s) {
					add(r, "KIA1107", Error, fmt.Sprintf("spec/http[%d]/mirror/subset", j), fmt.Sprintf("no DestinationRule for %s defines subset %s", host, s))
				}
			}
		}
		// KIA1106: two VirtualServices for one host bound to the same
		// gateway (or both to the sidecars): Istio merges only for gateways,
		// and then in no guaranteed order.
		var others []config.Resource
		for _, h := range vs.GetHosts() {
			for _, o := range byHost[m.fqdn(h, r.Namespace)] {
				if o.Key() > r.Key() && !slices.ContainsFunc(others, func(x config.Resource) bool { return x.Key() == o.Key() }) {
					others = append(others, o)
				}
			}
		}
		for _, o := range others {
			ovs := vsOf(o)
			shared := false // a gateway both bind to, "" being the sidecars
			for _, g := range appliesTo(vs, r.Namespace) {
				shared = shared || slices.Contains(appliesTo(ovs, o.Namespace), g)
			}
			if !shared {
				continue
			}
			for a, h := range vs.GetHosts() {
				for b, oh := range ovs.GetHosts() {
					if m.fqdn(h, r.Namespace) == m.fqdn(oh, o.Namespace) {
						add(r, "KIA1106", Warning, fmt.Sprintf("spec/hosts[%d]", a), fmt.Sprintf("%s also in VirtualService %s/%s", m.fqdn(h, r.Namespace), o.Namespace, o.Name))
						add(o, "KIA1106", Warning, fmt.Sprintf("spec/hosts[%d]", b), fmt.Sprintf("%s also in VirtualService %s/%s", m.fqdn(h, r.Namespace), r.Namespace, r.Name))
					}
				}
			}
		}
	}
}

// gateways: KIA0301 two Gateways serving a host on one port for the same
// ingress, KIA0302 a selector matching no workload.
func (m *mesh) gateways(add addFunc) {
	gws := m.of(config.Gateway)
	for i, r := range gws {
		gw, _ := r.Spec.(*networking.Gateway)
		sel := gw.GetSelector()
		inNS, anywhere := false, false
		for _, w := range m.workloads {
			if len(sel) > 0 && matches(sel, w.Labels) {
				anywhere = true
				inNS = inNS || w.Namespace == r.Namespace
			}
		}
		// Istio's own gateways live in istio-system and are meant to be
		// selected from any namespace.
		isDefault := len(sel) == 1 && (sel["istio"] == "ingressgateway" || sel["istio"] == "egressgateway")
		if !inNS && (!anywhere || !isDefault) {
			detail := fmt.Sprintf("no workload in %s has labels %s", r.Namespace, labelString(sel))
			if anywhere {
				detail += " (some in other namespaces do; Istio may stop selecting across namespaces)"
			}
			add(r, "KIA0302", Warning, "spec/selector", detail)
		}
		for _, o := range gws[i+1:] {
			ogw, _ := o.Spec.(*networking.Gateway)
			if labelString(ogw.GetSelector()) != labelString(sel) {
				continue
			}
			for a, s := range gw.GetServers() {
				for _, os := range ogw.GetServers() {
					if s.GetPort().GetNumber() != os.GetPort().GetNumber() {
						continue
					}
					for h, host := range s.GetHosts() {
						for oh, ohost := range os.GetHosts() {
							_, hn, _ := strings.Cut(host, "/")
							if hn == "" {
								hn = host
							}
							_, ohn, _ := strings.Cut(ohost, "/")
							if ohn == "" {
								ohn = ohost
							}
							if hostMatches(hn, ohn) || hostMatches(ohn, hn) {
								detail := fmt.Sprintf("%s on port %d also in Gateway %s/%s", hn, s.GetPort().GetNumber(), o.Namespace, o.Name)
								add(r, "KIA0301", Warning, fmt.Sprintf("spec/servers[%d]/hosts[%d]", a, h), detail)
								odetail := fmt.Sprintf("%s on port %d also in Gateway %s/%s", ohn, s.GetPort().GetNumber(), r.Namespace, r.Name)
								add(o, "KIA0301", Warning, fmt.Sprintf("spec/servers[%d]/hosts[%d]", indexOf(ogw.GetServers(), os), oh), odetail)
							}
						}
					}
				}
			}
		}
	}
}

func indexOf(servers []*networking.Server, s *networking.Server) int {
	return slices.Index(servers, s)
}
