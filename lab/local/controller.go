package local

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/inject"
	"github.com/meshlab/meshlab/dataplane/capture"
	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/podnet"
	"github.com/meshlab/meshlab/lab/process"
)

// The local runtime's kubelet and Deployment controller: it follows the
// Deployments, Namespaces, ConfigMaps and Secrets stored in the control
// plane and makes the pods match, as a ReplicaSet-per-template rolling
// update does, with Istio's injection rules deciding which pods get
// istio-init and istio-proxy.

// TemplateHashLabel is the label Kubernetes puts on a Deployment's pods
// to say which revision of its template they run (TemplateHash).
const TemplateHashLabel = "pod-template-hash"

// desired is what the store says should run.
type desired struct {
	namespaces  map[string]map[string]string // name → labels; system namespaces are there too
	deployments []*appsv1.Deployment
	configMaps  map[string]*corev1.ConfigMap // namespace/name
	secrets     map[string]*corev1.Secret
	rev         uint64 // the oldest store revision the lists were read at
}

func (r *Runtime) loadDesired(ctx context.Context) (desired, error) {
	d := desired{rev: ^uint64(0), namespaces: map[string]map[string]string{}, configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	for _, ns := range []string{"default", systemNamespace} {
		d.namespaces[ns] = nil
	}
	for _, kind := range []config.Kind{config.Namespace, config.Deployment, config.ConfigMap, config.Secret} {
		list, err := r.cp.List(ctx, string(kind), "", "")
		if err != nil {
			return d, fmt.Errorf("list %ss: %w", strings.ToLower(string(kind)), err)
		}
		d.rev = min(d.rev, list.Revision)
		for _, it := range list.Items {
			res, err := config.Unmarshal(it)
			if err != nil {
				return d, fmt.Errorf("read stored %s: %w", kind, err)
			}
			switch o := res.Object.(type) {
			case *corev1.Namespace:
				d.namespaces[o.Name] = o.Labels
			case *appsv1.Deployment:
				d.deployments = append(d.deployments, o)
			case *corev1.ConfigMap:
				d.configMaps[o.Namespace+"/"+o.Name] = o
			case *corev1.Secret:
				d.secrets[o.Namespace+"/"+o.Name] = o
			}
		}
	}
	return d, nil
}

// poke asks the controller for a pass soon.
func (r *Runtime) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// runController follows the store until ctx ends: a pass after every
// commit, after every pod readiness change, and every second (a rolling
// update moves on as pods become ready).
func (r *Runtime) runController(ctx context.Context) {
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		var rev uint64
		for ctx.Err() == nil {
			n, err := r.cp.WaitRevision(ctx, rev)
			if err != nil {
				if ctx.Err() == nil {
					r.log.Warn("watch the store", "err", err)
				}
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
				continue
			}
			if n != rev {
				rev = n
				r.poke()
			}
		}
	}()
	go func() {
		defer r.wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-r.wake:
			case <-tick.C:
			}
			if err := r.reconcile(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("reconcile", "err", err)
			}
		}
	}()
}

// reconcile makes one pass: every stored Deployment gets its pods, pods of
// Deployments no longer stored go.
func (r *Runtime) reconcile(ctx context.Context) error {
	d, err := r.loadDesired(ctx)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, dep := range d.deployments {
		want[dep.Namespace+"/"+dep.Name] = true
		r.reconcileDeployment(ctx, dep, d)
	}
	for _, p := range r.snapshotPods() {
		if p.owned && !p.Terminating && !want[p.Namespace+"/"+p.Deployment] {
			r.terminate(p)
		}
	}
	r.mu.Lock()
	r.synced = true
	r.reconciled = max(r.reconciled, d.rev)
	r.mu.Unlock()
	return nil
}

func (r *Runtime) snapshotPods() []*pod {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*pod(nil), r.pods...)
}

// rollingParams resolves a Deployment's maxSurge and maxUnavailable as the
// Deployment controller does: surge rounds up, unavailable down, and if both
// come to zero one pod may be unavailable.
func rollingParams(dep *appsv1.Deployment, replicas int) (surge, unavailable int) {
	s, u := intstr.FromString("25%"), intstr.FromString("25%")
	if ru := dep.Spec.Strategy.RollingUpdate; ru != nil {
		if ru.MaxSurge != nil {
			s = *ru.MaxSurge
		}
		if ru.MaxUnavailable != nil {
			u = *ru.MaxUnavailable
		}
	}
	surge, _ = intstr.GetScaledValueFromIntOrPercent(&s, replicas, true)
	unavailable, _ = intstr.GetScaledValueFromIntOrPercent(&u, replicas, false)
	if surge == 0 && unavailable == 0 {
		unavailable = 1
	}
	return surge, unavailable
}

// plan is what one pass does to one Deployment's pods.
type plan struct {
	create int
	remove []*pod
}

// planDeployment is the rolling update's arithmetic, kept apart from the
// pods' lifecycle so it can be tested: new pods run the current template,
// old ones an earlier one; it never goes above replicas+maxSurge pods nor
// below replicas-maxUnavailable ready ones (unready old pods go first, as
// they count for nothing), and scales the current template to replicas.
func planDeployment(dep *appsv1.Deployment, hash string, pods []*pod) plan {
	replicas := 1
	if dep.Spec.Replicas != nil {
		replicas = int(*dep.Spec.Replicas)
	}
	var cur, old []*pod
	ready := 0
	for _, p := range pods {
		if p.TemplateHash == hash {
			cur = append(cur, p)
		} else {
			old = append(old, p)
		}
		if p.Ready {
			ready++
		}
	}
	// Unready before ready, then newest first: what the ReplicaSet
	// controller removes first when it scales down.
	order := func(ps []*pod) {
		sort.SliceStable(ps, func(i, j int) bool {
			if ps[i].Ready != ps[j].Ready {
				return !ps[i].Ready
			}
			return ps[i].CreatedAt.After(ps[j].CreatedAt)
		})
	}
	order(cur)
	order(old)
	var pl plan
	if dep.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		if len(old) > 0 {
			pl.remove = old
			return pl
		}
		if len(cur) > replicas {
			pl.remove = cur[:len(cur)-replicas]
		} else {
			pl.create = replicas - len(cur)
		}
		return pl
	}
	surge, unavailable := rollingParams(dep, replicas)
	if len(old) == 0 {
		if len(cur) > replicas {
			pl.remove = cur[:len(cur)-replicas]
		} else {
			pl.create = replicas - len(cur)
		}
		return pl
	}
	if n := min(replicas+surge-len(cur)-len(old), replicas-len(cur)); n > 0 {
		pl.create = n
	}
	if len(cur) > replicas {
		pl.remove = append(pl.remove, cur[:len(cur)-replicas]...)
	}
	canGo := ready - (replicas - unavailable)
	for _, p := range old {
		switch {
		case !p.Ready:
			pl.remove = append(pl.remove, p)
		case canGo > 0:
			pl.remove = append(pl.remove, p)
			canGo--
		}
	}
	return pl
}

func (r *Runtime) reconcileDeployment(ctx context.Context, dep *appsv1.Deployment, d desired) {
	hash := TemplateHash(&dep.Spec.Template)
	var mine []*pod
	for _, p := range r.snapshotPods() {
		if p.owned && !p.Terminating && p.Namespace == dep.Namespace && p.Deployment == dep.Name {
			// A pod that could not start is replaced after a pause, as
			// kubelet backs off; it counts for nothing meanwhile.
			if p.failed != "" && time.Since(p.CreatedAt) > failedPodRetry {
				r.terminate(p)
				continue
			}
			mine = append(mine, p)
		}
	}
	pl := planDeployment(dep, hash, mine)
	for _, p := range pl.remove {
		r.terminate(p)
	}
	for range pl.create {
		r.createPod(ctx, dep, hash, d)
	}
}

const failedPodRetry = 5 * time.Second

// createPod starts a pod of dep's current template: recorded at once
// (so the next pass counts it), its network and containers set up in the
// background.
func (r *Runtime) createPod(ctx context.Context, dep *appsv1.Deployment, hash string, d desired) {
	t := dep.Spec.Template.DeepCopy()
	labels := map[string]string{TemplateHashLabel: hash}
	for k, v := range t.Labels {
		labels[k] = v
	}
	t.Labels = labels
	p := &pod{Pod: lab.Pod{Namespace: dep.Namespace, Name: podName(dep.Name, hash), Deployment: dep.Name,
		Labels: labels, Annotations: t.Annotations, Phase: "Pending", CreatedAt: time.Now().UTC(), TemplateHash: hash},
		owned: true}
	p.serviceAccount = t.Spec.ServiceAccountName
	if p.serviceAccount == "" {
		p.serviceAccount = "default"
	}
	if g := t.Spec.TerminationGracePeriodSeconds; g != nil && *g >= 0 {
		d := min(time.Duration(*g)*time.Second, process.DefaultGrace)
		p.grace = &d
	}
	podCtx, cancel := context.WithCancel(ctx)
	p.cancel = cancel
	ip := r.allocIP()
	p.IP = ip.String()
	r.mu.Lock()
	r.pods = append(r.pods, p)
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := r.startPod(podCtx, p, t, d); err != nil {
			r.log.Warn("start pod", "pod", p.Namespace+"/"+p.Name, "err", err)
			r.mu.Lock()
			p.failed = err.Error()
			p.Phase = "Failed"
			r.mu.Unlock()
		}
	}()
}

// startPod does what kubelet, the CNI plugin and Istio's injection do for a
// new pod: its network namespace, then (if Istio's rules inject it)
// istio-init's capture rules and istio-proxy, then the app's containers,
// then the readiness watch that makes it an endpoint.
func (r *Runtime) startPod(ctx context.Context, p *pod, t *corev1.PodTemplateSpec, d desired) error {
	np, err := Network.AddPod(ctx, p.Namespace+"-"+p.Name, netip.MustParseAddr(p.IP))
	if err != nil {
		return fmt.Errorf("create pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	// What the pod runs, as the injector would write it: the recorded spec
	// `get pods -o yaml` shows, with istio-init and istio-proxy.
	shown := &corev1.Pod{ObjectMeta: t.ObjectMeta, Spec: *t.Spec.DeepCopy()}
	shown.Name = p.Name
	nsLabels, known := d.namespaces[p.Namespace]
	dec := inject.Pod(shown, p.Namespace, nsLabels, known, inject.Params{Image: Image + ":dev",
		DiscoveryAddress: fmt.Sprintf("%s:%d", r.istiodIP, XDSTLSPort)})
	r.mu.Lock()
	p.Netns = np.NetnsPath
	p.noSidecar = !dec.Inject
	p.Labels = shown.Labels
	p.Annotations = shown.Annotations
	p.Spec = &shown.Spec
	r.mu.Unlock()
	r.log.Debug("injection", "pod", p.Namespace+"/"+p.Name, "inject", dec.Inject, "why", dec.Reason)
	if dec.Inject {
		// istio-init: the capture rules go in before any container
		// starts, so no connection of the app escapes the sidecar.
		if err := podnet.Do(p.Netns, func() error { return capture.Install(capture.DefaultOptions()) }); err != nil {
			return fmt.Errorf("istio-init of %s/%s: %w", p.Namespace, p.Name, err)
		}
		mounts, err := r.proxyCredentials(ctx, p)
		if err != nil {
			return err
		}
		if err := r.startContainer(ctx, p, inject.ProxyContainer, r.proxyArgv("proxy", p), nil, identity{ProxyUID, ProxyUID}, "", mounts...); err != nil {
			return err
		}
	} else {
		// Out of the mesh: the cluster's DNS and Service VIPs, as
		// CoreDNS and kube-proxy give a pod in a cluster.
		if err := podDNS(p.Netns); err != nil {
			return fmt.Errorf("pod %s/%s: %w", p.Namespace, p.Name, err)
		}
		if err := r.podServices(p.Netns); err != nil {
			return fmt.Errorf("pod %s/%s: %w", p.Namespace, p.Name, err)
		}
	}
	def := r.allocUID()
	volumes, err := r.writeVolumes(p, &t.Spec, d)
	if err != nil {
		return err
	}
	var targets []containerTarget
	for i, c := range t.Spec.Containers {
		argv := Argv(&c)
		if len(argv) == 0 {
			return fmt.Errorf("pod %s/%s container %s: nothing to run: give the container a command (the local runtime has no image store to take an entrypoint from)", p.Namespace, p.Name, c.Name)
		}
		id, err := appIdentity(t.Spec, i, def)
		if err != nil {
			return fmt.Errorf("pod %s/%s: %w", p.Namespace, p.Name, err)
		}
		env, err := resolveEnv(p, c, d)
		if err != nil {
			return fmt.Errorf("pod %s/%s container %s: CreateContainerConfigError: %w", p.Namespace, p.Name, c.Name, err)
		}
		var mounts []process.Mount
		for _, vm := range c.VolumeMounts {
			src, ok := volumes[vm.Name]
			if !ok {
				return fmt.Errorf("pod %s/%s container %s: volumeMount %q names no volume of the pod", p.Namespace, p.Name, c.Name, vm.Name)
			}
			if vm.SubPath != "" {
				src = filepath.Join(src, filepath.Clean("/"+vm.SubPath))
			}
			mounts = append(mounts, process.Mount{Source: src, Target: vm.MountPath, ReadOnly: vm.ReadOnly})
		}
		if err := r.startContainer(ctx, p, c.Name, argv, env, id, c.WorkingDir, mounts...); err != nil {
			return err
		}
		targets = append(targets, containerTarget{spec: c, probe: probeTarget{Netns: p.Netns, Self: r.opts.Self,
			UID: id.uid, GID: id.gid, Env: containerEnv(p, id, env), Dir: c.WorkingDir}})
	}
	if err := r.cp.PutWorkload(ctx, r.workload(p, false)); err != nil {
		return err
	}
	return r.runProbes(ctx, p, targets)
}

// containerTarget is one container as its probes see it.
type containerTarget struct {
	spec  corev1.Container
	probe probeTarget
}

// sidecarReadiness is istio-proxy's readiness probe as Istio's injector
// writes it (/healthz/ready on 15021), polled every second.
var sidecarReadiness = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
	Path: "/healthz/ready", Port: intstr.FromInt32(inject.ReadyPort)}},
	TimeoutSeconds: 1, PeriodSeconds: 1, SuccessThreshold: 1, FailureThreshold: 30}

// runProbes runs every container's probes as kubelet does: a container is
// ready when its readiness probe passes (or, without one, while it runs),
// a failed liveness or startup probe restarts it, and the pod is ready
// when all of its containers are — only then is it an endpoint.
func (r *Runtime) runProbes(ctx context.Context, p *pod, targets []containerTarget) error {
	if !p.noSidecar {
		proxy := corev1.Container{Name: inject.ProxyContainer, ReadinessProbe: sidecarReadiness}
		targets = append([]containerTarget{{spec: proxy, probe: probeTarget{Netns: p.Netns, Self: r.opts.Self, UID: ProxyUID, GID: ProxyUID}}}, targets...)
	}
	r.mu.Lock()
	sups := map[string]*process.Supervisor{}
	for i, n := range p.names {
		sups[n] = p.containers[i]
	}
	r.mu.Unlock()
	ready := make([]bool, len(targets))
	var podReady bool
	var mu sync.Mutex
	report := func(i int, ok bool) {
		mu.Lock()
		defer mu.Unlock()
		ready[i] = ok
		all := !slices.Contains(ready, false)
		if all == podReady {
			return
		}
		podReady = all
		if err := r.cp.PutWorkload(ctx, r.workload(p, all)); err != nil && ctx.Err() == nil {
			r.log.Warn("report readiness", "pod", p.Namespace+"/"+p.Name, "err", err)
		}
		r.mu.Lock()
		p.Ready = all
		r.mu.Unlock()
		r.refreshDNS()
		r.poke()
		// `get pods` and `status` read the record: it changes now, not at
		// the next periodic write.
		r.writeStatus()
	}
	for i, t := range targets {
		sup := sups[t.spec.Name]
		if sup == nil {
			return fmt.Errorf("pod %s/%s: no container %s to probe", p.Namespace, p.Name, t.spec.Name)
		}
		t.probe.State = sup.State
		field := fmt.Sprintf("spec.containers[%d]", i)
		cp, err := newContainerProbes(field, &t.spec, t.probe)
		if err != nil {
			return fmt.Errorf("pod %s/%s: %w", p.Namespace, p.Name, err)
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			cp.run(ctx, func(ok bool, reason string) {
				if !ok && reason != "" {
					r.log.Debug("not ready", "pod", p.Namespace+"/"+p.Name, "container", t.spec.Name, "why", reason)
				}
				report(i, ok)
			}, func(reason string) {
				r.log.Info("restart container", "pod", p.Namespace+"/"+p.Name, "container", t.spec.Name, "why", reason)
				if err := sup.Restart(ctx, reason); err != nil && ctx.Err() == nil {
					r.log.Warn("restart container", "pod", p.Namespace+"/"+p.Name, "container", t.spec.Name, "err", err)
				}
			})
		}()
	}
	return nil
}

// resolveEnv is a container's env and envFrom, with values from the pod's
// fields, ConfigMaps and Secrets, as kubelet resolves them; a missing
// ConfigMap, Secret or key that is not optional is an error.
func resolveEnv(p *pod, c corev1.Container, d desired) ([]string, error) {
	var env []string
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			cm, ok := d.configMaps[p.Namespace+"/"+ef.ConfigMapRef.Name]
			if !ok {
				if ef.ConfigMapRef.Optional != nil && *ef.ConfigMapRef.Optional {
					continue
				}
				return nil, fmt.Errorf("configmap %q not found", ef.ConfigMapRef.Name)
			}
			for _, k := range slices.Sorted(maps.Keys(cm.Data)) {
				env = append(env, ef.Prefix+k+"="+cm.Data[k])
			}
		case ef.SecretRef != nil:
			s, ok := d.secrets[p.Namespace+"/"+ef.SecretRef.Name]
			if !ok {
				if ef.SecretRef.Optional != nil && *ef.SecretRef.Optional {
					continue
				}
				return nil, fmt.Errorf("secret %q not found", ef.SecretRef.Name)
			}
			for _, k := range slices.Sorted(maps.Keys(secretData(s))) {
				env = append(env, ef.Prefix+k+"="+string(secretData(s)[k]))
			}
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env = append(env, e.Name+"="+expandEnv(e.Value, env))
			continue
		}
		v, skip, err := envValue(p, e.ValueFrom, d)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", e.Name, err)
		}
		if !skip {
			env = append(env, e.Name+"="+v)
		}
	}
	return env, nil
}

// expandEnv does kubelet's $(VAR) expansion from the variables before.
func expandEnv(v string, env []string) string {
	if !strings.Contains(v, "$(") {
		return v
	}
	for i := len(env) - 1; i >= 0; i-- {
		k, val, _ := strings.Cut(env[i], "=")
		v = strings.ReplaceAll(v, "$("+k+")", val)
	}
	return v
}

func envValue(p *pod, src *corev1.EnvVarSource, d desired) (string, bool, error) {
	switch {
	case src.FieldRef != nil:
		switch path := src.FieldRef.FieldPath; {
		case path == "metadata.name":
			return p.Name, false, nil
		case path == "metadata.namespace":
			return p.Namespace, false, nil
		case path == "status.podIP", path == "status.podIPs":
			return p.IP, false, nil
		case path == "status.hostIP", path == "status.hostIPs":
			return Network.Gateway.String(), false, nil
		case path == "spec.serviceAccountName":
			return p.serviceAccount, false, nil
		case path == "spec.nodeName":
			return "meshlab-local", false, nil
		case strings.HasPrefix(path, "metadata.labels['"):
			return p.Labels[strings.TrimSuffix(strings.TrimPrefix(path, "metadata.labels['"), "']")], false, nil
		case strings.HasPrefix(path, "metadata.annotations['"):
			return p.Annotations[strings.TrimSuffix(strings.TrimPrefix(path, "metadata.annotations['"), "']")], false, nil
		default:
			return "", false, fmt.Errorf("fieldRef %q is not one the local runtime knows", path)
		}
	case src.ConfigMapKeyRef != nil:
		ref := src.ConfigMapKeyRef
		optional := ref.Optional != nil && *ref.Optional
		cm, ok := d.configMaps[p.Namespace+"/"+ref.Name]
		if !ok {
			return "", optional, optionalErr(optional, "configmap %q not found", ref.Name)
		}
		v, ok := cm.Data[ref.Key]
		if !ok {
			return "", optional, optionalErr(optional, "key %q not found in configmap %q", ref.Key, ref.Name)
		}
		return v, false, nil
	case src.SecretKeyRef != nil:
		ref := src.SecretKeyRef
		optional := ref.Optional != nil && *ref.Optional
		s, ok := d.secrets[p.Namespace+"/"+ref.Name]
		if !ok {
			return "", optional, optionalErr(optional, "secret %q not found", ref.Name)
		}
		v, ok := secretData(s)[ref.Key]
		if !ok {
			return "", optional, optionalErr(optional, "key %q not found in secret %q", ref.Key, ref.Name)
		}
		return string(v), false, nil
	case src.ResourceFieldRef != nil:
		return "0", false, nil
	}
	return "", false, fmt.Errorf("valueFrom names no source")
}

func optionalErr(optional bool, format string, args ...any) error {
	if optional {
		return nil
	}
	return fmt.Errorf(format, args...)
}

// secretData is a Secret's data with stringData folded in, as the API
// server stores it.
func secretData(s *corev1.Secret) map[string][]byte {
	out := map[string][]byte{}
	for k, v := range s.Data {
		out[k] = v
	}
	for k, v := range s.StringData {
		out[k] = []byte(v)
	}
	return out
}

// writeVolumes writes a pod's configMap, secret and emptyDir volumes into
// its directory in the state dir, one file per key, as kubelet does.
func (r *Runtime) writeVolumes(p *pod, spec *corev1.PodSpec, d desired) (map[string]string, error) {
	if len(spec.Volumes) == 0 {
		return nil, nil
	}
	base := filepath.Join(r.opts.StateDir, "pods", p.Namespace, p.Name, "volumes")
	out := map[string]string{}
	for _, v := range spec.Volumes {
		dir := filepath.Join(base, v.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("volume %s of %s/%s: %w", v.Name, p.Namespace, p.Name, err)
		}
		files := map[string][]byte{}
		var items []corev1.KeyToPath
		switch {
		case v.ConfigMap != nil:
			cm, ok := d.configMaps[p.Namespace+"/"+v.ConfigMap.Name]
			if !ok && (v.ConfigMap.Optional == nil || !*v.ConfigMap.Optional) {
				return nil, fmt.Errorf("volume %s: configmap %q not found", v.Name, v.ConfigMap.Name)
			}
			if ok {
				for k, val := range cm.Data {
					files[k] = []byte(val)
				}
				for k, val := range cm.BinaryData {
					files[k] = val
				}
			}
			items = v.ConfigMap.Items
		case v.Secret != nil:
			s, ok := d.secrets[p.Namespace+"/"+v.Secret.SecretName]
			if !ok && (v.Secret.Optional == nil || !*v.Secret.Optional) {
				return nil, fmt.Errorf("volume %s: secret %q not found", v.Name, v.Secret.SecretName)
			}
			if ok {
				files = secretData(s)
			}
			items = v.Secret.Items
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				var add map[string][]byte
				var its []corev1.KeyToPath
				switch {
				case src.ConfigMap != nil:
					cm, ok := d.configMaps[p.Namespace+"/"+src.ConfigMap.Name]
					if !ok && (src.ConfigMap.Optional == nil || !*src.ConfigMap.Optional) {
						return nil, fmt.Errorf("volume %s: configmap %q not found", v.Name, src.ConfigMap.Name)
					}
					if ok {
						add = map[string][]byte{}
						for k, val := range cm.Data {
							add[k] = []byte(val)
						}
					}
					its = src.ConfigMap.Items
				case src.Secret != nil:
					sec, ok := d.secrets[p.Namespace+"/"+src.Secret.Name]
					if !ok && (src.Secret.Optional == nil || !*src.Secret.Optional) {
						return nil, fmt.Errorf("volume %s: secret %q not found", v.Name, src.Secret.Name)
					}
					if ok {
						add = secretData(sec)
					}
					its = src.Secret.Items
				}
				for k, b := range pick(add, its) {
					files[k] = b
				}
			}
		case v.EmptyDir != nil:
			// Anyone in the pod may write an emptyDir, as kubelet makes it.
			if err := os.Chmod(dir, 0o777); err != nil {
				return nil, fmt.Errorf("volume %s of %s/%s: %w", v.Name, p.Namespace, p.Name, err)
			}
		}
		files = pick(files, items)
		for name, b := range files {
			path := filepath.Join(dir, filepath.Clean("/"+name))
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return nil, err
			}
			if err := os.WriteFile(path, b, 0o644); err != nil {
				return nil, fmt.Errorf("volume %s of %s/%s: %w", v.Name, p.Namespace, p.Name, err)
			}
		}
		out[v.Name] = dir
	}
	return out, nil
}

// terminate takes a pod down as kubelet does on a delete: it leaves its
// Services' endpoints first, then its containers get SIGTERM and their
// grace period, then its network goes.
func (r *Runtime) terminate(p *pod) {
	r.mu.Lock()
	if p.Terminating {
		r.mu.Unlock()
		return
	}
	p.Terminating = true
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), process.DefaultGrace+cleanupTimeout)
		defer cancel()
		if p.cancel != nil {
			p.cancel()
		}
		if err := r.cp.DeleteWorkload(ctx, p.Namespace, p.Name); err != nil {
			r.log.Warn("remove endpoint", "pod", p.Namespace+"/"+p.Name, "err", err)
		}
		if !p.noSidecar {
			// A deleted pod's identity token opens nothing any more.
			if err := r.cp.RevokePodToken(ctx, p.Namespace, p.Name); err != nil {
				r.log.Warn("revoke the pod's token", "pod", p.Namespace+"/"+p.Name, "err", err)
			}
		}
		// The proxies that sent it traffic need the endpoint update before
		// the pod stops answering: kubelet does not wait (Kubernetes users
		// add a preStop sleep for it); the lab waits as such a hook would.
		time.Sleep(endpointPropagation)
		r.mu.Lock()
		cs := append([]*process.Supervisor(nil), p.containers...)
		r.mu.Unlock()
		done := make(chan struct{}, len(cs))
		for _, c := range cs {
			go func() {
				if err := c.Stop(ctx); err != nil {
					r.log.Warn("stop container", "pod", p.Namespace+"/"+p.Name, "err", err)
				}
				done <- struct{}{}
			}()
		}
		for range cs {
			<-done
		}
		if p.Netns != "" {
			if err := Network.DelPod(ctx, p.Namespace+"-"+p.Name); err != nil {
				r.log.Warn("remove pod network", "pod", p.Namespace+"/"+p.Name, "err", err)
			}
		}
		_ = os.RemoveAll(filepath.Join(r.opts.StateDir, "pods", p.Namespace, p.Name))
		r.mu.Lock()
		r.pods = slices.DeleteFunc(r.pods, func(q *pod) bool { return q == p })
		r.freeIPs = append(r.freeIPs, netip.MustParseAddr(p.IP))
		r.mu.Unlock()
		r.poke()
		r.writeStatus()
	}()
}

const endpointPropagation = time.Second

// pick is a volume's items: every key as a file of its name, or only the
// listed keys at their paths.
func pick(files map[string][]byte, items []corev1.KeyToPath) map[string][]byte {
	if len(items) == 0 {
		return files
	}
	picked := map[string][]byte{}
	for _, it := range items {
		if b, ok := files[it.Key]; ok {
			picked[it.Path] = b
		}
	}
	return picked
}
