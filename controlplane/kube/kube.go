// Package kube feeds the control plane from a Kubernetes API server: it
// watches Services, EndpointSlices, Pods and Namespaces with client-go
// informers and keeps the registry equal to what they say, and watches the
// Istio resources and keeps the store equal to them, so that the store →
// translation → xDS pipeline of the local runtime serves a cluster
// unchanged. It runs in a pod (in-cluster config) or against a kubeconfig
// (the developer loop).
package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/meshconfig"
	"github.com/meshlab/meshlab/controlplane/registry"
	"github.com/meshlab/meshlab/controlplane/store"
)

// RESTConfig loads a kubeconfig file, or with an empty path the in-cluster
// configuration of the pod this runs in.
func RESTConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("load the in-cluster Kubernetes config (pass --kubeconfig out of a cluster): %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", kubeconfig, err)
	}
	return cfg, nil
}

// Options configure a Controller.
type Options struct {
	Config   *rest.Config
	Store    *store.Store
	Registry *registry.Registry
	// Changed is called after every reconcile that changed the registry, so
	// the control plane can version its next push.
	Changed func()
	Logger  *slog.Logger
	// RootCert, when set, is the mesh's root certificate (PEM), published
	// in every namespace as the istio-ca-root-cert ConfigMap (rootcert.go).
	RootCert []byte
}

// Controller mirrors a cluster into the registry and the store.
type Controller struct {
	opts    Options
	log     *slog.Logger
	client  kubernetes.Interface
	dynamic dynamic.Interface

	factory  informers.SharedInformerFactory
	dfactory dynamicinformer.DynamicSharedInformerFactory
	services cache.SharedIndexInformer
	slices   cache.SharedIndexInformer
	pods     cache.SharedIndexInformer
	nss      cache.SharedIndexInformer
	istio    map[config.Kind]cache.SharedIndexInformer
	// mesh watches the one ConfigMap istiod reads its mesh config from
	// (istio-system/istio), mirrored into the store as an apply would.
	meshFactory informers.SharedInformerFactory
	mesh        cache.SharedIndexInformer

	dirty  chan struct{}
	synced chan struct{}

	mu      sync.Mutex
	invalid map[string]string // key → resourceVersion already reported invalid
}

// New connects to the API server and finds which Istio kinds it serves;
// nothing is watched until Run.
func New(opts Options) (*Controller, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Changed == nil {
		opts.Changed = func() {}
	}
	cfg := rest.CopyConfig(opts.Config)
	cfg.UserAgent = "meshlab-controlplane"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create a Kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create a Kubernetes dynamic client: %w", err)
	}
	c := &Controller{
		opts: opts, log: opts.Logger, client: client, dynamic: dyn,
		factory:  informers.NewSharedInformerFactory(client, 0),
		dfactory: dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0),
		istio:    map[config.Kind]cache.SharedIndexInformer{},
		dirty:    make(chan struct{}, 1),
		synced:   make(chan struct{}),
		invalid:  map[string]string{},
	}
	c.services = c.factory.Core().V1().Services().Informer()
	c.pods = c.factory.Core().V1().Pods().Informer()
	c.nss = c.factory.Core().V1().Namespaces().Informer()
	c.slices = c.factory.Discovery().V1().EndpointSlices().Informer()
	c.meshFactory = informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(meshconfig.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = "metadata.name=" + meshconfig.ConfigMapName }))
	c.mesh = c.meshFactory.Core().V1().ConfigMaps().Informer()
	for _, inf := range []cache.SharedIndexInformer{c.services, c.pods, c.slices, c.mesh} {
		if _, err := inf.AddEventHandler(c.handler()); err != nil {
			return nil, fmt.Errorf("watch: %w", err)
		}
	}
	return c, nil
}

// gvr is the resource the controller watches a kind through: its group at
// the version Istio stores (v1; v1beta1 for clusters with older CRDs).
func (c *Controller) gvr(k config.KindInfo) (schema.GroupVersionResource, bool, error) {
	for _, v := range []string{"v1", "v1beta1", "v1alpha3"} {
		if !contains(k.Versions, v) {
			continue
		}
		gv := schema.GroupVersion{Group: k.Group, Version: v}
		list, err := c.client.Discovery().ServerResourcesForGroupVersion(gv.String())
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return schema.GroupVersionResource{}, false, fmt.Errorf("discover %s: %w", gv, err)
		}
		for _, r := range list.APIResources {
			if r.Name == k.Plural {
				return gv.WithResource(k.Plural), true, nil
			}
		}
	}
	return schema.GroupVersionResource{}, false, nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func (c *Controller) handler() cache.ResourceEventHandler {
	kick := func() {
		select {
		case c.dirty <- struct{}{}:
		default:
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { kick() },
		UpdateFunc: func(any, any) { kick() },
		DeleteFunc: func(any) { kick() },
	}
}

// Run watches until ctx ends. The first reconcile waits for every cache to
// fill, so a starting control plane never drops what it has not yet been
// told about; later ones follow events, coalesced: a burst costs one pass.
func (c *Controller) Run(ctx context.Context) error {
	for _, k := range config.Kinds {
		gvr, ok, err := c.gvr(k)
		if err != nil {
			return err
		}
		if !ok {
			c.log.Info("the API server does not serve this Istio kind; not watching it (install the CRDs and restart)", "kind", k.Kind)
			continue
		}
		inf := c.dfactory.ForResource(gvr).Informer()
		if _, err := inf.AddEventHandler(c.handler()); err != nil {
			return fmt.Errorf("watch %s: %w", gvr, err)
		}
		c.istio[k.Kind] = inf
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.factory.Start(ctx.Done())
	c.dfactory.Start(ctx.Done())
	c.meshFactory.Start(ctx.Done())
	// The factories' goroutines stop with ctx; wait for them so Run's
	// return means nothing is left running.
	defer c.meshFactory.Shutdown()
	defer c.dfactory.Shutdown()
	defer c.factory.Shutdown()
	defer cancel()

	syncs := []cache.InformerSynced{c.services.HasSynced, c.slices.HasSynced, c.pods.HasSynced, c.nss.HasSynced, c.mesh.HasSynced}
	for _, inf := range c.istio {
		syncs = append(syncs, inf.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), syncs...) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("the Kubernetes caches did not fill")
	}
	c.log.Info("watching Kubernetes", "host", c.opts.Config.Host, "istioKinds", len(c.istio))
	c.reconcile(ctx)
	close(c.synced)
	if len(c.opts.RootCert) > 0 {
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := c.publishRootCert(ctx, c.opts.RootCert); err != nil {
				c.log.Error("publish the mesh's root certificate", "err", err)
			}
		}()
		// Run's return means nothing it started is left running.
		defer func() { cancel(); <-done }()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.dirty:
		}
		c.reconcile(ctx)
	}
}

// Synced is closed once the registry and store first match the cluster.
func (c *Controller) Synced() <-chan struct{} { return c.synced }

// Namespace returns a namespace's labels, for the injection webhook; ok is
// false before the caches fill or for a namespace not (yet) seen.
func (c *Controller) Namespace(name string) (map[string]string, bool) {
	if !c.nss.HasSynced() {
		return nil, false
	}
	obj, ok, err := c.nss.GetStore().GetByKey(name)
	if err != nil || !ok {
		return nil, false
	}
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return nil, false
	}
	return ns.Labels, true
}

func (c *Controller) reconcile(ctx context.Context) {
	start := time.Now()
	regChanged := c.reconcileRegistry()
	if err := c.reconcileConfig(ctx); err != nil {
		// The next event tries again; the store keeps what it had.
		c.log.Error("mirror Istio resources into the store", "err", err)
	}
	if regChanged {
		c.opts.Changed()
	}
	c.log.Debug("reconciled with Kubernetes", "took", time.Since(start))
}

func (c *Controller) reconcileRegistry() bool {
	var svcs []*corev1.Service
	for _, o := range c.services.GetStore().List() {
		if s, ok := o.(*corev1.Service); ok {
			svcs = append(svcs, s)
		}
	}
	var slices []*discoveryv1.EndpointSlice
	for _, o := range c.slices.GetStore().List() {
		if s, ok := o.(*discoveryv1.EndpointSlice); ok {
			slices = append(slices, s)
		}
	}
	var pods []*corev1.Pod
	for _, o := range c.pods.GetStore().List() {
		if p, ok := o.(*corev1.Pod); ok {
			pods = append(pods, p)
		}
	}
	want := Translate(svcs, slices, pods)
	return Sync(c.opts.Registry, want)
}

// Sync makes reg hold exactly want, touching only what differs; it reports
// whether anything changed.
func Sync(reg *registry.Registry, want registry.Snapshot) bool {
	have := reg.Snapshot()
	changed := false
	hs := map[string]registry.Service{}
	for _, s := range have.Services {
		hs[s.Key()] = s
	}
	for _, s := range want.Services {
		if old, ok := hs[s.Key()]; !ok || !equalJSON(old, s) {
			reg.PutService(s)
			changed = true
		}
		delete(hs, s.Key())
	}
	for _, s := range hs {
		reg.DeleteService(s.Namespace, s.Name)
		changed = true
	}
	hw := map[string]registry.Workload{}
	for _, w := range have.Workloads {
		hw[w.Key()] = w
	}
	for _, w := range want.Workloads {
		if old, ok := hw[w.Key()]; !ok || !equalJSON(old, w) {
			reg.PutWorkload(w)
			changed = true
		}
		delete(hw, w.Key())
	}
	for _, w := range hw {
		reg.DeleteWorkload(w.Namespace, w.Name)
		changed = true
	}
	return changed
}

// reconcileConfig makes the store hold exactly the valid Istio resources
// of the kinds the cluster serves. Invalid ones (admitted before the
// validating webhook was registered, say) are skipped and reported once,
// as istiod does.
func (c *Controller) reconcileConfig(ctx context.Context) error {
	var want []config.Resource
	keep := map[string]bool{}
	for kind, inf := range c.istio {
		for _, o := range inf.GetStore().List() {
			r, rv, err := Resource(o)
			if err != nil {
				c.reportInvalid(r.Key(), rv, err)
				// Keep what the store has for it: a bad update does not
				// take down the last good one.
				keep[r.Key()] = true
				continue
			}
			if r.Kind != kind {
				continue
			}
			want = append(want, r)
			keep[r.Key()] = true
		}
	}
	for _, o := range c.mesh.GetStore().List() {
		r, rv, err := meshResource(o)
		if err == nil {
			err = meshconfig.Check(r)
		}
		if err != nil {
			c.reportInvalid(r.Key(), rv, err)
			keep[r.Key()] = true
			continue
		}
		want = append(want, r)
		keep[r.Key()] = true
	}
	if len(want) > 0 {
		if _, err := c.opts.Store.Apply(ctx, want); err != nil {
			return err
		}
	}
	var gone []string
	if r, have, err := c.opts.Store.Get(config.ConfigMap, meshconfig.Namespace, meshconfig.ConfigMapName); err != nil {
		return err
	} else if have && !keep[r.Key()] {
		gone = append(gone, r.Key())
	}
	for kind := range c.istio {
		have, err := c.opts.Store.List(kind, "")
		if err != nil {
			return err
		}
		for _, r := range have {
			if !keep[r.Key()] {
				gone = append(gone, r.Key())
			}
		}
	}
	if len(gone) > 0 {
		if _, err := c.opts.Store.Delete(ctx, gone); err != nil {
			return err
		}
	}
	return nil
}

// meshResource is the istio ConfigMap as the store keeps it.
func meshResource(o any) (config.Resource, string, error) {
	cm, ok := o.(*corev1.ConfigMap)
	if !ok {
		return config.Resource{}, "", fmt.Errorf("unexpected object %T", o)
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(cm.DeepCopy())
	if err != nil {
		return config.Resource{Kind: config.ConfigMap, Namespace: cm.Namespace, Name: cm.Name}, cm.ResourceVersion, err
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion("v1")
	u.SetKind("ConfigMap")
	return Resource(u)
}

func (c *Controller) reportInvalid(key, rv string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.invalid[key] == rv {
		return
	}
	c.invalid[key] = rv
	c.log.Warn("ignoring an invalid Istio resource", "resource", key, "err", err)
}

// InCluster reports whether this process runs in a Kubernetes pod.
func InCluster() bool {
	_, err := os.Stat("/var/run/secrets/kubernetes.io/serviceaccount/token")
	return os.Getenv("KUBERNETES_SERVICE_HOST") != "" && err == nil
}
