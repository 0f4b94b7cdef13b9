package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/controlplane/registry"
	"github.com/meshlab/meshlab/lab"
)

// Apply stores the documents through the control plane's API, all or
// nothing. API errors come back as the control plane wrote them (they name
// file, document and field).
func (l *Lab) Apply(ctx context.Context, req lab.ApplyRequest) (lab.ApplyResult, error) {
	docs := make([]api.Document, 0, len(req.Documents))
	for _, d := range req.Documents {
		obj, err := defaultNamespace(d.JSON, req.Namespace)
		if err != nil {
			return lab.ApplyResult{}, fmt.Errorf("%s: document %d: %w", d.Source, d.Index, err)
		}
		docs = append(docs, api.Document{Source: d.Source, Index: d.Index, Object: obj})
	}
	// What the API server would take but this runtime cannot run is
	// refused here, before anything is stored.
	if err := checkRunnable(req.Documents, req.Namespace); err != nil {
		return lab.ApplyResult{}, err
	}
	res, err := l.client().Apply(ctx, api.ApplyRequest{Documents: docs, DryRun: req.DryRun})
	if err != nil {
		return lab.ApplyResult{}, err
	}
	return applyResult(res), nil
}

// defaultNamespace puts a document that names no namespace in ns, as
// kubectl does; a Namespace is cluster-scoped and keeps none.
func defaultNamespace(obj json.RawMessage, ns string) (json.RawMessage, error) {
	if ns == "" {
		return obj, nil
	}
	var u unstructured.Unstructured
	if u.UnmarshalJSON(obj) != nil {
		// Sent as it is: the control plane names what is wrong with it,
		// by file, document and field.
		return obj, nil
	}
	if u.GetNamespace() != "" || u.GetKind() == "Namespace" {
		return obj, nil
	}
	u.SetNamespace(ns)
	return u.MarshalJSON()
}

// Delete removes the objects through the control plane's API, all or
// nothing.
func (l *Lab) Delete(ctx context.Context, refs []lab.ObjectRef) (lab.ApplyResult, error) {
	keys := make([]string, len(refs))
	for i, r := range refs {
		keys[i] = r.Kind + "/" + r.Namespace + "/" + r.Name
	}
	res, err := l.client().Delete(ctx, keys)
	if err != nil {
		return lab.ApplyResult{}, err
	}
	return applyResult(res), nil
}

func applyResult(res api.Result) lab.ApplyResult {
	out := lab.ApplyResult{Revision: res.Revision, Changes: make([]lab.Change, 0, len(res.Changes)), Warnings: res.Warnings}
	for _, c := range res.Changes {
		out.Changes = append(out.Changes, lab.Change{Ref: lab.RefOfKey(c.Key), Op: c.Op})
	}
	return out
}

// List returns the stored objects as the control plane encodes them.
func (l *Lab) List(ctx context.Context, kind, ns, name string) ([]json.RawMessage, error) {
	list, err := l.client().List(ctx, kind, ns, name)
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

// Pods are the lab's pods from its record, as Kubernetes shows them.
func (l *Lab) Pods(ctx context.Context, ns string) ([]corev1.Pod, error) {
	st, err := lab.ReadStatus(l.dir)
	if err != nil {
		return nil, err
	}
	out := []corev1.Pod{}
	for _, p := range st.Pods {
		if ns == "" || p.Namespace == ns {
			out = append(out, toPod(p, nodeName(), time.Now()))
		}
	}
	sort.Slice(out, func(i, j int) bool { return nsNameLess(out[i].ObjectMeta, out[j].ObjectMeta) })
	return out, nil
}

func nsNameLess(a, b metav1.ObjectMeta) bool {
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}

// nodeName is the local runtime's one node: this machine.
func nodeName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}

// Image is what a pod of the local runtime shows as the image of a
// container that runs this binary (the local runtime has no image store).
const Image = "meshlab.local/meshlab"

// toPod shows a pod of the lab's record as Kubernetes would: its owner
// ReplicaSet, its spec (the recorded one, else one built from its
// containers), and container statuses with kubelet's reasons.
func toPod(p lab.Pod, node string, now time.Time) corev1.Pod {
	pod := corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace,
			Labels: p.Labels, Annotations: p.Annotations,
			CreationTimestamp: metav1.NewTime(p.CreatedAt),
		},
	}
	if p.Terminating {
		t := metav1.NewTime(now)
		grace := int64(30)
		pod.DeletionTimestamp, pod.DeletionGracePeriodSeconds = &t, &grace
	}
	if hash := podTemplateHash(p); p.Deployment != "" && hash != "" {
		yes := true
		pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet",
			Name: p.Deployment + "-" + hash, Controller: &yes, BlockOwnerDeletion: &yes}}
	}
	if p.Spec != nil {
		pod.Spec = *p.Spec.DeepCopy()
	} else {
		pod.Spec = minimalSpec(p)
	}
	if pod.Spec.NodeName == "" {
		pod.Spec.NodeName = node
	}

	images := map[string]string{}
	for _, c := range pod.Spec.Containers {
		images[c.Name] = c.Image
	}
	hostIP := Network.Gateway.String()
	pod.Status = corev1.PodStatus{
		Phase:     corev1.PodPhase(p.Phase),
		HostIP:    hostIP,
		HostIPs:   []corev1.HostIP{{IP: hostIP}},
		PodIP:     p.IP,
		StartTime: &pod.CreationTimestamp,
		QOSClass:  corev1.PodQOSBestEffort,
	}
	if p.IP != "" {
		pod.Status.PodIPs = []corev1.PodIP{{IP: p.IP}}
	}
	allReady := len(p.Containers) > 0
	for _, c := range p.Containers {
		cs := containerStatus(c, p, images[c.Name])
		allReady = allReady && cs.Ready
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, cs)
	}
	// istio-init ran before the containers started (the runtime installs
	// the capture rules itself): it shows as init containers that completed.
	for _, c := range pod.Spec.InitContainers {
		pod.Status.InitContainerStatuses = append(pod.Status.InitContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, Ready: true,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed",
				StartedAt: pod.CreationTimestamp, FinishedAt: pod.CreationTimestamp}},
		})
	}
	cond := func(t corev1.PodConditionType, ok bool) corev1.PodCondition {
		s := corev1.ConditionFalse
		if ok {
			s = corev1.ConditionTrue
		}
		return corev1.PodCondition{Type: t, Status: s, LastTransitionTime: pod.CreationTimestamp}
	}
	ready := allReady && p.Ready
	pod.Status.Conditions = []corev1.PodCondition{
		cond(corev1.PodInitialized, true),
		cond(corev1.PodReady, ready),
		cond(corev1.ContainersReady, ready),
		cond(corev1.PodScheduled, true),
	}
	return pod
}

// podTemplateHash is the pod's Deployment revision: recorded, else its
// pod-template-hash label, else read from a name the runtime gave as a
// ReplicaSet does (<deployment>-<hash>-<suffix>).
func podTemplateHash(p lab.Pod) string {
	if p.TemplateHash != "" {
		return p.TemplateHash
	}
	if h := p.Labels[appsv1.DefaultDeploymentUniqueLabelKey]; h != "" {
		return h
	}
	if p.Deployment == "" {
		return ""
	}
	rest, ok := strings.CutPrefix(p.Name, p.Deployment+"-")
	if !ok {
		return ""
	}
	hash, _, ok := strings.Cut(rest, "-")
	if !ok {
		return ""
	}
	return hash
}

// minimalSpec is the spec of a pod recorded without one: its containers by
// name, istio-proxy with the ports the walkthrough reads.
func minimalSpec(p lab.Pod) corev1.PodSpec {
	var s corev1.PodSpec
	for _, c := range p.Containers {
		ct := corev1.Container{Name: c.Name, Image: Image}
		if c.Name == "istio-proxy" {
			ct.Ports = []corev1.ContainerPort{{Name: "http-envoy-prom", ContainerPort: 15090, Protocol: corev1.ProtocolTCP}}
		}
		s.Containers = append(s.Containers, ct)
	}
	return s
}

// containerStatus is a container as kubelet reports it: running, or
// waiting in CrashLoopBackOff after it exited, or ContainerCreating before
// its first start; terminated once its pod failed.
func containerStatus(c lab.Container, p lab.Pod, image string) corev1.ContainerStatus {
	started := c.Running
	cs := corev1.ContainerStatus{
		Name: c.Name, Image: image, ImageID: image,
		Ready:        c.Running && p.Ready,
		RestartCount: int32(c.Restarts),
		Started:      &started,
	}
	if c.LastExit != "" {
		cs.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{
			ExitCode: exitCode(c.LastExit), Reason: "Error", Message: c.LastExit}
	}
	switch {
	case c.Running:
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(p.CreatedAt)}
	case p.Phase == string(corev1.PodFailed):
		cs.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: exitCode(c.LastExit), Reason: "Error", Message: c.LastExit}
		cs.LastTerminationState = corev1.ContainerState{}
	case c.LastExit != "" || c.Restarts > 0:
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
			Message: fmt.Sprintf("back-off restarting failed container %s in pod %s_%s", c.Name, p.Name, p.Namespace)}
	default:
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
	}
	return cs
}

// exitCode reads the supervisor's "exit status N" or "signal: NAME" as a
// shell reports it (128+signal).
func exitCode(s string) int32 {
	if n, ok := strings.CutPrefix(s, "exit status "); ok {
		if v, err := strconv.Atoi(n); err == nil {
			return int32(v)
		}
	}
	signals := map[string]int32{"killed": 9, "terminated": 15, "interrupt": 2, "aborted": 6, "segmentation fault": 11, "hangup": 1}
	if name, ok := strings.CutPrefix(s, "signal: "); ok {
		if n, ok := signals[name]; ok {
			return 128 + n
		}
	}
	return 1
}

// TemplateHash is the revision of a Deployment's pod template, which the
// daemon gives its pods (pod-template-hash) and their ReplicaSet name: a
// pod is up to date when its hash is its Deployment's.
func TemplateHash(t *corev1.PodTemplateSpec) string {
	// Encoding a PodTemplateSpec cannot fail: it is plain data, and the
	// marshalers of its fields (Quantity, IntOrString, Time) return no errors.
	b, _ := json.Marshal(t)
	h := fnv.New32a()
	_, _ = h.Write(b) // a hash.Hash never returns an error
	return fmt.Sprintf("%x", h.Sum32())
}

// Deployments are the stored Deployments with their status computed from
// the lab's pods, and a Deployment for each group of pods the runtime runs
// that none stores (istiod and istio-ingressgateway in istio-system).
func (l *Lab) Deployments(ctx context.Context, ns string) ([]appsv1.Deployment, error) {
	pods, err := l.pods()
	if err != nil {
		return nil, err
	}
	items, err := l.List(ctx, "Deployment", ns, "")
	if err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	stored := make([]appsv1.Deployment, 0, len(items))
	for i, it := range items {
		var d appsv1.Deployment
		if err := json.Unmarshal(it, &d); err != nil {
			return nil, fmt.Errorf("decode deployment %d of the control plane's list: %w", i, err)
		}
		stored = append(stored, d)
	}
	return deployments(stored, pods, ns), nil
}

// pods are the lab's pods from its record; none when it is not up.
func (l *Lab) pods() ([]lab.Pod, error) {
	st, err := lab.ReadStatus(l.dir)
	if errors.Is(err, lab.ErrNotUp) {
		return nil, nil
	}
	return st.Pods, err
}

// deployments gives stored Deployments their status from pods, and adds
// one for each Deployment whose pods run but that none stores.
func deployments(stored []appsv1.Deployment, pods []lab.Pod, ns string) []appsv1.Deployment {
	byDeploy := map[string][]lab.Pod{}
	for _, p := range pods {
		if p.Deployment != "" && (ns == "" || p.Namespace == ns) {
			k := p.Namespace + "/" + p.Deployment
			byDeploy[k] = append(byDeploy[k], p)
		}
	}
	out := make([]appsv1.Deployment, 0, len(stored)+len(byDeploy))
	for _, d := range stored {
		k := d.Namespace + "/" + d.Name
		d.Status = deploymentStatus(d, TemplateHash(&d.Spec.Template), byDeploy[k])
		delete(byDeploy, k)
		out = append(out, d)
	}
	for _, ps := range byDeploy {
		out = append(out, runtimeDeployment(ps))
	}
	sort.Slice(out, func(i, j int) bool { return nsNameLess(out[i].ObjectMeta, out[j].ObjectMeta) })
	return out
}

// runtimeDeployment shows the pods of a Deployment the runtime runs but
// does not store (its own istiod and gateway) as that Deployment.
func runtimeDeployment(pods []lab.Pod) appsv1.Deployment {
	first := pods[0]
	selector := map[string]string{}
	for k, v := range first.Labels {
		if k != appsv1.DefaultDeploymentUniqueLabelKey {
			selector[k] = v
		}
	}
	created := first.CreatedAt
	active := int32(0)
	for _, p := range pods {
		if p.CreatedAt.Before(created) {
			created = p.CreatedAt
		}
		if !p.Terminating {
			active++
		}
	}
	d := appsv1.Deployment{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: first.Deployment, Namespace: first.Namespace, Labels: selector,
			CreationTimestamp: metav1.NewTime(created), Generation: 1},
		Spec: appsv1.DeploymentSpec{
			Replicas: &active,
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: selector, Annotations: first.Annotations}},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType},
		},
	}
	if first.Spec != nil {
		d.Spec.Template.Spec = *first.Spec.DeepCopy()
	} else {
		d.Spec.Template.Spec = minimalSpec(first)
	}
	d.Status = deploymentStatus(d, "", pods)
	return d
}

// deploymentStatus is what the Deployment controller reports from the
// pods: terminating pods do not count (as its ReplicaSets count active
// pods); updated are those of the current template hash ("" counts every
// pod); available are the ready ones (minReadySeconds is not kept).
func deploymentStatus(d appsv1.Deployment, current string, pods []lab.Pod) appsv1.DeploymentStatus {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st := appsv1.DeploymentStatus{ObservedGeneration: d.Generation}
	for _, p := range pods {
		if p.Terminating {
			continue
		}
		st.Replicas++
		if p.Ready {
			st.ReadyReplicas++
			st.AvailableReplicas++
		}
		if current == "" || podTemplateHash(p) == current {
			st.UpdatedReplicas++
		}
	}
	st.UnavailableReplicas = max(0, st.Replicas-st.AvailableReplicas, want-st.AvailableReplicas)
	// Available as Kubernetes judges it: at most maxUnavailable (default
	// 25%, rounded down) of the wanted replicas missing.
	maxUnavailable := intstr.FromString("25%")
	if ru := d.Spec.Strategy.RollingUpdate; ru != nil && ru.MaxUnavailable != nil {
		maxUnavailable = *ru.MaxUnavailable
	}
	mu, err := intstr.GetScaledValueFromIntOrPercent(&maxUnavailable, int(want), false)
	if err != nil {
		mu = 0
	}
	cond := func(t appsv1.DeploymentConditionType, ok bool, yes, no, msg string) appsv1.DeploymentCondition {
		c := appsv1.DeploymentCondition{Type: t, Status: corev1.ConditionFalse, Reason: no, Message: msg}
		if ok {
			c.Status, c.Reason = corev1.ConditionTrue, yes
		}
		return c
	}
	available := st.AvailableReplicas >= want-int32(mu)
	st.Conditions = []appsv1.DeploymentCondition{
		cond(appsv1.DeploymentAvailable, available, "MinimumReplicasAvailable", "MinimumReplicasUnavailable",
			fmt.Sprintf("%d of %d replicas available", st.AvailableReplicas, want)),
		cond(appsv1.DeploymentProgressing, true, "NewReplicaSetAvailable", "",
			fmt.Sprintf("%d of %d replicas updated", st.UpdatedReplicas, want)),
	}
	if st.UpdatedReplicas != want || st.Replicas != want || st.AvailableReplicas != want {
		st.Conditions[1].Reason = "ReplicaSetUpdated"
	}
	return st
}

// Services are the stored Services with the addresses the control plane
// gave them (clusterIP, nodePort), and the Services the runtime registers
// without storing them (istiod, istio-ingressgateway).
func (l *Lab) Services(ctx context.Context, ns string) ([]corev1.Service, error) {
	items, err := l.List(ctx, "Service", ns, "")
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	reg, err := l.client().Registry(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the control plane's registry: %w", err)
	}
	stored := make([]corev1.Service, 0, len(items))
	for i, it := range items {
		var s corev1.Service
		if err := json.Unmarshal(it, &s); err != nil {
			return nil, fmt.Errorf("decode service %d of the control plane's list: %w", i, err)
		}
		stored = append(stored, s)
	}
	return services(stored, reg.Services, ns), nil
}

func services(stored []corev1.Service, reg []registry.Service, ns string) []corev1.Service {
	byKey := map[string]registry.Service{}
	for _, r := range reg {
		byKey[r.Key()] = r
	}
	out := make([]corev1.Service, 0, len(stored)+len(reg))
	seen := map[string]bool{}
	for _, s := range stored {
		k := s.Namespace + "/" + s.Name
		seen[k] = true
		if r, ok := byKey[k]; ok {
			addresses(&s, r)
		}
		out = append(out, s)
	}
	for _, r := range reg {
		if seen[r.Key()] || (ns != "" && r.Namespace != ns) {
			continue
		}
		out = append(out, registryService(r))
	}
	sort.Slice(out, func(i, j int) bool { return nsNameLess(out[i].ObjectMeta, out[j].ObjectMeta) })
	return out
}

// addresses fills in what the control plane allocated: the VIP as
// clusterIP and the nodePorts.
func addresses(s *corev1.Service, r registry.Service) {
	switch {
	case r.Headless:
		s.Spec.ClusterIP = corev1.ClusterIPNone
	case r.VIP.IsValid():
		s.Spec.ClusterIP = r.VIP.String()
	}
	if s.Spec.ClusterIP != "" {
		s.Spec.ClusterIPs = []string{s.Spec.ClusterIP}
	}
	for i := range s.Spec.Ports {
		sp := &s.Spec.Ports[i]
		for _, rp := range r.Ports {
			if uint32(sp.Port) == rp.Port && sp.NodePort == 0 && rp.NodePort != 0 {
				sp.NodePort = int32(rp.NodePort)
			}
		}
	}
}

// registryService shows a Service the runtime registered as Kubernetes
// would.
func registryService(r registry.Service) corev1.Service {
	typ := corev1.ServiceTypeClusterIP
	if r.Type != "" {
		typ = corev1.ServiceType(r.Type)
	}
	s := corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: r.Name, Namespace: r.Namespace, Labels: r.Labels},
		Spec:       corev1.ServiceSpec{Type: typ, Selector: r.Selector},
	}
	for _, p := range r.Ports {
		proto := corev1.ProtocolTCP
		if p.Protocol != "" {
			proto = corev1.Protocol(p.Protocol)
		}
		sp := corev1.ServicePort{Name: p.Name, Port: int32(p.Port), Protocol: proto,
			TargetPort: intstr.FromInt32(int32(p.Target()))}
		if p.AppProtocol != "" {
			ap := p.AppProtocol
			sp.AppProtocol = &ap
		}
		s.Spec.Ports = append(s.Spec.Ports, sp)
	}
	addresses(&s, r)
	return s
}

// systemNamespaces exist in every cluster, stored or not.
var systemNamespaces = []string{"default", "istio-system", "kube-system"}

// Namespaces are the stored Namespaces, the system ones and those the
// lab's pods run in, each Active.
func (l *Lab) Namespaces(ctx context.Context) ([]corev1.Namespace, error) {
	pods, err := l.pods()
	if err != nil {
		return nil, err
	}
	items, err := l.List(ctx, "Namespace", "", "")
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	stored := make([]corev1.Namespace, 0, len(items))
	for i, it := range items {
		var n corev1.Namespace
		if err := json.Unmarshal(it, &n); err != nil {
			return nil, fmt.Errorf("decode namespace %d of the control plane's list: %w", i, err)
		}
		stored = append(stored, n)
	}
	return namespaces(stored, pods), nil
}

func namespaces(stored []corev1.Namespace, pods []lab.Pod) []corev1.Namespace {
	out := make([]corev1.Namespace, 0, len(stored)+len(systemNamespaces))
	seen := map[string]bool{}
	for _, n := range stored {
		if n.Status.Phase == "" {
			n.Status.Phase = corev1.NamespaceActive
		}
		seen[n.Name] = true
		out = append(out, n)
	}
	names := append([]string(nil), systemNamespaces...)
	// The namespaces nobody applied are as old as the lab: its first pod.
	var born metav1.Time
	for _, p := range pods {
		names = append(names, p.Namespace)
		if !p.CreatedAt.IsZero() && (born.IsZero() || p.CreatedAt.Before(born.Time)) {
			born = metav1.NewTime(p.CreatedAt)
		}
	}
	for _, name := range names {
		if seen[name] {
			continue
		}
		seen[name] = true
		out = append(out, corev1.Namespace{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelMetadataName: name}, CreationTimestamp: born},
			Status:     corev1.NamespaceStatus{Phase: corev1.NamespaceActive},
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// RestartedAtAnnotation is the pod template annotation `kubectl rollout
// restart` sets.
const RestartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"

// RolloutRestart gives the Deployment's pod template a new restartedAt
// annotation, which the daemon rolls out as a new revision.
func (l *Lab) RolloutRestart(ctx context.Context, ns, deployment string) error {
	now := time.Now().Format(time.RFC3339)
	return l.updateDeployment(ctx, "restart", ns, deployment, func(u *unstructured.Unstructured) error {
		return unstructured.SetNestedField(u.Object, now, "spec", "template", "metadata", "annotations", RestartedAtAnnotation)
	})
}

// Scale sets the Deployment's replicas.
func (l *Lab) Scale(ctx context.Context, ns, deployment string, replicas int32) error {
	if replicas < 0 {
		return fmt.Errorf("scale deployment %s/%s: --replicas %d: want 0 or more", ns, deployment, replicas)
	}
	return l.updateDeployment(ctx, "scale", ns, deployment, func(u *unstructured.Unstructured) error {
		return unstructured.SetNestedField(u.Object, int64(replicas), "spec", "replicas")
	})
}

// conflictRetries bounds how often a change made between our read and our
// write is read again.
const conflictRetries = 5

// updateDeployment reads the stored Deployment, changes it and applies it
// with the resourceVersion it was read at, so a change someone made in
// between is never overwritten: the store refuses it (409) and it is read
// again.
func (l *Lab) updateDeployment(ctx context.Context, verb, ns, name string, change func(*unstructured.Unstructured) error) error {
	cl := l.client()
	for attempt := 1; ; attempt++ {
		list, err := cl.List(ctx, "Deployment", ns, name)
		var ae *api.APIError
		if (errors.As(err, &ae) && ae.Status == http.StatusNotFound) || (err == nil && len(list.Items) == 0) {
			return fmt.Errorf("deployment %s/%s not found; see `meshlab get deployments -n %s`", ns, name, ns)
		}
		if err != nil {
			return fmt.Errorf("%s deployment %s/%s: %w", verb, ns, name, err)
		}
		var u unstructured.Unstructured
		if err := u.UnmarshalJSON(list.Items[0]); err != nil {
			return fmt.Errorf("%s deployment %s/%s: decode the stored object: %w", verb, ns, name, err)
		}
		if err := change(&u); err != nil {
			return fmt.Errorf("%s deployment %s/%s: %w", verb, ns, name, err)
		}
		obj, err := u.MarshalJSON()
		if err != nil {
			return fmt.Errorf("%s deployment %s/%s: %w", verb, ns, name, err)
		}
		_, err = cl.Apply(ctx, api.ApplyRequest{Documents: []api.Document{{Source: verb + " deployment/" + name, Object: obj}}})
		if errors.As(err, &ae) && ae.Status == http.StatusConflict && attempt < conflictRetries {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s deployment %s/%s: %w", verb, ns, name, err)
		}
		return nil
	}
}
