package kube_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshlab/meshlab/controlplane"
	"github.com/meshlab/meshlab/controlplane/kube"
	"github.com/meshlab/meshlab/lab/kube/kubetest"
)

// TestRootCertConfigMaps: against a real kube-apiserver, the control plane
// publishes the mesh's root as Istio's namespace controller does — the
// istio-ca-root-cert ConfigMap (root-cert.pem, istio.io/config=true) in
// every namespace, a new one included — and puts it back when someone
// changes or deletes it.
func TestRootCertConfigMaps(t *testing.T) {
	env := kubetest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kc := kubernetes.NewForConfigOrDie(env.Config)
	srv, err := controlplane.New(controlplane.Options{StateDir: t.TempDir(), XDSAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Kube: env.Config})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("control plane: %v", err)
		}
		srv.Close()
	})
	root := string(srv.CA().RootPEM())
	has := func(ns string) error {
		cm, err := kc.CoreV1().ConfigMaps(ns).Get(ctx, kube.RootCertConfigMap, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cm.Data[kube.RootCertKey] != root || cm.Labels["istio.io/config"] != "true" {
			return fmt.Errorf("%s/%s holds %d bytes, labels %v; want the mesh's root and istio.io/config=true", ns, cm.Name, len(cm.Data[kube.RootCertKey]), cm.Labels)
		}
		return nil
	}
	for _, ns := range []string{"default", "kube-system"} {
		eventually(t, "the root certificate in "+ns, func() error { return has(ns) })
	}
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "book-demo"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the root certificate in a new namespace", func() error { return has("book-demo") })

	cm, err := kc.CoreV1().ConfigMaps("book-demo").Get(ctx, kube.RootCertConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data[kube.RootCertKey] = "not a root"
	if _, err := kc.CoreV1().ConfigMaps("book-demo").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a changed root certificate put back", func() error { return has("book-demo") })
	if err := kc.CoreV1().ConfigMaps("default").Delete(ctx, kube.RootCertConfigMap, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	eventually(t, "a deleted root certificate put back", func() error {
		err := has("default")
		if apierrors.IsNotFound(err) {
			return errors.New("not yet")
		}
		return err
	})
	t.Logf("a deleted istio-ca-root-cert was back after %v", time.Since(start).Round(time.Millisecond))
}
