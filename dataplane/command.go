package dataplane

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/dataplane/identity"
	"github.com/meshlab/meshlab/lab/drain"
)

// Command is `meshlab proxy`, the sidecar.
func Command() *cli.Command {
	return command(ModeSidecar, "proxy", "run the sidecar proxy (the istio-proxy analogue)", `Runs next to an application in its pod: connections the capture rules
redirect to 15001 (outbound) and 15006 (inbound) are routed by the
configuration the control plane serves over xDS, DNS on 15053 answers for
mesh services, the admin API is on 127.0.0.1:15000, readiness on :15021,
the proxy's Prometheus stats on :15090 and, on :15020, Istio's merged
/stats/prometheus: the agent's istio_agent_* metrics, the proxy's stats and
the app's own metrics from ISTIO_PROMETHEUS_ANNOTATIONS (the app's original
prometheus.io/* annotations, which the injector moves there). Access logs
are what the control plane's access_log entries say (meshConfig.accessLogFile
/dev/stdout writes to this process's stdout).
On SIGTERM it drains as Istio's sidecar does: readiness answers 503, inbound
listeners close, requests in flight get --termination-drain-duration.

Examples:
   meshlab proxy --pod reviews-v1-0 --namespace default --ip 198.18.0.12
   POD_NAME=ratings-0 POD_NAMESPACE=default INSTANCE_IP=198.18.0.9 meshlab proxy
   meshlab proxy --node-id sidecar~198.18.0.12~reviews-v1-0.default~default.svc.cluster.local \
       --discovery-address 127.0.0.1:15010 --admin-addr 127.0.0.1:15000
   meshlab proxy --pod reviews-v1-0 --ip 198.18.0.12 --discovery-address 198.18.0.2:15012 \
       --istiod-san istiod.istio-system.svc --secret-ttl 1h
   ISTIO_PROMETHEUS_ANNOTATIONS='{"scrape":"true","path":"/metrics","port":"9080"}' \
       meshlab proxy --pod ratings-0 --ip 198.18.0.9

On 15012 (the default, as Istio) the proxy first gets its workload
certificate from the CSR API with the token at --token-path (Istio's
pilot-agent role), then speaks xDS over mutual TLS with it, verifying istiod
against --root-cert-path; it renews at half the lifetime.`)
}

// GatewayCommand is `meshlab gateway`, the ingress gateway.
func GatewayCommand() *cli.Command {
	return command(ModeRouter, "gateway", "run the ingress gateway (the same proxy in router mode)", `Listens on the ports of the Gateway resources selecting it and routes by
the VirtualServices bound to them, as istio-ingressgateway does.

Examples:
   meshlab gateway --pod istio-ingressgateway-0 --namespace istio-system --ip 198.18.0.3
   meshlab gateway --discovery-address 127.0.0.1:15010 --label istio=ingressgateway
   meshlab gateway --discovery-address 198.18.0.2:15012 --service-account istio-ingressgateway-service-account

Its kubernetes:// TLS credentials come only over 15012, to a certificate of
the gateway's own namespace.`)
}

func command(mode, name, usage, desc string) *cli.Command {
	return &cli.Command{
		Name:        name,
		Usage:       usage,
		Description: desc,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "discovery-address", Value: identity.DefaultCAAddress, Usage: "control plane xDS address: port 15012 is mutual TLS with the workload certificate, 15010 plaintext (no secrets served there)", EnvVars: []string{"DISCOVERY_ADDRESS"}},
			&cli.StringFlag{Name: "control-plane-auth-policy", Usage: "MUTUAL_TLS (xDS with the workload certificate) or NONE (plaintext), as Istio's proxy config; default: NONE on port 15010, else MUTUAL_TLS"},
			&cli.StringFlag{Name: "ca-addr", Usage: "Istio CSR API address (default: the discovery address, istiod being the CA)", EnvVars: []string{"CA_ADDR"}},
			&cli.StringFlag{Name: "istiod-san", Usage: "name istiod's certificate must carry (default: the discovery address's host, or istiod.istio-system.svc when that is an IP)", EnvVars: []string{"ISTIOD_SAN"}},
			&cli.StringFlag{Name: "token-path", Value: identity.DefaultTokenPath, Usage: "bearer token for the CSR API (projected istio-token), read again for every request"},
			&cli.StringFlag{Name: "root-cert-path", Value: identity.DefaultRootCertPath, Usage: "mesh root certificate (istio-ca-root-cert's root-cert.pem); a change is the new trust"},
			&cli.StringFlag{Name: "cluster-id", Value: identity.DefaultClusterID, Usage: "cluster ID sent with CSRs and in the node metadata", EnvVars: []string{"ISTIO_META_CLUSTER_ID"}},
			&cli.StringFlag{Name: "trust-domain", Value: identity.DefaultTrustDomain, Usage: "SPIFFE trust domain", EnvVars: []string{"TRUST_DOMAIN"}},
			&cli.DurationFlag{Name: "secret-ttl", Value: identity.DefaultTTL, Usage: "workload certificate lifetime requested", EnvVars: []string{"SECRET_TTL"}},
			&cli.Float64Flag{Name: "secret-grace-period-ratio", Value: identity.DefaultGraceRatio, Usage: "renew when this share of the lifetime is left", EnvVars: []string{"SECRET_GRACE_PERIOD_RATIO"}},
			&cli.Float64Flag{Name: "secret-grace-period-ratio-jitter", Value: identity.DefaultGraceJitter, Usage: "random ± added to the grace ratio, once per proxy", EnvVars: []string{"SECRET_GRACE_PERIOD_RATIO_JITTER"}},
			&cli.StringFlag{Name: "key-type", Value: identity.KeyECDSA, Usage: "workload key: ECDSA (P-256) or RSA", EnvVars: []string{"ECC_SIGNATURE_ALGORITHM"}},
			&cli.IntFlag{Name: "workload-rsa-key-size", Value: identity.DefaultRSAKeySize, Usage: "RSA key size with --key-type RSA", EnvVars: []string{"WORKLOAD_RSA_KEY_SIZE"}},
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
			&cli.StringFlag{Name: "status-addr", Value: DefaultStatusAddr, Usage: "agent status address: the merged /stats/prometheus (agent, proxy and app metrics) and /healthz/ready; - disables"},
			&cli.StringFlag{Name: "prometheus-annotations", Usage: "the app's original prometheus.io/{scrape,path,port} as JSON, whose metrics the merged endpoint adds (sidecar only)", EnvVars: []string{"ISTIO_PROMETHEUS_ANNOTATIONS"}},
			&cli.StringFlag{Name: "dns-addr", Value: "127.0.0.1:15053", Usage: "DNS address (sidecar only); - disables"},
			&cli.BoolFlag{Name: "no-access-log", Usage: "drop the access log lines the control plane sends to /dev/stdout"},
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
		"CLUSTER_ID":      c.String("cluster-id"),
	}
	// Istio's agent passes ISTIO_META_* variables on as node metadata.
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "ISTIO_META_") {
			md[strings.TrimPrefix(k, "ISTIO_META_")] = v
		}
	}
	disc := c.String("discovery-address")
	caAddr := c.String("ca-addr")
	if caAddr == "" {
		caAddr = disc
	}
	san := c.String("istiod-san")
	if san == "" {
		san = serverName(disc)
	}
	plaintext := plaintextPort(disc)
	switch policy := strings.ToUpper(c.String("control-plane-auth-policy")); policy {
	case "":
	case "NONE":
		plaintext = true
	case "MUTUAL_TLS":
		plaintext = false
	default:
		return Options{}, fmt.Errorf("--control-plane-auth-policy %q: want MUTUAL_TLS or NONE", policy)
	}
	o := Options{
		XDSServerName: san,
		XDSPlaintext:  plaintext,
		Identity: &identity.Config{
			CAAddress: caAddr, CAServerName: san,
			TokenPath: c.String("token-path"), RootCertPath: c.String("root-cert-path"),
			ClusterID: c.String("cluster-id"), TrustDomain: c.String("trust-domain"),
			Namespace: ns, ServiceAccount: c.String("service-account"),
			TTL: c.Duration("secret-ttl"), GraceRatio: c.Float64("secret-grace-period-ratio"),
			GraceJitter: jitterFlag(c.Float64("secret-grace-period-ratio-jitter")),
			KeyType:     strings.ToUpper(c.String("key-type")), RSAKeySize: c.Int("workload-rsa-key-size"),
		},
		Mode:                  mode,
		NodeID:                id,
		Metadata:              md,
		Labels:                labels,
		ProxyConfig:           os.Getenv("PROXY_CONFIG"),
		DiscoveryAddress:      disc,
		AdminAddr:             c.String("admin-addr"),
		ReadyAddr:             c.String("ready-addr"),
		StatsAddr:             c.String("stats-addr"),
		StatusAddr:            c.String("status-addr"),
		PrometheusAnnotations: c.String("prometheus-annotations"),
		DNSAddr:               c.String("dns-addr"),
		DrainTimeout:          drain.FromFlag(c),
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

// plaintextPort: 15010 is istiod's plaintext xDS port; any other is TLS.
func plaintextPort(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	return err == nil && port == "15010"
}

// serverName is the name istiod's certificate is checked for: the host
// dialled, unless it is an address (the local lab dials istiod's pod IP),
// then istiod's Service name, as ISTIOD_SAN would set it.
func serverName(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "" || net.ParseIP(host) != nil {
		return "istiod.istio-system.svc"
	}
	return host
}

// jitterFlag maps a jitter of 0 (none asked for) to the agent's "none".
func jitterFlag(v float64) float64 {
	if v == 0 {
		return -1
	}
	return v
}
