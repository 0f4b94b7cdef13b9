package controlplane

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/registry"
	"github.com/meshlab/meshlab/controlplane/xds"
)

// peerAuthnYAML is a namespace-wide PeerAuthentication in default. The
// creationTimestamp a client sends is not the server's to take.
func peerAuthnYAML(name, mode string) string {
	return `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: ` + name + `
  namespace: default
  creationTimestamp: "2000-01-01T00:00:00Z"
spec:
  mtls: {mode: ` + mode + `}
`
}

// TestIstioKindsCreationTime: an Istio resource gets its creation time as
// a Kubernetes object does from the API server — set when it is created
// (whatever the client sent), kept when it is updated, new when it is
// deleted and created again — shows it as metadata.creationTimestamp and
// keeps it across a control plane restart.
func TestIstioKindsCreationTime(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()

	// The first control plane, closed by hand to restart on its state.
	s, err := New(Options{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	cl := api.NewClient(hs.URL)
	cl.Token = testToken(t, dir)

	apply := func(cl *api.Client, name, mode, wantOp string) {
		t.Helper()
		docs, err := api.Documents(name+".yaml", []byte(peerAuthnYAML(name, mode)), "default")
		if err != nil {
			t.Fatal(err)
		}
		res, err := cl.Apply(ctx, api.ApplyRequest{Documents: docs})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Changes) != 1 || res.Changes[0].Op != wantOp {
			t.Fatalf("apply %s %s: %+v, want %s", name, mode, res.Changes, wantOp)
		}
	}
	created := func(cl *api.Client, name string) time.Time {
		t.Helper()
		l, err := cl.List(ctx, "peerauthentications", "default", name)
		if err != nil || len(l.Items) != 1 {
			t.Fatalf("get pa %s: %d items, %v", name, len(l.Items), err)
		}
		var obj struct {
			Metadata struct {
				CreationTimestamp string `json:"creationTimestamp"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(l.Items[0], &obj); err != nil {
			t.Fatal(err)
		}
		ts, err := time.Parse(time.RFC3339, obj.Metadata.CreationTimestamp)
		if err != nil {
			t.Fatalf("pa %s: metadata.creationTimestamp: %v in %s", name, err, l.Items[0])
		}
		return ts
	}

	before := time.Now().Truncate(time.Second)
	apply(cl, "first", "STRICT", "created")
	t1 := created(cl, "first")
	if t1.Before(before) || t1.After(time.Now()) {
		t.Fatalf("created at %v, want the server's time of the apply (not the client's 2000-01-01), about %v", t1, before)
	}

	time.Sleep(1100 * time.Millisecond) // a new creation time would differ
	apply(cl, "first", "STRICT", "unchanged")
	apply(cl, "first", "DISABLE", "configured")
	if got := created(cl, "first"); !got.Equal(t1) {
		t.Fatalf("after an update: created %v, want the original %v", got, t1)
	}
	apply(cl, "second", "PERMISSIVE", "created")
	t2 := created(cl, "second")
	if !t2.After(t1) {
		t.Fatalf("second created %v, not after first (%v)", t2, t1)
	}

	// Across a restart, from the store.
	hs.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, cl = newTestServer(t, dir)
	if a, b := created(cl, "first"), created(cl, "second"); !a.Equal(t1) || !b.Equal(t2) {
		t.Fatalf("after a restart: created %v and %v, want %v and %v", a, b, t1, t2)
	}

	// Deleted and created again: a new object, a new time.
	if _, err := cl.Delete(ctx, []string{"pa/default/first"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	apply(cl, "first", "DISABLE", "created")
	if got := created(cl, "first"); !got.After(t2) {
		t.Fatalf("created again at %v, want after %v", got, t2)
	}
}

// TestPeerAuthnOldestWinsFromTheStore: two namespace-wide
// PeerAuthentications applied a second apart, the newer with the name
// that sorts first; the configuration built from the store (as every push
// does) enforces the older's mode, as istiod would.
func TestPeerAuthnOldestWinsFromTheStore(t *testing.T) {
	ctx := context.Background()
	s, cl := newTestServer(t, t.TempDir())
	for i, doc := range []string{peerAuthnYAML("default", "DISABLE"), peerAuthnYAML("a-newer", "STRICT")} {
		if i > 0 {
			time.Sleep(1100 * time.Millisecond) // creation times are whole seconds
		}
		docs, err := api.Documents("pa.yaml", []byte(doc), "default")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Apply(ctx, api.ApplyRequest{Documents: docs}); err != nil {
			t.Fatal(err)
		}
	}
	ip := netip.MustParseAddr("198.18.0.10")
	s.Registry().PutService(registry.Service{Name: "httpbin", Namespace: "default", Selector: map[string]string{"app": "httpbin"},
		Ports: []registry.Port{{Name: "http", Port: 8000, TargetPort: 80}}})
	s.Registry().PutWorkload(registry.Workload{Name: "httpbin-0", Namespace: "default", IP: ip, Ready: true, ServiceAccount: "httpbin",
		Labels: map[string]string{"app": "httpbin", "security.istio.io/tlsMode": "istio"}})
	var cfg []config.Resource
	for _, k := range config.Kinds {
		rs, err := s.Store().List(k.Kind, "")
		if err != nil {
			t.Fatal(err)
		}
		cfg = append(cfg, rs...)
	}
	p, err := xds.ParseNodeID("sidecar~198.18.0.10~httpbin-0.default~default.svc.cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	p.Verified = &xds.Identity{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "httpbin"}
	res, err := xds.Build(xds.Input{Config: cfg, Registry: s.Registry().Snapshot()}, p)
	if err != nil {
		t.Fatal(err)
	}
	var lds strings.Builder
	for _, l := range res[resource.ListenerType] {
		b, err := protojson.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		lds.WriteString(compact(b)) // protojson's spacing varies by design
	}
	// DISABLE: plaintext inbound chains only; STRICT would have only TLS ones.
	if got := lds.String(); !strings.Contains(got, `"transportProtocol":"raw_buffer"`) || strings.Contains(got, `"transportProtocol":"tls"`) {
		t.Errorf("inbound is not the older policy's DISABLE (plaintext only):\n%s", got)
	}
}
