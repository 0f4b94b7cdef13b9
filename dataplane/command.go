package dataplane

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/lab/drain"
)

// Command is `meshlab proxy`, the sidecar.
func Command() *cli.Command {
	return command(ModeSidecar, "proxy", "run the sidecar proxy (the istio-proxy analogue)", `Runs next to an application in its pod: connections the capture rules
redirect to 15001 (outbound) and 15006 (inbound) are routed by the
configuration the control plane serves over xDS, DNS on 15053 answers for
mesh services, the admin API is on 127.0.0.1:15000 and readiness on :15021.
On SIGTERM it drains as Istio's sidecar does: readiness answers 503, inbound
listeners close, requests in flight get --termination-drain-duration.

Examples:
   meshlab proxy --pod reviews-v1-0 --namespace default --ip 198.18.0.12
   POD_NAME=ratings-0 POD_NAMESPACE=default INSTANCE_IP=198.18.0.9 meshlab proxy
   meshlab proxy --node-id sidecar~198.18.0.12~reviews-v1-0.default~default.svc.cluster.local \
       --discovery-address 127.0.0.1:15010 --admin-addr 127.0.0.1:15000`)
}

// GatewayCommand is `meshlab gateway`, the ingress gateway.
func GatewayCommand() *cli.Command {
	return command(ModeRouter, "gateway", "run the ingress gateway (the same proxy in router mode)", `Listens on the ports of the Gateway resources selecting it and routes by
the VirtualServices bound to them, as istio-ingressgateway does.

Examples:
   meshlab gateway --pod istio-ingressgateway-0 --namespace istio-system --ip 198.18.0.3
   meshlab gateway --discovery-address 127.0.0.1:15010 --label istio=ingressgateway`)
}

func command(mode, name, usage, desc string) *cli.Command {
	return &cli.Command{
		Name:        name,
		Usage:       usage,
		Description: desc,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "discovery-address", Value: "istiod.istio-system.svc:15010", Usage: "control plane xDS address (plaintext gRPC)", EnvVars: []string{"DISCOVERY_ADDRESS"}},
			&cli.StringFlag{Name: "node-id", Usage: "xDS node id (default: built from --pod, --namespace and --ip)"},
			&cli.StringFlag{Name: "pod", Usage: "pod name", EnvVars: []string{"POD_NAME"}},
			&cli.StringFlag{Name: "namespace", Value: "default", Usage: "pod namespace", EnvVars: []string{"POD_NAMESPACE"}},
			&cli.StringFlag{Name: "ip", Usage: "pod IP", EnvVars: []string{"INSTANCE_IP"}},
			&cli.StringFlag{Name: "service-account", Value: "default", Usage: "pod service account", EnvVars: []string{"SERVICE_ACCOUNT"}},
			&cli.StringFlag{Name: "workload", Usage: "workload name (default: the pod name without its replica suffix)", EnvVars: []string{"ISTIO_META_WORKLOAD_NAME"}},
			&cli.StringSliceFlag{Name: "label", Usage: "pod label `key=value` (repeatable)"},
			&cli.StringFlag{Name: "labels-file", Value: "/etc/istio/pod/labels", Usage: "downward API labels file, read when present"},
			&cli.StringFlag{Name: "admin-addr", Value: "127.0.0.1:15000", Usage: "admin API address"},
			&cli.StringFlag{Name: "ready-addr", Value: "0.0.0.0:15021", Usage: "readiness address (/healthz/ready)"},
			&cli.StringFlag{Name: "stats-addr", Value: "0.0.0.0:15090", Usage: "Prometheus stats address (/stats/prometheus); - disables"},
			&cli.StringFlag{Name: "dns-addr", Value: "127.0.0.1:15053", Usage: "DNS address (sidecar only); - disables"},
			&cli.BoolFlag{Name: "no-access-log", Usage: "do not write the access log to stdout"},
			drain.Flag(),
		},
		Action: func(c *cli.Context) error {
			o, err := optionsFrom(c, mode)
			if err != nil {
				return err
			}
			return Run(c.Context, o)
		},
	}
}

func optionsFrom(c *cli.Context, mode string) (Options, error) {
	ns := c.String("namespace")
	pod := c.String("pod")
	if pod == "" {
		pod, _ = os.Hostname()
	}
	id := c.String("node-id")
	if id == "" {
		ip := c.String("ip")
		if ip == "" {
			return Options{}, fmt.Errorf("build node id: set --ip (or INSTANCE_IP), or --node-id")
		}
		id = fmt.Sprintf("%s~%s~%s.%s~%s.svc.cluster.local", mode, ip, pod, ns, ns)
	}
	labels := map[string]string{}
	if b, err := os.ReadFile(c.String("labels-file")); err == nil {
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), "="); ok {
				labels[k] = strings.Trim(v, `"`)
			}
		}
	}
	for _, kv := range c.StringSlice("label") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return Options{}, fmt.Errorf("label %q: want key=value", kv)
		}
		labels[k] = v
	}
	workload := c.String("workload")
	if workload == "" {
		workload = workloadName(pod)
	}
	md := map[string]string{
		"NAMESPACE":       ns,
		"SERVICE_ACCOUNT": c.String("service-account"),
		"WORKLOAD_NAME":   workload,
		"POD_NAME":        pod,
	}
	// Istio's agent passes ISTIO_META_* variables on as node metadata.
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "ISTIO_META_") {
			md[strings.TrimPrefix(k, "ISTIO_META_")] = v
		}
	}
	o := Options{
		Mode:             mode,
		NodeID:           id,
		Metadata:         md,
		Labels:           labels,
		DiscoveryAddress: c.String("discovery-address"),
		AdminAddr:        c.String("admin-addr"),
		ReadyAddr:        c.String("ready-addr"),
		StatsAddr:        c.String("stats-addr"),
		DNSAddr:          c.String("dns-addr"),
		DrainTimeout:     drain.FromFlag(c),
	}
	if !c.Bool("no-access-log") {
		o.AccessLog = c.App.Writer
		if o.AccessLog == nil {
			o.AccessLog = os.Stdout
		}
	}
	return o, nil
}

// workloadName drops a pod name's generated suffixes, as Kubernetes
// names pods <deployment>-<replicaset hash>-<random> or <name>-<ordinal>.
func workloadName(pod string) string {
	parts := strings.Split(pod, "-")
	if n := len(parts); n >= 3 && len(parts[n-1]) == 5 && len(parts[n-2]) >= 8 && len(parts[n-2]) <= 10 {
		return strings.Join(parts[:n-2], "-")
	}
	if n := len(parts); n >= 2 && isDigits(parts[n-1]) {
		return strings.Join(parts[:n-1], "-")
	}
	return pod
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}
