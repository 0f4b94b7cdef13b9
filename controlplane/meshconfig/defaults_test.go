package meshconfig

import (
	"strings"
	"testing"
)

func TestApply(t *testing.T) {
	mc, err := Apply(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !mc.GetEnableTracing() || mc.GetDefaultConfig().GetTracing().GetZipkin().GetAddress() != DefaultZipkinAddress ||
		mc.GetAccessLogFile() != "" || mc.GetAccessLogEncoding().String() != "TEXT" || !mc.GetEnablePrometheusMerge().GetValue() ||
		mc.GetDefaultConfig().GetTracing().GetSampling() != 0 || len(mc.GetExtensionProviders()) != 3 {
		t.Errorf("defaults = %v", mc)
	}

	// Top-level fields replace; defaultConfig merges field by field;
	// proxyMetadata key by key; extensionProviders by name.
	mc, err = Apply([]byte(`
enableTracing: false
accessLogFile: /dev/stdout
defaultConfig:
  tracing: {sampling: 5}
  proxyMetadata: {A: "1"}
extensionProviders:
- name: envoy
  envoyFileAccessLog: {path: /tmp/log}
- name: zipkin
  zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}
`))
	if err != nil {
		t.Fatal(err)
	}
	if mc.GetEnableTracing() {
		t.Error("enableTracing: false did not override the default true")
	}
	if got := mc.GetDefaultConfig(); got.GetTracing().GetSampling() != 5 || got.GetTracing().GetZipkin() != nil {
		t.Errorf("defaultConfig.tracing = %v, want {sampling: 5} replacing the default (Istio replaces the field whole)", got.GetTracing())
	}
	if got := mc.GetDefaultConfig(); got.GetDiscoveryAddress() != "istiod.istio-system.svc:15012" || got.GetStatusPort() != 15020 || got.GetProxyMetadata()["A"] != "1" {
		t.Errorf("defaultConfig lost its other defaults: %v", got)
	}
	names := []string{}
	for _, p := range mc.GetExtensionProviders() {
		names = append(names, p.GetName())
	}
	if strings.Join(names, ",") != "prometheus,stackdriver,envoy,zipkin" || mc.GetExtensionProviders()[2].GetEnvoyFileAccessLog().GetPath() != "/tmp/log" {
		t.Errorf("extensionProviders = %v", mc.GetExtensionProviders())
	}
	for _, bad := range []struct{ yaml, want string }{
		{"defaultConfig: {tracing: {zipkn: {}}}", `unknown field "zipkn"`},
		{"defaultProviders: {metric: [prometheus]}", `unknown field "metric"`},
		{"accessLogEncoding: XML", "accessLogEncoding"},
	} {
		if _, err := Apply([]byte(bad.yaml)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Apply(%q) = %v, want an error containing %q", bad.yaml, err, bad.want)
		}
	}
}

func TestMergeProxyConfig(t *testing.T) {
	pc, set, err := ParseProxyConfig([]byte(`{"tracing":{"sampling":50},"holdApplicationUntilProxyStarts":true}`))
	if err != nil {
		t.Fatal(err)
	}
	got := MergeProxyConfig(Default().GetDefaultConfig(), pc, set)
	if got.GetTracing().GetSampling() != 50 || !got.GetHoldApplicationUntilProxyStarts().GetValue() || got.GetStatusPort() != 15020 {
		t.Errorf("merged = %v", got)
	}
	if _, _, err := ParseProxyConfig([]byte(`{"tracing":{"samplin":50}}`)); err == nil || !strings.Contains(err.Error(), "samplin") {
		t.Errorf("bad annotation: %v", err)
	}
}

func TestTraceSamplingFromEnv(t *testing.T) {
	for v, want := range map[string]float64{"": 1, "100": 100, "0.5": 0.5, "101": 1, "-1": 1, "lots": 1, "0": 0} {
		if got := traceSamplingFromEnv(v); got != want {
			t.Errorf("PILOT_TRACE_SAMPLING=%q: %v, want %v", v, got, want)
		}
	}
}
