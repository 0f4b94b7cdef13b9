package install

import (
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/meshlab/meshlab/controlplane/config"
)

// The console, as Kiali's chart names it: Deployment, Service and
// ServiceAccount kiali in istio-system, on 20001 under /kiali.
const (
	Kiali        = "kiali"
	KialiPort    = 20001
	KialiWebRoot = "/kiali"
	// saTokenPath is the pod's service account token, which the
	// control plane's API reviews (TokenReview) and authorizes by RBAC.
	saTokenPath = "/var/run/secrets/kubernetes.io/serviceaccount/token"
)

// consoleWriteGroups are the Istio API groups the console's wizards and
// YAML editor write: routing (VirtualService, DestinationRule, Gateway),
// PeerAuthentication and AuthorizationPolicy, Telemetry.
var consoleWriteGroups = []string{"networking.istio.io", "security.istio.io", "telemetry.istio.io"}

// console is the lab's console, `meshlab kiali` in the meshlab image, with
// the rights of what it shows and what its wizards write, and no more: it
// reads pods, their logs and the workloads' controllers, writes Istio
// config only, and reads no Secret.
func console(o Options) []runtime.Object {
	root := o.KialiWebRoot
	if root == "" {
		root = KialiWebRoot
	}
	labels := map[string]string{"app": Kiali}
	sa := &corev1.ServiceAccount{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: objectMeta(Kiali, Namespace, labels),
	}
	read := []string{"get", "list", "watch"}
	var istio []string
	for _, k := range config.Kinds {
		if slices.Contains(consoleWriteGroups, k.Group) && !slices.Contains(istio, k.Plural) {
			istio = append(istio, k.Plural)
		}
	}
	role := &rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
		ObjectMeta: objectMeta(Kiali, "", labels),
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods", "pods/log", "services", "endpoints", "namespaces", "configmaps"}, Verbs: read},
			{APIGroups: []string{"apps"}, Resources: []string{"deployments", "replicasets"}, Verbs: read},
			{APIGroups: consoleWriteGroups, Resources: istio, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
		},
	}
	binding := bindRole(objectMeta(Kiali, "", labels), role.Name, sa.Name)
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: objectMeta(Kiali, Namespace, labels),
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": Kiali},
			Ports:    []corev1.ServicePort{servicePort("http-kiali", KialiPort, KialiPort)},
		},
	}
	healthz := root + "/healthz"
	if root == "/" {
		healthz = "/healthz"
	}
	deploy := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: objectMeta(Kiali, Namespace, labels),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": Kiali}},
			Template: corev1.PodTemplateSpec{
				// Out of the mesh, as Kiali's chart installs it: the
				// gateway reaches it in plaintext.
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": Kiali, InjectPodLabel: "false"}},
				Spec: corev1.PodSpec{
					ServiceAccountName: sa.Name,
					Containers: []corev1.Container{{
						Name:            Kiali,
						Image:           o.Image,
						ImagePullPolicy: corev1.PullIfNotPresent,
						Command: []string{binary, "kiali",
							"--in-cluster",
							fmt.Sprintf("--listen=:%d", KialiPort),
							"--web-root=" + root,
							"--controlplane-url=http://" + Istiod + "." + Namespace + ":15014",
							// The API reviews this token and lets RBAC
							// decide: the ClusterRole above is what the
							// console may change.
							"--token-file=" + saTokenPath,
							fmt.Sprintf("--prometheus-url=http://%s.%s:%d", Prometheus, Namespace, PrometheusPort),
							"--tracing-provider=zipkin",
							fmt.Sprintf("--tracing-url=http://%s.%s:%d", Zipkin, Namespace, ZipkinPort),
							// As the walkthrough's Kiali: reached through
							// `meshlab dashboard kiali` or the gateway.
							"--auth-strategy=anonymous",
						},
						Ports: []corev1.ContainerPort{containerPort("http-kiali", KialiPort)},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: healthz, Port: intstr.FromInt32(KialiPort)}},
							PeriodSeconds: 5,
						},
					}},
				},
			},
		},
	}
	return []runtime.Object{sa, role, binding, svc, deploy}
}
