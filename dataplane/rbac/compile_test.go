package rbac

import (
	"net/netip"
	"strings"
	"testing"

	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacpb "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routepb "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbachttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	rbacnet "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	matcherpb "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestCompileRefuses: anything the engine cannot enforce is an error naming
// it, so the proxy NACKs the filter rather than fail open.
func TestCompileRefuses(t *testing.T) {
	one := func(perm *rbacpb.Permission, id *rbacpb.Principal) *rbachttp.RBAC {
		if perm == nil {
			perm = permAny()
		}
		if id == nil {
			id = idAny()
		}
		return httpFilter(rbacpb.RBAC_ALLOW, map[string]*rbacpb.Policy{"p": {
			Permissions: []*rbacpb.Permission{perm}, Principals: []*rbacpb.Principal{id}}})
	}
	withUnknown := one(nil, nil)
	withUnknown.Rules.Policies["p"].ProtoReflect().SetUnknown(protowire.AppendTag(nil, 99, protowire.VarintType))
	withUnknown.Rules.Policies["p"].ProtoReflect().SetUnknown(protowire.AppendVarint(withUnknown.Rules.Policies["p"].ProtoReflect().GetUnknown(), 1))
	notTemplate, _ := anypb.New(wrapperspb.String("x"))
	cases := []struct {
		name string
		cfg  *rbachttp.RBAC
		want string
	}{
		{"matcher tree", setEmpty(&rbachttp.RBAC{}, "matcher"), "envoy.extensions.filters.http.rbac.v3.RBAC.matcher is not supported"},
		{"shadow matcher tree", setEmpty(&rbachttp.RBAC{}, "shadow_matcher"), "shadow_matcher is not supported"},
		{"CEL condition", func() *rbachttp.RBAC {
			c := one(nil, nil)
			setEmpty(c.Rules.Policies["p"], "condition")
			return c
		}(), "envoy.config.rbac.v3.Policy.condition is not supported"},
		{"audit logging options", func() *rbachttp.RBAC {
			c := one(nil, nil)
			c.Rules.AuditLoggingOptions = &rbacpb.RBAC_AuditLoggingOptions{}
			return c
		}(), "audit_logging_options is not supported"},
		{"permission matcher extension", one(&rbacpb.Permission{Rule: &rbacpb.Permission_Matcher{
			Matcher: &corepb.TypedExtensionConfig{Name: "x", TypedConfig: notTemplate}}}, nil),
			`rules: policy "p": permissions[0]: envoy.config.rbac.v3.Permission.matcher is not supported`},
		{"filter_state principal (waypoints)", one(nil, &rbacpb.Principal{Identifier: &rbacpb.Principal_FilterState{
			FilterState: &matcherpb.FilterStateMatcher{Key: "io.istio.peer_principal",
				Matcher: &matcherpb.FilterStateMatcher_StringMatch{StringMatch: exact("x")}}}}),
			"filter_state is not supported (Istio emits"},
		{"custom principal", one(nil, &rbacpb.Principal{Identifier: &rbacpb.Principal_Custom{
			Custom: &corepb.TypedExtensionConfig{Name: "x", TypedConfig: notTemplate}}}), "Principal.custom is not supported"},
		{"nested deep in and/not", one(permAnd(permNot(permOr(&rbacpb.Permission{Rule: &rbacpb.Permission_Matcher{
			Matcher: &corepb.TypedExtensionConfig{Name: "x", TypedConfig: notTemplate}}}))), nil),
			"permissions[0].and_rules[0].not_rule.or_rules[0]: envoy.config.rbac.v3.Permission.matcher"},
		{"uri_template of another type", one(&rbacpb.Permission{Rule: &rbacpb.Permission_UriTemplate{
			UriTemplate: &corepb.TypedExtensionConfig{Name: "x", TypedConfig: notTemplate}}}, nil),
			"extension type.googleapis.com/google.protobuf.StringValue is not supported"},
		{"bad uri_template", one(uriTemplate("/a/**/*"), nil), "glob after text glob"},
		{"ignore_case on a regex", one(&rbacpb.Permission{Rule: &rbacpb.Permission_UrlPath{UrlPath: &matcherpb.PathMatcher{
			Rule: &matcherpb.PathMatcher_Path{Path: &matcherpb.StringMatcher{IgnoreCase: true,
				MatchPattern: &matcherpb.StringMatcher_SafeRegex{SafeRegex: &matcherpb.RegexMatcher{Regex: "/a"}}}}}}}, nil),
			"ignore_case has no effect for safe_regex"},
		{"bad regex", one(nil, authenticated(regex("(("))), "safe_regex"},
		{"string matcher extension", one(&rbacpb.Permission{Rule: &rbacpb.Permission_RequestedServerName{
			RequestedServerName: customString()}}, nil),
			"StringMatcher.custom is not supported"},
		{"route metadata", one(&rbacpb.Permission{Rule: &rbacpb.Permission_SourcedMetadata{SourcedMetadata: &rbacpb.SourcedMetadata{
			MetadataMatcher: &matcherpb.MetadataMatcher{Filter: "f", Path: []*matcherpb.MetadataMatcher_PathSegment{
				{Segment: &matcherpb.MetadataMatcher_PathSegment_Key{Key: "k"}}}, Value: strValue(exact("v"))},
			MetadataSource: rbacpb.MetadataSource_ROUTE}}}, nil), "metadata_source ROUTE is not supported"},
		{"header string matcher extension", one(nil, &rbacpb.Principal{Identifier: &rbacpb.Principal_Header{Header: &routepb.HeaderMatcher{
			Name: "x", HeaderMatchSpecifier: &routepb.HeaderMatcher_StringMatch{StringMatch: customString()}}}}),
			"custom is not supported"},
		{"CIDR prefix too long", one(nil, &rbacpb.Principal{Identifier: &rbacpb.Principal_DirectRemoteIp{DirectRemoteIp: &corepb.CidrRange{
			AddressPrefix: "10.0.0.1", PrefixLen: wrapperspb.UInt32(33)}}}), "prefix longer than the address"},
		{"CIDR not an address", one(nil, &rbacpb.Principal{Identifier: &rbacpb.Principal_RemoteIp{RemoteIp: &corepb.CidrRange{
			AddressPrefix: "ten.0.0.1"}}}), `cidr "ten.0.0.1"`},
		{"empty prefix (Envoy's validation)", one(&rbacpb.Permission{Rule: &rbacpb.Permission_RequestedServerName{
			RequestedServerName: prefix("")}}, nil), "Prefix"},
		{"policy without principals", httpFilter(rbacpb.RBAC_ALLOW, map[string]*rbacpb.Policy{"p": {
			Permissions: []*rbacpb.Permission{permAny()}}}), "Principals"},
		{"unknown wire field", withUnknown, "carries fields unknown to this proxy"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Compile(c.cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
	if _, err := CompileNetwork(setEmpty(&rbacnet.RBAC{StatPrefix: "tcp."}, "matcher")); err == nil ||
		!strings.Contains(err.Error(), "envoy.extensions.filters.network.rbac.v3.RBAC.matcher is not supported") {
		t.Errorf("network matcher: %v", err)
	}
}

// TestCompileAcceptsNeighbours: fields Istio does not emit today but that
// are plain to enforce compile and behave as Envoy's.
func TestCompileAcceptsNeighbours(t *testing.T) {
	e, err := Compile(httpFilter(rbacpb.RBAC_ALLOW, map[string]*rbacpb.Policy{"p": {
		Permissions: []*rbacpb.Permission{{Rule: &rbacpb.Permission_DestinationPortRange{
			DestinationPortRange: &typev3.Int32Range{Start: 8000, End: 8100}}}},
		Principals: []*rbacpb.Principal{{Identifier: &rbacpb.Principal_SourceIp{SourceIp: cidr("10.0.0.0/8")}}}, //nolint:staticcheck // Envoy still enforces source_ip
	}}))
	if err != nil {
		t.Fatal(err)
	}
	r := mtls(sleepFoo)
	if !e.Allowed(&r).Allowed {
		t.Error("8080 from 10.244.0.12 not in [8000, 8100) from 10/8")
	}
	r.Destination = netip.AddrPortFrom(r.Destination.Addr(), 8100)
	if e.Allowed(&r).Allowed {
		t.Error("8100 is outside [8000, 8100)")
	}
}

// setEmpty sets a message field to its empty message, for fields whose types
// live in modules this package does not otherwise import.
func setEmpty[M proto.Message](m M, field protoreflect.Name) M {
	r := m.ProtoReflect()
	r.Mutable(r.Descriptor().Fields().ByName(field))
	return m
}

// customString is a StringMatcher with a (valid) custom extension.
func customString() *matcherpb.StringMatcher {
	m := &matcherpb.StringMatcher{}
	r := m.ProtoReflect()
	ext := r.Mutable(r.Descriptor().Fields().ByName("custom")).Message()
	ext.Set(ext.Descriptor().Fields().ByName("name"), protoreflect.ValueOfString("x"))
	a, err := anypb.New(wrapperspb.String("x"))
	if err != nil {
		panic(err)
	}
	ext.Set(ext.Descriptor().Fields().ByName("typed_config"), protoreflect.ValueOfMessage(a.ProtoReflect()))
	return m
}
