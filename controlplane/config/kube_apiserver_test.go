package config

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/meshlab/meshlab/lab/kube/kubetest"
)

// notTheAPIServers are the bad manifests whose rule is meshlab's, not the
// API server's, and why: the API server accepts these.
var notTheAPIServers = map[string]string{
	"generate-name":               "kubectl apply refuses generateName before the API server sees it",
	"deployment-probe-named-port": "the API server lets a probe name a port the container lacks; kubelet then fails the probe for ever",
}

// reworded are the bad manifests where validateKube says the same as the
// API server in other words, and how the two are compared instead: by
// field path where the API server prints its internal Go structs as the
// value, by message where its path is less precise than validateKube's.
var reworded = map[string]string{
	"deployment-privileged-no-escalation": "fields",   // the value: its internal SecurityContext
	"deployment-strategy-type":            "fields",   // the value: its internal DeploymentStrategy
	"service-port-duplicate":              "fields",   // the value: its internal ServicePort; validateKube says port/protocol
	"deployment-subpath-absolute":         "messages", // it says volumeMounts.subPath, without the mount's index
	"namespace-finalizer":                 "messages", // it says spec.finalizers, without the index
	"service-source-ranges":               "messages", // it says spec.LoadBalancerSourceRanges, in Go's spelling
}

// TestKubeAgreesWithAPIServer sends every fixture to a real kube-apiserver
// (server-side dry run) and checks that validateKube finds what it finds,
// field for field and word for word, and that defaultKube fills in what it
// fills in.
func TestKubeAgreesWithAPIServer(t *testing.T) {
	env := kubetest.Start(t)
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The walkthrough's namespace, which its manifests name but do not make.
	ensureNamespace(ctx, t, cs, "book-demo")
	good, _ := filepath.Glob("testdata/kube/good/*.yaml")
	local, _ := filepath.Glob("testdata/kube/local/*.yaml")
	for _, f := range append(good, local...) {
		t.Run(f, func(t *testing.T) {
			for i, doc := range kubeDocs(t, f) {
				obj := kubeObject(t, doc)
				// Namespaces are made for real, for the documents after them.
				got, err := create(ctx, cs, obj, !isNamespace(obj))
				if err != nil {
					t.Fatalf("document %d: the API server refuses it: %v", i+1, err)
				}
				want := obj.DeepCopyObject()
				defaultKube(want)
				mineY, theirsY := toYAML(t, comparable(want)), toYAML(t, comparable(got))
				if mineY != theirsY {
					t.Errorf("document %d: defaultKube differs from the API server's defaults\ndefaultKube:\n%s\napiserver:\n%s", i+1, mineY, theirsY)
				}
			}
		})
	}

	ensureNamespace(ctx, t, cs, "foo")
	bad, _ := filepath.Glob("testdata/kube/bad/*.yaml")
	for _, f := range bad {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			docs := kubeDocs(t, f)
			if len(docs) != 1 {
				t.Fatalf("%d documents; a bad manifest has one", len(docs))
			}
			obj := kubeObject(t, docs[0])
			var mine []string
			for _, e := range validateKube(obj) {
				mine = append(mine, e.Error())
			}
			// For real, not in dry run: a dry run skips the node port
			// allocator's range check. What is stored goes again, so that
			// the next manifest of the same name is not refused for that.
			stored, err := create(ctx, cs, obj, false)
			if err == nil {
				if err := remove(ctx, cs, stored); err != nil {
					t.Fatal(err)
				}
			}
			if why, ok := notTheAPIServers[name]; ok {
				if err != nil {
					t.Errorf("the API server refuses it (%v); the list says it accepts it: %s", err, why)
				}
				return
			}
			var theirs []string
			var se *apierrors.StatusError
			if !errors.As(err, &se) || se.ErrStatus.Details == nil {
				t.Fatalf("the API server answers %v; want it to refuse the manifest field by field", err)
			}
			for _, c := range se.ErrStatus.Details.Causes {
				theirs = append(theirs, c.Field+": "+c.Message)
			}
			slices.Sort(mine)
			slices.Sort(theirs)
			switch reworded[name] {
			case "fields":
				mine, theirs = fields(mine), fields(theirs)
			case "messages":
				mine, theirs = messages(mine), messages(theirs)
			}
			if !slices.Equal(mine, theirs) {
				t.Errorf("validateKube:\n%s\nthe API server:\n%s", strings.Join(mine, "\n"), strings.Join(theirs, "\n"))
			}
		})
	}
}

// fields are the field paths of errors written "path: message".
func fields(errs []string) []string {
	var out []string
	for _, e := range errs {
		p, _, _ := strings.Cut(e, ": ")
		out = append(out, p)
	}
	return out
}

// messages are the messages of errors written "path: message".
func messages(errs []string) []string {
	var out []string
	for _, e := range errs {
		_, m, _ := strings.Cut(e, ": ")
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

// remove deletes what create stored.
func remove(ctx context.Context, cs kubernetes.Interface, obj runtime.Object) error {
	m := obj.(metav1.Object)
	name, ns, opts := m.GetName(), m.GetNamespace(), metav1.DeleteOptions{}
	switch obj.(type) {
	case *corev1.Namespace:
		return cs.CoreV1().Namespaces().Delete(ctx, name, opts)
	case *corev1.ServiceAccount:
		return cs.CoreV1().ServiceAccounts(ns).Delete(ctx, name, opts)
	case *corev1.Service:
		return cs.CoreV1().Services(ns).Delete(ctx, name, opts)
	case *corev1.ConfigMap:
		return cs.CoreV1().ConfigMaps(ns).Delete(ctx, name, opts)
	case *corev1.Secret:
		return cs.CoreV1().Secrets(ns).Delete(ctx, name, opts)
	case *appsv1.Deployment:
		return cs.AppsV1().Deployments(ns).Delete(ctx, name, opts)
	}
	return errors.New("no client for this kind")
}

func ensureNamespace(ctx context.Context, t *testing.T, cs kubernetes.Interface, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func toYAML(t *testing.T, obj runtime.Object) string {
	t.Helper()
	b, err := yaml.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestKubeSizeAgreesWithAPIServer: the 1 MiB limit of a ConfigMap's and a
// Secret's values is the API server's, in its words (a ConfigMap's error
// names no field there; validateKube names data).
func TestKubeSizeAgreesWithAPIServer(t *testing.T) {
	env := kubetest.Start(t)
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	half := strings.Repeat("x", maxDataSize/2)
	meta := metav1.ObjectMeta{Name: "big", Namespace: metav1.NamespaceDefault}
	for _, tt := range []struct {
		name string
		obj  runtime.Object
		ok   bool
	}{
		{"ConfigMap of 1 MiB", &corev1.ConfigMap{ObjectMeta: meta, Data: map[string]string{"a": half}, BinaryData: map[string][]byte{"b": []byte(half)}}, true},
		{"ConfigMap a byte over", &corev1.ConfigMap{ObjectMeta: meta, Data: map[string]string{"a": half, "c": "x"}, BinaryData: map[string][]byte{"b": []byte(half)}}, false},
		{"Secret a byte over, with stringData", &corev1.Secret{ObjectMeta: meta, Data: map[string][]byte{"a": []byte(half)}, StringData: map[string]string{"b": half + "x"}}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var mine []string
			for _, e := range validateKube(tt.obj) {
				mine = append(mine, e.Error())
			}
			_, err := create(ctx, cs, tt.obj, true)
			if tt.ok {
				if err != nil || len(mine) > 0 {
					t.Fatalf("the API server says %v, validateKube %q; want both to accept it", err, mine)
				}
				return
			}
			var se *apierrors.StatusError
			if !errors.As(err, &se) || se.ErrStatus.Details == nil {
				t.Fatalf("the API server answers %v; want it to refuse the size", err)
			}
			var theirs []string
			for _, c := range se.ErrStatus.Details.Causes {
				theirs = append(theirs, c.Field+": "+c.Message)
			}
			if got, want := messages(mine), messages(theirs); !slices.Equal(got, want) {
				t.Errorf("validateKube:\n%s\nthe API server:\n%s", strings.Join(mine, "\n"), strings.Join(theirs, "\n"))
			}
		})
	}
}

func isNamespace(obj runtime.Object) bool {
	_, ok := obj.(*corev1.Namespace)
	return ok
}

// create sends obj to the API server as kubectl create does, in dry run
// when dry, and returns what the server would store.
func create(ctx context.Context, cs kubernetes.Interface, obj runtime.Object, dry bool) (runtime.Object, error) {
	opts := metav1.CreateOptions{}
	if dry {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	ns := func(m metav1.Object) string {
		if m.GetNamespace() == "" {
			return metav1.NamespaceDefault
		}
		return m.GetNamespace()
	}
	switch o := obj.DeepCopyObject().(type) {
	case *corev1.Namespace:
		return cs.CoreV1().Namespaces().Create(ctx, o, opts)
	case *corev1.ServiceAccount:
		return cs.CoreV1().ServiceAccounts(ns(o)).Create(ctx, o, opts)
	case *corev1.Service:
		return cs.CoreV1().Services(ns(o)).Create(ctx, o, opts)
	case *corev1.ConfigMap:
		return cs.CoreV1().ConfigMaps(ns(o)).Create(ctx, o, opts)
	case *corev1.Secret:
		return cs.CoreV1().Secrets(ns(o)).Create(ctx, o, opts)
	case *appsv1.Deployment:
		return cs.AppsV1().Deployments(ns(o)).Create(ctx, o, opts)
	}
	return nil, errors.New("no client for this kind")
}

// comparable is obj without what the server adds that is not a default:
// identity and bookkeeping, a Service's allocations (VIP, node ports,
// families), the namespace apply fills in.
func comparable(obj runtime.Object) runtime.Object {
	obj = obj.DeepCopyObject()
	if m, ok := obj.(metav1.Object); ok {
		m.SetUID("")
		m.SetResourceVersion("")
		m.SetCreationTimestamp(metav1.Time{})
		m.SetManagedFields(nil)
		m.SetGeneration(0)
		if !isNamespace(obj) && m.GetNamespace() == "" {
			m.SetNamespace(metav1.NamespaceDefault)
		}
	}
	switch o := obj.(type) {
	case *corev1.Service:
		o.TypeMeta = metav1.TypeMeta{}
		if o.Spec.ClusterIP != corev1.ClusterIPNone {
			o.Spec.ClusterIP, o.Spec.ClusterIPs = "", nil
		}
		o.Spec.IPFamilies, o.Spec.IPFamilyPolicy = nil, nil
		for i := range o.Spec.Ports {
			o.Spec.Ports[i].NodePort = 0
		}
	case *corev1.Namespace:
		o.TypeMeta = metav1.TypeMeta{}
	case *corev1.ServiceAccount:
		o.TypeMeta = metav1.TypeMeta{}
	case *corev1.ConfigMap:
		o.TypeMeta = metav1.TypeMeta{}
	case *corev1.Secret:
		o.TypeMeta = metav1.TypeMeta{}
	case *appsv1.Deployment:
		o.TypeMeta = metav1.TypeMeta{}
		o.Status = appsv1.DeploymentStatus{}
	}
	return obj
}
