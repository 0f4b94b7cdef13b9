package meshconfig

import (
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/meshlab/meshlab/controlplane/config"
)

// walkthroughValues are the meshConfig of the walkthrough's istiod values.
const walkthroughValues = `
enableTracing: true
enablePrometheusMerge: true
accessLogFile: /dev/stdout
defaultConfig:
  tracing:
    sampling: 100.0
    zipkin:
      address: zipkin.istio-system:9411
`

func TestFromHelmValues(t *testing.T) {
	tests := []struct {
		name, values, wantErr string
		check                 func(t *testing.T, mesh string)
	}{
		{name: "walkthrough", values: walkthroughValues, check: func(t *testing.T, mesh string) {
			mc, err := Apply([]byte(mesh))
			if err != nil {
				t.Fatal(err)
			}
			if got := mc.GetDefaultConfig().GetTracing().GetSampling(); got != 100 {
				t.Errorf("sampling = %v, want 100", got)
			}
			if got := mc.GetDefaultConfig().GetTracing().GetZipkin().GetAddress(); got != "zipkin.istio-system:9411" {
				t.Errorf("zipkin address = %q", got)
			}
			if got := mc.GetDefaultConfig().GetDiscoveryAddress(); got != "istiod.istio-system.svc:15012" {
				t.Errorf("discoveryAddress = %q, want the chart's", got)
			}
			if got := mc.GetDefaultProviders().GetMetrics(); len(got) != 1 || got[0] != "prometheus" {
				t.Errorf("defaultProviders.metrics = %v, want the chart's [prometheus]", got)
			}
			if mc.GetAccessLogFile() != "/dev/stdout" || !mc.GetEnableTracing() || !mc.GetEnablePrometheusMerge().GetValue() {
				t.Errorf("mesh = %v", mc)
			}
		}},
		{name: "own defaultProviders replace the chart's", values: "defaultProviders: {tracing: [zipkin]}\nextensionProviders: [{name: zipkin, zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}}]", check: func(t *testing.T, mesh string) {
			mc, err := Apply([]byte(mesh))
			if err != nil {
				t.Fatal(err)
			}
			if len(mc.GetDefaultProviders().GetMetrics()) != 0 || mc.GetDefaultProviders().GetTracing()[0] != "zipkin" {
				t.Errorf("defaultProviders = %v", mc.GetDefaultProviders())
			}
		}},
		{name: "nested values merge with the chart's", values: "defaultConfig: {holdApplicationUntilProxyStarts: true}", check: func(t *testing.T, mesh string) {
			var m map[string]any
			if err := yaml.Unmarshal([]byte(mesh), &m); err != nil {
				t.Fatal(err)
			}
			dc := m["defaultConfig"].(map[string]any)
			if dc["discoveryAddress"] != "istiod.istio-system.svc:15012" || dc["holdApplicationUntilProxyStarts"] != true {
				t.Errorf("defaultConfig = %v", dc)
			}
		}},
		{name: "misspelt field", values: "enableTracingg: true", wantErr: `unknown field "enableTracingg"`},
		{name: "mistyped nested field", values: "defaultConfig: {tracing: {sampling: lots}}", wantErr: `field "sampling"`},
		{name: "bad encoding", values: "accessLogEncoding: XML", wantErr: "accessLogEncoding"},
		{name: "zipkin provider without a port", values: "extensionProviders: [{name: z, zipkin: {service: zipkin.istio-system.svc.cluster.local}}]", wantErr: "extensionProviders[0].zipkin.port"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var v map[string]any
			if err := yaml.Unmarshal([]byte(tc.values), &v); err != nil {
				t.Fatal(err)
			}
			out, err := FromHelmValues(v)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "meshConfig") {
					t.Fatalf("err = %v, want it to name meshConfig and contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, string(out))
			// The ConfigMap made of it is the one istiod (and Check) reads.
			r := config.Resource{Kind: config.ConfigMap, Namespace: Namespace, Name: ConfigMapName, Object: ConfigMap(out)}
			if !IsMeshConfigMap(r) {
				t.Fatal("ConfigMap is not the mesh ConfigMap")
			}
			if err := Check(r); err != nil {
				t.Fatal(err)
			}
		})
	}
}
