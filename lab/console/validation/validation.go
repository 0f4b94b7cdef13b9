// Package validation owns the console's semantic checks of Istio config,
// Kiali's KIA codes where a user benefits: references that lead nowhere (a
// DestinationRule host or subset, a route's host, subset or gateway, a
// selector that matches no workload), ambiguous duplicates (two
// DestinationRules, VirtualServices or Gateways for the same thing), an
// AuthorizationPolicy naming a namespace or service account that does not
// exist, and mTLS
// settings that break traffic (a DestinationRule disabling TLS toward
// workloads that accept only mTLS, and the converse). Schema and field
// checks are the control plane's (controlplane/config.Validate, the IST
// analyzer); these are the ones that need the whole mesh.
//
// Unlike Kiali, it does not raise KIA0205/KIA0206 ("PeerAuthentication
// enabling mTLS missing"): with auto mTLS (meshlab's only mode) a
// DestinationRule with ISTIO_MUTUAL and no PeerAuthentication works, so
// those were false alarms (kiali/kiali#10188).
package validation

import (
	"slices"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/registry"
)

// RootNamespace is the mesh's config root: PeerAuthentications without a
// selector there apply to the whole mesh.
const RootNamespace = "istio-system"

// Severities, as Kiali's.
const (
	Error   = "error"
	Warning = "warning"
	Info    = "info"
)

// Check is one finding about an object: a KIA code, its message, severity
// and the path of the field it is about, written as Kiali writes them
// ("spec/subsets[0]/labels").
type Check struct {
	Code     string `json:"code"`
	Message  string `json:"message"`
	Severity string `json:"severity"`
	Path     string `json:"path"`
}

// Result is the validation of one object; Valid is false when a check is
// an error (warnings and infos leave it valid, as in Kiali).
type Result struct {
	ObjectType string  `json:"objectType"`
	Name       string  `json:"name"`
	Namespace  string  `json:"namespace"`
	Valid      bool    `json:"valid"`
	Checks     []Check `json:"checks"`
}

// The messages, by code: Kiali's titles for them.
var messages = map[string]string{
	"KIA0002": "More than one selector-less object in the same namespace",
	"KIA0003": "More than one object applied to the same workload",
	"KIA0004": "No matching workload found for the selector in this namespace",
	"KIA0101": "Namespace not found for this rule",
	"KIA0106": "Service Account not found for this principal",
	"KIA0201": "More than one DestinationRules for the same host subset combination",
	"KIA0202": "This host has no matching entry in the service registry (service, workload or service entries)",
	"KIA0203": "This subset's labels are not found in any matching host",
	"KIA0207": "PeerAuthentication with TLS strict mode found, it should be permissive",
	"KIA0208": "PeerAuthentication enabling mTLS found, permissive mode needed",
	"KIA0209": "DestinationRule Subset has not labels",
	"KIA0301": "More than one Gateway for the same host port combination",
	"KIA0302": "No matching workload found for gateway selector in this namespace",
	"KIA0505": "Destination Rule disabling namespace-wide mTLS is missing",
	"KIA0506": "Destination Rule disabling mesh-wide mTLS is missing",
	"KIA1101": "DestinationWeight on route doesn't have a valid service (host not found)",
	"KIA1102": "VirtualService is pointing to a non-existent gateway",
	"KIA1104": "The weight is assumed to be 100 because there is only one route destination",
	"KIA1105": "This host subset combination is already referenced in another route destination",
	"KIA1106": "More than one Virtual Service for same host",
	"KIA1107": "Subset not found",
}

// Message is the text of a code.
func Message(code string) string { return messages[code] }

// Validate checks every Istio resource against the others and the
// registry, returning a Result for each one (valid or not), keyed by
// config.Resource.Key. Workload kinds (Deployments, …) are skipped.
func Validate(resources []config.Resource, services []registry.Service, workloads []registry.Workload) map[string]*Result {
	m := newMesh(resources, services, workloads)
	out := map[string]*Result{}
	for _, r := range m.resources {
		out[r.Key()] = &Result{ObjectType: strings.ToLower(string(r.Kind)), Name: r.Name, Namespace: r.Namespace, Valid: true, Checks: []Check{}}
	}
	add := func(r config.Resource, code, severity, path, detail string) {
		res := out[r.Key()]
		msg := messages[code]
		if detail != "" {
			msg += ": " + detail
		}
		// One finding per code and field: the first names an example.
		if slices.ContainsFunc(res.Checks, func(c Check) bool { return c.Code == code && c.Path == path }) {
			return
		}
		res.Checks = append(res.Checks, Check{Code: code, Message: msg, Severity: severity, Path: path})
		if severity == Error {
			res.Valid = false
		}
	}
	m.destinationRules(add)
	m.virtualServices(add)
	m.gateways(add)
	m.selectors(add)
	m.mtls(add)
	m.authorizationPolicies(add)
	for _, res := range out {
		sort.SliceStable(res.Checks, func(i, j int) bool { return res.Checks[i].Path < res.Checks[j].Path })
	}
	return out
}

type addFunc func(r config.Resource, code, severity, path, detail string)

// mesh indexes what the checks look things up in.
type mesh struct {
	resources  []config.Resource
	services   []registry.Service
	workloads  []registry.Workload
	namespaces map[string]bool
	byHost     map[string]registry.Service // FQDN → service
	seHosts    []string                    // ServiceEntry hosts, maybe wildcards

	// Indexes, so a mesh of thousands of services checks in linear time.
	byKind      map[config.Kind][]config.Resource
	nsWorkloads map[string][]registry.Workload
	endpointsOf map[string][]registry.Workload // service key → selected workloads
	subsets     map[string]map[string]bool     // DR FQDN host → subset names
	wildDRs     []config.Resource              // DRs with a wildcard host
	pas         map[string][]config.Resource   // namespace → PeerAuthentications, oldest first
}

func newMesh(resources []config.Resource, services []registry.Service, workloads []registry.Workload) *mesh {
	m := &mesh{services: services, workloads: workloads, namespaces: map[string]bool{}, byHost: map[string]registry.Service{},
		byKind: map[config.Kind][]config.Resource{}, nsWorkloads: map[string][]registry.Workload{}, endpointsOf: map[string][]registry.Workload{},
		subsets: map[string]map[string]bool{}, pas: map[string][]config.Resource{}}
	for _, r := range resources {
		if r.Spec == nil || r.Object != nil {
			continue
		}
		m.resources = append(m.resources, r)
		m.namespaces[r.Namespace] = true
		if se, ok := r.Spec.(*networking.ServiceEntry); ok {
			m.seHosts = append(m.seHosts, se.GetHosts()...)
		}
	}
	sort.SliceStable(m.resources, func(i, j int) bool { return m.resources[i].Key() < m.resources[j].Key() })
	for _, s := range services {
		m.namespaces[s.Namespace] = true
		m.byHost[s.Hostname()] = s
	}
	for _, w := range workloads {
		m.namespaces[w.Namespace] = true
		m.nsWorkloads[w.Namespace] = append(m.nsWorkloads[w.Namespace], w)
	}
	for _, s := range services {
		for _, w := range m.nsWorkloads[s.Namespace] {
			if s.Selects(w) {
				m.endpointsOf[s.Key()] = append(m.endpointsOf[s.Key()], w)
			}
		}
	}
	for _, r := range m.resources {
		m.byKind[r.Kind] = append(m.byKind[r.Kind], r)
		switch r.Kind {
		case config.DestinationRule:
			host := m.fqdn(drOf(r).GetHost(), r.Namespace)
			if strings.HasPrefix(host, "*") {
				m.wildDRs = append(m.wildDRs, r)
				continue
			}
			if m.subsets[host] == nil {
				m.subsets[host] = map[string]bool{}
			}
			for _, ss := range drOf(r).GetSubsets() {
				m.subsets[host][ss.GetName()] = true
			}
		case config.PeerAuthentication:
			m.pas[r.Namespace] = append(m.pas[r.Namespace], r)
		}
	}
	for _, rs := range m.pas {
		sort.SliceStable(rs, func(i, j int) bool { return rs[i].CreationTime().Before(rs[j].CreationTime()) })
	}
	return m
}

func (m *mesh) of(kind config.Kind) []config.Resource { return m.byKind[kind] }

// fqdn resolves a host as Istio does for a rule in ns: a short name is in
// ns; "name.namespace" (of a known namespace) and "name.namespace.svc"
// are completed; anything else is taken as written.
func (m *mesh) fqdn(host, ns string) string {
	// "name.other" is a Service only when other is a namespace of the mesh.
	if parts := strings.Split(host, "."); len(parts) == 2 && !m.namespaces[parts[1]] {
		return host
	}
	return registry.FQDN(host, ns)
}

// hostMatches reports whether pattern (maybe "*.suffix" or "*") covers host.
func hostMatches(pattern, host string) bool {
	if rest, ok := strings.CutPrefix(host, "*"); ok && !strings.HasPrefix(pattern, "*") {
		return strings.HasSuffix(pattern, rest)
	}
	return registry.HostMatches(pattern, host)
}

// known reports whether a resolved host is a service or a ServiceEntry's.
func (m *mesh) known(host string) bool {
	if _, ok := m.byHost[host]; ok {
		return true
	}
	for _, h := range m.seHosts {
		if hostMatches(h, host) {
			return true
		}
	}
	return false
}

// servicesFor lists the registry services a resolved host (maybe a
// wildcard) covers.
func (m *mesh) servicesFor(host string) []registry.Service {
	if s, ok := m.byHost[host]; ok {
		return []registry.Service{s}
	}
	if !strings.HasPrefix(host, "*") {
		return nil
	}
	var out []registry.Service
	for _, s := range m.services {
		if hostMatches(host, s.Hostname()) {
			out = append(out, s)
		}
	}
	return out
}

// endpoints are the workloads a service selects (ready or not: a config
// check is about what exists).
func (m *mesh) endpoints(s registry.Service) []registry.Workload { return m.endpointsOf[s.Key()] }

func matches(selector, labels map[string]string) bool {
	for k, v := range selector {
		if l, ok := labels[k]; !ok || l != v {
			return false
		}
	}
	return true
}

func labelString(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + l[k]
	}
	return strings.Join(keys, ",")
}

func drOf(r config.Resource) *networking.DestinationRule {
	dr, _ := r.Spec.(*networking.DestinationRule)
	return dr
}

func vsOf(r config.Resource) *networking.VirtualService {
	vs, _ := r.Spec.(*networking.VirtualService)
	return vs
}

func paOf(r config.Resource) *security.PeerAuthentication {
	pa, _ := r.Spec.(*security.PeerAuthentication)
	return pa
}
