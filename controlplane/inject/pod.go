package inject

import (
	"encoding/json"
	"fmt"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshlab/meshlab/controlplane/webhook"
)

// Namespaces looks up a namespace's labels; ok is false when the namespace
// is not known (yet).
type Namespaces func(name string) (labels map[string]string, ok bool)

// Pod adds the sidecar to a pod in namespace ns when Istio's rules say so;
// it changes nothing otherwise.
func Pod(pod *corev1.Pod, ns string, nsLabels map[string]string, namespaceKnown bool, p Params) Decision {
	return inject(ns, "", &pod.ObjectMeta, &pod.Spec, nsLabels, namespaceKnown, p)
}

// Template adds the sidecar to the pod template of the workload named
// workload, as `istioctl kube-inject` does: the namespace's labels are not
// consulted, the pod's own opt-out is.
func Template(ns, workload string, t *corev1.PodTemplateSpec, p Params) Decision {
	return inject(ns, workload, &t.ObjectMeta, &t.Spec, nil, false, p)
}

// inject decides and applies; workload names the pods' owner when the pod
// itself is not named (a template), for the canonical-name label.
func inject(ns, workload string, om *metav1.ObjectMeta, spec *corev1.PodSpec, nsLabels map[string]string, known bool, p Params) Decision {
	meta := podMeta{Name: om.Name, GenerateName: om.GenerateName, Labels: om.Labels, Annotations: om.Annotations}
	if meta.Name == "" && workload != "" {
		meta.Name = workload
	}
	d := Decide(ns, nsLabels, known, meta, spec)
	if !d.Inject {
		return d
	}
	apply(&meta, spec, p)
	om.Labels, om.Annotations = meta.Labels, meta.Annotations
	return d
}

// Webhook is the mutating admission webhook: pods created in namespaces
// that ask for sidecars come back with one, as a JSON patch. Pods it does
// not inject, and anything that is not a pod, are admitted unchanged;
// nothing is ever refused, so a webhook fault cannot stop a pod beyond
// what failurePolicy says.
func Webhook(p Params, namespaces Namespaces) webhook.Admit {
	return func(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		if req.Kind.Kind != "Pod" || req.Kind.Group != "" || req.Operation != admissionv1.Create {
			return webhook.Allow()
		}
		var pod corev1.Pod
		if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
			return webhook.Errorf("decode pod %s/%s: %v", req.Namespace, req.Name, err)
		}
		ns := req.Namespace
		if ns == "" {
			ns = pod.Namespace
		}
		var nsLabels map[string]string
		known := false
		if namespaces != nil {
			nsLabels, known = namespaces(ns)
		}
		if d := Pod(&pod, ns, nsLabels, known, p); !d.Inject {
			return webhook.Allow()
		}
		patch, err := podPatch(&pod)
		if err != nil {
			return webhook.Errorf("encode the sidecar patch for pod %s/%s: %v", ns, pod.Name, err)
		}
		return webhook.Patch(patch)
	}
}

// podPatch replaces every part of the pod injection touches. JSON patch
// "add" on an existing member replaces it, so the same ops work whether or
// not the pod had labels, annotations, init containers or volumes.
func podPatch(pod *corev1.Pod) ([]byte, error) {
	type op struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value any    `json:"value"`
	}
	ops := []op{
		{"add", "/metadata/labels", pod.Labels},
		{"add", "/metadata/annotations", pod.Annotations},
		{"add", "/spec/initContainers", pod.Spec.InitContainers},
		{"add", "/spec/containers", pod.Spec.Containers},
		{"add", "/spec/volumes", pod.Spec.Volumes},
	}
	b, err := json.Marshal(ops)
	if err != nil {
		return nil, fmt.Errorf("encode JSON patch: %w", err)
	}
	return b, nil
}
