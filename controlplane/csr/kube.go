package csr

import (
	"context"
	"fmt"
	"slices"
	"strings"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshlab/meshlab/controlplane/ca"
)

// Audience is what istio-proxy's projected token is for (the injection
// template's istio-token volume, values.yaml `aud: istio-ca`).
const Audience = "istio-ca"

// ReviewToken asks the Kubernetes API who token belongs to (TokenReview).
// With audiences, the token must be for one of them; without, for the API
// server itself. A token the cluster does not accept is an error wrapping
// ErrUnauthenticated. The control plane's API checks its callers with it
// too.
func ReviewToken(ctx context.Context, kc kubernetes.Interface, token string, audiences []string) (authnv1.UserInfo, error) {
	if token == "" {
		return authnv1.UserInfo{}, fmt.Errorf("%w: no bearer token", ErrUnauthenticated)
	}
	tr, err := kc.AuthenticationV1().TokenReviews().Create(ctx,
		&authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token, Audiences: audiences}}, metav1.CreateOptions{})
	if err != nil {
		return authnv1.UserInfo{}, fmt.Errorf("review the bearer token with the Kubernetes API: %w", err)
	}
	if !tr.Status.Authenticated {
		msg := "the cluster does not accept the bearer token"
		if tr.Status.Error != "" {
			msg += ": " + tr.Status.Error
		}
		return authnv1.UserInfo{}, fmt.Errorf("%w: %s", ErrUnauthenticated, msg)
	}
	// The API server answers the audiences the token is good for among
	// those asked; an authenticator that ignores them must not pass.
	for _, aud := range audiences {
		if !slices.Contains(tr.Status.Audiences, aud) {
			return authnv1.UserInfo{}, fmt.Errorf("%w: the token is not for audience %q (it is for %v)", ErrUnauthenticated, aud, tr.Status.Audiences)
		}
	}
	return tr.Status.User, nil
}

// KubeAuthenticator is the kube runtime's Authenticator, as istiod's
// KubeJWTAuthenticator: a service account token for audience istio-ca,
// reviewed by the API server, names the identity.
type KubeAuthenticator struct {
	kc        kubernetes.Interface
	audiences []string
}

// NewKubeAuthenticator reviews tokens with the cluster of cfg.
func NewKubeAuthenticator(cfg *rest.Config) (*KubeAuthenticator, error) {
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("certificate service authentication through Kubernetes: %w", err)
	}
	return &KubeAuthenticator{kc: kc, audiences: []string{Audience}}, nil
}

// Authenticate accepts service account tokens only: a user's token, which
// the cluster would also accept, names no workload.
func (k *KubeAuthenticator) Authenticate(ctx context.Context, token string) (ca.Identity, error) {
	u, err := ReviewToken(ctx, k.kc, token, k.audiences)
	if err != nil {
		return ca.Identity{}, err
	}
	if !slices.Contains(u.Groups, "system:serviceaccounts") {
		return ca.Identity{}, fmt.Errorf("%w: %s is not a service account", ErrUnauthenticated, u.Username)
	}
	// system:serviceaccount:<namespace>:<name>
	parts := strings.Split(u.Username, ":")
	if len(parts) != 4 || parts[0] != "system" || parts[1] != "serviceaccount" {
		return ca.Identity{}, fmt.Errorf("%w: unexpected service account user name %q", ErrUnauthenticated, u.Username)
	}
	return ca.Identity{Namespace: parts[2], ServiceAccount: parts[3]}, nil
}
