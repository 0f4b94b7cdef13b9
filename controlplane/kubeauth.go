package controlplane

import (
	"context"
	"fmt"

	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshlab/meshlab/controlplane/csr"
)

// KubeAuth is the API's credential check on a cluster: the caller's
// Kubernetes identity, as a kube-rbac-proxy or an aggregated API server
// checks it. The bearer token is reviewed by the apiserver (TokenReview:
// service account tokens, OIDC, static tokens, whatever the cluster
// accepts), and the user it names must be allowed the Kubernetes
// counterpart of the call (SubjectAccessReview), so RBAC decides who may
// change the mesh through the API exactly as it decides who may through
// kubectl. istiod's service account needs create on tokenreviews and
// subjectaccessreviews (system:auth-delegator's rules).
type KubeAuth struct {
	kc kubernetes.Interface
}

// NewKubeAuth checks credentials against the cluster of cfg.
func NewKubeAuth(cfg *rest.Config) (*KubeAuth, error) {
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("API authentication through Kubernetes: %w", err)
	}
	return &KubeAuth{kc: kc}, nil
}

// Authorize reviews the token, then asks whether its user may do a.
func (k *KubeAuth) Authorize(ctx context.Context, token string, a Access) error {
	// The API server's own audience: tokens minted for istio-ca (the
	// proxies') do not open the API.
	u, err := csr.ReviewToken(ctx, k.kc, token, nil)
	if err != nil { // a refusal wraps ErrUnauthenticated, which is csr's
		return err
	}
	extra := map[string]authzv1.ExtraValue{}
	for key, v := range u.Extra {
		extra[key] = authzv1.ExtraValue(v)
	}
	sar, err := k.kc.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{
		Spec: authzv1.SubjectAccessReviewSpec{
			User: u.Username, UID: u.UID, Groups: u.Groups, Extra: extra,
			ResourceAttributes: &authzv1.ResourceAttributes{Verb: a.Verb, Group: a.Group, Resource: a.Resource},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("review %s's access with the Kubernetes API: %w", u.Username, err)
	}
	if !sar.Status.Allowed {
		what := a.Resource
		if a.Group != "" {
			what += "." + a.Group
		}
		msg := fmt.Sprintf("%s may not %s %s in the cluster", u.Username, a.Verb, what)
		if sar.Status.Reason != "" {
			msg += " (" + sar.Status.Reason + ")"
		}
		return fmt.Errorf("%w: %s", ErrForbidden, msg)
	}
	return nil
}

// Hint says how to get a credential on a cluster.
func (k *KubeAuth) Hint() string {
	return "send `Authorization: Bearer <token>` with a Kubernetes token the cluster accepts, e.g. meshlab ... --token \"$(kubectl create token <service-account> -n <namespace>)\", for an identity RBAC allows the Kubernetes counterpart of the call (e.g. update virtualservices.networking.istio.io)"
}
