package kindnet

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// RouteProtocol marks the routes the daemon installs (rtm_protocol, as
// `ip route show proto 109` lists them): it removes only routes with this
// mark, and never touches another. 109 is "m", and no routing daemon
// iproute2 knows uses it.
const RouteProtocol = netlink.RouteProtocol(109)

// route is one route to another node's pods.
type route struct {
	Node string
	Dst  netip.Prefix // the node's pod range
	Via  netip.Addr   // the node's InternalIP
}

// nodeIPs are a node's first InternalIP of each family.
func nodeIPs(n *corev1.Node) (v4, v6 netip.Addr) {
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		ip, err := netip.ParseAddr(a.Address)
		if err != nil {
			continue
		}
		ip = ip.Unmap()
		switch {
		case ip.Is4() && !v4.IsValid():
			v4 = ip
		case ip.Is6() && !v6.IsValid():
			v6 = ip
		}
	}
	return v4, v6
}

// wantedRoutes are the routes to every other node's pod ranges through its
// InternalIP of the same family. Nodes without a pod range or an address
// are left out (they get routes once they have both), and so are ranges of a
// family the node has no address of.
func wantedRoutes(self string, nodes []*corev1.Node) []route {
	var out []route
	for _, n := range nodes {
		if n.Name == self {
			continue
		}
		cidrs, err := podCIDRs(n)
		if err != nil {
			continue
		}
		v4, v6 := nodeIPs(n)
		for _, p := range cidrs {
			via := v4
			if !p.Addr().Is4() {
				via = v6
			}
			if via.IsValid() {
				out = append(out, route{Node: n.Name, Dst: p, Via: via})
			}
		}
	}
	slices.SortFunc(out, func(a, b route) int {
		return cmp.Or(a.Dst.Addr().Compare(b.Dst.Addr()), cmp.Compare(a.Dst.Bits(), b.Dst.Bits()))
	})
	return out
}

// localNet is a subnet this host is directly on.
type localNet struct {
	Prefix    netip.Prefix // the address with its prefix length
	LinkIndex int
}

// onLink finds the link whose subnet holds via: a route through an address
// that is not on a directly connected subnet would need a gateway the
// daemon knows nothing about, so there is none.
func onLink(via netip.Addr, nets []localNet) (int, bool) {
	for _, n := range nets {
		// A host prefix (ptp's gateway address on a pod's veth, or lo's)
		// is no subnet; via being this host's own address is no route.
		if n.Prefix.IsSingleIP() || n.Prefix.Addr() == via {
			continue
		}
		if n.Prefix.Contains(via) {
			return n.LinkIndex, true
		}
	}
	return 0, false
}

// kernelRoute is a route of the main table as the plan compares them.
type kernelRoute struct {
	Dst       netip.Prefix
	Via       netip.Addr
	LinkIndex int
}

// planRoutes compares the routes wanted with those the daemon has (ours)
// and with the destinations others hold in the main table (foreign): what
// to replace (missing or different), what to delete (ours, no longer
// wanted) and what is left alone because another owns its destination.
func planRoutes(want, ours []kernelRoute, foreign []netip.Prefix) (replace, remove, conflict []kernelRoute) {
	have := map[netip.Prefix]kernelRoute{}
	for _, r := range ours {
		have[r.Dst] = r
	}
	wanted := map[netip.Prefix]bool{}
	for _, w := range want {
		wanted[w.Dst] = true
		switch {
		case slices.Contains(foreign, w.Dst):
			conflict = append(conflict, w)
		case have[w.Dst] != w:
			replace = append(replace, w)
		}
	}
	for _, r := range ours {
		if !wanted[r.Dst] {
			remove = append(remove, r)
		}
	}
	return replace, remove, conflict
}

func toIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func fromIPNet(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones).Masked(), true
}

func fromIP(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

// localNets are the subnets of this namespace's addresses.
func localNets(h *netlink.Handle) ([]localNet, error) {
	addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	var out []localNet
	for _, a := range addrs {
		p, ok := fromIPNet(a.IPNet)
		if !ok {
			continue
		}
		out = append(out, localNet{Prefix: netip.PrefixFrom(fromIP(a.IP), p.Bits()), LinkIndex: a.LinkIndex})
	}
	return out, nil
}

// mainRoutes splits the main table's routes into the daemon's and the
// destinations of all others.
func mainRoutes(h *netlink.Handle) (ours []kernelRoute, foreign []netip.Prefix, err error) {
	rs, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, nil, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range rs {
		dst, ok := fromIPNet(r.Dst)
		if !ok {
			continue // a default route: never a node's pod range
		}
		if r.Protocol == RouteProtocol {
			ours = append(ours, kernelRoute{Dst: dst, Via: fromIP(r.Gw), LinkIndex: r.LinkIndex})
		} else {
			foreign = append(foreign, dst)
		}
	}
	return ours, foreign, nil
}

// syncRoutes makes the main table's routes to other nodes' pods what nodes
// say, and logs each change.
func (s *syncer) syncRoutes(nodes []*corev1.Node) error {
	nets, err := localNets(s.nl)
	if err != nil {
		return err
	}
	var want []kernelRoute
	names := map[netip.Prefix]string{}
	for _, r := range wantedRoutes(s.self, nodes) {
		idx, ok := onLink(r.Via, nets)
		if !ok {
			if s.unreachable[r.Dst] != r.Via {
				s.log.Warn("no route to a node's pods: its InternalIP is on no directly connected subnet",
					"node", r.Node, "podCIDR", r.Dst, "internalIP", r.Via)
			}
			s.unreachable[r.Dst] = r.Via
			continue
		}
		delete(s.unreachable, r.Dst)
		want = append(want, kernelRoute{Dst: r.Dst, Via: r.Via, LinkIndex: idx})
		names[r.Dst] = r.Node
	}
	ours, foreign, err := mainRoutes(s.nl)
	if err != nil {
		return err
	}
	replace, remove, conflict := planRoutes(want, ours, foreign)
	var errs []error
	for _, r := range conflict {
		if !s.conflicts[r.Dst] {
			s.log.Warn("not routing a node's pods: another route has their range", "node", names[r.Dst], "podCIDR", r.Dst)
		}
		s.conflicts[r.Dst] = true
	}
	for dst := range s.conflicts {
		if !slices.ContainsFunc(conflict, func(r kernelRoute) bool { return r.Dst == dst }) {
			delete(s.conflicts, dst)
		}
	}
	for _, r := range replace {
		nr := &netlink.Route{
			Dst: toIPNet(r.Dst), Gw: r.Via.AsSlice(), LinkIndex: r.LinkIndex,
			Table: unix.RT_TABLE_MAIN, Protocol: RouteProtocol, Scope: netlink.SCOPE_UNIVERSE,
		}
		if err := s.nl.RouteReplace(nr); err != nil {
			errs = append(errs, fmt.Errorf("route %s via %s (node %s): %w", r.Dst, r.Via, names[r.Dst], err))
			continue
		}
		s.log.Info("route set", "node", names[r.Dst], "podCIDR", r.Dst, "via", r.Via)
	}
	for _, r := range remove {
		nr := &netlink.Route{Dst: toIPNet(r.Dst), Gw: r.Via.AsSlice(), LinkIndex: r.LinkIndex, Table: unix.RT_TABLE_MAIN, Protocol: RouteProtocol}
		if err := s.nl.RouteDel(nr); err != nil && !isNoSuchRoute(err) {
			errs = append(errs, fmt.Errorf("delete route %s via %s: %w", r.Dst, r.Via, err))
			continue
		}
		s.log.Info("route removed: its node is gone or has another range", "podCIDR", r.Dst, "via", r.Via)
	}
	return joinErrs("routes", errs)
}

func isNoSuchRoute(err error) bool { return errors.Is(err, unix.ESRCH) }
