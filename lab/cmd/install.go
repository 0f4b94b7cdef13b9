package cmd

import (
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshlab/meshlab/lab/kube/install"
)

// installFlags are shared by install and uninstall, so that uninstall is
// given what install was.
func installFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "kubeconfig", Usage: "kubeconfig `PATH` (default $KUBECONFIG, else ~/.kube/config)", EnvVars: []string{"KUBECONFIG"}},
		&cli.StringFlag{Name: "context", Usage: "kubeconfig context (default the current one)"},
		&cli.StringFlag{Name: "image", Value: "meshlab.local/meshlab:" + Version, Usage: "image every meshlab container runs"},
		&cli.StringFlag{Name: "bookinfo-namespace", Value: "default", Usage: "namespace for bookinfo, labelled istio-injection=enabled (\"\" for no bookinfo)"},
		&cli.StringFlag{Name: "webhook-url-base", Usage: "register the webhooks by URL (`https://127.0.0.1:15017`) for a control plane outside the cluster"},
		&cli.StringFlag{Name: "ca-bundle", Usage: "PEM `FILE` of the CA that signs the control plane's webhook certificate (default: the root of the cacerts Secret in istio-system, made on first install)"},
		&cli.DurationFlag{Name: "timeout", Value: 3 * time.Minute, Usage: "how long to wait for each step"},
		&cli.BoolFlag{Name: "dry-run", Usage: "send every request with dryRun=All: validated by the cluster, nothing stored"},
		&cli.StringFlag{Name: "kiali-web-root", Value: KialiWebRoot, Usage: "path the console (Deployment kiali, 20001) serves under (Kiali's web_root)"},
		&cli.BoolFlag{Name: "no-console", Usage: "leave the console (kiali) out"},
	}
}

// Install is `meshlab install`.
func Install() *cli.Command {
	return &cli.Command{
		Name:  "install",
		Usage: "install the control plane, ingress gateway and bookinfo on a Kubernetes cluster",
		Description: `Applies, with server-side apply (field manager "meshlab"), Istio's CRDs,
istiod (meshlab controlplane) with its webhooks, istio-ingressgateway behind a
LoadBalancer Service (8080, 8443), the telemetry addons (prometheus, zipkin),
the console (kiali on 20001, reached with meshlab dashboard kiali) and bookinfo
with its gateway and routes, then waits for every Deployment to roll out. Safe
to run again.

The mesh CA is Istio's plugged-in cacerts Secret in istio-system (ca-cert.pem,
ca-key.pem, root-cert.pem, cert-chain.pem), mounted into istiod at
/etc/cacerts; its root is the webhooks' caBundle. The first install makes a
new root; later installs keep the Secret as they find it, never rotating it.
To plug in your own CA, create the Secret before installing.

Examples:
   meshlab install --kubeconfig ~/.kube/config
   meshlab install --context kind-meshlab --bookinfo-namespace book-demo

   # see what would be applied, without a cluster
   meshlab install --render > meshlab.yaml

   # the console where the walkthrough has Kiali, behind the gateway
   meshlab install --kiali-web-root /dashboards/kiali
   meshlab apply -f samples/console/kiali-gateway.yaml

   # a control plane running on this host serves the webhooks, with the
   # cluster's mesh CA (the cacerts Secret, written to a directory)
   meshlab install --webhook-url-base https://127.0.0.1:15017
   mkdir -p cacerts && for f in ca-cert ca-key root-cert cert-chain; do
     kubectl -n istio-system get secret cacerts -o jsonpath="{.data.$f\.pem}" | base64 -d > cacerts/$f.pem; done
   meshlab controlplane --state-dir /tmp/cp --kubeconfig ~/.kube/config --webhook-addr 127.0.0.1:15017 --ca-dir cacerts`,
		Flags: append(installFlags(),
			&cli.BoolFlag{Name: "render", Usage: "print the objects as YAML instead of applying them"},
			&cli.BoolFlag{Name: "no-wait", Usage: "return once the objects are accepted, without waiting for rollouts"},
		),
		Action: func(c *cli.Context) error {
			o, err := installOptions(c)
			if err != nil {
				return err
			}
			if c.Bool("render") {
				if o.CABundle == nil {
					if o, err = install.NewMeshCA(o); err != nil {
						return err
					}
				}
				objs, err := install.Objects(o)
				if err != nil {
					return err
				}
				return install.Render(c.App.Writer, objs)
			}
			in, err := installer(c)
			if err != nil {
				return err
			}
			in.Wait = !c.Bool("no-wait")
			if o.CABundle == nil {
				if o, err = in.MeshCA(c.Context, o); err != nil {
					return err
				}
			}
			return in.Install(c.Context, o)
		},
	}
}

// Uninstall is `meshlab uninstall`.
func Uninstall() *cli.Command {
	return &cli.Command{
		Name:  "uninstall",
		Usage: "delete what meshlab install created on a Kubernetes cluster",
		Description: `Deletes, in reverse order, every object meshlab install creates, among them
the Istio CRDs and with them every Istio resource of the cluster. Pass the
same --bookinfo-namespace as to install. The namespaces default and kube-*
are never deleted.

Examples:
   meshlab uninstall --kubeconfig ~/.kube/config
   meshlab uninstall --context kind-meshlab --bookinfo-namespace book-demo`,
		Flags: installFlags(),
		Action: func(c *cli.Context) error {
			o, err := installOptions(c)
			if err != nil {
				return err
			}
			in, err := installer(c)
			if err != nil {
				return err
			}
			return in.Uninstall(c.Context, o)
		},
	}
}

func installOptions(c *cli.Context) (install.Options, error) {
	o := install.Options{
		Image:             c.String("image"),
		BookinfoNamespace: c.String("bookinfo-namespace"),
		WebhookURLBase:    c.String("webhook-url-base"),
		NoConsole:         c.Bool("no-console"),
	}
	root, err := webRoot("kiali-web-root", c.String("kiali-web-root"))
	if err != nil {
		return o, cli.Exit(err.Error(), 2)
	}
	o.KialiWebRoot = root
	if f := c.String("ca-bundle"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return o, fmt.Errorf("reading --ca-bundle: %w", err)
		}
		o.CABundle = b
	}
	return o, nil
}

func installer(c *cli.Context) (*install.Installer, error) {
	cfg, err := restConfig(c.String("kubeconfig"), c.String("context"))
	if err != nil {
		return nil, err
	}
	in, err := install.New(cfg)
	if err != nil {
		return nil, err
	}
	in.Progress = c.App.ErrWriter
	if in.Progress == nil {
		in.Progress = os.Stderr
	}
	in.Timeout = c.Duration("timeout")
	in.DryRun = c.Bool("dry-run")
	return in, nil
}

// restConfig loads a kubeconfig as kubectl does: path, else $KUBECONFIG,
// else ~/.kube/config, at the named context or the current one.
func restConfig(path, context string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if path != "" {
		rules.ExplicitPath = path
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
		&clientcmd.ConfigOverrides{CurrentContext: context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading the kubeconfig: %w", err)
	}
	return cfg, nil
}
