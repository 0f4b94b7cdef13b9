package install

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"

	"github.com/meshlab/meshlab/lab/kube/kubetest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const testCA = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("rendered install differs from %s; run go test ./lab/kube/install -update and review the diff", path)
	}
}

// TestRender compares the rendered install with golden files; the CRDs,
// which are long and the same in every install, have a file of their own.
func TestRender(t *testing.T) {
	tests := []struct {
		golden string
		opts   Options
	}{
		{"in-cluster.yaml", Options{Image: "meshlab.local/meshlab:v1.2.3", CABundle: []byte(testCA), BookinfoNamespace: "default",
			CACerts: map[string][]byte{"ca-cert.pem": []byte(testCA), "ca-key.pem": []byte("key"), "root-cert.pem": []byte(testCA), "cert-chain.pem": []byte(testCA)}}},
		{"out-of-cluster.yaml", Options{Image: "meshlab.local/meshlab:dev", CABundle: []byte(testCA),
			WebhookURLBase: "https://127.0.0.1:15017", BookinfoNamespace: "book-demo"}},
		{"no-bookinfo.yaml", Options{Image: "meshlab.local/meshlab:dev", CABundle: []byte(testCA)}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			objs, err := Objects(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			var crds, rest []runtime.Object
			for _, o := range objs {
				if _, ok := o.(*apiextensionsv1.CustomResourceDefinition); ok {
					crds = append(crds, o)
				} else {
					rest = append(rest, o)
				}
			}
			var buf bytes.Buffer
			if err := Render(&buf, rest); err != nil {
				t.Fatal(err)
			}
			golden(t, tt.golden, buf.Bytes())
			buf.Reset()
			if err := Render(&buf, crds); err != nil {
				t.Fatal(err)
			}
			golden(t, "crds.yaml", buf.Bytes())
		})
	}
}

func TestOptionsInvalid(t *testing.T) {
	for _, o := range []Options{
		{},
		{Image: "x", WebhookURLBase: "http://127.0.0.1:15017"},
		{Image: "x", KialiWebRoot: "kiali"},
		{Image: "x", KialiWebRoot: "/dashboards//kiali"},
	} {
		if _, err := Objects(o); err == nil {
			t.Errorf("Objects(%+v) succeeded; want an error", o)
		}
	}
}

// TestInstall installs onto a real apiserver, twice (apply is idempotent),
// checks every object is there, then uninstalls. There is no node, so
// nothing runs and the rollouts are not waited for.
func TestInstall(t *testing.T) {
	env := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	o := Options{Image: "meshlab.local/meshlab:test", CABundle: []byte(testCA), BookinfoNamespace: "book-demo"}
	in, err := New(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	in.Progress = &progress
	// Well under the resync (5 min) that would otherwise be the only thing
	// to requeue a CRD whose finalizer missed its retry: about one run in
	// twenty hits that apiserver race here, and waitGone's nudge must get
	// the CRD deleted within seconds.
	in.Timeout = time.Minute

	for i := 0; i < 2; i++ {
		if err := in.Install(ctx, o); err != nil {
			t.Fatalf("install #%d: %v\n%s", i+1, err, progress.String())
		}
	}
	if !strings.Contains(progress.String(), "applying Istio CRDs") || !strings.Contains(progress.String(), "installed") {
		t.Errorf("progress lacks steps:\n%s", progress.String())
	}

	objs, err := Objects(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range objs {
		u, _ := toUnstructured(obj)
		res, err := in.resource(u)
		if err != nil {
			t.Fatal(err)
		}
		got, err := res.Get(ctx, u.GetName(), metav1.GetOptions{})
		if err != nil {
			t.Errorf("%s: %v", describe(u), err)
			continue
		}
		managed := false
		for _, f := range got.GetManagedFields() {
			managed = managed || (f.Manager == FieldManager && f.Operation == metav1.ManagedFieldsOperationApply)
		}
		if !managed {
			t.Errorf("%s is not applied by field manager %q", describe(u), FieldManager)
		}
	}
	ns, err := in.kube.CoreV1().Namespaces().Get(ctx, "book-demo", metav1.GetOptions{})
	if err != nil || ns.Labels[InjectionLabel] != "enabled" {
		t.Errorf("namespace book-demo: labels %v, %v; want istio-injection=enabled", ns.Labels, err)
	}
	d, err := in.kube.AppsV1().Deployments("book-demo").Get(ctx, "reviews-v2", metav1.GetOptions{})
	if err != nil || d.Spec.Template.Spec.Containers[0].Image != o.Image {
		t.Errorf("reviews-v2: %v; want image %s", err, o.Image)
	}
	svc, err := in.kube.CoreV1().Services(Namespace).Get(ctx, IngressGateway, metav1.GetOptions{})
	if err != nil || svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		t.Errorf("service %s: %v; want a LoadBalancer", IngressGateway, err)
	}

	// A dry run is validated and admitted but changes nothing.
	in.DryRun = true
	if err := in.Install(ctx, o); err != nil {
		t.Errorf("dry-run install: %v", err)
	}
	if err := in.Uninstall(ctx, o); err != nil {
		t.Errorf("dry-run uninstall: %v", err)
	}
	if _, err := in.kube.AppsV1().Deployments(Namespace).Get(ctx, Istiod, metav1.GetOptions{}); err != nil {
		t.Errorf("after a dry-run uninstall, istiod: %v", err)
	}
	in.DryRun = false

	if err := in.Uninstall(ctx, o); err != nil {
		t.Fatalf("uninstall: %v", err)
	}
	for _, obj := range objs {
		u, _ := toUnstructured(obj)
		res, _ := in.resource(u)
		got, err := res.Get(ctx, u.GetName(), metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err == nil && u.GetKind() == "Namespace" && got.GetDeletionTimestamp() != nil:
			// Terminating: no namespace controller runs here to finish it.
		default:
			t.Errorf("after uninstall, %s: %v", describe(u), err)
		}
	}
	t.Logf("progress:\n%s", progress.String())
	// Uninstalling again finds nothing to do.
	if err := in.Uninstall(ctx, o); err != nil {
		t.Errorf("second uninstall: %v", err)
	}
}

// TestWaitRollout: with no node the installer's Deployments never roll out;
// the timeout names the pod, the container, why it waits and its last event.
func TestWaitRollout(t *testing.T) {
	env := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	in, err := New(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	in.Progress = &progress
	in.Timeout = 2 * time.Second
	cs := in.kube.(*kubernetes.Clientset)

	ns := "rollout"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "web"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.invalid/web"}}},
			},
		},
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// No pods at all (no controller-manager).
	err = in.WaitRollout(ctx, ns, "web")
	if err == nil || !strings.Contains(err.Error(), "no pods") || !strings.Contains(err.Error(), "0/1 ready") {
		t.Errorf("WaitRollout with no pods = %v; want it to say 0/1 ready and no pods", err)
	}

	// A pod whose image cannot be pulled, as a kubelet would report it.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-7d4b9-abcde", Namespace: ns, Labels: labels},
		Spec:       d.Spec.Template.Spec,
	}
	pod, err = cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status = corev1.PodStatus{
		Phase:      corev1.PodPending,
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Image: "example.invalid/web",
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: `Back-off pulling image "example.invalid/web"`}}}},
	}
	if _, err := cs.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	now := metav1.NewTime(time.Now())
	for i, e := range []struct{ reason, msg string }{
		{"Scheduled", "Successfully assigned rollout/web-7d4b9-abcde to node"},
		{"Failed", `Failed to pull image "example.invalid/web": not found`},
	} {
		ev := &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Name: pod.Name + "." + e.reason, Namespace: ns},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod.Name},
			Reason:         e.reason, Message: e.msg, Type: corev1.EventTypeWarning,
			FirstTimestamp: now, LastTimestamp: metav1.NewTime(now.Add(time.Duration(i) * time.Second)),
		}
		if _, err := cs.CoreV1().Events(ns).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	err = in.WaitRollout(ctx, ns, "web")
	for _, want := range []string{"deployment rollout/web", "pod web-7d4b9-abcde", "container app", "ImagePullBackOff",
		`last event: Failed: Failed to pull image "example.invalid/web"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("WaitRollout = %v; want it to mention %q", err, want)
		}
	}
	if !strings.Contains(progress.String(), "waiting for deployment rollout/web: 0/1 ready") {
		t.Errorf("progress lacks the waiting line:\n%s", progress.String())
	}
}
