// Command meshlab is a service-mesh lab in one binary: an Istio-compatible
// control plane, sidecar proxy, ingress gateway and the bookinfo sample, on a
// local pod runtime or a kind cluster.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/controlplane"
	"github.com/meshlab/meshlab/dataplane"
	"github.com/meshlab/meshlab/dataplane/capture"
	"github.com/meshlab/meshlab/lab/cmd"
	"github.com/meshlab/meshlab/lab/curl"
	"github.com/meshlab/meshlab/lab/process"
	"github.com/meshlab/meshlab/lab/prometheus"
	"github.com/meshlab/meshlab/lab/zipkin"
	"github.com/meshlab/meshlab/samples"
)

func main() {
	app := &cli.App{
		Name:    "meshlab",
		Usage:   "a service-mesh lab in one binary: Istio's control plane, sidecars, gateway and bookinfo",
		Version: cmd.Version,
		Description: `Start a lab, then follow the usual Istio exercises with the same YAML:

   sudo meshlab up
   curl -s http://127.0.0.1:8080/productpage | grep -o '<title>.*</title>'
   meshlab apply -f samples/bookinfo/networking/virtual-service-all-v1.yaml
   meshlab exec -n default ratings -- curl -sS productpage:9080/productpage
   sudo meshlab down`,
		Commands: []*cli.Command{
			cmd.Up(),
			cmd.Down(),
			cmd.Status(),
			cmd.Exec(),
			cmd.Logs(),
			cmd.Apply(),
			cmd.Get(),
			cmd.Delete(),
			cmd.Rollout(),
			cmd.Scale(),
			cmd.Create(),
			cmd.Analyze(),
			cmd.ProxyStatus(),
			cmd.ProxyConfig(),
			cmd.Experimental(),
			cmd.Inject(),
			cmd.PrometheusConfig(),
			cmd.Install(),
			cmd.Uninstall(),
			controlplane.Command(cmd.Version),
			dataplane.Command(),
			dataplane.GatewayCommand(),
			capture.Command(),
			samples.Command(),
			prometheus.Command(),
			cmd.VersionCommand(),
			cmd.LabDaemon(),
			process.NSExecCommand(),
			zipkin.Command(),
			cmd.Kiali(),
			cmd.Images(),
			cmd.Dashboard(),
			cmd.KindNet(),
		},
	}
	// The one place termination signals are caught: every long-running mode
	// drains when this context ends, as a container does when kubelet sends
	// SIGTERM. Once it has ended the default action is back, so a second
	// Ctrl-C or SIGTERM ends a drain that takes too long.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop)
	// The image links curl to this binary (it has no other curl), so
	// `kubectl exec ... -- curl` in a pod runs meshlab's; `meshlab curl` is a
	// subcommand and stays one.
	if filepath.Base(os.Args[0]) == "curl" {
		code := curl.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	err := app.RunContext(ctx, cmd.Intersperse(app, os.Args))
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "meshlab:", err)
		os.Exit(1)
	}
}
