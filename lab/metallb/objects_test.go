package metallb

import (
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// TestCRDsForV015 checks the CRDs against what MetalLB v0.15.2's binaries
// ask of the API server: every kind in their caches and watches served at the
// versions they read, and a status subresource where they write status.
func TestCRDsForV015(t *testing.T) {
	byPlural := map[string]int{}
	crds := CRDs()
	for i, c := range crds {
		byPlural[c.Spec.Names.Plural] = i
	}
	for _, tc := range []struct {
		plural, kind string
		served       []string
		stored       string
		status       bool // v0.15.2 writes its status
	}{
		{"bfdprofiles", "BFDProfile", []string{"v1beta1"}, "v1beta1", false},
		{"bgpadvertisements", "BGPAdvertisement", []string{"v1beta1"}, "v1beta1", false},
		{"bgppeers", "BGPPeer", []string{"v1beta1", "v1beta2"}, "v1beta2", false},
		{"communities", "Community", []string{"v1beta1"}, "v1beta1", false},
		{"ipaddresspools", "IPAddressPool", []string{"v1beta1"}, "v1beta1", true},
		{"l2advertisements", "L2Advertisement", []string{"v1beta1"}, "v1beta1", false},
		{"servicebgpstatuses", "ServiceBGPStatus", []string{"v1beta1"}, "v1beta1", true},
		{"servicel2statuses", "ServiceL2Status", []string{"v1beta1"}, "v1beta1", true},
	} {
		t.Run(tc.plural, func(t *testing.T) {
			i, ok := byPlural[tc.plural]
			if !ok {
				t.Fatalf("no CRD %s.%s", tc.plural, Group)
			}
			c := crds[i]
			if c.Name != tc.plural+"."+Group || c.Spec.Group != Group || c.Spec.Names.Kind != tc.kind || c.Spec.Scope != "Namespaced" {
				t.Errorf("CRD %s: group %s kind %s scope %s", c.Name, c.Spec.Group, c.Spec.Names.Kind, c.Spec.Scope)
			}
			var served []string
			stored := ""
			for _, v := range c.Spec.Versions {
				if v.Served {
					served = append(served, v.Name)
				}
				if v.Storage {
					stored += v.Name
				}
				if tc.status && (v.Subresources == nil || v.Subresources.Status == nil) {
					t.Errorf("%s %s has no status subresource", tc.plural, v.Name)
				}
			}
			if !slices.Equal(served, tc.served) || stored != tc.stored {
				t.Errorf("%s serves %v and stores %q, want %v and %q", tc.plural, served, stored, tc.served, tc.stored)
			}
		})
	}
	if len(crds) != 8 {
		t.Errorf("%d CRDs, want the 8 above", len(crds))
	}
}

// TestRBACForV015 checks the roles against the requests MetalLB v0.15.2 makes
// in L2 mode with its webhook off and the memberlist secret written by
// Install. ns "" is a request across namespaces or for a cluster-scoped
// resource, which only a ClusterRoleBinding grants.
func TestRBACForV015(t *testing.T) {
	objs := Objects(Options{MemberlistKey: []byte("k")})
	for _, tc := range []struct {
		sa, ns, group, resource string
		verbs                   []string
	}{
		// controller: assigns addresses to Services in every namespace.
		{"controller", "", "", "services", []string{"get", "list", "watch"}},
		{"controller", "", "", "services/status", []string{"update"}},
		{"controller", "", "", "namespaces", []string{"list", "watch"}},
		{"controller", "", "", "events", []string{"create", "patch"}},
		{"controller", Namespace, Group, "ipaddresspools", []string{"get", "list", "watch"}},
		{"controller", Namespace, Group, "ipaddresspools/status", []string{"update"}},
		{"controller", Namespace, Group, "communities", []string{"list", "watch"}},
		// speaker: announces, and reports what it announces.
		{"speaker", "", "", "services", []string{"get", "list", "watch"}},
		{"speaker", "", "", "nodes", []string{"get", "list", "watch"}},
		{"speaker", "", "", "namespaces", []string{"list", "watch"}},
		{"speaker", "", "discovery.k8s.io", "endpointslices", []string{"list", "watch"}},
		{"speaker", "", "", "events", []string{"create", "patch"}},
		{"speaker", "", Group, "servicel2statuses", []string{"get", "list", "watch", "create", "patch", "delete"}},
		{"speaker", "", Group, "servicel2statuses/status", []string{"patch", "update"}},
		{"speaker", Namespace, "", "pods", []string{"get", "list"}},
		{"speaker", Namespace, "", "secrets", []string{"list", "watch"}},
		{"speaker", Namespace, "", "configmaps", []string{"list", "watch"}},
		{"speaker", Namespace, Group, "bgppeers", []string{"list", "watch"}},
		{"speaker", Namespace, Group, "bfdprofiles", []string{"list", "watch"}},
		{"speaker", Namespace, Group, "ipaddresspools", []string{"list", "watch"}},
		{"speaker", Namespace, Group, "l2advertisements", []string{"list", "watch"}},
		{"speaker", Namespace, Group, "bgpadvertisements", []string{"list", "watch"}},
		{"speaker", Namespace, Group, "communities", []string{"list", "watch"}},
		{"speaker", Namespace, Group, "servicebgpstatuses", []string{"list", "watch", "create", "patch", "delete"}},
		{"speaker", Namespace, Group, "servicebgpstatuses/status", []string{"patch", "update"}},
	} {
		for _, verb := range tc.verbs {
			if !allowed(objs, tc.sa, tc.ns, tc.group, tc.resource, verb) {
				where := "in " + tc.ns
				if tc.ns == "" {
					where = "across namespaces"
				}
				t.Errorf("%s may not %s %s %s", tc.sa, verb, tc.resource, where)
			}
		}
	}
	// And the check can say no: the speaker never writes Services' status.
	if allowed(objs, "speaker", "", "", "services/status", "update") {
		t.Error("the speaker may update services/status")
	}
}

// allowed evaluates the objects' RBAC for one request by the service account
// sa of the MetalLB namespace, as the API server's authorizer would.
func allowed(objs []runtime.Object, sa, ns, group, resource, verb string) bool {
	roles := map[string][]rbacv1.PolicyRule{} // "ns/name" of Roles, "/name" of ClusterRoles
	for _, o := range objs {
		switch r := o.(type) {
		case *rbacv1.Role:
			roles[r.Namespace+"/"+r.Name] = r.Rules
		case *rbacv1.ClusterRole:
			roles["/"+r.Name] = r.Rules
		}
	}
	grants := func(rules []rbacv1.PolicyRule) bool {
		for _, r := range rules {
			if match(r.APIGroups, group) && match(r.Resources, resource) && match(r.Verbs, verb) {
				return true
			}
		}
		return false
	}
	subject := func(subjects []rbacv1.Subject) bool {
		return slices.Contains(subjects, rbacv1.Subject{Kind: "ServiceAccount", Name: sa, Namespace: Namespace})
	}
	for _, o := range objs {
		switch b := o.(type) {
		case *rbacv1.ClusterRoleBinding:
			if subject(b.Subjects) && b.RoleRef.Kind == "ClusterRole" && grants(roles["/"+b.RoleRef.Name]) {
				return true
			}
		case *rbacv1.RoleBinding:
			if ns == "" || b.Namespace != ns || !subject(b.Subjects) {
				continue
			}
			key := b.Namespace + "/" + b.RoleRef.Name
			if b.RoleRef.Kind == "ClusterRole" {
				key = "/" + b.RoleRef.Name
			}
			if grants(roles[key]) {
				return true
			}
		}
	}
	return false
}

func match(allowed []string, s string) bool {
	return slices.Contains(allowed, s) || slices.Contains(allowed, "*")
}
