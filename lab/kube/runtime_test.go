package kube

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensions "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/meshlab/meshlab/controlplane/crd"
	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/kube/kubetest"
)

// startEnv starts a real kube-apiserver, or skips the test when
// scripts/kube-testenv has not built one here.
func startEnv(t *testing.T) *kubetest.Env {
	t.Helper()
	for _, b := range []string{"etcd", "kube-apiserver", "kubectl"} {
		if _, err := os.Stat(filepath.Join(kubetest.CacheDir(), b)); err != nil {
			t.Skipf("no kube-apiserver test environment (%v); scripts/kube-testenv builds it", err)
		}
	}
	return kubetest.Start(t)
}

// installCRDs installs meshlab's Istio CRDs and waits until they are served.
func installCRDs(ctx context.Context, t *testing.T, cfg *rest.Config) {
	t.Helper()
	cs, err := apiextensions.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	crds := cs.ApiextensionsV1().CustomResourceDefinitions()
	for _, c := range crd.CRDs() {
		if _, err := crds.Create(ctx, c, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating CRD %s: %v", c.Name, err)
		}
	}
	for _, c := range crd.CRDs() {
		for established := false; !established; {
			got, err := crds.Get(ctx, c.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, cond := range got.Status.Conditions {
				established = established || cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue
			}
			select {
			case <-ctx.Done():
				t.Fatalf("CRD %s not established", c.Name)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

func docs(t *testing.T, file string) []lab.Document {
	t.Helper()
	d, err := readManifest(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func ops(res lab.ApplyResult) []string {
	var out []string
	for _, c := range res.Changes {
		out = append(out, c.Ref.Kind+" "+strings.TrimPrefix(c.Ref.Namespace+"/", "/")+c.Ref.Name+" "+c.Op)
	}
	return out
}

// TestRuntimeAPI drives the runtime against a real kube-apiserver (no
// kubelet or controllers: the API objects are what changes).
func TestRuntimeAPI(t *testing.T) {
	env := startEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	installCRDs(ctx, t, env.Config)
	r, err := Open(t.TempDir(), env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if r.Name() != "kube" {
		t.Errorf("Name() = %q without a kind record; want kube", r.Name())
	}

	// An invalid batch: every error, with file, document and field, and
	// nothing applied (not even its valid Namespace and ConfigMap).
	_, err = r.Apply(ctx, lab.ApplyRequest{Documents: docs(t, "invalid.yaml"), Namespace: "default"})
	if err == nil {
		t.Fatal("applying testdata/invalid.yaml succeeded")
	}
	t.Logf("invalid batch:\n%v", err)
	for _, want := range []string{
		"testdata/invalid.yaml: document 2 (Deployment bad/web): spec.template.spec.containers[0].image: Required value",
		`testdata/invalid.yaml: document 3 (Service bad/web): spec.ports[0].protcol: unknown field "protcol"`,
		"testdata/invalid.yaml: document 4 (VirtualService bad/web): spec.http[0].route[0].weight: expected numeric (int or float), got string",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error lacks\n  %s\nit is:\n%v", want, err)
		}
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != 3 {
		t.Errorf("%d errors; want 3 (one per bad document)", n)
	}
	nss, err := r.Namespaces(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range nss {
		if ns.Name == "bad" {
			t.Error("the invalid batch created namespace bad")
		}
	}
	if got, err := r.List(ctx, "configmaps", "default", ""); err != nil || len(got) != 0 {
		t.Errorf("the invalid batch left configmaps in default: %d, %v", len(got), err)
	}

	// Documents bound nowhere the cluster knows.
	_, err = r.Apply(ctx, lab.ApplyRequest{Documents: []lab.Document{
		{Source: "x.yaml", Index: 0, JSON: []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":"nowhere"}}`)},
		{Source: "x.yaml", Index: 1, JSON: []byte(`{"apiVersion":"example.com/v1","kind":"Frob","metadata":{"name":"f"}}`)},
		{Source: "x.yaml", Index: 2, JSON: []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{}}`)},
		{Source: "x.yaml", Index: 3, JSON: []byte(`{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"l","namespace":"nowhere"}}]}`)},
	}})
	// In document order, though found by different checks.
	want := strings.Join([]string{
		"x.yaml: document 1 (ConfigMap nowhere/c): metadata.namespace: namespace nowhere not found; add a Namespace document to the file, or apply into an existing one (-n)",
		"x.yaml: document 2 (Frob f): kind Frob (example.com/v1) is not served by this cluster; is its CRD installed?",
		"x.yaml: document 3 (ConfigMap): metadata.name: Required value",
		"x.yaml: document 4 (ConfigMap nowhere/l): metadata.namespace: namespace nowhere not found; add a Namespace document to the file, or apply into an existing one (-n)",
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("apply x.yaml:\n%v\nwant:\n%s", err, want)
	}

	// An unrelated Deployment web in default, whose selector (immutable)
	// differs from foo/web's: the dry run of foo/web, whose namespace does
	// not exist yet, must not be merged with it.
	other := `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"selector":{"matchLabels":{"app":"other"}},
		"template":{"metadata":{"labels":{"app":"other"}},"spec":{"containers":[{"name":"c","image":"x"}]}}}}`
	if _, err := r.Apply(ctx, lab.ApplyRequest{Documents: []lab.Document{{Source: "other.yaml", JSON: []byte(other)}}}); err != nil {
		t.Fatal(err)
	}

	// The mixed file: Namespaces first, then file order; the
	// ServiceAccount lands in the request's namespace.
	res, err := r.Apply(ctx, lab.ApplyRequest{Documents: docs(t, "app.yaml"), Namespace: "default"})
	if err != nil {
		t.Fatalf("apply testdata/app.yaml: %v", err)
	}
	wantOps := []string{"Namespace foo created", "Service foo/web created", "Deployment foo/web created",
		"ConfigMap foo/web-config created", "VirtualService foo/web created", "ServiceAccount default/web created"}
	if got := ops(res); !slices.Equal(got, wantOps) {
		t.Errorf("apply app.yaml:\n got %q\nwant %q", got, wantOps)
	}
	res, err = r.Apply(ctx, lab.ApplyRequest{Documents: docs(t, "app.yaml"), Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range ops(res) {
		if !strings.HasSuffix(c, " unchanged") {
			t.Errorf("second apply of the same file: %s; want unchanged", c)
		}
	}
	// A change is configured; a dry run says so and changes nothing.
	d := docs(t, "app.yaml")
	d[3].JSON = []byte(strings.Replace(string(d[3].JSON), `"greeting":"hello"`, `"greeting":"hi"`, 1))
	res, err = r.Apply(ctx, lab.ApplyRequest{Documents: d[3:4], DryRun: true})
	if err != nil || !slices.Equal(ops(res), []string{"ConfigMap foo/web-config configured"}) {
		t.Errorf("dry run of a changed ConfigMap: %q, %v", ops(res), err)
	}
	if cm := getJSON(ctx, t, r, "cm", "foo", "web-config"); !strings.Contains(cm, `"greeting":"hello"`) {
		t.Errorf("the dry run changed the ConfigMap: %s", cm)
	}
	res, err = r.Apply(ctx, lab.ApplyRequest{Documents: d[3:4]})
	if err != nil || !slices.Equal(ops(res), []string{"ConfigMap foo/web-config configured"}) {
		t.Errorf("apply of a changed ConfigMap: %q, %v", ops(res), err)
	}

	// What was applied is what the API server stores.
	nss, _ = r.Namespaces(ctx)
	i := slices.IndexFunc(nss, func(n corev1.Namespace) bool { return n.Name == "foo" })
	if i < 0 || nss[i].Labels["istio-injection"] != "enabled" {
		t.Errorf("namespace foo missing or without its label: %+v", nss)
	}
	svcs, err := r.Services(ctx, "foo")
	if err != nil || len(svcs) != 1 || svcs[0].Spec.Type != "NodePort" || svcs[0].Spec.Ports[0].NodePort != 30123 || svcs[0].Kind != "Service" {
		t.Errorf("services in foo: %+v, %v", svcs, err)
	}
	deps, err := r.Deployments(ctx, "")
	if err != nil || len(deps) != 2 || deps[0].Namespace != "default" || deps[1].Namespace != "foo" {
		t.Fatalf("deployments (sorted by namespace): %+v, %v", deps, err)
	}
	deps = deps[1:]
	if *deps[0].Spec.Replicas != 2 {
		t.Fatalf("deployments: %+v, %v", deps, err)
	}
	if f := deps[0].ManagedFields; len(f) == 0 || f[0].Manager != FieldManager {
		t.Errorf("the Deployment's field manager: %+v; want %s", f, FieldManager)
	}

	// get of any kind, by kind, plural, short name or group-qualified
	// name; "all" is the Istio kinds.
	for _, tt := range []struct {
		kind, ns, name string
		want           []string // kind/namespace/name of each item
	}{
		{"vs", "foo", "", []string{"VirtualService/foo/web"}},
		{"virtualservices.networking.istio.io", "", "", []string{"VirtualService/foo/web"}},
		{"VirtualService", "foo", "web", []string{"VirtualService/foo/web"}},
		{"all", "foo", "", []string{"VirtualService/foo/web"}},
		{"dr", "", "", nil},
		{"deploy", "foo", "web", []string{"Deployment/foo/web"}},
		{"Deployment", "", "", []string{"Deployment/default/web", "Deployment/foo/web"}},
		{"svc", "foo", "", []string{"Service/foo/web"}},
		{"sa", "default", "web", []string{"ServiceAccount/default/web"}},
		{"ns", "", "foo", []string{"Namespace//foo"}},
		{"configmaps", "foo", "", []string{"ConfigMap/foo/web-config"}},
	} {
		items, err := r.List(ctx, tt.kind, tt.ns, tt.name)
		if err != nil {
			t.Errorf("List(%q, %q, %q): %v", tt.kind, tt.ns, tt.name, err)
			continue
		}
		var got []string
		for _, it := range items {
			var m metav1.PartialObjectMetadata
			if err := json.Unmarshal(it, &m); err != nil {
				t.Fatal(err)
			}
			got = append(got, m.Kind+"/"+m.Namespace+"/"+m.Name)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("List(%q, %q, %q) = %q; want %q", tt.kind, tt.ns, tt.name, got, tt.want)
		}
	}
	if _, err := r.List(ctx, "vs", "foo", "nope"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("List of a missing VirtualService: %v", err)
	}
	if _, err := r.List(ctx, "frobs", "", ""); err == nil {
		t.Error("List of an unknown kind succeeded")
	}

	// scale goes through the scale subresource.
	if err := r.Scale(ctx, "foo", "web", 3); err != nil {
		t.Fatal(err)
	}
	if deps, _ := r.Deployments(ctx, "foo"); *deps[0].Spec.Replicas != 3 {
		t.Errorf("replicas after scale 3: %d", *deps[0].Spec.Replicas)
	}
	const missing = "deployment foo/nope not found; see `meshlab get deployments -n foo`"
	if err := r.Scale(ctx, "foo", "nope", 1); err == nil || err.Error() != missing {
		t.Errorf("scale of a missing deployment: %v; want %q", err, missing)
	}

	// rollout restart sets kubectl's annotation; a second one, a second
	// later, a new value.
	restarted := func() string {
		deps, err := r.Deployments(ctx, "foo")
		if err != nil {
			t.Fatal(err)
		}
		return deps[0].Spec.Template.Annotations[RestartedAtAnnotation]
	}
	before := time.Now().Truncate(time.Second)
	if err := r.RolloutRestart(ctx, "foo", "web"); err != nil {
		t.Fatal(err)
	}
	first := restarted()
	if at, err := time.Parse(time.RFC3339, first); err != nil || at.Before(before) {
		t.Errorf("%s = %q after rollout restart; want now in RFC 3339 (%v)", RestartedAtAnnotation, first, err)
	}
	time.Sleep(time.Until(before.Add(2 * time.Second)))
	if err := r.RolloutRestart(ctx, "foo", "web"); err != nil {
		t.Fatal(err)
	}
	if second := restarted(); second == first {
		t.Errorf("a second rollout restart left %s at %q", RestartedAtAnnotation, second)
	}
	if err := r.RolloutRestart(ctx, "foo", "nope"); err == nil || err.Error() != missing {
		t.Errorf("rollout restart of a missing deployment: %v; want %q", err, missing)
	}

	// delete: all or nothing, then every object.
	refs := []lab.ObjectRef{
		{Kind: "VirtualService", Namespace: "foo", Name: "web"}, // the group from meshlab's table
		{Group: "apps", Kind: "Deployment", Namespace: "foo", Name: "web"},
		{Kind: "ConfigMap", Namespace: "foo", Name: "nope"},
	}
	if _, err := r.Delete(ctx, refs); err == nil || !strings.Contains(err.Error(), "ConfigMap foo/nope: not found") {
		t.Errorf("delete with a missing object: %v", err)
	}
	if got, _ := r.List(ctx, "vs", "foo", ""); len(got) != 1 {
		t.Error("a failed delete deleted the VirtualService")
	}
	refs[2].Name = "web-config"
	refs = append(refs, lab.ObjectRef{Kind: "Service", Namespace: "foo", Name: "web"}, lab.ObjectRef{Kind: "ServiceAccount", Name: "web"})
	res, err = r.Delete(ctx, refs)
	if err != nil {
		t.Fatal(err)
	}
	if got := ops(res); len(got) != 5 || got[4] != "ServiceAccount default/web deleted" {
		t.Errorf("delete: %q", got)
	}
	for _, k := range []string{"vs", "deploy", "cm", "svc"} {
		if got, err := r.List(ctx, k, "foo", ""); err != nil || len(got) != 0 {
			t.Errorf("%s in foo after delete: %d, %v", k, len(got), err)
		}
	}
}

func getJSON(ctx context.Context, t *testing.T, r *Runtime, kind, ns, name string) string {
	t.Helper()
	items, err := r.List(ctx, kind, ns, name)
	if err != nil || len(items) != 1 {
		t.Fatalf("List(%s %s/%s): %d items, %v", kind, ns, name, len(items), err)
	}
	return string(items[0])
}

// TestApplyBookinfo applies the lab's bookinfo, its gateway and
// destination rules, and the walkthrough's NodePort Service as written, into
// a namespace the same batch creates; then again, unchanged.
func TestApplyBookinfo(t *testing.T) {
	env := startEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	installCRDs(ctx, t, env.Config)
	r, err := Open(t.TempDir(), env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	batch := []lab.Document{{Source: "ns.yaml", JSON: []byte(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"book-demo","labels":{"istio-injection":"enabled"}}}`)}}
	for _, f := range []string{
		"../../samples/bookinfo/bookinfo.yaml",
		"../../samples/bookinfo/networking/bookinfo-gateway.yaml",
		"../../samples/bookinfo/networking/destination-rule-all.yaml",
		"../../controlplane/config/testdata/walkthrough/reviews-nodeport-service.yaml",
	} {
		d, err := readManifest(f)
		if err != nil {
			t.Fatal(err)
		}
		batch = append(batch, d...)
	}
	for _, want := range []string{"created", "unchanged"} {
		start := time.Now()
		res, err := r.Apply(ctx, lab.ApplyRequest{Documents: batch, Namespace: "book-demo"})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("apply of %d objects (%s): %v", len(res.Changes), want, time.Since(start).Round(time.Millisecond))
		if len(res.Changes) != len(batch) {
			t.Errorf("%d changes for %d documents", len(res.Changes), len(batch))
		}
		for _, c := range res.Changes {
			if c.Op != want || c.Ref.Kind != "Namespace" && c.Ref.Namespace != "book-demo" {
				t.Errorf("%+v; want %s in book-demo", c, want)
			}
		}
	}
	svcs, err := r.Services(ctx, "book-demo")
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(svcs, func(s corev1.Service) bool { return s.Name == "reviews-nodeport" })
	if i < 0 || svcs[i].Spec.Ports[0].NodePort != 30123 {
		t.Errorf("reviews-nodeport: %+v", svcs)
	}
}
