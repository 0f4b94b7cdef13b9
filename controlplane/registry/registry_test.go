package registry

import (
	"net/netip"
	"testing"
)

func TestSnapshotGenerationVersionsItsContent(t *testing.T) {
	r := New()
	svc := Service{Name: "reviews", Namespace: "default", Selector: map[string]string{"app": "reviews"}, Ports: []Port{{Name: "http", Port: 9080}}}
	wl := Workload{Name: "reviews-v1-x", Namespace: "default", IP: netip.MustParseAddr("198.18.0.9"), Labels: map[string]string{"app": "reviews"}, Ready: true}
	steps := []struct {
		name      string
		change    func()
		endpoints int
	}{
		{"service", func() { r.PutService(svc) }, 0},
		{"workload", func() { r.PutWorkload(wl) }, 1},
		{"unready", func() { w := wl; w.Ready = false; r.PutWorkload(w) }, 0},
		{"ready again", func() { r.PutWorkload(wl) }, 1},
		{"workload gone", func() { r.DeleteWorkload(wl.Namespace, wl.Name) }, 0},
	}
	last := r.Snapshot().Generation
	for _, st := range steps {
		st.change()
		snap := r.Snapshot()
		if snap.Generation <= last {
			t.Fatalf("after %s: generation %d did not move past %d", st.name, snap.Generation, last)
		}
		last = snap.Generation
		if got := len(snap.Endpoints(snap.Services[0])); got != st.endpoints {
			t.Errorf("after %s: %d endpoints, want %d", st.name, got, st.endpoints)
		}
		select {
		case <-r.Changed():
		default:
			t.Errorf("after %s: Changed was not signalled", st.name)
		}
	}
}
