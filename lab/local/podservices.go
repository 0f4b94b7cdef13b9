package local

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/dataplane/capture"
	"github.com/meshlab/meshlab/lab/podnet"
)

// A pod without a sidecar resolves a ClusterIP Service to its VIP (the
// cluster DNS) and needs kube-proxy's part too: only a sidecar makes a VIP
// reachable. podServices programs the VIPs in such a pod's namespace, and
// the cluster DNS's registry refresh keeps every such pod's current.

// podServices makes the Service VIPs reachable from the pod whose
// namespace is at netnsPath, now (from the last registry read) and from
// then on, as endpoints come and go. For pods without a sidecar.
func (r *Runtime) podServices(netnsPath string) error {
	c := r.clusterDNS()
	c.svcMu.Lock()
	defer c.svcMu.Unlock()
	if err := podnet.Do(netnsPath, func() error { return capture.InstallServices(c.svcs) }); err != nil {
		return fmt.Errorf("service VIPs for pod %s: %w", netnsPath, err)
	}
	if c.applied == nil {
		c.applied = map[string]string{}
	}
	c.applied[netnsPath] = c.svcKey
	return nil
}

// syncPodServices installs svcs in every pod namespace podServices was
// given that does not have them yet, and forgets namespaces that are gone.
func (r *Runtime) syncPodServices(c *clusterDNS, svcs []capture.ServiceNAT) {
	key := fmt.Sprint(svcs)
	c.svcMu.Lock()
	defer c.svcMu.Unlock()
	c.svcs, c.svcKey = svcs, key
	for path, have := range c.applied {
		if have == key {
			continue
		}
		err := podnet.Do(path, func() error { return capture.InstallServices(svcs) })
		switch {
		case err == nil:
			c.applied[path] = key
		case errors.Is(err, fs.ErrNotExist):
			delete(c.applied, path) // the pod is gone
		default:
			// Tried again at the next refresh.
			r.log.Warn("update the service VIPs of a pod", "netns", path, "err", err)
		}
	}
}

// servicesNAT is what kube-proxy would program from the registry: every
// port of every ClusterIP Service with a VIP, to its ready endpoints.
func servicesNAT(reg api.Registry) []capture.ServiceNAT {
	var out []capture.ServiceNAT
	for _, s := range reg.Services {
		if s.Headless || !s.VIP.Is4() {
			continue
		}
		var ready []netip.Addr
		for _, w := range reg.Workloads {
			if w.Ready && s.Selects(w) && w.IP.Is4() {
				ready = append(ready, w.IP)
			}
		}
		slices.SortFunc(ready, netip.Addr.Compare)
		ready = slices.Compact(ready)
		for _, p := range s.Ports {
			proto := byte(unix.IPPROTO_TCP)
			switch strings.ToUpper(p.Protocol) {
			case "", "TCP":
			case "UDP":
				proto = unix.IPPROTO_UDP
			default:
				continue // SCTP: not served
			}
			target := p.TargetPort
			if target == 0 {
				target = p.Port
			}
			n := capture.ServiceNAT{VIP: netip.AddrPortFrom(s.VIP, uint16(p.Port)), Protocol: proto}
			for _, ip := range ready {
				n.Endpoints = append(n.Endpoints, netip.AddrPortFrom(ip, uint16(target)))
			}
			out = append(out, n)
		}
	}
	slices.SortFunc(out, func(a, b capture.ServiceNAT) int {
		if c := a.VIP.Compare(b.VIP); c != 0 {
			return c
		}
		return int(a.Protocol) - int(b.Protocol)
	})
	return out
}
