package kindnet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
)

// DefaultCNIConfDir is where kubelet's container runtime reads CNI
// configurations on a kind node.
const DefaultCNIConfDir = "/etc/cni/net.d"

// ConflistName is the file the daemon writes in the CNI directory. The
// runtime takes the first file by name; kind's nodes without their default
// CNI have no other.
const ConflistName = "10-meshlab.conflist"

// cniVersion of the conflist. ptp, host-local and portmap of both
// containernetworking/plugins v1.1.1 (Debian's, in the offline node image)
// and v1.9.1 (stock kindest/node) accept 0.3.0 through 1.0.0; 0.4.0 is
// also read by the CNI library of every containerd a kind node may have,
// and nothing of 1.0.0 is needed.
const cniVersion = "0.4.0"

// ipamDataDir keeps host-local's address reservations on a tmpfs: they must
// not outlive the node's containers, which a node container's restart ends.
const ipamDataDir = "/run/cni-ipam-state"

// errNoPodCIDR: the node has no pod range yet; kube-controller-manager
// allocates it shortly after the node registers.
var errNoPodCIDR = errors.New("no pod CIDR allocated yet")

type conflist struct {
	CNIVersion string `json:"cniVersion"`
	Name       string `json:"name"`
	Plugins    []any  `json:"plugins"`
}

type ptpConf struct {
	Type   string   `json:"type"`
	IPMasq bool     `json:"ipMasq"`
	MTU    int      `json:"mtu"`
	IPAM   ipamConf `json:"ipam"`
}

type ipamConf struct {
	Type    string        `json:"type"`
	DataDir string        `json:"dataDir"`
	Ranges  [][]rangeConf `json:"ranges"`
	Routes  []routeConf   `json:"routes"`
}

type rangeConf struct {
	Subnet string `json:"subnet"`
}

type routeConf struct {
	Dst string `json:"dst"`
}

type portmapConf struct {
	Type         string          `json:"type"`
	Capabilities map[string]bool `json:"capabilities"`
}

// podCIDRs are the node's pod ranges: spec.podCIDRs, or spec.podCIDR as
// clusters older than dual-stack set it.
func podCIDRs(n *corev1.Node) ([]netip.Prefix, error) {
	raw := n.Spec.PodCIDRs
	if len(raw) == 0 && n.Spec.PodCIDR != "" {
		raw = []string{n.Spec.PodCIDR}
	}
	var out []netip.Prefix
	for _, s := range raw {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("node %s: pod CIDR: %w", n.Name, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Conflist is the CNI configuration of node: ptp gives each pod a veth to
// the node and an address from host-local out of the node's pod ranges, the
// node routes between nodes itself (so no masquerading here: the daemon's
// nftables table does that for traffic leaving the pod subnet), and
// portmap serves hostPort. mtu is the node's uplink's.
func Conflist(node *corev1.Node, mtu int) ([]byte, error) {
	cidrs, err := podCIDRs(node)
	if err != nil {
		return nil, err
	}
	if len(cidrs) == 0 {
		return nil, fmt.Errorf("node %s: %w", node.Name, errNoPodCIDR)
	}
	ipam := ipamConf{Type: "host-local", DataDir: ipamDataDir}
	var v4, v6 bool
	for _, p := range cidrs {
		ipam.Ranges = append(ipam.Ranges, []rangeConf{{Subnet: p.String()}})
		v4 = v4 || p.Addr().Is4()
		v6 = v6 || !p.Addr().Is4()
	}
	if v4 {
		ipam.Routes = append(ipam.Routes, routeConf{Dst: "0.0.0.0/0"})
	}
	if v6 {
		ipam.Routes = append(ipam.Routes, routeConf{Dst: "::/0"})
	}
	c := conflist{
		CNIVersion: cniVersion,
		Name:       "meshlab",
		Plugins: []any{
			ptpConf{Type: "ptp", IPMasq: false, MTU: mtu, IPAM: ipam},
			portmapConf{Type: "portmap", Capabilities: map[string]bool{"portMappings": true}},
		},
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("node %s: encode the CNI conflist: %w", node.Name, err)
	}
	return append(b, '\n'), nil
}

// writeIfChanged puts content at path unless it is there already, and says
// whether it wrote. The runtime may read the directory at any moment, so the
// file appears whole: written beside it, then renamed over it.
func writeIfChanged(path string, content []byte) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, content) {
		return false, nil
	}
	dir := filepath.Dir(path)
	// A name the runtime ignores: it reads only .conf, .conflist and .json.
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // gone after the rename; a leftover otherwise
	if _, err := tmp.Write(content); err != nil {
		_ = tmp.Close()
		return false, fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		_ = tmp.Close()
		return false, fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	// On disk before it has the real name: a node that loses power must not
	// come back with an empty conflist.
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return false, fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	return true, nil
}
