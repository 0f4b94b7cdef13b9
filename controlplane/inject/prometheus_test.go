package inject

import (
	"maps"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The mesh's enablePrometheusMerge, and the pod's annotation over it.
func TestPrometheusMergeMeshSetting(t *testing.T) {
	app := map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "8080", "prometheus.io/path": "/metrics"}
	merged := map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "15020", "prometheus.io/path": "/stats/prometheus"}
	const env = `{"scrape":"true","path":"/metrics","port":"8080"}`
	with := func(m map[string]string, kv ...string) map[string]string {
		out := maps.Clone(m)
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	for _, tt := range []struct {
		name        string
		mesh        func() bool
		annotations map[string]string
		want        map[string]string
		wantEnv     string
	}{
		{"absent from the mesh config: on", nil, app, merged, env},
		{"on in the mesh config", func() bool { return true }, app, merged, env},
		{"off in the mesh config", func() bool { return false }, app, app, ""},
		{"off in the mesh, on for the pod", func() bool { return false }, with(app, MergeMetricsAnnotation, "true"),
			with(merged, MergeMetricsAnnotation, "true"), env},
		{"on in the mesh, off for the pod", nil, with(app, MergeMetricsAnnotation, "false"), with(app, MergeMetricsAnnotation, "false"), ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := testParams
			p.EnablePrometheusMerge = tt.mesh
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Annotations: maps.Clone(tt.annotations)},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
			if d := Pod(pod, "default", nil, false, p); !d.Inject {
				t.Fatalf("not injected: %s", d.Reason)
			}
			got := map[string]string{}
			for k, v := range pod.Annotations {
				if k != StatusAnnotation && k != "kubectl.kubernetes.io/default-container" && k != "kubectl.kubernetes.io/default-logs-container" {
					got[k] = v
				}
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("annotations %v, want %v", got, tt.want)
			}
			gotEnv := ""
			for _, e := range pod.Spec.Containers[len(pod.Spec.Containers)-1].Env {
				if e.Name == PrometheusAnnotationsEnv {
					gotEnv = e.Value
				}
			}
			if gotEnv != tt.wantEnv {
				t.Errorf("%s = %q, want %q", PrometheusAnnotationsEnv, gotEnv, tt.wantEnv)
			}
		})
	}
}
