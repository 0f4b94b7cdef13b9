package csr

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/meshlab/meshlab/controlplane/ca"
	"github.com/meshlab/meshlab/controlplane/store"
)

func TestPodTokens(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "meshlab.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	p := NewPodTokens(st)
	ctx := t.Context()

	for _, tt := range []struct {
		name, ns, sa, pod string
		ok                bool
	}{
		{"ordinary", "foo", "httpbin", "httpbin-1", true},
		{"dotted service account", "foo", "my.sa", "p", true},
		{"slash in the service account", "foo", "x/sa/admin", "p", false},
		{"slash in the namespace", "foo/ns/bar", "sa", "p", false},
		{"upper case", "Foo", "sa", "p", false},
		{"no service account", "foo", "", "p", false},
		{"no pod", "foo", "sa", "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := p.Issue(tt.ns, tt.sa, tt.pod)
			if (err == nil) != tt.ok {
				t.Fatalf("Issue(%q, %q, %q): %v", tt.ns, tt.sa, tt.pod, err)
			}
			if err != nil {
				return
			}
			id, err := p.Authenticate(ctx, tok)
			if err != nil || id != (ca.Identity{Namespace: tt.ns, ServiceAccount: tt.sa}) {
				t.Fatalf("Authenticate: %v, %v", id, err)
			}
		})
	}

	// Pods are told apart by namespace and name: revoking foo/p leaves bar/p.
	a, err := p.Issue("foo", "sa", "p")
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Issue("bar", "sa", "p")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Revoke("foo", "p"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Authenticate(ctx, a); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("revoked token: %v", err)
	}
	if _, err := p.Authenticate(ctx, b); err != nil {
		t.Errorf("the other namespace's pod: %v", err)
	}
	if err := p.Revoke("foo", "never-was"); err != nil {
		t.Errorf("revoking nothing: %v", err)
	}
	if _, err := p.Authenticate(ctx, ""); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("empty token: %v", err)
	}
}
