package meshconfig

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshlab/meshlab/controlplane/config"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name, yaml, wantErr string
		providers           int
	}{
		{name: "empty", yaml: ""},
		{name: "istio sample", yaml: `
extensionProviders:
- name: sample-ext-authz-grpc
  envoyExtAuthzGrpc:
    service: ext-authz.foo.svc.cluster.local
    port: 9000
- name: sample-ext-authz-http
  envoyExtAuthzHttp:
    service: ext-authz.foo.svc.cluster.local
    port: 8000
    includeRequestHeadersInCheck: ["x-ext-authz"]
    timeout: 1.5s
`, providers: 2},
		{name: "unknown field", yaml: "extensionProviders: [{name: a, envoyExtAuthzHttp: {service: s, port: 1, failopen: true}}]", wantErr: `unknown field "failopen"`},
		{name: "unknown top-level field", yaml: "enableTracingg: true", wantErr: `unknown field "enableTracingg"`},
		{name: "wrong type", yaml: "extensionProviders: [{name: a, envoyExtAuthzHttp: {service: s, port: eighty}}]", wantErr: "port"},
		{name: "bad duration", yaml: "extensionProviders: [{name: a, envoyExtAuthzGrpc: {service: s, port: 1, timeout: soon}}]", wantErr: "timeout"},
		{name: "duplicate name", yaml: "extensionProviders: [{name: a, envoyExtAuthzGrpc: {service: s, port: 1}}, {name: a, envoyExtAuthzGrpc: {service: s, port: 2}}]", wantErr: `extensionProviders[1].name: duplicate provider "a"`},
		{name: "empty name", yaml: "extensionProviders: [{envoyExtAuthzGrpc: {service: s, port: 1}}]", wantErr: "extensionProviders[0].name: must not be empty"},
		{name: "no service", yaml: "extensionProviders: [{name: a, envoyExtAuthzHttp: {port: 8000}}]", wantErr: "extensionProviders[0].envoyExtAuthzHttp.service: must not be empty"},
		{name: "bad port", yaml: "extensionProviders: [{name: a, envoyExtAuthzGrpc: {service: s, port: 70000}}]", wantErr: "extensionProviders[0].envoyExtAuthzGrpc.port: must be in [1, 65535]"},
		{name: "bad statusOnError", yaml: "extensionProviders: [{name: a, envoyExtAuthzGrpc: {service: s, port: 1, statusOnError: nope}}]", wantErr: "envoyExtAuthzGrpc.statusOnError"},
		{name: "relative pathPrefix", yaml: "extensionProviders: [{name: a, envoyExtAuthzHttp: {service: s, port: 1, pathPrefix: check}}]", wantErr: "envoyExtAuthzHttp.pathPrefix: must begin with /"},
		{name: "lone wildcard", yaml: "extensionProviders: [{name: a, envoyExtAuthzHttp: {service: s, port: 1, headersToUpstreamOnAllow: ['*']}}]", wantErr: "envoyExtAuthzHttp.headersToUpstreamOnAllow: a single wildcard"},
		{name: "not yaml", yaml: "extensionProviders: [", wantErr: "mesh config"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mc, err := Parse([]byte(tc.yaml))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := len(mc.GetExtensionProviders()); got != tc.providers {
				t.Errorf("%d providers, want %d", got, tc.providers)
			}
		})
	}
}

func cm(ns, name, mesh string) config.Resource {
	return config.Resource{Kind: config.ConfigMap, Namespace: ns, Name: name, Object: &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string]string{Key: mesh}}}
}

func TestCheckAndFind(t *testing.T) {
	bad := "extensionProviders: [{name: a, envoyExtAuthzHttp: {service: s, port: 1, bogus: 1}}]"
	if err := Check(cm("istio-system", "istio", bad)); err == nil || !strings.Contains(err.Error(), `configmap istio-system/istio key "mesh"`) || !strings.Contains(err.Error(), `"bogus"`) {
		t.Errorf("Check(bad mesh) = %v", err)
	}
	// Other ConfigMaps are the user's business.
	if err := Check(cm("default", "istio", bad)); err != nil {
		t.Errorf("Check(default/istio) = %v", err)
	}
	if err := Check(cm("istio-system", "other", bad)); err != nil {
		t.Errorf("Check(istio-system/other) = %v", err)
	}
	mc, err := Find([]config.Resource{cm("default", "istio", bad), cm("istio-system", "istio", "extensionProviders: [{name: a, envoyExtAuthzGrpc: {service: s, port: 1}}]")})
	if err != nil || len(mc.GetExtensionProviders()) != 4 { // Istio's three and a
		t.Errorf("Find = %v, %v", mc, err)
	}
	if mc, err := Find(nil); mc != nil || err != nil {
		t.Errorf("Find(nil) = %v, %v", mc, err)
	}
}
