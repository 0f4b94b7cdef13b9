package controlplane

import (
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/urfave/cli/v2"
	"k8s.io/client-go/rest"

	"github.com/meshlab/meshlab/controlplane/inject"
	"github.com/meshlab/meshlab/controlplane/kube"
	"github.com/meshlab/meshlab/lab/drain"
)

// Command is `meshlab controlplane`, the istiod analogue. The lab runs it in
// the istiod pod; a developer can run it by hand too.
func Command(version string) *cli.Command {
	return &cli.Command{
		Name:  "controlplane",
		Usage: "run the control plane (the istiod analogue): store, registry, xDS, API",
		Description: `Serves Envoy v3 xDS over ADS to sidecars and gateways, and the HTTP API
that apply, get, delete, proxy-status and proxy-config use. Only this process
opens the store (a bbolt file in --state-dir).

Examples:
   # what the lab runs in the istiod pod
   meshlab controlplane --state-dir /var/lib/meshlab/controlplane

   # a control plane on loopback for development
   meshlab controlplane --state-dir /tmp/cp --xds-addr 127.0.0.1:15010 --http-addr 127.0.0.1:15014

   # istiod in a cluster: watch it, serve the injection and validation webhooks
   meshlab controlplane --state-dir /var/lib/meshlab/controlplane --in-cluster --ca-dir /etc/cacerts

   # the same from a laptop against a kubeconfig (webhooks registered by URL)
   meshlab controlplane --state-dir /tmp/cp --kubeconfig ~/.kube/config --webhook-addr 127.0.0.1:15017
   curl -s http://127.0.0.1:15014/api/v1/ca/root   # the caBundle of the webhooks

The API's calls need a bearer token (Authorization: Bearer ...): the one in
--api-token-file (the lab writes it into its state directory and the CLI
sends it), or on a cluster a Kubernetes token whose user RBAC allows the
call's counterpart (update virtualservices.networking.istio.io to apply,
list secrets to list secrets). /metrics, /ready, /version and the CA root
are open.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "state-dir", Usage: "directory of the store (meshlab.db)", Required: true, EnvVars: []string{"MESHLAB_CONTROLPLANE_STATE"}},
			&cli.StringFlag{Name: "xds-addr", Value: ":15010", Usage: "address for xDS (plaintext gRPC, ADS)"},
			&cli.StringFlag{Name: "http-addr", Value: ":15014", Usage: "address for the API, /metrics and /ready (port name http-monitoring)"},
			&cli.StringFlag{Name: "vip-pool", Value: DefaultVIPPool.String(), Usage: "prefix that service VIPs are allocated from"},
			&cli.StringFlag{Name: "csr-addr", Value: ":15012", Usage: "address for Istio's certificate service (gRPC CreateCertificate over TLS); empty serves none"},
			&cli.DurationFlag{Name: "workload-cert-ttl", Value: 24 * time.Hour, Usage: "lifetime of a workload certificate whose request names none"},
			&cli.StringFlag{Name: "webhook-addr", Value: ":15017", Usage: "address for the admission webhooks /inject and /validate (TLS, certificate from the mesh CA); empty serves none"},
			&cli.StringFlag{Name: "kubeconfig", Usage: "watch this Kubernetes cluster for Services, endpoints, pods and Istio resources"},
			&cli.BoolFlag{Name: "in-cluster", Usage: "watch the Kubernetes cluster this pod runs in (its service account)"},
			&cli.StringFlag{Name: "ca-dir", Usage: "plugged-in mesh CA (Istio's cacerts: ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem) when the directory holds one; else the store keeps a root of its own"},
			&cli.StringFlag{Name: "proxy-image", Value: "meshlab.local/meshlab:" + version, Usage: "image the injection webhook gives istio-init and istio-proxy"},
			&cli.StringFlag{Name: "api-token-file", EnvVars: []string{"MESHLAB_API_TOKEN_FILE"},
				Usage: "file (0600) holding the bearer token the API's calls need; default: <state-dir>/api-token, made on first start. With --in-cluster or --kubeconfig callers send a Kubernetes token instead"},
			&cli.BoolFlag{Name: "debug", Usage: "log at debug level"},
			drain.Flag(),
		},
		Action: func(c *cli.Context) error {
			pool, err := netip.ParsePrefix(c.String("vip-pool"))
			if err != nil {
				return cli.Exit("--vip-pool: want a prefix like 198.19.0.0/16: "+err.Error(), 2)
			}
			level := slog.LevelInfo
			if c.Bool("debug") {
				level = slog.LevelDebug
			}
			var kcfg *rest.Config
			if c.Bool("in-cluster") || c.String("kubeconfig") != "" {
				if kcfg, err = kube.RESTConfig(c.String("kubeconfig")); err != nil {
					return cli.Exit(err.Error(), 2)
				}
			}
			// c.Context ends on SIGTERM (main catches it): Run drains.
			return Run(c.Context, Options{
				WebhookAddr:     c.String("webhook-addr"),
				CSRAddr:         c.String("csr-addr"),
				WorkloadCertTTL: c.Duration("workload-cert-ttl"),
				Kube:            kcfg,
				Inject:          inject.Params{Image: c.String("proxy-image")},
				CADir:           c.String("ca-dir"),
				APITokenFile:    c.String("api-token-file"),
				StateDir:        c.String("state-dir"),
				XDSAddr:         c.String("xds-addr"),
				HTTPAddr:        c.String("http-addr"),
				VIPPool:         pool,
				Version:         version,
				Logger:          slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),

				DrainTimeout: drain.FromFlag(c),
			})
		},
	}
}
