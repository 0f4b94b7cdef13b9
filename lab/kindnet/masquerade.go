package kindnet

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// TableName is the daemon's nftables table (family ip). It owns it whole.
const TableName = "meshlab-kindnet"

// masquerade replaces the daemon's table with one rule: packets from the pod
// subnet to anywhere outside it leave with the node's address, so pods reach
// beyond the cluster (other nodes, the host, the world) and the answers find
// their way back; traffic between pods keeps its addresses. Delete and add
// go in one batch, so there is no moment without the rule, and a second run
// leaves the same table.
func masquerade(c *nftables.Conn, podSubnet netip.Prefix) error {
	if !podSubnet.IsValid() || !podSubnet.Addr().Is4() {
		return fmt.Errorf("masquerade: pod subnet %q: want an IPv4 prefix", podSubnet)
	}
	t := &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}
	// Adding before deleting: deleting a table that is not there fails
	// the whole batch.
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	ch := c.AddChain(&nftables.Chain{
		Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource,
	})
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: masqueradeExprs(podSubnet)})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("masquerade: write nftables table ip %s: %w", TableName, err)
	}
	return nil
}

// ipv4 header offsets of the source and destination address.
const (
	offSaddr = 12
	offDaddr = 16
)

// masqueradeExprs is `ip saddr P ip daddr != P masquerade`.
func masqueradeExprs(p netip.Prefix) []expr.Any {
	p = p.Masked()
	net4 := p.Addr().As4()
	mask := prefixMask(p)
	match := func(off uint32, op expr.CmpOp) []expr.Any {
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
			&expr.Cmp{Op: op, Register: 1, Data: net4[:]},
		}
	}
	out := match(offSaddr, expr.CmpOpEq)
	out = append(out, match(offDaddr, expr.CmpOpNeq)...)
	return append(out, &expr.Masq{})
}

func prefixMask(p netip.Prefix) []byte {
	m := make([]byte, 4)
	for i := 0; i < p.Bits(); i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}
