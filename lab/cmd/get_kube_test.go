package cmd

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/kube/kubetest"
)

// apiserverLister lists from a real API server, as a runtime's Pods,
// Deployments, Services and Namespaces do: this test is about what get
// prints for the objects, not about a runtime.
type apiserverLister struct {
	lab.Runtime
	kc kubernetes.Interface
}

func sortByNamespaceName[T any](items []T, meta func(*T) metav1.Object) {
	sort.Slice(items, func(i, j int) bool {
		a, b := meta(&items[i]), meta(&items[j])
		return a.GetNamespace() < b.GetNamespace() || (a.GetNamespace() == b.GetNamespace() && a.GetName() < b.GetName())
	})
}

func (l apiserverLister) Pods(ctx context.Context, ns string) ([]corev1.Pod, error) {
	list, err := l.kc.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	sortByNamespaceName(list.Items, func(p *corev1.Pod) metav1.Object { return p })
	return list.Items, nil
}

func (l apiserverLister) Deployments(ctx context.Context, ns string) ([]appsv1.Deployment, error) {
	list, err := l.kc.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	sortByNamespaceName(list.Items, func(d *appsv1.Deployment) metav1.Object { return d })
	return list.Items, nil
}

func (l apiserverLister) Services(ctx context.Context, ns string) ([]corev1.Service, error) {
	list, err := l.kc.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	sortByNamespaceName(list.Items, func(s *corev1.Service) metav1.Object { return s })
	return list.Items, nil
}

func (l apiserverLister) Namespaces(ctx context.Context) ([]corev1.Namespace, error) {
	list, err := l.kc.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	sortByNamespaceName(list.Items, func(n *corev1.Namespace) metav1.Object { return n })
	return list.Items, nil
}

// loadFixture stores the unit tests' fixture in a real API server, status
// included, so that kubectl and meshlab can be asked about the same objects.
func loadFixture(ctx context.Context, t *testing.T, kc kubernetes.Interface) {
	t.Helper()
	f := getFixture()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	for _, ns := range f.namespaces {
		if ns.Name == "default" {
			continue
		}
		ns.CreationTimestamp = metav1.Time{}
		phase := ns.Status.Phase
		_, err := kc.CoreV1().Namespaces().Create(ctx, &ns, metav1.CreateOptions{})
		must("create namespace "+ns.Name, err)
		if phase == corev1.NamespaceTerminating {
			// No controller-manager finalizes it: it stays Terminating.
			must("delete namespace "+ns.Name, kc.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{}))
		}
	}
	for _, p := range f.pods {
		deleting := p.DeletionTimestamp != nil
		p.CreationTimestamp, p.DeletionTimestamp = metav1.Time{}, nil
		if deleting {
			p.Finalizers = []string{"meshlab.test/hold"} // keeps it Terminating
		}
		status := p.Status
		got, err := kc.CoreV1().Pods(p.Namespace).Create(ctx, &p, metav1.CreateOptions{})
		must("create pod "+p.Name, err)
		got.Status = status
		_, err = kc.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, got, metav1.UpdateOptions{})
		must("update pod status "+p.Name, err)
		if deleting {
			must("delete pod "+p.Name, kc.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{}))
		}
	}
	for _, d := range f.deployments {
		d.CreationTimestamp = metav1.Time{}
		status := d.Status
		got, err := kc.AppsV1().Deployments(d.Namespace).Create(ctx, &d, metav1.CreateOptions{})
		must("create deployment "+d.Name, err)
		got.Status = status
		_, err = kc.AppsV1().Deployments(d.Namespace).UpdateStatus(ctx, got, metav1.UpdateOptions{})
		must("update deployment status "+d.Name, err)
	}
	for _, s := range f.services {
		s.CreationTimestamp = metav1.Time{}
		if s.Spec.ClusterIP != corev1.ClusterIPNone {
			s.Spec.ClusterIP, s.Spec.ClusterIPs = "", nil // the server's range, not the fixture's
		}
		status := s.Status
		got, err := kc.CoreV1().Services(s.Namespace).Create(ctx, &s, metav1.CreateOptions{})
		must("create service "+s.Name, err)
		if len(status.LoadBalancer.Ingress) > 0 {
			got.Status = status
			_, err = kc.CoreV1().Services(s.Namespace).UpdateStatus(ctx, got, metav1.UpdateOptions{})
			must("update service status "+s.Name, err)
		}
	}
}

// ageSeconds are the only part of the two outputs that may differ: AGE of
// objects made a moment ago, read by two commands a moment apart.
var ageSeconds = regexp.MustCompile(`\b\d+s\b`)

func normalizeAges(s string) string {
	s = ageSeconds.ReplaceAllString(s, "Ns")
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	return strings.Join(lines, "\n")
}

// TestGetMatchesKubectl asks kubectl (built from the same Kubernetes
// release, reading the API server's own server-side tables) and meshlab get
// about the same objects in a real API server, and wants the same answer:
// columns, values, NAMESPACE with -A, kind prefixes, name, jsonpath,
// "No resources found" and NotFound.
func TestGetMatchesKubectl(t *testing.T) {
	env := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kc := kubernetes.NewForConfigOrDie(env.Config)
	loadFixture(ctx, t, kc)
	rt := apiserverLister{kc: kc}

	tests := [][]string{
		{"get", "pods"},
		{"get", "pods", "-A"},
		{"get", "pods", "-A", "-o", "wide"},
		{"get", "pods", "-n", "foo"},
		{"get", "pods", "-n", "legacy", "--show-labels"},
		{"get", "pods", "--no-headers"},
		{"get", "pods", "-A", "-l", "app in (productpage,sleep)"},
		{"get", "pod", "ratings-v1-7c9d7f8b6-crash", "productpage-v1-6d7f9c8b5-x7k2p"},
		{"get", "pods", "-A", "-o", "name"},
		{"get", "pod/productpage-v1-6d7f9c8b5-x7k2p", "-o", "jsonpath={.spec.containers[*].ports[*].name}"},
		{"get", "pods", "-l", "app=ratings", "-o", "jsonpath={.items[0].metadata.name}"},
		// A selector gives a List, even of one pod: .spec is the items'.
		{"get", "pods", "-l", "app=productpage", "-o", "jsonpath={.spec.containers[*].ports[*].name}"},
		{"get", "pods", "-l", "app=productpage", "-o", "jsonpath={.items[*].spec.containers[*].ports[*].name}"},
		{"get", "pods", "-A", "-o", `jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name} {.status.podIP}{"\n"}{end}`},
		{"get", "deployments"},
		{"get", "deploy", "-A", "-o", "wide"},
		{"get", "deploy/reviews-v1", "-o", "name"},
		{"get", "svc"},
		{"get", "svc", "-A", "-o", "wide"},
		{"get", "svc", "-n", "foo", "-o", "jsonpath={.items[*].spec.ports[*].protocol}"},
		{"get", "ns"},
		{"get", "ns", "-A", "--show-labels"},
		{"get", "pods", "-A", "--show-labels", "-o", "wide"},
		{"get", "ns", "-l", "istio-injection=enabled", "-o", "name"},
		{"get", "deploy,svc"},
		{"get", "deploy,svc", "-A"},
		{"get", "pod", "productpage-v1-6d7f9c8b5-x7k2p", "-o", "json"},
		{"get", "pods", "-n", "legacy", "-o", "yaml"},
		{"get", "svc", "-A", "-o", "json"},
		{"get", "deploy/reviews-v1", "-o", "yaml"},
		{"get", "ns", "foo", "-o", "json"},
		{"get", "pods", "-n", "nosuch"},
		{"get", "pods", "-A", "-l", "app=nothing"},
		{"get", "pod", "nosuch"},
		{"get", "pod/nosuch", "-o", "json"},
		{"get", "svc", "-n", "nosuch", "-o", "yaml"},
		{"get", "ns", "nosuch"},
		{"get", "deploy", "reviews-v1", "nosuch", "-o", "name"},
	}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var kOut, kErr bytes.Buffer
			cmd := exec.CommandContext(ctx, env.Kubectl, append(append([]string{}, args...), "--kubeconfig", env.Kubeconfig)...)
			cmd.Stdout, cmd.Stderr = &kOut, &kErr
			kCode := 0
			if err := cmd.Run(); err != nil {
				var exit *exec.ExitError
				if !errors.As(err, &exit) {
					t.Fatal(err)
				}
				kCode = exit.ExitCode()
			}
			out, errOut, code := runCLIAt(t, rt, time.Now, args...)
			if normalizeAges(out) != normalizeAges(kOut.String()) {
				t.Errorf("meshlab %s:\n%s\nkubectl:\n%s", strings.Join(args, " "), out, kOut.String())
			}
			if normalizeAges(errOut) != normalizeAges(kErr.String()) {
				t.Errorf("meshlab's stderr:\n%s\nkubectl's:\n%s", errOut, kErr.String())
			}
			if code != kCode {
				t.Errorf("meshlab exits %d, kubectl %d", code, kCode)
			}
		})
	}
}
