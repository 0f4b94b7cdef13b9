package validation

import (
	"fmt"

	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/registry"
)

// peer is the mTLS mode a workload's port accepts and the
// PeerAuthentication that decided it (nil: none, PERMISSIVE by default).
type peer struct {
	mode string
	by   *config.Resource
	path string
}

// peerMode resolves the PeerAuthentications as Istio does: the workload's
// own (port level first), then its namespace's, then the mesh's; UNSET
// defers to the next; among equals the oldest wins.
func (m *mesh) peerMode(w registry.Workload, port uint32) peer {
	// m.pas is oldest first, so the first match of a level is the one.
	first := func(rs []config.Resource, pred func(sel map[string]string) bool) *config.Resource {
		for i := range rs {
			if pred(paOf(rs[i]).GetSelector().GetMatchLabels()) {
				return &rs[i]
			}
		}
		return nil
	}
	ns := m.pas[w.Namespace]
	levels := []*config.Resource{
		first(ns, func(sel map[string]string) bool { return len(sel) > 0 && matches(sel, w.Labels) }),
		nil,
		first(m.pas[RootNamespace], func(sel map[string]string) bool { return len(sel) == 0 }),
	}
	if w.Namespace != RootNamespace {
		levels[1] = first(ns, func(sel map[string]string) bool { return len(sel) == 0 })
	}
	for _, r := range levels {
		if r == nil {
			continue
		}
		pa := paOf(*r)
		if pl, ok := pa.GetPortLevelMtls()[port]; ok && pl.GetMode() != security.PeerAuthentication_MutualTLS_UNSET {
			return peer{pl.GetMode().String(), r, fmt.Sprintf("spec/portLevelMtls[%d]/mode", port)}
		}
		if mode := pa.GetMtls().GetMode(); mode != security.PeerAuthentication_MutualTLS_UNSET {
			return peer{mode.String(), r, "spec/mtls/mode"}
		}
	}
	return peer{mode: "PERMISSIVE"}
}

// clientTLS is the TLS mode a DestinationRule sets for traffic to one
// port of one endpoint, and where: a subset's port level, the subset, the
// rule's port level, the rule. "" when it sets none (auto mTLS decides).
func clientTLS(dr *networking.DestinationRule, port uint32, labels map[string]string) (mode, path string) {
	inPolicy := func(tp *networking.TrafficPolicy, base string) (string, string) {
		for i, pl := range tp.GetPortLevelSettings() {
			if pl.GetPort().GetNumber() == port && pl.GetTls() != nil {
				return pl.GetTls().GetMode().String(), fmt.Sprintf("%s/portLevelSettings[%d]/tls/mode", base, i)
			}
		}
		if tp.GetTls() != nil {
			return tp.GetTls().GetMode().String(), base + "/tls/mode"
		}
		return "", ""
	}
	for i, ss := range dr.GetSubsets() {
		if len(ss.GetLabels()) > 0 && matches(ss.GetLabels(), labels) {
			if mode, path := inPolicy(ss.GetTrafficPolicy(), fmt.Sprintf("spec/subsets[%d]/trafficPolicy", i)); mode != "" {
				return mode, path
			}
		}
	}
	return inPolicy(dr.GetTrafficPolicy(), "spec/trafficPolicy")
}

// mtls: a DestinationRule that sends plaintext to workloads accepting only
// mTLS (KIA0207 by a namespace or workload policy, KIA0208 by the mesh's),
// on the rule; and a PeerAuthentication that refuses mTLS a rule sends
// (KIA0505, KIA0506 for the mesh's), on the policy. Both break every
// request from a sidecar; without a tls block in the rule auto mTLS
// adapts and there is nothing to report.
func (m *mesh) mtls(add addFunc) {
	for _, r := range m.of(config.DestinationRule) {
		dr := drOf(r)
		if dr.GetWorkloadSelector() != nil {
			continue
		}
		host := m.fqdn(dr.GetHost(), r.Namespace)
		for _, s := range m.servicesFor(host) {
			for _, p := range s.Ports {
				for _, w := range m.endpoints(s) {
					mode, path := clientTLS(dr, p.Port, w.Labels)
					if mode != "DISABLE" && mode != "ISTIO_MUTUAL" {
						continue
					}
					pm := m.peerMode(w, p.Target())
					if pm.by == nil {
						continue
					}
					level := "namespace"
					if pm.by.Namespace == RootNamespace {
						level = "mesh"
					} else if len(paOf(*pm.by).GetSelector().GetMatchLabels()) > 0 {
						level = "workload"
					}
					switch {
					case mode == "DISABLE" && pm.mode == "STRICT":
						code := "KIA0207"
						if level == "mesh" {
							code = "KIA0208"
						}
						add(r, code, Error, path, fmt.Sprintf(
							"tls mode DISABLE sends plaintext to %s port %d, but the %s PeerAuthentication %s/%s (STRICT) makes %s accept only mTLS on port %d: requests from sidecars fail with 503; set the PeerAuthentication to PERMISSIVE or the DestinationRule to ISTIO_MUTUAL (or drop its tls)",
							s.Hostname(), p.Port, level, pm.by.Namespace, pm.by.Name, w.Name, p.Target()))
					case mode == "ISTIO_MUTUAL" && pm.mode == "DISABLE":
						code := "KIA0505"
						if level == "mesh" {
							code = "KIA0506"
						}
						add(*pm.by, code, Error, pm.path, fmt.Sprintf(
							"mode DISABLE makes %s accept only plaintext on port %d, but DestinationRule %s/%s (tls mode ISTIO_MUTUAL) sends it mTLS: requests from sidecars fail; set this policy to PERMISSIVE or the DestinationRule's tls to DISABLE (or drop it)",
							w.Name, p.Target(), r.Namespace, r.Name))
					}
				}
			}
		}
	}
}
