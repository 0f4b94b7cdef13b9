package install

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/meshlab/meshlab/lab/prometheus"
)

// Names and ports of the telemetry addons, as Istio's samples/addons name
// them: Kiali's default Prometheus URL is http://prometheus.istio-system:9090
// and mesh config's default Zipkin address zipkin.istio-system:9411.
const (
	MeshConfigMap        = "istio" // istiod's mesh config, key "mesh"
	MeshConfigKey        = "mesh"
	Prometheus           = "prometheus"
	PrometheusPort       = 9090
	PrometheusConfigKey  = "prometheus.yml"
	prometheusConfigPath = "/etc/config"
	prometheusDataPath   = "/data"
	Zipkin               = "zipkin"
	ZipkinPort           = 9411
	zipkinDataPath       = "/var/lib/zipkin"
)

// meshConfig is the istio ConfigMap istiod reads its mesh config from
// (and watches, so `meshlab apply -f` of it changes a running mesh).
func meshConfig(mesh string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: objectMeta(MeshConfigMap, Namespace, map[string]string{"app": Istiod, "istio.io/rev": "default"}),
		Data:       map[string]string{MeshConfigKey: mesh},
	}
}

// telemetryAddons are Istio's zipkin and prometheus addons, each the
// meshlab image in a mode of its own.
func telemetryAddons(o Options) []runtime.Object {
	return append(prometheusAddon(o), zipkinAddon(o)...)
}

// prometheusAddon is a Prometheus with the walkthrough's jobs over
// Kubernetes SD, which needs to list and watch what Istio's addon lets it.
func prometheusAddon(o Options) []runtime.Object {
	labels := map[string]string{"app": Prometheus, "component": "server"}
	cfg := o.PrometheusConfig
	if cfg == nil {
		cfg = prometheus.KubeConfig()
	}
	sa := &corev1.ServiceAccount{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: objectMeta(Prometheus, Namespace, labels),
	}
	// What kubernetes_sd_configs reads for roles node, service, pod,
	// endpoints and endpointslice (Istio's samples/addons/prometheus.yaml
	// grants the same reads), and nothing it could write.
	read := []string{"get", "list", "watch"}
	role := &rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
		ObjectMeta: objectMeta(Prometheus, "", labels),
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"nodes", "nodes/metrics", "services", "endpoints", "pods"}, Verbs: read},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: read},
			{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}},
		},
	}
	binding := bindRole(objectMeta(Prometheus, "", labels), role.Name, sa.Name)
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: objectMeta(Prometheus, Namespace, labels),
		Data:       map[string]string{PrometheusConfigKey: string(cfg)},
	}
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: objectMeta(Prometheus, Namespace, labels),
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": Prometheus, "component": "server"},
			Ports:    []corev1.ServicePort{servicePort("http", PrometheusPort, PrometheusPort)},
		},
	}
	deploy := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: objectMeta(Prometheus, Namespace, labels),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(1)),
			// One TSDB writer at a time (its lock file).
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": Prometheus, "component": "server"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": Prometheus, "component": "server", InjectPodLabel: "false"}},
				Spec: corev1.PodSpec{
					ServiceAccountName: sa.Name,
					Containers: []corev1.Container{{
						Name:            "prometheus-server",
						Image:           o.Image,
						ImagePullPolicy: corev1.PullIfNotPresent,
						Command: []string{binary, "prometheus",
							"--config.file=" + prometheusConfigPath + "/" + PrometheusConfigKey,
							"--storage.tsdb.path=" + prometheusDataPath,
							"--storage.tsdb.retention.time=" + prometheus.DefaultRetention.String(),
							"--web.listen-address=:9090",
							// As Istio's addon: a changed ConfigMap is applied
							// with POST /-/reload, no restart.
							"--web.enable-lifecycle",
						},
						Ports: []corev1.ContainerPort{containerPort("http", PrometheusPort)},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/-/ready", Port: intstr.FromInt32(PrometheusPort)}},
							PeriodSeconds: 5,
						},
						LivenessProbe: &corev1.Probe{
							ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/-/healthy", Port: intstr.FromInt32(PrometheusPort)}},
							PeriodSeconds:    15,
							FailureThreshold: 3,
						},
						VolumeMounts: []corev1.VolumeMount{
							{Name: "config-volume", MountPath: prometheusConfigPath, ReadOnly: true},
							{Name: "storage-volume", MountPath: prometheusDataPath},
						},
					}},
					Volumes: []corev1.Volume{
						{Name: "config-volume", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
							LocalObjectReference: corev1.LocalObjectReference{Name: cm.Name}}}},
						{Name: "storage-volume", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
					},
				},
			},
		},
	}
	return []runtime.Object{sa, role, binding, cm, svc, deploy}
}

// zipkinAddon is the trace store at the mesh config's default address.
func zipkinAddon(o Options) []runtime.Object {
	labels := map[string]string{"app": Zipkin}
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: objectMeta(Zipkin, Namespace, labels),
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": Zipkin},
			Ports:    []corev1.ServicePort{servicePort("http-query", ZipkinPort, ZipkinPort)},
		},
	}
	deploy := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: objectMeta(Zipkin, Namespace, labels),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(1)),
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": Zipkin}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": Zipkin, InjectPodLabel: "false"}},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name:            Zipkin,
						Image:           o.Image,
						ImagePullPolicy: corev1.PullIfNotPresent,
						Command:         []string{binary, "zipkin", "--listen=:9411", "--storage.path=" + zipkinDataPath},
						Ports:           []corev1.ContainerPort{containerPort("http-query", ZipkinPort)},
						// A TCP check: it answers as soon as it listens,
						// whatever its HTTP health path.
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(ZipkinPort)}},
							PeriodSeconds: 5,
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "storage", MountPath: zipkinDataPath}},
					}},
					Volumes: []corev1.Volume{{Name: "storage", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
				},
			},
		},
	}
	return []runtime.Object{svc, deploy}
}
