// Package podnet owns the local runtime's pod networking, what a CNI bridge
// plugin does for kubelet: a host bridge, one named network namespace per
// pod joined to it by a veth pair, and the pod addresses handed out of the
// bridge's prefix.
package podnet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetnsDir is where named network namespaces are bind-mounted, the
// directory `ip netns` reads.
const NetnsDir = "/run/netns"

// aliasPrefix marks the host ends of the lab's veths (IFLA_IFALIAS), so
// Leftovers finds them even after their bridge or namespace is gone.
const aliasPrefix = "meshlab:"

// ErrNoPrivilege is returned (wrapped) by every function that needs to
// create namespaces or links when the process may not.
var ErrNoPrivilege = errors.New("meshlab's local runtime needs root (CAP_NET_ADMIN) to create network namespaces; run with sudo or use --runtime kind")

// Network is one lab's pod network.
type Network struct {
	Bridge      string       // host bridge, "mlab0"
	Prefix      netip.Prefix // pod addresses, 198.18.0.0/16
	Gateway     netip.Addr   // the bridge's address and the pods' default route, 198.18.0.1
	NetnsPrefix string       // namespace names are NetnsPrefix+pod name, "mlab-"
	// SysctlRecord is a file where EnsureBridge records the values of the
	// host sysctls it changes before it changes them, and Teardown puts
	// them back from: a file, so that the Teardown of another process (a
	// `down` after the runtime crashed) restores them too. "" leaves them
	// as EnsureBridge set them.
	SysctlRecord string
}

// Default is the local runtime's network.
func Default() Network {
	return Network{
		Bridge:      "mlab0",
		Prefix:      netip.MustParsePrefix("198.18.0.0/16"),
		Gateway:     netip.MustParseAddr("198.18.0.1"),
		NetnsPrefix: "mlab-",
	}
}

// Pod is a pod's network as AddPod made it.
type Pod struct {
	Name      string
	IP        netip.Addr
	NetnsPath string // /run/netns/<NetnsPrefix><Name>
	HostVeth  string // host end of the veth pair, on the bridge
}

// Check reports, with ErrNoPrivilege, whether this process may create
// network namespaces, links and nftables rules.
func Check() error {
	var hdr = unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("%w (capget: %v)", ErrNoPrivilege, err)
	}
	for _, c := range []struct {
		bit  uint
		name string
	}{{unix.CAP_NET_ADMIN, "CAP_NET_ADMIN"}, {unix.CAP_SYS_ADMIN, "CAP_SYS_ADMIN"}} {
		if data[c.bit/32].Effective&(1<<(c.bit%32)) == 0 {
			return fmt.Errorf("%w (missing %s)", ErrNoPrivilege, c.name)
		}
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return fmt.Errorf("kernel without network namespaces (/proc/self/ns/net): %w", err)
	}
	return nil
}

func (n Network) validate() error {
	switch {
	case n.Bridge == "" || len(n.Bridge) > 15:
		return fmt.Errorf("bridge name %q: want 1 to 15 characters", n.Bridge)
	case !n.Prefix.IsValid() || !n.Prefix.Addr().Is4():
		return fmt.Errorf("pod prefix %q: want an IPv4 prefix", n.Prefix)
	case !n.Prefix.Contains(n.Gateway):
		return fmt.Errorf("gateway %s is outside %s", n.Gateway, n.Prefix)
	case n.NetnsPrefix == "":
		return errors.New("empty netns prefix: Teardown would match every namespace")
	}
	return nil
}

// EnsureBridge creates the bridge if needed, gives it the gateway address,
// brings it up and turns on IPv4 forwarding. Calling it again changes
// nothing.
func (n Network) EnsureBridge(ctx context.Context) error {
	if err := n.ready(ctx); err != nil {
		return err
	}
	br, err := netlink.LinkByName(n.Bridge)
	if err != nil {
		if !isNotFound(err) {
			return fmt.Errorf("look up bridge %s: %w", n.Bridge, err)
		}
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.Bridge}}); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create bridge %s: %w", n.Bridge, err)
		}
		if br, err = netlink.LinkByName(n.Bridge); err != nil {
			return fmt.Errorf("look up bridge %s: %w", n.Bridge, err)
		}
	}
	if br.Type() != "bridge" {
		return fmt.Errorf("%s exists and is a %s, not a bridge", n.Bridge, br.Type())
	}
	if err := netlink.AddrReplace(br, n.addr(n.Gateway)); err != nil {
		return fmt.Errorf("address bridge %s with %s: %w", n.Bridge, n.Gateway, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("bring up bridge %s: %w", n.Bridge, err)
	}
	return n.setSysctls()
}

// AddPod creates the pod's namespace and wires it to the bridge: eth0 with
// ip, lo up, default route via the gateway. A pod of the same name is
// replaced. EnsureBridge must have run.
func (n Network) AddPod(ctx context.Context, name string, ip netip.Addr) (Pod, error) {
	if err := n.ready(ctx); err != nil {
		return Pod{}, err
	}
	if name == "" || strings.ContainsAny(name, "/\x00") {
		return Pod{}, fmt.Errorf("add pod %q: invalid name", name)
	}
	if !n.Prefix.Contains(ip) || ip == n.Gateway {
		return Pod{}, fmt.Errorf("add pod %q: address %s is not a pod address of %s", name, ip, n.Prefix)
	}
	br, err := netlink.LinkByName(n.Bridge)
	if err != nil {
		return Pod{}, fmt.Errorf("add pod %q: bridge %s: %w (run EnsureBridge first)", name, n.Bridge, err)
	}
	if err := n.DelPod(ctx, name); err != nil {
		return Pod{}, fmt.Errorf("add pod %q: remove the old one: %w", name, err)
	}
	pod := Pod{Name: name, IP: ip, NetnsPath: n.NetnsPath(name), HostVeth: n.hostVeth(name)}
	ns, err := newNamedNetns(n.NetnsPrefix + name)
	if err != nil {
		return Pod{}, fmt.Errorf("add pod %q: create netns: %w", name, err)
	}
	defer func() { _ = ns.Close() }() // the handle; the named netns stays
	if err := n.wire(pod, br, ns); err != nil {
		_ = n.DelPod(context.WithoutCancel(ctx), name)
		return Pod{}, fmt.Errorf("add pod %q: %w", name, err)
	}
	return pod, nil
}

func (n Network) wire(pod Pod, br netlink.Link, ns netns.NsHandle) error {
	// The peer is created inside the pod namespace, so it can be eth0 there
	// from the start.
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: pod.HostVeth, MasterIndex: br.Attrs().Index},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(ns),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s: %w", pod.HostVeth, err)
	}
	host, err := netlink.LinkByName(pod.HostVeth)
	if err != nil {
		return fmt.Errorf("look up veth %s: %w", pod.HostVeth, err)
	}
	if err := netlink.LinkSetAlias(host, aliasPrefix+n.NetnsPrefix+pod.Name); err != nil {
		return fmt.Errorf("label veth %s: %w", pod.HostVeth, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return fmt.Errorf("bring up veth %s: %w", pod.HostVeth, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", pod.NetnsPath, err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("look up lo in %s: %w", pod.NetnsPath, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring up lo in %s: %w", pod.NetnsPath, err)
	}
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("look up eth0 in %s: %w", pod.NetnsPath, err)
	}
	if err := h.AddrAdd(eth0, n.addr(pod.IP)); err != nil {
		return fmt.Errorf("address eth0 with %s: %w", pod.IP, err)
	}
	if err := h.LinkSetUp(eth0); err != nil {
		return fmt.Errorf("bring up eth0 in %s: %w", pod.NetnsPath, err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: n.Gateway.AsSlice()}); err != nil {
		return fmt.Errorf("default route via %s: %w", n.Gateway, err)
	}
	return nil
}

// DelPod removes the pod's veth and namespace. Removing a pod that does not
// exist is not an error. Processes still inside keep the namespace alive
// (without its name) until they exit.
func (n Network) DelPod(ctx context.Context, name string) error {
	if err := n.ready(ctx); err != nil {
		return err
	}
	if l, err := netlink.LinkByName(n.hostVeth(name)); err == nil {
		if err := netlink.LinkDel(l); err != nil && !isNotFound(err) {
			return fmt.Errorf("delete pod %q: veth %s: %w", name, l.Attrs().Name, err)
		}
	} else if !isNotFound(err) {
		return fmt.Errorf("delete pod %q: look up veth: %w", name, err)
	}
	if err := deleteNamedNetns(n.NetnsPath(name)); err != nil {
		return fmt.Errorf("delete pod %q: %w", name, err)
	}
	return nil
}

// Teardown removes every namespace with the prefix, the lab's veths, the
// bridge and a host nftables table named "meshlab", and puts back the host
// sysctls EnsureBridge changed (with a SysctlRecord).
func (n Network) Teardown(ctx context.Context) error {
	if err := n.ready(ctx); err != nil {
		return err
	}
	var errs []error
	names, err := n.netnsNames()
	if err != nil {
		errs = append(errs, err)
	}
	for _, ns := range names {
		if err := n.DelPod(ctx, strings.TrimPrefix(ns, n.NetnsPrefix)); err != nil {
			errs = append(errs, err)
		}
	}
	veths, err := n.veths()
	if err != nil {
		errs = append(errs, err)
	}
	for _, l := range veths {
		if err := netlink.LinkDel(l); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("delete veth %s: %w", l.Attrs().Name, err))
		}
	}
	if br, err := netlink.LinkByName(n.Bridge); err == nil {
		if err := netlink.LinkDel(br); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("delete bridge %s: %w", n.Bridge, err))
		}
	} else if !isNotFound(err) {
		errs = append(errs, fmt.Errorf("look up bridge %s: %w", n.Bridge, err))
	}
	if err := deleteHostTables(); err != nil {
		errs = append(errs, err)
	}
	if err := n.restoreSysctls(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tear down pod network: %w", err)
	}
	return nil
}

// Leftovers names everything of the lab still on the machine: namespaces
// with the prefix, the bridge, the lab's veths, and host nftables tables
// named "meshlab". Empty after a clean Teardown.
func (n Network) Leftovers() ([]string, error) {
	if err := n.validate(); err != nil {
		return nil, err
	}
	var out []string
	names, err := n.netnsNames()
	if err != nil {
		return nil, err
	}
	for _, ns := range names {
		out = append(out, "netns "+ns)
	}
	if _, err := netlink.LinkByName(n.Bridge); err == nil {
		out = append(out, "bridge "+n.Bridge)
	} else if !isNotFound(err) {
		return nil, fmt.Errorf("look up bridge %s: %w", n.Bridge, err)
	}
	veths, err := n.veths()
	if err != nil {
		return nil, err
	}
	for _, l := range veths {
		out = append(out, "veth "+l.Attrs().Name)
	}
	tables, err := hostTables()
	if err != nil {
		return nil, err
	}
	for _, t := range tables {
		out = append(out, "nftables table "+t)
	}
	return out, nil
}

// NetnsPath is where the pod's namespace is mounted.
func (n Network) NetnsPath(name string) string {
	return filepath.Join(NetnsDir, n.NetnsPrefix+name)
}

func (n Network) ready(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := n.validate(); err != nil {
		return fmt.Errorf("pod network: %w", err)
	}
	return Check()
}

func (n Network) addr(ip netip.Addr) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(n.Prefix.Bits(), 32)}}
}

// hostVeth names the host end after a hash of the namespace name: pod names
// are longer than the 15 bytes an interface name may have.
func (n Network) hostVeth(name string) string {
	sum := sha256.Sum256([]byte(n.NetnsPrefix + name))
	return "mlv" + hex.EncodeToString(sum[:])[:11]
}

func (n Network) netnsNames() ([]string, error) {
	entries, err := os.ReadDir(NetnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", NetnsDir, err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), n.NetnsPrefix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func (n Network) veths() ([]netlink.Link, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var out []netlink.Link
	for _, l := range links {
		if l.Type() == "veth" && strings.HasPrefix(l.Attrs().Alias, aliasPrefix+n.NetnsPrefix) {
			out = append(out, l)
		}
	}
	return out, nil
}

// newNamedNetns creates and mounts a namespace on a throwaway thread: the
// thread is left inside the new namespace, and a locked goroutine that
// exits takes its thread with it.
func newNamedNetns(name string) (netns.NsHandle, error) {
	type result struct {
		h   netns.NsHandle
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked on purpose
		h, err := netns.NewNamed(name)
		done <- result{h, err}
	}()
	r := <-done
	return r.h, r.err
}

func deleteNamedNetns(path string) error {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		// EINVAL: not a mount point, e.g. a half-made namespace file.
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// hostTableName is dataplane/capture's table; in the host namespace it
// would only be there by mistake or from the lab's port publishing.
const hostTableName = "meshlab"

func hostTables() ([]string, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("open nftables: %w", err)
	}
	tables, err := c.ListTables()
	if err != nil {
		return nil, fmt.Errorf("list nftables tables: %w", err)
	}
	var out []string
	for _, t := range tables {
		if t.Name == hostTableName {
			out = append(out, fmt.Sprintf("%s %s", familyName(t.Family), t.Name))
		}
	}
	return out, nil
}

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyBridge:
		return "bridge"
	case nftables.TableFamilyNetdev:
		return "netdev"
	case nftables.TableFamilyARP:
		return "arp"
	}
	return fmt.Sprintf("family-%d", f)
}

func deleteHostTables() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("open nftables: %w", err)
	}
	tables, err := c.ListTables()
	if err != nil {
		return fmt.Errorf("list nftables tables: %w", err)
	}
	found := false
	for _, t := range tables {
		if t.Name == hostTableName {
			c.DelTable(t)
			found = true
		}
	}
	if !found {
		return nil
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("delete nftables table %s: %w", hostTableName, err)
	}
	return nil
}

func isNotFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT)
}
