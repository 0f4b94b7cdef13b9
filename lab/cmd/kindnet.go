package cmd

import (
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/urfave/cli/v2"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshlab/meshlab/lab/kindnet"
)

func kindnetFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "pod-subnet", Required: true, Usage: "the cluster's pod `CIDR` (kubeadm's podSubnet; every node's podCIDRs lie in it): traffic from it to anywhere outside it is masqueraded"},
		&cli.StringFlag{Name: "node-name", EnvVars: []string{"NODE_NAME"}, Usage: "the `NODE` this runs on (the DaemonSet sets $NODE_NAME from spec.nodeName)"},
		&cli.StringFlag{Name: "cni-conf-dir", Value: kindnet.DefaultCNIConfDir, Usage: "`DIR` the container runtime reads CNI configurations from; " + kindnet.ConflistName + " goes there"},
	}
}

// KindNet is the hidden `meshlab kindnet`: the pod network daemon of a kind
// lab, run by DaemonSet meshlab-kindnet on every node.
func KindNet() *cli.Command {
	return &cli.Command{
		Name:   "kindnet",
		Usage:  "run a kind lab's pod network on this node (DaemonSet meshlab-kindnet in kube-system runs it)",
		Hidden: true,
		Description: `kind's own CNI (kindnetd) cannot be had offline, so meshlab creates kind
clusters without it and runs this on every node, in the node's network
namespace (hostNetwork, with NET_ADMIN and NET_RAW):

  - once the node has its podCIDRs, it writes ` + kindnet.ConflistName + ` in
    --cni-conf-dir: ptp veths, host-local addresses from the node's range,
    portmap for hostPort; kubelet then turns the node Ready;
  - it routes every other node's pod range through that node's InternalIP
    (routes marked proto ` + fmt.Sprint(int(kindnet.RouteProtocol)) + `, removed when their node goes);
  - it masquerades traffic from --pod-subnet to anywhere outside it
    (nftables table ip ` + kindnet.TableName + `).

It talks to the API server with the pod's service account and stops on
SIGTERM, leaving the configuration, routes and table for its successor.`,
		Flags: kindnetFlags(),
		Action: func(c *cli.Context) error {
			o, err := kindnetOptions(c)
			if err != nil {
				return err
			}
			cfg, err := rest.InClusterConfig()
			if err != nil {
				return fmt.Errorf("kindnet runs in a cluster's pod: %w", err)
			}
			if o.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
				return fmt.Errorf("kindnet: API client: %w", err)
			}
			return kindnet.Run(c.Context, o)
		},
	}
}

// kindnetOptions reads the flags; the API client is left to the caller.
func kindnetOptions(c *cli.Context) (kindnet.Options, error) {
	p, err := netip.ParsePrefix(c.String("pod-subnet"))
	if err != nil || !p.Addr().Is4() {
		return kindnet.Options{}, cli.Exit(fmt.Sprintf("--pod-subnet %q: want an IPv4 CIDR such as 10.244.0.0/16", c.String("pod-subnet")), 2)
	}
	o := kindnet.Options{
		NodeName:   c.String("node-name"),
		CNIConfDir: c.String("cni-conf-dir"),
		PodSubnet:  p.Masked(),
		Log:        slog.New(slog.NewTextHandler(c.App.ErrWriter, nil)),
	}
	if o.NodeName == "" {
		return o, cli.Exit("--node-name: want the node this runs on (or $NODE_NAME)", 2)
	}
	return o, nil
}
