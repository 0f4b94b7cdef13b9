package upstream

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
)

// Resolver resolves the host names of STRICT_DNS and LOGICAL_DNS
// clusters; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Envoy's default dns_refresh_rate.
const defaultDNSRefresh = 5 * time.Second

// dnsCache resolves a DNS cluster's endpoint names when connecting, and
// keeps each answer for the cluster's dns_refresh_rate, as Envoy
// re-resolves on that period. Every address of an answer is used in turn
// (STRICT_DNS makes each a host; LOGICAL_DNS connects to the first).
type dnsCache struct {
	resolver Resolver
	family   string // "ip4", "ip6" or "ip"
	refresh  time.Duration
	logical  bool

	mu      sync.Mutex
	answers map[string]dnsAnswer
}

type dnsAnswer struct {
	addrs []netip.Addr
	at    time.Time
}

func newDNSCache(c *clusterv3.Cluster, r Resolver) *dnsCache {
	if r == nil {
		r = net.DefaultResolver
	}
	d := &dnsCache{resolver: r, family: "ip4", refresh: defaultDNSRefresh, answers: map[string]dnsAnswer{}}
	d.logical = c.GetType() == clusterv3.Cluster_LOGICAL_DNS
	switch c.GetDnsLookupFamily() {
	case clusterv3.Cluster_V6_ONLY:
		d.family = "ip6"
	case clusterv3.Cluster_AUTO, clusterv3.Cluster_V4_PREFERRED, clusterv3.Cluster_ALL:
		d.family = "ip"
	}
	if r := c.GetDnsRefreshRate(); r != nil && r.AsDuration() > 0 { //nolint:staticcheck // SA1019: Envoy still honours dns_refresh_rate and istiod still sends it
		d.refresh = r.AsDuration()
	}
	return d
}

// addr turns host:port into ip:port, resolving host unless it is an IP.
func (d *dnsCache) addr(ctx context.Context, hostport string) (string, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", err
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return hostport, nil
	}
	d.mu.Lock()
	a, ok := d.answers[host]
	d.mu.Unlock()
	if !ok || time.Since(a.at) > d.refresh {
		addrs, err := d.resolver.LookupNetIP(ctx, d.family, host)
		if err != nil || len(addrs) == 0 {
			if ok {
				addrs = a.addrs // keep the last answer, as Envoy does on failure
			} else {
				return "", fmt.Errorf("resolve %s: %w", host, err)
			}
		}
		a = dnsAnswer{addrs: addrs, at: time.Now()}
		d.mu.Lock()
		d.answers[host] = a
		d.mu.Unlock()
	}
	ip := a.addrs[0]
	if !d.logical && len(a.addrs) > 1 {
		ip = a.addrs[rand.IntN(len(a.addrs))]
	}
	return net.JoinHostPort(ip.Unmap().String(), port), nil
}
