package store

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/meshlab/meshlab/controlplane/config"
)

// at is r carrying a resourceVersion, as an object read with get and
// edited does.
func at(r config.Resource, rev uint64) config.Resource {
	r.Revision = rev
	return r
}

// TestApplyResourceVersion: an object applied with a resourceVersion is
// stored only if that is still the stored object's revision; a stale one
// fails the whole batch with a conflict that names it. Without one, the
// last write wins.
func TestApplyResourceVersion(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	// revision 1: reviews and ratings; revision 2: reviews changes.
	if _, err := s.Apply(ctx, []config.Resource{vs("default", "reviews", "reviews"), vs("default", "ratings", "ratings")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, []config.Resource{vs("default", "reviews", "reviews", "reviews.default")}); err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name     string
		batch    []config.Resource
		conflict string // substrings of the conflict, "" for success
		wantRev  uint64
	}{
		{name: "stale version of one object fails the batch",
			batch:    []config.Resource{vs("default", "other", "other"), at(vs("default", "reviews", "x"), 1)},
			conflict: "VirtualService default/reviews has been modified: applied with resourceVersion 1, the stored object is at 2", wantRev: 2},
		{name: "version of an object never stored",
			batch:    []config.Resource{at(vs("default", "ghost", "ghost"), 2)},
			conflict: "VirtualService default/ghost: applied with resourceVersion 2, but no such object is stored", wantRev: 2},
		{name: "current versions apply",
			batch:   []config.Resource{at(vs("default", "reviews", "v3"), 2), at(vs("default", "ratings", "v3"), 1)},
			wantRev: 3},
		{name: "the version that was current is now stale",
			batch:    []config.Resource{at(vs("default", "reviews", "v4"), 2)},
			conflict: "applied with resourceVersion 2, the stored object is at 3", wantRev: 3},
		{name: "without a version the last write wins",
			batch:   []config.Resource{vs("default", "reviews", "v5")},
			wantRev: 4},
	}
	for _, st := range steps {
		res, err := s.Apply(ctx, st.batch)
		var ce *ConflictError
		switch {
		case st.conflict == "" && err != nil:
			t.Fatalf("%s: %v", st.name, err)
		case st.conflict != "" && (!errors.As(err, &ce) || !strings.Contains(err.Error(), st.conflict)):
			t.Fatalf("%s: err %v; want a *ConflictError with %q", st.name, err, st.conflict)
		}
		if s.Revision() != st.wantRev || (err == nil && res.Rev != st.wantRev) {
			t.Fatalf("%s: revision %d (result %d), want %d", st.name, s.Revision(), res.Rev, st.wantRev)
		}
	}
	if _, found, _ := s.Get(config.VirtualService, "default", "other"); found {
		t.Error("a batch that conflicted stored its other objects")
	}
	r, _, err := s.Get(config.VirtualService, "default", "reviews")
	if err != nil || r.Revision != 4 {
		t.Fatalf("reviews at %d, %v; want 4", r.Revision, err)
	}
}
