package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sort"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/kind"
	"github.com/meshlab/meshlab/lab/metallb"
)

// FieldManager is the server-side apply field manager of what `meshlab
// apply` writes, so that kubectl shows who owns which field.
const FieldManager = "meshlab"

// RestartedAtAnnotation is the pod template annotation `kubectl rollout
// restart` sets; a new value is a new template, so the Deployment
// controller rolls every pod.
const RestartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"

// Runtime is lab.Runtime on a Kubernetes cluster: a kind lab this package
// brought up, or any cluster meshlab was installed on. Every command goes
// through client-go; the clients are made on first use, so that a cluster
// that is gone still has a Status (Unreachable) and a Down.
type Runtime struct {
	stateDir   string
	kubeconfig string // "" for client-go's default loading rules
	kindDeps   *KindDeps
	// cfg, when set, is the cluster's config as given (in-cluster), in
	// place of a kubeconfig.
	cfg *rest.Config

	mu      sync.Mutex
	name    string
	context string // the kubeconfig context; "" for the current one
	c       *clients
}

var _ lab.Runtime = (*Runtime)(nil)

// KindDeps is what bringing a kind lab up needs from the command that
// builds it: the meshlab image and the mesh installer (lab/kube/install).
// Provider and Subnets are kind and the container engine's network when
// nil; tests give fakes.
type KindDeps struct {
	Image    func(ctx context.Context) (kind.Image, error)
	Install  MeshInstaller
	Provider kind.Provider
	Subnets  func(ctx context.Context) ([]netip.Prefix, error)
}

// Open returns the runtime of the cluster a command acts on. With the kind
// lab's record in stateDir it is that kind cluster (its context, in
// kubeconfig or in client-go's default kubeconfig when kubeconfig is "");
// without one it is the current context of kubeconfig ($KUBECONFIG, else
// ~/.kube/config when ""), a cluster meshlab was installed on.
func Open(stateDir, kubeconfig string) (*Runtime, error) {
	r := &Runtime{stateDir: stateDir, kubeconfig: kubeconfig, name: "kube"}
	rec, err := ReadRecord(stateDir)
	switch {
	case err == nil:
		r.name, r.context = "kind", rec.Context
	case errors.Is(err, os.ErrNotExist):
	default:
		return nil, fmt.Errorf("read the kind lab's record in %s: %w", stateDir, err)
	}
	return r, nil
}

// NewKind returns the runtime of the kind lab recorded in stateDir (or to
// be brought up there by Up), which reaches the cluster through client-go's
// default kubeconfig, where kind writes its context.
func NewKind(stateDir string, deps KindDeps) *Runtime {
	return &Runtime{stateDir: stateDir, name: "kind", context: kind.Context(kind.DefaultName), kindDeps: &deps}
}

// InCluster returns the runtime of the cluster this process runs in, with
// its pod's service account (client-go's in-cluster config): what the
// console's Deployment reads pods, logs and config through.
func InCluster() (*Runtime, error) {
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("load the in-cluster config (is this a pod with a service account?): %w", err)
	}
	return ForConfig(cfg), nil
}

// ForConfig returns the runtime of the cluster cfg reaches ("kube").
func ForConfig(cfg *rest.Config) *Runtime {
	return &Runtime{name: "kube", cfg: rest.CopyConfig(cfg)}
}

// Name is "kind" for a kind lab, "kube" for another cluster.
func (r *Runtime) Name() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.name
}

// clients are the API clients of one cluster.
type clients struct {
	cfg    *rest.Config
	kube   kubernetes.Interface
	dyn    dynamic.Interface
	mapper meta.RESTMapperWithContext
	// reset forgets the discovery cache, for kinds served since.
	reset func()
}

// restConfig loads the kubeconfig as kubectl does, with the lab's context.
func (r *Runtime) restConfig() (*rest.Config, error) {
	if r.cfg != nil {
		return rest.CopyConfig(r.cfg), nil
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if r.kubeconfig != "" {
		rules.ExplicitPath = r.kubeconfig
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
		&clientcmd.ConfigOverrides{CurrentContext: r.context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load the kubeconfig: %w", err)
	}
	return cfg, nil
}

func (r *Runtime) clients() (*clients, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.c != nil {
		return r.c, nil
	}
	cfg, err := r.restConfig()
	if err != nil {
		return nil, err
	}
	// client-go's default (5 requests a second) would throttle an apply
	// of a few dozen documents, three requests each; these are kubectl's.
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 50, 300
	}
	c, err := newClients(cfg)
	if err != nil {
		return nil, err
	}
	r.c = c
	return c, nil
}

func newClients(cfg *rest.Config) (*clients, error) {
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes discovery client: %w", err)
	}
	cached := memory.NewMemCacheClientWithContext(dc)
	deferred := restmapper.NewDeferredDiscoveryRESTMapperWithContext(cached)
	return &clients{
		cfg: cfg, kube: kc, dyn: dyn,
		mapper: restmapper.NewShortcutExpanderWithContext(deferred, cached, func(string) {}),
		reset:  deferred.Reset,
	}, nil
}

// Up brings a kind lab up (see the package function Up), then applies
// o.Manifests as `meshlab apply -f` would. Only a runtime from NewKind can.
func (r *Runtime) Up(ctx context.Context, o lab.UpOptions) error {
	if r.kindDeps == nil {
		return fmt.Errorf("up: this lab is the cluster of context %q, which meshlab does not create; `meshlab up --runtime kind` makes a kind lab, `meshlab install` puts the mesh on a cluster", r.context)
	}
	// Istio's way is meshConfig.defaultConfig.proxyMetadata.SECRET_TTL
	// for the proxies and DEFAULT_WORKLOAD_CERT_TTL in istiod's env; the
	// kind install does not set either yet, and ignoring the flag would
	// leave 24h certificates behind a user who asked for seconds.
	if o.WorkloadCertTTL != 0 {
		return fmt.Errorf("up: --workload-cert-ttl is for the local runtime only; on a cluster set meshConfig.defaultConfig.proxyMetadata.SECRET_TTL and istiod's DEFAULT_WORKLOAD_CERT_TTL, as in Istio")
	}
	d := r.kindDeps
	// The manifests are read first: a typo should not cost a cluster.
	var docs []lab.Document
	for _, f := range o.Manifests {
		ds, err := readManifest(f)
		if err != nil {
			return fmt.Errorf("up: %w", err)
		}
		docs = append(docs, ds...)
	}
	if err := lab.PrepareStateDir(r.stateDir); err != nil {
		return err
	}
	p, subnets := d.Provider, d.Subnets
	var fromEngine func(ctx context.Context, refs []string) ([]kind.Image, error)
	if p == nil || subnets == nil || o.Kind.Archive != "" {
		engine, err := kind.Usable()
		if err != nil {
			return fmt.Errorf("--runtime kind: %w", err)
		}
		if o.Kind.Archive != "" {
			if err := loadArchive(ctx, engine.Socket, o.Kind.Archive, o.Out); err != nil {
				return err
			}
		}
		fromEngine = func(ctx context.Context, refs []string) ([]kind.Image, error) {
			return engineImages(ctx, engine.Socket, refs)
		}
		if subnets == nil {
			subnets = func(ctx context.Context) ([]netip.Prefix, error) {
				return engine.NetworkSubnets(ctx, kind.NetworkName())
			}
		}
		if p == nil {
			if p, err = kind.NewProvider(); err != nil {
				return err
			}
		}
	}
	ns := o.BookinfoNamespace
	if o.NoBookinfo {
		ns = ""
	}
	if err := Up(ctx, Options{
		Cluster: kind.Cluster{
			Name: kind.DefaultName, Workers: o.Nodes, NodeImage: o.Kind.Node,
			HostAddr: o.HostAddr, HTTPPort: o.HTTPPort, HTTPSPort: o.HTTPSPort,
		},
		StateDir: r.stateDir, Image: d.Image, Subnets: subnets, Install: d.Install,
		EngineImages:      fromEngine,
		MetalLBImages:     metallb.Images{Controller: o.Kind.MetalLBController, Speaker: o.Kind.MetalLBSpeaker},
		BookinfoNamespace: ns, SharedIPKey: o.SharedIPKey, MeshConfig: o.MeshConfig, Out: o.Out,
	}, p); err != nil {
		return err
	}
	rec, err := ReadRecord(r.stateDir)
	if err != nil {
		return fmt.Errorf("read the kind lab's record: %w", err)
	}
	r.mu.Lock()
	r.name, r.context, r.c = "kind", rec.Context, nil
	r.mu.Unlock()
	if len(docs) == 0 {
		return nil
	}
	t := time.Now()
	res, err := r.Apply(ctx, lab.ApplyRequest{Documents: docs, Namespace: "default"})
	if err != nil {
		return fmt.Errorf("up: the lab is up, but its manifests were not applied (fix them and `meshlab apply -f` them):\n%w", err)
	}
	if o.Out != nil {
		fmt.Fprintf(o.Out, "✓ %-22s %-44s %6.1fs\n", "manifests", fmt.Sprintf("%d objects applied", len(res.Changes)), time.Since(t).Seconds())
	}
	return nil
}

// Down deletes the kind cluster and the lab's record; with o.Purge, the
// state directory too. A cluster meshlab was only installed on is not
// deleted.
func (r *Runtime) Down(ctx context.Context, o lab.DownOptions) error {
	if r.Name() != "kind" {
		return fmt.Errorf("down: the cluster of context %q is not a kind lab meshlab made, so it is not deleted; `meshlab uninstall` removes the mesh from it", r.context)
	}
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	var p kind.Provider
	if r.kindDeps != nil {
		p = r.kindDeps.Provider
	}
	if p == nil {
		var err error
		if p, err = kind.NewProvider(); err != nil {
			return err
		}
	}
	name := kind.DefaultName
	if rec, err := ReadRecord(r.stateDir); err == nil {
		name = rec.Cluster
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read the kind lab's record: %w", err)
	}
	if err := Down(ctx, r.stateDir, name, p, out); err != nil {
		return err
	}
	if o.Purge {
		if os.Geteuid() == 0 {
			if _, err := lab.CheckStateDir(r.stateDir); err != nil {
				return fmt.Errorf("not purging: %w", err)
			}
		}
		if err := os.RemoveAll(r.stateDir); err != nil {
			return fmt.Errorf("purge %s: %w", r.stateDir, err)
		}
		fmt.Fprintf(out, "✓ %s removed\n", r.stateDir)
	}
	return nil
}

// Status reports the lab as `status` shows it; a cluster that does not
// answer is a report (phase Unreachable), not an error.
func (r *Runtime) Status(ctx context.Context) (lab.StatusReport, error) {
	rec, err := ReadRecord(r.stateDir)
	switch {
	case err == nil:
	case errors.Is(err, os.ErrNotExist):
		// A cluster meshlab was installed on: named by its context.
		rec = Record{Runtime: r.Name(), Context: r.context}
		if raw, err := r.rawConfig(); err == nil {
			if rec.Context == "" {
				rec.Context = raw.CurrentContext
			}
			if c := raw.Contexts[rec.Context]; c != nil {
				rec.Cluster = c.Cluster
			}
		}
	default:
		return nil, fmt.Errorf("read the kind lab's record: %w", err)
	}
	return readStatus(ctx, rec, r.restConfig), nil
}

func (r *Runtime) rawConfig() (clientcmdapi.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if r.kubeconfig != "" {
		rules.ExplicitPath = r.kubeconfig
	}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).RawConfig()
}

// Pods lists the pods of ns ("" for every namespace), sorted by namespace
// then name, with apiVersion and kind set as kubectl's -o yaml shows them.
func (r *Runtime) Pods(ctx context.Context, ns string) ([]corev1.Pod, error) {
	c, err := r.clients()
	if err != nil {
		return nil, err
	}
	l, err := c.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list pods%s: %w", inNS(ns), err)
	}
	sort.Slice(l.Items, func(i, j int) bool { return less(&l.Items[i].ObjectMeta, &l.Items[j].ObjectMeta) })
	for i := range l.Items {
		l.Items[i].TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
	}
	return l.Items, nil
}

// Deployments lists the Deployments of ns, sorted.
func (r *Runtime) Deployments(ctx context.Context, ns string) ([]appsv1.Deployment, error) {
	c, err := r.clients()
	if err != nil {
		return nil, err
	}
	l, err := c.kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list deployments%s: %w", inNS(ns), err)
	}
	sort.Slice(l.Items, func(i, j int) bool { return less(&l.Items[i].ObjectMeta, &l.Items[j].ObjectMeta) })
	for i := range l.Items {
		l.Items[i].TypeMeta = metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"}
	}
	return l.Items, nil
}

// Services lists the Services of ns, sorted.
func (r *Runtime) Services(ctx context.Context, ns string) ([]corev1.Service, error) {
	c, err := r.clients()
	if err != nil {
		return nil, err
	}
	l, err := c.kube.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list services%s: %w", inNS(ns), err)
	}
	sort.Slice(l.Items, func(i, j int) bool { return less(&l.Items[i].ObjectMeta, &l.Items[j].ObjectMeta) })
	for i := range l.Items {
		l.Items[i].TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Service"}
	}
	return l.Items, nil
}

// Namespaces lists the namespaces, sorted by name.
func (r *Runtime) Namespaces(ctx context.Context) ([]corev1.Namespace, error) {
	c, err := r.clients()
	if err != nil {
		return nil, err
	}
	l, err := c.kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	sort.Slice(l.Items, func(i, j int) bool { return l.Items[i].Name < l.Items[j].Name })
	for i := range l.Items {
		l.Items[i].TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}
	}
	return l.Items, nil
}

func less(a, b *metav1.ObjectMeta) bool {
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}

func inNS(ns string) string {
	if ns == "" {
		return ""
	}
	return " in " + ns
}

// deploymentNotFound tells the user where to look.
func deploymentNotFound(ns, name string) error {
	return fmt.Errorf("deployment %s/%s not found; see `meshlab get deployments -n %s`", ns, name, ns)
}

// RolloutRestart does what `kubectl rollout restart` does: it sets the pod
// template's restartedAt annotation to now (RFC 3339, so a second restart
// within the same second changes nothing, as with kubectl), and the
// Deployment controller replaces the pods by its rolling update.
func (r *Runtime) RolloutRestart(ctx context.Context, ns, deployment string) error {
	c, err := r.clients()
	if err != nil {
		return err
	}
	d, err := c.kube.AppsV1().Deployments(ns).Get(ctx, deployment, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return deploymentNotFound(ns, deployment)
	}
	if err != nil {
		return fmt.Errorf("rollout restart deployment %s/%s: %w", ns, deployment, err)
	}
	if d.Spec.Paused {
		return fmt.Errorf("rollout restart deployment %s/%s: it is paused; resume it first (kubectl rollout resume)", ns, deployment)
	}
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{RestartedAtAnnotation: time.Now().Format(time.RFC3339)}}}}})
	if err != nil {
		return err
	}
	_, err = c.kube.AppsV1().Deployments(ns).Patch(ctx, deployment, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager})
	if apierrors.IsNotFound(err) {
		return deploymentNotFound(ns, deployment)
	}
	if err != nil {
		return fmt.Errorf("rollout restart deployment %s/%s: %w", ns, deployment, err)
	}
	return nil
}

// Scale sets a Deployment's replicas through its scale subresource, as
// `kubectl scale` does.
func (r *Runtime) Scale(ctx context.Context, ns, deployment string, replicas int32) error {
	if replicas < 0 {
		return fmt.Errorf("scale deployment %s/%s: replicas must be 0 or more, not %d", ns, deployment, replicas)
	}
	c, err := r.clients()
	if err != nil {
		return err
	}
	patch := fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, replicas)
	_, err = c.kube.AppsV1().Deployments(ns).Patch(ctx, deployment, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager}, "scale")
	if apierrors.IsNotFound(err) {
		return deploymentNotFound(ns, deployment)
	}
	if err != nil {
		return fmt.Errorf("scale deployment %s/%s: %w", ns, deployment, err)
	}
	return nil
}
