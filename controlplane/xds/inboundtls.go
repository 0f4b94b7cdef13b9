package xds

import (
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Transport protocols the TLS inspector sets (pilot/pkg/xds/filters).
const (
	tlsTransportProtocol       = "tls"
	rawBufferTransportProtocol = "raw_buffer"
)

// allIstioMTLSALPNs are what an Istio client offers on mesh mTLS, any of
// which Istio's PERMISSIVE chains match (filterchain_options.go).
var allIstioMTLSALPNs = []string{"istio", "istio-peer-exchange", "istio-http/1.0", "istio-http/1.1", "istio-h2"}

// supportedCiphers are Istio's for mesh mTLS on the server side
// (pilot/pkg/security/authn/utils/utils.go SupportedCiphers).
var supportedCiphers = []string{
	"ECDHE-ECDSA-AES256-GCM-SHA384",
	"ECDHE-RSA-AES256-GCM-SHA384",
	"ECDHE-ECDSA-AES128-GCM-SHA256",
	"ECDHE-RSA-AES128-GCM-SHA256",
	"AES256-GCM-SHA384",
	"AES128-GCM-SHA256",
}

// inboundTLS is Istio's authn_utils.BuildInboundTLS for STRICT and
// PERMISSIVE: the workload's certificate ("default"), client
// certificates required and verified against the mesh roots ("ROOTCA"),
// no SAN restriction (AuthorizationPolicy does that), TLS 1.2–1.3 with
// Istio's ciphers. ALPN: h2/http1.1 for HTTP chains, and
// istio-peer-exchange first for TCP ones (metadata exchange); never
// "istio", which would get in the way of negotiating HTTP/2.
func inboundTLS(http bool) *corev3.TransportSocket {
	alpn := []string{"istio-peer-exchange", "h2", "http/1.1"}
	if http {
		alpn = []string{"h2", "http/1.1"}
	}
	ctx := &tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			AlpnProtocols: alpn,
			TlsParams: &tlsv3.TlsParameters{
				CipherSuites:              supportedCiphers,
				TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2,
				TlsMaximumProtocolVersion: tlsv3.TlsParameters_TLSv1_3,
			},
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{defaultSDS},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         &tlsv3.CertificateValidationContext{},
				ValidationContextSdsSecretConfig: rootSDS,
			}},
		},
	}
	return &corev3.TransportSocket{Name: wellknown.TransportSocketTls, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)}}
}

// Built once: every inbound mTLS chain shares them (never mutated).
var (
	inboundHTTPTLS = inboundTLS(true)
	inboundTCPTLS  = inboundTLS(false)
)

// chainOpt is Istio's FilterChainMatchOptions: what one filter chain of
// an inbound port matches and whether it terminates mesh mTLS.
type chainOpt struct {
	alpn      []string
	transport string
	tls       bool
}

// inboundChainOpts is Istio's getFilterChainMatchOptions for a port of
// known protocol (filterchain_options.go): STRICT only mTLS; PERMISSIVE
// mTLS (matched on Istio's ALPN), then for TCP also TLS that is not
// Istio's (passed through as bytes), then plaintext; DISABLE plaintext
// only. HTTP ports have no TLS-passthrough chain: they are declared HTTP.
// meshlab has no protocol sniffing, so the catch-all (Istio's
// ListenerProtocolAuto) gets the TCP options; see virtualInbound.
func inboundChainOpts(mode mtlsMode, http bool) []chainOpt {
	switch mode {
	case mtlsStrict:
		return []chainOpt{{transport: tlsTransportProtocol, tls: true}}
	case mtlsPermissive:
		if http {
			return []chainOpt{
				{alpn: allIstioMTLSALPNs, transport: tlsTransportProtocol, tls: true},
				{transport: rawBufferTransportProtocol},
			}
		}
		return []chainOpt{
			{alpn: allIstioMTLSALPNs, transport: tlsTransportProtocol, tls: true},
			{transport: tlsTransportProtocol},
			{transport: rawBufferTransportProtocol},
		}
	}
	return []chainOpt{{transport: rawBufferTransportProtocol}}
}

// transportSocket is the chain's DownstreamTlsContext, nil for chains
// that do not terminate mesh mTLS.
func (o chainOpt) transportSocket(http bool) *corev3.TransportSocket {
	switch {
	case !o.tls:
		return nil
	case http:
		return inboundHTTPTLS
	}
	return inboundTCPTLS
}

func (o chainOpt) match(port uint32) *listenerv3.FilterChainMatch {
	m := &listenerv3.FilterChainMatch{ApplicationProtocols: o.alpn, TransportProtocol: o.transport}
	if port > 0 {
		m.DestinationPort = wrapperspb.UInt32(port)
	}
	return m
}

// inboundListenerFilters is Istio's populateListenerFilters for the
// virtual inbound listener (listener_inbound.go): the TLS inspector when
// any chain matches on transport protocol "tls", disabled (filter_disabled
// on the destination port) where no chain of that port needs it, so
// that TLS the workload itself terminates stays "raw_buffer" on a
// DISABLE port. No chain matches on an HTTP ALPN (http/1.1, h2c) as
// meshlab does not sniff, so the HTTP inspector is never needed.
func inboundListenerFilters(chains []*listenerv3.FilterChain) []*listenerv3.ListenerFilter {
	needs := map[uint32]bool{}
	any := false
	for _, fc := range chains {
		port := fc.GetFilterChainMatch().GetDestinationPort().GetValue()
		tls := fc.GetFilterChainMatch().GetTransportProtocol() == tlsTransportProtocol
		needs[port] = needs[port] || tls
		any = any || tls
	}
	if !any {
		return nil
	}
	defaultOn := needs[0]
	var ports []int
	for p, n := range needs {
		if p != 0 && n != defaultOn {
			ports = append(ports, int(p))
		}
	}
	if len(ports) == 0 {
		return []*listenerv3.ListenerFilter{tlsInspector}
	}
	slices.Sort(ports)
	pred := portsPredicate(ports)
	if !defaultOn {
		// Enabled only on these ports: disabled on every other.
		pred = &listenerv3.ListenerFilterChainMatchPredicate{Rule: &listenerv3.ListenerFilterChainMatchPredicate_NotMatch{NotMatch: pred}}
	}
	return []*listenerv3.ListenerFilter{{
		Name:           wellknown.TlsInspector,
		ConfigType:     tlsInspector.GetConfigType(),
		FilterDisabled: pred,
	}}
}

// portsPredicate is Istio's listenerPredicateExcludePorts: a match on
// any of the destination ports.
func portsPredicate(ports []int) *listenerv3.ListenerFilterChainMatchPredicate {
	rules := make([]*listenerv3.ListenerFilterChainMatchPredicate, 0, len(ports))
	for _, p := range ports {
		rules = append(rules, &listenerv3.ListenerFilterChainMatchPredicate{Rule: &listenerv3.ListenerFilterChainMatchPredicate_DestinationPortRange{
			DestinationPortRange: &typev3.Int32Range{Start: int32(p), End: int32(p + 1)},
		}})
	}
	if len(rules) == 1 {
		return rules[0]
	}
	return &listenerv3.ListenerFilterChainMatchPredicate{Rule: &listenerv3.ListenerFilterChainMatchPredicate_OrMatch{
		OrMatch: &listenerv3.ListenerFilterChainMatchPredicate_MatchSet{Rules: rules},
	}}
}
