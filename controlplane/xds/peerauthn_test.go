package xds

import (
	"fmt"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/meshlab/meshlab/controlplane/config"
)

func pa(ns, name string, sel map[string]string, mode security.PeerAuthentication_MutualTLS_Mode, ports map[uint32]security.PeerAuthentication_MutualTLS_Mode) *peerAuthn {
	spec := &security.PeerAuthentication{}
	if mode != security.PeerAuthentication_MutualTLS_UNSET {
		spec.Mtls = &security.PeerAuthentication_MutualTLS{Mode: mode}
	}
	if sel != nil {
		spec.Selector = &typev1beta1.WorkloadSelector{MatchLabels: sel}
	}
	if ports != nil {
		spec.PortLevelMtls = map[uint32]*security.PeerAuthentication_MutualTLS{}
		for p, m := range ports {
			spec.PortLevelMtls[p] = &security.PeerAuthentication_MutualTLS{Mode: m}
		}
	}
	return &peerAuthn{res: config.Resource{Kind: config.PeerAuthentication, Namespace: ns, Name: name, Spec: spec}, spec: spec}
}

// created sets when a policy was created: seconds after a fixed instant.
func created(p *peerAuthn, sec int) *peerAuthn {
	p.res.CreationTimestamp = time.Date(2026, 3, 1, 12, 0, sec, 0, time.UTC)
	return p
}

// TestPeerPolicy follows Istio's ComposePeerAuthentication and
// GetMutualTLSModeForPort (pilot/pkg/security/authn/policy_applier.go):
// workload > namespace > mesh, UNSET inheriting, the oldest of a level
// winning (by creation time, then name), port-level only from the
// workload policy.
func TestPeerPolicy(t *testing.T) {
	const (
		unset      = security.PeerAuthentication_MutualTLS_UNSET
		disable    = security.PeerAuthentication_MutualTLS_DISABLE
		permissive = security.PeerAuthentication_MutualTLS_PERMISSIVE
		strict     = security.PeerAuthentication_MutualTLS_STRICT
	)
	app := map[string]string{"app": "httpbin"}
	tests := []struct {
		name     string
		policies []*peerAuthn
		port     uint32
		want     mtlsMode
		wantNS   mtlsMode // namespaceMode("foo"): what auto mTLS infers
	}{
		{name: "none: PERMISSIVE", want: mtlsPermissive, wantNS: mtlsUnknown},
		{name: "mesh STRICT", policies: []*peerAuthn{pa(rootNamespace, "default", nil, strict, nil)}, want: mtlsStrict, wantNS: mtlsStrict},
		{name: "mesh UNSET is PERMISSIVE", policies: []*peerAuthn{pa(rootNamespace, "default", nil, unset, nil)}, want: mtlsPermissive, wantNS: mtlsPermissive},
		{name: "namespace overrides mesh", policies: []*peerAuthn{
			pa(rootNamespace, "default", nil, strict, nil), pa("foo", "default", nil, disable, nil)}, want: mtlsDisable, wantNS: mtlsDisable},
		{name: "namespace UNSET inherits mesh", policies: []*peerAuthn{
			pa(rootNamespace, "default", nil, strict, nil), pa("foo", "default", nil, unset, nil)}, want: mtlsStrict, wantNS: mtlsStrict},
		{name: "other namespace's policy does not apply", policies: []*peerAuthn{pa("bar", "default", nil, strict, nil)}, want: mtlsPermissive, wantNS: mtlsUnknown},
		{name: "workload overrides namespace", policies: []*peerAuthn{
			pa("foo", "default", nil, strict, nil), pa("foo", "httpbin", app, permissive, nil)}, want: mtlsPermissive, wantNS: mtlsStrict},
		{name: "workload selector not matching", policies: []*peerAuthn{
			pa("foo", "default", nil, strict, nil), pa("foo", "other", map[string]string{"app": "other"}, disable, nil)}, want: mtlsStrict, wantNS: mtlsStrict},
		{name: "workload UNSET inherits namespace", policies: []*peerAuthn{
			pa("foo", "default", nil, disable, nil), pa("foo", "httpbin", app, unset, nil)}, want: mtlsDisable, wantNS: mtlsDisable},
		{name: "root namespace selector ignored", policies: []*peerAuthn{
			pa(rootNamespace, "default", nil, strict, nil), pa(rootNamespace, "httpbin", app, disable, nil)}, want: mtlsStrict, wantNS: mtlsStrict},
		{name: "namespace tie: first by name wins", policies: []*peerAuthn{
			pa("foo", "b", nil, disable, nil), pa("foo", "a", nil, strict, nil)}, want: mtlsStrict, wantNS: mtlsStrict},
		{name: "mesh tie: first by name wins", policies: []*peerAuthn{
			pa(rootNamespace, "z", nil, disable, nil), pa(rootNamespace, "m", nil, strict, nil)}, want: mtlsStrict, wantNS: mtlsStrict},
		{name: "workload tie: first by name wins", policies: []*peerAuthn{
			pa("foo", "w2", app, disable, nil), pa("foo", "w1", app, strict, nil)}, want: mtlsStrict, wantNS: mtlsUnknown},
		{name: "namespace: the older wins though named later", policies: []*peerAuthn{
			created(pa("foo", "a-newer", nil, strict, nil), 5), created(pa("foo", "default", nil, disable, nil), 1)}, want: mtlsDisable, wantNS: mtlsDisable},
		{name: "mesh: the older wins though named later", policies: []*peerAuthn{
			created(pa(rootNamespace, "a-newer", nil, strict, nil), 5), created(pa(rootNamespace, "default", nil, permissive, nil), 1)}, want: mtlsPermissive, wantNS: mtlsPermissive},
		{name: "workload: the older wins though named later", policies: []*peerAuthn{
			created(pa("foo", "a-newer", app, disable, nil), 5), created(pa("foo", "httpbin", app, strict, nil), 1)}, want: mtlsStrict, wantNS: mtlsUnknown},
		{name: "workload: the older's port levels, not the newer's", port: 80, policies: []*peerAuthn{
			created(pa("foo", "a-newer", app, strict, map[uint32]security.PeerAuthentication_MutualTLS_Mode{80: disable}), 5),
			created(pa("foo", "httpbin", app, strict, nil), 1)}, want: mtlsStrict, wantNS: mtlsUnknown},
		{name: "same second: first by name", policies: []*peerAuthn{
			created(pa("foo", "b", nil, disable, nil), 3), created(pa("foo", "a", nil, strict, nil), 3)}, want: mtlsStrict, wantNS: mtlsStrict},
		{name: "port level overrides", port: 80, policies: []*peerAuthn{
			pa("foo", "default", nil, strict, nil), pa("foo", "httpbin", app, unset, map[uint32]security.PeerAuthentication_MutualTLS_Mode{80: disable})}, want: mtlsDisable, wantNS: mtlsStrict},
		{name: "port level for another port", port: 81, policies: []*peerAuthn{
			pa("foo", "default", nil, strict, nil), pa("foo", "httpbin", app, unset, map[uint32]security.PeerAuthentication_MutualTLS_Mode{80: disable})}, want: mtlsStrict, wantNS: mtlsStrict},
		{name: "port level UNSET inherits workload", port: 80, policies: []*peerAuthn{
			pa("foo", "default", nil, strict, nil), pa("foo", "httpbin", app, permissive, map[uint32]security.PeerAuthentication_MutualTLS_Mode{80: unset})}, want: mtlsPermissive, wantNS: mtlsStrict},
		{name: "port level on a namespace policy ignored", port: 80, policies: []*peerAuthn{
			pa("foo", "default", nil, strict, map[uint32]security.PeerAuthentication_MutualTLS_Mode{80: disable})}, want: mtlsStrict, wantNS: mtlsStrict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := newPeerAuthns(tt.policies)
			got := x.forWorkload("foo", map[string]string{"app": "httpbin", "version": "v1"}).forPort(tt.port)
			if got != tt.want {
				t.Errorf("mode for port %d = %v, want %v", tt.port, got, tt.want)
			}
			if ns := x.namespaceMode("foo"); ns != tt.wantNS {
				t.Errorf("namespaceMode = %v, want %v", ns, tt.wantNS)
			}
		})
	}
}

// TestInboundChains checks the filter chains per mode and protocol
// against Istio's filterchain_options.go tables (HTTP, TCP, and Auto for
// the pass-through).
func TestInboundChains(t *testing.T) {
	const (
		mtlsAll  = "istio,istio-peer-exchange,istio-http/1.0,istio-http/1.1,istio-h2"
		mtlsHTTP = "istio-http/1.0,istio-http/1.1,istio-h2"
	)
	tests := []struct {
		mode  mtlsMode
		proto string // http, tcp, auto
		want  []string
	}{
		{mtlsStrict, "http", []string{"http mtls tls"}},
		{mtlsStrict, "tcp", []string{"tcp mtls tls"}},
		{mtlsStrict, "auto", []string{"http mtls tls " + mtlsHTTP, "tcp mtls tls"}},
		{mtlsPermissive, "http", []string{"http mtls tls " + mtlsAll, "http - raw_buffer"}},
		{mtlsPermissive, "tcp", []string{"tcp mtls tls " + mtlsAll, "tcp - tls", "tcp - raw_buffer"}},
		{mtlsPermissive, "auto", []string{"http mtls tls " + mtlsHTTP, "http - raw_buffer http/1.1,h2c", "tcp mtls tls istio-peer-exchange,istio", "tcp - raw_buffer", "tcp - tls"}},
		{mtlsDisable, "http", []string{"http - raw_buffer"}},
		{mtlsDisable, "tcp", []string{"tcp - raw_buffer"}},
		{mtlsDisable, "auto", []string{"http - raw_buffer http/1.1,h2c", "tcp - raw_buffer"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v/%s", tt.mode, tt.proto), func(t *testing.T) {
			opts := inboundChainOpts(tt.mode, tt.proto == "http")
			if tt.proto == "auto" {
				opts = passthroughChainOpts(tt.mode)
			}
			var got []string
			for _, o := range opts {
				s := "tcp "
				if o.http {
					s = "http "
				}
				if o.tls {
					s += "mtls "
				} else {
					s += "- "
				}
				s += o.transport
				if len(o.alpn) > 0 {
					s += " " + strings.Join(o.alpn, ",")
				}
				got = append(got, s)
				if ts := o.transportSocket(); (ts != nil) != o.tls {
					t.Errorf("chain %q: transport socket presence != tls", s)
				} else if ts != nil && (ts == inboundHTTPTLS) != o.http {
					t.Errorf("chain %q: HTTP chains get the HTTP context, TCP ones the TCP one", s)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("chains:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestMTLSChainsKeepAuthz: every inbound chain, mTLS or plaintext, of
// every port and of the pass-through, carries the AuthorizationPolicy
// filters, and every resource of the mTLS cases passes Envoy's
// validation down into its typed configs.
func TestMTLSChainsKeepAuthz(t *testing.T) {
	in, proxies := loadFixture(t, "testdata/cases/mtls-workload.json")
	in.Config = append(in.Config, config.Resource{Kind: config.AuthorizationPolicy, Namespace: "foo", Name: "deny-legacy",
		Spec: &security.AuthorizationPolicy{Action: security.AuthorizationPolicy_DENY, Rules: []*security.Rule{{
			From: []*security.Rule_From{{Source: &security.Source{Namespaces: []string{"legacy"}}}},
		}}}})
	p, err := ParseNodeID(proxies["httpbin-foo"])
	if err != nil {
		t.Fatal(err)
	}
	res, err := Build(in, p)
	if err != nil {
		t.Fatal(err)
	}
	checkValid(t, res)
	for _, rs := range res {
		for _, r := range rs {
			validateDeep(t, resourceName(r), r)
		}
	}
	var vi *listenerv3.Listener
	for _, r := range res[resource.ListenerType] {
		if l := r.(*listenerv3.Listener); l.GetName() == virtualInboundListener {
			vi = l
		}
	}
	if vi == nil {
		t.Fatal("no virtualInbound")
	}
	modes := map[string]int{}
	for i, fc := range vi.GetFilterChains() {
		modes[fc.GetFilterChainMatch().GetTransportProtocol()]++
		b, err := protojson.Marshal(fc)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "rbac") {
			t.Errorf("chain %d (%s, port %d, %s) has no RBAC filter", i, fc.GetName(), fc.GetFilterChainMatch().GetDestinationPort().GetValue(), fc.GetFilterChainMatch().GetTransportProtocol())
		}
	}
	if modes["tls"] == 0 || modes["raw_buffer"] == 0 {
		t.Errorf("want both mTLS and plaintext chains in this case, got %v", modes)
	}
}

// TestMTLSCasesValidateDeep: the TLS contexts the mTLS cases emit pass
// Envoy's own constraints (SNI length, enum values, required fields).
func TestMTLSCasesValidateDeep(t *testing.T) {
	for _, c := range []string{"mtls-auto", "mtls-dr", "mtls-mesh-strict", "mtls-namespace", "mtls-workload"} {
		in, proxies := loadFixture(t, "testdata/cases/"+c+".json")
		for name, id := range proxies {
			t.Run(c+"/"+name, func(t *testing.T) {
				p, err := ParseNodeID(id)
				if err != nil {
					t.Fatal(err)
				}
				res, err := Build(in, p)
				if err != nil {
					t.Fatal(err)
				}
				for _, rs := range res {
					for _, r := range rs {
						validateDeep(t, resourceName(r), r)
					}
				}
			})
		}
	}
}
