package identity

import (
	"fmt"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Redacted is what Envoy's config dump shows in place of a private key.
const Redacted = "[redacted]"

// DynamicSecrets are "default" and "ROOTCA" as Envoy's /config_dump lists
// the secrets Istio's agent served it (dynamic_active_secrets): the chain
// and the trust bundle, the private key redacted as Envoy does. Versions
// are the time each was taken, as the agent's SDS versions.
func (a *Agent) DynamicSecrets() ([]*adminv3.SecretsConfigDump_DynamicSecret, error) {
	a.mu.Lock()
	cur, roots := a.cur, a.roots
	a.mu.Unlock()
	var out []*adminv3.SecretsConfigDump_DynamicSecret
	if cur != nil {
		s := &tlsv3.Secret{Name: WorkloadSecret, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: cur.chain}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: Redacted}},
		}}}
		d, err := dynamicSecret(s, cur.at)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	if roots != nil {
		s := &tlsv3.Secret{Name: RootSecret, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: roots.pem}},
		}}}
		d, err := dynamicSecret(s, roots.at)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

func dynamicSecret(s *tlsv3.Secret, at time.Time) (*adminv3.SecretsConfigDump_DynamicSecret, error) {
	a, err := anypb.New(s)
	if err != nil {
		return nil, fmt.Errorf("config dump of secret %s: %w", s.GetName(), err)
	}
	return &adminv3.SecretsConfigDump_DynamicSecret{
		Name: s.GetName(), VersionInfo: at.UTC().Format(time.RFC3339Nano), LastUpdated: timestamppb.New(at), Secret: a,
	}, nil
}

// RedactSecret is s as Envoy's config dump shows it: the private key of a
// TLS certificate replaced by "[redacted]".
func RedactSecret(s *tlsv3.Secret) *tlsv3.Secret {
	tc := s.GetTlsCertificate()
	if tc == nil {
		return s
	}
	out := &tlsv3.Secret{Name: s.GetName(), Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: tc.GetCertificateChain(),
		PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: Redacted}},
	}}}
	return out
}

// CertExpiry is when the workload certificate in hand expires; false when
// there is none. It is Istio's agent metric istio_agent_cert_expiry_seconds.
func (a *Agent) CertExpiry() (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cur == nil {
		return time.Time{}, false
	}
	return a.cur.leaf.NotAfter, true
}
