package jwks

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshlab/meshlab/controlplane/xds"
)

// keyServer serves a JWKS (and an OpenID configuration) on loopback; its
// answer and failure can be changed while it runs.
type keyServer struct {
	*httptest.Server
	mu    sync.Mutex
	keys  string
	fail  bool
	calls atomic.Int32
}

func newKeyServer(t *testing.T, keys string) *keyServer {
	ks := &keyServer{keys: keys}
	ks.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ks.calls.Add(1)
		ks.mu.Lock()
		defer ks.mu.Unlock()
		if ks.fail {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if r.URL.Path == "/.well-known/openid-configuration" {
			_, _ = w.Write([]byte(`{"issuer":"` + ks.URL + `","jwks_uri":"` + ks.URL + `/keys"}`))
			return
		}
		_, _ = w.Write([]byte(ks.keys))
	}))
	t.Cleanup(ks.Close)
	return ks
}

func (ks *keyServer) set(keys string, fail bool) {
	ks.mu.Lock()
	ks.keys, ks.fail = keys, fail
	ks.mu.Unlock()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestResolve: a push fetches what it has not seen, once; the cache
// answers the next; discovery by issuer; a failure is absent (the
// translation inlines fake keys) and retried in the background, and its
// success triggers a push.
func TestResolve(t *testing.T) {
	ks := newKeyServer(t, `{"keys":[{"kty":"oct","k":"AA"}]}`)
	var changes atomic.Int32
	r := New(Options{RefreshInterval: time.Hour, RetryInterval: 10 * time.Millisecond, OnChange: func() { changes.Add(1) }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)

	byURI := xds.JWKSRequest{JWKSKey: xds.JWKSKey{Issuer: "iss", URI: ks.URL + "/keys"}, Timeout: time.Second}
	byIssuer := xds.JWKSRequest{JWKSKey: xds.JWKSKey{Issuer: ks.URL}, Timeout: time.Second}
	got := r.Resolve(ctx, []xds.JWKSRequest{byURI, byIssuer})
	if got[byURI.JWKSKey] != ks.keys || got[byIssuer.JWKSKey] != ks.keys {
		t.Fatalf("resolved %v", got)
	}
	calls := ks.calls.Load()
	if calls != 3 { // keys, discovery, keys
		t.Errorf("%d fetches, want 3", calls)
	}
	r.Resolve(ctx, []xds.JWKSRequest{byURI, byIssuer})
	if ks.calls.Load() != calls {
		t.Error("a cached set was fetched again on push")
	}

	down := newKeyServer(t, `{"keys":[]}`)
	down.set("", true)
	failing := xds.JWKSRequest{JWKSKey: xds.JWKSKey{Issuer: "iss", URI: down.URL + "/keys"}, Timeout: time.Second}
	if got := r.Resolve(ctx, []xds.JWKSRequest{failing}); len(got) != 0 {
		t.Fatalf("a failed fetch resolved to %v", got)
	}
	// The background retry keeps failing, then the server recovers: the
	// next push fetches it (the entry was forgotten) or the retry does
	// and asks for a push.
	waitFor(t, "background retries", func() bool { return down.calls.Load() >= 3 })
	down.set(`{"keys":[{"kty":"oct","k":"AQ"}]}`, false)
	waitFor(t, "the recovered set", func() bool { return r.Resolve(ctx, []xds.JWKSRequest{failing})[failing.JWKSKey] != "" })
}

// TestRefresh: the refresher fetches each set again, a change triggers a
// push, an unchanged one does not, a failed refresh keeps the last good
// set; sets unused for the eviction time go.
func TestRefresh(t *testing.T) {
	ks := newKeyServer(t, `{"keys":[{"kty":"oct","k":"AA"}]}`)
	var changes atomic.Int32
	r := New(Options{RefreshInterval: 30 * time.Millisecond, RefreshOnFailure: 30 * time.Millisecond, RetryInterval: time.Millisecond, OnChange: func() { changes.Add(1) }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := xds.JWKSRequest{JWKSKey: xds.JWKSKey{Issuer: "iss", URI: ks.URL}, Timeout: time.Second}
	r.Resolve(ctx, []xds.JWKSRequest{req})
	go r.Run(ctx)

	n := ks.calls.Load()
	waitFor(t, "refreshes", func() bool { return ks.calls.Load() >= n+3 })
	if changes.Load() != 0 {
		t.Fatalf("%d pushes for an unchanged set", changes.Load())
	}
	ks.set(`{ "keys": [ {"k":"AA","kty":"oct"} ] }`, false) // same set, other bytes
	n = ks.calls.Load()
	waitFor(t, "refreshes", func() bool { return ks.calls.Load() >= n+2 })
	if changes.Load() != 0 {
		t.Fatal("a reformatted set counted as a change")
	}
	ks.set(`{"keys":[{"kty":"oct","k":"AQ"}]}`, false)
	waitFor(t, "a push after the change", func() bool { return changes.Load() >= 1 })
	if got := r.Resolve(ctx, []xds.JWKSRequest{req})[req.JWKSKey]; got != `{"keys":[{"kty":"oct","k":"AQ"}]}` {
		t.Fatalf("after refresh: %q", got)
	}
	ks.set("", true)
	n = ks.calls.Load()
	waitFor(t, "failed refreshes", func() bool { return ks.calls.Load() >= n+5 })
	if got := r.Resolve(ctx, []xds.JWKSRequest{req})[req.JWKSKey]; got != `{"keys":[{"kty":"oct","k":"AQ"}]}` {
		t.Fatalf("a failed refresh dropped the last good set: %q", got)
	}

	// Eviction: not used for the eviction time.
	r2 := New(Options{Eviction: time.Hour})
	r2.Resolve(ctx, []xds.JWKSRequest{req})
	r2.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	r2.refresh(ctx, false)
	r2.mu.Lock()
	left := len(r2.entries)
	r2.mu.Unlock()
	if left != 0 {
		t.Errorf("%d entries after the eviction time", left)
	}
}
