package crd

import (
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
)

func TestCRDs(t *testing.T) {
	tests := []struct {
		name, group, kind string
		short             []string
		versions          []string
	}{
		{"virtualservices.networking.istio.io", "networking.istio.io", "VirtualService", []string{"vs"}, []string{"v1", "v1beta1", "v1alpha3"}},
		{"destinationrules.networking.istio.io", "networking.istio.io", "DestinationRule", []string{"dr"}, []string{"v1", "v1beta1", "v1alpha3"}},
		{"gateways.networking.istio.io", "networking.istio.io", "Gateway", []string{"gw"}, []string{"v1", "v1beta1", "v1alpha3"}},
		{"serviceentries.networking.istio.io", "networking.istio.io", "ServiceEntry", []string{"se"}, []string{"v1", "v1beta1", "v1alpha3"}},
		{"sidecars.networking.istio.io", "networking.istio.io", "Sidecar", nil, []string{"v1", "v1beta1", "v1alpha3"}},
		{"peerauthentications.security.istio.io", "security.istio.io", "PeerAuthentication", []string{"pa"}, []string{"v1", "v1beta1"}},
		{"authorizationpolicies.security.istio.io", "security.istio.io", "AuthorizationPolicy", []string{"ap"}, []string{"v1", "v1beta1"}},
		{"requestauthentications.security.istio.io", "security.istio.io", "RequestAuthentication", []string{"ra"}, []string{"v1", "v1beta1"}},
		{"telemetries.telemetry.istio.io", "telemetry.istio.io", "Telemetry", []string{"telemetry"}, []string{"v1", "v1alpha1"}},
	}
	byName := map[string]*apiextensionsv1.CustomResourceDefinition{}
	for _, c := range CRDs() {
		byName[c.Name] = c
	}
	if len(byName) != len(tests) {
		t.Errorf("CRDs() has %d CRDs; want %d", len(byName), len(tests))
	}
	for _, tt := range tests {
		c := byName[tt.name]
		if c == nil {
			t.Errorf("no CRD %s", tt.name)
			continue
		}
		if c.Spec.Group != tt.group || c.Spec.Names.Kind != tt.kind || c.Spec.Scope != apiextensionsv1.NamespaceScoped {
			t.Errorf("%s: group %q kind %q scope %q", tt.name, c.Spec.Group, c.Spec.Names.Kind, c.Spec.Scope)
		}
		if strings.Join(c.Spec.Names.ShortNames, ",") != strings.Join(tt.short, ",") {
			t.Errorf("%s: short names %q; want %q", tt.name, c.Spec.Names.ShortNames, tt.short)
		}
		var got []string
		storage := 0
		for _, v := range c.Spec.Versions {
			got = append(got, v.Name)
			if !v.Served {
				t.Errorf("%s %s not served", tt.name, v.Name)
			}
			if v.Storage {
				storage++
				if v.Name != "v1" {
					t.Errorf("%s stores %s; want v1", tt.name, v.Name)
				}
			}
		}
		if strings.Join(got, ",") != strings.Join(tt.versions, ",") || storage != 1 {
			t.Errorf("%s: versions %q with %d storage versions; want %q with one", tt.name, got, storage, tt.versions)
		}
	}
}

// at follows a path of property names ("[]" for array items, "{}" for map
// values) through a schema.
func at(t *testing.T, s apiextensionsv1.JSONSchemaProps, path string) apiextensionsv1.JSONSchemaProps {
	t.Helper()
	for _, p := range strings.Split(path, ".") {
		switch p {
		case "[]":
			if s.Items == nil || s.Items.Schema == nil {
				t.Fatalf("%s: %q is not an array", path, p)
			}
			s = *s.Items.Schema
		case "{}":
			if s.AdditionalProperties == nil || s.AdditionalProperties.Schema == nil {
				t.Fatalf("%s: %q is not a map", path, p)
			}
			s = *s.AdditionalProperties.Schema
		default:
			next, ok := s.Properties[p]
			if !ok {
				t.Fatalf("%s: no property %q", path, p)
			}
			s = next
		}
	}
	return s
}

func TestSchema(t *testing.T) {
	schemas := map[string]apiextensionsv1.JSONSchemaProps{}
	for _, c := range CRDs() {
		schemas[c.Spec.Names.Kind] = *c.Spec.Versions[0].Schema.OpenAPIV3Schema
	}
	tests := []struct {
		kind, path, typ, format string
		enum, nullable, keep    bool
	}{
		{"VirtualService", "spec.hosts.[]", "string", "", false, false, false},
		{"VirtualService", "spec.http.[].match.[].headers", "object", "", false, false, false},
		{"VirtualService", "spec.http.[].match.[].headers.{}.exact", "string", "", false, false, false},
		{"VirtualService", "spec.http.[].route.[].weight", "integer", "int32", false, false, false},
		{"VirtualService", "spec.http.[].fault.delay.fixedDelay", "string", "", false, false, false},
		{"VirtualService", "spec.http.[].fault.abort.percentage.value", "number", "double", false, false, false},
		{"VirtualService", "spec.http.[].retries.retryRemoteLocalities", "boolean", "", false, true, false},
		{"VirtualService", "spec.http.[].route.[].destination.port.number", "integer", "", false, false, false},
		{"DestinationRule", "spec.trafficPolicy.loadBalancer.simple", "string", "", true, false, false},
		{"DestinationRule", "spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests", "integer", "int32", false, false, false},
		{"DestinationRule", "spec.trafficPolicy.outlierDetection.consecutive5xxErrors", "integer", "", false, true, false},
		{"DestinationRule", "spec.subsets.[].labels.{}", "string", "", false, false, false},
		{"PeerAuthentication", "spec.mtls.mode", "string", "", true, false, false},
		{"AuthorizationPolicy", "spec.rules.[].when.[].values.[]", "string", "", false, false, false},
		{"Gateway", "spec.selector.{}", "string", "", false, false, false},
		{"VirtualService", "status", "object", "", false, false, true},
	}
	for _, tt := range tests {
		s := at(t, schemas[tt.kind], tt.path)
		keep := s.XPreserveUnknownFields != nil && *s.XPreserveUnknownFields
		if s.Type != tt.typ || s.Format != tt.format || (len(s.Enum) > 0) != tt.enum || s.Nullable != tt.nullable || keep != tt.keep {
			t.Errorf("%s %s: type %q format %q enum %d nullable %v preserve %v; want %q %q enum %v nullable %v preserve %v",
				tt.kind, tt.path, s.Type, s.Format, len(s.Enum), s.Nullable, keep, tt.typ, tt.format, tt.enum, tt.nullable, tt.keep)
		}
	}
	if got := string(at(t, schemas["PeerAuthentication"], "spec.mtls.mode").Enum[1].Raw); got != `"DISABLE"` {
		t.Errorf("PeerAuthentication mtls.mode enum[1] = %s; want \"DISABLE\"", got)
	}
}
