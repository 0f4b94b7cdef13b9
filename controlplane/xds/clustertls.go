package xds

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	rawbufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlab/meshlab/controlplane/registry"
)

// Istio's names for mutual TLS (pilot/pkg/model, pkg/model/authentication.go,
// pilot/pkg/networking/util, pilot/pkg/xds/filters).
const (
	// tlsModeLabel is the pod label the injector sets on pods with a
	// sidecar; its value "istio" makes an endpoint mTLS-capable.
	tlsModeLabel      = "security.istio.io/tlsMode"
	tlsModeIstio      = "istio"
	tlsModeShortName  = "tlsMode"
	transportSocketMD = "envoy.transport_socket_match"
	sdsClusterName    = "sds-grpc"
	sdsDefault        = "default"
	sdsRootCA         = "ROOTCA"
	// systemRootsFile is where a DestinationRule's SIMPLE/MUTUAL without
	// caCertificates verifies the server: Istio 1.24 sets caCertificates
	// to "system" (cluster_traffic_policy.go), which the agent resolves to
	// the OS bundle; this is that bundle's Debian path.
	systemRootsFile = "/etc/ssl/certs/ca-certificates.crt"
)

// Istio's ALPN lists (pilot/pkg/networking/util/util.go), metadata
// exchange on as by default.
var (
	alpnInMeshWithMxc   = []string{"istio-peer-exchange", "istio"}
	alpnInMeshH2WithMxc = []string{"istio-peer-exchange", "istio", "h2"}
	alpnH2Only          = []string{"h2"}
)

// sdsSecretConfig is Istio's ConstructSdsSecretConfig for the agent's
// secrets ("default", "ROOTCA"): SDS over the bootstrap's sds-grpc
// cluster, never over ADS, with no initial fetch timeout. Shared: never
// mutated.
func sdsSecretConfig(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{
		Name: name,
		SdsConfig: &corev3.ConfigSource{
			ConfigSourceSpecifier: &corev3.ConfigSource_ApiConfigSource{ApiConfigSource: &corev3.ApiConfigSource{
				ApiType:                   corev3.ApiConfigSource_GRPC,
				SetNodeOnFirstMessageOnly: true,
				TransportApiVersion:       corev3.ApiVersion_V3,
				GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
					EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: sdsClusterName},
				}}},
			}},
			ResourceApiVersion:  corev3.ApiVersion_V3,
			InitialFetchTimeout: durationpb.New(0),
		},
	}
}

var (
	defaultSDS = sdsSecretConfig(sdsDefault)
	rootSDS    = sdsSecretConfig(sdsRootCA)

	// rawBufferSocket is Istio's xdsfilters.RawBufferTransportSocket.
	rawBufferSocket = &corev3.TransportSocket{Name: wellknown.TransportSocketRawBuffer, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(&rawbufferv3.RawBuffer{})}}

	istioTLSModeMatch = &structpb.Struct{Fields: map[string]*structpb.Value{tlsModeShortName: structpb.NewStringValue(tlsModeIstio)}}
	// tlsModeMetadata is the EDS endpoint metadata of an mTLS-capable
	// endpoint (Istio's AppendLbEndpointMetadata).
	tlsModeMetadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{transportSocketMD: istioTLSModeMatch}}
	// tlsModeDisabled is Istio's defaultTransportSocketMatch: plaintext
	// to endpoints without the tlsMode metadata.
	tlsModeDisabled = &clusterv3.Cluster_TransportSocketMatch{Name: "tlsMode-disabled", Match: &structpb.Struct{}, TransportSocket: rawBufferSocket}
	// autoIstioMutual is what auto mTLS decides (never mutated).
	autoIstioMutual = &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_ISTIO_MUTUAL}
)

// spiffeID is Istio's spiffe.MustGenSpiffeURI for the default trust domain.
func spiffeID(ns, sa string) string {
	if sa == "" {
		sa = "default" // every pod runs as a ServiceAccount; Kubernetes names this one
	}
	return spiffePrefix + defaultTrustDomain + "/ns/" + ns + "/sa/" + sa
}

// endpointMTLS reports whether the pod carries the injector's tlsMode
// label (Istio's IstioEndpoint.TLSMode == "istio").
func endpointMTLS(w registry.Workload) bool { return w.Labels[tlsModeLabel] == tlsModeIstio }

// serviceAccounts are the SPIFFE IDs a client verifies the service's
// servers against, as Istio's push.ServiceAccounts: those of its
// endpoints' ServiceAccounts, and for a ServiceEntry its subjectAltNames;
// sorted, without duplicates.
func serviceAccounts(s *service) []string {
	s.sansOnce.Do(func() { s.sans = computeServiceAccounts(s) })
	return s.sans
}

func computeServiceAccounts(s *service) []string {
	var out []string
	if s.se != nil {
		out = append(out, s.se.sans...)
	}
	for _, w := range s.endpoints {
		out = append(out, spiffeID(w.Namespace, w.ServiceAccount))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// sniFor is Istio's BuildDNSSrvSubsetKey for an outbound cluster, the SNI
// ISTIO_MUTUAL sends: outbound_.<port>_.<subset>_.<host>.
func sniFor(port uint32, subset, host string) string {
	return "outbound_." + strconv.FormatUint(uint64(port), 10) + "_." + subset + "_." + host
}

// passthroughService is Istio's test in BestEffortInferServiceMTLSMode:
// a headless Service, a ServiceEntry resolved NONE, or a PASSTHROUGH
// load balancer.
func passthroughService(s *service, tp *networking.TrafficPolicy) bool {
	if tp.GetLoadBalancer().GetSimple() == networking.LoadBalancerSettings_PASSTHROUGH {
		return true
	}
	if s.se != nil {
		return s.se.resolution == networking.ServiceEntry_NONE
	}
	return !s.VIP.IsValid()
}

// inferServiceMTLSMode is Istio's BestEffortInferServiceMTLSMode: unknown
// for mesh-external services; for passthrough ones DISABLE unless every
// endpoint has a sidecar; otherwise the namespace (or mesh)
// PeerAuthentication mode, PERMISSIVE without one. Workload and port
// level policies are not looked at, as in Istio (the client cannot know
// which workload it reaches); the endpoint metadata covers those.
func (x *index) inferServiceMTLSMode(s *service, tp *networking.TrafficPolicy) mtlsMode {
	if s.se != nil && s.se.external {
		return mtlsUnknown
	}
	if passthroughService(s, tp) {
		if len(s.endpoints) == 0 {
			return mtlsDisable
		}
		for _, w := range s.endpoints {
			if !endpointMTLS(w) {
				return mtlsDisable
			}
		}
	}
	if m := x.peer.namespaceMode(s.Namespace); m != mtlsUnknown {
		return m
	}
	return mtlsPermissive
}

// clusterTLSOpts is what applyClusterTLS needs besides the cluster.
type clusterTLSOpts struct {
	svc    *service
	port   registry.Port
	subset string
	policy *networking.TrafficPolicy // merged for the port and subset
	dr     *destinationRule          // nil without one
	router bool                      // a gateway (credentialName allowed without a DR workloadSelector)
}

// applyClusterTLS is Istio's buildUpstreamTLSSettings followed by
// applyUpstreamTLSSettings (pilot/pkg/networking/core/cluster_tls.go): a
// DestinationRule tls block is used as given (ISTIO_MUTUAL completed with
// the cluster's SNI and the service accounts), otherwise auto mTLS makes
// ISTIO_MUTUAL for in-mesh services the namespace does not DISABLE and
// puts it behind transport_socket_matches, so only endpoints carrying the
// tlsMode metadata get TLS (never on ORIGINAL_DST clusters, which have no
// endpoint metadata).
func (x *index) applyClusterTLS(c *clusterv3.Cluster, o clusterTLSOpts) {
	s := o.svc
	tls := o.policy.GetTls()
	external := s.se != nil && s.se.external
	sni := sniFor(o.port.Port, o.subset, s.host)
	auto := false
	if tls == nil {
		if external {
			return
		}
		if m := x.inferServiceMTLSMode(s, o.policy); m == mtlsUnknown || m == mtlsDisable {
			return
		}
		tls, auto = autoIstioMutual, true
	}
	var ctx *tlsv3.UpstreamTlsContext
	h2 := isHTTP2Cluster(c)
	switch tls.GetMode() {
	case networking.ClientTLSSettings_DISABLE:
		return
	case networking.ClientTLSSettings_ISTIO_MUTUAL:
		if tls.GetSni() != "" {
			sni = tls.GetSni()
		}
		sans := tls.GetSubjectAltNames()
		if sans == nil {
			sans = serviceAccounts(s)
		}
		// Services whose servers run as the same accounts share the
		// encoding (a one-account list joins without allocating).
		x.setTransportSocket(c, x.istioMutualSocket(istioTLSKey{sans: strings.Join(sans, "\n"), h2: h2}, sni, sans), auto)
		return
	case networking.ClientTLSSettings_SIMPLE, networking.ClientTLSSettings_MUTUAL:
		// Istio's hack: a sidecar fetches a credentialName only when the
		// DestinationRule selects workloads; otherwise the cluster gets
		// no TLS at all (sidecars must not all wait for a secret).
		if tls.GetCredentialName() != "" && !o.router && (o.dr == nil || len(o.dr.spec.GetWorkloadSelector().GetMatchLabels()) == 0) {
			return
		}
		var seSANs []string
		if external && len(tls.GetSubjectAltNames()) == 0 {
			seSANs = s.se.sans
		}
		ctx = userUpstream(tls, seSANs, h2)
		if tls.GetSni() == "" {
			setAutoSNI(c, tls)
		}
	default:
		return
	}
	x.setTransportSocket(c, &corev3.TransportSocket{Name: wellknown.TransportSocketTls, ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(ctx)}}, auto)
}

// setTransportSocket is the end of Istio's applyUpstreamTLSSettings: an
// auto-detected ISTIO_MUTUAL goes behind transport_socket_matches, except
// on ORIGINAL_DST clusters; anything else is the cluster's socket.
func (x *index) setTransportSocket(c *clusterv3.Cluster, ts *corev3.TransportSocket, auto bool) {
	if auto && c.GetType() != clusterv3.Cluster_ORIGINAL_DST {
		c.TransportSocketMatches = []*clusterv3.Cluster_TransportSocketMatch{
			{Name: "tlsMode-" + tlsModeIstio, Match: istioTLSModeMatch, TransportSocket: ts},
			tlsModeDisabled,
		}
		return
	}
	c.TransportSocket = ts
}

// istioTLSKey identifies an ISTIO_MUTUAL context but for its SNI.
type istioTLSKey struct {
	sans string // joined by newlines
	h2   bool
}

// upstreamTLSTypeURL is the type URL of an UpstreamTlsContext in an Any.
const upstreamTLSTypeURL = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"

// istioMutualSocket is the transport socket of istioMutualUpstream. Every
// cluster of a service differs only in its SNI, so the rest is encoded
// once per push and the SNI (UpstreamTlsContext field 2) appended to
// it: appending a field to an encoded message sets it, and the bytes are
// those encoding the whole context would give.
func (x *index) istioMutualSocket(key istioTLSKey, sni string, sans []string) *corev3.TransportSocket {
	x.tlsMu.Lock()
	base, ok := x.istioTLSMemo[key]
	if !ok {
		b, err := proto.Marshal(istioMutualUpstream("", sans, key.h2))
		if err != nil {
			x.tlsMu.Unlock()
			panic(fmt.Sprintf("marshal UpstreamTlsContext: %v", err)) // a message built here: a bug
		}
		base = b
		x.istioTLSMemo[key] = base
	}
	x.tlsMu.Unlock()
	v := make([]byte, len(base), len(base)+len(sni)+4)
	copy(v, base)
	if sni != "" {
		v = protowire.AppendTag(v, 2, protowire.BytesType)
		v = protowire.AppendString(v, sni)
	}
	return &corev3.TransportSocket{Name: wellknown.TransportSocketTls, ConfigType: &corev3.TransportSocket_TypedConfig{
		TypedConfig: &anypb.Any{TypeUrl: upstreamTLSTypeURL, Value: v},
	}}
}

// isHTTP2Cluster is Istio's: the cluster speaks HTTP/2 upstream.
func isHTTP2Cluster(c *clusterv3.Cluster) bool {
	a := c.GetTypedExtensionProtocolOptions()[httpProtocolOptionsKey]
	if a == nil {
		return false
	}
	var hpo httpv3.HttpProtocolOptions
	if a.UnmarshalTo(&hpo) != nil {
		return false
	}
	return hpo.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil
}

// upstreamTLSParams are Istio's defaultUpstreamCommonTLSContext's.
func upstreamTLSParams() *tlsv3.TlsParameters {
	return &tlsv3.TlsParameters{
		TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2,
		TlsMaximumProtocolVersion: tlsv3.TlsParameters_TLSv1_3,
	}
}

// istioMutualUpstream is Istio's ISTIO_MUTUAL client context: the
// workload certificate ("default") and the mesh roots ("ROOTCA") from
// the agent over SDS, the server's certificate checked against the
// expected SPIFFE IDs, the SNI, and ALPN telling the server it is mesh
// traffic (istio-peer-exchange for metadata exchange, "istio").
func istioMutualUpstream(sni string, sans []string, h2 bool) *tlsv3.UpstreamTlsContext {
	alpn := alpnInMeshWithMxc
	if h2 {
		alpn = alpnInMeshH2WithMxc
	}
	return &tlsv3.UpstreamTlsContext{
		Sni: sni,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams:                      upstreamTLSParams(),
			AlpnProtocols:                  alpn,
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{defaultSDS},
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sanMatchers(sans)},
				ValidationContextSdsSecretConfig: rootSDS,
			}},
		},
	}
}

// userUpstream is Istio's constructUpstreamTLS for SIMPLE and MUTUAL:
// with credentialName the certificate (MUTUAL) and the roots come from
// the gateway's SDS secrets `kubernetes://<name>` and
// `kubernetes://<name>-cacert` over ADS; otherwise from the files the
// rule names (Istio has its agent serve them as file-cert:/file-root:
// SDS secrets; here the proxy reads the files itself), the roots being
// the OS bundle when caCertificates is empty, as Istio's "system".
// insecureSkipVerify leaves the server unverified. HTTP/2 clusters
// offer ALPN h2.
func userUpstream(t *networking.ClientTLSSettings, seSANs []string, h2 bool) *tlsv3.UpstreamTlsContext {
	ctx := &tlsv3.UpstreamTlsContext{Sni: t.GetSni(), CommonTlsContext: &tlsv3.CommonTlsContext{TlsParams: upstreamTLSParams()}}
	common := ctx.CommonTlsContext
	sans := t.GetSubjectAltNames()
	if len(sans) == 0 {
		sans = seSANs
	}
	mutual := t.GetMode() == networking.ClientTLSSettings_MUTUAL
	skip := t.GetInsecureSkipVerify().GetValue()
	if cred := t.GetCredentialName(); cred != "" {
		if mutual {
			common.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{{Name: credentialPrefix + cred, SdsConfig: adsConfigSource()}}
		}
		if !skip {
			common.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: sanMatchers(sans)},
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: credentialPrefix + cred + "-cacert", SdsConfig: adsConfigSource()},
			}}
		}
	} else {
		if mutual {
			common.TlsCertificates = []*tlsv3.TlsCertificate{{
				CertificateChain: fileSource(t.GetClientCertificate()),
				PrivateKey:       fileSource(t.GetPrivateKey()),
			}}
		}
		if !skip {
			ca := t.GetCaCertificates()
			if ca == "" {
				ca = systemRootsFile
			}
			vc := &tlsv3.CertificateValidationContext{TrustedCa: fileSource(ca), MatchTypedSubjectAltNames: sanMatchers(sans)}
			if crl := t.GetCaCrl(); crl != "" {
				vc.Crl = fileSource(crl)
			}
			common.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc}
		}
	}
	if h2 {
		common.AlpnProtocols = alpnH2Only
	}
	return ctx
}

// setAutoSNI is Istio's setAutoSniAndAutoSanValidation (ENABLE_AUTO_SNI,
// on by default): without an explicit sni the proxy sends the request's
// host as SNI, and without SANs (nor insecureSkipVerify) checks the
// server certificate against it.
func setAutoSNI(c *clusterv3.Cluster, t *networking.ClientTLSSettings) {
	var hpo httpv3.HttpProtocolOptions
	if a := c.GetTypedExtensionProtocolOptions()[httpProtocolOptionsKey]; a != nil {
		if err := a.UnmarshalTo(&hpo); err != nil {
			return
		}
	}
	hpo.UpstreamHttpProtocolOptions = &corev3.UpstreamHttpProtocolOptions{
		AutoSni:           true,
		AutoSanValidation: len(t.GetSubjectAltNames()) == 0 && !t.GetInsecureSkipVerify().GetValue(),
	}
	if hpo.UpstreamProtocolOptions == nil {
		// Envoy requires the upstream protocol alongside; HTTP/1.1 is
		// what these clusters speak unless told otherwise.
		hpo.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}},
		}}
	}
	if c.TypedExtensionProtocolOptions == nil {
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{}
	}
	c.TypedExtensionProtocolOptions[httpProtocolOptionsKey] = mustAny(&hpo)
}

// sanMatchers are Istio's util.StringToExactMatch as typed matchers. Istio
// sends the untyped match_subject_alt_names, which Envoy applies to every
// SAN type; a SPIFFE ID can only be a URI SAN, so it is matched as one,
// and any other name is matched as each type Envoy would try (DNS, URI,
// email, IP address), which is what the untyped field means.
func sanMatchers(sans []string) []*tlsv3.SubjectAltNameMatcher {
	var out []*tlsv3.SubjectAltNameMatcher
	for _, s := range sans {
		exact := &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
		if strings.HasPrefix(s, spiffePrefix) {
			out = append(out, &tlsv3.SubjectAltNameMatcher{SanType: tlsv3.SubjectAltNameMatcher_URI, Matcher: exact})
			continue
		}
		types := []tlsv3.SubjectAltNameMatcher_SanType{tlsv3.SubjectAltNameMatcher_DNS, tlsv3.SubjectAltNameMatcher_URI, tlsv3.SubjectAltNameMatcher_EMAIL}
		if _, err := netip.ParseAddr(s); err == nil {
			types = append(types, tlsv3.SubjectAltNameMatcher_IP_ADDRESS)
		}
		for _, t := range types {
			out = append(out, &tlsv3.SubjectAltNameMatcher{SanType: t, Matcher: exact})
		}
	}
	return out
}

// drTLSMode is Istio's tlsModeForDestinationRule (mtls_checker.go): the
// mode a DestinationRule pins for a cluster's port, from the subset's own
// traffic policy for a subset cluster (not merged with the top level, as
// Istio), nil when it pins none.
func drTLSMode(dr *destinationRule, subset string, port uint32) *networking.ClientTLSSettings_TLSmode {
	if dr == nil {
		return nil
	}
	tp := dr.spec.GetTrafficPolicy()
	if subset != "" {
		tp = nil
		for _, ss := range dr.subsets() {
			if ss.GetName() == subset {
				tp = ss.GetTrafficPolicy()
				break
			}
		}
	}
	if tp == nil {
		return nil
	}
	var mode *networking.ClientTLSSettings_TLSmode
	if tp.GetTls() != nil {
		m := tp.GetTls().GetMode()
		mode = &m
	}
	for _, pls := range tp.GetPortLevelSettings() {
		if pls.GetPort().GetNumber() == port && pls.GetTls() != nil {
			m := pls.GetTls().GetMode()
			mode = &m
			break
		}
	}
	return mode
}

// tlsMarker tells whether an endpoint (its namespace, labels and port) gets
// the tlsMode metadata.
type tlsMarker func(ns string, labels map[string]string, targetPort uint32) bool

// tlsMarker is the marker for the endpoints of one cluster: the service
// port and subset decide which DestinationRule mode, if any, is pinned.
func (x *index) tlsMarker(dr *destinationRule, subset string, p registry.Port) tlsMarker {
	drMode := drTLSMode(dr, subset, p.Port)
	return func(ns string, labels map[string]string, targetPort uint32) bool {
		return x.endpointTLS(ns, labels, targetPort, drMode)
	}
}

// endpointMetadata is an endpoint's metadata: the tlsMode match for
// mTLS-capable ones (shared, never mutated), none otherwise.
func endpointMetadata(tls bool) *corev3.Metadata {
	if tls {
		return tlsModeMetadata
	}
	return nil
}

// workloadAssignment is the load assignment of a cluster over pods, one
// locality, each endpoint with its tlsMode metadata.
func workloadAssignment(cluster string, eps []registry.Workload, port uint32, mark tlsMarker) *endpointv3.ClusterLoadAssignment {
	lbs := make([]*endpointv3.LbEndpoint, 0, len(eps))
	for _, w := range eps {
		lbs = append(lbs, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: socketAddress(w.IP.String(), port),
			}},
			HealthStatus: corev3.HealthStatus_HEALTHY,
			Metadata:     endpointMetadata(mark(w.Namespace, w.Labels, port)),
		})
	}
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: cluster,
		Endpoints:   []*endpointv3.LocalityLbEndpoints{{Locality: &corev3.Locality{}, LbEndpoints: lbs}},
	}
}

// endpointTLS is Istio's mtlsChecker.checkMtlsEnabled: a DestinationRule
// that pins a mode decides for every endpoint (only ISTIO_MUTUAL marks
// them); otherwise an endpoint is mTLS-capable when its pod has a
// sidecar (the tlsMode label) and its own PeerAuthentication for the
// endpoint (target) port is not DISABLE.
func (x *index) endpointTLS(ns string, labels map[string]string, targetPort uint32, drMode *networking.ClientTLSSettings_TLSmode) bool {
	if drMode != nil {
		return *drMode == networking.ClientTLSSettings_ISTIO_MUTUAL
	}
	if labels[tlsModeLabel] != tlsModeIstio {
		return false
	}
	return x.peer.forWorkload(ns, labels).forPort(targetPort) != mtlsDisable
}
