package xds

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	meshv1 "istio.io/api/mesh/v1alpha1"

	"github.com/meshlab/meshlab/controlplane/meshconfig"
)

// proxyConfigMetadata reads a node's PROXY_CONFIG metadata: a ProxyConfig
// as a JSON object (as Istio's agent sends it) or a string holding one
// (the istio-proxy container's PROXY_CONFIG env as written); nil when
// there is none.
func proxyConfigMetadata(v *structpb.Value) (*meshv1.ProxyConfig, map[string]struct{}, error) {
	var js []byte
	switch k := v.GetKind().(type) {
	case nil:
		return nil, nil, nil
	case *structpb.Value_StringValue:
		if k.StringValue == "" {
			return nil, nil, nil
		}
		js = []byte(k.StringValue)
	case *structpb.Value_StructValue:
		b, err := protojson.Marshal(k.StructValue)
		if err != nil {
			return nil, nil, fmt.Errorf("PROXY_CONFIG: %w", err)
		}
		js = b
	default:
		return nil, nil, fmt.Errorf("PROXY_CONFIG: want a ProxyConfig object, got %T", k)
	}
	return meshconfig.ParseProxyConfig(js)
}

// resolveProxyConfig is a proxy's ProxyConfig: the mesh's defaultConfig
// overlaid with its PROXY_CONFIG metadata (the pod's
// proxy.istio.io/config annotation), field by field as Istio merges them.
func resolveProxyConfig(def *meshv1.ProxyConfig, p Proxy) *meshv1.ProxyConfig {
	if def == nil {
		def = meshconfig.DefaultProxyConfig()
	}
	if p.proxyConfigMeta == nil {
		return def
	}
	return meshconfig.MergeProxyConfig(def, p.proxyConfigMeta, p.proxyConfigMetaSet)
}
