package kindnet

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

const testImage = "meshlab:test"

func daemonSet(t *testing.T, objs []runtime.Object) *appsv1.DaemonSet {
	t.Helper()
	for _, o := range objs {
		if ds, ok := o.(*appsv1.DaemonSet); ok {
			return ds
		}
	}
	t.Fatal("no DaemonSet")
	return nil
}

func TestObjects(t *testing.T) {
	objs := Objects(testImage, "10.244.0.0/16")
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.GetObjectKind().GroupVersionKind().Kind)
		if m, ok := o.(metav1.Object); !ok || m.GetName() != Name || m.GetLabels()["app"] != Name {
			t.Errorf("%T: want name and label app %s", o, Name)
		}
	}
	if want := []string{"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "DaemonSet"}; !slices.Equal(kinds, want) {
		t.Errorf("kinds = %v, want %v", kinds, want)
	}
	role := objs[1].(*rbacv1.ClusterRole)
	if r := role.Rules; len(r) != 1 || !slices.Equal(r[0].Resources, []string{"nodes"}) || !slices.Equal(r[0].Verbs, []string{"get", "list", "watch"}) {
		t.Errorf("ClusterRole rules = %+v: want nodes get, list, watch only", r)
	}

	ds := daemonSet(t, objs)
	pod := ds.Spec.Template.Spec
	c := pod.Containers[0]
	sc := c.SecurityContext
	for _, check := range []struct {
		what string
		ok   bool
	}{
		{"namespace kube-system", ds.Namespace == "kube-system"},
		{"selector matches the template", ds.Spec.Selector.MatchLabels["app"] == ds.Spec.Template.Labels["app"]},
		{"hostNetwork", pod.HostNetwork},
		{"tolerates every taint", slices.Equal(pod.Tolerations, []corev1.Toleration{{Operator: corev1.TolerationOpExists}})},
		{"system-node-critical", pod.PriorityClassName == "system-node-critical"},
		{"service account", pod.ServiceAccountName == Name},
		{"image", c.Image == testImage && c.ImagePullPolicy == corev1.PullIfNotPresent},
		{"args", slices.Equal(c.Args, []string{"kindnet", "--pod-subnet=10.244.0.0/16"})},
		{"NODE_NAME from spec.nodeName", len(c.Env) == 1 && c.Env[0].Name == "NODE_NAME" && c.Env[0].ValueFrom.FieldRef.FieldPath == "spec.nodeName"},
		{"not privileged", sc.Privileged != nil && !*sc.Privileged},
		{"NET_ADMIN and NET_RAW", slices.Equal(sc.Capabilities.Add, []corev1.Capability{"NET_ADMIN", "NET_RAW"})},
		{"requests", !c.Resources.Requests.Cpu().IsZero() && !c.Resources.Requests.Memory().IsZero()},
		{"/etc/cni/net.d from the host", pod.Volumes[0].HostPath.Path == "/etc/cni/net.d" && c.VolumeMounts[0].MountPath == "/etc/cni/net.d"},
	} {
		if !check.ok {
			t.Errorf("DaemonSet: want %s", check.what)
		}
	}
}

func readyNode(name string) *corev1.Node {
	n := node(name, []string{"10.244.0.0/24"}, "172.18.0.2")
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	return n
}

func notReadyNode(name string) *corev1.Node {
	n := node(name, nil, "172.18.0.3")
	n.Status.Conditions = []corev1.NodeCondition{{
		Type: corev1.NodeReady, Status: corev1.ConditionFalse, Reason: "KubeletNotReady",
		Message: "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized",
	}}
	return n
}

// markReady gives the DaemonSet the status its controller would once a
// pod runs ready on each of n nodes.
func markReady(t *testing.T, kube kubernetes.Interface, n, ready int32) {
	t.Helper()
	ctx := context.Background()
	ds, err := kube.AppsV1().DaemonSets(Namespace).Get(ctx, Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ds.Status = appsv1.DaemonSetStatus{DesiredNumberScheduled: n, NumberReady: ready, UpdatedNumberScheduled: n, ObservedGeneration: ds.Generation}
	if _, err := kube.AppsV1().DaemonSets(Namespace).UpdateStatus(ctx, ds, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// keepStatus makes the fake ignore the status of a DaemonSet update, as the
// API server does (status is a subresource): the tracker would store the
// empty status the update carries.
func keepStatus(kube *fake.Clientset) {
	kube.PrependReactor("update", "daemonsets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		u := a.(k8stesting.UpdateAction)
		if u.GetSubresource() != "" {
			return false, nil, nil
		}
		ds := u.GetObject().(*appsv1.DaemonSet)
		cur, err := kube.Tracker().Get(a.GetResource(), ds.Namespace, ds.Name)
		if err == nil {
			ds.Status = cur.(*appsv1.DaemonSet).Status
		}
		return false, nil, nil
	})
}

func TestInstallConverges(t *testing.T) {
	pollInterval = 10 * time.Millisecond
	ctx := context.Background()
	kube := fake.NewClientset(readyNode("meshlab-control-plane"), readyNode("meshlab-worker"))
	keepStatus(kube)
	// The first install finds no pods yet: it creates, then times out.
	err := Install(ctx, kube, "meshlab:v1", "10.244.0.0/16", 100*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "no pods scheduled yet") {
		t.Fatalf("first Install = %v; want a timeout waiting for scheduled pods", err)
	}
	markReady(t, kube, 2, 2)
	for _, image := range []string{"meshlab:v1", "meshlab:v1", "meshlab:v2"} {
		if err := Install(ctx, kube, image, "10.244.0.0/16", time.Second); err != nil {
			t.Fatalf("Install %s over an installed network: %v", image, err)
		}
	}
	dss, err := kube.AppsV1().DaemonSets(Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(dss.Items) != 1 {
		t.Fatalf("%d DaemonSets, want 1", len(dss.Items))
	}
	if got := dss.Items[0].Spec.Template.Spec.Containers[0].Image; got != "meshlab:v2" {
		t.Errorf("image = %s after an install with meshlab:v2: the update did not converge", got)
	}
	if dss.Items[0].Status.NumberReady != 2 {
		t.Errorf("status lost by the update: %+v", dss.Items[0].Status)
	}
	for _, get := range []func() error{
		func() error {
			_, err := kube.CoreV1().ServiceAccounts(Namespace).Get(ctx, Name, metav1.GetOptions{})
			return err
		},
		func() error { _, err := kube.RbacV1().ClusterRoles().Get(ctx, Name, metav1.GetOptions{}); return err },
		func() error {
			_, err := kube.RbacV1().ClusterRoleBindings().Get(ctx, Name, metav1.GetOptions{})
			return err
		},
	} {
		if err := get(); err != nil {
			t.Error(err)
		}
	}
	if err := Install(ctx, kube, "meshlab:v2", "10.244.0.0", time.Second); err == nil {
		t.Error("Install accepted a pod subnet that is no prefix")
	}
}

func TestWaitReadyTellsWhatItWaitedFor(t *testing.T) {
	pollInterval = 10 * time.Millisecond
	for _, tc := range []struct {
		name         string
		nodes        []runtime.Object
		desired, rdy int32
		want         string // "" for ready
	}{
		{name: "all ready", nodes: []runtime.Object{readyNode("cp"), readyNode("w1")}, desired: 2, rdy: 2},
		{name: "a pod not ready", nodes: []runtime.Object{readyNode("cp"), readyNode("w1")}, desired: 2, rdy: 1, want: "DaemonSet kube-system/meshlab-kindnet: 1/2 pods ready"},
		{
			name: "pods ready, a node not", nodes: []runtime.Object{readyNode("cp"), notReadyNode("w1")}, desired: 2, rdy: 2,
			want: "node w1 not Ready: container runtime network not ready: NetworkReady=false",
		},
		{name: "no nodes", desired: 1, rdy: 1, want: "no nodes yet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			kube := fake.NewClientset(tc.nodes...)
			if _, err := kube.AppsV1().DaemonSets(Namespace).Create(ctx, daemonSet(t, Objects(testImage, "10.244.0.0/16")), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			markReady(t, kube, tc.desired, tc.rdy)
			wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			err := WaitReady(wctx, kube)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("WaitReady = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("WaitReady = %v; want an error saying %q", err, tc.want)
			}
		})
	}
}
