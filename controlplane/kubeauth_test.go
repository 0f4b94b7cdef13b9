package controlplane

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/meshlab/meshlab/controlplane/api"
)

// fakeCluster answers TokenReviews from tokens (token → user) and
// SubjectAccessReviews from rbac (user → "verb resource.group" allowed),
// and records the reviews it was asked for.
func fakeCluster(tokens map[string]string, rbac map[string][]string) (*KubeAuth, *[]authzv1.ResourceAttributes) {
	var asked []authzv1.ResourceAttributes
	kc := fake.NewClientset()
	kc.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		tr := a.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview)
		if u, ok := tokens[tr.Spec.Token]; ok {
			tr.Status = authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{Username: u, Groups: []string{"system:authenticated"}}}
		} else {
			tr.Status = authnv1.TokenReviewStatus{Error: "invalid bearer token"}
		}
		return true, tr, nil
	})
	kc.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		sar := a.(k8stesting.CreateAction).GetObject().(*authzv1.SubjectAccessReview)
		ra := *sar.Spec.ResourceAttributes
		asked = append(asked, ra)
		want := ra.Verb + " " + ra.Resource
		if ra.Group != "" {
			want += "." + ra.Group
		}
		for _, ok := range rbac[sar.Spec.User] {
			if ok == want {
				sar.Status.Allowed = true
			}
		}
		if !sar.Status.Allowed {
			sar.Status.Reason = "no RBAC policy matched"
		}
		return true, sar, nil
	})
	return &KubeAuth{kc: kc}, &asked
}

// TestKubeAuth: on a cluster the API asks the apiserver who the bearer
// token is and whether that user may do the call's Kubernetes counterpart.
func TestKubeAuth(t *testing.T) {
	auth, asked := fakeCluster(
		map[string]string{"admin-token": "admin", "viewer-token": "viewer"},
		map[string][]string{
			"admin":  {"update virtualservices.networking.istio.io", "list virtualservices.networking.istio.io", "list secrets", "update secrets", "update services", "list services"},
			"viewer": {"list virtualservices.networking.istio.io"},
		})
	s, err := New(Options{StateDir: t.TempDir(), Auth: auth})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	h := s.Handler()

	tests := []struct {
		name, method, path, token string
		want                      int
		wantSAR                   string // the review asked, "verb resource.group"
	}{
		{"no token", "GET", api.PathResources, "", http.StatusUnauthorized, ""},
		{"token the cluster rejects", "GET", api.PathResources, "forged", http.StatusUnauthorized, ""},
		{"viewer reads config", "GET", api.PathResources, "viewer-token", http.StatusOK, "list virtualservices.networking.istio.io"},
		{"viewer may not apply", "POST", api.PathApply, "viewer-token", http.StatusForbidden, "update virtualservices.networking.istio.io"},
		{"viewer may not list secrets", "GET", api.PathSecrets, "viewer-token", http.StatusForbidden, "list secrets"},
		{"viewer may not register workloads", "DELETE", api.PathWorkloads, "viewer-token", http.StatusForbidden, "update services"},
		{"admin applies", "POST", api.PathApply, "admin-token", http.StatusOK, "update virtualservices.networking.istio.io"},
		{"admin lists secrets", "GET", api.PathSecrets, "admin-token", http.StatusOK, "list secrets"},
		{"metrics need nothing", "GET", "/metrics", "", http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			*asked = nil
			req := httptest.NewRequest(tt.method, "http://istiod.istio-system.svc:15014"+tt.path, strings.NewReader(applyBody))
			req.Header.Set("Content-Type", "application/json")
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("%s %s as %q: %d %s; want %d", tt.method, tt.path, tt.token, rec.Code, rec.Body.String(), tt.want)
			}
			if rec.Code == http.StatusUnauthorized && !strings.Contains(rec.Body.String(), "kubectl create token") {
				t.Errorf("a 401 on a cluster should say how to get a Kubernetes token: %s", rec.Body.String())
			}
			if rec.Code == http.StatusForbidden && !strings.Contains(rec.Body.String(), "viewer may not "+strings.Fields(tt.wantSAR)[0]) {
				t.Errorf("a 403 should name the user and what it may not do: %s", rec.Body.String())
			}
			var got string
			if len(*asked) == 1 {
				ra := (*asked)[0]
				got = ra.Verb + " " + ra.Resource
				if ra.Group != "" {
					got += "." + ra.Group
				}
			}
			if got != tt.wantSAR {
				t.Errorf("asked the cluster %v; want one review %q", *asked, tt.wantSAR)
			}
		})
	}
}

// TestKubeAuthUnreachable: a cluster that cannot be asked refuses the call
// rather than allowing it.
func TestKubeAuthUnreachable(t *testing.T) {
	kc := fake.NewClientset()
	kc.PrependReactor("create", "tokenreviews", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("connection refused")
	})
	err := (&KubeAuth{kc: kc}).Authorize(t.Context(), "t", accessReadConfig)
	if err == nil || errors.Is(err, ErrUnauthenticated) || errors.Is(err, ErrForbidden) {
		t.Fatalf("Authorize with the apiserver down: %v; want a failure of its own", err)
	}
}
