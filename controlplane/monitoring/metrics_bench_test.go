package monitoring

import (
	"testing"
	"time"
)

// The xDS server calls these on every response and request: they must not
// allocate once a type's series exist.
func BenchmarkObserverHotPath(b *testing.B) {
	m := NewMetrics("test")
	const lds = "type.googleapis.com/envoy.config.listener.v3.Listener"
	m.Pushed(lds, 1, 0) // the type's series are made on first use
	b.ReportAllocs()
	for b.Loop() {
		m.Pushed(lds, 4096, 3*time.Millisecond)
		m.Sent(50 * time.Microsecond)
		m.Converged(time.Second)
	}
}

func TestObserverHotPathDoesNotAllocate(t *testing.T) {
	m := NewMetrics("test")
	const lds = "type.googleapis.com/envoy.config.listener.v3.Listener"
	m.Pushed(lds, 1, 0)
	if n := testing.AllocsPerRun(100, func() {
		m.Pushed(lds, 4096, 3*time.Millisecond)
		m.Rejected(lds)
		m.ExpiredNonce(lds)
		m.Sent(50 * time.Microsecond)
		m.Converged(time.Second)
		m.Queued(time.Millisecond)
	}); n != 0 {
		t.Errorf("%v allocations per response, want 0", n)
	}
}
