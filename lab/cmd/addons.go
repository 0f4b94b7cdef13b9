package cmd

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/lab/local"
)

// telemetryAddons are the local runtime's zipkin and prometheus pods, as
// Istio's samples/addons run them in istio-system, published on the host
// at --zipkin-port and --prometheus-port (0 leaves one unpublished).
func telemetryAddons(c *cli.Context) []local.Addon {
	return []local.Addon{
		{
			Name: "zipkin", Port: 9411, PortName: "http-query", HostPort: c.Int("zipkin-port"), ReadyPath: "/health",
			Args: func(dir string) []string {
				return []string{"zipkin", "--listen", ":9411", "--storage.path", dir}
			},
		},
		{
			Name: "prometheus", Port: 9090, PortName: "http", HostPort: c.Int("prometheus-port"), ReadyPath: "/-/ready",
			Files: map[string][]byte{"prometheus.yml": localPrometheusConfig},
			Args: func(dir string) []string {
				return []string{"prometheus", "--config.file", dir + "/prometheus.yml",
					"--storage.tsdb.path", dir + "/data", "--storage.tsdb.retention.time", "6h",
					"--web.listen-address", fmt.Sprintf(":%d", 9090)}
			},
		},
	}
}

var localPrometheusConfig = []byte(`global:
  scrape_interval: 15s
scrape_configs:
- job_name: istiod
  http_sd_configs:
  - url: http://istiod.istio-system.svc:15014/debug/prometheus/sd?role=endpoints&namespace=istio-system
  relabel_configs:
  - source_labels: [__meta_kubernetes_service_name, __meta_kubernetes_endpoint_port_name]
    action: keep
    regex: istiod;http-monitoring
- job_name: envoy-stats
  metrics_path: /stats/prometheus
  http_sd_configs:
  - url: http://istiod.istio-system.svc:15014/debug/prometheus/sd?role=pod
  relabel_configs:
  - source_labels: [__meta_kubernetes_pod_container_port_name]
    action: keep
    regex: '.*-envoy-prom'
`)
