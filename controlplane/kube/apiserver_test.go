package kube_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensions "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/meshlab/meshlab/controlplane"
	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/crd"
	"github.com/meshlab/meshlab/controlplane/inject"
	"github.com/meshlab/meshlab/controlplane/xds"
	"github.com/meshlab/meshlab/lab/kube/kubetest"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// eventually retries f until it succeeds or the deadline passes; the API
// server takes a moment to see a new webhook configuration or CRD, and the
// control plane a moment to see an object.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAgainstAPIServer runs the control plane against a real kube-apiserver:
// the API server calls our webhooks over TLS with our CA in caBundle, and
// what is created in it shows up in the registry, the store and the xDS.
func TestAgainstAPIServer(t *testing.T) {
	env := kubetest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kc := kubernetes.NewForConfigOrDie(env.Config)
	dyn := dynamic.NewForConfigOrDie(env.Config)

	// Istio's CRDs, except that VirtualService keeps unknown spec fields
	// (as Istio's CRDs before structural schemas did) so that a misspelt
	// field reaches the validating webhook instead of being pruned.
	ext := apiextensions.NewForConfigOrDie(env.Config)
	for _, c := range crd.CRDs() {
		if c.Spec.Names.Kind == string(config.VirtualService) {
			for i := range c.Spec.Versions {
				c.Spec.Versions[i].Schema.OpenAPIV3Schema.Properties["spec"] = apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: proto.Bool(true)}
			}
		}
		if _, err := ext.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, c, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create CRD %s: %v", c.Name, err)
		}
		eventually(t, "CRD "+c.Name+" established", func() error {
			got, err := ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, c.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			for _, cond := range got.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					return nil
				}
			}
			return errors.New("not established")
		})
	}

	webhookPort := freePort(t)
	srv, err := controlplane.New(controlplane.Options{
		StateDir: t.TempDir(), XDSAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		WebhookAddr: fmt.Sprintf("127.0.0.1:%d", webhookPort),
		Kube:        env.Config,
		Inject:      inject.Params{Image: "meshlab.local/meshlab:test"},
	})
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
	select {
	case <-srv.KubeSynced():
	case err := <-done:
		t.Fatalf("control plane stopped: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("the control plane did not sync with the API server")
	}

	base := fmt.Sprintf("https://127.0.0.1:%d", webhookPort)
	caBundle := srv.CA().RootPEM()
	none := admissionregv1.SideEffectClassNone
	fail := admissionregv1.Fail
	_, err = kc.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, &admissionregv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "istio-sidecar-injector"},
		Webhooks: []admissionregv1.MutatingWebhook{{
			Name:                    "namespace.sidecar-injector.istio.io",
			ClientConfig:            admissionregv1.WebhookClientConfig{URL: proto.String(base + "/inject"), CABundle: caBundle},
			AdmissionReviewVersions: []string{"v1"}, SideEffects: &none, FailurePolicy: &fail,
			Rules: []admissionregv1.RuleWithOperations{{Operations: []admissionregv1.OperationType{admissionregv1.Create},
				Rule: admissionregv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{inject.NamespaceLabel: "enabled"}},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = kc.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, &admissionregv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "istio-validator-istio-system"},
		Webhooks: []admissionregv1.ValidatingWebhook{{
			Name:                    "rev.validation.istio.io",
			ClientConfig:            admissionregv1.WebhookClientConfig{URL: proto.String(base + "/validate"), CABundle: caBundle},
			AdmissionReviewVersions: []string{"v1"}, SideEffects: &none, FailurePolicy: &fail,
			Rules: []admissionregv1.RuleWithOperations{{Operations: []admissionregv1.OperationType{admissionregv1.Create, admissionregv1.Update},
				Rule: admissionregv1.Rule{APIGroups: []string{"networking.istio.io", "security.istio.io"}, APIVersions: []string{"*"}, Resources: []string{"*"}}}},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for name, labels := range map[string]map[string]string{
		"bookinfo":  {inject.NamespaceLabel: "enabled"},
		"plain":     nil,
		"book-demo": nil,
	} {
		if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("injection", func(t *testing.T) {
		n := 0
		newPod := func(ns string, labels map[string]string) *corev1.Pod {
			n++
			return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ratings-%d", n), Namespace: ns, Labels: labels},
				// serviceAccountName as the ServiceAccount admission plugin
				// (off here) sets it: the injected istio-token needs one.
				Spec: corev1.PodSpec{ServiceAccountName: "default", Containers: []corev1.Container{{Name: "ratings", Image: "meshlab.local/meshlab:test"}}}}
		}
		// The API server picks up a new webhook configuration in a moment.
		var got *corev1.Pod
		eventually(t, "a pod in a namespace labelled istio-injection=enabled gets a sidecar", func() error {
			p, err := kc.CoreV1().Pods("bookinfo").Create(ctx, newPod("bookinfo", map[string]string{"app": "ratings", "version": "v1"}), metav1.CreateOptions{})
			if err != nil {
				return err
			}
			if !inject.Injected(p.Annotations, &p.Spec) {
				return fmt.Errorf("pod %s came back without a sidecar", p.Name)
			}
			got = p
			return nil
		})
		if len(got.Spec.InitContainers) != 1 || got.Spec.InitContainers[0].Name != inject.InitContainer {
			t.Errorf("init containers %+v", got.Spec.InitContainers)
		}
		if len(got.Spec.Containers) != 2 || got.Spec.Containers[1].Name != inject.ProxyContainer ||
			got.Spec.Containers[1].Image != "meshlab.local/meshlab:test" {
			t.Errorf("containers %+v", got.Spec.Containers)
		}
		if got.Labels[inject.TLSModeLabel] != "istio" || got.Labels[inject.CanonicalNameLabel] != "ratings" {
			t.Errorf("labels %v", got.Labels)
		}
		for _, tt := range []struct {
			name   string
			ns     string
			labels map[string]string
		}{
			{"unlabelled namespace", "plain", nil},
			{"pod opts out", "bookinfo", map[string]string{inject.InjectKey: "false"}},
		} {
			p, err := kc.CoreV1().Pods(tt.ns).Create(ctx, newPod(tt.ns, tt.labels), metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			if inject.Injected(p.Annotations, &p.Spec) {
				t.Errorf("%s: the pod got a sidecar", tt.name)
			}
		}
	})

	vsGVR := schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}
	create := func(ns, doc string) error {
		j, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(j); err != nil {
			t.Fatal(err)
		}
		gvr := u.GroupVersionKind().GroupVersion().WithResource(strings.ToLower(u.GetKind()) + "s")
		_, err = dyn.Resource(gvr).Namespace(ns).Create(ctx, u, metav1.CreateOptions{})
		return err
	}

	t.Run("validation", func(t *testing.T) {
		fixture, err := os.ReadFile("../config/testdata/invalid/reviews-vs-header.yaml")
		if err != nil {
			t.Fatal(err)
		}
		want := `admission webhook "rev.validation.istio.io" denied the request: VirtualService book-demo/reviews-vs: spec.http[0].match[1].header: unknown field "header"; did you mean "headers"?`
		eventually(t, "the walkthrough's invalid VirtualService is denied", func() error {
			err := create("book-demo", string(fixture))
			if err == nil {
				// Created before the API server saw the webhook: try again.
				dyn.Resource(vsGVR).Namespace("book-demo").Delete(ctx, "reviews-vs", metav1.DeleteOptions{})
				return errors.New("created")
			}
			if !strings.Contains(err.Error(), want) {
				return fmt.Errorf("error %q does not contain %q", err, want)
			}
			return nil
		})
	})

	t.Run("registry, store and xDS", func(t *testing.T) {
		_, err := kc.CoreV1().Services("bookinfo").Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: "bookinfo", Labels: map[string]string{"app": "reviews"}},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "reviews"},
				Ports: []corev1.ServicePort{{Name: "http", Port: 9080}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// No kubelet runs the pods; the slice says where they would be.
		_, err = kc.DiscoveryV1().EndpointSlices("bookinfo").Create(ctx, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "reviews-1", Namespace: "bookinfo", Labels: map[string]string{discoveryv1.LabelServiceName: "reviews"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: proto.String("http"), Port: proto.Int32(9080)}},
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{"198.18.5.1"}, Conditions: discoveryv1.EndpointConditions{Ready: proto.Bool(true)},
					TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "bookinfo", Name: "reviews-v1-abc"}},
				{Addresses: []string{"198.18.5.2"}, Conditions: discoveryv1.EndpointConditions{Ready: proto.Bool(false)},
					TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "bookinfo", Name: "reviews-v2-abc"}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := create("bookinfo", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v2}
`); err != nil {
			t.Fatal(err)
		}

		eventually(t, "the Service and its endpoints in the registry", func() error {
			snap := srv.Registry().Snapshot()
			svc, ok := snap.Service("bookinfo", "reviews")
			if !ok || !svc.VIP.IsValid() || !strings.HasPrefix(svc.VIP.String(), "10.96.") {
				return fmt.Errorf("service %+v (found %v), want one with a 10.96/16 ClusterIP", svc, ok)
			}
			eps := snap.Endpoints(svc)
			if len(eps) != 1 || eps[0].IP.String() != "198.18.5.1" {
				return fmt.Errorf("ready endpoints %+v, want 198.18.5.1 only", eps)
			}
			return nil
		})
		eventually(t, "the VirtualService in the store", func() error {
			_, ok, err := srv.Store().Get(config.VirtualService, "bookinfo", "reviews")
			if err == nil && !ok {
				err = errors.New("not stored")
			}
			return err
		})
		// With the API server's creation time, which Istio's oldest-wins
		// rules go by.
		live, err := dyn.Resource(vsGVR).Namespace("bookinfo").Get(ctx, "reviews", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if stored, _, err := srv.Store().Get(config.VirtualService, "bookinfo", "reviews"); err != nil || stored.CreationTime().IsZero() ||
			!stored.CreationTime().Equal(live.GetCreationTimestamp().Time) {
			t.Errorf("stored creation time %v (%v), want the API server's %v", stored.CreationTime(), err, live.GetCreationTimestamp())
		}

		var cfg []config.Resource
		for _, k := range config.Kinds {
			rs, err := srv.Store().List(k.Kind, "")
			if err != nil {
				t.Fatal(err)
			}
			cfg = append(cfg, rs...)
		}
		p, err := xds.ParseNodeID("sidecar~198.18.5.9~productpage-v1-1.bookinfo~bookinfo.svc.cluster.local")
		if err != nil {
			t.Fatal(err)
		}
		res, err := xds.Build(xds.Input{Config: cfg, Registry: srv.Registry().Snapshot()}, p)
		if err != nil {
			t.Fatal(err)
		}
		dump := func(typ string) string {
			var b strings.Builder
			for _, r := range res[typ] {
				j, _ := protojson.Marshal(r)
				b.Write(j)
			}
			return b.String()
		}
		if eds := dump(resource.EndpointType); !strings.Contains(eds, `"outbound|9080||reviews.bookinfo.svc.cluster.local"`) || !strings.Contains(eds, "198.18.5.1") || strings.Contains(eds, "198.18.5.2") {
			t.Errorf("EDS does not hold reviews' ready endpoint (and only it):\n%s", eds)
		}
		if rds := dump(resource.RouteType); !strings.Contains(rds, "outbound|9080|v2|reviews.bookinfo.svc.cluster.local") {
			t.Errorf("RDS does not route reviews to v2 as the VirtualService says:\n%s", rds)
		}

		// Deleted in the cluster, deleted in the store.
		if err := dyn.Resource(vsGVR).Namespace("bookinfo").Delete(ctx, "reviews", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the VirtualService gone from the store", func() error {
			_, ok, err := srv.Store().Get(config.VirtualService, "bookinfo", "reviews")
			if err == nil && ok {
				err = errors.New("still stored")
			}
			return err
		})
	})
}
