package capture

import (
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// DNSTableName is the nftables table (family ip) of InstallDNS: apart from
// the sidecar's, so a pod without a sidecar has only this one.
const DNSTableName = "meshlab-dns"

// routeLocalnet lets packets with a loopback address leave and arrive on
// eth0. A query to a loopback resolver (systemd-resolved's 127.0.0.53)
// keeps its loopback source after DNAT; this namespace must route it out
// and take its answer, addressed back to 127.0.0.1 after un-NAT, in.
const routeLocalnet = "/proc/sys/net/ipv4/conf/all/route_localnet"

// InstallDNS sends every DNS query of the calling thread's network
// namespace, UDP and TCP to port 53 whatever the resolver, to `to`: what
// a pod's resolv.conf pointing at the cluster DNS does in Kubernetes, for a
// pod that shares the host's /etc/resolv.conf. It replaces any earlier
// table of its own there. Callers must hold the thread locked in the pod's
// namespace (podnet.Do); it refuses to run in the init process's
// namespace, whose DNS it would take over.
//
// In the namespace it writes:
//
//	sysctl net.ipv4.conf.all.route_localnet=1
//	table ip meshlab-dns
//	  chain output      (nat, dstnat): udp dport 53 dnat to <to>; tcp dport 53 dnat to <to>
//	  chain postrouting (nat, srcnat): ip saddr 127.0.0.0/8 ip daddr <to addr> masquerade
func InstallDNS(to netip.AddrPort) error {
	if !to.Addr().Is4() || to.Addr().IsLoopback() || to.Addr().IsUnspecified() || to.Port() == 0 {
		return fmt.Errorf("install dns capture: %s is not an IPv4 address and port off this namespace's loopback", to)
	}
	if err := notInitNetns(); err != nil {
		return fmt.Errorf("install dns capture: %w", err)
	}
	// Per network namespace: /proc/sys/net is the calling thread's.
	if err := os.WriteFile(routeLocalnet, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("install dns capture: set route_localnet in the pod's namespace: %w", err)
	}
	c, t, out, err := freshNATTable(DNSTableName)
	if err != nil {
		return fmt.Errorf("install dns capture: %w", err)
	}
	post := c.AddChain(&nftables.Chain{
		Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource,
	})
	for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
		c.AddRule(&nftables.Rule{Table: t, Chain: out, Exprs: dnat(proto, 53, to)})
	}
	c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: masqueradeLoopbackTo(to.Addr())})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("install dns capture: write table %q: %w", DNSTableName, nftablesHint(err))
	}
	return nil
}

// startNetns is the network namespace this process started in (package
// initialisation runs before any thread can have switched), the host's for
// the lab's runtime.
var startNetns, startNetnsErr = netnsOf("/proc/thread-self/ns/net")

// notInitNetns fails when the calling thread is in the network namespace
// this process started in, or in pid 1's (when it may be read).
func notInitNetns() error {
	if startNetnsErr != nil {
		return fmt.Errorf("which network namespace: %w", startNetnsErr)
	}
	self, err := netnsOf("/proc/thread-self/ns/net")
	if err != nil {
		return fmt.Errorf("which network namespace: %w", err)
	}
	if self == startNetns {
		return errors.New("the calling thread is in the network namespace this process started in, the host's; run it inside the pod's (podnet.Do)")
	}
	if host, err := netnsOf("/proc/1/ns/net"); err == nil && self == host {
		return errors.New("the calling thread is in the host's network namespace; run it inside the pod's (podnet.Do)")
	}
	return nil
}

type netnsID struct{ dev, ino uint64 }

func netnsOf(path string) (netnsID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return netnsID{}, fmt.Errorf("stat %s: %w", path, err)
	}
	return netnsID{st.Dev, st.Ino}, nil
}

// dnat rewrites the destination of proto packets to port to `to`.
func dnat(proto byte, port uint16, to netip.AddrPort) []expr.Any {
	a := to.Addr().As4()
	return append(matchPort(proto, port),
		&expr.Immediate{Register: 1, Data: a[:]},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(to.Port())},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	)
}

// masqueradeLoopbackTo gives packets from a loopback source to addr the
// outgoing interface's address, so that the answer comes back to the pod.
func masqueradeLoopbackTo(addr netip.Addr) []expr.Any {
	a := addr.As4()
	return []expr.Any{
		// ip saddr is at offset 12 of the network header, ip daddr at 16.
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{127}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]},
		&expr.Masq{},
	}
}
