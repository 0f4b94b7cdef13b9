package kube

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// The mesh's root certificate, published as Istio's namespace controller
// publishes it: a ConfigMap istio-ca-root-cert (key root-cert.pem, label
// istio.io/config=true) in every namespace, which sidecars mount at
// /var/run/secrets/istio to verify istiod. A ConfigMap someone changed or
// deleted is put back.
const (
	RootCertConfigMap = "istio-ca-root-cert"
	RootCertKey       = "root-cert.pem"
)

// publishRootCert keeps the ConfigMap in every namespace until ctx ends.
func (c *Controller) publishRootCert(ctx context.Context, rootPEM []byte) error {
	// Only the one ConfigMap name is watched: the cache stays small
	// however many ConfigMaps the cluster has.
	cms := informers.NewSharedInformerFactoryWithOptions(c.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = "metadata.name=" + RootCertConfigMap }))
	cmInf := cms.Core().V1().ConfigMaps().Informer()
	dirty := make(chan struct{}, 1)
	kick := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke(dirty) },
		UpdateFunc: func(any, any) { poke(dirty) },
		DeleteFunc: func(any) { poke(dirty) },
	}
	if _, err := cmInf.AddEventHandler(kick); err != nil {
		return fmt.Errorf("watch %s ConfigMaps: %w", RootCertConfigMap, err)
	}
	if _, err := c.nss.AddEventHandler(kick); err != nil {
		return fmt.Errorf("watch namespaces for %s: %w", RootCertConfigMap, err)
	}
	cms.Start(ctx.Done())
	defer cms.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), cmInf.HasSynced, c.nss.HasSynced) {
		return nil // ctx ended
	}
	retry := time.NewTicker(30 * time.Second)
	defer retry.Stop()
	for {
		c.syncRootCert(ctx, cmInf.GetStore(), rootPEM)
		select {
		case <-ctx.Done():
			return nil
		case <-dirty:
		case <-retry.C: // a failed write is tried again
		}
	}
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// syncRootCert makes the ConfigMap of every live namespace hold rootPEM.
func (c *Controller) syncRootCert(ctx context.Context, cms cache.Store, rootPEM []byte) {
	for _, o := range c.nss.GetStore().List() {
		ns, ok := o.(*corev1.Namespace)
		if !ok || ns.DeletionTimestamp != nil || ns.Status.Phase == corev1.NamespaceTerminating {
			continue
		}
		want := rootCertConfigMap(ns.Name, rootPEM)
		obj, exists, err := cms.GetByKey(ns.Name + "/" + RootCertConfigMap)
		if err != nil {
			continue
		}
		api := c.client.CoreV1().ConfigMaps(ns.Name)
		if !exists {
			if _, err := api.Create(ctx, want, metav1.CreateOptions{FieldManager: "meshlab-controlplane"}); err != nil && !apierrors.IsAlreadyExists(err) {
				c.log.Warn("publish the mesh's root certificate", "namespace", ns.Name, "err", err)
			}
			continue
		}
		cur, ok := obj.(*corev1.ConfigMap)
		if !ok || (cur.Data[RootCertKey] == want.Data[RootCertKey] && cur.Labels["istio.io/config"] == "true") {
			continue
		}
		upd := cur.DeepCopy()
		if upd.Labels == nil {
			upd.Labels = map[string]string{}
		}
		upd.Labels["istio.io/config"] = "true"
		if upd.Data == nil {
			upd.Data = map[string]string{}
		}
		upd.Data[RootCertKey] = want.Data[RootCertKey]
		if _, err := api.Update(ctx, upd, metav1.UpdateOptions{FieldManager: "meshlab-controlplane"}); err != nil {
			c.log.Warn("restore the mesh's root certificate", "namespace", ns.Name, "err", err)
		}
	}
}

func rootCertConfigMap(ns string, rootPEM []byte) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: RootCertConfigMap, Namespace: ns, Labels: map[string]string{"istio.io/config": "true"}},
		Data:       map[string]string{RootCertKey: string(rootPEM)},
	}
}
