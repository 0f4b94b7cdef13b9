package proxy

import (
	"io"
	"regexp"
	"testing"
	"time"
)

// TestAppendStart checks the cached %START_TIME% against Go's layout, in
// order, across second, minute and day boundaries and back in time.
func TestAppendStart(t *testing.T) {
	base := time.Date(2026, 11, 25, 23, 59, 59, 0, time.UTC)
	times := []time.Time{
		base,
		base.Add(999 * time.Millisecond),
		base.Add(999*time.Millisecond + 999_999),
		base.Add(time.Second),
		base.Add(time.Second + 7*time.Millisecond),
		base.Add(61*time.Second + 50*time.Millisecond),
		base.Add(-time.Hour),
		base.In(time.FixedZone("KST", 9*3600)).Add(123 * time.Millisecond),
		time.Unix(0, 0),
		time.Unix(0, 0).Add(-time.Millisecond),
	}
	l := newLogWriter(io.Discard)
	for _, tm := range times {
		got := string(l.appendStart(nil, tm))
		want := tm.UTC().Format("2006-01-02T15:04:05.000Z")
		if got != want {
			t.Errorf("appendStart(%v) = %q, want %q", tm, got, want)
		}
	}
}

func TestNewRequestID(t *testing.T) {
	v4 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 1000 {
		id := newRequestID()
		if !v4.MatchString(id) {
			t.Fatalf("request id %q is not a UUID v4", id)
		}
		if seen[id] {
			t.Fatalf("request id %q repeated", id)
		}
		seen[id] = true
	}
}

func BenchmarkRequestID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		newRequestID()
	}
}
