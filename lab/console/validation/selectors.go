package validation

import (
	"fmt"
	"slices"

	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/registry"
)

// selectorOf is a resource's workload selector and its path; ok false
// for kinds without one.
func selectorOf(r config.Resource) (labels map[string]string, path string, ok bool) {
	switch s := r.Spec.(type) {
	case *security.PeerAuthentication:
		return s.GetSelector().GetMatchLabels(), "spec/selector", true
	case *security.AuthorizationPolicy:
		return s.GetSelector().GetMatchLabels(), "spec/selector", true
	case *security.RequestAuthentication:
		return s.GetSelector().GetMatchLabels(), "spec/selector", true
	case *networking.Sidecar:
		return s.GetWorkloadSelector().GetLabels(), "spec/workloadSelector", true
	}
	return nil, "", false
}

// selected lists the workloads a selector in ns applies to: its
// namespace's, or every namespace's from the root namespace.
func (m *mesh) selected(sel map[string]string, ns string) []registry.Workload {
	ws := m.nsWorkloads[ns]
	if ns == RootNamespace {
		ws = m.workloads
	}
	var out []registry.Workload
	for _, w := range ws {
		if matches(sel, w.Labels) {
			out = append(out, w)
		}
	}
	return out
}

// selectors: KIA0004 a selector matching no workload; KIA0002 two
// namespace-wide PeerAuthentications or Sidecars in a namespace; KIA0003
// two of them selecting the same workload. Istio then uses the oldest and
// ignores the other, silently.
func (m *mesh) selectors(add addFunc) {
	for _, r := range m.resources {
		sel, path, ok := selectorOf(r)
		if !ok || len(sel) == 0 {
			continue
		}
		if len(m.selected(sel, r.Namespace)) == 0 {
			add(r, "KIA0004", Warning, path, fmt.Sprintf("no workload in %s has labels %s, so this %s applies to nothing", r.Namespace, labelString(sel), r.Kind))
		}
	}
	for _, kind := range []config.Kind{config.PeerAuthentication, config.Sidecar} {
		byNS := map[string][]config.Resource{}
		for _, r := range m.of(kind) {
			byNS[r.Namespace] = append(byNS[r.Namespace], r)
		}
		for _, r := range m.of(kind) {
			sel, path, _ := selectorOf(r)
			var mine []registry.Workload
			if len(sel) > 0 {
				mine = m.selected(sel, r.Namespace)
			}
			rs := byNS[r.Namespace]
			for _, o := range rs[slices.IndexFunc(rs, func(x config.Resource) bool { return x.Key() == r.Key() })+1:] {
				osel, opath, _ := selectorOf(o)
				if len(sel) == 0 && len(osel) == 0 {
					add(r, "KIA0002", Error, "spec", fmt.Sprintf("%s %s/%s also applies to the whole namespace", kind, o.Namespace, o.Name))
					add(o, "KIA0002", Error, "spec", fmt.Sprintf("%s %s/%s also applies to the whole namespace", kind, r.Namespace, r.Name))
					continue
				}
				if len(sel) == 0 || len(osel) == 0 {
					continue // a workload one refines a namespace-wide one: as meant
				}
				for _, w := range mine {
					if matches(osel, w.Labels) {
						add(r, "KIA0003", Error, path, fmt.Sprintf("workload %s is also selected by %s %s/%s", w.Name, kind, o.Namespace, o.Name))
						add(o, "KIA0003", Error, opath, fmt.Sprintf("workload %s is also selected by %s %s/%s", w.Name, kind, r.Namespace, r.Name))
						break
					}
				}
			}
		}
	}
}
