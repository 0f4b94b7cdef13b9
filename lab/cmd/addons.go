package cmd

import (
	"fmt"
	"net/netip"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/local"
	"github.com/meshlab/meshlab/lab/process"
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

// consoleAddon is the local runtime's kiali pod: the console on Kiali's
// 20001 under --kiali-web-root, published on the host at --kiali-port (0
// leaves it unpublished), pointed at istiod, Prometheus and the trace
// store by their Service names (the addon pods have the cluster DNS).
//
// It is a lab component, as istiod is: it shows pods from the lab's
// record and their logs, both in the state directory dir, and acts with
// the lab's API token, which only root reads. So it runs as root with dir
// mounted read-only at the same path: it reads what the lab's client
// reads and can write nothing of the lab, the token included.
func consoleAddon(c *cli.Context, dir string) (local.Addon, error) {
	root, err := webRoot("kiali-web-root", c.String("kiali-web-root"))
	if err != nil {
		return local.Addon{}, cli.Exit(err.Error(), 2)
	}
	if p := c.Int("kiali-port"); p < 0 || p > 65535 {
		return local.Addon{}, cli.Exit(fmt.Sprintf("--kiali-port %d: want a port (1-65535), or 0 to leave the console unpublished", p), 2)
	}
	return local.Addon{
		Name: "kiali", Port: KialiPort, PortName: "http-kiali", HostPort: c.Int("kiali-port"),
		ReadyPath: healthzPath(root), URLPath: urlPath(root),
		Root:   true,
		Mounts: []process.Mount{{Source: dir, Target: dir, ReadOnly: true}},
		Args: func(string) []string {
			return []string{"kiali", "--listen", fmt.Sprintf(":%d", KialiPort), "--web-root", root,
				"--controlplane-url", kialiControlPlaneURL,
				"--token-file", filepath.Join(dir, lab.APITokenFile),
				"--prometheus-url", kialiPrometheusURL,
				"--tracing-provider", "zipkin", "--tracing-url", kialiTracingURL,
				"--auth-strategy", consoleAuth(c.String("host-addr")),
				"--state-dir", dir}
		},
	}, nil
}

// consoleAuth is the console's auth strategy for a lab published on host:
// anonymous on loopback, as the walkthrough's Kiali; the lab's API token
// as soon as another machine may reach it.
func consoleAuth(host string) string {
	if a, err := netip.ParseAddr(host); err == nil && a.IsLoopback() {
		return "anonymous"
	}
	return "token"
}

// healthzPath and urlPath are the readiness probe's path and the URL path
// a person opens, under a web root ("/" or /kiali).
func healthzPath(root string) string {
	if root == "/" {
		return "/healthz"
	}
	return root + "/healthz"
}

func urlPath(root string) string {
	if root == "/" {
		return "/"
	}
	return root + "/"
}
