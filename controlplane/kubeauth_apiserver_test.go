package controlplane

import (
	"net/http"
	"net/http/httptest"
	"testing"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/lab/kube/kubetest"
)

// TestKubeAuthAPIServer: against a real kube-apiserver, the API takes a
// service account's token and the admin's, and refuses a forged one.
// (kubetest's apiserver authorizes everything; which verb is asked for
// which call, and a denial, are TestKubeAuth's.)
func TestKubeAuthAPIServer(t *testing.T) {
	env := kubetest.Start(t)
	ctx := t.Context()
	kc, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.CoreV1().ServiceAccounts("team").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "deployer"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := kc.CoreV1().ServiceAccounts("team").CreateToken(ctx, "deployer", &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	s, err := New(Options{StateDir: t.TempDir(), Kube: env.Config})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, ok := s.auth.(*KubeAuth); !ok {
		t.Fatalf("a control plane on a cluster checks credentials with %T, want *KubeAuth", s.auth)
	}
	h := s.Handler()
	for _, tt := range []struct {
		name, token string
		want        int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"forged token", "eyJhbGciOiJub25lIn0.e30.", http.StatusUnauthorized},
		{"the admin's static token", env.Config.BearerToken, http.StatusOK},
		{"a service account's token", tr.Status.Token, http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:15014"+api.PathSecrets, nil)
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("GET secrets: %d %s; want %d", rec.Code, rec.Body.String(), tt.want)
			}
		})
	}
}
