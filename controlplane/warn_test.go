package controlplane

import (
	"context"
	"strings"
	"testing"

	"github.com/meshlab/meshlab/controlplane/api"
)

// TestApplyRefusesUnenforceableAuthorizationPolicy: a policy the proxies
// could not enforce (CUSTOM without a provider name) is refused at apply,
// naming it, rather than found out when a proxy's build fails; so is a
// mesh config istiod would not load.
func TestApplyRefusesUnenforceableAuthorizationPolicy(t *testing.T) {
	_, cl := newTestServer(t, t.TempDir())
	const custom = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: foo}
spec:
  action: CUSTOM
  rules: [{to: [{operation: {paths: ["/admin"]}}]}]
`
	docs, err := api.Documents("ext.yaml", []byte(custom), "default")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Apply(context.Background(), api.ApplyRequest{Documents: docs}); err == nil ||
		!strings.Contains(err.Error(), "ext.yaml: document 1: authorization policy foo/ext: `provider.name` must not be empty") {
		t.Fatalf("apply of a CUSTOM policy: %v", err)
	}
	const mesh = `apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    extensionProviders:
    - name: x
      envoyExtAuthzHttp: {service: a.b.svc.cluster.local, port: 8000, failOpn: true}
`
	docs, err = api.Documents("mesh.yaml", []byte(mesh), "default")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Apply(context.Background(), api.ApplyRequest{Documents: docs}); err == nil ||
		!strings.Contains(err.Error(), `mesh.yaml: document 1: configmap istio-system/istio key "mesh": mesh config`) || !strings.Contains(err.Error(), `unknown field "failOpn"`) {
		t.Fatalf("apply of a bad mesh config: %v", err)
	}
}

// TestApplyChecksTelemetryProviders: a Telemetry naming a provider the
// mesh config does not define is refused, naming the field; the built-ins
// pass, and so does a provider the same batch's mesh config defines.
func TestApplyChecksTelemetryProviders(t *testing.T) {
	_, cl := newTestServer(t, t.TempDir())
	apply := func(name, yaml string) error {
		t.Helper()
		docs, err := api.Documents(name, []byte(yaml), "default")
		if err != nil {
			t.Fatal(err)
		}
		_, err = cl.Apply(context.Background(), api.ApplyRequest{Documents: docs})
		return err
	}
	const tel = `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging: [{providers: [{name: envoy}]}]
  tracing: [{providers: [{name: zipkin}], randomSamplingPercentage: 100}]
`
	if err := apply("tel.yaml", tel); err == nil || !strings.Contains(err.Error(), `tel.yaml: document 1: telemetry istio-system/mesh-default: spec.tracing[0].providers[0].name: provider "zipkin" is not among the mesh config's extensionProviders (prometheus, stackdriver, envoy)`) {
		t.Fatalf("apply of a Telemetry naming an undefined provider: %v", err)
	}
	const mesh = `apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    extensionProviders:
    - name: zipkin
      zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}
---
`
	if err := apply("both.yaml", mesh+tel); err != nil {
		t.Fatalf("apply of the mesh config defining the provider with the Telemetry: %v", err)
	}
	if err := apply("tel.yaml", tel); err != nil {
		t.Fatalf("apply of the Telemetry once the stored mesh config defines its provider: %v", err)
	}
}
