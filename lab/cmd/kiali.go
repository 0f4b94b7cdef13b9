package cmd

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/console"
	"github.com/meshlab/meshlab/lab/kube"
	"github.com/meshlab/meshlab/lab/local"
)

// Defaults of the console as the lab runs it: Kiali's port and web root,
// and the addons by their Service names in istio-system, where Kiali's
// defaults look for them.
const (
	KialiPort            = 20001
	KialiWebRoot         = "/kiali"
	kialiControlPlaneURL = "http://istiod.istio-system:15014"
	kialiPrometheusURL   = "http://prometheus.istio-system:9090"
	kialiTracingURL      = "http://zipkin.istio-system:9411"
	kialiCluster         = "Kubernetes"
)

func kialiFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "listen", Value: fmt.Sprintf(":%d", KialiPort), Usage: "address the console serves on (Kiali's server.port; port name http-kiali)"},
		&cli.StringFlag{Name: "web-root", Value: KialiWebRoot, Usage: "path the console is served under (Kiali's server.web_root); / on --listen redirects there"},
		&cli.StringFlag{Name: "controlplane-url", Value: kialiControlPlaneURL, Usage: "the control plane's API, for config, registry and proxy status"},
		&cli.StringFlag{Name: "token-file", Usage: "`FILE` of the bearer token the console acts with on the control plane API (local runtime: the lab's api-token)"},
		&cli.StringFlag{Name: "prometheus-url", Value: kialiPrometheusURL, Usage: "Prometheus the graph, health and metrics query (Kiali's external_services.prometheus.url)"},
		&cli.StringFlag{Name: "tracing-provider", Value: "zipkin", Usage: "API of the trace store: zipkin or jaeger (Kiali's external_services.tracing.provider)"},
		&cli.StringFlag{Name: "tracing-url", Value: kialiTracingURL, Usage: "the trace store's query API (Kiali's external_services.tracing.in_cluster_url)"},
		&cli.StringFlag{Name: "auth-strategy", Value: "anonymous", Usage: "anonymous (anyone who reaches it) or token (every API call presents the token of --auth-token-file)"},
		&cli.StringFlag{Name: "auth-token-file", Usage: "`FILE` of the token users present under --auth-strategy token (default: --token-file's)"},
		&cli.StringFlag{Name: "state-dir", Usage: "local runtime: the lab's state directory, read for pods and their logs (lab.json, logs/)"},
		&cli.BoolFlag{Name: "in-cluster", Usage: "kube runtime: read pods, Deployments and logs from the cluster this pod runs in, with its service account"},
		&cli.StringFlag{Name: "cluster", Value: kialiCluster, Usage: "the cluster name of the telemetry's source_cluster/destination_cluster labels (Istio's default: Kubernetes)"},
		&cli.BoolFlag{Name: "debug", Usage: "log at debug level"},
	}
}

// Kiali is `meshlab kiali`, the lab's console: what Kiali is to Istio,
// as a mode of this binary, served as Service kiali in istio-system.
func Kiali() *cli.Command {
	return &cli.Command{
		Name:  "kiali",
		Usage: "run the lab's console (Kiali's graph, wizards, validations, health, metrics and traces) on :20001",
		Description: `Serves the console under --web-root on --listen, as Kiali does on 20001
under /kiali: the graph of the mesh's traffic from Prometheus (Kiali's own
queries), the Istio config with its validations, the wizards that write
VirtualServices and DestinationRules, health, metrics charts and traces, and
Kiali's REST API (/kiali/api/namespaces/graph returns Kiali's cytoscape JSON).

The lab runs it as Deployment and Service kiali in istio-system: on the local
runtime published on 127.0.0.1:20001 (meshlab up --kiali-port), on kind
reachable with meshlab dashboard kiali. Pods and their logs come from the
lab's runtime: --state-dir for the local runtime (the console runs as the
lab's component, with the state directory read-only), --in-cluster on a
cluster. Without either, pods come from the control plane's registry and
there are no logs.

Anonymous by default, as the walkthrough installs Kiali; with --auth-strategy
token every API call must present the token (Authorization: Bearer, or the
login page's cookie). It changes the mesh only through the control plane's
API, with --token-file's credential.

Examples:
   # what the lab runs in the kiali pod (local runtime; the state directory
   # of sudo meshlab up, mounted read-only)
   meshlab kiali --listen :20001 --web-root /kiali \
       --state-dir /root/.local/state/meshlab --token-file /root/.local/state/meshlab/api-token

   # the walkthrough's web root, behind the gateway
   meshlab kiali --web-root /dashboards/kiali --in-cluster

   # against a local lab from the host, with its published addons
   sudo meshlab kiali --listen 127.0.0.1:20002 --state-dir /root/.local/state/meshlab \
       --controlplane-url http://127.0.0.1:15014 --token-file /root/.local/state/meshlab/api-token \
       --prometheus-url http://127.0.0.1:9090 --tracing-url http://127.0.0.1:9411
   curl -s 'http://127.0.0.1:20002/kiali/api/namespaces/graph?namespaces=default&graphType=versionedApp&duration=60s'

   # traces from your own Jaeger (or Tempo's Jaeger query API)
   meshlab kiali --tracing-provider jaeger --tracing-url http://tracing.istio-system:16686`,
		Flags: kialiFlags(),
		Action: func(c *cli.Context) error {
			o, err := kialiOptions(c)
			if err != nil {
				return cli.Exit(err.Error(), 2)
			}
			if o.Runtime, err = kialiRuntime(c); err != nil {
				return err
			}
			// c.Context ends on SIGTERM (main catches it): Run shuts down.
			return console.Run(c.Context, o)
		},
	}
}

// kialiOptions reads the flags into the console's options (all but the
// Runtime), refusing a bad one with the flag named.
func kialiOptions(c *cli.Context) (console.Options, error) {
	o := console.Options{
		Listen:          c.String("listen"),
		TokenFile:       c.String("token-file"),
		TracingProvider: c.String("tracing-provider"),
		AuthStrategy:    c.String("auth-strategy"),
		AuthTokenFile:   c.String("auth-token-file"),
		Cluster:         c.String("cluster"),
	}
	if _, _, err := net.SplitHostPort(o.Listen); err != nil {
		return o, fmt.Errorf("--listen %q: want HOST:PORT or :PORT, e.g. :20001", o.Listen)
	}
	var err error
	if o.WebRoot, err = webRoot("web-root", c.String("web-root")); err != nil {
		return o, err
	}
	for _, u := range []struct {
		flag string
		to   *string
	}{{"controlplane-url", &o.ControlPlaneURL}, {"prometheus-url", &o.PrometheusURL}, {"tracing-url", &o.TracingURL}} {
		if *u.to, err = httpURL(u.flag, c.String(u.flag)); err != nil {
			return o, err
		}
	}
	switch o.TracingProvider {
	case "zipkin", "jaeger":
	default:
		return o, fmt.Errorf("--tracing-provider %q: want zipkin or jaeger", o.TracingProvider)
	}
	switch o.AuthStrategy {
	case "anonymous":
	case "token":
		if o.AuthTokenFile == "" && o.TokenFile == "" {
			return o, fmt.Errorf("--auth-strategy token: give the token users present with --auth-token-file (or --token-file)")
		}
	default:
		return o, fmt.Errorf("--auth-strategy %q: want anonymous or token", o.AuthStrategy)
	}
	for _, f := range []string{"token-file", "auth-token-file"} {
		if p := c.String(f); p != "" {
			if _, err := os.Stat(p); err != nil {
				return o, fmt.Errorf("--%s: %w", f, err)
			}
		}
	}
	if o.Cluster == "" {
		return o, fmt.Errorf("--cluster: want the cluster name the telemetry labels carry (Istio's default: %s)", kialiCluster)
	}
	if c.String("state-dir") != "" && c.Bool("in-cluster") {
		return o, fmt.Errorf("--state-dir and --in-cluster: give one (--state-dir for the local runtime, --in-cluster in a cluster's pod)")
	}
	level := slog.LevelInfo
	if c.Bool("debug") {
		level = slog.LevelDebug
	}
	o.Log = slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level}))
	return o, nil
}

// kialiRuntime is the lab's runtime the console reads pods, Deployments
// and logs through: the local runtime's read side for --state-dir, the
// pod's cluster for --in-cluster, else none.
func kialiRuntime(c *cli.Context) (lab.Runtime, error) {
	switch {
	case c.String("state-dir") != "":
		var token string
		if f := c.String("token-file"); f != "" {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("--token-file: %w", err)
			}
			token = strings.TrimSpace(string(b))
		}
		return local.Open(c.String("state-dir"), local.WithControlPlane(c.String("controlplane-url"), token), local.WithStderr(c.App.ErrWriter))
	case c.Bool("in-cluster"):
		rt, err := kube.InCluster()
		if err != nil {
			return nil, fmt.Errorf("--in-cluster: %w", err)
		}
		return rt, nil
	}
	return nil, nil
}

// webRoot is a --web-root as the console takes it: an absolute, clean path
// without a trailing slash ("/" alone for the root).
func webRoot(flag, s string) (string, error) {
	if !strings.HasPrefix(s, "/") || strings.ContainsAny(s, "?#* ") {
		return "", fmt.Errorf("--%s %q: want an absolute URL path such as /kiali or /dashboards/kiali", flag, s)
	}
	clean := path.Clean(s)
	if clean != strings.TrimSuffix(s, "/") && clean != s {
		return "", fmt.Errorf("--%s %q: want a clean path (no //, . or ..), e.g. %s", flag, s, clean)
	}
	return clean, nil
}

// httpURL checks that flag's value is an http(s) URL with a host.
func httpURL(flag, s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("--%s %q: want an http:// or https:// URL with a host, e.g. %s", flag, s, map[string]string{
			"controlplane-url": kialiControlPlaneURL, "prometheus-url": kialiPrometheusURL, "tracing-url": kialiTracingURL}[flag])
	}
	return strings.TrimSuffix(s, "/"), nil
}
