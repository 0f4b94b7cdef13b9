package kindnet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// Name is the name of every object of the pod network: its ServiceAccount,
// ClusterRole, ClusterRoleBinding and DaemonSet.
const Name = "meshlab-kindnet"

// Namespace is where the namespaced objects go: beside kube-proxy, as a
// cluster's network belongs to the system, not to the lab.
const Namespace = "kube-system"

var objLabels = map[string]string{"app": Name, "app.kubernetes.io/managed-by": "meshlab"}

func meta(namespace string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: Name, Namespace: namespace, Labels: objLabels}
}

// Objects are the pod network's objects for a cluster whose pods are
// addressed out of podSubnet, every node running the daemon from image (the
// meshlab image: its entrypoint is the meshlab binary).
func Objects(image, podSubnet string) []runtime.Object {
	sel := map[string]string{"app": Name}
	return []runtime.Object{
		&corev1.ServiceAccount{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
			ObjectMeta: meta(Namespace),
		},
		&rbacv1.ClusterRole{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
			ObjectMeta: meta(""),
			Rules: []rbacv1.PolicyRule{{
				APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"},
			}},
		},
		&rbacv1.ClusterRoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
			ObjectMeta: meta(""),
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: Name},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: Name, Namespace: Namespace}},
		},
		&appsv1.DaemonSet{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"},
			ObjectMeta: meta(Namespace),
			Spec: appsv1.DaemonSetSpec{
				Selector: &metav1.LabelSelector{MatchLabels: sel},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: objLabels},
					Spec: corev1.PodSpec{
						ServiceAccountName: Name,
						// It programs the node's own routes and nftables,
						// and must run before there is any pod network.
						HostNetwork: true,
						// Every node needs it, tainted or not: a node
						// without it stays NotReady.
						Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
						PriorityClassName:             "system-node-critical",
						NodeSelector:                  map[string]string{"kubernetes.io/os": "linux"},
						TerminationGracePeriodSeconds: ptr(int64(5)),
						Containers: []corev1.Container{{
							Name:  "kindnet",
							Image: image,
							// The image is loaded onto the nodes, never pulled.
							ImagePullPolicy: corev1.PullIfNotPresent,
							Args:            []string{"kindnet", "--pod-subnet=" + podSubnet},
							Env: []corev1.EnvVar{{
								Name:      "NODE_NAME",
								ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}},
							}},
							Resources: corev1.ResourceRequirements{
								Requests: corev1.ResourceList{
									corev1.ResourceCPU:    resource.MustParse("10m"),
									corev1.ResourceMemory: resource.MustParse("32Mi"),
								},
								Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
							},
							SecurityContext: &corev1.SecurityContext{
								Privileged:               ptr(false),
								AllowPrivilegeEscalation: ptr(false),
								ReadOnlyRootFilesystem:   ptr(true),
								// Root: the CNI directory is root's, and the
								// added capabilities reach only uid 0.
								RunAsUser: ptr(int64(0)),
								Capabilities: &corev1.Capabilities{
									Drop: []corev1.Capability{"ALL"},
									Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
								},
							},
							VolumeMounts: []corev1.VolumeMount{{Name: "cni-conf", MountPath: DefaultCNIConfDir}},
						}},
						Volumes: []corev1.Volume{{
							Name: "cni-conf",
							VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
								Path: DefaultCNIConfDir, Type: ptr(corev1.HostPathDirectoryOrCreate),
							}},
						}},
					},
				},
			},
		},
	}
}

// Install creates or updates the pod network's objects, so that an up over
// a lab that is up converges, and waits within timeout until the daemon
// runs ready on every node it is scheduled to and every node is Ready.
func Install(ctx context.Context, kube kubernetes.Interface, image, podSubnet string, timeout time.Duration) error {
	if _, err := netip.ParsePrefix(podSubnet); err != nil {
		return fmt.Errorf("install the pod network: pod subnet: %w", err)
	}
	if image == "" {
		return errors.New("install the pod network: no image")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, obj := range Objects(image, podSubnet) {
		var err error
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			err = upsert(ctx, kube.CoreV1().ServiceAccounts(o.Namespace), o)
		case *rbacv1.ClusterRole:
			err = upsert(ctx, kube.RbacV1().ClusterRoles(), o)
		case *rbacv1.ClusterRoleBinding:
			err = upsert(ctx, kube.RbacV1().ClusterRoleBindings(), o)
		case *appsv1.DaemonSet:
			err = upsert(ctx, kube.AppsV1().DaemonSets(o.Namespace), o)
		default:
			err = fmt.Errorf("no client for %T", obj)
		}
		if err != nil {
			return fmt.Errorf("install the pod network: %w", err)
		}
	}
	return WaitReady(ctx, kube)
}

// object is what upsert needs of a typed object.
type object interface {
	runtime.Object
	metav1.Object
}

// objectClient is the part of a typed client upsert uses; every typed
// client of client-go has it.
type objectClient[T object] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
}

// upsert creates obj, or replaces what is there with it: the whole object
// is meshlab's, and the API server bumps a DaemonSet's generation (and so
// rolls it) only when its spec really changed.
func upsert[T object](ctx context.Context, c objectClient[T], obj T) error {
	kind := obj.GetObjectKind().GroupVersionKind().Kind
	cur, err := c.Get(ctx, obj.GetName(), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if _, err := c.Create(ctx, obj, metav1.CreateOptions{FieldManager: fieldManager}); err != nil {
			return fmt.Errorf("create %s %s: %w", kind, obj.GetName(), err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("get %s %s: %w", kind, obj.GetName(), err)
	}
	obj.SetResourceVersion(cur.GetResourceVersion())
	if _, err := c.Update(ctx, obj, metav1.UpdateOptions{FieldManager: fieldManager}); err != nil {
		return fmt.Errorf("update %s %s: %w", kind, obj.GetName(), err)
	}
	return nil
}

const fieldManager = "meshlab"

// pollInterval is how often WaitReady looks; a variable for tests.
var pollInterval = time.Second

// WaitReady waits until the DaemonSet has a ready, up-to-date pod on every
// node it is scheduled to and every node is Ready, until ctx ends. Its error
// says what it was waiting for and what it saw last.
func WaitReady(ctx context.Context, kube kubernetes.Interface) error {
	last := "nothing seen yet"
	err := wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
		var ok bool
		ok, last = readiness(ctx, kube)
		return ok, nil
	})
	if err != nil {
		return fmt.Errorf("pod network not ready: %s: %w; see kubectl -n %s get pods -l app=%s, and kubectl get nodes", last, err, Namespace, Name)
	}
	return nil
}

// readiness reports whether the pod network is up, and when not, why.
func readiness(ctx context.Context, kube kubernetes.Interface) (bool, string) {
	ds, err := kube.AppsV1().DaemonSets(Namespace).Get(ctx, Name, metav1.GetOptions{})
	if err != nil {
		return false, fmt.Sprintf("DaemonSet %s/%s: %v", Namespace, Name, err)
	}
	st := ds.Status
	switch {
	case st.ObservedGeneration < ds.Generation:
		return false, fmt.Sprintf("DaemonSet %s/%s: generation %d not yet observed", Namespace, Name, ds.Generation)
	case st.DesiredNumberScheduled == 0:
		return false, fmt.Sprintf("DaemonSet %s/%s: no pods scheduled yet", Namespace, Name)
	case st.NumberReady < st.DesiredNumberScheduled || st.UpdatedNumberScheduled < st.DesiredNumberScheduled:
		return false, fmt.Sprintf("DaemonSet %s/%s: %d/%d pods ready, %d up to date", Namespace, Name,
			st.NumberReady, st.DesiredNumberScheduled, st.UpdatedNumberScheduled)
	}
	nodes, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, fmt.Sprintf("list nodes: %v", err)
	}
	if len(nodes.Items) == 0 {
		return false, "no nodes yet"
	}
	var notReady []string
	for _, n := range nodes.Items {
		if ok, why := nodeReady(n); !ok {
			notReady = append(notReady, fmt.Sprintf("node %s not Ready: %s", n.Name, why))
		}
	}
	if len(notReady) > 0 {
		slices.Sort(notReady)
		return false, strings.Join(notReady, "; ")
	}
	return true, ""
}

// nodeReady reads a node's Ready condition: kubelet sets it True once the
// runtime finds a valid CNI configuration.
func nodeReady(n corev1.Node) (bool, string) {
	for _, c := range n.Status.Conditions {
		if c.Type != corev1.NodeReady {
			continue
		}
		if c.Status == corev1.ConditionTrue {
			return true, ""
		}
		why := c.Message
		if why == "" {
			why = c.Reason
		}
		if why == "" {
			why = "Ready=" + string(c.Status)
		}
		return false, why
	}
	return false, "no Ready condition yet"
}

func ptr[T any](v T) *T { return &v }
