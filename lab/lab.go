// Package lab owns the lab's lifecycle as a user sees it: where its state
// lives, what `up`, `down` and `status` report, and the record of pods and
// steps that the runtime keeps while it runs. The runtimes themselves live in
// subpackages (local); the commands in lab/cmd.
package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// StateDir resolves the lab's state directory: the flag, then
// MESHLAB_STATE_DIR, then $XDG_STATE_HOME/meshlab, then ~/.local/state/meshlab.
func StateDir(flag string) (string, error) {
	if flag != "" {
		return filepath.Abs(flag)
	}
	if d := os.Getenv("MESHLAB_STATE_DIR"); d != "" {
		return filepath.Abs(d)
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "meshlab"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the lab's state directory: no --state-dir, MESHLAB_STATE_DIR or home directory: %w", err)
	}
	return filepath.Join(home, ".local", "state", "meshlab"), nil
}

// Files of the state directory.
const (
	StatusFile      = "lab.json"
	PIDFile         = "daemon.pid"
	DaemonLog       = "daemon.log"
	ControlPlaneDir = "controlplane" // the store lives here and survives down
	LogsDir         = "logs"
)

// Phases of the lab.
const (
	PhaseStarting = "Starting"
	PhaseRunning  = "Running"
	PhaseFailed   = "Failed"
	PhaseStopping = "Stopping"
)

// Status is what the runtime records about a running lab; `status` prints it
// and `exec` and `logs` find pods in it.
type Status struct {
	Runtime   string    `json:"runtime"`
	Phase     string    `json:"phase"`
	Error     string    `json:"error,omitempty"`
	PID       int       `json:"pid"`
	StartedAt time.Time `json:"startedAt"`
	Steps     []Step    `json:"steps"`
	URLs      URLs      `json:"urls"`
	Pods      []Pod     `json:"pods"`
}

// URLs a person uses.
type URLs struct {
	ProductPage  string `json:"productpage,omitempty"`
	Gateway      string `json:"gateway,omitempty"`
	GatewayTLS   string `json:"gatewayTLS,omitempty"`
	ControlPlane string `json:"controlplane,omitempty"`
	// Prometheus and Zipkin are the lab's telemetry addons, published on
	// the host.
	Prometheus string `json:"prometheus,omitempty"`
	Zipkin     string `json:"zipkin,omitempty"`
	// Kiali is the lab's console (Service kiali in istio-system, a mode
	// of this binary), published on the host: its web root, as Kiali's
	// URL is, e.g. http://127.0.0.1:20001/kiali/.
	Kiali string `json:"kiali,omitempty"`
}

// Step is one step of bringing the lab up.
type Step struct {
	Name    string        `json:"name"`
	Detail  string        `json:"detail,omitempty"`
	Done    bool          `json:"done"`
	Error   string        `json:"error,omitempty"`
	Elapsed time.Duration `json:"elapsed"`
}

// Pod is one pod of the lab.
type Pod struct {
	Namespace  string            `json:"namespace"`
	Name       string            `json:"name"`
	Deployment string            `json:"deployment,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	IP         string            `json:"ip"`
	Netns      string            `json:"netns"`
	Phase      string            `json:"phase"` // Pending, Running, Failed
	Ready      bool              `json:"ready"`
	Containers []Container       `json:"containers"`

	// The pod as Kubernetes would show it: its annotations, the spec it
	// runs (with istio-init and istio-proxy when injected), when it was
	// created, and the template hash of its Deployment's revision
	// (pod-template-hash, also among Labels).
	Annotations  map[string]string `json:"annotations,omitempty"`
	Spec         *corev1.PodSpec   `json:"spec,omitempty"`
	CreatedAt    time.Time         `json:"createdAt"`
	TemplateHash string            `json:"templateHash,omitempty"`
	// Terminating is set once the pod is being stopped (it has left its
	// Services' endpoints and its containers are draining).
	Terminating bool `json:"terminating,omitempty"`
	// Message says why a pod is Failed (it could not start).
	Message string `json:"message,omitempty"`
}

// Container is one process of a pod.
type Container struct {
	Name     string `json:"name"`
	Running  bool   `json:"running"`
	PID      int    `json:"pid,omitempty"`
	Restarts int    `json:"restarts"`
	LastExit string `json:"lastExit,omitempty"`
	Log      string `json:"log"`
	// UID and GID it runs as, which `exec` runs as too.
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
}

// ErrNotUp is returned when there is no lab in the state directory.
var ErrNotUp = errors.New("the lab is not up (start it with `meshlab up`)")

// ReadStatus reads the lab's status record; ErrNotUp when there is none or its
// runtime process is gone.
func ReadStatus(stateDir string) (Status, error) {
	var st Status
	b, err := os.ReadFile(filepath.Join(stateDir, StatusFile))
	if errors.Is(err, os.ErrNotExist) {
		return st, ErrNotUp
	}
	if err != nil {
		return st, fmt.Errorf("read lab status: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("read lab status %s: %w", filepath.Join(stateDir, StatusFile), err)
	}
	if !Alive(st.PID) {
		return st, ErrNotUp
	}
	return st, nil
}

// WriteStatus replaces the status record atomically, so a reader never sees
// half of it.
func WriteStatus(stateDir string, st Status) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode lab status: %w", err)
	}
	if err := WriteFile(filepath.Join(stateDir, StatusFile), b, 0o600); err != nil {
		return fmt.Errorf("write lab status: %w", err)
	}
	return nil
}

// Alive reports whether pid names a live process.
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie is not alive: field 3 of /proc/PID/stat is its state.
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == ')' {
			return i+2 < len(b) && b[i+2] != 'Z'
		}
	}
	return true
}

// FindPod finds a pod by name, or by Deployment name (its first ready pod),
// in a namespace.
func (st Status) FindPod(namespace, name string) (Pod, error) {
	var byDeploy *Pod
	for i, p := range st.Pods {
		if p.Namespace != namespace {
			continue
		}
		if p.Name == name {
			return p, nil
		}
		app := p.Labels["app"]
		if byDeploy == nil && (p.Deployment == name || (app == name && p.Ready)) {
			byDeploy = &st.Pods[i]
		}
	}
	if byDeploy != nil {
		return *byDeploy, nil
	}
	return Pod{}, fmt.Errorf("pod %q not found in namespace %q (see `meshlab status`)", name, namespace)
}
