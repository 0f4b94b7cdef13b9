package kube

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/lab"
)

// The control plane as the installer names it.
const (
	istiodService        = "istiod"
	istiodServiceAccount = "istiod"
	istiodAPIPort        = 15014
)

// tokenLifetime is how long the token ControlPlane asks for lives: one
// command's worth (the API server may raise it to its minimum, 10 minutes).
const tokenLifetime = 10 * time.Minute

// ControlPlane forwards a free port on 127.0.0.1 to istiod's API and gives
// a client of it with a token of istiod's service account, which may read
// what istiod serves. Asking for one needs create on serviceaccounts/token
// in istio-system: whoever may, may act as istiod anyway.
func (r *Runtime) ControlPlane(ctx context.Context) (*api.Client, func(), error) {
	c, err := r.clients()
	if err != nil {
		return nil, nil, err
	}
	secs := int64(tokenLifetime / time.Second)
	tr, err := c.kube.CoreV1().ServiceAccounts(GatewayNamespace).CreateToken(ctx, istiodServiceAccount,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("a token for the control plane's API (service account %s/%s): %w", GatewayNamespace, istiodServiceAccount, err)
	}
	pod, podPort, err := servicePod(ctx, c.kube, GatewayNamespace, istiodService, istiodAPIPort)
	if err != nil {
		return nil, nil, fmt.Errorf("reach the control plane: %w", err)
	}
	fctx, cancel := context.WithCancel(ctx)
	fw, err := forwardPod(fctx, c, pod, "127.0.0.1", 0, podPort)
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("reach the control plane: %w", err)
	}
	cl := api.NewClient(strings.TrimSuffix(strings.TrimPrefix(fw.URL, "http://"), "/"))
	cl.Token = tr.Status.Token
	done := func() {
		cancel()
		_ = fw.Wait() // ends with fctx; its error is the cancel's
	}
	return cl, done, nil
}

// maxAdminBody bounds what ProxyAdmin reads: a config dump of a large mesh
// is megabytes, never hundreds.
const maxAdminBody = 256 << 20

// ProxyAdmin reads path from the admin port of a pod's proxy through a
// port-forward to the pod (the admin port listens on the pod's loopback,
// which is where a forward arrives), as istioctl proxy-config does.
func (r *Runtime) ProxyAdmin(ctx context.Context, ns, name, path string) ([]byte, error) {
	c, err := r.clients()
	if err != nil {
		return nil, err
	}
	pod, _, err := resolve(ctx, c.kube, ns, name, "")
	if err != nil {
		return nil, err
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fw, err := forwardPod(fctx, c, pod, "127.0.0.1", 0, lab.ProxyAdminPort)
	if err != nil {
		return nil, fmt.Errorf("reach the proxy of %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	defer func() { cancel(); _ = fw.Wait() }()
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	defer rcancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, strings.TrimSuffix(fw.URL, "/")+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read %s of the proxy of %s/%s: %w", path, pod.Namespace, pod.Name, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("read %s of the proxy of %s/%s: admin %s", path, pod.Namespace, pod.Name, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminBody))
	if err != nil {
		return nil, fmt.Errorf("read %s of the proxy of %s/%s: %w", path, pod.Namespace, pod.Name, err)
	}
	return b, nil
}
