package xds

import (
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlab/meshlab/controlplane/registry"
)

type boundServer struct {
	gw     *gateway
	server *networking.Server
}

// serverKind is how a gateway server's traffic is handled.
type serverKind int

const (
	kindHTTP        serverKind = iota // plaintext HTTP (maybe redirecting to https)
	kindHTTPS                         // TLS terminated, then HTTP
	kindTLSTerm                       // TLS terminated, then tcp routes
	kindPassthrough                   // TLS passed through by SNI, tls routes
	kindTCP                           // tcp routes
)

// kindOf classifies a server as Istio does from its protocol and TLS mode.
func kindOf(srv *networking.Server) serverKind {
	mode := srv.GetTls().GetMode()
	passthrough := mode == networking.ServerTLSSettings_PASSTHROUGH || mode == networking.ServerTLSSettings_AUTO_PASSTHROUGH
	switch strings.ToUpper(srv.GetPort().GetProtocol()) {
	case "HTTP", "HTTP2", "GRPC", "GRPC-WEB", "":
		return kindHTTP
	case "HTTPS":
		if passthrough {
			return kindPassthrough
		}
		return kindHTTPS
	case "TLS":
		if passthrough || srv.GetTls() == nil {
			return kindPassthrough
		}
		return kindTLSTerm
	}
	return kindTCP
}

// plaintext reports whether servers of the kind share one plaintext
// filter chain (HTTP, TCP) rather than a chain each matched by SNI.
func (k serverKind) plaintext() bool { return k == kindHTTP || k == kindTCP }

// buildRouter builds a gateway pod's resources, as Istio merges the
// Gateway servers selecting it: per port, one listener `0.0.0.0_<port>`;
// plaintext HTTP servers share route config `http.<port>` (virtual hosts
// of servers with httpsRedirect require TLS); each HTTPS server gets a
// filter chain matched by its hosts as SNI that terminates TLS with its
// certificate and routes with `https.<port>.<portName>.<gateway>.<ns>`;
// TLS PASSTHROUGH servers get a chain per tls route match (SNI), TCP
// servers the tcp routes. A port's first server (of the oldest gateway,
// as Istio's initGateways sorts them) decides whether it is plaintext or
// TLS; servers of the
// other kind on it are dropped, as Istio rejects conflicting servers.
// Clusters are those the routes name.
func (x *index) buildRouter(w registry.Workload, authz AuthzFilters, authzNeed []destination, pt *proxyTelemetry) Resources {
	byPort := map[uint32][]boundServer{}
	kinds := map[uint32]serverKind{}
	var ports []uint32
	for _, gw := range x.gateways {
		if !selectorMatches(gw.spec.GetSelector(), w.Labels) {
			continue
		}
		for _, srv := range gw.spec.GetServers() {
			n := srv.GetPort().GetNumber()
			if n == 0 {
				continue
			}
			k := kindOf(srv)
			if len(byPort[n]) == 0 {
				ports = append(ports, n)
				kinds[n] = k
			} else if first := kinds[n]; first != k && (first.plaintext() || k.plaintext()) {
				continue // conflicts with the port's first server
			}
			byPort[n] = append(byPort[n], boundServer{gw, srv})
		}
	}
	slices.Sort(ports)

	src := workloadSource(w)
	// RequestAuthentications selecting the gateway pod: jwt_authn in
	// front of its HTTP routes (jwt.go), as Istio's BuildHTTP for gateways.
	httpAuthn := authz.WithAuthn(BuildJWTFilter(RequestAuthnFor(x.reqAuthn, w.Namespace, w.Labels, rootNamespace), x.in.JWKS, true))
	needed := map[string]destination{}
	need := func(d destination) { needed[outboundClusterName(d.port, d.subset, d.host)] = d }
	for _, d := range authzNeed {
		need(d)
	}
	for _, c := range pt.collectors {
		if c.svc != nil {
			need(*c.svc) // the tracing collector's cluster
		}
	}
	listeners, routes := []types.Resource{}, []types.Resource{}
	for _, port := range ports {
		ps := portString(port)
		l := &listenerv3.Listener{Name: "0.0.0.0_" + ps, Address: socketAddress("0.0.0.0", port),
			TrafficDirection: corev3.TrafficDirection_OUTBOUND}
		var plainHTTP, tcp []boundServer
		for _, bs := range byPort[port] {
			switch kindOf(bs.server) {
			case kindHTTP:
				plainHTTP = append(plainHTTP, bs)
			case kindTCP:
				tcp = append(tcp, bs)
			case kindHTTPS:
				name := httpsRouteName(port, bs)
				routes = append(routes, &routev3.RouteConfiguration{
					Name: name, ValidateClusters: wrapperspb.Bool(false),
					VirtualHosts: x.gatewayVirtualHosts([]boundServer{bs}, port, src, need),
				})
				l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{
					FilterChainMatch: sniMatch(bs),
					TransportSocket:  downstreamTLS(bs.server.GetTls(), []string{"h2", "http/1.1"}),
					Filters:          []*listenerv3.Filter{gatewayRDSFilter("outbound_0.0.0.0_"+ps, name, httpAuthn, x.in.Mesh.GetDefaultConfig().GetGatewayTopology().GetNumTrustedProxies())},
				})
			case kindTLSTerm:
				for _, fc := range x.gatewayL4Chains(bs, port, src, need, false) {
					fc.FilterChainMatch = sniMatch(bs)
					fc.TransportSocket = downstreamTLS(bs.server.GetTls(), nil)
					l.FilterChains = append(l.FilterChains, fc)
					break // the first (catch-all) tcp route serves the server
				}
			case kindPassthrough:
				l.FilterChains = append(l.FilterChains, x.gatewayL4Chains(bs, port, src, need, true)...)
			}
		}
		if len(plainHTTP) > 0 {
			rc := &routev3.RouteConfiguration{Name: "http." + ps, ValidateClusters: wrapperspb.Bool(false)}
			rc.VirtualHosts = x.gatewayVirtualHosts(plainHTTP, port, src, need)
			routes = append(routes, rc)
			l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{Filters: []*listenerv3.Filter{gatewayRDSFilter("outbound_0.0.0.0_"+ps, "http."+ps, httpAuthn, x.in.Mesh.GetDefaultConfig().GetGatewayTopology().GetNumTrustedProxies())}})
		}
		for _, bs := range tcp {
			if chains := x.gatewayL4Chains(bs, port, src, need, false); len(chains) > 0 {
				l.FilterChains = append(l.FilterChains, chains[0])
				break // one plaintext chain per port: the first server with a route wins
			}
		}
		if len(l.FilterChains) == 0 {
			continue // nothing routes here: Envoy rejects a listener without chains
		}
		if needsInspector(l.FilterChains) {
			l.ListenerFilters = []*listenerv3.ListenerFilter{tlsInspector}
		}
		gatewayTCPAuthz(l, authz.TCP)
		listeners = append(listeners, l)
	}

	listeners = x.withTelemetry(listeners, pt)
	clusters, endpoints := []types.Resource{}, []types.Resource{}
	for _, c := range pt.legacyClusters() {
		clusters = append(clusters, c)
	}
	for _, name := range sortedKeys(needed) {
		d := needed[name]
		s := x.byHost[d.host]
		if s == nil {
			continue // not in the registry: the route answers 503, as Envoy does
		}
		p, ok := s.port(d.port)
		if !ok {
			continue
		}
		c, la, ok := x.destinationClusterFor(name, s, p, d.subset, w.Namespace)
		if !ok {
			continue
		}
		clusters = append(clusters, c)
		if la != nil {
			endpoints = append(endpoints, la)
		}
	}
	sortByName(listeners)
	sortByName(routes)
	sortByName(clusters)
	return Resources{
		resource.ListenerType: listeners,
		resource.RouteType:    routes,
		resource.ClusterType:  clusters,
		resource.EndpointType: endpoints,
	}
}

// gatewayVirtualHosts are the virtual hosts of servers on port: one per
// host named by a VirtualService bound to the server's Gateway and by the
// server (wildcards intersect), with that VirtualService's http routes;
// domains `<host>` and `<host>:<port>`. A server with httpsRedirect makes
// its hosts' virtual hosts require TLS, and gets one for its own hosts
// when no VirtualService covers them (Istio redirects those too).
func (x *index) gatewayVirtualHosts(servers []boundServer, port uint32, src source, need func(destination)) []*routev3.VirtualHost {
	ps := portString(port)
	vhosts := map[string]*routev3.VirtualHost{}
	added := map[string]bool{} // host|vs: a VirtualService's routes go to a host once
	redirect := map[string]bool{}
	for _, bs := range servers {
		gwKey := bs.gw.res.Namespace + "/" + bs.gw.res.Name
		httpsRedirect := bs.server.GetTls().GetHttpsRedirect()
		for _, vs := range x.virtualServices {
			if !vs.boundTo(gwKey) {
				continue
			}
			for _, vh := range vs.hosts {
				for _, sh := range bs.server.GetHosts() {
					sh, ok := hostOnServer(sh, bs.gw.res.Namespace, vs.res.Namespace)
					if !ok {
						continue
					}
					host := intersectHosts(vh, sh)
					if host == "" {
						continue
					}
					if httpsRedirect {
						redirect[host] = true
					}
					key := host + "|" + vs.res.Namespace + "/" + vs.res.Name
					if added[key] {
						continue
					}
					added[key] = true
					v := vhosts[host]
					if v == nil {
						v = &routev3.VirtualHost{Name: host + ":" + ps, Domains: []string{host, host + ":" + ps}}
						vhosts[host] = v
					}
					v.Routes = append(v.Routes, x.httpRoutes(vs, gwKey, port, src, need)...)
				}
			}
		}
		if httpsRedirect {
			for _, sh := range bs.server.GetHosts() {
				_, host, ok := strings.Cut(sh, "/")
				if !ok {
					host = sh
				}
				if vhosts[host] == nil {
					vhosts[host] = &routev3.VirtualHost{Name: host + ":" + ps, Domains: []string{host, host + ":" + ps}}
				}
				redirect[host] = true
			}
		}
	}
	var out []*routev3.VirtualHost
	for _, h := range sortedKeys(vhosts) {
		v := vhosts[h]
		if redirect[h] {
			v.RequireTls = routev3.VirtualHost_ALL
		} else if len(v.Routes) == 0 {
			continue
		}
		out = append(out, v)
	}
	return out
}

// gatewayL4Chains are the filter chains of a TCP, TLS-terminating or
// TLS PASSTHROUGH server: the tls (passthrough) or tcp routes of the
// VirtualServices bound to its Gateway whose hosts meet the server's.
func (x *index) gatewayL4Chains(bs boundServer, port uint32, src source, need func(destination), passthrough bool) []*listenerv3.FilterChain {
	gwKey := bs.gw.res.Namespace + "/" + bs.gw.res.Name
	var out []*listenerv3.FilterChain
	for _, vs := range x.virtualServices {
		if !vs.boundTo(gwKey) {
			continue
		}
		onServer := func(h string) bool {
			for _, sh := range bs.server.GetHosts() {
				if sh, ok := hostOnServer(sh, bs.gw.res.Namespace, vs.res.Namespace); ok && intersectHosts(h, sh) != "" {
					return true
				}
			}
			return false
		}
		if !slices.ContainsFunc(vs.hosts, onServer) {
			continue
		}
		if passthrough {
			if len(vs.spec.GetTls()) > 0 {
				spec := &networking.VirtualService{Tls: vs.spec.GetTls()}
				out = append(out, x.l4Chains(&virtualService{res: vs.res, spec: spec, hosts: vs.hosts, gateways: vs.gateways}, gwKey, port, src, "", nil, onServer, need)...)
			}
			continue
		}
		if len(vs.spec.GetTcp()) > 0 {
			spec := &networking.VirtualService{Tcp: vs.spec.GetTcp()}
			out = append(out, x.l4Chains(&virtualService{res: vs.res, spec: spec, hosts: vs.hosts, gateways: vs.gateways}, gwKey, port, src, "", nil, nil, need)...)
		}
	}
	return out
}

// httpsRouteName is Istio's name for an HTTPS server's route
// configuration: https.<port>.<portName>.<gateway>.<namespace>.
func httpsRouteName(port uint32, bs boundServer) string {
	return "https." + portString(port) + "." + bs.server.GetPort().GetName() + "." + bs.gw.res.Name + "." + bs.gw.res.Namespace
}

// serverNames are a TLS server's hosts as SNI names (namespace prefixes
// dropped; `*` matches any name, so none are listed).
func serverNames(bs boundServer) []string {
	var out []string
	for _, h := range bs.server.GetHosts() {
		if _, host, ok := strings.Cut(h, "/"); ok {
			h = host
		}
		if h == "*" {
			return nil
		}
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	slices.Sort(out)
	return out
}

func sniMatch(bs boundServer) *listenerv3.FilterChainMatch {
	if names := serverNames(bs); len(names) > 0 {
		return &listenerv3.FilterChainMatch{ServerNames: names}
	}
	return nil
}

// credentialPrefix is how Istio names an SDS secret from a credentialName.
const credentialPrefix = "kubernetes://"

// downstreamTLS is the transport socket terminating a server's TLS, as
// istiod emits it: certificates from files (serverCertificate,
// privateKey) inline by filename, or from credentialName as an SDS secret
// `kubernetes://<credentialName>` over ADS; MUTUAL also verifies client
// certificates against caCertificates or the `<credentialName>-cacert`
// secret; ISTIO_MUTUAL terminates mesh mTLS with the gateway's own
// identity. TLS 1.2 is the minimum, as Istio's gateway default.
func downstreamTLS(t *networking.ServerTLSSettings, alpn []string) *corev3.TransportSocket {
	ctx := &tlsv3.CommonTlsContext{
		AlpnProtocols: alpn,
		TlsParams:     &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2},
	}
	if v := tlsVersion(t.GetMinProtocolVersion()); v != tlsv3.TlsParameters_TLS_AUTO {
		ctx.TlsParams.TlsMinimumProtocolVersion = v
	}
	if v := tlsVersion(t.GetMaxProtocolVersion()); v != tlsv3.TlsParameters_TLS_AUTO {
		ctx.TlsParams.TlsMaximumProtocolVersion = v
	}
	ctx.TlsParams.CipherSuites = t.GetCipherSuites()
	mutual := t.GetMode() == networking.ServerTLSSettings_MUTUAL
	if t.GetMode() == networking.ServerTLSSettings_ISTIO_MUTUAL {
		// Istio's BuildListenerTLSContext for ISTIO_MUTUAL: the gateway's
		// own workload certificate and the mesh roots from its agent
		// (SDS "default"/"ROOTCA"), mesh clients required, optionally
		// restricted to the server's subjectAltNames. Istio applies none
		// of the server's TLS parameters in this mode.
		ctx.TlsParams = nil
		ctx.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{defaultSDS}
		vc := &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sanMatchers(t.GetSubjectAltNames())}
		if crl := t.GetCaCrl(); crl != "" {
			vc.Crl = fileSource(crl)
		}
		ctx.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext: vc, ValidationContextSdsSecretConfig: rootSDS,
		}}
		return &corev3.TransportSocket{
			Name: wellknown.TransportSocketTls,
			ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(&tlsv3.DownstreamTlsContext{
				CommonTlsContext: ctx, RequireClientCertificate: wrapperspb.Bool(true),
			})},
		}
	}
	if cred := t.GetCredentialName(); cred != "" {
		ctx.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{{Name: credentialPrefix + cred, SdsConfig: adsConfigSource()}}
		if mutual {
			ctx.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: credentialPrefix + cred + "-cacert", SdsConfig: adsConfigSource()},
			}
		}
	} else {
		ctx.TlsCertificates = []*tlsv3.TlsCertificate{{
			CertificateChain: fileSource(t.GetServerCertificate()),
			PrivateKey:       fileSource(t.GetPrivateKey()),
		}}
		if mutual && t.GetCaCertificates() != "" {
			ctx.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{
				ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: fileSource(t.GetCaCertificates())},
			}
		}
	}
	dtc := &tlsv3.DownstreamTlsContext{CommonTlsContext: ctx}
	if mutual {
		dtc.RequireClientCertificate = wrapperspb.Bool(true)
	}
	return &corev3.TransportSocket{
		Name:       wellknown.TransportSocketTls,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(dtc)},
	}
}

func fileSource(path string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path}}
}

func tlsVersion(v networking.ServerTLSSettings_TLSProtocol) tlsv3.TlsParameters_TlsProtocol {
	switch v {
	case networking.ServerTLSSettings_TLSV1_0:
		return tlsv3.TlsParameters_TLSv1_0
	case networking.ServerTLSSettings_TLSV1_1:
		return tlsv3.TlsParameters_TLSv1_1
	case networking.ServerTLSSettings_TLSV1_2:
		return tlsv3.TlsParameters_TLSv1_2
	case networking.ServerTLSSettings_TLSV1_3:
		return tlsv3.TlsParameters_TLSv1_3
	}
	return tlsv3.TlsParameters_TLS_AUTO
}

func dataSource(b *networking.HTTPBody) *corev3.DataSource {
	if s := b.GetString_(); s != "" {
		return &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: s}}
	}
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b.GetBytes()}}
}
