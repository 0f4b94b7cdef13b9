package store

import (
	"context"
	"encoding/json"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlab/meshlab/controlplane/config"
)

func open(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "state", "meshlab.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func dr(ns, name, host string, labels map[string]string) config.Resource {
	return config.Resource{APIVersion: "networking.istio.io/v1", Kind: config.DestinationRule, Namespace: ns, Name: name,
		Labels: labels, Spec: &networking.DestinationRule{Host: host}}
}

func vs(ns, name string, hosts ...string) config.Resource {
	return config.Resource{APIVersion: "networking.istio.io/v1", Kind: config.VirtualService, Namespace: ns, Name: name,
		Spec: &networking.VirtualService{Hosts: hosts}}
}

func ops(cs []Change) string {
	var s []string
	for _, c := range cs {
		s = append(s, c.Key+"="+string(c.Op))
	}
	return strings.Join(s, " ")
}

// TestApplyDelete runs one store through a sequence of batches; each step
// checks the result, the revision and what is stored after it.
func TestApplyDelete(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	steps := []struct {
		name    string
		apply   []config.Resource
		delete  []string
		wantRev uint64
		wantOps string
		wantErr string
		stored  []string // every key in the store, with its revision
	}{{
		name:    "create two",
		apply:   []config.Resource{dr("default", "reviews", "reviews", nil), vs("default", "reviews", "reviews")},
		wantRev: 1,
		wantOps: "DestinationRule/default/reviews=created VirtualService/default/reviews=created",
		stored:  []string{"DestinationRule/default/reviews@1", "VirtualService/default/reviews@1"},
	}, {
		name:    "the same batch again changes nothing",
		apply:   []config.Resource{dr("default", "reviews", "reviews", nil), vs("default", "reviews", "reviews")},
		wantRev: 1,
		wantOps: "DestinationRule/default/reviews=unchanged VirtualService/default/reviews=unchanged",
		stored:  []string{"DestinationRule/default/reviews@1", "VirtualService/default/reviews@1"},
	}, {
		name:    "a label change configures one, the other keeps its revision",
		apply:   []config.Resource{dr("default", "reviews", "reviews", map[string]string{"a": "b"}), vs("default", "reviews", "reviews")},
		wantRev: 2,
		wantOps: "DestinationRule/default/reviews=configured VirtualService/default/reviews=unchanged",
		stored:  []string{"DestinationRule/default/reviews@2", "VirtualService/default/reviews@1"},
	}, {
		name:    "a spec change in another namespace",
		apply:   []config.Resource{vs("default", "reviews", "reviews", "reviews.example.com"), vs("bookinfo", "ratings", "ratings")},
		wantRev: 3,
		wantOps: "VirtualService/default/reviews=configured VirtualService/bookinfo/ratings=created",
		stored:  []string{"DestinationRule/default/reviews@2", "VirtualService/bookinfo/ratings@3", "VirtualService/default/reviews@3"},
	}, {
		name:    "an invalid resource fails the whole batch",
		apply:   []config.Resource{vs("default", "x", "x"), {Kind: config.Gateway, Namespace: "default", Name: "gw"}},
		wantErr: "apply Gateway/default/gw: a resource needs a kind, namespace, name and spec",
		wantRev: 3,
		stored:  []string{"DestinationRule/default/reviews@2", "VirtualService/bookinfo/ratings@3", "VirtualService/default/reviews@3"},
	}, {
		name:    "deleting a missing key deletes nothing",
		delete:  []string{"VirtualService/bookinfo/ratings", "VirtualService/default/missing"},
		wantErr: "delete: VirtualService/default/missing not found",
		wantRev: 3,
		stored:  []string{"DestinationRule/default/reviews@2", "VirtualService/bookinfo/ratings@3", "VirtualService/default/reviews@3"},
	}, {
		name:    "delete two, kind names as kubectl spells them",
		delete:  []string{"vs/bookinfo/ratings", "destinationrules/default/reviews"},
		wantRev: 4,
		wantOps: "VirtualService/bookinfo/ratings=deleted DestinationRule/default/reviews=deleted",
		stored:  []string{"VirtualService/default/reviews@3"},
	}, {
		name:    "a malformed key",
		delete:  []string{"reviews"},
		wantErr: `delete: invalid key "reviews": want kind/namespace/name`,
		wantRev: 4,
		stored:  []string{"VirtualService/default/reviews@3"},
	}, {
		name:    "re-create after delete",
		apply:   []config.Resource{dr("default", "reviews", "reviews", nil)},
		wantRev: 5,
		wantOps: "DestinationRule/default/reviews=created",
		stored:  []string{"DestinationRule/default/reviews@5", "VirtualService/default/reviews@3"},
	}}
	for _, st := range steps {
		var res ApplyResult
		var err error
		if st.delete != nil {
			res, err = s.Delete(ctx, st.delete)
		} else {
			res, err = s.Apply(ctx, st.apply)
		}
		if st.wantErr != "" {
			if err == nil || err.Error() != st.wantErr {
				t.Fatalf("%s: error = %v, want %s", st.name, err, st.wantErr)
			}
		} else if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		} else {
			if res.Rev != st.wantRev {
				t.Errorf("%s: result revision = %d, want %d", st.name, res.Rev, st.wantRev)
			}
			if got := ops(res.Changes); got != st.wantOps {
				t.Errorf("%s: changes = %s\nwant %s", st.name, got, st.wantOps)
			}
		}
		if got := s.Revision(); got != st.wantRev {
			t.Errorf("%s: Revision() = %d, want %d", st.name, got, st.wantRev)
		}
		if got := storedKeys(t, s); !slices.Equal(got, st.stored) {
			t.Errorf("%s: stored = %v\nwant %v", st.name, got, st.stored)
		}
	}

	// History holds each revision, with the document each change replaced.
	hist, err := s.History(0)
	if err != nil {
		t.Fatal(err)
	}
	var revs []uint64
	for _, b := range hist {
		revs = append(revs, b.Rev)
	}
	if want := []uint64{1, 2, 3, 4, 5}; !slices.Equal(revs, want) {
		t.Fatalf("history revisions = %v, want %v", revs, want)
	}
	del := hist[3]
	if ops := del.Changes; len(ops) != 2 || ops[0].Op != Deleted || ops[0].Prev == nil {
		t.Fatalf("history of the delete = %+v", del)
	}
	prev, err := config.Unmarshal(del.Changes[1].Prev)
	if err != nil || prev.Key() != "DestinationRule/default/reviews" || prev.Labels["a"] != "b" || prev.Revision != 2 {
		t.Errorf("previous document of the deleted DestinationRule = %+v, %v", prev, err)
	}
	if hist[0].Changes[0].Prev != nil {
		t.Errorf("a created resource has a previous document: %s", hist[0].Changes[0].Prev)
	}
	if later, _ := s.History(3); len(later) != 2 || later[0].Rev != 4 {
		t.Errorf("History(3) = %+v, want revisions 4 and 5", later)
	}

	// Everything survives a reopen.
	path := s.Path()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.Revision() != 5 {
		t.Errorf("revision after reopen = %d, want 5", s2.Revision())
	}
	r, ok, err := s2.Get(config.VirtualService, "default", "reviews")
	if err != nil || !ok {
		t.Fatalf("Get after reopen: %v, %v", ok, err)
	}
	if h := r.Spec.(*networking.VirtualService).GetHosts(); !slices.Equal(h, []string{"reviews", "reviews.example.com"}) || r.Revision != 3 {
		t.Errorf("VirtualService after reopen: hosts %v revision %d", h, r.Revision)
	}
	if _, ok, err := s2.Get(config.VirtualService, "bookinfo", "ratings"); ok || err != nil {
		t.Errorf("deleted resource is still there: %v, %v", ok, err)
	}
}

func storedKeys(t *testing.T, s *Store) []string {
	t.Helper()
	var out []string
	for _, k := range config.Kinds {
		rs, err := s.List(k.Kind, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			out = append(out, r.Key()+"@"+itoa(r.Revision))
		}
	}
	slices.Sort(out)
	return out
}

func itoa(n uint64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestList(t *testing.T) {
	s := open(t)
	_, err := s.Apply(context.Background(), []config.Resource{
		vs("b", "z", "z"), vs("a", "y", "y"), vs("a-b", "x", "x"), vs("a", "b", "b"), dr("a", "d", "d", nil),
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		kind config.Kind
		ns   string
		want []string
	}{
		{config.VirtualService, "", []string{"a/b", "a/y", "a-b/x", "b/z"}},
		{config.VirtualService, "a", []string{"a/b", "a/y"}},
		{config.VirtualService, "c", nil},
		{config.DestinationRule, "", []string{"a/d"}},
		{config.Gateway, "", nil},
	}
	for _, tt := range tests {
		rs, err := s.List(tt.kind, tt.ns)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range rs {
			got = append(got, r.Namespace+"/"+r.Name)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("List(%s, %q) = %v, want %v", tt.kind, tt.ns, got, tt.want)
		}
	}
}

func TestHistoryIsTrimmed(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	const n = MaxHistory + 5
	for i := range n {
		if _, err := s.Apply(ctx, []config.Resource{vs("default", "r", "r"+itoa(uint64(i)))}); err != nil {
			t.Fatal(err)
		}
	}
	hist, err := s.History(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != MaxHistory || hist[0].Rev != n-MaxHistory+1 || hist[len(hist)-1].Rev != n {
		t.Errorf("history has %d batches from %d to %d, want %d from %d to %d",
			len(hist), hist[0].Rev, hist[len(hist)-1].Rev, MaxHistory, n-MaxHistory+1, n)
	}
}

func TestWatch(t *testing.T) {
	s := open(t)
	ctx, cancel := context.WithCancel(context.Background())
	w := s.Watch(ctx)
	apply := func(rs ...config.Resource) {
		t.Helper()
		if _, err := s.Apply(context.Background(), rs); err != nil {
			t.Fatal(err)
		}
	}
	apply(vs("default", "a", "a"))
	if got := <-w; got != 1 {
		t.Fatalf("first revision = %d, want 1", got)
	}
	// Three commits unread coalesce into the latest.
	apply(vs("default", "a", "a2"))
	apply(vs("default", "b", "b"))
	apply(vs("default", "c", "c"))
	if got := <-w; got != 4 {
		t.Fatalf("coalesced revision = %d, want 4", got)
	}
	// A batch that changes nothing delivers nothing.
	apply(vs("default", "c", "c"))
	select {
	case got := <-w:
		t.Fatalf("unchanged batch delivered revision %d", got)
	default:
	}
	if _, err := s.Delete(context.Background(), []string{"VirtualService/default/c"}); err != nil {
		t.Fatal(err)
	}
	if got := <-w; got != 5 {
		t.Fatalf("revision after delete = %d, want 5", got)
	}
	cancel()
	if _, ok := <-w; ok {
		t.Fatal("channel still open after its context ended")
	}
}

func TestMeta(t *testing.T) {
	s := open(t)
	if v, err := s.GetMeta("ca", "root"); v != nil || err != nil {
		t.Fatalf("GetMeta on an empty store = %q, %v", v, err)
	}
	steps := []struct {
		bucket, key string
		val         []byte
		want        map[string]string
	}{
		{"ca", "root", []byte("cert"), map[string]string{"root": "cert"}},
		{"ca", "key", []byte("secret"), map[string]string{"root": "cert", "key": "secret"}},
		{"ca", "root", []byte("cert2"), map[string]string{"root": "cert2", "key": "secret"}},
		{"ca", "key", nil, map[string]string{"root": "cert2"}},
		{"lab", "runtime", []byte("local"), map[string]string{"root": "cert2"}},
	}
	for _, st := range steps {
		if err := s.PutMeta(st.bucket, st.key, st.val); err != nil {
			t.Fatal(err)
		}
		m, err := s.ListMeta("ca")
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for k, v := range m {
			got[k] = string(v)
		}
		if !equalMaps(got, st.want) {
			t.Errorf("after put %s/%s: ca = %v, want %v", st.bucket, st.key, got, st.want)
		}
	}
	if v, _ := s.GetMeta("lab", "runtime"); string(v) != "local" {
		t.Errorf("GetMeta(lab, runtime) = %q", v)
	}
	if s.Revision() != 0 {
		t.Errorf("metadata moved the revision to %d", s.Revision())
	}
	if m, err := s.ListMeta("nothing"); err != nil || len(m) != 0 {
		t.Errorf("ListMeta of a missing bucket = %v, %v", m, err)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func TestVIP(t *testing.T) {
	pool := netip.MustParsePrefix("198.19.0.0/16")
	tiny := netip.MustParsePrefix("10.0.0.0/30") // .1 and .2 are usable
	path := filepath.Join(t.TempDir(), "meshlab.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]netip.Addr{}
	for _, key := range []string{"default/reviews", "default/ratings", "bookinfo/details"} {
		a, err := s.AllocateVIP(key, pool)
		if err != nil {
			t.Fatal(err)
		}
		if !pool.Contains(a) || a == pool.Addr() {
			t.Errorf("%s got %s, outside %s or its network address", key, a, pool)
		}
		for k, b := range got {
			if a == b {
				t.Errorf("%s and %s share %s", key, k, a)
			}
		}
		got[key] = a
		if again, _ := s.AllocateVIP(key, pool); again != a {
			t.Errorf("%s: second allocation %s, first %s", key, again, a)
		}
	}
	s.Close()

	// Stable across restarts.
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for key, want := range got {
		if a, err := s.AllocateVIP(key, pool); err != nil || a != want {
			t.Errorf("%s after reopen: %s, %v; want %s", key, a, err, want)
		}
	}

	// A small pool: two addresses, then exhausted, then freed by a release.
	tests := []struct {
		op, key string
		want    string // address, or error text
	}{
		{"alloc", "a", ""},
		{"alloc", "b", ""},
		{"alloc", "c", "allocate VIP for c: pool 10.0.0.0/30 is exhausted"},
		{"release", "a", ""},
		{"alloc", "c", ""},
	}
	used := map[netip.Addr]string{}
	for _, tt := range tests {
		if tt.op == "release" {
			if err := s.ReleaseVIP(tt.key); err != nil {
				t.Fatal(err)
			}
			for a, k := range used {
				if k == tt.key {
					delete(used, a)
				}
			}
			continue
		}
		a, err := s.AllocateVIP(tt.key, tiny)
		if tt.want != "" {
			if err == nil || err.Error() != tt.want {
				t.Errorf("alloc %s: %s, %v; want error %s", tt.key, a, err, tt.want)
			}
			continue
		}
		if err != nil {
			t.Fatalf("alloc %s: %v", tt.key, err)
		}
		if a.String() != "10.0.0.1" && a.String() != "10.0.0.2" {
			t.Errorf("alloc %s: %s, want 10.0.0.1 or 10.0.0.2", tt.key, a)
		}
		if k, dup := used[a]; dup {
			t.Errorf("alloc %s: %s already belongs to %s", tt.key, a, k)
		}
		used[a] = tt.key
	}

	// A key whose address lies outside a changed pool moves into the new one.
	a, err := s.AllocateVIP("default/reviews", netip.MustParsePrefix("198.18.128.0/24"))
	if err != nil || !netip.MustParsePrefix("198.18.128.0/24").Contains(a) {
		t.Errorf("after a pool change: %s, %v", a, err)
	}
}

func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meshlab.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// bbolt's flock is per open file description, so a second Open in the
	// same process contends for it exactly as another process would.
	_, err = Open(path)
	if want := "open store: another meshlab control plane holds " + path; err == nil || err.Error() != want {
		t.Fatalf("second Open: %v, want %s", err, want)
	}
}

// TestCreationTime: the creation time is part of what the store keeps, for
// Istio kinds as for workload kinds: Get and List return it, it survives
// closing and reopening the file, a write with the same spec and time
// changes nothing, one with a new time (the kube runtime's object deleted
// and created again with the same spec) is a change, and one without a
// time is given one as the API server would.
func TestCreationTime(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "meshlab.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t1 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	a, b := vs("default", "a", "a"), vs("default", "b", "b")
	a.CreationTimestamp, b.CreationTimestamp = t1, t1.Add(time.Second)
	if _, err := s.Apply(ctx, []config.Resource{a, b}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	got, found, err := s.Get(config.VirtualService, "default", "a")
	if err != nil || !found || !got.CreationTimestamp.Equal(t1) {
		t.Fatalf("after reopening, Get a: created %v (found %v, %v), want %v", got.CreationTimestamp, found, err, t1)
	}
	l, err := s.List(config.VirtualService, "default")
	if err != nil || len(l) != 2 || !l[1].CreationTimestamp.Equal(t1.Add(time.Second)) {
		t.Fatalf("List: %+v, %v; want b created at %v", l, err, t1.Add(time.Second))
	}

	res, err := s.Apply(ctx, []config.Resource{a})
	if err != nil || ops(res.Changes) != "VirtualService/default/a=unchanged" {
		t.Fatalf("same spec, same time: %s, %v", ops(res.Changes), err)
	}
	a.CreationTimestamp = t1.Add(time.Hour)
	res, err = s.Apply(ctx, []config.Resource{a})
	if err != nil || ops(res.Changes) != "VirtualService/default/a=configured" {
		t.Fatalf("same spec, new time: %s, %v", ops(res.Changes), err)
	}
	if got, _, _ := s.Get(config.VirtualService, "default", "a"); !got.CreationTimestamp.Equal(t1.Add(time.Hour)) {
		t.Fatalf("created %v, want %v", got.CreationTimestamp, t1.Add(time.Hour))
	}

	// Without a time (the local runtime's apply drops the client's), an
	// update keeps the stored one and a create gets the commit's.
	a = vs("default", "a", "a", "changed")
	res, err = s.Apply(ctx, []config.Resource{a, vs("default", "b", "b")})
	if err != nil || ops(res.Changes) != "VirtualService/default/a=configured VirtualService/default/b=unchanged" {
		t.Fatalf("updates without a time: %s, %v", ops(res.Changes), err)
	}
	if got, _, _ := s.Get(config.VirtualService, "default", "a"); !got.CreationTimestamp.Equal(t1.Add(time.Hour)) {
		t.Fatalf("updated without a time: created %v, want the stored %v", got.CreationTimestamp, t1.Add(time.Hour))
	}
	before := time.Now().Truncate(time.Second)
	if _, err := s.Apply(ctx, []config.Resource{vs("default", "c", "c")}); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.Get(config.VirtualService, "default", "c"); got.CreationTimestamp.Before(before) || got.CreationTimestamp.After(time.Now()) ||
		got.CreationTimestamp.Nanosecond() != 0 {
		t.Fatalf("created without a time: %v, want the commit's, in whole seconds", got.CreationTimestamp)
	}
}
