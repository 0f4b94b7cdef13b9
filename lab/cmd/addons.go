package cmd

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/lab/local"
	"github.com/meshlab/meshlab/lab/prometheus"
)

// telemetryAddons are the local runtime's zipkin and prometheus pods, as
// Istio's samples/addons run them in istio-system, published on the host
// at --zipkin-port and --prometheus-port (0 leaves one unpublished).
func telemetryAddons(c *cli.Context) ([]local.Addon, error) {
	// The walkthrough's jobs, discovering through istiod's HTTP SD.
	promConfig, err := prometheus.LocalConfig(prometheus.DefaultSDBase, prometheus.DefaultSDRefresh)
	if err != nil {
		return nil, err
	}
	return []local.Addon{
		{
			Name: "zipkin", Port: 9411, PortName: "http-query", HostPort: c.Int("zipkin-port"), ReadyPath: "/health",
			Args: func(dir string) []string {
				return []string{"zipkin", "--listen", ":9411", "--storage.path", dir}
			},
		},
		{
			Name: "prometheus", Port: 9090, PortName: "http", HostPort: c.Int("prometheus-port"), ReadyPath: "/-/ready",
			Files: map[string][]byte{"prometheus.yml": promConfig},
			Args: func(dir string) []string {
				return []string{"prometheus", "--config.file", dir + "/prometheus.yml",
					"--storage.tsdb.path", dir + "/data", "--storage.tsdb.retention.time", "6h",
					"--web.listen-address", fmt.Sprintf(":%d", 9090)}
			},
		},
	}, nil
}
