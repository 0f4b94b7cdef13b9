package api

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// PathSecrets stores, lists and deletes TLS secrets: what `kubectl create
// secret tls` makes in Kubernetes, for Gateways' credentialName.
const PathSecrets = "/api/v1/secrets"

// SecretTypeTLS is the only secret type the control plane keeps.
const SecretTypeTLS = "kubernetes.io/tls"

// Secret is a TLS secret with a Kubernetes Secret's keys (tls.crt,
// tls.key, optional ca.crt), PEM. It goes to the control plane only: the
// API never sends key material back.
type Secret struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Type      string `json:"type"`
	Cert      []byte `json:"tls.crt"`
	Key       []byte `json:"tls.key"`
	CA        []byte `json:"ca.crt,omitempty"`
}

// SecretInfo is what listing a secret shows: its keys and certificate,
// never the key.
type SecretInfo struct {
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	Type      string    `json:"type"`
	Keys      []string  `json:"keys"` // data keys present, e.g. tls.crt, tls.key
	DNSNames  []string  `json:"dnsNames,omitempty"`
	NotAfter  time.Time `json:"notAfter"`
	Created   time.Time `json:"created"`
}

// PutSecret creates or replaces a TLS secret.
func (c *Client) PutSecret(ctx context.Context, s Secret) (SecretInfo, error) {
	var out SecretInfo
	return out, c.do(ctx, http.MethodPut, PathSecrets, nil, s, &out)
}

// DeleteSecret removes a secret; deleting one that does not exist is an
// error (as kubectl's NotFound).
func (c *Client) DeleteSecret(ctx context.Context, namespace, name string) error {
	return c.do(ctx, http.MethodDelete, PathSecrets, url.Values{"namespace": {namespace}, "name": {name}}, nil, nil)
}

// Secrets lists the secrets of a namespace ("": every namespace).
func (c *Client) Secrets(ctx context.Context, namespace string) ([]SecretInfo, error) {
	var out []SecretInfo
	var q url.Values
	if namespace != "" {
		q = url.Values{"namespace": {namespace}}
	}
	return out, c.do(ctx, http.MethodGet, PathSecrets, q, nil, &out)
}
