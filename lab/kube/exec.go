package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/meshlab/meshlab/lab"
)

// DefaultContainerAnnotation names the container kubectl exec and logs
// pick when none is given.
const DefaultContainerAnnotation = "kubectl.kubernetes.io/default-container"

// sidecarName is the container injection adds; it is never the default.
const sidecarName = "istio-proxy"

// Exec runs a command in a container through the pods/exec subresource, as
// kubectl 1.30+ does: over WebSocket, falling back to SPDY when the server
// or a proxy in between cannot upgrade to it. The command's exit code is
// returned (with a nil error) when it ran.
func (r *Runtime) Exec(ctx context.Context, o lab.ExecOptions) (int, error) {
	if len(o.Command) == 0 {
		return 0, errors.New("exec: no command; give it after --, e.g. meshlab exec deploy/sleep -- curl -s httpbin:8000/get")
	}
	c, err := r.clients()
	if err != nil {
		return 0, err
	}
	pod, container, err := resolve(ctx, c.kube, o.Namespace, o.Pod, o.Container)
	if err != nil {
		return 0, fmt.Errorf("exec: %w", err)
	}
	req := c.kube.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).
		SubResource("exec").VersionedParams(&corev1.PodExecOptions{
		Container: container,
		Command:   o.Command,
		Stdin:     o.Stdin != nil,
		Stdout:    o.Stdout != nil,
		Stderr:    o.Stderr != nil,
	}, scheme.ParameterCodec)
	ws, err := remotecommand.NewWebSocketExecutor(c.cfg, "GET", req.URL().String())
	if err != nil {
		return 0, fmt.Errorf("exec in pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	spdy, err := remotecommand.NewSPDYExecutor(c.cfg, "POST", req.URL())
	if err != nil {
		return 0, fmt.Errorf("exec in pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	ex, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return 0, fmt.Errorf("exec in pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: o.Stdin, Stdout: o.Stdout, Stderr: o.Stderr})
	var exit utilexec.CodeExitError
	if errors.As(err, &exit) {
		return exit.ExitStatus(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("exec in container %s of pod %s/%s: %w", container, pod.Namespace, pod.Name, err)
	}
	return 0, nil
}

// Logs copies a container's log to o.Out through the pods/log subresource,
// following it until ctx ends when o.Follow.
func (r *Runtime) Logs(ctx context.Context, o lab.LogOptions) error {
	c, err := r.clients()
	if err != nil {
		return err
	}
	pod, container, err := resolve(ctx, c.kube, o.Namespace, o.Pod, o.Container)
	if err != nil {
		return fmt.Errorf("logs: %w", err)
	}
	rc, err := c.kube.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: container, Follow: o.Follow}).Stream(ctx)
	if err != nil {
		return fmt.Errorf("logs of container %s of pod %s/%s: %w", container, pod.Namespace, pod.Name, err)
	}
	defer func() { _ = rc.Close() }() // read to the end or cut by ctx: nothing to report
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	if _, err := io.Copy(out, rc); err != nil && ctx.Err() == nil {
		return fmt.Errorf("logs of container %s of pod %s/%s: %w", container, pod.Namespace, pod.Name, err)
	}
	return nil
}

// resolve finds the pod and container a command names: "deploy/NAME" (or
// deployment/NAME, deployments/NAME, deployment.apps/NAME) is one pod of
// the Deployment, "pod/NAME" or a plain name is that pod; container ""
// is kubectl's default (see defaultContainer).
func resolve(ctx context.Context, kc kubernetes.Interface, ns, name, container string) (*corev1.Pod, string, error) {
	if ns == "" {
		ns = defaultNamespace
	}
	var pod *corev1.Pod
	kind, n, ok := strings.Cut(name, "/")
	if !ok {
		kind, n = "pod", name
	}
	plain := !ok
	if n == "" {
		return nil, "", fmt.Errorf("%q names no pod; give a pod name or deploy/NAME", name)
	}
	switch strings.ToLower(kind) {
	case "deploy", "deployment", "deployments", "deployment.apps", "deployments.apps":
		var err error
		if pod, err = deploymentPod(ctx, kc, ns, n); err != nil {
			return nil, "", err
		}
	case "po", "pod", "pods":
		p, err := kc.CoreV1().Pods(ns).Get(ctx, n, metav1.GetOptions{})
		if apierrors.IsNotFound(err) && plain {
			// As on the local runtime, a plain name may be a
			// Deployment's or an app's: `meshlab exec ratings`.
			if p, err = appPod(ctx, kc, ns, n); p != nil || err != nil {
				if err != nil {
					return nil, "", err
				}
				pod = p
				break
			}
			err = apierrors.NewNotFound(corev1.Resource("pods"), n)
		}
		if apierrors.IsNotFound(err) {
			return nil, "", fmt.Errorf("pod %s/%s not found; see `meshlab get pods -n %s`, or name a Deployment as deploy/NAME", ns, n, ns)
		}
		if err != nil {
			return nil, "", fmt.Errorf("get pod %s/%s: %w", ns, n, err)
		}
		pod = p
	default:
		return nil, "", fmt.Errorf("%q: a pod is named NAME, pod/NAME or deploy/NAME, not %s/", name, kind)
	}
	if container == "" {
		return pod, defaultContainer(pod), nil
	}
	var names []string
	for _, c := range pod.Spec.Containers {
		if c.Name == container {
			return pod, container, nil
		}
		names = append(names, c.Name)
	}
	for _, c := range pod.Spec.InitContainers {
		if c.Name == container {
			return pod, container, nil
		}
	}
	return nil, "", fmt.Errorf("pod %s/%s has no container %s; it has %s", pod.Namespace, pod.Name, container, strings.Join(names, ", "))
}

// defaultContainer is the container kubectl picks: the one the
// kubectl.kubernetes.io/default-container annotation names, else the first
// that is not the sidecar (kubectl takes the first; with the injector
// putting istio-proxy first that would be the sidecar, never what is meant).
func defaultContainer(p *corev1.Pod) string {
	if want := p.Annotations[DefaultContainerAnnotation]; want != "" {
		for _, c := range p.Spec.Containers {
			if c.Name == want {
				return want
			}
		}
	}
	for _, c := range p.Spec.Containers {
		if c.Name != sidecarName {
			return c.Name
		}
	}
	if len(p.Spec.Containers) > 0 {
		return p.Spec.Containers[0].Name
	}
	return ""
}

// deploymentPod is the pod of a Deployment a command goes to: of the pods
// its selector matches that are not being deleted, the Ready one that has
// been ready longest (as kubectl picks for logs), else, with none ready,
// the newest, which in a rollout is the one coming up.
func deploymentPod(ctx context.Context, kc kubernetes.Interface, ns, name string) (*corev1.Pod, error) {
	d, err := kc.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, deploymentNotFound(ns, name)
	}
	if err != nil {
		return nil, fmt.Errorf("get deployment %s/%s: %w", ns, name, err)
	}
	return podOf(ctx, kc, d)
}

// podOf is the pod of d that deploymentPod picks.
func podOf(ctx context.Context, kc kubernetes.Interface, d *appsv1.Deployment) (*corev1.Pod, error) {
	ns, name := d.Namespace, d.Name
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("deployment %s/%s: selector: %w", ns, name, err)
	}
	l, err := kc.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("list the pods of deployment %s/%s: %w", ns, name, err)
	}
	if p := pickPod(l.Items); p != nil {
		return p, nil
	}
	return nil, fmt.Errorf("deployment %s/%s has no pods (replicas %d); see `meshlab get pods -n %s`", ns, name, replicas(d.Spec.Replicas), ns)
}

// pickPod is, of pods, the one that has been ready longest, else, with none
// ready, the newest; nil when every one is going away.
func pickPod(pods []corev1.Pod) *corev1.Pod {
	var ready, others []*corev1.Pod
	for i := range pods {
		p := &pods[i]
		switch {
		case p.DeletionTimestamp != nil:
		case podReady(*p):
			ready = append(ready, p)
		default:
			others = append(others, p)
		}
	}
	if len(ready) > 0 {
		sort.Slice(ready, func(i, j int) bool {
			ti, tj := readySince(ready[i]), readySince(ready[j])
			if !ti.Equal(&tj) {
				return ti.Before(&tj)
			}
			return ready[i].Name < ready[j].Name
		})
		return ready[0]
	}
	if len(others) > 0 {
		sort.Slice(others, func(i, j int) bool {
			ti, tj := others[i].CreationTimestamp, others[j].CreationTimestamp
			if !ti.Equal(&tj) {
				return tj.Before(&ti)
			}
			return others[i].Name < others[j].Name
		})
		return others[0]
	}
	return nil
}

func replicas(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

// readySince is when the pod became Ready.
func readySince(p *corev1.Pod) metav1.Time {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.LastTransitionTime
		}
	}
	return metav1.Time{}
}

// appPod is a pod of the Deployment named name, else one labelled app=name
// (nil when there is neither), picked as deploymentPod picks: how a plain
// name that is no pod's is read.
func appPod(ctx context.Context, kc kubernetes.Interface, ns, name string) (*corev1.Pod, error) {
	d, err := kc.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		return podOf(ctx, kc, d)
	}
	if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("get deployment %s/%s: %w", ns, name, err)
	}
	pods, err := kc.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
	if err != nil {
		return nil, fmt.Errorf("list pods of app %s in %s: %w", name, ns, err)
	}
	return pickPod(pods.Items), nil
}
