package monitoring

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// PromConfig is the part of Prometheus's configuration file the lab
// writes, with Prometheus's own key names; it marshals (YAML or JSON,
// which Prometheus also reads) to a file a stock Prometheus runs.
type PromConfig struct {
	Global        PromGlobal     `json:"global" yaml:"global"`
	ScrapeConfigs []ScrapeConfig `json:"scrape_configs" yaml:"scrape_configs"`
}

// PromGlobal is Prometheus's global block.
type PromGlobal struct {
	ScrapeInterval     string `json:"scrape_interval,omitempty" yaml:"scrape_interval,omitempty"`
	EvaluationInterval string `json:"evaluation_interval,omitempty" yaml:"evaluation_interval,omitempty"`
}

// ScrapeConfig is one scrape job.
type ScrapeConfig struct {
	JobName             string          `json:"job_name" yaml:"job_name"`
	MetricsPath         string          `json:"metrics_path,omitempty" yaml:"metrics_path,omitempty"`
	HTTPSDConfigs       []HTTPSDConfig  `json:"http_sd_configs,omitempty" yaml:"http_sd_configs,omitempty"`
	KubernetesSDConfigs []KubeSDConfig  `json:"kubernetes_sd_configs,omitempty" yaml:"kubernetes_sd_configs,omitempty"`
	RelabelConfigs      []RelabelConfig `json:"relabel_configs,omitempty" yaml:"relabel_configs,omitempty"`
}

// HTTPSDConfig is an http_sd_configs entry.
type HTTPSDConfig struct {
	URL             string `json:"url" yaml:"url"`
	RefreshInterval string `json:"refresh_interval,omitempty" yaml:"refresh_interval,omitempty"`
}

// KubeSDConfig is a kubernetes_sd_configs entry.
type KubeSDConfig struct {
	Role       string          `json:"role" yaml:"role"`
	Namespaces *KubeNamespaces `json:"namespaces,omitempty" yaml:"namespaces,omitempty"`
}

// KubeNamespaces limits a kubernetes_sd_configs entry to some namespaces.
type KubeNamespaces struct {
	Names []string `json:"names" yaml:"names"`
}

// RelabelConfig is one relabel rule.
type RelabelConfig struct {
	SourceLabels []string `json:"source_labels,omitempty" yaml:"source_labels,flow,omitempty"`
	Action       string   `json:"action,omitempty" yaml:"action,omitempty"`
	Regex        string   `json:"regex,omitempty" yaml:"regex,omitempty"`
}

// ScrapeInterval is Istio's sample Prometheus's (samples/addons/prometheus.yaml).
const ScrapeInterval = 15 * time.Second

// The walkthrough's two jobs (Istio's "Prometheus integration" page):
// istiod's endpoints on the port named http-monitoring, and every
// container port named *-envoy-prom on /stats/prometheus. The relabel
// rules are the walkthrough's, verbatim; only discovery differs.
var (
	istiodRelabel = []RelabelConfig{{
		SourceLabels: []string{"__meta_kubernetes_service_name", "__meta_kubernetes_endpoint_port_name"},
		Action:       "keep", Regex: "istiod;http-monitoring",
	}}
	envoyRelabel = []RelabelConfig{{
		SourceLabels: []string{"__meta_kubernetes_pod_container_port_name"},
		Action:       "keep", Regex: ".*-envoy-prom",
	}}
)

// istioSystem is where istiod runs.
const istioSystem = "istio-system"

// HTTPSDPromConfig returns the walkthrough's jobs discovering through the
// control plane's HTTP SD at base (e.g. http://127.0.0.1:15014): what a
// Prometheus uses on the local runtime, which has no Kubernetes API.
func HTTPSDPromConfig(base string) (PromConfig, error) {
	u, err := url.Parse(strings.TrimSuffix(base, "/"))
	if err != nil || u.Scheme == "" || u.Host == "" {
		return PromConfig{}, fmt.Errorf("control plane address %q: want a URL such as http://127.0.0.1:15014", base)
	}
	sd := func(role string, namespaces ...string) []HTTPSDConfig {
		q := url.Values{"role": {role}}
		if len(namespaces) > 0 {
			q["namespace"] = namespaces
		}
		v := *u
		v.Path += PathSD
		v.RawQuery = q.Encode()
		return []HTTPSDConfig{{URL: v.String()}}
	}
	return PromConfig{Global: global(), ScrapeConfigs: []ScrapeConfig{
		{JobName: "istiod", HTTPSDConfigs: sd(RoleEndpoints, istioSystem), RelabelConfigs: istiodRelabel},
		{JobName: "envoy-stats", MetricsPath: "/stats/prometheus", HTTPSDConfigs: sd(RolePod), RelabelConfigs: envoyRelabel},
	}}, nil
}

// KubernetesPromConfig returns the walkthrough's jobs as written, with
// kubernetes_sd_configs: what a Prometheus in a Kubernetes cluster uses.
func KubernetesPromConfig() PromConfig {
	return PromConfig{Global: global(), ScrapeConfigs: []ScrapeConfig{
		{JobName: "istiod", KubernetesSDConfigs: []KubeSDConfig{{Role: RoleEndpoints, Namespaces: &KubeNamespaces{Names: []string{istioSystem}}}},
			RelabelConfigs: istiodRelabel},
		{JobName: "envoy-stats", MetricsPath: "/stats/prometheus", KubernetesSDConfigs: []KubeSDConfig{{Role: RolePod}},
			RelabelConfigs: envoyRelabel},
	}}
}

func global() PromGlobal {
	return PromGlobal{ScrapeInterval: ScrapeInterval.String(), EvaluationInterval: ScrapeInterval.String()}
}
