package xds

import (
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	httpinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/http_inspector/v3"
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
// an inbound port matches, whether it terminates mesh mTLS, and whether
// it serves HTTP (only the pass-through chains choose; a declared port's
// protocol decides its chains').
type chainOpt struct {
	alpn      []string
	transport string
	tls       bool
	http      bool
}

// ALPN lists of Istio's pass-through chain options (filterchain_options.go):
// what an Istio client offers for HTTP over mTLS (the istio.alpn filter),
// what the HTTP inspector reports for plaintext HTTP (HTTP/1.0 not
// matched, as PILOT_HTTP10 is off by default), and a TCP client's mTLS.
var (
	mtlsHTTPALPNs      = []string{"istio-http/1.0", "istio-http/1.1", "istio-h2"}
	plaintextHTTPALPNs = []string{"http/1.1", "h2c"}
	mtlsTCPALPNs       = []string{"istio-peer-exchange", "istio"}
)

// passthroughChainOpts is Istio's getFilterChainMatchOptions for
// ListenerProtocolAuto, the pass-through chains of ports no Service
// declares: each mode's TCP chains plus HTTP ones told apart by ALPN
// (Istio's, over mTLS; the HTTP inspector's, in plaintext), so that
// HTTP AuthorizationPolicy rules apply there too.
func passthroughChainOpts(mode mtlsMode) []chainOpt {
	switch mode {
	case mtlsStrict:
		return []chainOpt{
			{alpn: mtlsHTTPALPNs, transport: tlsTransportProtocol, tls: true, http: true},
			{transport: tlsTransportProtocol, tls: true},
		}
	case mtlsPermissive:
		return []chainOpt{
			{alpn: mtlsHTTPALPNs, transport: tlsTransportProtocol, tls: true, http: true},
			{alpn: plaintextHTTPALPNs, transport: rawBufferTransportProtocol, http: true},
			{alpn: mtlsTCPALPNs, transport: tlsTransportProtocol, tls: true},
			{transport: rawBufferTransportProtocol},
			{transport: tlsTransportProtocol},
		}
	}
	return []chainOpt{
		{alpn: plaintextHTTPALPNs, transport: rawBufferTransportProtocol, http: true},
		{transport: rawBufferTransportProtocol},
	}
}

// inboundChainOpts is Istio's getFilterChainMatchOptions for a port of
// known protocol (filterchain_options.go): STRICT only mTLS; PERMISSIVE
// mTLS (matched on Istio's ALPN), then for TCP also TLS that is not
// Istio's (passed through as bytes), then plaintext; DISABLE plaintext
// only. HTTP ports have no TLS-passthrough chain: they are declared HTTP.
// The catch-all (Istio's ListenerProtocolAuto) gets passthroughChainOpts.
func inboundChainOpts(mode mtlsMode, http bool) []chainOpt {
	switch mode {
	case mtlsStrict:
		return []chainOpt{{transport: tlsTransportProtocol, tls: true, http: http}}
	case mtlsPermissive:
		if http {
			return []chainOpt{
				{alpn: allIstioMTLSALPNs, transport: tlsTransportProtocol, tls: true, http: true},
				{transport: rawBufferTransportProtocol, http: true},
			}
		}
		return []chainOpt{
			{alpn: allIstioMTLSALPNs, transport: tlsTransportProtocol, tls: true},
			{transport: tlsTransportProtocol},
			{transport: rawBufferTransportProtocol},
		}
	}
	return []chainOpt{{transport: rawBufferTransportProtocol, http: http}}
}

// transportSocket is the chain's DownstreamTlsContext, nil for chains
// that do not terminate mesh mTLS.
func (o chainOpt) transportSocket() *corev3.TransportSocket {
	switch {
	case !o.tls:
		return nil
	case o.http:
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
// DISABLE port; then the HTTP inspector when a chain matches on the ALPN
// it reports (http/1.1, h2c), disabled on the ports none does.
func inboundListenerFilters(chains []*listenerv3.FilterChain) []*listenerv3.ListenerFilter {
	type need struct{ tls, http bool }
	needs := map[uint32]need{}
	anyTLS, anyHTTP := false, false
	for _, fc := range chains {
		m := fc.GetFilterChainMatch()
		port := m.GetDestinationPort().GetValue()
		n := needs[port]
		if m.GetTransportProtocol() == tlsTransportProtocol {
			n.tls, anyTLS = true, true
		}
		for _, ap := range m.GetApplicationProtocols() {
			if ap == "http/1.1" || ap == "h2c" {
				n.http, anyHTTP = true, true
			}
		}
		needs[port] = n
	}
	var out []*listenerv3.ListenerFilter
	if anyTLS {
		// Istio's buildTLSInspector: on by default when the pass-through
		// needs it, else only on the ports that do.
		defaultOn := needs[0].tls
		var ports []int
		for p, n := range needs {
			if p != 0 && n.tls != defaultOn {
				ports = append(ports, int(p))
			}
		}
		out = append(out, withDisabled(tlsInspector, ports, !defaultOn))
	}
	if anyHTTP {
		// Istio's buildHTTPInspector: disabled on every port that does
		// not need it.
		var ports []int
		for p, n := range needs {
			if !n.http {
				ports = append(ports, int(p))
			}
		}
		out = append(out, withDisabled(httpInspector, ports, false))
	}
	return out
}

// httpInspector is the listener filter that tells plaintext HTTP/1.1
// and h2c apart from other bytes, for chains matching on that ALPN.
var httpInspector = &listenerv3.ListenerFilter{
	Name:       wellknown.HTTPInspector,
	ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&httpinspectorv3.HttpInspector{})},
}

// withDisabled is f with filter_disabled on the given ports (or, only,
// on all others), f itself when there are none.
func withDisabled(f *listenerv3.ListenerFilter, ports []int, onlyThese bool) *listenerv3.ListenerFilter {
	if len(ports) == 0 {
		return f
	}
	slices.Sort(ports)
	pred := portsPredicate(ports)
	if onlyThese {
		pred = &listenerv3.ListenerFilterChainMatchPredicate{Rule: &listenerv3.ListenerFilterChainMatchPredicate_NotMatch{NotMatch: pred}}
	}
	return &listenerv3.ListenerFilter{Name: f.GetName(), ConfigType: f.GetConfigType(), FilterDisabled: pred}
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
