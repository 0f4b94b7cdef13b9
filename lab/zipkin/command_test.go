package zipkin

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestRunPersistsAcrossRestart runs the mode as `meshlab zipkin` does: spans
// POSTed to one run are there after a clean stop (the context main's signal
// handler ends on SIGTERM) and a new run on the same --storage.path.
func TestRunPersistsAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	start := func() (string, context.CancelFunc, chan error) {
		ctx, cancel := context.WithCancel(context.Background())
		ready := make(chan string, 1)
		done := make(chan error, 1)
		go func() {
			done <- Run(ctx, RunOptions{
				Listen: "127.0.0.1:0", StoragePath: dir, SnapshotInterval: time.Hour,
				Store:        Options{MaxSpans: 1000, MaxAge: 0},
				DrainTimeout: 2 * time.Second,
				Ready:        func(a string) { ready <- a },
			})
		}()
		select {
		case a := <-ready:
			return "http://" + a, cancel, done
		case err := <-done:
			cancel()
			t.Fatalf("Run: %v", err)
		case <-time.After(10 * time.Second):
			cancel()
			t.Fatal("Run did not listen within 10s")
		}
		return "", cancel, done
	}
	stop := func(cancel context.CancelFunc, done chan error) {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run after stop: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return within 10s of its context ending")
		}
	}

	base, cancel, done := start()
	post(t, base, "application/json", "", readFixture(t, "bookinfo-trace.json"), http.StatusAccepted)
	stop(cancel, done)
	if _, err := os.Stat(filepath.Join(dir, SnapshotFile)); err != nil {
		t.Fatalf("no snapshot after a clean stop: %v", err)
	}
	if _, err := http.Get(base + "/health"); err == nil {
		t.Error("the API still answers after Run returned")
	}

	base, cancel, done = start()
	defer stop(cancel, done)
	status, body := get(t, base+"/api/v2/trace/6d1f0e8a4c2b9a7e3f5d1c0b8a9e7f61")
	var spans []json.RawMessage
	if status != 200 || json.Unmarshal(body, &spans) != nil || len(spans) != 8 {
		t.Fatalf("after a restart: status %d, %d spans, want 8: %s", status, len(spans), body)
	}
}
