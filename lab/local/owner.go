package local

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/meshlab/meshlab/lab"
)

// OwnerFile records which lab owns this machine's pod network: the network
// (bridge, address ranges, host ports) is one per machine, so a second lab
// from another state directory must not take it over, and `down` of one
// lab must not tear down another's.
var OwnerFile = "/run/meshlab/owner"

// Owner is the lab that holds the pod network.
type Owner struct {
	PID      int
	StateDir string
}

// ReadOwner returns the live owner of the pod network, if any.
func ReadOwner() (Owner, bool) {
	b, err := os.ReadFile(OwnerFile)
	if err != nil {
		return Owner{}, false
	}
	pid, dir, ok := strings.Cut(strings.TrimSpace(string(b)), " ")
	if !ok {
		return Owner{}, false
	}
	o := Owner{StateDir: dir}
	o.PID, _ = strconv.Atoi(pid)
	if !lab.Alive(o.PID) || !isRuntime(o.PID) {
		return Owner{}, false
	}
	return o, true
}

// isRuntime reports whether pid is a lab runtime, so that a recycled pid of
// a runtime that was killed does not hold the network forever.
func isRuntime(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(string(b), "lab-daemon")
}

// Release gives up the pod network for stateDir's lab, or for a lab whose
// runtime is gone: what `down` does after it has cleaned up.
func Release(stateDir string) { release(stateDir) }

// ErrOtherLab is returned when another lab holds the pod network.
var ErrOtherLab = errors.New("another lab is running on this machine")

// CheckOwner fails when a live lab of another state directory holds the pod
// network.
func CheckOwner(stateDir string) error {
	if o, ok := ReadOwner(); ok && o.StateDir != stateDir {
		return fmt.Errorf("%w (pid %d, state dir %s); stop it with `meshlab down --state-dir %s`", ErrOtherLab, o.PID, o.StateDir, o.StateDir)
	}
	return nil
}

func claim(stateDir string) error {
	if err := CheckOwner(stateDir); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(OwnerFile), 0o755); err != nil {
		return fmt.Errorf("record the lab's ownership of the pod network: %w", err)
	}
	return lab.WriteFile(OwnerFile, []byte(fmt.Sprintf("%d %s\n", os.Getpid(), stateDir)), 0o644)
}

func release(stateDir string) {
	if o, ok := ReadOwner(); ok && o.StateDir != stateDir {
		return
	}
	// A record left behind names a runtime that is gone, which ReadOwner
	// already treats as no owner.
	_ = os.Remove(OwnerFile)
}
