package controlplane

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/meshlab/meshlab/controlplane/api"
)

// TestAPIApplyConflict: what get returned, applied after someone else
// changed the object, is refused with 409 naming it and both versions,
// also in a dry run; the batch is applied whole or not at all.
func TestAPIApplyConflict(t *testing.T) {
	ctx := context.Background()
	_, cl := newTestServer(t, t.TempDir())
	docs, err := api.Documents("all-v1.yaml", []byte(vsAllV1), "default")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Apply(ctx, api.ApplyRequest{Documents: docs}); err != nil {
		t.Fatal(err)
	}
	// Read as `get -o yaml` does: every item carries its resourceVersion.
	list, err := cl.List(ctx, "vs", "default", "reviews")
	if err != nil || len(list.Items) != 1 || !strings.Contains(string(list.Items[0]), `"resourceVersion": "1"`) {
		t.Fatalf("get reviews = %s, %v; want it at resourceVersion 1", list.Items, err)
	}
	read := api.Document{Source: "reviews.yaml", Object: list.Items[0]}
	if res, err := cl.Apply(ctx, api.ApplyRequest{Documents: []api.Document{read}}); err != nil || res.Changes[0].Op != "unchanged" {
		t.Fatalf("apply of what get returned, unchanged since: %+v, %v", res, err)
	}

	// Someone else changes reviews: revision 2.
	other, err := api.Documents("v2.yaml", []byte(strings.Replace(vsAllV1, "subset: v1}", "subset: v2}", 1)), "default")
	if err != nil {
		t.Fatal(err)
	}
	if res, err := cl.Apply(ctx, api.ApplyRequest{Documents: other[:1]}); err != nil || res.Revision != 2 {
		t.Fatalf("the other writer's apply: %+v, %v", res, err)
	}

	extra := api.Document{Source: "extra.yaml", Object: []byte(`{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"extra","namespace":"default"},"spec":{"hosts":["extra"]}}`)}
	for _, dry := range []bool{true, false} {
		_, err := cl.Apply(ctx, api.ApplyRequest{Documents: []api.Document{extra, read}, DryRun: dry})
		var ae *api.APIError
		if !errors.As(err, &ae) || ae.Status != http.StatusConflict ||
			!strings.Contains(err.Error(), "VirtualService default/reviews has been modified: applied with resourceVersion 1, the stored object is at 2") {
			t.Fatalf("dry run %v: apply of a stale read: %v; want 409 naming reviews and both versions", dry, err)
		}
	}
	if l, _ := cl.List(ctx, "vs", "default", ""); len(l.Items) != 1 || l.Revision != 2 {
		t.Fatalf("a conflicting batch changed the store: %d items at revision %d", len(l.Items), l.Revision)
	}
	// Without a resourceVersion the last write wins, as before.
	if res, err := cl.Apply(ctx, api.ApplyRequest{Documents: docs[:1]}); err != nil || res.Revision != 3 {
		t.Fatalf("apply without resourceVersion: %+v, %v", res, err)
	}
}
