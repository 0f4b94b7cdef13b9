package xds

import (
	"slices"

	security "istio.io/api/security/v1beta1"

	"github.com/meshlab/meshlab/controlplane/config"
)

// mtlsMode is Istio's model.MutualTLSMode: what a PeerAuthentication (or
// the absence of one) asks of a workload's inbound port.
type mtlsMode int

const (
	mtlsUnknown mtlsMode = iota
	mtlsDisable
	mtlsPermissive
	mtlsStrict
)

func (m mtlsMode) String() string {
	switch m {
	case mtlsDisable:
		return "DISABLE"
	case mtlsPermissive:
		return "PERMISSIVE"
	case mtlsStrict:
		return "STRICT"
	}
	return "UNKNOWN"
}

// convertMTLSMode is Istio's model.ConvertToMutualTLSMode.
func convertMTLSMode(m security.PeerAuthentication_MutualTLS_Mode) mtlsMode {
	switch m {
	case security.PeerAuthentication_MutualTLS_DISABLE:
		return mtlsDisable
	case security.PeerAuthentication_MutualTLS_PERMISSIVE:
		return mtlsPermissive
	case security.PeerAuthentication_MutualTLS_STRICT:
		return mtlsStrict
	}
	return mtlsUnknown
}

type peerAuthn struct {
	res  config.Resource
	spec *security.PeerAuthentication
}

// workloadLevel is Istio's split: a policy with a non-empty selector
// applies to workloads, one without to its namespace (the mesh in the
// root namespace).
func (p *peerAuthn) workloadLevel() bool { return len(p.spec.GetSelector().GetMatchLabels()) > 0 }

// peerAuthns indexes the PeerAuthentications once per push, as Istio's
// initAuthenticationPolicies / addPeerAuthentication do: by namespace in
// the order Istio's sortConfigByCreationTime gives them (oldest first by
// metadata.creationTimestamp, then name, then namespace), and the
// namespace- and mesh-level modes auto mTLS infers a service's mode from.
type peerAuthns struct {
	byNS map[string][]*peerAuthn
	// nsMode is each namespace's namespace-level mode, UNSET resolved to
	// the mesh's (PERMISSIVE without one).
	nsMode map[string]mtlsMode
	// meshMode is the root namespace's mode, mtlsUnknown without a policy.
	meshMode mtlsMode
}

func newPeerAuthns(pas []*peerAuthn) peerAuthns {
	slices.SortStableFunc(pas, func(a, b *peerAuthn) int { return oldestFirst(a.res, b.res) })
	x := peerAuthns{byNS: map[string][]*peerAuthn{}, nsMode: map[string]mtlsMode{}}
	seen := map[string]bool{} // namespaces whose (oldest) namespace/mesh policy is taken
	nsSpec := map[string]security.PeerAuthentication_MutualTLS_Mode{}
	for _, p := range pas {
		ns := p.res.Namespace
		if !p.workloadLevel() {
			if seen[ns] {
				// Istio logs and ignores every namespace/mesh policy but the oldest.
				continue
			}
			seen[ns] = true
			mode := p.spec.GetMtls().GetMode()
			if ns == rootNamespace {
				x.meshMode = convertMTLSMode(mode)
				if mode == security.PeerAuthentication_MutualTLS_UNSET {
					x.meshMode = mtlsPermissive
				}
			} else {
				nsSpec[ns] = mode
			}
		}
		x.byNS[ns] = append(x.byNS[ns], p)
	}
	inherited := x.meshMode
	if inherited == mtlsUnknown {
		inherited = mtlsPermissive
	}
	for ns, mode := range nsSpec {
		if mode == security.PeerAuthentication_MutualTLS_UNSET {
			x.nsMode[ns] = inherited
		} else {
			x.nsMode[ns] = convertMTLSMode(mode)
		}
	}
	return x
}

// namespaceMode is Istio's GetNamespaceMutualTLSMode: the namespace's
// policy, else the mesh's, else mtlsUnknown.
func (x *peerAuthns) namespaceMode(ns string) mtlsMode {
	if m, ok := x.nsMode[ns]; ok {
		return m
	}
	return x.meshMode
}

// peerPolicy is Istio's MergedPeerAuthentication: the workload's mode and
// its per-port overrides, keyed by container (target) port.
type peerPolicy struct {
	mode    mtlsMode
	perPort map[uint32]mtlsMode
}

// forPort is Istio's policyApplier.GetMutualTLSModeForPort.
func (p peerPolicy) forPort(port uint32) mtlsMode {
	if m, ok := p.perPort[port]; ok {
		return m
	}
	return p.mode
}

// forWorkload is Istio's GetPeerAuthenticationsForWorkload followed by
// ComposePeerAuthentication: the policies of the workload's namespace
// and the root namespace whose selector the workload's labels satisfy;
// the oldest mesh, namespace and workload policy each (a root-namespace
// policy with a selector is ignored); the narrowest set mode wins, UNSET
// inheriting from the level above and PERMISSIVE when nothing is set;
// portLevelMtls only from the workload policy, UNSET there inheriting
// the workload's mode.
func (x *peerAuthns) forWorkload(ns string, labels map[string]string) peerPolicy {
	if len(x.byNS[ns]) == 0 && len(x.byNS[rootNamespace]) == 0 {
		return peerPolicy{mode: mtlsPermissive} // called per endpoint: the common case costs nothing
	}
	var mesh, namespace, workload *peerAuthn
	pick := func(cur **peerAuthn, p *peerAuthn) {
		// Policies come oldest first, so the first of a level wins
		// (Istio's CreationTimestamp.Before, strict).
		if *cur == nil {
			*cur = p
		}
	}
	lookup := []string{ns, rootNamespace}
	if ns == rootNamespace {
		lookup = lookup[:1]
	}
	for _, n := range lookup {
		for _, p := range x.byNS[n] {
			if !selectorMatches(p.spec.GetSelector().GetMatchLabels(), labels) {
				continue
			}
			switch {
			case !p.workloadLevel() && n == rootNamespace:
				pick(&mesh, p)
			case !p.workloadLevel():
				pick(&namespace, p)
			case n != rootNamespace:
				pick(&workload, p)
			}
		}
	}
	out := peerPolicy{mode: mtlsPermissive}
	for _, p := range []*peerAuthn{mesh, namespace, workload} {
		if p != nil && p.spec.GetMtls().GetMode() != security.PeerAuthentication_MutualTLS_UNSET {
			out.mode = convertMTLSMode(p.spec.GetMtls().GetMode())
		}
	}
	if workload != nil && len(workload.spec.GetPortLevelMtls()) > 0 {
		out.perPort = make(map[uint32]mtlsMode, len(workload.spec.GetPortLevelMtls()))
		for port, m := range workload.spec.GetPortLevelMtls() {
			if m.GetMode() == security.PeerAuthentication_MutualTLS_UNSET {
				out.perPort[port] = out.mode
			} else {
				out.perPort[port] = convertMTLSMode(m.GetMode())
			}
		}
	}
	return out
}
