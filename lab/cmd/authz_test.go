package cmd

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/xds"
)

func anyOf(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestAuthzCheckGolden: the control plane's translation of the policies
// for httpbin, on an HTTP and a TCP chain as a sidecar holds them, read
// back from a config dump as `x authz check` does.
func TestAuthzCheckGolden(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "authz", "policies.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := config.Parse("policies.yaml", b)
	if err != nil {
		t.Fatal(err)
	}
	f, err := xds.BuildAuthzFilters(rs, "foo", map[string]string{"app": "httpbin"}, xds.AuthzOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := &hcmv3.HttpConnectionManager{StatPrefix: "inbound_0.0.0.0_8080", HttpFilters: append(f.HTTP,
		&hcmv3.HttpFilter{Name: wellknown.Router, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: anyOf(t, &routerv3.Router{})}})}
	tcp := &tcpv3.TcpProxy{StatPrefix: "x", ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: "x"}}
	l := &listenerv3.Listener{Name: "virtualInbound", FilterChains: []*listenerv3.FilterChain{
		{Filters: []*listenerv3.Filter{{Name: wellknown.HTTPConnectionManager, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: anyOf(t, h)}}}},
		{Filters: append(f.TCP, &listenerv3.Filter{Name: wellknown.TCPProxy, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: anyOf(t, tcp)}})},
	}}
	dump := &adminv3.ConfigDump{Configs: []*anypb.Any{anyOf(t, &adminv3.ListenersConfigDump{DynamicListeners: []*adminv3.ListenersConfigDump_DynamicListener{{
		Name: l.Name, ActiveState: &adminv3.ListenersConfigDump_DynamicListenerState{Listener: anyOf(t, l)},
	}}})}}
	for _, format := range []string{"table", "json"} {
		t.Run(format, func(t *testing.T) {
			var out bytes.Buffer
			if err := printAuthzCheck(&out, dump, format); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "authz", "check."+format+".golden")
			if *updateGolden {
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test ./lab/cmd -run TestAuthzCheckGolden -update-golden)", err)
			}
			if !bytes.Equal(out.Bytes(), want) {
				t.Errorf("got\n%s\nwant\n%s", out.Bytes(), want)
			}
		})
	}
	var empty bytes.Buffer
	if err := printAuthzCheck(&empty, &adminv3.ConfigDump{}, "table"); err != nil || empty.String() != "ACTION   AuthorizationPolicy   RULES\n" {
		t.Errorf("no policies: %q, %v", empty.String(), err)
	}
}

func TestPolicyOfRule(t *testing.T) {
	for key, want := range map[string][2]string{
		"ns[foo]-policy[httpbin]-rule[1]":                                           {"httpbin.foo", "1"},
		"istio-ext-authz-ns[foo]-policy[ext]-rule[0]-deny-due-to-bad-CUSTOM-action": {"ext.foo", "0"},
		"something-else": {"something-else", ""},
	} {
		if n, r := policyOfRule(key); n != want[0] || r != want[1] {
			t.Errorf("policyOfRule(%q) = %q, %q; want %q, %q", key, n, r, want[0], want[1])
		}
	}
}
