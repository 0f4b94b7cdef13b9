package kindnet

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// testNS is a network namespace of the test's own, with a stand-in for a
// kind node's uplink: eth0 on 172.30.0.2/24, MTU 1400, the default route's.
type testNS struct {
	nl  *netlink.Handle
	nft *nftables.Conn
	eth int // eth0's index
}

func newTestNS(t *testing.T) testNS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace of its own (run go test as root); the host's namespace is never touched")
	}
	h := newNS(t)
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nl.Close)
	nft, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		t.Fatal(err)
	}
	// A veth pair with both ends here: kernels without the dummy driver
	// have veth, which kind needs anyway.
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0", MTU: 1400}, PeerName: "peer0"}
	if err := nl.LinkAdd(veth); err != nil {
		t.Fatalf("create eth0: %v", err)
	}
	eth, err := nl.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	peer, err := nl.LinkByName("peer0")
	if err == nil {
		err = nl.LinkSetUp(peer)
	}
	if err != nil {
		t.Fatalf("peer0 up: %v", err)
	}
	a, _ := netlink.ParseAddr("172.30.0.2/24")
	if err := nl.AddrAdd(eth, a); err != nil {
		t.Fatal(err)
	}
	if err := nl.LinkSetUp(eth); err != nil {
		t.Fatal(err)
	}
	// A node's default route, whose link's MTU the pods get.
	if err := nl.RouteAdd(&netlink.Route{Gw: net.ParseIP("172.30.0.1"), LinkIndex: eth.Attrs().Index}); err != nil {
		t.Fatal(err)
	}
	return testNS{nl: nl, nft: nft, eth: eth.Attrs().Index}
}

// routes are the namespace's main-table routes by destination.
func (n testNS) routes(t *testing.T) map[string]netlink.Route {
	t.Helper()
	rs, err := n.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]netlink.Route{}
	for _, r := range rs {
		if r.Dst != nil {
			out[r.Dst.String()] = r
		}
	}
	return out
}

// addForeign adds a route the daemon must never touch.
func (n testNS) addForeign(t *testing.T, dst, via string) {
	t.Helper()
	_, d, _ := net.ParseCIDR(dst)
	if err := n.nl.RouteAdd(&netlink.Route{Dst: d, Gw: net.ParseIP(via), LinkIndex: n.eth, Protocol: unix.RTPROT_STATIC}); err != nil {
		t.Fatal(err)
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// masqueradeRules are the rules of the daemon's chain, or an error when
// the table or chain is missing.
func (n testNS) masqueradeRules() ([]*nftables.Rule, error) {
	tables, err := n.nft.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(tables, func(t *nftables.Table) bool { return t.Name == TableName })
	if i < 0 {
		return nil, errors.New("no table ip " + TableName)
	}
	return n.nft.GetRules(tables[i], &nftables.Chain{Name: "postrouting", Table: tables[i]})
}

// isPodMasquerade says whether r is `ip saddr 10.244.0.0/16 ip daddr !=
// 10.244.0.0/16 masquerade`.
func isPodMasquerade(r *nftables.Rule) bool {
	var cmps []*expr.Cmp
	masq := false
	for _, e := range r.Exprs {
		switch e := e.(type) {
		case *expr.Cmp:
			cmps = append(cmps, e)
		case *expr.Masq:
			masq = true
		}
	}
	net := []byte{10, 244, 0, 0}
	return masq && len(cmps) == 2 &&
		cmps[0].Op == expr.CmpOpEq && bytes.Equal(cmps[0].Data, net) &&
		cmps[1].Op == expr.CmpOpNeq && bytes.Equal(cmps[1].Data, net)
}

func TestSyncInNetns(t *testing.T) {
	n := newTestNS(t)
	n.addForeign(t, "10.99.0.0/24", "172.30.0.9")
	n.addForeign(t, "10.244.7.0/24", "172.30.0.9") // holds node w7's range

	podSubnet := pfx("10.244.0.0/16")
	for i := range 2 { // a restart replaces the table, never doubles it
		if err := masquerade(n.nft, podSubnet); err != nil {
			t.Fatalf("masquerade #%d: %v", i+1, err)
		}
	}
	rules, err := n.masqueradeRules()
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 1 || !isPodMasquerade(rules[0]) {
		t.Fatalf("chain postrouting of ip %s has %d rules, want the one masquerade of traffic leaving 10.244.0.0/16", TableName, len(rules))
	}

	s := newSyncer(Options{NodeName: "self", CNIConfDir: t.TempDir(), PodSubnet: podSubnet, Log: quietLog()}, n.nl)
	nodes := []*corev1.Node{
		node("self", []string{"10.244.0.0/24"}, "172.30.0.2"),
		node("w1", []string{"10.244.1.0/24"}, "172.30.0.3"),
		node("far", []string{"10.244.2.0/24"}, "192.168.77.3"), // on no connected subnet
		node("w7", []string{"10.244.7.0/24"}, "172.30.0.7"),
	}
	if err := s.sync(nodes); err != nil {
		t.Fatalf("first pass: %v", err)
	}
	rs := n.routes(t)
	w1, ok := rs["10.244.1.0/24"]
	switch {
	case !ok:
		t.Fatalf("no route to w1's pods; routes: %v", rs)
	case !w1.Gw.Equal(net.ParseIP("172.30.0.3")) || w1.Protocol != RouteProtocol || w1.LinkIndex != n.eth:
		t.Errorf("route to w1's pods = via %s dev %d proto %d; want via 172.30.0.3 dev %d proto %d", w1.Gw, w1.LinkIndex, w1.Protocol, n.eth, RouteProtocol)
	}
	if r, ok := rs["10.244.2.0/24"]; ok {
		t.Errorf("a route to the pods of a node on no connected subnet was added: %v", r)
	}
	if r := rs["10.244.7.0/24"]; r.Protocol != unix.RTPROT_STATIC || !r.Gw.Equal(net.ParseIP("172.30.0.9")) {
		t.Errorf("a foreign route holding a node's range was changed: %v", r)
	}
	b, err := os.ReadFile(s.conflist)
	if err != nil {
		t.Fatalf("no conflist after the first pass: %v", err)
	}
	if want, _ := Conflist(nodes[0], 1400); !bytes.Equal(b, want) {
		t.Errorf("conflist (MTU from eth0, the default route's link, is expected):\n%s", b)
	}

	// w1 leaves the cluster.
	if err := s.sync(slices.Delete(nodes, 1, 2)); err != nil {
		t.Fatalf("second pass: %v", err)
	}
	rs = n.routes(t)
	if r, ok := rs["10.244.1.0/24"]; ok {
		t.Errorf("the route to the pods of a node that left is still there: %v", r)
	}
	for _, dst := range []string{"10.99.0.0/24", "10.244.7.0/24", "172.30.0.0/24"} {
		if _, ok := rs[dst]; !ok {
			t.Errorf("route %s, not the daemon's, was removed", dst)
		}
	}
}

// TestRunInNetns runs the daemon's loop against a fake API server: it
// follows nodes as they come, change and go, and stops when told.
func TestRunInNetns(t *testing.T) {
	n := newTestNS(t)
	self := node("self", nil, "172.30.0.2") // no range yet
	kube := fake.NewClientset(self, node("w1", []string{"10.244.1.0/24"}, "172.30.0.3"))
	dir := t.TempDir()
	o := Options{NodeName: "self", Kube: kube, CNIConfDir: dir, PodSubnet: pfx("10.244.0.0/16"), Log: quietLog()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, o, n.nl, n.nft) }()
	t.Cleanup(func() {
		cancel()
		<-done // the loop is the test's: it ends before the namespace does
	})

	eventually := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			select {
			case err := <-done:
				t.Fatalf("run ended early while waiting for %s: %v", what, err)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	hasRoute := func(dst string) func() bool {
		return func() bool { _, ok := n.routes(t)[dst]; return ok }
	}
	conflist := filepath.Join(dir, ConflistName)

	eventually("the route to w1's pods", hasRoute("10.244.1.0/24"))
	if _, err := os.Stat(conflist); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a conflist before the node has a pod range: %v", err)
	}
	if rules, err := n.masqueradeRules(); err != nil || len(rules) != 1 {
		t.Fatalf("masquerade rules = %d, %v; want 1", len(rules), err)
	}

	// kube-controller-manager allocates this node's range.
	self.Spec.PodCIDRs, self.Spec.PodCIDR = []string{"10.244.0.0/24"}, "10.244.0.0/24"
	ctx0 := context.Background()
	if _, err := kube.CoreV1().Nodes().Update(ctx0, self, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually("the conflist", func() bool { _, err := os.Stat(conflist); return err == nil })

	// A worker joins, and w1 leaves.
	if _, err := kube.CoreV1().Nodes().Create(ctx0, node("w2", []string{"10.244.2.0/24"}, "172.30.0.4"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually("the route to w2's pods", hasRoute("10.244.2.0/24"))
	if err := kube.CoreV1().Nodes().Delete(ctx0, "w1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually("the route to w1's pods removed", func() bool { return !hasRoute("10.244.1.0/24")() })

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop after its context ended")
	}
	done <- nil // for the cleanup
}
