package local

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/controlplane/inject"
	"github.com/meshlab/meshlab/lab/process"
)

// proxyCredentials gives a sidecar what Istio's injector gives istio-proxy
// on a cluster: a token that proves the pod's identity to the mesh CA (the
// projected istio-token there, a per-pod token the control plane issues
// here) and the mesh's root certificate (the istio-ca-root-cert ConfigMap
// there). Both are files in the pod's directory of the root-only state dir,
// bind-mounted read-only at Istio's paths in istio-proxy's own mount
// namespace: the token file is istio-proxy's uid's alone, and the app
// containers, which have no such mounts, cannot read it.
func (r *Runtime) proxyCredentials(ctx context.Context, p *pod) ([]process.Mount, error) {
	tok, err := r.cp.IssuePodToken(ctx, api.PodTokenRequest{Namespace: p.Namespace, ServiceAccount: p.serviceAccount, Pod: p.Name})
	if err != nil {
		return nil, fmt.Errorf("issue the identity token of %s/%s: %w", p.Namespace, p.Name, err)
	}
	root, err := r.rootCert(ctx)
	if err != nil {
		return nil, err
	}
	base := filepath.Join(r.opts.StateDir, "pods", p.Namespace, p.Name, inject.ProxyContainer)
	tokens, certs := filepath.Join(base, "tokens"), filepath.Join(base, "istio")
	for _, d := range []string{tokens, certs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("credentials of %s/%s: %w", p.Namespace, p.Name, err)
		}
	}
	tokenFile := filepath.Join(tokens, inject.TokenVolume)
	if err := os.WriteFile(tokenFile, []byte(tok.Token), 0o400); err != nil {
		return nil, fmt.Errorf("credentials of %s/%s: %w", p.Namespace, p.Name, err)
	}
	if err := os.Chown(tokenFile, ProxyUID, ProxyUID); err != nil {
		return nil, fmt.Errorf("credentials of %s/%s: %w", p.Namespace, p.Name, err)
	}
	if err := os.WriteFile(filepath.Join(certs, "root-cert.pem"), root, 0o444); err != nil {
		return nil, fmt.Errorf("credentials of %s/%s: %w", p.Namespace, p.Name, err)
	}
	return []process.Mount{
		{Source: tokens, Target: inject.TokenMountPath, ReadOnly: true},
		{Source: certs, Target: inject.RootCertMountPath, ReadOnly: true},
	}, nil
}

// rootCert is the mesh's root certificate, from the control plane (an open
// path of its API, as istiod's root is public).
func (r *Runtime) rootCert(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.cp.Base+"/api/v1/ca/root", nil)
	if err != nil {
		return nil, err
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read the mesh's root certificate: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "BEGIN CERTIFICATE") {
		return nil, fmt.Errorf("read the mesh's root certificate: %s, %v", resp.Status, err)
	}
	return b, nil
}
