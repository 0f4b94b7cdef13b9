// Package analyze owns meshlab's configuration analysis, the analogue of
// istioctl analyze: checks that span resources (a route to a subset no
// DestinationRule defines, a host no Service or ServiceEntry provides, a
// Gateway that does not exist, weights that do not add up, VirtualServices
// that fight over a host) which schema validation of one document cannot
// see. It reports Istio's message codes and levels where Istio has them.
package analyze

import (
	"fmt"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/registry"
)

// Input is everything an analysis looks at.
type Input struct {
	Resources []config.Resource
	// Services is the registry. When it is empty (files analyzed with no
	// lab and no Service manifests) nothing is known about which hosts
	// exist, so the checks of hosts are skipped rather than flag them all.
	Services []registry.Service
	// Workloads, when not nil, enables the checks that need pods: subsets
	// that select none (IST0173), gateway selectors that match none.
	Workloads []registry.Workload
	// Complete says Workloads is every pod of the mesh (a live registry),
	// so a Gateway whose selector matches none of them is an error; files
	// alone rarely hold the gateway's pods.
	Complete bool
	// Origins maps a resource key (config.Resource.Key) to where it came
	// from; resources without one (e.g. from the store) get no file.
	Origins map[string]Origin
	// Lines, when set, finds the line of a field of a resource from a file,
	// so a message can point at it rather than at the document.
	Lines func(key, field string) int
}

// Analyze reports what is wrong across resources, given the services of
// the registry.
func Analyze(resources []config.Resource, services []registry.Service) []Message {
	return Run(Input{Resources: resources, Services: services})
}

// Run analyzes in and returns its messages, sorted, with origins filled in.
func Run(in Input) []Message {
	a := newAnalysis(in)
	for _, r := range in.Resources {
		switch s := r.Spec.(type) {
		case *networking.VirtualService:
			a.virtualService(r, s)
		case *networking.DestinationRule:
			a.destinationRule(r, s)
		case *networking.Gateway:
			a.gateway(r, s)
		}
	}
	a.conflicts()
	for i := range a.msgs {
		m := &a.msgs[i]
		if o, ok := in.Origins[m.Key()]; ok {
			o := o
			if in.Lines != nil {
				if l := in.Lines(m.Key(), m.Field); l > 0 {
					o.Line = l
				}
			}
			m.Origin = &o
		}
	}
	sortMessages(a.msgs)
	return a.msgs
}

type analysis struct {
	in       Input
	services map[string]registry.Service // by FQDN
	entries  []string                    // ServiceEntry hosts, as written (may be wildcards)
	subsets  map[string]map[string]bool  // FQDN → subset names of every DestinationRule for it
	gateways map[string]*networking.Gateway
	msgs     []Message
}

func newAnalysis(in Input) *analysis {
	a := &analysis{in: in, services: map[string]registry.Service{}, subsets: map[string]map[string]bool{},
		gateways: map[string]*networking.Gateway{}}
	for _, s := range in.Services {
		a.services[s.Hostname()] = s
	}
	for _, r := range in.Resources {
		switch s := r.Spec.(type) {
		case *networking.ServiceEntry:
			a.entries = append(a.entries, s.GetHosts()...)
		case *networking.DestinationRule:
			h := registry.FQDN(s.GetHost(), r.Namespace)
			if a.subsets[h] == nil {
				a.subsets[h] = map[string]bool{}
			}
			for _, ss := range s.GetSubsets() {
				a.subsets[h][ss.GetName()] = true
			}
		case *networking.Gateway:
			a.gateways[r.Namespace+"/"+r.Name] = s
		}
	}
	return a
}

func (a *analysis) report(t Type, r config.Resource, field, format string, args ...any) {
	a.msgs = append(a.msgs, Message{Type: t, Text: fmt.Sprintf(format, args...),
		Kind: string(r.Kind), Namespace: r.Namespace, Name: r.Name, Field: field})
}

// known reports whether a destination host is served by a Service or a
// ServiceEntry.
func (a *analysis) known(host, ns string) bool {
	h := registry.FQDN(host, ns)
	if _, ok := a.services[h]; ok {
		return true
	}
	for _, e := range a.entries {
		if registry.HostMatches(e, host) || registry.HostMatches(e, h) {
			return true
		}
	}
	return false
}

// meshBound reports whether a VirtualService applies to sidecars: it names
// no gateway, or names "mesh".
func meshBound(gws []string) bool {
	if len(gws) == 0 {
		return true
	}
	for _, g := range gws {
		if g == "mesh" {
			return true
		}
	}
	return false
}

// gatewayKey resolves a gateway reference of a VirtualService in ns:
// "name", "ns/name" or Istio's older "name.ns.svc.cluster.local".
func gatewayKey(ref, ns string) string {
	if n, name, ok := strings.Cut(ref, "/"); ok {
		return n + "/" + name
	}
	if name, rest, ok := strings.Cut(ref, "."); ok {
		if n, _, _ := strings.Cut(rest, "."); n != "" {
			return n + "/" + name
		}
	}
	return ns + "/" + ref
}

type dest struct {
	field string
	d     *networking.Destination
}

func (a *analysis) virtualService(r config.Resource, vs *networking.VirtualService) {
	var dests []dest
	weights := func(prefix string, ws []int32) {
		if len(ws) < 2 {
			return
		}
		var sum int32
		for _, w := range ws {
			sum += w
		}
		if sum != 100 {
			a.report(SchemaValidationError, r, prefix, "Schema validation error: total destination weight %d != 100", sum)
		}
	}
	for i, h := range vs.GetHttp() {
		var ws []int32
		for j, rd := range h.GetRoute() {
			dests = append(dests, dest{fmt.Sprintf("spec.http[%d].route[%d].destination", i, j), rd.GetDestination()})
			ws = append(ws, rd.GetWeight())
		}
		weights(fmt.Sprintf("spec.http[%d].route", i), ws)
		if m := h.GetMirror(); m != nil {
			dests = append(dests, dest{fmt.Sprintf("spec.http[%d].mirror", i), m})
		}
		for j, m := range h.GetMirrors() {
			dests = append(dests, dest{fmt.Sprintf("spec.http[%d].mirrors[%d].destination", i, j), m.GetDestination()})
		}
		for j, m := range h.GetMatch() {
			a.gatewayRefs(r, fmt.Sprintf("spec.http[%d].match[%d].gateways", i, j), m.GetGateways())
		}
	}
	for i, t := range vs.GetTcp() {
		var ws []int32
		for j, rd := range t.GetRoute() {
			dests = append(dests, dest{fmt.Sprintf("spec.tcp[%d].route[%d].destination", i, j), rd.GetDestination()})
			ws = append(ws, rd.GetWeight())
		}
		weights(fmt.Sprintf("spec.tcp[%d].route", i), ws)
	}
	for i, t := range vs.GetTls() {
		var ws []int32
		for j, rd := range t.GetRoute() {
			dests = append(dests, dest{fmt.Sprintf("spec.tls[%d].route[%d].destination", i, j), rd.GetDestination()})
			ws = append(ws, rd.GetWeight())
		}
		weights(fmt.Sprintf("spec.tls[%d].route", i), ws)
	}
	for _, d := range dests {
		a.destination(r, d)
	}
	a.gatewayRefs(r, "spec.gateways", vs.GetGateways())

	if meshBound(vs.GetGateways()) && len(a.services) > 0 {
		for i, h := range vs.GetHosts() {
			if !strings.Contains(h, "*") && !a.known(h, r.Namespace) {
				a.report(VirtualServiceHostNotInRegistry, r, fmt.Sprintf("spec.hosts[%d]", i),
					"host %q is neither a Service nor a ServiceEntry host, so no sidecar routes by this VirtualService", h)
			}
		}
	}
	for _, g := range vs.GetGateways() {
		if g == "mesh" {
			continue
		}
		gw, ok := a.gateways[gatewayKey(g, r.Namespace)]
		if !ok {
			continue
		}
		var missing []string
		for _, h := range vs.GetHosts() {
			if !gatewayHasHost(gw, h, r.Namespace) {
				missing = append(missing, h)
			}
		}
		if len(missing) > 0 {
			a.report(VirtualServiceHostNotFoundInGateway, r, "spec.hosts",
				"one or more host [%s] defined in VirtualService %s/%s not found in Gateway %s.",
				strings.Join(missing, ","), r.Namespace, r.Name, gatewayKey(g, r.Namespace))
		}
	}
}

// gatewayHasHost reports whether a server of gw admits host for a
// VirtualService of namespace ns (server hosts may be "ns/host", "*/host",
// "./host").
func gatewayHasHost(gw *networking.Gateway, host, ns string) bool {
	for _, s := range gw.GetServers() {
		for _, sh := range s.GetHosts() {
			if n, h, ok := strings.Cut(sh, "/"); ok {
				if n != "*" && n != ns && n != "." {
					continue
				}
				sh = h
			}
			if registry.HostMatches(sh, host) || registry.HostMatches(host, sh) {
				return true
			}
		}
	}
	return false
}

func (a *analysis) destination(r config.Resource, d dest) {
	host := d.d.GetHost()
	if host == "" {
		return // schema validation says so
	}
	if len(a.services) > 0 && !a.known(host, r.Namespace) {
		a.report(ReferencedResourceNotFound, r, d.field+".host", "Referenced host not found: %q", host)
	}
	if sub := d.d.GetSubset(); sub != "" && !a.subsets[registry.FQDN(host, r.Namespace)][sub] {
		a.report(ReferencedResourceNotFound, r, d.field+".subset",
			"Referenced host+subset in destinationrule not found: %q", host+"+"+sub)
	}
	if svc, ok := a.services[registry.FQDN(host, r.Namespace)]; ok && len(svc.Ports) > 1 && d.d.GetPort() == nil {
		ports := make([]string, len(svc.Ports))
		for i, p := range svc.Ports {
			ports[i] = fmt.Sprint(p.Port)
		}
		a.report(VirtualServiceDestinationPortSelectorRequired, r, d.field+".port",
			"This VirtualService routes to a service %q that exposes multiple ports [%s]. Specifying a port in the destination is required to disambiguate.",
			host, strings.Join(ports, " "))
	}
}

func (a *analysis) gatewayRefs(r config.Resource, field string, refs []string) {
	for i, g := range refs {
		if g == "mesh" {
			continue
		}
		if _, ok := a.gateways[gatewayKey(g, r.Namespace)]; !ok {
			a.report(ReferencedResourceNotFound, r, fmt.Sprintf("%s[%d]", field, i), "Referenced gateway not found: %q", g)
		}
	}
}

func (a *analysis) destinationRule(r config.Resource, dr *networking.DestinationRule) {
	if a.in.Workloads == nil {
		return
	}
	svc, ok := a.services[registry.FQDN(dr.GetHost(), r.Namespace)]
	if !ok {
		return
	}
	for i, ss := range dr.GetSubsets() {
		found := false
		for _, w := range a.in.Workloads {
			if svc.Selects(w) && labelsMatch(ss.GetLabels(), w.Labels) {
				found = true
				break
			}
		}
		if !found {
			a.report(DestinationRuleSubsetNotSelectPods, r, fmt.Sprintf("spec.subsets[%d]", i),
				"The Subset %s defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).", ss.GetName())
		}
	}
}

func (a *analysis) gateway(r config.Resource, gw *networking.Gateway) {
	sel := gw.GetSelector()
	if !a.in.Complete || len(sel) == 0 {
		return
	}
	for _, w := range a.in.Workloads {
		if labelsMatch(sel, w.Labels) {
			return
		}
	}
	keys := make([]string, 0, len(sel))
	for k, v := range sel {
		keys = append(keys, k+"="+v)
	}
	sort.Strings(keys)
	a.report(ReferencedResourceNotFound, r, "spec.selector", "Referenced selector not found: %q", strings.Join(keys, ","))
}

func labelsMatch(want, have map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// conflicts reports hosts defined by more than one VirtualService for the
// same gateway: for the mesh that is Istio's IST0109.
func (a *analysis) conflicts() {
	type use struct {
		r     config.Resource
		field string
	}
	by := map[[2]string][]use{} // {gateway ("mesh" or ns/name), FQDN host} → VirtualServices
	for _, r := range a.in.Resources {
		vs, ok := r.Spec.(*networking.VirtualService)
		if !ok {
			continue
		}
		var gws []string
		if meshBound(vs.GetGateways()) {
			gws = append(gws, "mesh")
		}
		for _, g := range vs.GetGateways() {
			if g != "mesh" {
				gws = append(gws, gatewayKey(g, r.Namespace))
			}
		}
		for i, h := range vs.GetHosts() {
			if h == "*" {
				continue
			}
			for _, g := range gws {
				k := [2]string{g, registry.FQDN(h, r.Namespace)}
				by[k] = append(by[k], use{r, fmt.Sprintf("spec.hosts[%d]", i)})
			}
		}
	}
	keys := make([][2]string, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i][0]+" "+keys[i][1] < keys[j][0]+" "+keys[j][1] })
	for _, k := range keys {
		uses := by[k]
		seen := map[string]bool{}
		var names []string
		for _, u := range uses {
			if n := u.r.Namespace + "/" + u.r.Name; !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
		if len(names) < 2 {
			continue
		}
		sort.Strings(names)
		list := strings.Join(names, ",")
		for _, u := range uses {
			if k[0] == "mesh" {
				a.report(ConflictingMeshGatewayVirtualServiceHosts, u.r, u.field,
					"The VirtualServices %s associated with mesh gateway define the same host %s which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.", list, k[1])
			} else {
				a.report(ConflictingGatewayVirtualServiceHosts, u.r, u.field,
					"The VirtualServices %s bound to gateway %s define the same host %s; their routes are merged in creation order, so which rule matches first is undefined. Merge them into a single resource.", list, k[0], k[1])
			}
		}
	}
}

// Overlay returns the stored resources with those of files put over them:
// a file's resource replaces the stored one with the same key, as applying
// the files would.
func Overlay(stored, files []config.Resource) []config.Resource {
	out := make([]config.Resource, 0, len(stored)+len(files))
	mine := make(map[string]bool, len(files))
	for _, r := range files {
		mine[r.Key()] = true
	}
	for _, r := range stored {
		if !mine[r.Key()] {
			out = append(out, r)
		}
	}
	return append(out, files...)
}
