package install

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshlab/meshlab/controlplane/config"
)

// Installer applies and deletes an install on one cluster.
type Installer struct {
	kube kubernetes.Interface
	dyn  dynamic.Interface

	// Progress receives one line per step, with the time since the
	// install began; nil discards them.
	Progress io.Writer
	// Timeout bounds each wait (CRDs established, a rollout).
	Timeout time.Duration
	// Wait makes Install wait for every Deployment to roll out. Without it
	// Install returns once the objects are accepted (and the CRDs
	// established, since the custom resources need them).
	Wait bool
	// DryRun sends every request with dryRun=All: validated and admitted,
	// never stored.
	DryRun bool

	start time.Time
}

// New returns an Installer talking to the cluster of cfg.
func New(cfg *rest.Config) (*Installer, error) {
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("making a Kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("making a dynamic Kubernetes client: %w", err)
	}
	return &Installer{kube: kube, dyn: dyn, Timeout: 3 * time.Minute}, nil
}

func (in *Installer) progress(format string, args ...any) {
	if in.Progress == nil {
		return
	}
	fmt.Fprintf(in.Progress, "[%5.1fs] %s\n", time.Since(in.start).Seconds(), fmt.Sprintf(format, args...))
}

// Install applies every object of o with server-side apply, step by step,
// waiting for the CRDs (and, with Wait, the rollouts) before the steps that
// need them.
func (in *Installer) Install(ctx context.Context, o Options) error {
	steps, err := plan(o)
	if err != nil {
		return err
	}
	in.start = time.Now()
	for _, s := range steps {
		in.progress("applying %s (%d objects)", s.name, len(s.objects))
		for _, obj := range s.objects {
			if err := in.apply(ctx, obj); err != nil {
				return fmt.Errorf("installing %s: %w", s.name, err)
			}
		}
		if in.DryRun {
			continue
		}
		for _, obj := range s.objects {
			var err error
			switch x := obj.(type) {
			case *apiextensionsv1.CustomResourceDefinition:
				err = in.waitEstablished(ctx, x.Name)
			case *appsv1.Deployment:
				// istiod first: the sidecars of later pods are injected
				// by it and the gateway's routes come from it.
				if in.Wait {
					err = in.WaitRollout(ctx, x.Namespace, x.Name)
				}
			}
			if err != nil {
				return fmt.Errorf("installing %s: %w", s.name, err)
			}
		}
	}
	in.progress("installed")
	return nil
}

// Uninstall deletes what Install(o) creates, in reverse order. Objects
// already gone are skipped. Deleting the CRDs deletes every Istio resource
// of the cluster with them.
func (in *Installer) Uninstall(ctx context.Context, o Options) error {
	objs, err := Objects(o)
	if err != nil {
		return err
	}
	in.start = time.Now()
	var errs []error
	for i := len(objs) - 1; i >= 0; i-- {
		u, err := toUnstructured(objs[i])
		if err != nil {
			return err
		}
		if u.GetKind() == "Namespace" && keepNamespace(u.GetName()) {
			continue
		}
		res, err := in.resource(u)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		opts := metav1.DeleteOptions{PropagationPolicy: ptr(metav1.DeletePropagationBackground)}
		if in.DryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		err = res.Delete(ctx, u.GetName(), opts)
		switch {
		case err == nil && in.DryRun:
			in.progress("deleted %s (dry run)", describe(u))
		case err == nil:
			in.progress("deleted %s", describe(u))
		case apierrors.IsNotFound(err) || meta.IsNoMatchError(err) || isNoKind(err):
		default:
			errs = append(errs, fmt.Errorf("deleting %s: %w", describe(u), err))
		}
	}
	if !in.DryRun && len(errs) == 0 {
		// A CRD goes once its resources are deleted; until then a new
		// install would find it terminating.
		for _, obj := range objs {
			if c, ok := obj.(*apiextensionsv1.CustomResourceDefinition); ok {
				if err := in.waitGone(ctx, c.Name); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	in.progress("uninstalled")
	return errors.Join(errs...)
}

// keepNamespace: the namespaces every cluster has are never deleted.
func keepNamespace(name string) bool {
	return name == "default" || strings.HasPrefix(name, "kube-")
}

// isNoKind: the custom resources' kinds vanish with their CRDs.
func isNoKind(err error) bool {
	var status apierrors.APIStatus
	return errors.As(err, &status) && status.Status().Code == 404
}

func (in *Installer) apply(ctx context.Context, obj runtime.Object) error {
	u, err := toUnstructured(obj)
	if err != nil {
		return err
	}
	res, err := in.resource(u)
	if err != nil {
		return err
	}
	opts := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
	if in.DryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	if _, err := res.Apply(ctx, u.GetName(), u, opts); err != nil {
		return fmt.Errorf("applying %s: %w", describe(u), err)
	}
	return nil
}

// resource is the dynamic client of u's kind. The kinds of an install are
// known, so there is no discovery round trip (which would also miss the
// Istio kinds until their CRDs are established).
func (in *Installer) resource(u *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := u.GroupVersionKind()
	plural, namespaced := "", true
	switch gvk.Kind {
	case "Namespace":
		plural, namespaced = "namespaces", false
	case "CustomResourceDefinition":
		plural, namespaced = "customresourcedefinitions", false
	case "ClusterRole":
		plural, namespaced = "clusterroles", false
	case "ClusterRoleBinding":
		plural, namespaced = "clusterrolebindings", false
	case "MutatingWebhookConfiguration":
		plural, namespaced = "mutatingwebhookconfigurations", false
	case "ValidatingWebhookConfiguration":
		plural, namespaced = "validatingwebhookconfigurations", false
	case "ServiceAccount", "Service", "Deployment", "ConfigMap", "Secret":
		plural = strings.ToLower(gvk.Kind) + "s"
	default:
		k, ok := config.LookupKind(gvk.Kind)
		if !ok || k.Group != gvk.Group {
			return nil, fmt.Errorf("install: no resource known for %s", gvk)
		}
		plural = k.Plural
	}
	r := in.dyn.Resource(schema.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: plural})
	if namespaced {
		return r.Namespace(u.GetNamespace()), nil
	}
	return r, nil
}

// waitEstablished waits until the apiserver serves the CRD's kind.
func (in *Installer) waitEstablished(ctx context.Context, name string) error {
	return in.poll(ctx, "CRD "+name, func(ctx context.Context) (bool, string, error) {
		c, err := in.dyn.Resource(apiextensionsv1.SchemeGroupVersion.WithResource("customresourcedefinitions")).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(c.Object, &crd); err != nil {
			return false, "", err
		}
		for _, cond := range crd.Status.Conditions {
			if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
				return true, "", nil
			}
			if cond.Type == apiextensionsv1.NamesAccepted && cond.Status == apiextensionsv1.ConditionFalse {
				return false, "", fmt.Errorf("CRD %s: names not accepted: %s", name, cond.Message)
			}
		}
		return false, "not established yet", nil
	}, func(context.Context) string { return "" })
}

// nudgeAfter is how long a CRD may stay terminating before waitGone touches
// it. The apiserver's CRD finalizer can miss its own retry: when listing the
// instances fails (the CRD's storage is still being rebuilt after an
// install), the retry may conflict with the finalizer's own status write and
// give up waiting for an update event that the finalizer then ignores,
// because only the Terminating condition changed. Nothing requeues the CRD
// until the informer's resync, minutes later. Any other change to the CRD
// requeues it at once.
const nudgeAfter = 3 * time.Second

// NudgeAnnotation is set on a terminating CRD to requeue its finalizer.
const NudgeAnnotation = "meshlab.io/finalizer-nudge"

// waitGone waits until the CRD is deleted, nudging the apiserver's CRD
// finalizer when it seems to have stopped trying (see nudgeAfter).
func (in *Installer) waitGone(ctx context.Context, name string) error {
	crds := in.dyn.Resource(apiextensionsv1.SchemeGroupVersion.WithResource("customresourcedefinitions"))
	start, nudged := time.Now(), time.Time{}
	return in.poll(ctx, "deletion of CRD "+name, func(ctx context.Context) (bool, string, error) {
		c, err := crds.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, "", nil
		}
		if err != nil {
			return false, "", err
		}
		state := "terminating"
		var crd apiextensionsv1.CustomResourceDefinition
		if runtime.DefaultUnstructuredConverter.FromUnstructured(c.Object, &crd) == nil {
			for _, cond := range crd.Status.Conditions {
				if cond.Type == apiextensionsv1.Terminating && cond.Reason != "" {
					state = "terminating: " + cond.Reason
				}
			}
		}
		if time.Since(start) >= nudgeAfter && time.Since(nudged) >= nudgeAfter {
			patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, NudgeAnnotation, time.Now().UTC().Format(time.RFC3339Nano))
			_, err := crds.Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: FieldManager})
			if err != nil && !apierrors.IsNotFound(err) {
				return false, "", fmt.Errorf("requeueing the finalizer of CRD %s: %w", name, err)
			}
			nudged = time.Now()
		}
		return false, state, nil
	}, func(context.Context) string { return "" })
}

// WaitRollout waits until every replica of the Deployment is updated and
// available, printing progress. On timeout it says which pod and container
// is not ready, why, and the pod's last event.
func (in *Installer) WaitRollout(ctx context.Context, ns, name string) error {
	if in.start.IsZero() {
		in.start = time.Now()
	}
	return in.poll(ctx, "deployment "+ns+"/"+name, func(ctx context.Context) (bool, string, error) {
		d, err := in.kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		done := d.Status.ObservedGeneration >= d.Generation && d.Status.UpdatedReplicas == want &&
			d.Status.AvailableReplicas == want && d.Status.Replicas == want
		return done, fmt.Sprintf("%d/%d ready", d.Status.AvailableReplicas, want), nil
	}, func(ctx context.Context) string { return in.diagnose(ctx, ns, name) })
}

// poll runs check every second until it is done, fails, or in.Timeout
// passes; it prints the state whenever it changes. why explains a timeout.
// The checks run under ctx, not under the timeout, so that the last one is
// not cut short by it.
func (in *Installer) poll(ctx context.Context, what string, check func(context.Context) (bool, string, error), why func(context.Context) string) error {
	timeout := in.Timeout
	if timeout <= 0 {
		timeout = 3 * time.Minute
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := ""
	for {
		done, state, err := check(ctx)
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if done {
			if state != "" {
				in.progress("%s: %s", what, state)
			}
			return nil
		}
		if state != last && state != "" {
			in.progress("waiting for %s: %s", what, state)
			last = state
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-deadline.C:
			msg := fmt.Sprintf("%s not ready after %s", what, timeout)
			if state != "" {
				msg += " (" + state + ")"
			}
			if d := why(ctx); d != "" {
				msg += ": " + d
			}
			return errors.New(msg)
		case <-tick.C:
		}
	}
}

// diagnose explains why a Deployment has no ready pod: the first pod with a
// container that is not ready, its state and the pod's last event; or, with
// no pods, the Deployment's own conditions.
func (in *Installer) diagnose(ctx context.Context, ns, name string) string {
	d, err := in.kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return err.Error()
	}
	pods, err := in.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return "listing its pods: " + err.Error()
	}
	for _, p := range pods.Items {
		if podReady(&p) {
			continue
		}
		msg := "pod " + p.Name
		if c := notReadyContainer(&p); c != "" {
			msg += " " + c
		} else if p.Status.Phase != "" {
			msg += " is " + string(p.Status.Phase)
		}
		if e := in.lastEvent(ctx, ns, "Pod", p.Name); e != "" {
			msg += "; last event: " + e
		}
		return msg
	}
	var conds []string
	for _, c := range d.Status.Conditions {
		if c.Status != corev1.ConditionTrue || c.Type == appsv1.DeploymentReplicaFailure {
			conds = append(conds, fmt.Sprintf("%s=%s %s: %s", c.Type, c.Status, c.Reason, c.Message))
		}
	}
	if e := in.lastEvent(ctx, ns, "Deployment", name); e != "" {
		conds = append(conds, "last event: "+e)
	}
	if len(pods.Items) == 0 {
		conds = append([]string{"no pods (is there a node and a controller-manager?)"}, conds...)
	}
	return strings.Join(conds, "; ")
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// notReadyContainer describes the first container (init containers first)
// that is not ready, e.g. `container istio-proxy: waiting (ImagePullBackOff: ...)`.
func notReadyContainer(p *corev1.Pod) string {
	statuses := append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
	for _, s := range statuses {
		if s.Ready {
			continue
		}
		desc := "container " + s.Name + ": "
		switch {
		case s.State.Waiting != nil:
			desc += "waiting (" + reasonMessage(s.State.Waiting.Reason, s.State.Waiting.Message) + ")"
		case s.State.Terminated != nil:
			desc += fmt.Sprintf("terminated (%s, exit code %d)", reasonMessage(s.State.Terminated.Reason, s.State.Terminated.Message), s.State.Terminated.ExitCode)
		case s.State.Running != nil:
			desc += "running but not ready"
		}
		if t := s.LastTerminationState.Terminated; t != nil {
			desc += fmt.Sprintf(", last exit code %d (%s)", t.ExitCode, t.Reason)
		}
		if s.RestartCount > 0 {
			desc += fmt.Sprintf(", %d restarts", s.RestartCount)
		}
		return desc
	}
	return ""
}

func reasonMessage(reason, msg string) string {
	if msg == "" {
		return reason
	}
	return reason + ": " + msg
}

// lastEvent is the newest event about an object, as "Reason: message".
func (in *Installer) lastEvent(ctx context.Context, ns, kind, name string) string {
	events, err := in.kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.kind=" + kind + ",involvedObject.name=" + name,
	})
	if err != nil || len(events.Items) == 0 {
		return ""
	}
	when := func(e corev1.Event) time.Time {
		switch {
		case !e.LastTimestamp.IsZero():
			return e.LastTimestamp.Time
		case !e.EventTime.IsZero():
			return e.EventTime.Time
		}
		return e.CreationTimestamp.Time
	}
	sort.SliceStable(events.Items, func(i, j int) bool { return when(events.Items[i]).Before(when(events.Items[j])) })
	e := events.Items[len(events.Items)-1]
	return reasonMessage(e.Reason, e.Message)
}

// toUnstructured converts a typed object to the generic form the dynamic
// client sends, without the empty status and null timestamps of a Go zero
// value.
func toUnstructured(obj runtime.Object) (*unstructured.Unstructured, error) {
	if u, ok := obj.(*unstructured.Unstructured); ok {
		return u.DeepCopy(), nil
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("converting %T: %w", obj, err)
	}
	delete(m, "status")
	prune(m)
	return &unstructured.Unstructured{Object: m}, nil
}

// prune drops null creationTimestamps, which every typed ObjectMeta has.
func prune(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if k == "creationTimestamp" && e == nil {
				delete(x, k)
				continue
			}
			prune(e)
		}
	case []any:
		for _, e := range x {
			prune(e)
		}
	}
}

func metaOf(obj runtime.Object) (metav1.Object, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, fmt.Errorf("%T has no metadata: %w", obj, err)
	}
	return m, nil
}

func describe(u *unstructured.Unstructured) string {
	s := u.GetKind() + " "
	if ns := u.GetNamespace(); ns != "" {
		s += ns + "/"
	}
	return s + u.GetName()
}
