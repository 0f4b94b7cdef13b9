package xds

import (
	"net/netip"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"
)

// l4Match is what TLSMatchAttributes and L4MatchAttributes share.
type l4Match interface {
	GetDestinationSubnets() []string
	GetPort() uint32
	GetSourceLabels() map[string]string
	GetGateways() []string
	GetSourceNamespace() string
}

// l4Applies is Istio's matching of a tcp or tls match block at
// translation time: its port (if any) must be the listener's, its
// gateways (if any) name gw, else its source labels and namespace must
// select the proxy.
func l4Applies(m l4Match, gw, vsNS string, port uint32, src source) bool {
	if m == nil {
		return true
	}
	if m.GetPort() != 0 && m.GetPort() != port {
		return false
	}
	if len(m.GetGateways()) > 0 {
		return slices.ContainsFunc(m.GetGateways(), func(g string) bool { return gatewayKey(g, vsNS) == gw })
	}
	if !selectorMatches(m.GetSourceLabels(), src.labels) {
		return false
	}
	return m.GetSourceNamespace() == "" || m.GetSourceNamespace() == src.namespace
}

// l4Chains are the filter chains of a non-HTTP port for the tls and tcp
// routes of vs (nil: none) as seen from gw by src, in Istio's order: a
// chain per applicable tls match (server_names from sniHosts, prefix
// ranges from destinationSubnets), then tcp routes, a chain per match
// with destinationSubnets and a last catch-all for the first route
// without; hostOK filters sniHosts (a gateway keeps those its server
// names). Without a tcp catch-all, a last chain sends to fallback when
// given (sidecars: the service's own cluster).
func (x *index) l4Chains(vs *virtualService, gw string, port uint32, src source, statPrefix string, fallback []weighted, hostOK func(string) bool, need func(destination)) []*listenerv3.FilterChain {
	var chains []*listenerv3.FilterChain
	dests := func(rds []*networking.RouteDestination) []weighted {
		var ws []weighted
		for _, d := range rds {
			ws = append(ws, weighted{cluster: x.destinationCluster(d.GetDestination(), vs.res.Namespace, port, need), weight: uint32(d.GetWeight())})
		}
		return normalizeWeights(ws)
	}
	catchAll := false
	if vs != nil {
		for _, r := range vs.spec.GetTls() {
			for _, m := range r.GetMatch() {
				if !l4Applies(m, gw, vs.res.Namespace, port, src) {
					continue
				}
				var sni []string
				for _, h := range m.GetSniHosts() {
					if hostOK == nil || hostOK(h) {
						sni = append(sni, h)
					}
				}
				if len(sni) == 0 {
					continue
				}
				ds := dests(r.GetRoute())
				if len(ds) == 0 {
					continue
				}
				slices.Sort(sni)
				chains = append(chains, &listenerv3.FilterChain{
					FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: sni, PrefixRanges: cidrRanges(m.GetDestinationSubnets())},
					Filters:          []*listenerv3.Filter{tcpProxyFilter(firstNonEmpty(statPrefix, ds[0].cluster), ds)},
				})
			}
		}
	routes:
		for _, r := range vs.spec.GetTcp() {
			ms := r.GetMatch()
			if len(ms) == 0 {
				ms = []*networking.L4MatchAttributes{nil}
			}
			for _, m := range ms {
				if !l4Applies(m, gw, vs.res.Namespace, port, src) {
					continue
				}
				ds := dests(r.GetRoute())
				if len(ds) == 0 {
					continue
				}
				fc := &listenerv3.FilterChain{Filters: []*listenerv3.Filter{tcpProxyFilter(firstNonEmpty(statPrefix, ds[0].cluster), ds)}}
				if subnets := m.GetDestinationSubnets(); len(subnets) > 0 {
					fc.FilterChainMatch = &listenerv3.FilterChainMatch{PrefixRanges: cidrRanges(subnets)}
					chains = append(chains, fc)
					continue
				}
				chains = append(chains, fc)
				catchAll = true
				break routes
			}
		}
	}
	if !catchAll && len(fallback) > 0 {
		chains = append(chains, &listenerv3.FilterChain{Filters: []*listenerv3.Filter{tcpProxyFilter(firstNonEmpty(statPrefix, fallback[0].cluster), fallback)}})
	}
	return chains
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// cidrRanges turns destinationSubnets (addresses or CIDRs) into prefix
// ranges; an unparsable one is skipped (validation rejects it).
func cidrRanges(subnets []string) []*corev3.CidrRange {
	var out []*corev3.CidrRange
	for _, s := range subnets {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, err := netip.ParseAddr(s)
			if err != nil {
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, &corev3.CidrRange{AddressPrefix: p.Masked().Addr().String(), PrefixLen: wrapperspb.UInt32(uint32(p.Bits()))})
	}
	return out
}

// tlsInspector is the listener filter Envoy needs to read SNI (and tell
// TLS from plaintext) before picking a filter chain.
var tlsInspector = &listenerv3.ListenerFilter{
	Name:       wellknown.TlsInspector,
	ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspectorv3.TlsInspector{})},
}

// needsInspector reports whether any chain matches on what the TLS
// inspector reads, or terminates TLS.
func needsInspector(chains []*listenerv3.FilterChain) bool {
	for _, fc := range chains {
		m := fc.GetFilterChainMatch()
		if len(m.GetServerNames()) > 0 || m.GetTransportProtocol() != "" || fc.GetTransportSocket() != nil {
			return true
		}
	}
	return false
}
