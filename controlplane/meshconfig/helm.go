package meshconfig

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// FromHelmValues renders the istio ConfigMap's mesh key from the
// `meshConfig` subtree of istiod's helm values, as the istio-discovery
// chart's configmap.yaml does: its own defaults (trustDomain
// cluster.local, rootNamespace istio-system, defaultProviders.metrics
// [prometheus] unless meshConfig names defaultProviders, the discovery
// address; no tracer in defaultConfig, global.proxy.tracer being "none"
// in 1.24) deep-merged with meshConfig (sprig's mergeOverwrite: objects
// merge key by key, anything else replaces). The result is checked as
// istiod would load it, strictly: a misspelt or mistyped field is an
// error naming it.
func FromHelmValues(meshConfig map[string]any) ([]byte, error) {
	root := Namespace
	if s, ok := meshConfig["rootNamespace"].(string); ok && s != "" {
		root = s
	}
	base := map[string]any{
		"trustDomain":   "cluster.local",
		"rootNamespace": root,
		"defaultConfig": map[string]any{
			"discoveryAddress": "istiod." + Namespace + ".svc:15012",
		},
	}
	if _, ok := meshConfig["defaultProviders"]; !ok {
		base["defaultProviders"] = map[string]any{"metrics": []any{"prometheus"}}
	}
	merged := mergeOverwrite(base, meshConfig)
	out, err := yaml.Marshal(merged)
	if err != nil {
		return nil, fmt.Errorf("helm values meshConfig: %w", err)
	}
	if _, err := Apply(out); err != nil {
		return nil, fmt.Errorf("helm values meshConfig: %w", err)
	}
	return out, nil
}

// mergeOverwrite is sprig's mergeOverwrite for YAML values: src's keys
// win, objects merged recursively; dst is not changed.
func mergeOverwrite(dst, src map[string]any) map[string]any {
	out := make(map[string]any, len(dst)+len(src))
	for k, v := range dst {
		out[k] = v
	}
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := out[k].(map[string]any); ok {
				out[k] = mergeOverwrite(dm, sm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// ConfigMap is the istio ConfigMap holding mesh (FromHelmValues' output),
// as istiod's chart installs it.
func ConfigMap(mesh []byte) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: ConfigMapName, Namespace: Namespace, Labels: map[string]string{"app": "istiod", "istio.io/rev": "default"}},
		Data:       map[string]string{Key: string(mesh)},
	}
}
