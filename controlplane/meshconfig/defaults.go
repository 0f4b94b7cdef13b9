package meshconfig

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	meshv1 "istio.io/api/mesh/v1alpha1"
	"sigs.k8s.io/yaml"
)

// DefaultZipkinAddress is where Istio's proxies send spans unless told
// otherwise: the zipkin addon's Service in the istiod namespace.
const DefaultZipkinAddress = "zipkin." + Namespace + ":9411"

// DefaultTraceSampling is PILOT_TRACE_SAMPLING's default (pilot/pkg/features):
// the percentage of requests traced when nothing else says.
const DefaultTraceSampling = 1.0

// TraceSampling is istiod's PILOT_TRACE_SAMPLING, read from the control
// plane's environment as istiod reads it: a percentage in [0, 100],
// DefaultTraceSampling when unset or out of range.
var TraceSampling = traceSamplingFromEnv(os.Getenv("PILOT_TRACE_SAMPLING"))

func traceSamplingFromEnv(v string) float64 {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || f > 100 {
		return DefaultTraceSampling
	}
	return f
}

// DefaultProxyConfig is Istio 1.24's mesh.DefaultProxyConfig, in the
// fields meshlab reads or shows: a proxy's settings when neither the mesh
// config's defaultConfig nor its pod's proxy.istio.io/config says
// otherwise.
func DefaultProxyConfig() *meshv1.ProxyConfig {
	return &meshv1.ProxyConfig{
		ConfigPath:               "./etc/istio/proxy",
		ClusterName:              &meshv1.ProxyConfig_ServiceCluster{ServiceCluster: "istio-proxy"},
		DrainDuration:            durationpb.New(45 * time.Second),
		TerminationDrainDuration: durationpb.New(5 * time.Second),
		ProxyAdminPort:           15000,
		ControlPlaneAuthPolicy:   meshv1.AuthenticationPolicy_MUTUAL_TLS,
		DiscoveryAddress:         "istiod." + Namespace + ".svc:15012",
		Tracing: &meshv1.Tracing{Tracer: &meshv1.Tracing_Zipkin_{
			Zipkin: &meshv1.Tracing_Zipkin{Address: DefaultZipkinAddress},
		}},
		BinaryPath:     "/usr/local/bin/envoy",
		StatNameLength: 189,
		StatusPort:     15020,
		ProxyMetadata:  map[string]string{},
	}
}

// Default is Istio 1.24's mesh.DefaultMeshConfig in the fields meshlab
// reads: the mesh config of a mesh whose istio ConfigMap says nothing.
// Tracing is on with the legacy Zipkin address, access logging off,
// Prometheus merge on, and the three built-in extension providers
// (prometheus, stackdriver, envoy: a file access log to /dev/stdout)
// exist, though none is a default provider.
func Default() *meshv1.MeshConfig {
	return &meshv1.MeshConfig{
		EnableTracing:                  true,
		AccessLogFile:                  "",
		AccessLogEncoding:              meshv1.MeshConfig_TEXT,
		AccessLogFormat:                "",
		IngressService:                 "istio-ingressgateway",
		IngressControllerMode:          meshv1.MeshConfig_STRICT,
		IngressClass:                   "istio",
		TrustDomain:                    "cluster.local",
		TrustDomainAliases:             []string{},
		EnableAutoMtls:                 wrapperspb.Bool(true),
		OutboundTrafficPolicy:          &meshv1.MeshConfig_OutboundTrafficPolicy{Mode: meshv1.MeshConfig_OutboundTrafficPolicy_ALLOW_ANY},
		DefaultConfig:                  DefaultProxyConfig(),
		RootNamespace:                  Namespace,
		ProxyListenPort:                15001,
		ProxyInboundListenPort:         15006,
		ConnectTimeout:                 durationpb.New(10 * time.Second),
		DefaultServiceExportTo:         []string{"*"},
		DefaultVirtualServiceExportTo:  []string{"*"},
		DefaultDestinationRuleExportTo: []string{"*"},
		DnsRefreshRate:                 durationpb.New(60 * time.Second),
		EnablePrometheusMerge:          wrapperspb.Bool(true),
		DefaultProviders:               &meshv1.MeshConfig_DefaultProviders{},
		ExtensionProviders: []*meshv1.MeshConfig_ExtensionProvider{
			{Name: "prometheus", Provider: &meshv1.MeshConfig_ExtensionProvider_Prometheus{
				Prometheus: &meshv1.MeshConfig_ExtensionProvider_PrometheusMetricsProvider{},
			}},
			{Name: "stackdriver", Provider: &meshv1.MeshConfig_ExtensionProvider_Stackdriver{
				Stackdriver: &meshv1.MeshConfig_ExtensionProvider_StackdriverProvider{},
			}},
			{Name: "envoy", Provider: &meshv1.MeshConfig_ExtensionProvider_EnvoyFileAccessLog{
				EnvoyFileAccessLog: &meshv1.MeshConfig_ExtensionProvider_EnvoyFileAccessLogProvider{Path: "/dev/stdout"},
			}},
		},
	}
}

// Apply is istiod's ApplyMeshConfig (pkg/config/mesh): the YAML of the
// istio ConfigMap's mesh key overlaid on Default, strictly (an unknown
// or mistyped field is an error naming it). As in Istio, every top-level
// field the YAML names replaces the default's whole, except three that
// are merged: defaultConfig field by field (each of its top-level fields
// replaces the default's, `tracing: {sampling: 5}` dropping the default
// Zipkin address as Istio's own doc comment warns; proxyMetadata maps
// merge key by key), defaultProviders field by field, and
// extensionProviders by name (a provider named like a built-in replaces
// it, others are added).
func Apply(data []byte) (*meshv1.MeshConfig, error) {
	user, err := Parse(data) // strict, with field names in errors
	if err != nil {
		return nil, err
	}
	raw, err := topLevel(data)
	if err != nil {
		return nil, fmt.Errorf("mesh config: %w", err)
	}
	out := Default()
	for _, fd := range fields(user) {
		name := fd.JSONName()
		if _, ok := raw[name]; !ok {
			continue
		}
		switch name {
		case "defaultConfig":
			out.DefaultConfig = MergeProxyConfig(out.GetDefaultConfig(), user.GetDefaultConfig(), fieldNames(raw[name], &meshv1.ProxyConfig{}))
		case "defaultProviders":
			dp := out.GetDefaultProviders()
			in := user.GetDefaultProviders()
			set := fieldNames(raw[name], dp)
			if _, ok := set["tracing"]; ok {
				dp.Tracing = in.GetTracing()
			}
			if _, ok := set["metrics"]; ok {
				dp.Metrics = in.GetMetrics()
			}
			if _, ok := set["accessLogging"]; ok {
				dp.AccessLogging = in.GetAccessLogging()
			}
		case "extensionProviders":
			for _, p := range user.GetExtensionProviders() {
				replaced := false
				for i, q := range out.ExtensionProviders {
					if q.GetName() == p.GetName() {
						out.ExtensionProviders[i], replaced = p, true
					}
				}
				if !replaced {
					out.ExtensionProviders = append(out.ExtensionProviders, p)
				}
			}
		default:
			out.ProtoReflect().Set(fd, user.ProtoReflect().Get(fd))
		}
	}
	if err := validate(out); err != nil {
		return nil, fmt.Errorf("mesh config: %w", err)
	}
	return out, nil
}

// MergeProxyConfig is Istio's MergeProxyConfig: over base, each
// top-level field set names (JSON names, as written) is taken from
// overlay whole, except proxyMetadata, merged key by key. base is not
// changed.
func MergeProxyConfig(base, overlay *meshv1.ProxyConfig, set map[string]struct{}) *meshv1.ProxyConfig {
	out := proto.Clone(base).(*meshv1.ProxyConfig)
	if out == nil {
		out = &meshv1.ProxyConfig{}
	}
	for _, fd := range fields(overlay) {
		if _, ok := set[fd.JSONName()]; !ok {
			continue
		}
		if fd.JSONName() == "proxyMetadata" {
			md := map[string]string{}
			for k, v := range out.GetProxyMetadata() {
				md[k] = v
			}
			for k, v := range overlay.GetProxyMetadata() {
				md[k] = v
			}
			out.ProxyMetadata = md
			continue
		}
		if overlay.ProtoReflect().Has(fd) {
			out.ProtoReflect().Set(fd, overlay.ProtoReflect().Get(fd))
		} else {
			out.ProtoReflect().Clear(fd) // written as its zero value or null
		}
	}
	return out
}

// ParseProxyConfig reads a ProxyConfig (the proxy.istio.io/config
// annotation's YAML or JSON, or the PROXY_CONFIG node metadata) strictly,
// returning it and the top-level fields it sets.
func ParseProxyConfig(data []byte) (*meshv1.ProxyConfig, map[string]struct{}, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, nil, fmt.Errorf("proxy config: %w", err)
	}
	pc := &meshv1.ProxyConfig{}
	if string(js) == "null" {
		return pc, map[string]struct{}{}, nil
	}
	if err := protojson.Unmarshal(js, pc); err != nil {
		if f := fieldAt(js, err); f != "" {
			return nil, nil, fmt.Errorf("proxy config: field %q: %w", f, err)
		}
		return nil, nil, fmt.Errorf("proxy config: %w", err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(js, &raw); err != nil {
		return nil, nil, fmt.Errorf("proxy config: expected an object: %w", err)
	}
	set := make(map[string]struct{}, len(raw))
	for k := range raw {
		set[protoJSONName(pc, k)] = struct{}{}
	}
	return pc, set, nil
}

// topLevel are the top-level keys of a YAML object, by JSON name.
func topLevel(data []byte) (map[string]json.RawMessage, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, err
	}
	raw := map[string]json.RawMessage{}
	if string(js) == "null" {
		return raw, nil
	}
	if err := json.Unmarshal(js, &raw); err != nil {
		return nil, fmt.Errorf("expected an object: %w", err)
	}
	out := make(map[string]json.RawMessage, len(raw))
	for k, v := range raw {
		out[protoJSONName(&meshv1.MeshConfig{}, k)] = v
	}
	return out, nil
}

// fieldNames are an object's keys, as m's JSON names, as a set.
func fieldNames(js json.RawMessage, m proto.Message) map[string]struct{} {
	var raw map[string]json.RawMessage
	_ = json.Unmarshal(js, &raw) // validated by Parse already
	set := make(map[string]struct{}, len(raw))
	for k := range raw {
		set[protoJSONName(m, k)] = struct{}{}
	}
	return set
}
