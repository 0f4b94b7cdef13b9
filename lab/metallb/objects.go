package metallb

import (
	"bytes"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// Options are the parameters of MetalLB's objects.
type Options struct {
	// MemberlistKey is the speakers' shared memberlist key; random per
	// install (Install makes one), fixed in tests.
	MemberlistKey []byte
	// Images are the controller's and speaker's images; the pinned ones
	// where empty.
	Images Images
}

// kinds MetalLB v0.15 caches or watches. Both binaries give controller-runtime
// a per-namespace cache of every kind but ServiceL2Status, and building that
// cache asks the API server for each one, so a missing CRD stops the
// controller and the speaker at start, even a BGP one the L2 lab never uses.
// The speaker also writes ServiceBGPStatus objects in L2 mode (none come
// about without BGP peers, but its reconciler is always set up).
var crdKinds = []struct {
	kind, plural string
	versions     []string // served; the last is stored
}{
	{"BFDProfile", "bfdprofiles", []string{"v1beta1"}},
	{"BGPAdvertisement", "bgpadvertisements", []string{"v1beta1"}},
	{"BGPPeer", "bgppeers", []string{"v1beta1", "v1beta2"}},
	{"Community", "communities", []string{"v1beta1"}},
	{"IPAddressPool", "ipaddresspools", []string{"v1beta1"}},
	{"L2Advertisement", "l2advertisements", []string{"v1beta1"}},
	{"ServiceBGPStatus", "servicebgpstatuses", []string{"v1beta1"}},
	{"ServiceL2Status", "servicel2statuses", []string{"v1beta1"}},
}

var labels = map[string]string{"app": "metallb", "app.kubernetes.io/managed-by": "meshlab"}

func meta(name, ns string, extra ...string) metav1.ObjectMeta {
	l := map[string]string{}
	for k, v := range labels {
		l[k] = v
	}
	for i := 0; i+1 < len(extra); i += 2 {
		l[extra[i]] = extra[i+1]
	}
	return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: l}
}

// CRDs are MetalLB's custom resource definitions. Their schemas keep unknown
// fields: MetalLB validates its own resources, and these objects only have to
// be stored and served.
func CRDs() []*apiextensionsv1.CustomResourceDefinition {
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, k := range crdKinds {
		crd := &apiextensionsv1.CustomResourceDefinition{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apiextensions.k8s.io/v1", Kind: "CustomResourceDefinition"},
			ObjectMeta: meta(k.plural+"."+Group, ""),
			Spec: apiextensionsv1.CustomResourceDefinitionSpec{
				Group: Group,
				Names: apiextensionsv1.CustomResourceDefinitionNames{
					Kind: k.kind, ListKind: k.kind + "List", Plural: k.plural, Singular: strings.ToLower(k.kind),
				},
				Scope: apiextensionsv1.NamespaceScoped,
			},
		}
		for i, v := range k.versions {
			crd.Spec.Versions = append(crd.Spec.Versions, apiextensionsv1.CustomResourceDefinitionVersion{
				Name: v, Served: true, Storage: i == len(k.versions)-1,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object", XPreserveUnknownFields: ptr(true),
				}},
				Subresources: &apiextensionsv1.CustomResourceSubresources{Status: &apiextensionsv1.CustomResourceSubresourceStatus{}},
			})
		}
		out = append(out, crd)
	}
	return out
}

func crdPlurals() []string {
	var p []string
	for _, k := range crdKinds {
		p = append(p, k.plural)
	}
	return p
}

var (
	read  = []string{"get", "list", "watch"}
	write = []string{"create", "patch"}
)

// Objects are MetalLB's install objects, in the order they are applied:
// namespace, CRDs, RBAC, configuration, controller and speaker. The pool and
// its advertisement come after MetalLB is up (PoolObjects).
func Objects(o Options) []runtime.Object {
	objs := []runtime.Object{&corev1.Namespace{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		// The speaker needs host networking and NET_RAW to answer ARP.
		ObjectMeta: meta(Namespace, "", "pod-security.kubernetes.io/enforce", "privileged"),
	}}
	for _, c := range CRDs() {
		objs = append(objs, c)
	}
	objs = append(objs, rbac()...)
	objs = append(objs,
		&corev1.Secret{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: meta("memberlist", Namespace),
			Data:       map[string][]byte{MemberlistKey: o.MemberlistKey},
		},
		// Interfaces a speaker never answers ARP on: its node's loopback and
		// the pods' veths.
		&corev1.ConfigMap{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: meta("metallb-excludel2", Namespace),
			Data:       map[string]string{"excludel2.yaml": "announcedInterfacesToExclude: [\"^lo$\", \"^veth.*\", \"^docker.*\", \"^cni.*\", \"^kube-ipvs.*\"]\n"},
		},
		controller(o.Images.ControllerRef()),
		speaker(o.Images.SpeakerRef()),
	)
	return objs
}

func rbac() []runtime.Object {
	crds := crdPlurals()
	role := func(name, ns string, rules ...rbacv1.PolicyRule) runtime.Object {
		if ns == "" {
			return &rbacv1.ClusterRole{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"}, ObjectMeta: meta(name, ""), Rules: rules}
		}
		return &rbacv1.Role{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"}, ObjectMeta: meta(name, ns), Rules: rules}
	}
	bind := func(name, ns, sa string) runtime.Object {
		subj := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: Namespace}}
		if ns == "" {
			return &rbacv1.ClusterRoleBinding{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"}, ObjectMeta: meta(name, ""),
				RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name}, Subjects: subj}
		}
		return &rbacv1.RoleBinding{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"}, ObjectMeta: meta(name, ns),
			RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name}, Subjects: subj}
	}
	sa := func(name string) runtime.Object {
		return &corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: meta(name, Namespace)}
	}
	return []runtime.Object{
		sa("controller"),
		sa("speaker"),
		// The controller assigns addresses: it reads Services and writes
		// their status.
		role("metallb-system:controller", "",
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"services", "namespaces", "nodes"}, Verbs: read},
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"services/status"}, Verbs: []string{"update"}},
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: write},
		),
		// The speakers announce them: they read Services, their endpoints and
		// the nodes, and report what they announce. They watch
		// ServiceL2Statuses in every namespace (that kind is not in their
		// per-namespace cache), so its rule is cluster-wide.
		role("metallb-system:speaker", "",
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"services", "endpoints", "nodes", "namespaces"}, Verbs: read},
			rbacv1.PolicyRule{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: read},
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: write},
			rbacv1.PolicyRule{APIGroups: []string{Group}, Resources: []string{"servicel2statuses", "servicel2statuses/status"}, Verbs: []string{"*"}},
		),
		role("controller", Namespace,
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets", "configmaps"}, Verbs: read},
			rbacv1.PolicyRule{APIGroups: []string{Group}, Resources: crds, Verbs: read},
			// It counts each pool's assigned and free addresses into the
			// pool's status.
			rbacv1.PolicyRule{APIGroups: []string{Group}, Resources: []string{"ipaddresspools/status"}, Verbs: []string{"update"}},
		),
		role("speaker", Namespace,
			// memberlist finds the other speakers by listing pods; the
			// speaker reads its own to own the status objects it writes.
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods", "secrets", "configmaps"}, Verbs: read},
			rbacv1.PolicyRule{APIGroups: []string{Group}, Resources: crds, Verbs: read},
			rbacv1.PolicyRule{APIGroups: []string{Group}, Resources: []string{"servicebgpstatuses", "servicebgpstatuses/status"}, Verbs: []string{"*"}},
		),
		bind("metallb-system:controller", "", "controller"),
		bind("metallb-system:speaker", "", "speaker"),
		bind("controller", Namespace, "controller"),
		bind("speaker", Namespace, "speaker"),
	}
}

const metricsPort = 7472

func probe() *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/metrics", Port: intstr.FromString("monitoring")}},
		PeriodSeconds: 5, FailureThreshold: 3, TimeoutSeconds: 1,
	}
}

func controller(image string) *appsv1.Deployment {
	sel := map[string]string{"app": "metallb", "component": "controller"}
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: meta("controller", Namespace, "component", "controller"),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: sel},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: sel},
				Spec: corev1.PodSpec{
					ServiceAccountName: "controller",
					NodeSelector:       map[string]string{"kubernetes.io/os": "linux"},
					SecurityContext:    &corev1.PodSecurityContext{RunAsNonRoot: ptr(true), RunAsUser: ptr(int64(65534)), FSGroup: ptr(int64(65534))},
					Containers: []corev1.Container{{
						Name:  "controller",
						Image: image,
						// No admission webhook: meshlab writes MetalLB's only
						// configuration itself, so the controller needs no
						// serving certificate and no webhook Service.
						Args: []string{fmt.Sprintf("--port=%d", metricsPort), "--log-level=info", "--webhook-mode=disabled"},
						// No METALLB_ML_SECRET_NAME: Install writes the
						// memberlist secret, so the controller need not make
						// one (nor read its own Deployment to own it).
						Env:            []corev1.EnvVar{{Name: "METALLB_NAMESPACE", Value: Namespace}},
						Ports:          []corev1.ContainerPort{{Name: "monitoring", ContainerPort: metricsPort}},
						ReadinessProbe: probe(),
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr(false), ReadOnlyRootFilesystem: ptr(true),
							Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
					}},
				},
			},
		},
	}
}

func speaker(image string) *appsv1.DaemonSet {
	sel := map[string]string{"app": "metallb", "component": "speaker"}
	field := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	return &appsv1.DaemonSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"},
		ObjectMeta: meta("speaker", Namespace, "component", "speaker"),
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: sel},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: sel},
				Spec: corev1.PodSpec{
					ServiceAccountName: "speaker",
					// ARP replies leave from the node's own interface.
					HostNetwork:  true,
					NodeSelector: map[string]string{"kubernetes.io/os": "linux"},
					// A one-node kind cluster has only its control plane.
					Tolerations: []corev1.Toleration{
						{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
						{Key: "node-role.kubernetes.io/master", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
					},
					TerminationGracePeriodSeconds: ptr(int64(2)),
					Containers: []corev1.Container{{
						Name:  "speaker",
						Image: image,
						// kind labels its control-plane node
						// exclude-from-external-load-balancers; in a one-node
						// lab it is the only node that can announce.
						Args: []string{fmt.Sprintf("--port=%d", metricsPort), "--log-level=info", "--ignore-exclude-lb"},
						Env: []corev1.EnvVar{
							{Name: "METALLB_NAMESPACE", Value: Namespace},
							field("METALLB_NODE_NAME", "spec.nodeName"),
							field("METALLB_POD_NAME", "metadata.name"),
							field("METALLB_HOST", "status.hostIP"),
							field("METALLB_ML_BIND_ADDR", "status.podIP"),
							{Name: "METALLB_ML_LABELS", Value: "app=metallb,component=speaker"},
							{Name: "METALLB_ML_SECRET_KEY_PATH", Value: "/etc/ml_secret_key"},
						},
						Ports: []corev1.ContainerPort{
							{Name: "monitoring", ContainerPort: metricsPort},
							{Name: "memberlist-tcp", ContainerPort: 7946},
							{Name: "memberlist-udp", ContainerPort: 7946, Protocol: corev1.ProtocolUDP},
						},
						ReadinessProbe: probe(),
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr(false), ReadOnlyRootFilesystem: ptr(true),
							Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_RAW"}},
						},
						VolumeMounts: []corev1.VolumeMount{
							{Name: "memberlist", MountPath: "/etc/ml_secret_key", ReadOnly: true},
							{Name: "excludel2", MountPath: "/etc/metallb", ReadOnly: true},
						},
					}},
					Volumes: []corev1.Volume{
						{Name: "memberlist", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "memberlist"}}},
						{Name: "excludel2", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "metallb-excludel2"}}}},
					},
				},
			},
		},
	}
}

// PoolObjects are the address pool and its L2 advertisement.
func PoolObjects(r Range) []runtime.Object {
	pool := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": Group + "/v1beta1", "kind": "IPAddressPool",
		"metadata": map[string]any{"name": PoolName, "namespace": Namespace, "labels": toAny(labels)},
		"spec":     map[string]any{"addresses": []any{r.String()}},
	}}
	adv := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": Group + "/v1beta1", "kind": "L2Advertisement",
		"metadata": map[string]any{"name": PoolName, "namespace": Namespace, "labels": toAny(labels)},
		"spec":     map[string]any{"ipAddressPools": []any{PoolName}},
	}}
	return []runtime.Object{pool, adv}
}

func toAny(m map[string]string) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// ToUnstructured turns an object into what the dynamic client applies, without
// the empty status and creation time a typed object carries.
func ToUnstructured(obj runtime.Object) (*unstructured.Unstructured, error) {
	if u, ok := obj.(*unstructured.Unstructured); ok {
		return u, nil
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("convert %T: %w", obj, err)
	}
	delete(m, "status")
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	if tmpl, ok := nested(m, "spec", "template", "metadata"); ok {
		delete(tmpl, "creationTimestamp")
	}
	return &unstructured.Unstructured{Object: m}, nil
}

func nested(m map[string]any, path ...string) (map[string]any, bool) {
	for _, p := range path {
		n, ok := m[p].(map[string]any)
		if !ok {
			return nil, false
		}
		m = n
	}
	return m, true
}

// Render writes objects as a multi-document YAML stream, as kubectl reads.
func Render(objs []runtime.Object) ([]byte, error) {
	var buf bytes.Buffer
	for i, obj := range objs {
		u, err := ToUnstructured(obj)
		if err != nil {
			return nil, err
		}
		b, err := yaml.Marshal(u.Object)
		if err != nil {
			return nil, fmt.Errorf("render %s: %w", u.GetName(), err)
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(b)
	}
	return buf.Bytes(), nil
}

func ptr[T any](v T) *T { return &v }
