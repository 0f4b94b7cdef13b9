// Package install owns what meshlab puts on a Kubernetes cluster: the Istio
// CRDs, istiod (the meshlab control plane) with least-privilege RBAC and the
// sidecar-injection and validation webhooks, the ingress gateway, the
// istio mesh-config ConfigMap, the telemetry addons (a Prometheus with the
// walkthrough's Kubernetes SD jobs and a Zipkin trace store, both the
// meshlab image), the console (kiali, the meshlab image too), and optionally Bookinfo with its gateway routes. Objects
// are typed client-go objects, rendered to YAML or applied with server-side
// apply (field manager "meshlab"); Uninstall deletes what Install created.
package install

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/crd"
	"github.com/meshlab/meshlab/controlplane/inject"
	"github.com/meshlab/meshlab/samples"
)

// Names of what an install creates, as Istio names them.
const (
	Namespace        = "istio-system"
	Istiod           = "istiod"
	IngressGateway   = "istio-ingressgateway"
	InjectorWebhook  = "istio-sidecar-injector"
	ValidatorWebhook = "istio-validator-istio-system"
	FieldManager     = "meshlab"
	ManagedByLabel   = "app.kubernetes.io/managed-by"
	InjectionLabel   = "istio-injection"
	InjectPodLabel   = "sidecar.istio.io/inject"
	WebhookPort      = 15017
	CACertsSecret    = "cacerts"      // Istio's plugged-in CA Secret
	CACertsMountPath = "/etc/cacerts" // where istiod reads it, as Istio
	storeMountPath   = "/var/lib/meshlab"
	binary           = "/meshlab" // where the meshlab image keeps the binary
)

// Options are the parameters of an install.
type Options struct {
	// Image is the meshlab image every container runs, e.g.
	// meshlab.local/meshlab:v0.4.0.
	Image string
	// CABundle is the PEM of the CA that signs the webhooks' serving
	// certificate (the mesh root, controlplane/ca).
	CABundle []byte
	// WebhookURLBase, when set (https://127.0.0.1:15017), registers the
	// webhooks by URL for a control plane running outside the cluster,
	// instead of by the istiod Service.
	WebhookURLBase string
	// CACerts, when set, is the data of the cacerts Secret to create: the
	// mesh CA istiod signs with (controlplane/ca Files). Unset, the Secret
	// is left as the cluster has it (MeshCA).
	CACerts map[string][]byte
	// BookinfoNamespace, when set, installs Bookinfo there, labelled
	// istio-injection=enabled, with its gateway and routes.
	BookinfoNamespace string
	// ControlPlaneArgs are appended to `meshlab controlplane ...`.
	ControlPlaneArgs []string
	// MeshConfig, when set, is the mesh config (YAML of Istio's
	// MeshConfig) put in the istio ConfigMap's "mesh" key, which istiod
	// reads at start and watches. Unset, no ConfigMap is made and istiod
	// keeps Istio's defaults.
	MeshConfig string
	// PrometheusConfig is the prometheus addon's config file; nil is the
	// walkthrough's jobs over Kubernetes SD (prometheus.KubeConfig).
	PrometheusConfig []byte
	// NoTelemetryAddons leaves out the zipkin and prometheus addons.
	NoTelemetryAddons bool
	// NoConsole leaves out the console (kiali); KialiWebRoot is where it
	// serves, "" for Kiali's /kiali.
	NoConsole    bool
	KialiWebRoot string
}

func (o Options) validate() error {
	if o.Image == "" {
		return errors.New("install: no image given")
	}
	if o.WebhookURLBase != "" && !strings.HasPrefix(o.WebhookURLBase, "https://") {
		return fmt.Errorf("install: webhook URL base %q must start with https://", o.WebhookURLBase)
	}
	if r := o.KialiWebRoot; r != "" && (!strings.HasPrefix(r, "/") || path.Clean(r) != r) {
		return fmt.Errorf("install: kiali web root %q: want a clean absolute path such as /kiali or /dashboards/kiali", r)
	}
	var mesh map[string]any
	if err := yaml.Unmarshal([]byte(o.MeshConfig), &mesh); err != nil {
		return fmt.Errorf("install: the mesh config is not a YAML mapping (Istio's MeshConfig): %w", err)
	}
	return nil
}

// step is a group of objects applied together, then optionally waited for.
type step struct {
	name    string
	objects []runtime.Object
}

// Objects returns every object of an install, in the order Install applies
// them.
func Objects(o Options) ([]runtime.Object, error) {
	steps, err := plan(o)
	if err != nil {
		return nil, err
	}
	var out []runtime.Object
	for _, s := range steps {
		out = append(out, s.objects...)
	}
	return out, nil
}

// Render writes the objects of an install as a multi-document YAML stream,
// for `kubectl apply -f` or review.
func Render(w io.Writer, objs []runtime.Object) error {
	for i, obj := range objs {
		u, err := toUnstructured(obj)
		if err != nil {
			return err
		}
		b, err := yaml.Marshal(u.Object)
		if err != nil {
			return fmt.Errorf("rendering %s: %w", describe(u), err)
		}
		if i > 0 {
			if _, err := io.WriteString(w, "---\n"); err != nil {
				return err
			}
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

func plan(o Options) ([]step, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	steps := []step{
		{"namespace " + Namespace, []runtime.Object{namespace(Namespace, nil)}},
		{"Istio CRDs", crds()},
	}
	if o.CACerts != nil {
		steps = append(steps, step{"mesh CA", []runtime.Object{caSecret(o.CACerts)}})
	}
	if o.MeshConfig != "" {
		steps = append(steps, step{"mesh config", []runtime.Object{meshConfig(o.MeshConfig)}})
	}
	steps = append(steps, []step{
		{"istiod", istiod(o)},
		{"webhooks", []runtime.Object{injector(o), validator(o)}},
		{"ingress gateway", ingressGateway(o)},
	}...)
	if !o.NoTelemetryAddons {
		steps = append(steps, step{"telemetry addons (prometheus, zipkin)", telemetryAddons(o)})
	}
	if !o.NoConsole {
		steps = append(steps, step{"console (kiali)", console(o)})
	}
	if ns := o.BookinfoNamespace; ns != "" {
		app, err := bookinfo(o)
		if err != nil {
			return nil, err
		}
		steps = append(steps,
			step{"namespace " + ns, []runtime.Object{namespace(ns, map[string]string{InjectionLabel: "enabled"})}},
			step{"bookinfo", app})
		routes, err := bookinfoGateway(ns)
		if err != nil {
			return nil, err
		}
		steps = append(steps, step{"bookinfo gateway and routes", routes})
	}
	return steps, nil
}

func objectMeta(name, ns string, labels map[string]string) metav1.ObjectMeta {
	l := map[string]string{ManagedByLabel: FieldManager}
	for k, v := range labels {
		l[k] = v
	}
	return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: l}
}

func namespace(name string, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: objectMeta(name, "", labels),
	}
}

// caSecret is Istio's cacerts: the mesh CA that istiod mounts and signs
// with, and whose root is the webhooks' caBundle.
func caSecret(files map[string][]byte) *corev1.Secret {
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: objectMeta(CACertsSecret, Namespace, nil),
		Type:       corev1.SecretTypeOpaque,
		Data:       files,
	}
}

func crds() []runtime.Object {
	var out []runtime.Object
	for _, c := range crd.CRDs() {
		c.Labels[ManagedByLabel] = FieldManager
		out = append(out, c)
	}
	return out
}

// istiod is the control plane: its account, what it may read, its Service
// and Deployment.
func istiod(o Options) []runtime.Object {
	labels := map[string]string{"app": Istiod, "istio": "pilot"}
	var istioResources []string
	var groups []string
	for _, k := range config.Kinds {
		istioResources = append(istioResources, k.Plural)
		if !contains(groups, k.Group) {
			groups = append(groups, k.Group)
		}
	}
	// What its informers need, and the reviews that check a caller of its
	// API (the caller's Kubernetes identity, as system:auth-delegator
	// allows), and the root certificate's ConfigMaps: it writes nothing else
	// to the cluster, and reads its CA
	// from the mounted cacerts Secret.
	read := []string{"list", "watch"}
	role := &rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
		ObjectMeta: objectMeta("istiod-"+Namespace, "", labels),
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"services", "pods", "namespaces"}, Verbs: read},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: read},
			{APIGroups: groups, Resources: istioResources, Verbs: read},
			{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
			{APIGroups: []string{"authorization.k8s.io"}, Resources: []string{"subjectaccessreviews"}, Verbs: []string{"create"}},
			// The istio-ca-root-cert ConfigMap it publishes in every
			// namespace, as Istio's namespace controller does.
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch", "create", "update"}},
		},
	}
	binding := bindRole(objectMeta("istiod-"+Namespace, "", labels), role.Name, Istiod)
	sa := &corev1.ServiceAccount{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: objectMeta(Istiod, Namespace, labels),
	}
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: objectMeta(Istiod, Namespace, labels),
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": Istiod},
			Ports: []corev1.ServicePort{
				servicePort("grpc-xds", 15010, 15010),
				servicePort("https-dns", 15012, 15012),
				servicePort("http-monitoring", 15014, 15014),
				servicePort("https-webhook", 443, WebhookPort),
			},
		},
	}
	args := append([]string{binary, "controlplane",
		"--state-dir=" + storeMountPath + "/controlplane",
		"--xds-addr=:15010",
		"--http-addr=:15014",
		"--in-cluster",
		fmt.Sprintf("--webhook-addr=:%d", WebhookPort),
		"--proxy-image=" + o.Image,
		"--ca-dir=" + CACertsMountPath,
	}, o.ControlPlaneArgs...)
	podLabels := map[string]string{"app": Istiod, "istio": "pilot", InjectPodLabel: "false"}
	deploy := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: objectMeta(Istiod, Namespace, labels),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(1)),
			// One writer of the store at a time.
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": Istiod}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: map[string]string{
					// As Istio's chart: annotation-driven scrapers find
					// istiod's /metrics.
					"prometheus.io/scrape": "true",
					"prometheus.io/port":   "15014",
				}},
				Spec: corev1.PodSpec{
					ServiceAccountName: Istiod,
					Containers: []corev1.Container{{
						Name:            "discovery",
						Image:           o.Image,
						ImagePullPolicy: corev1.PullIfNotPresent,
						Command:         args,
						Ports: []corev1.ContainerPort{
							containerPort("grpc-xds", 15010),
							containerPort("https-dns", 15012),
							containerPort("http-monitoring", 15014),
							containerPort("https-webhook", WebhookPort),
						},
						Env: downwardEnv(),
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(15014)}},
							PeriodSeconds: 3,
						},
						VolumeMounts: []corev1.VolumeMount{
							{Name: "store", MountPath: storeMountPath},
							{Name: CACertsSecret, MountPath: CACertsMountPath, ReadOnly: true},
						},
					}},
					Volumes: []corev1.Volume{
						{Name: "store", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
						// Optional, as in Istio: without it istiod keeps a
						// root of its own in its store.
						{Name: CACertsSecret, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
							SecretName: CACertsSecret, Optional: ptr(true)}}},
					},
				},
			},
		},
	}
	return []runtime.Object{sa, role, binding, svc, deploy}
}

// clientConfig points a webhook at path on istiod: by Service in the
// cluster, or by URL when the control plane runs outside it.
func clientConfig(o Options, path string) admissionv1.WebhookClientConfig {
	cc := admissionv1.WebhookClientConfig{CABundle: o.CABundle}
	if o.WebhookURLBase != "" {
		cc.URL = ptr(strings.TrimSuffix(o.WebhookURLBase, "/") + path)
	} else {
		cc.Service = &admissionv1.ServiceReference{Namespace: Namespace, Name: Istiod, Path: ptr(path), Port: ptr(int32(443))}
	}
	return cc
}

// injector is istio-sidecar-injector with Istio's two webhooks: one for
// the pods of namespaces labelled istio-injection=enabled (unless the pod
// opts out), one for pods labelled sidecar.istio.io/inject=true in
// namespaces without the label. The webhook decides again on the same labels.
func injector(o Options) *admissionv1.MutatingWebhookConfiguration {
	hook := func(name string, namespaces, objects *metav1.LabelSelector) admissionv1.MutatingWebhook {
		return admissionv1.MutatingWebhook{
			Name:                    name,
			ClientConfig:            clientConfig(o, "/inject"),
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             ptr(admissionv1.SideEffectClassNone),
			FailurePolicy:           ptr(admissionv1.Fail),
			ReinvocationPolicy:      ptr(admissionv1.NeverReinvocationPolicy),
			TimeoutSeconds:          ptr(int32(10)),
			Rules: []admissionv1.RuleWithOperations{{
				Operations: []admissionv1.OperationType{admissionv1.Create},
				Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			NamespaceSelector: namespaces,
			ObjectSelector:    objects,
		}
	}
	return &admissionv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: objectMeta(InjectorWebhook, "", map[string]string{"app": "sidecar-injector"}),
		Webhooks: []admissionv1.MutatingWebhook{
			hook("namespace.sidecar-injector.istio.io",
				&metav1.LabelSelector{MatchLabels: map[string]string{InjectionLabel: "enabled"}},
				&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: InjectPodLabel, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"false"}},
				}}),
			hook("object.sidecar-injector.istio.io",
				&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: InjectionLabel, Operator: metav1.LabelSelectorOpDoesNotExist},
				}},
				&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: InjectPodLabel, Operator: metav1.LabelSelectorOpIn, Values: []string{"true"}},
				}}),
		},
	}
}

func validator(o Options) *admissionv1.ValidatingWebhookConfiguration {
	var groups []string
	for _, k := range config.Kinds {
		if !contains(groups, k.Group) {
			groups = append(groups, k.Group)
		}
	}
	return &admissionv1.ValidatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingWebhookConfiguration"},
		ObjectMeta: objectMeta(ValidatorWebhook, "", map[string]string{"app": "istiod", "istio": "istiod"}),
		Webhooks: []admissionv1.ValidatingWebhook{{
			Name:                    "rev.validation.istio.io",
			ClientConfig:            clientConfig(o, "/validate"),
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             ptr(admissionv1.SideEffectClassNone),
			// As Istio installs it: config can still be written while istiod
			// is down; the control plane rejects what it cannot use.
			FailurePolicy:  ptr(admissionv1.Ignore),
			TimeoutSeconds: ptr(int32(10)),
			Rules: []admissionv1.RuleWithOperations{{
				Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update},
				Rule:       admissionv1.Rule{APIGroups: groups, APIVersions: []string{"*"}, Resources: []string{"*"}},
			}},
		}},
	}
}

// ingressGateway is istio-ingressgateway: the meshlab proxy in router mode
// behind a LoadBalancer Service.
func ingressGateway(o Options) []runtime.Object {
	labels := map[string]string{"app": IngressGateway, "istio": "ingressgateway"}
	podLabels := map[string]string{"app": IngressGateway, "istio": "ingressgateway", InjectPodLabel: "false"}
	sa := &corev1.ServiceAccount{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: objectMeta(IngressGateway+"-service-account", Namespace, labels),
	}
	deploy := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: objectMeta(IngressGateway, Namespace, labels),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": IngressGateway, "istio": "ingressgateway"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec: corev1.PodSpec{
					ServiceAccountName: sa.Name,
					Containers: []corev1.Container{{
						Name:            "istio-proxy",
						Image:           o.Image,
						ImagePullPolicy: corev1.PullIfNotPresent,
						Command: []string{binary, "gateway",
							"--discovery-address=" + Istiod + "." + Namespace + ".svc:15012",
							"--label=istio=ingressgateway", "--label=app=" + IngressGateway},
						Ports: []corev1.ContainerPort{
							containerPort("http2", 8080),
							containerPort("https", 8443),
							containerPort("status-port", 15021),
							containerPort("http-envoy-prom", 15090),
						},
						Env: downwardEnv(),
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz/ready", Port: intstr.FromInt32(15021)}},
							PeriodSeconds: 2,
						},
						// As Istio's gateway: the token it gets its certificate
						// with (which entitles it to its namespace's TLS
						// credentials) and the root it verifies istiod with.
						VolumeMounts: []corev1.VolumeMount{
							{Name: inject.TokenVolume, MountPath: inject.TokenMountPath},
							{Name: inject.RootCertVolume, MountPath: inject.RootCertMountPath},
						},
					}},
					Volumes: []corev1.Volume{{
						Name: inject.TokenVolume,
						VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{{
							ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: inject.TokenAudience, ExpirationSeconds: ptr(int64(43200)), Path: inject.TokenVolume},
						}}}},
					}, {
						Name: inject.RootCertVolume,
						VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
							LocalObjectReference: corev1.LocalObjectReference{Name: inject.RootCertConfigMap}}},
					}},
				},
			},
		},
	}
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: objectMeta(IngressGateway, Namespace, labels),
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": IngressGateway, "istio": "ingressgateway"},
			Ports: []corev1.ServicePort{
				servicePort("http2", 8080, 8080),
				servicePort("https", 8443, 8443),
			},
		},
	}
	return []runtime.Object{sa, deploy, svc}
}

// bookinfo is samples.BookinfoManifest() in ns, its images replaced by
// o.Image.
func bookinfo(o Options) ([]runtime.Object, error) {
	docs, err := splitYAML(samples.BookinfoManifest())
	if err != nil {
		return nil, fmt.Errorf("reading the bookinfo manifest: %w", err)
	}
	decoder := scheme.Codecs.UniversalDeserializer()
	var out []runtime.Object
	for i, doc := range docs {
		obj, gvk, err := decoder.Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("decoding document %d of the bookinfo manifest: %w", i+1, err)
		}
		obj.GetObjectKind().SetGroupVersionKind(*gvk)
		m, err := metaOf(obj)
		if err != nil {
			return nil, err
		}
		m.SetNamespace(o.BookinfoNamespace)
		labels := m.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		labels[ManagedByLabel] = FieldManager
		m.SetLabels(labels)
		if d, ok := obj.(*appsv1.Deployment); ok {
			for i := range d.Spec.Template.Spec.Containers {
				d.Spec.Template.Spec.Containers[i].Image = o.Image
			}
		}
		out = append(out, obj)
	}
	return out, nil
}

// bookinfoGateway is samples.BookinfoGateway() as Istio custom resources in ns.
func bookinfoGateway(ns string) ([]runtime.Object, error) {
	docs, err := splitYAML(samples.BookinfoGateway())
	if err != nil {
		return nil, fmt.Errorf("reading the bookinfo gateway: %w", err)
	}
	var out []runtime.Object
	for i, doc := range docs {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &u.Object); err != nil {
			return nil, fmt.Errorf("decoding document %d of the bookinfo gateway: %w", i+1, err)
		}
		u.SetNamespace(ns)
		labels := u.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		labels[ManagedByLabel] = FieldManager
		u.SetLabels(labels)
		out = append(out, u)
	}
	return out, nil
}

// splitYAML returns the non-empty documents of a YAML stream, as JSON.
func splitYAML(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(j)) == 0 || string(j) == "null" {
			continue
		}
		out = append(out, j)
	}
}

func downwardEnv() []corev1.EnvVar {
	field := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}}
	}
	return []corev1.EnvVar{
		field("POD_NAME", "metadata.name"),
		field("POD_NAMESPACE", "metadata.namespace"),
		field("INSTANCE_IP", "status.podIP"),
		field("SERVICE_ACCOUNT", "spec.serviceAccountName"),
	}
}

func servicePort(name string, port, target int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: port, TargetPort: intstr.FromInt32(target), Protocol: corev1.ProtocolTCP}
}

func containerPort(name string, port int32) corev1.ContainerPort {
	return corev1.ContainerPort{Name: name, ContainerPort: port, Protocol: corev1.ProtocolTCP}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func ptr[T any](v T) *T { return &v }

// bindRole binds the ClusterRole role to the ServiceAccount sa of the
// installer's namespace.
func bindRole(meta metav1.ObjectMeta, role, sa string) *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
		ObjectMeta: meta,
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: Namespace}},
	}
}
