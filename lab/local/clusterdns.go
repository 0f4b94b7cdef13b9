package local

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/controlplane/registry"
	"github.com/meshlab/meshlab/dataplane/capture"
	"github.com/meshlab/meshlab/dataplane/dns"
	"github.com/meshlab/meshlab/lab/podnet"
)

// The cluster DNS is what CoreDNS is to a cluster, for the pods without a
// sidecar (a sidecar's DNS proxy answers for its own pod): it serves on the
// bridge's host address, answers Services' names from the control plane's
// registry and forwards every other name to the host's nameservers. Such a
// pod shares the host's /etc/resolv.conf, so podDNS sends whatever
// resolver that names to it.

// hostResolvConf names the nameservers other names are forwarded to.
const hostResolvConf = "/etc/resolv.conf"

// dnsRefresh is how stale the cluster DNS's names may get when nobody
// calls refreshDNS. The same loop keeps the NodePorts published.
const dnsRefresh = time.Second

// clusterDNS is the cluster DNS's state: the names it answers and the
// channel refreshDNS wakes its refresher with.
type clusterDNS struct {
	names atomic.Pointer[dnsNames]
	wake  chan struct{}
	// podServices' state: the VIPs of the last registry read and, per
	// pod namespace that asked for them, the ones installed there.
	svcMu   sync.Mutex
	svcs    []capture.ServiceNAT
	svcKey  string
	applied map[string]string // netns path → svcKey installed
}

func (r *Runtime) clusterDNS() *clusterDNS {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dns == nil {
		r.dns = &clusterDNS{wake: make(chan struct{}, 1)}
	}
	return r.dns
}

// startClusterDNS serves the cluster DNS on the bridge's host address,
// port 53 (UDP and TCP), until ctx ends. The bridge must be up; the
// control plane need not be yet: names come as soon as it answers.
func (r *Runtime) startClusterDNS(ctx context.Context) error {
	upstreams, err := dns.ResolvConf(hostResolvConf)
	if err != nil {
		// Service names still resolve; only the world's do not.
		r.log.Warn("cluster DNS: no upstream nameservers, pods without a sidecar resolve only Services", "err", err)
	}
	// Never forward to ourselves.
	upstreams = slices.DeleteFunc(upstreams, func(a netip.AddrPort) bool { return a.Addr() == Network.Gateway })
	return r.serveClusterDNS(ctx, netip.AddrPortFrom(Network.Gateway, 53), upstreams)
}

// serveClusterDNS listens on addr in the calling thread's network
// namespace and answers there until ctx ends.
func (r *Runtime) serveClusterDNS(ctx context.Context, addr netip.AddrPort, upstreams []netip.AddrPort) error {
	c := r.clusterDNS()
	if c.names.Load() == nil {
		c.names.Store(newDNSNames(api.Registry{}))
	}
	srv := dns.NewServer(r.log)
	srv.Upstreams = upstreams
	srv.Resolve = func(from netip.Addr, name string) ([]netip.Addr, bool) {
		names := c.names.Load()
		return names.resolve(r.podNamespace(from, names), name)
	}
	pc, err := net.ListenPacket("udp4", addr.String())
	if err != nil {
		return fmt.Errorf("cluster DNS: listen on udp %s: %w (is another DNS server bound to port 53 on all addresses?)", addr, err)
	}
	ln, err := net.Listen("tcp4", addr.String())
	if err != nil {
		_ = pc.Close()
		return fmt.Errorf("cluster DNS: listen on tcp %s: %w (is another DNS server bound to port 53 on all addresses?)", addr, err)
	}
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		// Serve returns nil once ctx ends; it owns pc and ln.
		_ = srv.Serve(ctx, pc, ln)
	}()
	go func() {
		defer r.wg.Done()
		r.refreshDNSLoop(ctx, c)
	}()
	return nil
}

// refreshDNS asks the cluster DNS to read the registry now, e.g. after a
// workload's readiness changed. It does not wait.
func (r *Runtime) refreshDNS() {
	select {
	case r.clusterDNS().wake <- struct{}{}:
	default: // a refresh is pending already
	}
}

func (r *Runtime) refreshDNSLoop(ctx context.Context, c *clusterDNS) {
	tick := time.NewTicker(dnsRefresh)
	defer tick.Stop()
	var failing bool
	for {
		reqCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		reg, err := r.cp.Registry(reqCtx)
		cancel()
		switch {
		case err == nil:
			// VIPs first: a pod that resolves a new Service can connect.
			r.syncPodServices(c, servicesNAT(reg))
			c.names.Store(newDNSNames(reg))
			// NodePorts follow the same registry, as kube-proxy's rules
			// follow the same Services and endpoints.
			if r.nodePorts != nil {
				if err := r.nodePorts.Sync(ctx, registry.Snapshot{Services: reg.Services, Workloads: reg.Workloads}); err != nil && ctx.Err() == nil {
					r.log.Warn("publish nodePorts", "err", err)
				}
			}
			failing = false
		case ctx.Err() != nil:
			return
		case !failing:
			// Once per outage: the control plane is starting or gone; the
			// last names are kept meanwhile.
			r.log.Debug("cluster DNS: read the registry", "err", err)
			failing = true
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-c.wake:
		}
	}
}

// podNamespace is the namespace of the pod at ip, which short names are
// relative to: the runtime's pods first, then the registry's workloads.
func (r *Runtime) podNamespace(ip netip.Addr, names *dnsNames) string {
	s := ip.String()
	r.mu.Lock()
	for _, p := range r.pods {
		if p.IP == s {
			r.mu.Unlock()
			return p.Namespace
		}
	}
	r.mu.Unlock()
	return names.podNS[ip]
}

// dnsNames is the registry as the cluster DNS answers it.
type dnsNames struct {
	// addrs of each Service by "name.namespace": its VIP, or a headless
	// one's ready endpoints.
	addrs map[string][]netip.Addr
	podNS map[netip.Addr]string
}

func newDNSNames(reg api.Registry) *dnsNames {
	n := &dnsNames{addrs: map[string][]netip.Addr{}, podNS: map[netip.Addr]string{}}
	for _, w := range reg.Workloads {
		n.podNS[w.IP] = w.Namespace
	}
	for _, s := range reg.Services {
		key := s.Name + "." + s.Namespace
		if !s.Headless {
			n.addrs[key] = nil
			if s.VIP.IsValid() {
				n.addrs[key] = []netip.Addr{s.VIP}
			}
			continue
		}
		// As the endpoints controller selects them: only ready pods.
		var eps []netip.Addr
		for _, w := range reg.Workloads {
			if w.Ready && s.Selects(w) {
				eps = append(eps, w.IP)
			}
		}
		slices.SortFunc(eps, netip.Addr.Compare)
		n.addrs[key] = slices.Compact(eps)
	}
	return n
}

// resolve answers a name (lower case, no trailing dot) for a pod of
// namespace ns ("" when the client is no pod): <svc>.<ns>.svc.cluster.local,
// <svc>.<ns>.svc, <svc>.<ns>, and <svc> in the pod's own namespace, as
// the search list of a Kubernetes pod's resolv.conf makes them.
func (n *dnsNames) resolve(ns, name string) ([]netip.Addr, bool) {
	key, qualified := strings.CutSuffix(name, ".svc."+dns.ClusterDomain)
	if !qualified {
		key, qualified = strings.CutSuffix(name, ".svc")
	}
	if name == dns.ClusterDomain || strings.HasSuffix(key, "."+dns.ClusterDomain) {
		return nil, false // pod records and the like: not served
	}
	switch strings.Count(key, ".") {
	case 0:
		if ns == "" || qualified {
			return nil, false
		}
		key += "." + ns
	case 1:
	default:
		return nil, false
	}
	addrs, ok := n.addrs[key]
	return addrs, ok
}

// podDNS sends the DNS queries of the pod whose namespace is at netnsPath
// to the cluster DNS, as a cluster's resolv.conf would: for pods without a
// sidecar, whose DNS its proxy does not answer.
func podDNS(netnsPath string) error {
	to := netip.AddrPortFrom(Network.Gateway, 53)
	if err := podnet.Do(netnsPath, func() error { return capture.InstallDNS(to) }); err != nil {
		return fmt.Errorf("cluster DNS for pod %s: %w", netnsPath, err)
	}
	return nil
}
