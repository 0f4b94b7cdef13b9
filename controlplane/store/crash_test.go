package store

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlab/meshlab/controlplane/config"
)

const (
	crashEnv   = "MESHLAB_STORE_CRASH_HELPER" // the store path for the helper
	crashBatch = 5                            // resources per batch
)

// TestHelperProcess is not a test: TestCrashSafety runs the test binary with
// it as a child that applies batches until it is killed.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("helper for TestCrashSafety")
	}
	s, err := Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for {
		// Every resource of a batch carries the revision the batch will
		// commit as, so a torn batch would show as disagreeing labels.
		n := s.Revision() + 1
		rs := make([]config.Resource, crashBatch)
		for i := range rs {
			rs[i] = config.Resource{
				APIVersion: "networking.istio.io/v1", Kind: config.VirtualService, Namespace: "crash",
				Name: fmt.Sprintf("vs-%d", i), Labels: map[string]string{"batch": strconv.FormatUint(n, 10)},
				Spec: &networking.VirtualService{Hosts: []string{fmt.Sprintf("h%d-%d", i, n)}},
			}
		}
		res, err := s.Apply(context.Background(), rs)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println(res.Rev)
	}
}

// TestCrashSafety kills a process that is committing batches at random
// points, several times over the same file, and checks after each kill that
// the store opens, kept at least every revision the child reported
// committed, and holds each batch whole.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	path := filepath.Join(t.TempDir(), "meshlab.db")
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), 1))
	var last uint64 // last revision any child reported committed
	for round := range 6 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
		cmd.Env = append(os.Environ(), crashEnv+"="+path)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill after a random number of reported commits; the child is by
		// then somewhere in the middle of a later one.
		kill := 1 + rng.IntN(40)
		sc := bufio.NewScanner(out)
		for i := 0; i < kill && sc.Scan(); i++ {
			rev, err := strconv.ParseUint(sc.Text(), 10, 64)
			if err != nil {
				t.Fatalf("round %d: child printed %q", round, sc.Text())
			}
			if rev < last {
				t.Fatalf("round %d: child committed revision %d after %d", round, rev, last)
			}
			last = rev
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// Anything the child printed before dying was committed too.
		for sc.Scan() {
			if rev, err := strconv.ParseUint(sc.Text(), 10, 64); err == nil && rev > last {
				last = rev
			}
		}
		_ = cmd.Wait()

		s, err := Open(path)
		if err != nil {
			t.Fatalf("round %d: open after kill: %v", round, err)
		}
		rev := s.Revision()
		if rev < last {
			t.Errorf("round %d: store revision %d, but the child had committed %d", round, rev, last)
		}
		rs, err := s.List(config.VirtualService, "crash")
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if len(rs) != crashBatch {
			t.Fatalf("round %d: %d resources stored, want %d", round, len(rs), crashBatch)
		}
		for _, r := range rs {
			if r.Revision > rev {
				t.Errorf("round %d: %s has revision %d, past the store's %d", round, r.Key(), r.Revision, rev)
			}
			// Every batch changes every resource, so all carry the last
			// revision, and the label written with it.
			if r.Revision != rev || r.Labels["batch"] != strconv.FormatUint(rev, 10) {
				t.Errorf("round %d: %s has revision %d, batch label %s; store is at %d: a batch was torn",
					round, r.Key(), r.Revision, r.Labels["batch"], rev)
			}
		}
		hist, err := s.History(0)
		if err != nil || len(hist) == 0 || hist[len(hist)-1].Rev != rev {
			t.Errorf("round %d: history ends at %v (err %v), want revision %d", round, hist, err, rev)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		last = rev
	}
	if last < 6 {
		t.Errorf("only %d revisions were committed over all rounds", last)
	}
}
