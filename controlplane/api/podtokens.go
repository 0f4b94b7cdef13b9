package api

import (
	"context"
	"net/http"
	"net/url"
)

// PathPodTokens issues (POST) and revokes (DELETE ?namespace=&pod=) the
// local runtime's per-pod tokens, with which a pod's istio-proxy asks the
// certificate service (15012) for its workload certificate.
const PathPodTokens = "/api/v1/podtokens"

// PodTokenRequest names the pod a token is for and the service account it
// runs as, which becomes its identity.
type PodTokenRequest struct {
	Namespace      string `json:"namespace"`
	ServiceAccount string `json:"serviceAccount"`
	Pod            string `json:"pod"`
}

// PodToken is an issued token: the only copy, as the control plane keeps
// its hash. Mount it where the pod's istio-proxy alone can read it.
type PodToken struct {
	Token string `json:"token"`
	// Identity is the SPIFFE ID the token's certificates will carry.
	Identity string `json:"identity"`
}

// IssuePodToken makes a token for a pod, replacing the pod's previous one.
func (c *Client) IssuePodToken(ctx context.Context, req PodTokenRequest) (PodToken, error) {
	var out PodToken
	return out, c.do(ctx, http.MethodPost, PathPodTokens, nil, req, &out)
}

// RevokePodToken forgets a deleted pod's token.
func (c *Client) RevokePodToken(ctx context.Context, namespace, pod string) error {
	return c.do(ctx, http.MethodDelete, PathPodTokens, url.Values{"namespace": {namespace}, "pod": {pod}}, nil, nil)
}
