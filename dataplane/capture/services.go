package capture

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// ServicesTableName is the nftables table (family ip) of InstallServices.
const ServicesTableName = "meshlab-services"

// ServiceNAT is one port of a ClusterIP Service as kube-proxy programs it:
// connections to VIP go to one of Endpoints, picked at random.
type ServiceNAT struct {
	VIP netip.AddrPort
	// Protocol is unix.IPPROTO_TCP or unix.IPPROTO_UDP.
	Protocol byte
	// Endpoints are the ready pods' addresses and target ports; none
	// refuses connections, as kube-proxy does.
	Endpoints []netip.AddrPort
}

// InstallServices makes the calling thread's network namespace reach
// Service VIPs without a sidecar, what kube-proxy does for a pod outside
// the mesh: each new connection to a VIP is DNATed to one endpoint,
// uniformly at random, and conntrack keeps it there. It replaces the
// namespace's earlier services table in one batch. Callers must hold the
// thread locked in the pod's namespace (podnet.Do).
//
//	table ip meshlab-services
//	  chain output (nat, dstnat):
//	    ip daddr VIP <proto> dport P numgen random mod N == 0 dnat to ep[0]
//	    ip daddr VIP <proto> dport P numgen random mod N-1 == 0 dnat to ep[1]
//	    …
//	    ip daddr VIP <proto> dport P dnat to ep[N-1]
//	    ip daddr VIP <proto> dport P reject     (no endpoints)
func InstallServices(svcs []ServiceNAT) error {
	for _, s := range svcs {
		if !s.VIP.Addr().Is4() || (s.Protocol != unix.IPPROTO_TCP && s.Protocol != unix.IPPROTO_UDP) {
			return fmt.Errorf("install services: %s (protocol %d): want an IPv4 address and TCP or UDP", s.VIP, s.Protocol)
		}
		for _, ep := range s.Endpoints {
			if !ep.Addr().Is4() || ep.Port() == 0 {
				return fmt.Errorf("install services: endpoint %s of %s: want an IPv4 address and port", ep, s.VIP)
			}
		}
	}
	if err := notInitNetns(); err != nil {
		return fmt.Errorf("install services: %w", err)
	}
	c, t, out, err := freshNATTable(ServicesTableName)
	if err != nil {
		return fmt.Errorf("install services: %w", err)
	}
	for _, s := range svcs {
		for _, r := range serviceRules(s) {
			c.AddRule(&nftables.Rule{Table: t, Chain: out, Exprs: r})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("install services: write table %q: %w", ServicesTableName, nftablesHint(err))
	}
	return nil
}

// serviceRules picks endpoint i with probability 1/(N-i) among those not
// picked before it: uniform over all N, as kube-proxy's iptables mode does.
func serviceRules(s ServiceNAT) [][]expr.Any {
	vip := s.VIP.Addr().As4()
	match := func() []expr.Any {
		return append([]expr.Any{
			// ip daddr is at offset 16 of the network header.
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: vip[:]},
		}, matchPort(s.Protocol, s.VIP.Port())...)
	}
	if len(s.Endpoints) == 0 {
		reject := &expr.Reject{Type: unix.NFT_REJECT_TCP_RST}
		if s.Protocol == unix.IPPROTO_UDP {
			reject = &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: icmpPortUnreachable}
		}
		return [][]expr.Any{append(match(), reject)}
	}
	var rules [][]expr.Any
	for i, ep := range s.Endpoints {
		r := match()
		if left := len(s.Endpoints) - i; left > 1 {
			r = append(r,
				&expr.Numgen{Register: 1, Modulus: uint32(left), Type: unix.NFT_NG_RANDOM},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
			)
		}
		a := ep.Addr().As4()
		rules = append(rules, append(r,
			&expr.Immediate{Register: 1, Data: a[:]},
			&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(ep.Port())},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
		))
	}
	return rules
}

// icmpPortUnreachable is ICMP destination unreachable's code 3, what a
// UDP client sees as "connection refused".
const icmpPortUnreachable = 3
