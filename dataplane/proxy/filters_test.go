package proxy

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacpb "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// TestHTTPFilters: the connection manager's HTTP filters are read as
// Envoy's chain, and what the proxy does not implement is refused (the
// listener NACKed) unless marked optional: a skipped authorization filter
// would fail open.
func TestHTTPFilters(t *testing.T) {
	typed := func(m proto.Message) *hcmv3.HttpFilter_TypedConfig {
		a, err := anypb.New(m)
		if err != nil {
			t.Fatal(err)
		}
		return &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}
	}
	router := &hcmv3.HttpFilter{Name: wellknown.Router, ConfigType: typed(&routerv3.Router{})}
	fault := &hcmv3.HttpFilter{Name: wellknown.Fault, ConfigType: typed(&faultv3.HTTPFault{})}
	deny := &hcmv3.HttpFilter{Name: wellknown.HTTPRoleBasedAccessControl, ConfigType: typed(&rbachttpv3.RBAC{Rules: &rbacpb.RBAC{Action: rbacpb.RBAC_DENY}})}
	jwtOK := &hcmv3.HttpFilter{Name: "envoy.filters.http.jwt_authn", ConfigType: typed(&jwtv3.JwtAuthentication{Providers: map[string]*jwtv3.JwtProvider{
		"p": {Issuer: "i", JwksSourceSpecifier: &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: `{"keys":[]}`}}}}}})}
	jwtRemote := &hcmv3.HttpFilter{Name: "envoy.filters.http.jwt_authn", ConfigType: typed(&jwtv3.JwtAuthentication{Providers: map[string]*jwtv3.JwtProvider{
		"p": {Issuer: "i", JwksSourceSpecifier: &jwtv3.JwtProvider_RemoteJwks{RemoteJwks: &jwtv3.RemoteJwks{}}}}})}
	unknown := &hcmv3.HttpFilter{Name: "envoy.filters.http.wasm"}
	optional := &hcmv3.HttpFilter{Name: "envoy.filters.http.wasm", IsOptional: true}
	tests := []struct {
		name    string
		filters []*hcmv3.HttpFilter
		rbac    int
		wantErr string
	}{
		{"fault then router", []*hcmv3.HttpFilter{fault, router}, 0, ""},
		{"rbac compiled, in order", []*hcmv3.HttpFilter{deny, deny, router}, 2, ""},
		{"jwt_authn compiled before rbac", []*hcmv3.HttpFilter{jwtOK, deny, router}, 2, ""},
		{"jwt_authn it cannot enforce is refused", []*hcmv3.HttpFilter{jwtRemote, router}, 0, "remote_jwks is not supported"},
		{"an unknown filter is refused", []*hcmv3.HttpFilter{unknown, router}, 0, `"envoy.filters.http.wasm" is not one this proxy implements`},
		{"an optional unknown filter is skipped", []*hcmv3.HttpFilter{optional, router}, 0, ""},
		{"the router must be last", []*hcmv3.HttpFilter{router, fault}, 0, "the router must be the last filter"},
		{"no router", []*hcmv3.HttpFilter{fault}, 0, "the last must be the router"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h hcm
			err := h.filters(tt.filters, nil, nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("filters = %v; want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(h.authz) != tt.rbac {
				t.Fatalf("%d RBAC engines, want %d", len(h.authz), tt.rbac)
			}
		})
	}
}
