// Package kindnet owns meshlab's pod network for kind clusters, which meshlab
// creates without kind's own CNI (its kindnetd image cannot be had offline):
// the objects that run it (Objects, Install) and the daemon every node runs
// (Run). The daemon writes the node's CNI configuration (ptp veths with
// host-local addresses out of the node's podCIDRs), routes each other
// node's pod range through that node's InternalIP (all kind nodes share one
// bridge network, so no encapsulation is needed), and masquerades traffic
// that leaves the pod subnet.
package kindnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Options are the daemon's parameters.
type Options struct {
	NodeName string // the node it runs on
	Kube     kubernetes.Interface
	// CNIConfDir is where the conflist goes; DefaultCNIConfDir when "".
	CNIConfDir string
	// PodSubnet is the cluster's pod range (kubeadm's podSubnet), every
	// node's podCIDRs inside it. IPv4.
	PodSubnet netip.Prefix
	Log       *slog.Logger // slog.Default() when nil
}

// resync is how often the daemon goes over the nodes without being told of
// a change: it puts back a route someone deleted.
const resync = 30 * time.Second

// retryAfter is how soon a failed pass is tried again.
const retryAfter = 5 * time.Second

// Run is the daemon: it installs the masquerade rule, then follows the
// cluster's nodes and keeps this node's conflist and its routes to the other
// nodes' pods in step with them, until ctx ends. It programs the network
// namespace it runs in (the node's: its pod is hostNetwork).
func Run(ctx context.Context, o Options) error {
	switch {
	case o.NodeName == "":
		return errors.New("kindnet: no node name")
	case o.Kube == nil:
		return errors.New("kindnet: no API client")
	case !o.PodSubnet.IsValid() || !o.PodSubnet.Addr().Is4():
		return fmt.Errorf("kindnet: pod subnet %q: want an IPv4 prefix", o.PodSubnet)
	}
	if o.CNIConfDir == "" {
		o.CNIConfDir = DefaultCNIConfDir
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	nl, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("kindnet: open netlink: %w", err)
	}
	defer nl.Close()
	// Not a lasting connection: each batch opens its own socket, from this
	// process's namespace.
	nft, err := nftables.New()
	if err != nil {
		return fmt.Errorf("kindnet: open nftables: %w", err)
	}
	return run(ctx, o, nl, nft)
}

// run is Run on the given namespace's handles, so a test can point it at
// a namespace of its own.
func run(ctx context.Context, o Options, nl *netlink.Handle, nft *nftables.Conn) error {
	if err := masquerade(nft, o.PodSubnet); err != nil {
		return fmt.Errorf("kindnet: %w", err)
	}
	o.Log.Info("masquerading traffic that leaves the pod subnet", "podSubnet", o.PodSubnet, "table", "ip "+TableName)

	s := newSyncer(o, nl)
	factory := informers.NewSharedInformerFactory(o.Kube, resync)
	nodes := factory.Core().V1().Nodes()
	// One pending pass stands for any number of changes: a pass reads
	// every node afresh.
	kick := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	if _, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    poke,
		UpdateFunc: func(_, n any) { poke(n) },
		DeleteFunc: poke,
	}); err != nil {
		return fmt.Errorf("kindnet: watch nodes: %w", err)
	}
	factory.Start(ctx.Done())
	// The informers' goroutines are factory's; Shutdown waits for them
	// once ctx has stopped them.
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), nodes.Informer().HasSynced) {
		return nil // ctx ended first
	}
	o.Log.Info("following nodes", "node", o.NodeName, "cniConfDir", o.CNIConfDir)

	retry := time.NewTimer(0)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			o.Log.Info("stopping; the conflist, routes and table stay for the next run")
			return nil
		case <-kick:
		case <-retry.C:
		}
		list, err := nodes.Lister().List(labels.Everything())
		if err == nil {
			err = s.sync(list)
		}
		if err != nil {
			o.Log.Warn("sync failed; retrying", "err", err, "in", retryAfter)
			retry.Reset(retryAfter)
		}
	}
}

// syncer is one pass over the nodes, with what it has already logged.
type syncer struct {
	self      string
	conflist  string // path
	podSubnet netip.Prefix
	nl        *netlink.Handle
	log       *slog.Logger

	waiting     bool                        // "no pod CIDR yet" was logged
	unreachable map[netip.Prefix]netip.Addr // routes logged as impossible
	conflicts   map[netip.Prefix]bool       // routes logged as held by another
}

func newSyncer(o Options, nl *netlink.Handle) *syncer {
	return &syncer{
		self: o.NodeName, conflist: filepath.Join(o.CNIConfDir, ConflistName), podSubnet: o.PodSubnet,
		nl: nl, log: o.Log,
		unreachable: map[netip.Prefix]netip.Addr{}, conflicts: map[netip.Prefix]bool{},
	}
}

// sync brings this node's conflist and routes in line with nodes.
func (s *syncer) sync(nodes []*corev1.Node) error {
	var errs []error
	if err := s.syncConflist(nodes); err != nil {
		errs = append(errs, err)
	}
	if err := s.syncRoutes(nodes); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (s *syncer) syncConflist(nodes []*corev1.Node) error {
	var self *corev1.Node
	for _, n := range nodes {
		if n.Name == s.self {
			self = n
		}
	}
	if self == nil {
		return fmt.Errorf("node %s is not in the cluster's node list", s.self)
	}
	b, err := Conflist(self, uplinkMTU(s.nl))
	if errors.Is(err, errNoPodCIDR) {
		if !s.waiting {
			s.log.Info("waiting for the node's pod CIDR", "node", s.self)
		}
		s.waiting = true
		return nil // the node's update will come
	}
	if err != nil {
		return err
	}
	s.waiting = false
	wrote, err := writeIfChanged(s.conflist, b)
	if err != nil || !wrote {
		return err
	}
	cidrs, _ := podCIDRs(self)
	s.log.Info("CNI conflist written", "path", s.conflist, "podCIDRs", cidrs)
	for _, c := range cidrs {
		if c.Addr().Is4() && !s.podSubnet.Contains(c.Addr()) {
			s.log.Warn("the node's pod CIDR is outside --pod-subnet: its pods' traffic to other pods is masqueraded", "podCIDR", c, "podSubnet", s.podSubnet)
		}
	}
	return nil
}

// uplinkMTU is the MTU of the link of the IPv4 default route, which pods'
// traffic leaves by; 1500 without one.
func uplinkMTU(h *netlink.Handle) int {
	rs, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return 1500
	}
	for _, r := range rs {
		if p, ok := fromIPNet(r.Dst); ok && p.Bits() != 0 {
			continue // not a default route
		}
		if l, err := h.LinkByIndex(r.LinkIndex); err == nil && l.Attrs().MTU > 0 {
			return l.Attrs().MTU
		}
	}
	return 1500
}

func joinErrs(what string, errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%s: %w", what, errors.Join(errs...))
}
