package cmd

import (
	"fmt"

	"github.com/urfave/cli/v2"
	"sigs.k8s.io/yaml"

	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/prometheus"
)

// PrometheusConfig is `meshlab prometheus-config`: a Prometheus
// configuration file with the walkthrough's two scrape jobs, discovering
// the lab's targets.
func PrometheusConfig() *cli.Command {
	return &cli.Command{
		Name:  "prometheus-config",
		Usage: "print a Prometheus config with the walkthrough's istiod and envoy-stats jobs for this lab",
		Description: `Prints a complete Prometheus configuration file holding the two scrape jobs of
Istio's Prometheus integration page (the walkthrough's additionalScrapeConfigs):
"istiod" keeps the istiod Service's http-monitoring endpoint, "envoy-stats"
scrapes /stats/prometheus on every container port named *-envoy-prom. The
relabel rules are the walkthrough's, verbatim.

On the local runtime there is no Kubernetes API to discover from: the jobs use
http_sd_configs against the control plane's service discovery
(/debug/prometheus/sd on its published 15014), which gives each target the same
__meta_kubernetes_* labels Kubernetes SD would. A stock Prometheus on the host
can then scrape the lab's pods directly. On kind or an installed cluster (or with --sd kubernetes) the
jobs use kubernetes_sd_configs as written, for a Prometheus inside the cluster.

Examples:
   meshlab prometheus-config > prometheus.yml
   prometheus --config.file prometheus.yml --storage.tsdb.path /tmp/prom
   meshlab prometheus-config -o json
   meshlab prometheus-config --sd kubernetes
   meshlab prometheus-config --controlplane 127.0.0.1:15014`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "yaml", Usage: "output format: yaml or json (Prometheus reads both)"},
			&cli.StringFlag{Name: "sd", Value: "auto", Usage: "service discovery: http (the control plane's HTTP SD), kubernetes (kubernetes_sd_configs), or auto (kubernetes on a kind lab, else http)"},
			stateDirFlag, cpFlag,
		},
		Action: func(c *cli.Context) error {
			o, err := checkOutput(c, "yaml", "json")
			if err != nil {
				return err
			}
			sd := c.String("sd")
			if sd == "auto" {
				sd = "http"
				if dir, err := lab.StateDir(c.String("state-dir")); err == nil {
					if st, err := lab.ReadStatus(dir); err == nil && (st.Runtime == "kind" || st.Runtime == "kube") {
						sd = "kubernetes"
					}
				}
			}
			var cfg []byte
			switch sd {
			case "http":
				cl, err := client(c)
				if err != nil {
					return err
				}
				if cfg, err = prometheus.LocalConfig(cl.Base, prometheus.DefaultSDRefresh); err != nil {
					return cli.Exit(err.Error()+"; pass --controlplane", 2)
				}
			case "kubernetes":
				cfg = prometheus.KubeConfig()
			default:
				return cli.Exit(fmt.Sprintf("--sd %q: want http, kubernetes or auto", sd), 2)
			}
			if o == "json" {
				js, err := yaml.YAMLToJSON(cfg)
				if err != nil {
					return fmt.Errorf("encode the Prometheus config: %w", err)
				}
				_, err = fmt.Fprintf(c.App.Writer, "%s\n", js)
				return err
			}
			_, err = c.App.Writer.Write(cfg)
			return err
		},
	}
}
