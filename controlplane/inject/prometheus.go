package inject

import (
	"encoding/json"
	"regexp"
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// Istio's Prometheus merge (pkg/kube/inject/webhook.go applyPrometheusMerge,
// under meshConfig.enablePrometheusMerge): the pod's prometheus.io/*
// annotations point Prometheus at the agent's merged endpoint (15020
// /stats/prometheus), and the app's own are kept for the agent, which
// scrapes the app and serves its metrics with the proxy's.
const (
	// MergeMetricsAnnotation opts a pod out ("false") or in ("true"),
	// whatever the mesh config says.
	MergeMetricsAnnotation = "prometheus.istio.io/merge-metrics"
	// PrometheusAnnotationsEnv carries the app's original annotations to
	// the agent, as JSON {"scrape","path","port"}.
	PrometheusAnnotationsEnv = "ISTIO_PROMETHEUS_ANNOTATIONS"
)

// The annotation names after Prometheus's label sanitising: it reads
// prometheus.io/port, prometheus.io.port and prometheus-io/port alike, so
// Istio clears and reads every variant.
const (
	sanitizedScrape = "prometheus_io_scrape"
	sanitizedPort   = "prometheus_io_port"
	sanitizedPath   = "prometheus_io_path"
)

var invalidLabelChars = regexp.MustCompile(`[^a-zA-Z0-9_]`)

// scrapeConfig is Istio's status.PrometheusScrapeConfiguration.
type scrapeConfig struct {
	Scrape string `json:"scrape"`
	Path   string `json:"path"`
	Port   string `json:"port"`
}

// prometheusMerge applies the merge to an injected pod (proxy is its
// istio-proxy container) when enabled by the mesh and not refused by the pod.
func prometheusMerge(annotations map[string]string, proxy *corev1.Container, meshEnabled bool) {
	if !scrapes(annotations) || !mergeEnabled(meshEnabled, annotations) {
		return
	}
	target := strconv.Itoa(MetricsPort)
	var cfg scrapeConfig
	for k, v := range annotations {
		switch invalidLabelChars.ReplaceAllString(k, "_") {
		case sanitizedPort:
			if v == target {
				// Already pointing at the agent: the user's choice, or a
				// pod injected before.
				return
			}
			cfg.Port = v
		case sanitizedScrape:
			cfg.Scrape = v
		case sanitizedPath:
			cfg.Path = v
		}
	}
	if cfg != (scrapeConfig{}) {
		b, _ := json.Marshal(cfg) // three strings always encode
		proxy.Env = append(proxy.Env, corev1.EnvVar{Name: PrometheusAnnotationsEnv, Value: string(b)})
	}
	for k := range annotations {
		switch invalidLabelChars.ReplaceAllString(k, "_") {
		case sanitizedPort, sanitizedScrape, sanitizedPath:
			delete(annotations, k)
		}
	}
	annotations["prometheus.io/port"] = target
	annotations["prometheus.io/path"] = "/stats/prometheus"
	annotations["prometheus.io/scrape"] = "true"
}

// scrapes is false only when the pod says prometheus.io/scrape: false.
func scrapes(annotations map[string]string) bool {
	for k, v := range annotations {
		if invalidLabelChars.ReplaceAllString(k, "_") != sanitizedScrape {
			continue
		}
		if b, err := strconv.ParseBool(v); err == nil {
			return b
		}
	}
	return true
}

// mergeEnabled: the pod's annotation, when it parses, else the mesh's.
func mergeEnabled(meshEnabled bool, annotations map[string]string) bool {
	if v, ok := annotations[MergeMetricsAnnotation]; ok {
		if b, err := strconv.ParseBool(v); err == nil {
			return b
		}
	}
	return meshEnabled
}
