package cmd

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/urfave/cli/v2"
	"google.golang.org/protobuf/encoding/protojson"
)

// ProxyStatus is `meshlab proxy-status`.
func ProxyStatus() *cli.Command {
	return &cli.Command{
		Name:  "proxy-status",
		Usage: "show every connected proxy and whether it has ACKed the latest config (as istioctl)",
		Description: `SYNCED: the proxy ACKed the last version sent. STALE: it was sent a newer
version and has not ACKed it (or NACKed it). NOT SENT: nothing of that type
was sent. ERROR: the control plane could not send the latest version (too
large for the proxy); the proxy keeps its previous one. Below the table, each
NACK with the proxy's message and each ERROR with its reason.

Examples:
   meshlab proxy-status
   meshlab proxy-status -o json`,
		Flags: []cli.Flag{outputFlag, stateDirFlag, cpFlag, tokenFlag},
		Action: func(c *cli.Context) error {
			o, err := checkOutput(c, "table", "json")
			if err != nil {
				return err
			}
			rt, err := openRuntime(c)
			if err != nil {
				return err
			}
			cl, done, err := rt.ControlPlane(c.Context)
			if err != nil {
				return err
			}
			defer done()
			ps, err := cl.Proxies(c.Context)
			if err != nil {
				return explain(err)
			}
			if o == "json" {
				return writeJSON(c.App.Writer, ps)
			}
			w := tabwriter.NewWriter(c.App.Writer, 0, 4, 3, ' ', 0)
			fmt.Fprintln(w, "NAME\tCDS\tLDS\tEDS\tRDS\tISTIOD\tVERSION")
			var problems []string
			for _, p := range ps {
				if !p.Connected {
					continue
				}
				state := func(t string) string {
					s, ok := p.Types[t]
					if !ok || s.State == "" {
						return "NOT SENT"
					}
					if s.Nacked != "" {
						return s.State + " (NACK)"
					}
					return s.State
				}
				fmt.Fprintf(w, "%s.%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Pod, p.Namespace, state("CDS"), state("LDS"),
					state("EDS"), state("RDS"), "istiod", p.Types["LDS"].Acked)
				for _, t := range slices.Sorted(maps.Keys(p.Types)) {
					switch s := p.Types[t]; {
					case s.State == "ERROR":
						problems = append(problems, fmt.Sprintf("%s.%s %s not sent: %s", p.Pod, p.Namespace, t, s.Error))
					case s.Nacked != "":
						problems = append(problems, fmt.Sprintf("%s.%s %s NACK of version %s: %s", p.Pod, p.Namespace, t, s.Nacked, s.Error))
					}
				}
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if len(problems) > 0 {
				fmt.Fprintln(c.App.Writer)
				for _, p := range problems {
					// The message is the proxy's: keep control characters
					// from reaching the terminal.
					fmt.Fprintln(c.App.Writer, strings.Map(printable, p))
				}
			}
			return nil
		},
	}
}

func printable(r rune) rune {
	if unicode.IsPrint(r) {
		return r
	}
	return '?'
}

// ProxyConfig is `meshlab proxy-config`: one subcommand per kind of
// resource, as istioctl's, so that each has its own --help.
func ProxyConfig() *cli.Command {
	kind := func(name string, aliases []string, usage, examples string) *cli.Command {
		return &cli.Command{
			Name:      name,
			Aliases:   aliases,
			Usage:     usage,
			ArgsUsage: "POD",
			Description: `Reads the proxy's own /config_dump (its admin port 15000, inside the pod),
like istioctl proxy-config ` + name + `.

Examples:
` + examples,
			Flags:  []cli.Flag{namespaceFlag, outputFlag, stateDirFlag},
			Action: func(c *cli.Context) error { return proxyConfig(c, name) },
		}
	}
	return &cli.Command{
		Name:      "proxy-config",
		Usage:     "print what a proxy holds: listeners, routes, clusters, endpoints or secrets",
		ArgsUsage: "listeners|routes|clusters|endpoints|secret|all POD",
		Description: `Reads the proxy's own /config_dump (its admin port 15000, inside the pod),
like istioctl proxy-config.

Examples:
   meshlab proxy-config clusters -n default productpage
   meshlab proxy-config routes -n istio-system istio-ingressgateway
   meshlab proxy-config listeners -n default reviews-v1 -o json
   meshlab proxy-config secret -n default productpage`,
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return cli.ShowSubcommandHelp(c)
			}
			return cli.Exit(fmt.Sprintf("proxy-config %q: want listeners, routes, clusters, endpoints, secret or all", c.Args().First()), 2)
		},
		Subcommands: []*cli.Command{
			kind("listeners", []string{"listener"}, "the proxy's listeners and their filter chains", `   meshlab proxy-config listeners -n default reviews-v1
   meshlab proxy-config listeners -n default reviews-v1 -o json`),
			kind("routes", []string{"route"}, "the proxy's route configurations", `   meshlab proxy-config routes -n istio-system istio-ingressgateway`),
			kind("clusters", []string{"cluster"}, "the proxy's clusters", `   meshlab proxy-config clusters -n default productpage`),
			kind("endpoints", []string{"endpoint"}, "the proxy's endpoints, with health", `   meshlab proxy-config endpoints -n default productpage`),
			kind("secret", []string{"secrets"}, "the certificates the proxy holds", `   meshlab proxy-config secret -n default productpage
   meshlab proxy-config secret -n istio-system istio-ingressgateway -o json

As istioctl, it lists the proxy's workload certificate ("default", Cert
Chain), the mesh root ("ROOTCA", CA) and, on a gateway, the kubernetes://
credentials; -o json prints Envoy's SecretsConfigDump, private keys
redacted.`),
			kind("all", nil, "listeners, routes, clusters and endpoints together", `   meshlab proxy-config all -n default productpage`),
		},
	}
}

// proxyConfig prints one kind of what a pod's proxy holds.
func proxyConfig(c *cli.Context, what string) error {
	o, err := checkOutput(c, "table", "json")
	if err != nil {
		return err
	}
	if c.NArg() != 1 {
		return cli.Exit(fmt.Sprintf("usage: meshlab proxy-config %s -n NAMESPACE POD", what), 2)
	}
	raw, dump, err := configDumpOf(c, c.Args().Get(0))
	if err != nil {
		return err
	}
	if what == "secret" {
		if o == "json" {
			return printSecretsJSON(c.App.Writer, dump)
		}
		return printSecrets(c.App.Writer, dump, time.Now())
	}
	if o == "json" {
		_, err := c.App.Writer.Write(append(indentJSON(raw), '\n'))
		return err
	}
	return printConfig(c.App.Writer, strings.TrimSuffix(what, "s"), dump)
}

// configDumpOf reads and decodes the /config_dump of the named pod's
// proxy (the -n namespace's), through the lab's runtime.
func configDumpOf(c *cli.Context, pod string) ([]byte, *adminv3.ConfigDump, error) {
	rt, err := openRuntime(c)
	if err != nil {
		return nil, nil, err
	}
	ns := c.String("namespace")
	raw, err := rt.ProxyAdmin(c.Context, ns, pod, "/config_dump")
	if err != nil {
		return nil, nil, err
	}
	var dump adminv3.ConfigDump
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, &dump); err != nil {
		return nil, nil, fmt.Errorf("decode the config dump of %s/%s: %w", ns, pod, err)
	}
	return raw, &dump, nil
}

func printConfig(out io.Writer, what string, dump *adminv3.ConfigDump) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, cfg := range dump.Configs {
		m, err := cfg.UnmarshalNew()
		if err != nil {
			continue
		}
		switch d := m.(type) {
		case *adminv3.ClustersConfigDump:
			if what != "cluster" && what != "all" {
				continue
			}
			fmt.Fprintln(w, "SERVICE FQDN\tPORT\tSUBSET\tDIRECTION\tTYPE")
			var rows []string
			for _, dc := range append(d.GetStaticClusters(), staticOf(d.GetDynamicActiveClusters())...) {
				var cl clusterv3.Cluster
				if dc.GetCluster().UnmarshalTo(&cl) != nil {
					continue
				}
				dir, port, subset, host := splitCluster(cl.GetName())
				rows = append(rows, fmt.Sprintf("%s\t%s\t%s\t%s\t%s", host, port, subset, dir, clusterType(&cl)))
			}
			sort.Strings(rows)
			fmt.Fprintln(w, strings.Join(rows, "\n"))
		case *adminv3.ListenersConfigDump:
			if what != "listener" && what != "all" {
				continue
			}
			fmt.Fprintln(w, "NAME\tADDRESS\tPORT\tMATCH\tDESTINATION")
			for _, dl := range d.GetDynamicListeners() {
				var l listenerv3.Listener
				if dl.GetActiveState().GetListener().UnmarshalTo(&l) != nil {
					continue
				}
				addr := l.GetAddress().GetSocketAddress()
				for _, fc := range l.GetFilterChains() {
					match := "ALL"
					if p := fc.GetFilterChainMatch().GetDestinationPort(); p != nil {
						match = fmt.Sprintf("port %d", p.GetValue())
					}
					fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", l.GetName(), addr.GetAddress(), addr.GetPortValue(), match, destination(fc))
				}
			}
		case *adminv3.RoutesConfigDump:
			if what != "route" && what != "all" {
				continue
			}
			fmt.Fprintln(w, "NAME\tVHOST NAME\tDOMAINS\tMATCH\tROUTE")
			for _, dr := range d.GetDynamicRouteConfigs() {
				var rc routev3.RouteConfiguration
				if dr.GetRouteConfig().UnmarshalTo(&rc) != nil {
					continue
				}
				for _, vh := range rc.GetVirtualHosts() {
					domains := vh.GetDomains()
					shown := strings.Join(domains, ", ")
					if len(domains) > 2 {
						shown = fmt.Sprintf("%s + %d more", domains[0], len(domains)-1)
					}
					for _, r := range vh.GetRoutes() {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", rc.GetName(), vh.GetName(), shown, routeMatch(r), routeDest(r))
					}
				}
			}
		case *adminv3.EndpointsConfigDump:
			if what != "endpoint" && what != "all" {
				continue
			}
			fmt.Fprintln(w, "ENDPOINT\tSTATUS\tCLUSTER")
			for _, de := range d.GetDynamicEndpointConfigs() {
				var cla endpointv3.ClusterLoadAssignment
				if de.GetEndpointConfig().UnmarshalTo(&cla) != nil {
					continue
				}
				for _, le := range cla.GetEndpoints() {
					for _, e := range le.GetLbEndpoints() {
						sa := e.GetEndpoint().GetAddress().GetSocketAddress()
						fmt.Fprintf(w, "%s:%d\t%s\t%s\n", sa.GetAddress(), sa.GetPortValue(), strings.TrimPrefix(e.GetHealthStatus().String(), "UNKNOWN"), cla.GetClusterName())
					}
				}
			}
		}
	}
	return w.Flush()
}

func staticOf(dyn []*adminv3.ClustersConfigDump_DynamicCluster) []*adminv3.ClustersConfigDump_StaticCluster {
	var out []*adminv3.ClustersConfigDump_StaticCluster
	for _, d := range dyn {
		out = append(out, &adminv3.ClustersConfigDump_StaticCluster{Cluster: d.GetCluster()})
	}
	return out
}

// splitCluster reads Istio's cluster name direction|port|subset|host.
func splitCluster(name string) (dir, port, subset, host string) {
	parts := strings.Split(name, "|")
	if len(parts) != 4 {
		return "-", "-", "-", name
	}
	return strings.ToUpper(parts[0]), parts[1], parts[2], parts[3]
}

func clusterType(c *clusterv3.Cluster) string {
	if t, ok := c.GetClusterDiscoveryType().(*clusterv3.Cluster_Type); ok {
		return t.Type.String()
	}
	return "-"
}

func destination(fc *listenerv3.FilterChain) string {
	for _, f := range fc.GetFilters() {
		switch {
		case f.GetTypedConfig().MessageIs(&hcmv3.HttpConnectionManager{}):
			var h hcmv3.HttpConnectionManager
			if f.GetTypedConfig().UnmarshalTo(&h) == nil {
				if r := h.GetRds(); r != nil {
					return "Route: " + r.GetRouteConfigName()
				}
				return "Inline Route: " + h.GetRouteConfig().GetName()
			}
		case f.GetTypedConfig().MessageIs(&tcpv3.TcpProxy{}):
			var t tcpv3.TcpProxy
			if f.GetTypedConfig().UnmarshalTo(&t) == nil {
				return "Cluster: " + t.GetCluster()
			}
		}
	}
	return "-"
}

func routeMatch(r *routev3.Route) string {
	m := r.GetMatch()
	var s string
	switch {
	case m.GetPath() != "":
		s = m.GetPath()
	case m.GetPrefix() != "":
		s = m.GetPrefix() + "*"
	case m.GetSafeRegex() != nil:
		s = "regex " + m.GetSafeRegex().GetRegex()
	default:
		s = "/*"
	}
	for _, h := range m.GetHeaders() {
		s += " [" + h.GetName() + "]"
	}
	return s
}

func routeDest(r *routev3.Route) string {
	a := r.GetRoute()
	if a == nil {
		return "-"
	}
	if c := a.GetCluster(); c != "" {
		return c
	}
	var parts []string
	for _, wc := range a.GetWeightedClusters().GetClusters() {
		parts = append(parts, fmt.Sprintf("%s %d", wc.GetName(), wc.GetWeight().GetValue()))
	}
	return strings.Join(parts, ", ")
}
