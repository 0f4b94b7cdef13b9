package kube

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshlab/meshlab/lab"
)

// TestResolvePod: which pod and container exec and logs go to, against
// pods stored in a real apiserver (no kubelet: their readiness is written
// as a kubelet would).
func TestResolvePod(t *testing.T) {
	env := startEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kc := kubernetes.NewForConfigOrDie(env.Config)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "foo"}}, metav1.CreateOptions{})
	must(err)
	for _, app := range []string{"web", "api", "empty"} {
		labels := map[string]string{"app": app}
		_, err := kc.AppsV1().Deployments("foo").Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: "foo"},
			Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: app, Image: "x"}}}}},
		}, metav1.CreateOptions{})
		must(err)
	}
	now := time.Now()
	pod := func(name, app string, readyFor time.Duration, containers []string, annotations map[string]string, finalizers ...string) {
		t.Helper()
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "foo", Labels: map[string]string{"app": app},
			Annotations: annotations, Finalizers: finalizers},
			// A node that does not exist: logs ask it, and fail saying so
			// (with no node at all the apiserver answers an empty log).
			Spec: corev1.PodSpec{NodeName: "node-1"}}
		for _, c := range containers {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c, Image: "x"})
		}
		p, err := kc.CoreV1().Pods("foo").Create(ctx, p, metav1.CreateOptions{})
		must(err)
		if readyFor > 0 {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue,
				LastTransitionTime: metav1.NewTime(now.Add(-readyFor))}}
			_, err = kc.CoreV1().Pods("foo").UpdateStatus(ctx, p, metav1.UpdateOptions{})
			must(err)
		}
	}
	// web: two ready pods, and one ready longest of all but on its way out.
	pod("web-new", "web", time.Minute, []string{"istio-proxy", "web"}, nil)
	pod("web-old", "web", 10*time.Minute, []string{"istio-proxy", "web"}, nil)
	pod("web-gone", "web", 20*time.Minute, []string{"istio-proxy", "web"}, nil, "meshlab.io/test")
	must(kc.CoreV1().Pods("foo").Delete(ctx, "web-gone", metav1.DeleteOptions{}))
	// api: none ready; the newer one (creation times count in seconds).
	pod("api-1", "api", 0, []string{"api", "istio-proxy"}, nil)
	time.Sleep(1100 * time.Millisecond)
	pod("api-2", "api", 0, []string{"api", "istio-proxy"}, nil)
	pod("annotated", "none", 0, []string{"app", "helper"}, map[string]string{DefaultContainerAnnotation: "helper"})
	pod("annotated-wrong", "none", 0, []string{"istio-proxy", "app"}, map[string]string{DefaultContainerAnnotation: "gone"})
	// A pod of an app without a Deployment of that name.
	pod("solo", "lonely", time.Minute, []string{"lonely", "istio-proxy"}, nil)

	for _, tt := range []struct {
		name, container  string
		pod, want, error string
	}{
		{name: "deploy/web", pod: "web-old", want: "web"},
		{name: "deployment/web", container: "istio-proxy", pod: "web-old", want: "istio-proxy"},
		{name: "deployments.apps/web", pod: "web-old", want: "web"},
		{name: "deploy/api", pod: "api-2", want: "api"},
		{name: "web-new", pod: "web-new", want: "web"},
		{name: "pod/annotated", pod: "annotated", want: "helper"},
		{name: "annotated-wrong", pod: "annotated-wrong", want: "app"},
		// A plain name that is no pod's is a Deployment's, as on the
		// local runtime (`meshlab exec ratings -- curl ...`).
		{name: "web", pod: "web-old", want: "web"},
		{name: "api", container: "istio-proxy", pod: "api-2", want: "istio-proxy"},
		{name: "lonely", pod: "solo", want: "lonely"},
		{name: "deploy/web", container: "nope", error: "pod foo/web-old has no container nope; it has istio-proxy, web"},
		{name: "deploy/nope", error: "deployment foo/nope not found; see `meshlab get deployments -n foo`"},
		{name: "deploy/empty", error: "deployment foo/empty has no pods (replicas 1); see `meshlab get pods -n foo`"},
		{name: "missing", error: "pod foo/missing not found; see `meshlab get pods -n foo`, or name a Deployment as deploy/NAME"},
		{name: "svc/web", error: `"svc/web": a pod is named NAME, pod/NAME or deploy/NAME, not svc/`},
	} {
		p, c, err := resolve(ctx, kc, "foo", tt.name, tt.container)
		switch {
		case tt.error != "":
			if err == nil || err.Error() != tt.error {
				t.Errorf("resolve(%s, %q): %v; want the error %q", tt.name, tt.container, err, tt.error)
			}
		case err != nil:
			t.Errorf("resolve(%s, %q): %v", tt.name, tt.container, err)
		case p.Name != tt.pod || c != tt.want:
			t.Errorf("resolve(%s, %q) = %s, %s; want %s, %s", tt.name, tt.container, p.Name, c, tt.pod, tt.want)
		}
	}

	// Logs and exec resolve the same way, then ask the pod's kubelet,
	// which this apiserver does not have: the error names what was asked.
	r, err := Open(t.TempDir(), env.Kubeconfig)
	must(err)
	err = r.Logs(ctx, lab.LogOptions{Namespace: "foo", Pod: "deploy/web", Out: &strings.Builder{}})
	if err == nil || !strings.Contains(err.Error(), "logs of container web of pod foo/web-old") {
		t.Errorf("logs of deploy/web without a kubelet: %v", err)
	}
	_, err = r.Exec(ctx, lab.ExecOptions{Namespace: "foo", Pod: "deploy/api", Command: []string{"true"}, Stdout: &strings.Builder{}})
	if err == nil || !strings.Contains(err.Error(), "exec in container api of pod foo/api-2") {
		t.Errorf("exec in deploy/api without a kubelet: %v", err)
	}
	t.Logf("exec without a kubelet: %v", err)
}
