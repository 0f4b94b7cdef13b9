package cmd

import (
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/controlplane/inject"
)

// Inject is `meshlab inject`, the `istioctl kube-inject` analogue.
func Inject() *cli.Command {
	return &cli.Command{
		Name:  "inject",
		Usage: "add the sidecar to the pods of Kubernetes manifests and print them (istioctl kube-inject)",
		Description: `Reads a multi-document YAML and prints it with the istio-init and istio-proxy
containers added to every Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet,
Job and CronJob, unless the pod opts out (label or annotation
sidecar.istio.io/inject: "false"), uses the host network or is already
injected. Other documents are printed as they were. Unlike the webhook, the
namespace's istio-injection label is not consulted. What was done to each
workload is said on stderr.

Examples:
   meshlab inject -f samples/bookinfo/bookinfo.yaml | kubectl apply -f -
   kubectl get deploy ratings-v1 -o yaml | meshlab inject -f - | kubectl apply -f -
   meshlab inject -f app.yaml --image meshlab.local/meshlab:v0.1.0 -o app-injected.yaml`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "filename", Aliases: []string{"f"}, Usage: "manifest file, or - for stdin", Required: true},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write to this file instead of stdout"},
			&cli.StringFlag{Name: "image", Value: "meshlab.local/meshlab:" + Version, Usage: "image of the istio-init and istio-proxy containers"},
			&cli.StringFlag{Name: "discovery-address", Value: inject.DefaultDiscoveryAddress, Usage: "control plane xDS address the proxies dial"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "say nothing on stderr"},
		},
		Action: func(c *cli.Context) error {
			var in []byte
			var err error
			if f := c.String("filename"); f == "-" {
				in, err = io.ReadAll(c.App.Reader)
			} else {
				in, err = os.ReadFile(f)
			}
			if err != nil {
				return cli.Exit("read "+c.String("filename")+": "+err.Error(), 1)
			}
			out, results, err := inject.File(in, inject.Params{Image: c.String("image"), DiscoveryAddress: c.String("discovery-address")})
			if err != nil {
				return cli.Exit(c.String("filename")+": "+err.Error(), 1)
			}
			if !c.Bool("quiet") {
				for _, r := range results {
					verb := "skipped"
					if r.Decision.Inject {
						verb = "injected"
					}
					fmt.Fprintf(c.App.ErrWriter, "%s %s: %s (%s)\n", r.Kind, r.Name, verb, r.Decision.Reason)
				}
			}
			if o := c.String("output"); o != "" {
				if err := os.WriteFile(o, out, 0o644); err != nil {
					return cli.Exit("write "+o+": "+err.Error(), 1)
				}
				return nil
			}
			_, err = c.App.Writer.Write(out)
			return err
		},
	}
}
