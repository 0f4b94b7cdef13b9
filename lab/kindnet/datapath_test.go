package kindnet

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
)

// cniPluginDir is where the CNI plugins the conflist names are: kind's
// place, or Debian's.
func cniPluginDir() string {
	for _, d := range []string{"/opt/cni/bin", "/usr/lib/cni"} {
		if _, err := os.Stat(filepath.Join(d, "ptp")); err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "host-local")); err == nil {
			return d
		}
	}
	return ""
}

// inNS runs fn on a thread in the namespace h; the thread is thrown away
// afterwards. Processes fn starts are in that namespace too.
func inNS(h netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// newNS is an unnamed namespace with lo up, gone when the test ends.
func newNS(t *testing.T) netns.NsHandle {
	t.Helper()
	done := make(chan netns.NsHandle, 1)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread stays in the namespace and exits
		h, err := netns.New()
		if err != nil {
			errc <- err
			return
		}
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		if err != nil {
			_ = h.Close()
			errc <- err
			return
		}
		done <- h
	}()
	select {
	case err := <-errc:
		t.Fatalf("create a network namespace: %v", err)
	case h := <-done:
		t.Cleanup(func() { _ = h.Close() })
		return h
	}
	return 0
}

// newPodNS is a named namespace, as the runtime makes for a pod: the CNI
// plugin opens it by path.
func newPodNS(t *testing.T, name string) (string, netns.NsHandle) {
	t.Helper()
	_ = netns.DeleteNamed(name) // a leftover of an interrupted run
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread stays in the namespace and exits
		h, err := netns.NewNamed(name)
		if err == nil {
			_ = h.Close()
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	t.Cleanup(func() { _ = netns.DeleteNamed(name) })
	path := "/run/netns/" + name
	h, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return path, h
}

// ptpAdd runs the conflist's first plugin (ptp) as the runtime would for a
// pod, inside the node's namespace, and returns the pod's address.
// host-local keeps its state in dataDir instead of the conflist's, which
// is the host's.
func ptpAdd(t *testing.T, node netns.NsHandle, pluginDir string, conflist []byte, dataDir, podNS, id string) netip.Addr {
	t.Helper()
	var list struct {
		CNIVersion string           `json:"cniVersion"`
		Name       string           `json:"name"`
		Plugins    []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(conflist, &list); err != nil {
		t.Fatal(err)
	}
	conf := list.Plugins[0]
	conf["cniVersion"], conf["name"] = list.CNIVersion, list.Name
	conf["ipam"].(map[string]any)["dataDir"] = dataDir
	stdin, _ := json.Marshal(conf)
	var out []byte
	err := inNS(node, func() error {
		cmd := exec.Command(filepath.Join(pluginDir, "ptp"))
		cmd.Env = []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=" + id, "CNI_NETNS=" + podNS, "CNI_IFNAME=eth0", "CNI_PATH=" + pluginDir}
		cmd.Stdin = bytes.NewReader(stdin)
		var err error
		out, err = cmd.Output()
		return err
	})
	if err != nil {
		t.Fatalf("ptp ADD for %s: %v: %s", id, err, out)
	}
	var res struct {
		IPs []struct {
			Address string `json:"address"`
		} `json:"ips"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.IPs) == 0 {
		t.Fatalf("ptp ADD for %s: result %s: %v", id, out, err)
	}
	p, err := netip.ParsePrefix(res.IPs[0].Address)
	if err != nil {
		t.Fatal(err)
	}
	return p.Addr()
}

// listen accepts on addr inside ns and sends the source address of each
// connection on the returned channel.
func listen(t *testing.T, ns netns.NsHandle, addr string) <-chan netip.Addr {
	t.Helper()
	var ln net.Listener
	if err := inNS(ns, func() error {
		var err error
		ln, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	from := make(chan netip.Addr, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			from <- c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return from
}

func dial(ns netns.NsHandle, addr string) error {
	return inNS(ns, func() error {
		c, err := net.DialTimeout("tcp4", addr, 2*time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// TestDatapathInNetns builds two kind nodes out of namespaces, joined as
// kind's are by one network, gives each a pod through the real ptp and
// host-local plugins with the conflist the daemon writes, and runs the
// daemon's sync on both: pods then reach each other with their own
// addresses, and reach the other node masqueraded.
func TestDatapathInNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces of its own (run go test as root); the host's namespace is never touched")
	}
	pluginDir := cniPluginDir()
	if pluginDir == "" {
		t.Skip("needs the CNI plugins ptp and host-local in /opt/cni/bin or /usr/lib/cni (Debian: apt-get install containernetworking-plugins)")
	}
	nodeA, nodeB := newNS(t), newNS(t)
	nlA, err := netlink.NewHandleAt(nodeA)
	if err != nil {
		t.Fatal(err)
	}
	defer nlA.Close()
	nlB, err := netlink.NewHandleAt(nodeB)
	if err != nil {
		t.Fatal(err)
	}
	defer nlB.Close()
	// The nodes' network: one veth between them, eth0 on each side.
	if err := nlA.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(nodeB)}); err != nil {
		t.Fatalf("join the nodes: %v", err)
	}
	for _, n := range []struct {
		nl   *netlink.Handle
		addr string
	}{{nlA, "172.30.0.2/24"}, {nlB, "172.30.0.3/24"}} {
		eth, err := n.nl.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		a, _ := netlink.ParseAddr(n.addr)
		if err := n.nl.AddrAdd(eth, a); err != nil {
			t.Fatal(err)
		}
		if err := n.nl.LinkSetUp(eth); err != nil {
			t.Fatal(err)
		}
	}

	podSubnet := pfx("10.244.0.0/16")
	nodes := []*corev1.Node{
		node("node-a", []string{"10.244.0.0/24"}, "172.30.0.2"),
		node("node-b", []string{"10.244.1.0/24"}, "172.30.0.3"),
	}
	type kindNode struct {
		ns   netns.NsHandle
		nl   *netlink.Handle
		name string
		s    *syncer
		pod  netip.Addr
		pns  netns.NsHandle
	}
	ks := []*kindNode{{ns: nodeA, nl: nlA, name: "node-a"}, {ns: nodeB, nl: nlB, name: "node-b"}}
	for i, k := range ks {
		k.s = newSyncer(Options{NodeName: k.name, CNIConfDir: t.TempDir(), PodSubnet: podSubnet, Log: quietLog()}, k.nl)
		nft, err := nftables.New(nftables.WithNetNSFd(int(k.ns)))
		if err != nil {
			t.Fatal(err)
		}
		if err := masquerade(nft, podSubnet); err != nil {
			t.Fatal(err)
		}
		// The conflist alone first: the pods come before the routes.
		if err := k.s.syncConflist(nodes); err != nil {
			t.Fatal(err)
		}
		conflist, err := os.ReadFile(k.s.conflist)
		if err != nil {
			t.Fatal(err)
		}
		var podPath string
		podPath, k.pns = newPodNS(t, fmt.Sprintf("mlabkn-test-pod%d", i))
		k.pod = ptpAdd(t, k.ns, pluginDir, conflist, t.TempDir(), podPath, fmt.Sprintf("pod%d", i))
		if !pfx(nodes[i].Spec.PodCIDRs[0]).Contains(k.pod) {
			t.Fatalf("pod on %s got %s, outside the node's range", k.name, k.pod)
		}
	}
	a, b := ks[0], ks[1]
	fromPodB := listen(t, b.pns, netip.AddrPortFrom(b.pod, 8080).String())
	fromNodeB := listen(t, b.ns, "172.30.0.3:8081")

	if err := dial(a.pns, netip.AddrPortFrom(b.pod, 8080).String()); err == nil {
		t.Fatal("pod A reached pod B before any route between the nodes: the test proves nothing")
	}
	for _, k := range ks {
		if err := k.s.syncRoutes(nodes); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		what, to string
		from     <-chan netip.Addr
		want     netip.Addr
	}{
		{"pod A to pod B keeps pod A's address", netip.AddrPortFrom(b.pod, 8080).String(), fromPodB, a.pod},
		{"pod A to node B leaves masqueraded as node A", "172.30.0.3:8081", fromNodeB, addr("172.30.0.2")},
	} {
		if err := dial(a.pns, c.to); err != nil {
			t.Errorf("%s: %v", c.what, err)
			continue
		}
		if got := <-c.from; got != c.want {
			t.Errorf("%s: the other end saw %s, want %s", c.what, got, c.want)
		}
	}
}
