package zipkin

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/openzipkin/zipkin-go/model"
)

// mkTrace makes a trace of n spans (one root, the rest its children) with
// the given low trace id, starting at ts.
func mkTrace(low uint64, n int, ts time.Time) []*model.SpanModel {
	out := make([]*model.SpanModel, n)
	root := model.ID(low<<8 | 1)
	for i := range n {
		s := &model.SpanModel{
			SpanContext: model.SpanContext{TraceID: model.TraceID{High: 0xabc, Low: low}, ID: model.ID(low<<8 | uint64(i+1))},
			Name:        "productpage.default.svc.cluster.local:9080/*",
			Kind:        model.Server,
			Timestamp:   ts.Add(time.Duration(i) * time.Millisecond),
			Duration:    time.Millisecond,
			LocalEndpoint: &model.Endpoint{
				ServiceName: fmt.Sprintf("svc-%d.default", i%4),
			},
			Tags: map[string]string{"http.method": "GET", "http.status_code": "200", "guid:x-request-id": fmt.Sprintf("%016x-%d", low, i)},
		}
		if i > 0 {
			s.ParentID = &root
			s.Kind = model.Client
		}
		out[i] = s
	}
	return out
}

// TestEvictionEldestFirst: over --max-spans, whole traces go, the one with
// the eldest timestamp first, whatever order they arrived in.
func TestEvictionEldestFirst(t *testing.T) {
	base := time.Unix(1767225600, 0)
	for _, tc := range []struct {
		name     string
		maxSpans int
		arrivals []uint64 // trace lows in arrival order; trace k starts at base+k s
		kept     []uint64
	}{
		{"under the bound", 20, []uint64{1, 2, 3}, []uint64{1, 2, 3}},
		{"in order", 9, []uint64{1, 2, 3, 4}, []uint64{2, 3, 4}},
		{"out of order", 9, []uint64{4, 1, 3, 2}, []uint64{2, 3, 4}},
		{"late old trace goes at once", 9, []uint64{2, 3, 4, 1}, []uint64{2, 3, 4}},
		{"exact fit", 12, []uint64{1, 2, 3, 4}, []uint64{1, 2, 3, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := New(Options{MaxSpans: tc.maxSpans, Now: func() time.Time { return base.Add(time.Minute) }})
			for _, low := range tc.arrivals {
				st.Accept(mkTrace(low, 3, base.Add(time.Duration(low)*time.Second)))
			}
			spans, traces := st.Len()
			if spans > tc.maxSpans {
				t.Errorf("%d spans held, bound %d", spans, tc.maxSpans)
			}
			if traces != len(tc.kept) {
				t.Errorf("%d traces held, want %d", traces, len(tc.kept))
			}
			for _, low := range tc.kept {
				if got := st.Trace(model.TraceID{High: 0xabc, Low: low}); len(got) != 3 {
					t.Errorf("trace %d: %d spans, want 3 (kept whole)", low, len(got))
				}
			}
		})
	}
}

// TestMaxAge: traces whose newest span is older than --max-age go, at
// ingest and on Expire, and a trace still receiving spans stays.
func TestMaxAge(t *testing.T) {
	base := time.Unix(1767225600, 0)
	now := base
	st := New(Options{MaxAge: 10 * time.Minute, Now: func() time.Time { return now }})
	st.Accept(mkTrace(1, 2, base))
	st.Accept(mkTrace(2, 2, base.Add(5*time.Minute)))
	now = base.Add(12 * time.Minute)
	// Trace 2 gets a late span: its newest is recent, so it stays.
	late := mkTrace(2, 3, base.Add(11*time.Minute))[2:]
	st.Accept(late)
	if got := st.Trace(model.TraceID{High: 0xabc, Low: 1}); len(got) != 0 {
		t.Errorf("trace 1 (12 min old, bound 10) still held: %d spans", len(got))
	}
	if got := st.Trace(model.TraceID{High: 0xabc, Low: 2}); len(got) != 3 {
		t.Errorf("trace 2 (newest span 1 min old): %d spans, want 3", len(got))
	}
	now = base.Add(30 * time.Minute)
	st.Expire()
	if spans, traces := st.Len(); spans != 0 || traces != 0 {
		t.Errorf("after Expire at +30 min: %d spans in %d traces, want none", spans, traces)
	}
}

// TestMemoryFlatUnderFlood: a flood far past the bound leaves the store at
// its bound and the heap where it was after the first fill.
func TestMemoryFlatUnderFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates a few hundred MB over its run")
	}
	const maxSpans = 20000
	base := time.Unix(1767225600, 0)
	st := New(Options{MaxSpans: maxSpans, Now: func() time.Time { return base }})
	heapAfter := func(rounds, from int) uint64 {
		for r := range rounds {
			for i := range maxSpans / 10 {
				low := uint64((from+r)*maxSpans + i + 1)
				st.Accept(mkTrace(low, 10, base.Add(time.Duration(low)*time.Microsecond)))
			}
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	first := heapAfter(2, 0)
	flooded := heapAfter(20, 2) // ten times more spans again
	spans, _ := st.Len()
	if spans != maxSpans {
		t.Errorf("%d spans held after the flood, want the bound %d", spans, maxSpans)
	}
	t.Logf("heap after filling to %d spans: %d MB; after 10x more: %d MB", maxSpans, first>>20, flooded>>20)
	if flooded > first+first/2 {
		t.Errorf("heap grew from %d to %d bytes under a flood at a fixed bound", first, flooded)
	}
}

// TestSnapshotRoundTrip: what Save writes, Load reads back with every
// field, and the bound applies on load.
func TestSnapshotRoundTrip(t *testing.T) {
	dir := t.TempDir()
	base, st := serve(t, Options{}, "bookinfo-trace.json", "more-traces.json")
	if err := st.Save(dir); err != nil {
		t.Fatal(err)
	}
	_, want := get(t, base+"/api/v2/traces?endTs=1767225720000")

	base2, st2 := serve(t, Options{})
	n, err := st2.Load(dir)
	if err != nil || n != 12 {
		t.Fatalf("Load: %d spans, %v; want 12", n, err)
	}
	if _, got := get(t, base2+"/api/v2/traces?endTs=1767225720000"); string(got) != string(want) {
		t.Errorf("traces after a reload differ:\n got %s\nwant %s", got, want)
	}

	small := New(Options{MaxSpans: 5})
	if n, err := small.Load(dir); err != nil || n > 5 {
		t.Errorf("Load into a store bounded at 5: %d spans, %v", n, err)
	}
}

// TestSnapshotCorruptOrTorn: a torn or garbled snapshot does not stop the
// store: it is moved aside and the store starts empty; a leftover
// temporary file from a crash mid-write is not read.
func TestSnapshotCorruptOrTorn(t *testing.T) {
	_, st := serve(t, Options{}, "bookinfo-trace.json")
	good := t.TempDir()
	if err := st.Save(good); err != nil {
		t.Fatal(err)
	}
	whole, err := os.ReadFile(filepath.Join(good, SnapshotFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		content []byte
		tmp     bool // written as a crash's leftover temporary file instead
		spans   int
		wantErr bool
	}{
		{"torn", whole[:len(whole)/2], false, 0, true},
		{"garbage", []byte("not gzip"), false, 0, true},
		{"crash leftover only", whole[:len(whole)/2], true, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			name := SnapshotFile
			if tc.tmp {
				name = SnapshotFile + ".tmp-123"
			}
			if err := os.WriteFile(filepath.Join(dir, name), tc.content, 0o644); err != nil {
				t.Fatal(err)
			}
			n, err := New(Options{}).Load(dir)
			if (err != nil) != tc.wantErr || n != tc.spans {
				t.Fatalf("Load: %d spans, err %v; want %d spans, error %v", n, err, tc.spans, tc.wantErr)
			}
			if tc.tmp {
				if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
					t.Errorf("the crash's leftover %s was not removed", name)
				}
			}
			if tc.wantErr {
				if _, err := os.Stat(filepath.Join(dir, SnapshotFile+".corrupt")); err != nil {
					t.Errorf("the bad snapshot was not moved aside: %v", err)
				}
			}
		})
	}
}

// TestConcurrentIngestAndQuery: writers, readers, eviction and snapshots at
// once (run with -race to make it mean something).
func TestConcurrentIngestAndQuery(t *testing.T) {
	base := time.Unix(1767225600, 0)
	st := New(Options{MaxSpans: 500, MaxAge: time.Hour, AutocompleteKeys: []string{"http.method"}, Now: func() time.Time { return base }})
	dir := t.TempDir()
	done := make(chan struct{})
	errs := make(chan error, 8)
	for w := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 300 {
				low := uint64(w*1000 + i + 1)
				st.Accept(mkTrace(low, 5, base.Add(time.Duration(low)*time.Millisecond)))
			}
		}()
	}
	for range 3 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 50 {
				if _, err := st.Traces(Query{EndTs: base.Add(time.Hour).UnixMilli(), Lookback: time.Hour.Milliseconds(), Limit: 10, ServiceName: "svc-1.default"}); err != nil {
					errs <- err
					return
				}
				if _, err := st.Dependencies(base.Add(time.Hour).UnixMilli(), time.Hour.Milliseconds()); err != nil {
					errs <- err
					return
				}
				_ = st.Services()
				_ = st.AutocompleteValues("http.method")
			}
		}()
	}
	go func() {
		defer func() { done <- struct{}{} }()
		for range 5 {
			if err := st.Save(dir); err != nil {
				errs <- err
				return
			}
			st.Expire()
		}
	}()
	for range 8 {
		<-done
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if spans, _ := st.Len(); spans > 500 {
		t.Errorf("%d spans held, bound 500", spans)
	}
}
