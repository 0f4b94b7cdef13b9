package metallb

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// FieldManager owns, for server-side apply, every field meshlab sets.
const FieldManager = "meshlab"

// Clients are the API clients Install needs.
type Clients struct {
	Kube    kubernetes.Interface
	Dynamic dynamic.Interface
}

// Install applies MetalLB running images, and its pool r, and waits until
// its controller and speakers are ready, within timeout. Running it again
// converges: it keeps the memberlist key of the first run.
func Install(ctx context.Context, c Clients, r Range, images Images, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := Apply(ctx, c, images); err != nil {
		return err
	}
	if err := WaitReady(ctx, c.Kube); err != nil {
		return err
	}
	return ApplyPool(ctx, c, r)
}

// Apply applies MetalLB's objects and waits for its CRDs to be established.
func Apply(ctx context.Context, c Clients, images Images) error {
	key := make([]byte, 128)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("metallb: memberlist key: %w", err)
	}
	for _, obj := range Objects(Options{MemberlistKey: key, Images: images}) {
		u, err := ToUnstructured(obj)
		if err != nil {
			return err
		}
		if u.GetKind() == "Secret" {
			// A new key on every up would split the speakers' memberlist.
			if _, err := c.Kube.CoreV1().Secrets(u.GetNamespace()).Get(ctx, u.GetName(), metav1.GetOptions{}); err == nil {
				continue
			}
		}
		if err := apply(ctx, c.Dynamic, u); err != nil {
			return err
		}
	}
	return waitEstablished(ctx, c.Dynamic)
}

// ApplyPool applies the address pool r and its L2 advertisement. MetalLB's
// CRDs must be established.
func ApplyPool(ctx context.Context, c Clients, r Range) error {
	for _, obj := range PoolObjects(r) {
		u, err := ToUnstructured(obj)
		if err != nil {
			return err
		}
		if err := apply(ctx, c.Dynamic, u); err != nil {
			return err
		}
	}
	return nil
}

var resources = map[string]string{
	"Namespace": "namespaces", "CustomResourceDefinition": "customresourcedefinitions",
	"ServiceAccount": "serviceaccounts", "ClusterRole": "clusterroles", "Role": "roles",
	"ClusterRoleBinding": "clusterrolebindings", "RoleBinding": "rolebindings",
	"Secret": "secrets", "ConfigMap": "configmaps", "Deployment": "deployments", "DaemonSet": "daemonsets",
	"IPAddressPool": "ipaddresspools", "L2Advertisement": "l2advertisements",
}

func apply(ctx context.Context, dyn dynamic.Interface, u *unstructured.Unstructured) error {
	gv, err := schema.ParseGroupVersion(u.GetAPIVersion())
	if err != nil {
		return err
	}
	plural, ok := resources[u.GetKind()]
	if !ok {
		return fmt.Errorf("metallb: no resource for kind %s", u.GetKind())
	}
	var ri dynamic.ResourceInterface = dyn.Resource(gv.WithResource(plural))
	if ns := u.GetNamespace(); ns != "" {
		ri = dyn.Resource(gv.WithResource(plural)).Namespace(ns)
	}
	if _, err := ri.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return fmt.Errorf("metallb: apply %s %s: %w", u.GetKind(), u.GetName(), err)
	}
	return nil
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

func waitEstablished(ctx context.Context, dyn dynamic.Interface) error {
	for _, plural := range crdPlurals() {
		name := plural + "." + Group
		err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			u, err := dyn.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("metallb: CRD %s not established: %w", name, err)
		}
	}
	return nil
}

// WaitReady waits until MetalLB's controller is available and a speaker runs
// ready on every node it is scheduled to.
func WaitReady(ctx context.Context, kube kubernetes.Interface) error {
	var last string
	err := wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		d, err := kube.AppsV1().Deployments(Namespace).Get(ctx, "controller", metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		if d.Status.ObservedGeneration < d.Generation || d.Status.AvailableReplicas < 1 || d.Status.UpdatedReplicas < 1 {
			last = fmt.Sprintf("controller: %d/%d available", d.Status.AvailableReplicas, ptrOr(d.Spec.Replicas, 1))
			return false, nil
		}
		ds, err := kube.AppsV1().DaemonSets(Namespace).Get(ctx, "speaker", metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		st := ds.Status
		if st.ObservedGeneration < ds.Generation || st.DesiredNumberScheduled == 0 || st.NumberReady < st.DesiredNumberScheduled || st.UpdatedNumberScheduled < st.DesiredNumberScheduled {
			last = fmt.Sprintf("speaker: %d/%d ready", st.NumberReady, st.DesiredNumberScheduled)
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("metallb is not ready (%s): %w; see kubectl -n %s get pods", last, err, Namespace)
	}
	return nil
}

func ptrOr(p *int32, d int32) int32 {
	if p == nil {
		return d
	}
	return *p
}

// ShareIP marks a Service to share its address with every Service carrying
// the same key (metallb.universe.tf/allow-shared-ip).
func ShareIP(ctx context.Context, kube kubernetes.Interface, ns, name, key string) error {
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{AllowSharedIP: key}}})
	if _, err := kube.CoreV1().Services(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
		return fmt.Errorf("annotate service %s/%s with %s: %w", ns, name, AllowSharedIP, err)
	}
	return nil
}

// WaitExternalIP waits until a LoadBalancer Service has an address and
// returns it.
func WaitExternalIP(ctx context.Context, kube kubernetes.Interface, ns, name string) (string, error) {
	var ip, last string
	err := wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		svc, err := kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			last = "no such service"
			return false, nil
		}
		if err != nil {
			last = err.Error()
			return false, nil
		}
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if in.IP != "" {
				ip = in.IP
				return true, nil
			}
		}
		last = "no external IP yet"
		return false, nil
	})
	if err != nil {
		return "", fmt.Errorf("service %s/%s: %s: %w (is MetalLB's pool full? kubectl -n %s get ipaddresspools)", ns, name, last, err, Namespace)
	}
	return ip, nil
}
