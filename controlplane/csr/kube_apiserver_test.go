package csr

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshlab/meshlab/controlplane/ca"
	"github.com/meshlab/meshlab/lab/kube/kubetest"
)

// TestKubeAuthenticatorAPIServer: against a real kube-apiserver, a
// service account token requested for audience istio-ca (as the injected
// istio-token volume projects it) gets a certificate for that service
// account; a token for another audience, the admin's token and a forged one
// get Unauthenticated.
func TestKubeAuthenticatorAPIServer(t *testing.T) {
	env := kubetest.Start(t)
	ctx := t.Context()
	kc, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "foo"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.CoreV1().ServiceAccounts("foo").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "httpbin"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	token := func(audiences ...string) string {
		t.Helper()
		exp := int64(43200) // the injection template's expirationSeconds
		tr, err := kc.CoreV1().ServiceAccounts("foo").CreateToken(ctx, "httpbin", &authnv1.TokenRequest{
			Spec: authnv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: &exp},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	root, err := ca.New()
	if err != nil {
		t.Fatal(err)
	}
	auth, err := NewKubeAuthenticator(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{CA: root, Auth: auth, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	client := serve(t, s, root)

	for _, tt := range []struct {
		name, token string
		wantCode    codes.Code
	}{
		{"audience istio-ca", token(Audience), codes.OK},
		{"istio-ca among others", token("vault", Audience), codes.OK},
		{"another audience", token("vault"), codes.Unauthenticated},
		{"the API server's audience", token(), codes.Unauthenticated},
		{"the admin's static token", env.Config.BearerToken, codes.Unauthenticated},
		{"forged", "eyJhbGciOiJub25lIn0.e30.", codes.Unauthenticated},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cctx, cancel := context.WithTimeout(withToken(tt.token), 10*time.Second)
			defer cancel()
			resp, err := client.CreateCertificate(cctx, &pb.IstioCertificateRequest{Csr: csrFor(t), ValidityDuration: 3600})
			if status.Code(err) != tt.wantCode {
				t.Fatalf("CreateCertificate: %v, want %v", err, tt.wantCode)
			}
			if err != nil {
				return
			}
			leaf := leafOf(t, resp.CertChain, root)
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://cluster.local/ns/foo/sa/httpbin" {
				t.Errorf("URI SANs %v, want the service account's only", leaf.URIs)
			}
		})
	}
	if _, err := auth.Authenticate(ctx, token("vault")); err == nil || !strings.Contains(err.Error(), "unauthenticated") {
		t.Errorf("another audience: %v", err)
	}
}
