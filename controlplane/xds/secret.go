package xds

import (
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
)

// Secret is a TLS credential a Gateway's credentialName can name: the
// keys of a Kubernetes Secret of type kubernetes.io/tls (tls.crt,
// tls.key, and ca.crt for MUTUAL), in PEM.
type Secret struct {
	Namespace, Name string
	Cert, Key, CA   []byte
}

// gatewaySecrets are the SDS resources istiod's secret generator serves a
// gateway: for each `kubernetes://<name>` its listeners or clusters name, the Secret
// <name> of the gateway's namespace as a tls_certificate, and for
// `kubernetes://<name>-cacert` a validation_context with the ca.crt of
// Secret <name>-cacert, else of Secret <name>. Names without a Secret are
// left out (the proxy keeps waiting for them, as Envoy's listener warms).
func (x *index) gatewaySecrets(ns string, listeners, clusters []types.Resource) []types.Resource {
	byName := map[string]*Secret{}
	for i := range x.in.Secrets {
		if s := &x.in.Secrets[i]; s.Namespace == ns {
			byName[s.Name] = s
		}
	}
	var out []types.Resource
	for _, name := range sdsNames(listeners, clusters) {
		cred, ok := strings.CutPrefix(name, credentialPrefix)
		if !ok {
			continue
		}
		if s, ok := byName[cred]; ok && len(s.Cert) > 0 && len(s.Key) > 0 {
			out = append(out, &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
				CertificateChain: inlineBytes(s.Cert), PrivateKey: inlineBytes(s.Key),
			}}})
			continue
		}
		base, ok := strings.CutSuffix(cred, "-cacert")
		if !ok {
			continue
		}
		s, ok := byName[cred]
		if !ok || len(s.CA) == 0 {
			s, ok = byName[base]
		}
		if ok && len(s.CA) > 0 {
			out = append(out, &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa: inlineBytes(s.CA),
			}}})
		}
	}
	return out
}

func inlineBytes(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}

// sdsNames are the secrets the listeners' downstream and the clusters'
// upstream TLS contexts name (a DestinationRule's credentialName on a
// gateway names `kubernetes://<name>` and its `-cacert`), sorted.
func sdsNames(resources ...[]types.Resource) []string {
	var out []string
	add := func(ctx *tlsv3.CommonTlsContext) {
		for _, sc := range ctx.GetTlsCertificateSdsSecretConfigs() {
			out = append(out, sc.GetName())
		}
		if vc := ctx.GetValidationContextSdsSecretConfig(); vc != nil {
			out = append(out, vc.GetName())
		}
		if vc := ctx.GetCombinedValidationContext().GetValidationContextSdsSecretConfig(); vc != nil {
			out = append(out, vc.GetName())
		}
	}
	for _, rs := range resources {
		for _, r := range rs {
			switch r := r.(type) {
			case *listenerv3.Listener:
				for _, fc := range r.GetFilterChains() {
					var dtc tlsv3.DownstreamTlsContext
					if tc := fc.GetTransportSocket().GetTypedConfig(); tc != nil && tc.UnmarshalTo(&dtc) == nil {
						add(dtc.GetCommonTlsContext())
					}
				}
			case *clusterv3.Cluster:
				var utc tlsv3.UpstreamTlsContext
				if tc := r.GetTransportSocket().GetTypedConfig(); tc != nil && tc.UnmarshalTo(&utc) == nil {
					add(utc.GetCommonTlsContext())
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
