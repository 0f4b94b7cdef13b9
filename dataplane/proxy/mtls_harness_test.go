package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/netip"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// testCA is a mesh CA minted in the test: a self-signed root that signs
// workload certificates with a SPIFFE URI SAN, as istiod's CA does.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
	pem  []byte
}

var serials atomic.Int64

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serials.Add(1)), Subject: pkix.Name{Organization: []string{"cluster.local"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue signs a workload certificate for spiffeID, as istiod does: the
// URI SAN and nothing else, empty subject, server and client auth,
// NotBefore backdated 2 minutes.
func (ca *testCA) issue(t testing.TB, spiffeID string) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(spiffeID)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serials.Add(1)),
		NotBefore:    time.Now().Add(-2 * time.Minute), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{u},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// testIdentity is the proxy's Identity as the identity helper's agent
// will be: a certificate that rotation swaps, and roots.
type testIdentity struct {
	cert  atomic.Pointer[tls.Certificate]
	roots atomic.Pointer[x509.CertPool]
	calls atomic.Int64
}

func newTestIdentity(cert *tls.Certificate, roots *x509.CertPool) *testIdentity {
	id := &testIdentity{}
	id.cert.Store(cert)
	id.roots.Store(roots)
	return id
}

func (id *testIdentity) Certificate() (*tls.Certificate, error) {
	id.calls.Add(1)
	return id.cert.Load(), nil
}

func (id *testIdentity) Roots() (*x509.CertPool, error) { return id.roots.Load(), nil }

const (
	spiffeProductpage = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
	spiffeReviews     = "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
)

// sdsGRPC is how Istio's config names the agent's SDS server: the static
// cluster sds-grpc, never ADS.
func sdsGRPC() *corev3.ConfigSource {
	return &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V3, ConfigSourceSpecifier: &corev3.ConfigSource_ApiConfigSource{
		ApiConfigSource: &corev3.ApiConfigSource{ApiType: corev3.ApiConfigSource_GRPC, TransportApiVersion: corev3.ApiVersion_V3,
			GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: "sds-grpc"}}}}}}}
}

// istioCommonTLS is the common_tls_context istiod gives sidecars: the
// "default" certificate and "ROOTCA" validation over SDS, with sans
// (exact URI matchers) in the default validation context.
func istioCommonTLS(alpn []string, sans ...string) *tlsv3.CommonTlsContext {
	var ms []*tlsv3.SubjectAltNameMatcher
	for _, s := range sans {
		ms = append(ms, &tlsv3.SubjectAltNameMatcher{SanType: tlsv3.SubjectAltNameMatcher_URI,
			Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}})
	}
	return &tlsv3.CommonTlsContext{
		TlsParams:                      &tlsv3.TlsParameters{TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_2, TlsMaximumProtocolVersion: tlsv3.TlsParameters_TLSv1_3},
		AlpnProtocols:                  alpn,
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: "default", SdsConfig: sdsGRPC()}},
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
			DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: ms},
			ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: "ROOTCA", SdsConfig: sdsGRPC()},
		}},
	}
}

// istioUpstreamTLS is the client side of ISTIO_MUTUAL.
func istioUpstreamTLS(sni string, alpn []string, sans ...string) *corev3.TransportSocket {
	return &corev3.TransportSocket{Name: wellknown.TransportSocketTLS, ConfigType: &corev3.TransportSocket_TypedConfig{
		TypedConfig: mustAny(&tlsv3.UpstreamTlsContext{Sni: sni, CommonTlsContext: istioCommonTLS(alpn, sans...)})}}
}

// autoMTLS sets Istio's transport_socket_matches on c (auto mTLS).
func autoMTLS(c *clusterv3.Cluster, sni string, alpn []string, sans ...string) *clusterv3.Cluster {
	c.TransportSocketMatches = []*clusterv3.Cluster_TransportSocketMatch{
		{Name: "tlsMode-istio", Match: mustStruct(map[string]any{"tlsMode": "istio"}), TransportSocket: istioUpstreamTLS(sni, alpn, sans...)},
		{Name: "tlsMode-disabled", Match: &structpb.Struct{}, TransportSocket: &corev3.TransportSocket{Name: wellknown.TransportSocketRawBuffer}},
	}
	return c
}

func mustStruct(m map[string]any) *structpb.Struct {
	s, err := structpb.NewStruct(m)
	if err != nil {
		panic(err)
	}
	return s
}

// meshEndpoints is an EDS assignment whose endpoints with istio set carry
// Istio's tlsMode metadata.
func meshEndpoints(cluster string, eps map[netip.AddrPort]bool) *endpointv3.ClusterLoadAssignment {
	la := cla(cluster)
	for e, istio := range eps {
		lb := &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: sockAddr(e.Addr().String(), uint32(e.Port()))}}, HealthStatus: corev3.HealthStatus_HEALTHY}
		if istio {
			lb.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
				"envoy.transport_socket_match": mustStruct(map[string]any{"tlsMode": "istio"})}}
		}
		la.Endpoints = []*endpointv3.LocalityLbEndpoints{{LbEndpoints: append(la.GetEndpoints()[0].GetLbEndpoints(), lb)}}
	}
	return la
}

var (
	istioOutboundALPN = []string{"istio-peer-exchange", "istio"}
	istioInboundHTTP  = []string{"istio-http/1.0", "istio-http/1.1", "istio-h2"}
	istioInboundTCP   = []string{"istio-peer-exchange", "istio"}
)

// inboundHCM is the server sidecar's connection manager for port 9080:
// XFCC as Istio sets it on inbound, then filters (RBAC), then the router.
func inboundHCM(cluster string, filters ...*hcmv3.HttpFilter) *listenerv3.Filter {
	h := &hcmv3.HttpConnectionManager{
		StatPrefix:                  "inbound_0.0.0.0_9080",
		ForwardClientCertDetails:    hcmv3.HttpConnectionManager_APPEND_FORWARD,
		SetCurrentClientCertDetails: &hcmv3.HttpConnectionManager_SetCurrentClientCertDetails{Subject: wrapperspb.Bool(true), Dns: true, Uri: true},
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{Name: cluster,
			VirtualHosts: []*routev3.VirtualHost{{Name: "inbound|http|9080", Domains: []string{"*"},
				Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster(cluster)}}}}}},
		HttpFilters: append(filters, &hcmv3.HttpFilter{Name: wellknown.Router, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})}}),
	}
	return &listenerv3.Filter{Name: wellknown.HTTPConnectionManager, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(h)}}
}

// istioDownstreamTLS is the server side of Istio's mTLS on an inbound chain.
func istioDownstreamTLS(alpn []string) *corev3.TransportSocket {
	return &corev3.TransportSocket{Name: wellknown.TransportSocketTLS, ConfigType: &corev3.TransportSocket_TypedConfig{
		TypedConfig: mustAny(&tlsv3.DownstreamTlsContext{RequireClientCertificate: wrapperspb.Bool(true), CommonTlsContext: istioCommonTLS(alpn)})}}
}

// inboundListener is the server sidecar's virtualInbound for one port as
// Istio builds it per PeerAuthentication mode: STRICT has only the
// mTLS chain (transport tls, Istio's ALPN); PERMISSIVE adds a plaintext
// chain (raw_buffer) with the same filters.
func inboundListener(mode string, filter *listenerv3.Filter, appALPN []string, serverALPN []string) *listenerv3.Listener {
	l := &listenerv3.Listener{Name: "virtualInbound", Address: sockAddr("127.0.0.1", 0),
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		ListenerFilters: []*listenerv3.ListenerFilter{{Name: wellknown.TlsInspector,
			ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&tlsinspectorv3.TlsInspector{})}}},
		FilterChains: []*listenerv3.FilterChain{{
			Name:             "0.0.0.0_9080_mtls",
			FilterChainMatch: &listenerv3.FilterChainMatch{TransportProtocol: "tls", ApplicationProtocols: appALPN},
			TransportSocket:  istioDownstreamTLS(serverALPN),
			Filters:          []*listenerv3.Filter{filter},
		}}}
	if mode == "PERMISSIVE" {
		l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{
			Name:             "0.0.0.0_9080_plaintext",
			FilterChainMatch: &listenerv3.FilterChainMatch{TransportProtocol: "raw_buffer"},
			Filters:          []*listenerv3.Filter{filter},
		})
	}
	return l
}
