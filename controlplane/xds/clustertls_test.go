package xds

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/meshlab/meshlab/controlplane/registry"
)

// TestIstioMutualSocketBytes checks the shortcut istioMutualSocket takes:
// the cached encoding with the SNI appended is the message
// istioMutualUpstream builds with that SNI, byte for byte, so proxies
// and config dumps see exactly Istio's context.
func TestIstioMutualSocketBytes(t *testing.T) {
	x := newIndex(Input{})
	for _, tt := range []struct {
		sni  string
		sans []string
		h2   bool
	}{
		{"outbound_.9080_._.reviews.default.svc.cluster.local", []string{"spiffe://cluster.local/ns/default/sa/reviews"}, false},
		{"outbound_.9080_.v1_.reviews.default.svc.cluster.local", []string{"spiffe://cluster.local/ns/default/sa/reviews"}, false},
		{"custom", nil, true},
		{"", []string{"a", "spiffe://cluster.local/ns/a/sa/b"}, false},
	} {
		got := x.istioMutualSocket(istioTLSKey{sans: strings.Join(tt.sans, "\n"), h2: tt.h2}, tt.sni, tt.sans).GetTypedConfig()
		want, err := proto.Marshal(istioMutualUpstream(tt.sni, tt.sans, tt.h2))
		if err != nil {
			t.Fatal(err)
		}
		if string(got.GetValue()) != string(want) {
			t.Errorf("sni %q: cached encoding differs from the whole message's", tt.sni)
		}
		var ctx tlsv3.UpstreamTlsContext
		if err := got.UnmarshalTo(&ctx); err != nil || ctx.GetSni() != tt.sni {
			t.Errorf("sni %q: decodes to sni %q (%v)", tt.sni, ctx.GetSni(), err)
		}
	}
}

// TestAutoMTLSMatchesIstio builds the auto mTLS transport_socket_matches
// of a cluster istiod's own config dump has (testdata/istio, from Istio's
// repository) and compares them field by field. The one difference is
// deliberate: the SANs go in match_typed_subject_alt_names as URI
// matchers (the contract with the proxy) where istiod still sends the
// deprecated untyped match_subject_alt_names.
func TestAutoMTLSMatchesIstio(t *testing.T) {
	var fixture struct {
		Matches []json.RawMessage `json:"transport_socket_matches"`
	}
	readJSON(t, "testdata/istio/auto-mtls-cluster.json", &fixture)
	var want []*clusterv3.Cluster_TransportSocketMatch
	for _, raw := range fixture.Matches {
		m := &clusterv3.Cluster_TransportSocketMatch{}
		if err := protojson.Unmarshal(raw, m); err != nil {
			t.Fatal(err)
		}
		if m.GetTransportSocket().GetTypedConfig().GetTypeUrl() == upstreamTLSTypeURL {
			// Istio's untyped SANs, typed as this package sends them.
			var ctx tlsv3.UpstreamTlsContext
			if err := m.GetTransportSocket().GetTypedConfig().UnmarshalTo(&ctx); err != nil {
				t.Fatal(err)
			}
			dvc := ctx.GetCommonTlsContext().GetCombinedValidationContext().GetDefaultValidationContext()
			var sans []string
			for _, sm := range dvc.GetMatchSubjectAltNames() { //nolint:staticcheck // Istio's field, read to compare
				sans = append(sans, sm.GetExact())
			}
			dvc.MatchSubjectAltNames = nil //nolint:staticcheck // see above
			dvc.MatchTypedSubjectAltNames = sanMatchers(sans)
			m.GetTransportSocket().ConfigType = &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(&ctx)}
		}
		want = append(want, m)
	}

	x := newIndex(Input{Registry: registry.Snapshot{
		Services: []registry.Service{{Name: "productpage", Namespace: "default", VIP: netip.MustParseAddr("198.19.0.10"),
			Ports: []registry.Port{{Name: "http", Port: 9080}}, Selector: map[string]string{"app": "productpage"}}},
		Workloads: []registry.Workload{
			{Name: "productpage-v1-0", Namespace: "default", IP: netip.MustParseAddr("198.18.0.10"), ServiceAccount: "bookinfo-productpage",
				Labels: map[string]string{"app": "productpage", "version": "v1", tlsModeLabel: tlsModeIstio}, Ready: true},
			{Name: "productpage-v1-1", Namespace: "default", IP: netip.MustParseAddr("198.18.0.11"),
				Labels: map[string]string{"app": "productpage", "version": "v1"}, Ready: true},
		},
	}})
	s := x.byHost["productpage.default.svc.cluster.local"]
	c := edsCluster("outbound|9080|v1|productpage.default.svc.cluster.local")
	x.applyClusterTLS(c, clusterTLSOpts{svc: s, port: s.Ports[0], subset: "v1"})
	if len(c.GetTransportSocketMatches()) != len(want) {
		t.Fatalf("%d matches, want %d", len(c.GetTransportSocketMatches()), len(want))
	}
	for i, m := range c.GetTransportSocketMatches() {
		if !proto.Equal(normalizeAny(t, m), normalizeAny(t, want[i])) {
			got, _ := protojson.Marshal(m)
			exp, _ := protojson.Marshal(want[i])
			t.Errorf("match %d:\n got %s\nwant %s", i, got, exp)
		}
	}
}

// normalizeAny re-encodes a match's Any deterministically, so that equal
// messages compare equal whatever their field order on the wire.
func normalizeAny(t *testing.T, m *clusterv3.Cluster_TransportSocketMatch) *clusterv3.Cluster_TransportSocketMatch {
	t.Helper()
	m = proto.Clone(m).(*clusterv3.Cluster_TransportSocketMatch)
	a := m.GetTransportSocket().GetTypedConfig()
	if a == nil {
		return m
	}
	msg, err := a.UnmarshalNew()
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	a.Value = b
	return m
}
