package capture

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// TableName is the nftables table (family ip) that holds every capture rule.
// One table per namespace keeps Install and Remove atomic: the whole table is
// replaced or deleted in one netlink batch.
const TableName = "meshlab"

// Options says where captured traffic goes and what escapes capture.
type Options struct {
	// ProxyUID is the uid the sidecar runs as; its sockets are never
	// captured, or the proxy would loop back into itself.
	ProxyUID uint32
	// OutboundPort receives the pod's outbound TCP (15001).
	OutboundPort uint16
	// InboundPort receives TCP arriving at the pod (15006).
	InboundPort uint16
	// DNSPort receives the pod's DNS queries over UDP and TCP (15053).
	DNSPort uint16
	// ExcludeInboundPorts reach their listeners directly: the proxy's own
	// admin, health and metrics ports.
	ExcludeInboundPorts []uint16
	// ExcludeOutboundCIDRs are destinations the pod reaches without the proxy.
	// Only IPv4 prefixes are accepted: the table is family ip.
	ExcludeOutboundCIDRs []netip.Prefix
}

// DefaultOptions returns Istio's ports and uid.
func DefaultOptions() Options {
	return Options{
		ProxyUID:            1337,
		OutboundPort:        15001,
		InboundPort:         15006,
		DNSPort:             15053,
		ExcludeInboundPorts: []uint16{15000, 15001, 15006, 15020, 15021, 15053, 15090},
	}
}

func (o Options) validate() error {
	for name, p := range map[string]uint16{"outbound": o.OutboundPort, "inbound": o.InboundPort, "dns": o.DNSPort} {
		if p == 0 {
			return fmt.Errorf("%s port is 0", name)
		}
	}
	for _, p := range o.ExcludeOutboundCIDRs {
		if !p.IsValid() || !p.Addr().Is4() {
			return fmt.Errorf("exclude outbound CIDR %q: only IPv4 prefixes are supported", p)
		}
	}
	return nil
}

// Install programs capture in the calling thread's network namespace,
// replacing any earlier meshlab table there. Callers that switch namespaces
// must hold the OS thread locked (see podnet.Do).
func Install(opts Options) error {
	if err := opts.validate(); err != nil {
		return fmt.Errorf("install capture: %w", err)
	}
	c, t, out, err := freshNATTable(TableName)
	if err != nil {
		return fmt.Errorf("install capture: %w", err)
	}
	pre := c.AddChain(&nftables.Chain{
		Name: "prerouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest,
	})
	for _, r := range outputRules(opts) {
		c.AddRule(&nftables.Rule{Table: t, Chain: out, Exprs: r})
	}
	for _, r := range preroutingRules(opts) {
		c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: r})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("install capture: write table %q: %w", TableName, nftablesHint(err))
	}
	return nil
}

// Remove deletes the capture table from the calling thread's network
// namespace. Removing when nothing is installed is not an error.
func Remove() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("remove capture: open nftables: %w", err)
	}
	t := &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}
	c.AddTable(t)
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("remove capture: delete table %q: %w", TableName, nftablesHint(err))
	}
	return nil
}

// Installed reports whether the calling thread's network namespace has the
// capture table.
func Installed() (bool, error) {
	c, err := nftables.New()
	if err != nil {
		return false, fmt.Errorf("check capture: open nftables: %w", err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return false, fmt.Errorf("check capture: list tables: %w", nftablesHint(err))
	}
	return slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == TableName }), nil
}

func nftablesHint(err error) error {
	switch {
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("%w (needs root or CAP_NET_ADMIN)", err)
	case errors.Is(err, unix.EPROTONOSUPPORT), errors.Is(err, unix.ENOENT), errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("%w (does the kernel have nf_tables, nft_nat and nft_redir?)", err)
	}
	return err
}

// outputRules capture what the pod's own processes send:
//
//	meta skuid ProxyUID return
//	udp dport 53 redirect to :DNSPort
//	tcp dport 53 redirect to :DNSPort
//	ip daddr 127.0.0.0/8 return
//	ip daddr <excluded> return
//	meta l4proto tcp redirect to :OutboundPort
func outputRules(o Options) [][]expr.Any {
	rules := [][]expr.Any{
		{
			&expr.Meta{Key: expr.MetaKeySKUID, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(o.ProxyUID)},
			verdict(expr.VerdictReturn),
		},
		// DNS is captured before the loopback exemption: hosts whose
		// resolv.conf names a loopback resolver (systemd-resolved's
		// 127.0.0.53) must still reach the sidecar's DNS, as in Istio.
		redirect(unix.IPPROTO_UDP, 53, o.DNSPort),
		redirect(unix.IPPROTO_TCP, 53, o.DNSPort),
		daddrIn(netip.MustParsePrefix("127.0.0.0/8")),
	}
	for _, p := range o.ExcludeOutboundCIDRs {
		rules = append(rules, daddrIn(p))
	}
	return append(rules, redirect(unix.IPPROTO_TCP, 0, o.OutboundPort))
}

// preroutingRules capture TCP arriving at the pod:
//
//	tcp dport <excluded> return
//	meta l4proto tcp redirect to :InboundPort
func preroutingRules(o Options) [][]expr.Any {
	var rules [][]expr.Any
	for _, p := range o.ExcludeInboundPorts {
		rules = append(rules, append(matchPort(unix.IPPROTO_TCP, p), verdict(expr.VerdictReturn)))
	}
	return append(rules, redirect(unix.IPPROTO_TCP, 0, o.InboundPort))
}

func verdict(k expr.VerdictKind) expr.Any { return &expr.Verdict{Kind: k} }

// daddrIn matches an IPv4 destination inside p and returns.
func daddrIn(p netip.Prefix) []expr.Any {
	p = p.Masked()
	m := make([]byte, 4)
	for i := 0; i < p.Bits(); i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	addr := p.Addr().As4()
	return []expr.Any{
		// ip daddr is at offset 16 of the network header.
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: m, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr[:]},
		verdict(expr.VerdictReturn),
	}
}

// matchPort matches the L4 protocol and, when port is not 0, the
// destination port.
func matchPort(proto byte, port uint16) []expr.Any {
	e := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
	}
	if port != 0 {
		// The destination port is bytes 2-3 of both the TCP and UDP header.
		e = append(e,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
		)
	}
	return e
}

func redirect(proto byte, port, to uint16) []expr.Any {
	return append(matchPort(proto, port),
		&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(to)},
		&expr.Redir{RegisterProtoMin: 1},
	)
}

// freshNATTable starts a batch that replaces table name (IPv4) with an
// empty one holding a NAT output chain: add-delete-add in one batch, so the
// delete never fails for a missing table and readers see either the old
// rules or the new ones once the batch is flushed.
func freshNATTable(name string) (*nftables.Conn, *nftables.Table, *nftables.Chain, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("open nftables: %w", err)
	}
	t := &nftables.Table{Name: name, Family: nftables.TableFamilyIPv4}
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	out := c.AddChain(&nftables.Chain{
		Name: "output", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest,
	})
	return c, t, out, nil
}
