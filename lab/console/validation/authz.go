package validation

import (
	"fmt"
	"strings"

	security "istio.io/api/security/v1beta1"

	"github.com/meshlab/meshlab/controlplane/config"
)

// authorizationPolicies: KIA0101 a source namespace that does not exist,
// KIA0106 a principal whose service account no workload runs as. Either
// makes a rule match nobody: an ALLOW that lets nothing in, a DENY that
// stops nothing. Patterns ("*", "prefix*", "*suffix") are skipped.
func (m *mesh) authorizationPolicies(add addFunc) {
	accounts := map[string]bool{}
	for _, w := range m.workloads {
		sa := w.ServiceAccount
		if sa == "" {
			sa = "default"
		}
		accounts[w.Namespace+"/"+sa] = true
	}
	for _, r := range m.of(config.AuthorizationPolicy) {
		ap, _ := r.Spec.(*security.AuthorizationPolicy)
		for i, rule := range ap.GetRules() {
			for j, from := range rule.GetFrom() {
				src := from.GetSource()
				base := fmt.Sprintf("spec/rules[%d]/from[%d]/source", i, j)
				for k, ns := range src.GetNamespaces() {
					if !strings.Contains(ns, "*") && !m.namespaces[ns] {
						add(r, "KIA0101", Warning, fmt.Sprintf("%s/namespaces[%d]", base, k), fmt.Sprintf("no namespace %s", ns))
					}
				}
				for k, p := range src.GetPrincipals() {
					if strings.Contains(p, "*") {
						continue
					}
					// <trust domain>/ns/<namespace>/sa/<service account>
					parts := strings.Split(p, "/")
					if len(parts) != 5 || parts[1] != "ns" || parts[3] != "sa" {
						continue
					}
					if !accounts[parts[2]+"/"+parts[4]] {
						add(r, "KIA0106", Error, fmt.Sprintf("%s/principals[%d]", base, k), fmt.Sprintf("no workload in %s runs as service account %s", parts[2], parts[4]))
					}
				}
			}
		}
	}
}
