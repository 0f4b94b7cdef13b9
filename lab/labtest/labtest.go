// Package labtest owns what end-to-end tests need to run a real local lab:
// the meshlab binary built once per test binary, a machine-wide lock so that
// tests of several packages (go test runs packages in parallel) take turns
// on the one pod network, and small helpers to drive the CLI.
package labtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// LockFile serialises labs across test processes.
const LockFile = "/run/meshlab/e2e.lock"

// Skip skips tests that need a local lab where one cannot run.
func Skip(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the local runtime needs root")
	}
	if testing.Short() {
		t.Skip("end-to-end lab test skipped in -short mode")
	}
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// Binary builds meshlab once per test process into a directory every user
// can read, so it can be run as another user too. moduleRoot is the path of
// the repository root relative to the test's package directory.
func Binary(t testing.TB, moduleRoot string) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "meshlab-e2e")
		if err == nil {
			err = os.Chmod(dir, 0o755)
		}
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "meshlab")
		build := exec.Command("go", "build", "-o", builtBin, ".")
		build.Dir = moduleRoot
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build meshlab: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// Lab is a CLI bound to one state directory.
type Lab struct {
	t     testing.TB
	Bin   string
	State string
}

// New returns a CLI for a fresh state directory and takes the machine-wide
// lab lock until the test ends (after its cleanups, which run `down`).
func New(t testing.TB, moduleRoot string) *Lab {
	t.Helper()
	bin := Binary(t, moduleRoot)
	lock(t)
	l := &Lab{t: t, Bin: bin, State: t.TempDir()}
	t.Cleanup(func() {
		if out, err := l.Run("down"); err != nil {
			t.Errorf("cleanup: meshlab down: %v\n%s", err, out)
		}
	})
	return l
}

// Lock takes the machine-wide lab lock until t ends, for tests that build
// pods of their own (on a bridge of their own) rather than a full lab but
// still must not run beside one. Take it before registering the cleanups
// it should outlive.
func Lock(t testing.TB) {
	t.Helper()
	lock(t)
}

func lock(t testing.TB) {
	if err := os.MkdirAll(filepath.Dir(LockFile), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(LockFile, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	// Blocks while another package's lab test runs; released when the file
	// closes, after this test's cleanups (registered first, run last).
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("lock %s: %v", LockFile, err)
	}
	t.Cleanup(func() { _ = f.Close() }) // only held for its lock
}

// Run runs meshlab with args against the lab's state directory, for up to
// three minutes.
func (l *Lab) Run(args ...string) (string, error) {
	return l.RunFor(3*time.Minute, args...)
}

// RunFor is Run bounded by d, for what takes longer (a kind cluster).
func (l *Lab) RunFor(d time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, l.Bin, args...)
	cmd.Env = append(os.Environ(), "MESHLAB_STATE_DIR="+l.State)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// MustRun is Run that fails the test on error.
func (l *Lab) MustRun(args ...string) string {
	l.t.Helper()
	out, err := l.Run(args...)
	if err != nil {
		l.t.Fatalf("meshlab %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// Eventually polls cond for up to 30 seconds: long enough for a restart
// backoff, and a bound so a broken lab fails the test instead of hanging it.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// Get fetches url and fails the test unless it answers 200.
func Get(t testing.TB, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, b)
	}
	return string(b)
}

// Processes lists the pids whose executable is bin.
func Processes(bin string) []string {
	var pids []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err == nil && strings.TrimSuffix(exe, " (deleted)") == bin {
			pids = append(pids, e.Name())
		}
	}
	return pids
}
