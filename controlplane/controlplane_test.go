package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/controlplane/registry"
)

const vsAllV1 = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
`

// newTestServer runs a control plane's API on a loopback httptest server with
// a real store in dir.
func newTestServer(t *testing.T, dir string) (*Server, *api.Client) {
	t.Helper()
	s, err := New(Options{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() { hs.Close(); s.Close() })
	cl := api.NewClient(hs.URL)
	cl.Token = testToken(t, dir)
	return s, cl
}

// testToken is the API token a control plane started without one made in
// its state directory.
func testToken(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestAPIApplyGetDelete(t *testing.T) {
	ctx := context.Background()
	_, cl := newTestServer(t, t.TempDir())

	docs, err := api.Documents("all-v1.yaml", []byte(vsAllV1), "book-demo")
	if err != nil {
		t.Fatal(err)
	}
	res, err := cl.Apply(ctx, api.ApplyRequest{Documents: docs})
	if err != nil {
		t.Fatal(err)
	}
	if res.Revision != 1 || len(res.Changes) != 2 || res.Changes[0].Op != "created" {
		t.Fatalf("apply = %+v; want revision 1, two created", res)
	}
	again, err := cl.Apply(ctx, api.ApplyRequest{Documents: docs})
	if err != nil || again.Revision != 1 || again.Changes[0].Op != "unchanged" {
		t.Fatalf("re-apply = %+v, %v; want revision 1 unchanged", again, err)
	}

	list, err := cl.List(ctx, "vs", "book-demo", "")
	if err != nil || len(list.Items) != 1 || !strings.Contains(compact(list.Items[0]), `"subset":"v1"`) {
		t.Fatalf("list vs = %s, %v", list.Items, err)
	}
	if _, err := cl.List(ctx, "vs", "default", "reviews"); err == nil {
		t.Error("get of a resource in another namespace should be not found")
	}
	if _, err := cl.List(ctx, "pods", "", ""); err == nil || !strings.Contains(err.Error(), `unknown resource kind "pods"`) {
		t.Errorf("list of an unknown kind: %v", err)
	}

	del, err := cl.Delete(ctx, []string{"VirtualService/book-demo/reviews", "VirtualService/book-demo/nope"})
	if err == nil {
		t.Fatalf("delete with a missing key should fail, got %+v", del)
	}
	if l, _ := cl.List(ctx, "vs", "book-demo", ""); len(l.Items) != 1 {
		t.Fatal("a failed delete must delete nothing")
	}
	if del, err = cl.Delete(ctx, []string{"VirtualService/book-demo/reviews"}); err != nil || del.Revision != 2 {
		t.Fatalf("delete = %+v, %v", del, err)
	}
}

func compact(b []byte) string {
	var buf bytes.Buffer
	json.Compact(&buf, b)
	return buf.String()
}

func TestAPIRejectsBadBatchWhole(t *testing.T) {
	ctx := context.Background()
	_, cl := newTestServer(t, t.TempDir())
	good, err := api.Documents("good.yaml", []byte(vsAllV1), "default")
	if err != nil {
		t.Fatal(err)
	}
	// A document that passes the client (say, an older meshlab) but that the
	// server refuses: the whole batch must be refused.
	bad := api.Document{Source: "bad.yaml", Index: 0, Object: []byte(`{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"x"},"spec":{"hosts":["x"],"htp":[]}}`)}
	_, err = cl.Apply(ctx, api.ApplyRequest{Documents: append(good, bad)})
	var ae *api.APIError
	if !errors.As(err, &ae) || ae.Status != 422 || !strings.Contains(err.Error(), "bad.yaml: document 1") || !strings.Contains(err.Error(), "htp") {
		t.Fatalf("apply of a bad batch: %v", err)
	}
	if l, _ := cl.List(ctx, "all", "", ""); len(l.Items) != 0 || l.Revision != 0 {
		t.Fatalf("a refused batch stored %d items at revision %d", len(l.Items), l.Revision)
	}
}

func TestRegistryPersistsWithStableVIPs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s1, cl := newTestServer(t, dir)
	svc, err := cl.PutService(ctx, registry.Service{Name: "reviews", Namespace: "default",
		Selector: map[string]string{"app": "reviews"}, Ports: []registry.Port{{Name: "http", Port: 9080}}})
	if err != nil {
		t.Fatal(err)
	}
	if !DefaultVIPPool.Contains(svc.VIP) {
		t.Fatalf("VIP %s is outside %s", svc.VIP, DefaultVIPPool)
	}
	wl := registry.Workload{Name: "reviews-v1-x", Namespace: "default", IP: netip.MustParseAddr("198.18.0.9"), Labels: map[string]string{"app": "reviews"}, Ready: true}
	if err := cl.PutWorkload(ctx, wl); err != nil {
		t.Fatal(err)
	}
	s1.Close()

	// A restarted control plane serves the same registry before the runtime
	// says anything, with the same VIP for the same service.
	s2, err := New(Options{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	snap := s2.reg.Snapshot()
	if len(snap.Services) != 1 || snap.Services[0].VIP != svc.VIP {
		t.Fatalf("services after restart = %+v; want reviews at %s", snap.Services, svc.VIP)
	}
	if eps := snap.Endpoints(snap.Services[0]); len(eps) != 1 || eps[0].IP != wl.IP {
		t.Fatalf("endpoints after restart = %+v", eps)
	}
}

func TestServeStopsWithContext(t *testing.T) {
	s, err := New(Options{StateDir: t.TempDir(), XDSAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Serve after cancel: %v", err)
	}
}

func TestDeleteAllWorkloads(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, cl := newTestServer(t, dir)
	for _, name := range []string{"a", "b"} {
		if err := cl.PutWorkload(ctx, registry.Workload{Name: name, Namespace: "default", IP: netip.MustParseAddr("198.18.0.9")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.DeleteAllWorkloads(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(s.reg.Snapshot().Workloads); n != 0 {
		t.Fatalf("%d workloads left after deleting all", n)
	}
	s.Close()
	s2, err := New(Options{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if n := len(s2.reg.Snapshot().Workloads); n != 0 {
		t.Fatalf("%d workloads came back after a restart", n)
	}
}
