package cmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/controlplane/ca"
	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/kind"
	"github.com/meshlab/meshlab/lab/local"
	"github.com/meshlab/meshlab/lab/values"
	"github.com/meshlab/meshlab/samples"
)

var upFlags = append([]cli.Flag{
	stateDirFlag,
	&cli.StringFlag{Name: "runtime", Value: "auto", Usage: "auto, local or kind"},
	&cli.StringFlag{Name: "bookinfo-namespace", Value: "default", Usage: "namespace bookinfo runs in"},
	&cli.StringFlag{Name: "host-addr", Value: "127.0.0.1", Usage: "host address the gateway and API are published on"},
	&cli.IntFlag{Name: "http-port", Value: 8080, Usage: "host port of the gateway's HTTP listener (8080)"},
	&cli.IntFlag{Name: "https-port", Value: 8443, Usage: "host port of the gateway's HTTPS listener (8443)"},
	&cli.IntFlag{Name: "api-port", Value: 15014, Usage: "host port of the control plane API (15014)"},
	&cli.StringSliceFlag{Name: "manifest", Usage: "once the lab is up, apply this manifest `FILE` as meshlab apply -f would, and wait for its Deployments (repeatable)"},
	&cli.BoolFlag{Name: "no-bookinfo", Usage: "leave bookinfo out (the control plane and gateway only, plus --manifest)"},
	&cli.IntFlag{Name: "nodes", Aliases: []string{"kind-workers"}, Usage: "kind runtime: `N` worker nodes besides the control plane"},
	nodeImageFlag(),
	&cli.StringFlag{Name: "images", Usage: "kind runtime: load this archive `FILE` (from meshlab images save) into the engine first, for a room without a registry"},
	&cli.StringFlag{Name: "allow-shared-ip", Usage: "kind runtime: MetalLB sharing `KEY` for the gateway Service (metallb.universe.tf/allow-shared-ip)"},
	&cli.IntFlag{Name: "prometheus-port", Value: 9090, Usage: "host port of the lab's Prometheus (9090; 0: not published). Local runtime"},
	&cli.IntFlag{Name: "zipkin-port", Value: 9411, Usage: "host port of the lab's trace store, Zipkin's API (9411; 0: not published). Local runtime"},
	&cli.IntFlag{Name: "kiali-port", Value: KialiPort, Usage: "host port of the lab's console, Kiali's (20001; 0: not published). Local runtime"},
	&cli.StringFlag{Name: "kiali-web-root", Value: KialiWebRoot, Usage: "path the console serves under (Kiali's web_root; the walkthrough's is /dashboards/kiali)"},
	&cli.StringSliceFlag{Name: "values", Usage: "istiod's helm values `FILE` (its meshConfig: tracing, access log, extension providers, …), as helm install -f; repeatable, later files win"},
	&cli.StringSliceFlag{Name: "set", Usage: "one of istiod's helm values, `KEY=VALUE` as helm --set (e.g. meshConfig.defaultConfig.tracing.sampling=10); repeatable, applied after --values"},
	&cli.StringFlag{Name: "mesh-config-file", Hidden: true, Usage: "lab-daemon: the mesh config up wrote"},
	&cli.DurationFlag{Name: "workload-cert-ttl", Value: ca.DefaultWorkloadTTL, Usage: "lifetime of every workload certificate (istiod's DEFAULT_WORKLOAD_CERT_TTL and each proxy's SECRET_TTL); proxies renew at half of it. Local runtime only; between " + minWorkloadCertTTL.String() + " and " + ca.MaxWorkloadTTL.String()},
}, metallbImageFlags()...)

// minWorkloadCertTTL is the shortest lifetime up accepts: a proxy renews
// at half its lifetime, and a CSR round trip plus Istio's jitter must fit
// well inside that.
const minWorkloadCertTTL = 10 * time.Second

// workloadCertTTL is --workload-cert-ttl when it was given (0 when not, so
// the runtime keeps Istio's defaults), refused outside what the CA signs.
func workloadCertTTL(c *cli.Context) (time.Duration, error) {
	if !c.IsSet("workload-cert-ttl") {
		return 0, nil
	}
	ttl := c.Duration("workload-cert-ttl")
	if ttl < minWorkloadCertTTL || ttl > ca.MaxWorkloadTTL {
		return 0, cli.Exit(fmt.Sprintf("--workload-cert-ttl %s: want between %s (proxies renew at half the lifetime) and %s (the control plane's max-workload-cert-ttl)",
			ttl, minWorkloadCertTTL, ca.MaxWorkloadTTL), 2)
	}
	return ttl, nil
}

// Up is `meshlab up`.
func Up() *cli.Command {
	return &cli.Command{
		Name:  "up",
		Usage: "start a lab: control plane, ingress gateway and bookinfo with sidecars",
		Description: `Brings up istiod, istio-ingressgateway and the bookinfo sample, each
bookinfo pod with an istio-proxy sidecar, and publishes the gateway on
127.0.0.1:8080. Shows each step with its elapsed time. The lab keeps running
after up returns; stop it with meshlab down.

--runtime auto picks kind when a container engine answers, else local. The
local runtime needs root (it creates network namespaces).

Examples:
   sudo meshlab up
   curl -s http://127.0.0.1:8080/productpage | grep -o '<title>.*</title>'

   # bookinfo where the Istio walkthrough has it
   sudo meshlab up --bookinfo-namespace book-demo

   # a second lab directory, other ports
   sudo meshlab up --state-dir /tmp/lab2 --http-port 18080 --api-port 25014

   # your own workloads instead of bookinfo (pods whose template says
   # sidecar.istio.io/inject: "false" get no sidecar)
   sudo meshlab up --no-bookinfo --manifest my-app.yaml

   # the walkthrough's istiod values: traces to your own Tempo
   sudo meshlab up --values istiod-values.yaml
   sudo meshlab up --set meshConfig.defaultConfig.tracing.zipkin.address=tempo.tempo:9411 \
                   --set meshConfig.defaultConfig.tracing.sampling=10
   meshlab get configmap istio -n istio-system -o yaml   # the mesh config istiod reads

   # the console on the walkthrough's web root (it also routes
   # samples/console/kiali-gateway.yaml through the gateway)
   sudo meshlab up --kiali-web-root /dashboards/kiali
   xdg-open http://127.0.0.1:20001/dashboards/kiali/

   # kind, in a workshop room with no registry: the archive meshlab images
   # save wrote on a machine that had the images (node image, MetalLB, meshlab)
   sudo meshlab up --runtime kind --images lab-images.tar
   # kind with a node image of your own (scripts/kind-testenv builds one offline)
   sudo meshlab up --runtime kind --node-image meshlab.local/kind-node:v1.34.4

   # workload certificates that live 30s, so rotation happens every ~15s
   sudo meshlab up --workload-cert-ttl 30s
   meshlab proxy-config secret -n default productpage   # SERIAL NUMBER changes`,
		Flags: upFlags,
		Action: func(c *cli.Context) error {
			dir, err := lab.StateDir(c.String("state-dir"))
			if err != nil {
				return err
			}
			ttl, err := workloadCertTTL(c)
			if err != nil {
				return err
			}
			mesh, err := meshValues(c)
			if err != nil {
				return err
			}
			// Checked here too, before the runtime process starts.
			if _, err := consoleAddon(c, dir); err != nil {
				return err
			}
			// A lab already running here is the one up acts on (it says so);
			// else --runtime picks.
			name := runningRuntime(dir)
			if name == "" {
				var why string
				if name, why, err = pickRuntime(c.String("runtime")); err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "Runtime: %s (%s)\n", name, why)
			}
			kindImages := lab.KindImages{
				Archive:           c.String("images"),
				Node:              c.String("node-image"),
				MetalLBController: c.String("metallb-controller-image"),
				MetalLBSpeaker:    c.String("metallb-speaker-image"),
			}
			if name != "kind" && !kindImages.IsZero() {
				return cli.Exit(fmt.Sprintf("up: --images, --node-image and --metallb-*-image are for the kind runtime; this lab's runtime is %s (use --runtime kind)", name), 2)
			}
			rt, err := newRuntime(c, name, dir)
			if err != nil {
				return err
			}
			return rt.Up(c.Context, lab.UpOptions{
				BookinfoNamespace: c.String("bookinfo-namespace"),
				NoBookinfo:        c.Bool("no-bookinfo"),
				Manifests:         c.StringSlice("manifest"),
				HostAddr:          c.String("host-addr"),
				HTTPPort:          c.Int("http-port"),
				HTTPSPort:         c.Int("https-port"),
				APIPort:           c.Int("api-port"),
				Nodes:             c.Int("nodes"),
				SharedIPKey:       c.String("allow-shared-ip"),
				Kind:              kindImages,
				WorkloadCertTTL:   ttl,
				MeshConfig:        mesh,
				MeshConfigGiven:   c.IsSet("values") || c.IsSet("set"),
				PrometheusPort:    c.Int("prometheus-port"),
				ZipkinPort:        c.Int("zipkin-port"),
				KialiPort:         c.Int("kiali-port"),
				KialiWebRoot:      c.String("kiali-web-root"),
				Out:               c.App.Writer,
			})
		},
	}
}

// meshValues is the mesh config from the lab's defaults, --values and
// --set, checked before anything starts; it says which values it does not
// read.
func meshValues(c *cli.Context) (string, error) {
	v, err := values.Load(c.StringSlice("values"), c.StringSlice("set"))
	if err != nil {
		return "", cli.Exit(err.Error(), 2)
	}
	for _, k := range v.Ignored {
		fmt.Fprintf(c.App.ErrWriter, "warning: values: %s is not read by meshlab (it takes istiod's meshConfig.*); ignored\n", k)
	}
	mesh, err := v.MeshConfig()
	if err != nil {
		return "", cli.Exit(err.Error(), 2)
	}
	return mesh, nil
}

// pickRuntime chooses the runtime and says why. auto picks kind only when an
// engine answers and kind's library can drive it, so a machine with just a
// docker client keeps the local runtime.
func pickRuntime(flag string) (string, string, error) {
	switch flag {
	case "local":
		return "local", "asked for with --runtime local", nil
	case "kind":
		e, err := kind.Usable()
		if err != nil {
			return "", "", cli.Exit("--runtime kind: "+err.Error(), 1)
		}
		return "kind", "asked for with --runtime kind; engine at " + e.Socket, nil
	case "auto", "":
		e, err := kind.Usable()
		if err == nil {
			return "kind", "a container engine answers at " + e.Socket, nil
		}
		if errors.Is(err, kind.ErrNoEngine) {
			return "local", "no container engine answers", nil
		}
		return "local", err.Error(), nil
	}
	return "", "", cli.Exit(fmt.Sprintf("--runtime %q: want auto, local or kind", flag), 2)
}

// LabDaemon is the hidden `meshlab lab-daemon`: the lab's runtime process,
// started detached by up.
func LabDaemon() *cli.Command {
	return &cli.Command{
		Name:   "lab-daemon",
		Usage:  "run the local runtime in the foreground (started by up)",
		Hidden: true,
		Flags:  upFlags,
		Action: func(c *cli.Context) error {
			dir, err := lab.StateDir(c.String("state-dir"))
			if err != nil {
				return err
			}
			ttl, err := workloadCertTTL(c)
			if err != nil {
				return err
			}
			addons, err := telemetryAddons(c)
			if err != nil {
				return err
			}
			kiali, err := consoleAddon(c, dir)
			if err != nil {
				return err
			}
			addons = append(addons, kiali)
			var mesh string
			if f := c.String("mesh-config-file"); f != "" {
				b, err := os.ReadFile(f)
				if err != nil {
					return fmt.Errorf("read the mesh config: %w", err)
				}
				mesh = string(b)
			} else if mesh, err = meshValues(c); err != nil {
				return err
			}
			// Checked again here: the runtime may be started without up.
			if err := lab.PrepareStateDir(dir); err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			// c.Context ends on SIGTERM (main catches it; down sends it):
			// local.Run then stops every pod, each draining within its grace
			// period, and removes the lab's network, as down would.
			ctx := c.Context
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			err = local.Run(ctx, local.Options{
				StateDir:          dir,
				Self:              self,
				BookinfoNamespace: c.String("bookinfo-namespace"),
				Bookinfo:          samples.BookinfoManifest(),
				BookinfoGateway:   samples.BookinfoGateway(),
				NoBookinfo:        c.Bool("no-bookinfo"),
				HostAddr:          c.String("host-addr"),
				HTTPPort:          c.Int("http-port"),
				HTTPSPort:         c.Int("https-port"),
				APIPort:           c.Int("api-port"),
				WorkloadCertTTL:   ttl,
				MeshConfig:        mesh,
				Addons:            addons,
				Logger:            log,
			})
			if err != nil && !errors.Is(err, context.Canceled) {
				log.Error("lab runtime failed", "err", err)
				return err
			}
			return nil
		},
	}
}
