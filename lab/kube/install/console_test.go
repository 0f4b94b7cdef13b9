package install

import (
	"context"
	"slices"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshlab/meshlab/lab/kube/kubetest"
)

// TestConsoleInstall installs onto a real apiserver that authorizes with
// RBAC, checks the console's objects are there as Kiali's chart names
// them, then asks the apiserver (SubjectAccessReview) what the console's
// service account may do: read pods, their logs and what the wizards
// need, write Istio config, and nothing else — no Secret, no workload.
func TestConsoleInstall(t *testing.T) {
	env := kubetest.Start(t, kubetest.WithRBAC())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	o := Options{Image: "meshlab.local/meshlab:test", CABundle: []byte(testCA), NoTelemetryAddons: true, KialiWebRoot: "/dashboards/kiali"}
	in, err := New(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	in.Timeout = time.Minute
	if err := in.Install(ctx, o); err != nil {
		t.Fatal(err)
	}
	core := in.kube.CoreV1()

	svc, err := core.Services(Namespace).Get(ctx, Kiali, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != KialiPort || svc.Spec.Ports[0].Name != "http-kiali" || svc.Spec.Selector["app"] != Kiali {
		t.Errorf("service kiali: ports %+v selector %v; want 20001 http-kiali selecting app=kiali", svc.Spec.Ports, svc.Spec.Selector)
	}
	if _, err := core.ServiceAccounts(Namespace).Get(ctx, Kiali, metav1.GetOptions{}); err != nil {
		t.Errorf("service account kiali: %v", err)
	}
	d, err := in.kube.AppsV1().Deployments(Namespace).Get(ctx, Kiali, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod := d.Spec.Template
	if pod.Labels[InjectPodLabel] != "false" || pod.Spec.ServiceAccountName != Kiali {
		t.Errorf("kiali pod template: labels %v, service account %q; want no sidecar and service account kiali", pod.Labels, pod.Spec.ServiceAccountName)
	}
	c := pod.Spec.Containers[0]
	if c.Image != o.Image || !slices.Contains(c.Command, "--in-cluster") || !slices.Contains(c.Command, "--web-root=/dashboards/kiali") {
		t.Errorf("kiali container: image %s command %v; want %s with --in-cluster and the web root", c.Image, c.Command, o.Image)
	}
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/dashboards/kiali/healthz" || p.HTTPGet.Port.IntValue() != KialiPort {
		t.Errorf("kiali readiness probe %+v; want GET /dashboards/kiali/healthz on 20001", p)
	}

	kiali := authzv1.SubjectAccessReviewSpec{
		User:   "system:serviceaccount:" + Namespace + ":" + Kiali,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + Namespace, "system:authenticated"},
	}
	other := authzv1.SubjectAccessReviewSpec{
		User:   "system:serviceaccount:" + Namespace + ":default",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + Namespace, "system:authenticated"},
	}
	tests := []struct {
		name string
		who  authzv1.SubjectAccessReviewSpec
		attr authzv1.ResourceAttributes
		want bool
	}{
		{"list pods", kiali, authzv1.ResourceAttributes{Verb: "list", Resource: "pods", Namespace: "book-demo"}, true},
		{"get pods/log", kiali, authzv1.ResourceAttributes{Verb: "get", Resource: "pods", Subresource: "log", Namespace: "book-demo"}, true},
		{"watch deployments", kiali, authzv1.ResourceAttributes{Verb: "watch", Group: "apps", Resource: "deployments"}, true},
		{"list replicasets", kiali, authzv1.ResourceAttributes{Verb: "list", Group: "apps", Resource: "replicasets"}, true},
		{"list namespaces", kiali, authzv1.ResourceAttributes{Verb: "list", Resource: "namespaces"}, true},
		// The control plane API's checks: registry read, config read and write.
		{"list services", kiali, authzv1.ResourceAttributes{Verb: "list", Resource: "services"}, true},
		{"create virtualservices", kiali, authzv1.ResourceAttributes{Verb: "create", Group: "networking.istio.io", Resource: "virtualservices", Namespace: "book-demo"}, true},
		{"update virtualservices", kiali, authzv1.ResourceAttributes{Verb: "update", Group: "networking.istio.io", Resource: "virtualservices"}, true},
		{"delete destinationrules", kiali, authzv1.ResourceAttributes{Verb: "delete", Group: "networking.istio.io", Resource: "destinationrules", Namespace: "book-demo"}, true},
		{"patch peerauthentications", kiali, authzv1.ResourceAttributes{Verb: "patch", Group: "security.istio.io", Resource: "peerauthentications", Namespace: "istio-system"}, true},
		{"create telemetries", kiali, authzv1.ResourceAttributes{Verb: "create", Group: "telemetry.istio.io", Resource: "telemetries"}, true},
		{"get secrets", kiali, authzv1.ResourceAttributes{Verb: "get", Resource: "secrets", Namespace: Namespace}, false},
		{"list secrets", kiali, authzv1.ResourceAttributes{Verb: "list", Resource: "secrets"}, false},
		{"create pods", kiali, authzv1.ResourceAttributes{Verb: "create", Resource: "pods", Namespace: "book-demo"}, false},
		{"exec in pods", kiali, authzv1.ResourceAttributes{Verb: "create", Resource: "pods", Subresource: "exec", Namespace: "book-demo"}, false},
		{"delete deployments", kiali, authzv1.ResourceAttributes{Verb: "delete", Group: "apps", Resource: "deployments", Namespace: "book-demo"}, false},
		{"update configmaps", kiali, authzv1.ResourceAttributes{Verb: "update", Resource: "configmaps", Namespace: Namespace}, false},
		{"create clusterroles", kiali, authzv1.ResourceAttributes{Verb: "create", Group: "rbac.authorization.k8s.io", Resource: "clusterroles"}, false},
		// The binding is the console's own: another account of its
		// namespace is not given its rights.
		{"another account lists pods", other, authzv1.ResourceAttributes{Verb: "list", Resource: "pods", Namespace: "book-demo"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.who
			spec.ResourceAttributes = &tt.attr
			sar, err := in.kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: spec}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if sar.Status.Allowed != tt.want {
				t.Errorf("%s may %s %s/%s (%s): allowed %v (%s), want %v", spec.User, tt.attr.Verb, tt.attr.Group, tt.attr.Resource, tt.attr.Subresource,
					sar.Status.Allowed, sar.Status.Reason, tt.want)
			}
		})
	}
}

// TestConsoleLeftOut: NoConsole installs no kiali.
func TestConsoleLeftOut(t *testing.T) {
	objs, err := Objects(Options{Image: "x", NoConsole: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		u, err := toUnstructured(o)
		if err != nil {
			t.Fatal(err)
		}
		if u.GetName() == Kiali {
			t.Errorf("NoConsole installs %s", describe(u))
		}
	}
}
