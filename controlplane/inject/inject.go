// Package inject adds meshlab's sidecar to pods, as Istio's sidecar injector
// does: the istio-init container that programs traffic capture, the
// istio-proxy container, the pod-info volume, and the labels and
// annotations Istio's tools and Prometheus look for. It decides which pods
// get one by Istio's rules, and serves the mutating admission webhook and
// the file rewriting of `meshlab inject -f`.
package inject

import (
	"encoding/json"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// Names Istio's tools and dashboards know the injected parts by.
const (
	InitContainer    = "istio-init"
	ProxyContainer   = "istio-proxy"
	PodInfoVolume    = "istio-podinfo"
	PodInfoMountPath = "/etc/istio/pod"

	// The mesh root (the istio-ca-root-cert ConfigMap) and the token
	// istio-proxy proves its identity with to the CA (a projected
	// ServiceAccount token for the audience istio-ca), mounted where
	// Istio's injector mounts them.
	RootCertVolume    = "istiod-ca-cert"
	RootCertMountPath = "/var/run/secrets/istio"
	RootCertConfigMap = "istio-ca-root-cert"
	TokenVolume       = "istio-token"
	TokenMountPath    = "/var/run/secrets/tokens"
	TokenAudience     = "istio-ca"

	// NamespaceLabel enables or disables injection for a namespace.
	NamespaceLabel = "istio-injection"
	// RevisionLabel on a namespace asks for injection by that revision.
	RevisionLabel = "istio.io/rev"
	// InjectKey opts a pod in or out, as a label (which wins) or an annotation.
	InjectKey = "sidecar.istio.io/inject"
	// StatusAnnotation marks an injected pod and says what was added.
	StatusAnnotation = "sidecar.istio.io/status"
	// ProxyConfigAnnotation overrides the mesh's defaultConfig for one
	// pod's proxy, as a ProxyConfig in YAML or JSON.
	ProxyConfigAnnotation = "proxy.istio.io/config"

	TLSModeLabel           = "security.istio.io/tlsMode"
	CanonicalNameLabel     = "service.istio.io/canonical-name"
	CanonicalRevisionLabel = "service.istio.io/canonical-revision"

	ProxyUID = 1337
)

// Sidecar ports, as Istio numbers them.
const (
	StatsPort   = 15090 // /stats/prometheus, port name http-envoy-prom
	ReadyPort   = 15021 // /healthz/ready
	MetricsPort = 15020 // merged application and proxy metrics
)

// Params say what to inject.
type Params struct {
	// Image of both containers, e.g. meshlab.local/meshlab:v0.1.0.
	Image string
	// ImagePullPolicy; empty lets Kubernetes choose (IfNotPresent for a
	// tagged image).
	ImagePullPolicy corev1.PullPolicy
	// DiscoveryAddress is the control plane's xDS address; empty means
	// istiod.istio-system.svc:15012.
	DiscoveryAddress string
	// Revision goes in the status annotation; empty means "default".
	Revision string
	// Binary is meshlab's path in the image; empty means /meshlab, where
	// the meshlab image keeps it.
	Binary string
	// EnablePrometheusMerge says, at each injection, whether the mesh
	// config's enablePrometheusMerge is on; nil means on, Istio's default.
	EnablePrometheusMerge func() bool
}

// DefaultBinary is meshlab's path in the meshlab image.
const DefaultBinary = "/meshlab"

// DefaultDiscoveryAddress is where injected proxies find the control plane.
// 15012, as Istio's injection template: xDS over mutual TLS with the
// workload certificate the proxy gets there with its istio-token.
const DefaultDiscoveryAddress = "istiod.istio-system.svc:15012"

// ignoredNamespaces never get sidecars, as in Istio.
var ignoredNamespaces = map[string]bool{"kube-system": true, "kube-public": true, "kube-node-lease": true, "local-path-storage": true}

// Decision is whether a pod gets a sidecar, and why, in words a person
// debugging "why has my pod no sidecar" can use.
type Decision struct {
	Inject bool
	Reason string
}

// Decide applies Istio's injection rules. nsLabels are the labels of the
// pod's namespace; namespaceKnown false means the caller could not look it
// up and the webhook's namespace selector already chose (the API server only
// calls the webhook for pods in namespaces it selects), which counts as
// enabled.
func Decide(namespace string, nsLabels map[string]string, namespaceKnown bool, meta podMeta, spec *corev1.PodSpec) Decision {
	switch {
	case Injected(meta.Annotations, spec):
		return Decision{false, "already injected"}
	case spec.HostNetwork:
		return Decision{false, "the pod uses the host network"}
	case ignoredNamespaces[namespace]:
		return Decision{false, "namespace " + namespace + " is never injected"}
	}
	ns := "enabled"
	if namespaceKnown {
		ns = nsLabels[NamespaceLabel]
		// A revision label selects that revision's injector, which is
		// this one (the lab runs one control plane); the
		// istio-injection label wins when both are set, as in Istio.
		if _, rev := nsLabels[RevisionLabel]; rev && ns == "" {
			ns = "enabled"
		}
	}
	if ns == "disabled" {
		return Decision{false, "namespace " + namespace + " has " + NamespaceLabel + "=disabled"}
	}
	pod, where := meta.Labels[InjectKey], "label"
	if _, ok := meta.Labels[InjectKey]; !ok {
		pod, where = meta.Annotations[InjectKey], "annotation"
	}
	switch strings.ToLower(pod) {
	case "false", "n", "no", "off":
		return Decision{false, "the pod has " + where + " " + InjectKey + "=" + pod}
	case "true", "y", "yes", "on":
		return Decision{true, "the pod has " + where + " " + InjectKey + "=" + pod}
	}
	if !namespaceKnown {
		return Decision{true, "the pod does not opt out with " + InjectKey + "=false"}
	}
	if ns == "enabled" {
		if nsLabels[NamespaceLabel] == "" {
			return Decision{true, "namespace " + namespace + " has " + RevisionLabel + "=" + nsLabels[RevisionLabel]}
		}
		return Decision{true, "namespace " + namespace + " has " + NamespaceLabel + "=enabled"}
	}
	return Decision{false, "neither namespace " + namespace + " (no " + NamespaceLabel + "=enabled) nor the pod (no " + InjectKey + "=true) asks for a sidecar"}
}

// podMeta is the part of a pod's (or pod template's) metadata injection
// reads and writes.
type podMeta struct {
	Name         string
	GenerateName string
	Labels       map[string]string
	Annotations  map[string]string
}

// Injected reports whether a pod already has a sidecar: its status
// annotation, or a container of the proxy's name.
func Injected(annotations map[string]string, spec *corev1.PodSpec) bool {
	if _, ok := annotations[StatusAnnotation]; ok {
		return true
	}
	for _, c := range spec.Containers {
		if c.Name == ProxyContainer {
			return true
		}
	}
	return false
}

// status is the value of the status annotation, as Istio writes it.
type status struct {
	InitContainers   []string `json:"initContainers"`
	Containers       []string `json:"containers"`
	Volumes          []string `json:"volumes"`
	ImagePullSecrets []string `json:"imagePullSecrets"`
	Revision         string   `json:"revision"`
}

// apply adds the sidecar to a pod's metadata and spec; it does not decide
// whether it should (Decide does).
func apply(meta *podMeta, spec *corev1.PodSpec, p Params) {
	if p.DiscoveryAddress == "" {
		p.DiscoveryAddress = DefaultDiscoveryAddress
	}
	if p.Revision == "" {
		p.Revision = "default"
	}
	if p.Binary == "" {
		p.Binary = DefaultBinary
	}
	if meta.Labels == nil {
		meta.Labels = map[string]string{}
	}
	if meta.Annotations == nil {
		meta.Annotations = map[string]string{}
	}
	if len(spec.Containers) > 0 {
		setDefault(meta.Annotations, "kubectl.kubernetes.io/default-container", spec.Containers[0].Name)
		setDefault(meta.Annotations, "kubectl.kubernetes.io/default-logs-container", spec.Containers[0].Name)
	}
	st, _ := json.Marshal(status{
		InitContainers: []string{InitContainer}, Containers: []string{ProxyContainer},
		Volumes: []string{PodInfoVolume, TokenVolume, RootCertVolume}, Revision: p.Revision,
	})
	meta.Annotations[StatusAnnotation] = string(st)

	meta.Labels[TLSModeLabel] = "istio"
	setDefault(meta.Labels, CanonicalNameLabel, canonicalName(meta))
	setDefault(meta.Labels, CanonicalRevisionLabel, canonicalRevision(meta.Labels))

	spec.InitContainers = append(spec.InitContainers, initContainer(p))
	proxy := proxyContainer(p)
	if pc, ok := meta.Annotations[ProxyConfigAnnotation]; ok {
		// As Istio's injection template, the pod's ProxyConfig reaches
		// the proxy in PROXY_CONFIG (Istio's holds the mesh defaultConfig
		// merged with the annotation; meshlab's the annotation alone, the
		// control plane adding the defaultConfig the proxy connects
		// under). JSON, whether the annotation was written as JSON or YAML.
		if js, err := yaml.YAMLToJSON([]byte(pc)); err == nil {
			pc = string(js)
		}
		proxy.Env = append(proxy.Env, corev1.EnvVar{Name: "PROXY_CONFIG", Value: pc})
	}
	spec.Containers = append(spec.Containers, proxy)
	merge := p.EnablePrometheusMerge == nil || p.EnablePrometheusMerge()
	prometheusMerge(meta.Annotations, &spec.Containers[len(spec.Containers)-1], merge)
	spec.Volumes = append(spec.Volumes, corev1.Volume{
		Name: PodInfoVolume,
		VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
			{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
			{Path: "annotations", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations"}},
		}}},
	}, corev1.Volume{
		Name: TokenVolume,
		VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{{
			ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: TokenAudience, ExpirationSeconds: ptr(int64(43200)), Path: TokenVolume},
		}}}},
	}, corev1.Volume{
		Name: RootCertVolume,
		VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: RootCertConfigMap}}},
	})
}

func initContainer(p Params) corev1.Container {
	return corev1.Container{
		Name:            InitContainer,
		Image:           p.Image,
		ImagePullPolicy: p.ImagePullPolicy,
		Command:         []string{p.Binary, "init-redirect"},
		Args:            []string{"--proxy-uid", itoa(ProxyUID)},
		SecurityContext: &corev1.SecurityContext{
			Capabilities: &corev1.Capabilities{
				Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
				Drop: []corev1.Capability{"ALL"},
			},
			Privileged:               ptr(false),
			AllowPrivilegeEscalation: ptr(false),
			ReadOnlyRootFilesystem:   ptr(false),
			RunAsUser:                ptr(int64(0)),
			RunAsGroup:               ptr(int64(0)),
			RunAsNonRoot:             ptr(false),
		},
	}
}

func proxyContainer(p Params) corev1.Container {
	field := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	return corev1.Container{
		Name:            ProxyContainer,
		Image:           p.Image,
		ImagePullPolicy: p.ImagePullPolicy,
		Command:         []string{p.Binary, "proxy"},
		Args:            []string{"--discovery-address", p.DiscoveryAddress},
		Env: []corev1.EnvVar{
			field("POD_NAME", "metadata.name"),
			field("POD_NAMESPACE", "metadata.namespace"),
			field("INSTANCE_IP", "status.podIP"),
			field("SERVICE_ACCOUNT", "spec.serviceAccountName"),
			field("HOST_IP", "status.hostIP"),
		},
		Ports: []corev1.ContainerPort{
			{Name: "http-envoy-prom", ContainerPort: StatsPort, Protocol: corev1.ProtocolTCP},
		},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/healthz/ready", Port: intstr.FromInt32(ReadyPort), Scheme: corev1.URISchemeHTTP,
			}},
			PeriodSeconds:    2,
			TimeoutSeconds:   3,
			FailureThreshold: 30,
		},
		SecurityContext: &corev1.SecurityContext{
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			Privileged:               ptr(false),
			AllowPrivilegeEscalation: ptr(false),
			RunAsUser:                ptr(int64(ProxyUID)),
			RunAsGroup:               ptr(int64(ProxyUID)),
			RunAsNonRoot:             ptr(true),
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: PodInfoVolume, MountPath: PodInfoMountPath},
			{Name: TokenVolume, MountPath: TokenMountPath},
			{Name: RootCertVolume, MountPath: RootCertMountPath},
		},
	}
}

// canonicalName follows Istio: app.kubernetes.io/name, then app, then the
// workload's name (the pod name without its generated suffix).
func canonicalName(meta *podMeta) string {
	for _, k := range []string{"service.istio.io/canonical-name", "app.kubernetes.io/name", "app"} {
		if v := meta.Labels[k]; v != "" {
			return v
		}
	}
	return workloadName(meta)
}

func canonicalRevision(labels map[string]string) string {
	for _, k := range []string{"app.kubernetes.io/version", "version"} {
		if v := labels[k]; v != "" {
			return v
		}
	}
	return "latest"
}

// workloadName is the pod's name, or for a pod still to be named its
// generateName without the trailing "-" and, for a Deployment's pod, without
// the ReplicaSet's pod-template-hash.
func workloadName(meta *podMeta) string {
	if meta.Name != "" {
		return meta.Name
	}
	n := strings.TrimSuffix(meta.GenerateName, "-")
	if h := meta.Labels["pod-template-hash"]; h != "" {
		n = strings.TrimSuffix(n, "-"+h)
	}
	return n
}

func setDefault(m map[string]string, k, v string) {
	if _, ok := m[k]; !ok {
		m[k] = v
	}
}

func ptr[T any](v T) *T { return &v }

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
