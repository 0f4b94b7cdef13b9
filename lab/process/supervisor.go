package process

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Spec is one container: a command, where it runs and as whom.
type Spec struct {
	Name string
	// Argv is the command; an argv[0] of "/meshlab" (the path in the
	// meshlab image) means this binary, Self.
	Argv []string
	// Env is the process's whole environment: a container sees its own,
	// never the runtime's.
	Env []string
	// NetnsPath is the pod's network namespace; "" runs in the host's.
	NetnsPath string
	// UID and GID to run as; 0 is root. Any other user runs without
	// capabilities and with no_new_privs (see NSExecMain).
	UID, GID uint32
	// Dir is the working directory; "" keeps the supervisor's.
	Dir string
	// Mounts are the container's volumes, in a mount namespace of its own
	// (see NSExecMain); MountNSPath(State().PID) joins it.
	Mounts []Mount
	// LogPath receives stdout and stderr, appended raw, with a timestamped
	// "meshlab:" line at every start and exit; "" discards output.
	LogPath string
	// Self is the meshlab binary, used for the ns-exec re-exec; "" is
	// os.Executable().
	Self string
}

// State is a snapshot of a supervised container.
type State struct {
	Running   bool
	PID       int
	Restarts  int
	LastExit  string // "exit status 1", "signal: killed", a start error; "" before the first exit
	StartedAt time.Time
}

// Backoff spaces restarts: Initial, doubling up to Max, back to Initial
// once a process has run ResetAfter.
type Backoff struct {
	Initial, Max, ResetAfter time.Duration
}

// DefaultBackoff is kubelet's CrashLoopBackOff, shortened for a lab.
var DefaultBackoff = Backoff{Initial: time.Second, Max: 30 * time.Second, ResetAfter: 60 * time.Second}

// next returns the delay before the restart that follows a run of length
// ran, given the delay cur used last (0 before any), and the one to use
// after it.
func (b Backoff) next(cur, ran time.Duration) (delay, after time.Duration) {
	if cur == 0 || ran >= b.ResetAfter {
		cur = b.Initial
	}
	return cur, min(cur*2, b.Max)
}

// DefaultGrace is how long Stop waits after SIGTERM before SIGKILL:
// kubelet's default terminationGracePeriodSeconds. It must exceed the drain
// duration of meshlab's modes (drain.DefaultDuration, 5s) with room for the
// drain's own end (closing, flushing the access log), or drains are cut.
// A container that drains exits as soon as it is done, so only one that
// ignores SIGTERM waits it out.
const DefaultGrace = 30 * time.Second

// Supervisor runs a Spec and restarts it whenever it exits, until Stop.
// Its one goroutine (the wait-and-restart loop) ends in Stop.
type Supervisor struct {
	spec    Spec
	backoff Backoff
	grace   time.Duration
	log     *slog.Logger
	// sleep waits between restarts; tests replace it to see the delays.
	sleep func(ctx context.Context, d time.Duration) error

	mu       sync.Mutex
	state    State
	pgid     int           // process group of the current process, 0 when none
	exited   chan struct{} // closed once the current process's exit is recorded
	restart  string        // why Restart ended the current process, "" if it did not
	stopping bool
	cancel   context.CancelFunc
	done     chan struct{}
}

// Option changes a Supervisor's defaults.
type Option func(*Supervisor)

// WithBackoff replaces DefaultBackoff.
func WithBackoff(b Backoff) Option { return func(s *Supervisor) { s.backoff = b } }

// WithGrace replaces DefaultGrace.
func WithGrace(d time.Duration) Option { return func(s *Supervisor) { s.grace = d } }

// WithLogger logs starts and exits to l (default: slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Supervisor) { s.log = l } }

// NewSupervisor prepares spec; nothing runs until Start.
func NewSupervisor(spec Spec, opts ...Option) *Supervisor {
	s := &Supervisor{spec: spec, backoff: DefaultBackoff, grace: DefaultGrace, log: slog.Default(), sleep: sleepCtx}
	for _, o := range opts {
		o(s)
	}
	s.log = s.log.With("container", spec.Name)
	return s
}

// Start launches the process, failing if the first launch fails, and keeps
// it running until Stop. ctx bounds only the start.
func (s *Supervisor) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(s.spec.Argv) == 0 {
		return fmt.Errorf("start %s: empty command", s.spec.Name)
	}
	for _, m := range s.spec.Mounts {
		if err := m.Check(); err != nil {
			return fmt.Errorf("start %s: %w", s.spec.Name, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done != nil {
		return fmt.Errorf("start %s: already started", s.spec.Name)
	}
	cmd, logf, err := s.launch()
	if err != nil {
		return fmt.Errorf("start %s: %w", s.spec.Name, err)
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.done = make(chan struct{})
	go s.loop(loopCtx, cmd, logf)
	return nil
}

// State returns the current state.
func (s *Supervisor) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// Done is closed when the supervisor has stopped for good (nil before Start).
func (s *Supervisor) Done() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done
}

// Stop ends restarts, sends SIGTERM to the process group, SIGKILL after the
// grace period, and waits for the exit. Stopping twice is not an error.
func (s *Supervisor) Stop(ctx context.Context) error {
	s.mu.Lock()
	if s.done == nil {
		s.mu.Unlock()
		return nil
	}
	s.stopping = true
	s.cancel()
	pgid, done := s.pgid, s.done
	s.mu.Unlock()

	if pgid != 0 {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
	}
	grace := time.NewTimer(s.grace)
	defer grace.Stop()
	select {
	case <-done:
		return nil
	case <-grace.C:
	case <-ctx.Done():
	}
	s.mu.Lock()
	pgid = s.pgid
	s.mu.Unlock()
	if pgid != 0 {
		s.log.Info("container ignored SIGTERM; killing it", "grace", s.grace)
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop %s: %w", s.spec.Name, ctx.Err())
	}
}

// Restart ends the running process as kubelet ends a container that fails
// its liveness probe — SIGTERM to its process group, SIGKILL after the
// grace period (or when ctx ends) — and returns once its exit is recorded:
// LastExit is reason followed by how it ended, e.g. "Liveness probe
// failed: HTTP probe failed with statuscode: 500 (signal: terminated)".
// The supervisor then starts it again as after any exit, with its backoff,
// counting a restart. A process that is not running (it exited and waits
// for its restart) is left to that restart: nothing to do.
func (s *Supervisor) Restart(ctx context.Context, reason string) error {
	s.mu.Lock()
	if s.done == nil || s.stopping {
		s.mu.Unlock()
		return fmt.Errorf("restart %s: the container is not supervised (never started, or stopped)", s.spec.Name)
	}
	if !s.state.Running {
		s.mu.Unlock()
		return nil
	}
	s.restart = reason
	pgid, exited := s.pgid, s.exited
	s.mu.Unlock()

	s.log.Info("restarting container", "reason", reason)
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	grace := time.NewTimer(s.grace)
	defer grace.Stop()
	select {
	case <-exited:
		return nil
	case <-grace.C:
	case <-ctx.Done():
	}
	select {
	case <-exited:
		// Exited meanwhile: pgid may already be someone else's.
		return nil
	default:
		// Not yet reaped by the loop, so pgid is still the process's group.
		s.log.Info("container ignored SIGTERM; killing it", "grace", s.grace)
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	select {
	case <-exited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("restart %s: %w", s.spec.Name, ctx.Err())
	}
}

func (s *Supervisor) loop(ctx context.Context, cmd *exec.Cmd, logf *os.File) {
	defer close(s.done)
	var delay time.Duration
	for {
		var ran time.Duration
		if cmd != nil {
			err := cmd.Wait()
			exit := "exit status 0"
			if err != nil {
				exit = err.Error()
			}
			s.mu.Lock()
			if s.restart != "" {
				exit = s.restart + " (" + exit + ")"
				s.restart = ""
			}
			ran = time.Since(s.state.StartedAt)
			// What the process left behind in its group dies with it, as
			// with a container.
			_ = syscall.Kill(-s.pgid, syscall.SIGKILL)
			s.pgid = 0
			s.state.Running, s.state.PID, s.state.LastExit = false, 0, exit
			close(s.exited)
			s.mu.Unlock()
			s.mark(logf, "exited: "+exit)
			if logf != nil {
				if err := logf.Close(); err != nil {
					s.log.Warn("close container log", "path", s.spec.LogPath, "err", err)
				}
			}
			s.log.Debug("container exited", "exit", exit, "ran", ran)
		}
		var d time.Duration
		d, delay = s.backoff.next(delay, ran)
		if err := s.sleep(ctx, d); err != nil {
			return
		}
		s.mu.Lock()
		if s.stopping {
			s.mu.Unlock()
			return
		}
		var err error
		cmd, logf, err = s.launch()
		s.state.Restarts++
		if err != nil {
			s.state.LastExit = "start: " + err.Error()
			cmd, logf = nil, nil
			s.log.Warn("container restart failed", "err", err)
		}
		s.mu.Unlock()
	}
}

// launch starts one process; s.mu is held.
func (s *Supervisor) launch() (*exec.Cmd, *os.File, error) {
	argv, sysattr, err := s.command()
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = s.spec.Env
	cmd.SysProcAttr = sysattr
	var ready *os.File
	if s.direct() {
		cmd.Dir = s.spec.Dir // else ns-exec changes directory after dropping to the user
	} else {
		// Running means in the pod's namespaces: exec probes and `meshlab
		// exec` join them from State().PID, and must not find the host's.
		var w *os.File
		if ready, w, err = os.Pipe(); err != nil {
			return nil, nil, fmt.Errorf("create the start pipe: %w", err)
		}
		defer func() { _ = ready.Close() }() // read to EOF below, or unused
		defer func() { _ = w.Close() }()     // the child has its copy
		cmd.ExtraFiles = []*os.File{w}       // fd 3, NSExec.ReadyFD
	}
	var logf *os.File
	if s.spec.LogPath != "" {
		// Never through a symlink: the log's directory is the runtime's (root's)
		// and a link there must not point root's writes elsewhere.
		logf, err = os.OpenFile(s.spec.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("open log: %w", err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
	}
	if err := cmd.Start(); err != nil {
		if logf != nil {
			s.mark(logf, "start failed: "+err.Error())
			_ = logf.Close() // the start error is the one to report
		}
		return nil, nil, err
	}
	if ready != nil {
		s.awaitExec(ready, cmd.ExtraFiles[0])
	}
	s.pgid = cmd.Process.Pid
	s.exited = make(chan struct{})
	s.state = State{Running: true, PID: cmd.Process.Pid, Restarts: s.state.Restarts, LastExit: s.state.LastExit, StartedAt: time.Now()}
	s.mark(logf, fmt.Sprintf("started pid %d: %q", cmd.Process.Pid, s.spec.Argv))
	s.log.Debug("container started", "pid", cmd.Process.Pid)
	return cmd, logf, nil
}

// command builds the argv: through `Self ns-exec` when the process must
// enter a namespace, since a Go program cannot setns before fork.
func (s *Supervisor) command() ([]string, *syscall.SysProcAttr, error) {
	self := s.spec.Self
	if self == "" {
		var err error
		if self, err = os.Executable(); err != nil {
			return nil, nil, fmt.Errorf("find meshlab binary: %w", err)
		}
	}
	argv := append([]string(nil), s.spec.Argv...)
	if argv[0] == "/meshlab" {
		argv[0] = self
	}
	attr := &syscall.SysProcAttr{Setpgid: true}
	if s.direct() {
		return argv, attr, nil
	}
	// ns-exec also drops privileges, which a Credential alone would not:
	// it leaves the bounding set and no_new_privs as they are.
	o := NSExec{Netns: s.spec.NetnsPath, Mounts: s.spec.Mounts, UID: s.spec.UID, GID: s.spec.GID, Dir: s.spec.Dir, ReadyFD: 3}
	return append(append([]string{self}, o.Args()...), argv...), attr, nil
}

// execWait bounds awaitExec: an ns-exec that takes longer is slow, not
// stuck (it fails or execs), and the supervisor must not wait on it forever.
const execWait = 10 * time.Second

// awaitExec waits until ns-exec has exec'd the command or failed: its end
// of the pipe closes on exec, and the supervisor's, w, is closed here.
func (s *Supervisor) awaitExec(r, w *os.File) {
	if err := w.Close(); err != nil {
		s.log.Warn("close the start pipe", "err", err)
	}
	if err := r.SetReadDeadline(time.Now().Add(execWait)); err != nil {
		s.log.Warn("bound the wait for ns-exec", "err", err)
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		s.log.Warn("wait for ns-exec to run the command", "err", err)
	}
}

// direct reports whether the process runs as the supervisor's child
// itself, without ns-exec: nothing to enter, mount or drop.
func (s *Supervisor) direct() bool {
	return s.spec.NetnsPath == "" && len(s.spec.Mounts) == 0 && s.spec.UID == 0 && s.spec.GID == 0
}

func (s *Supervisor) mark(logf *os.File, msg string) {
	if logf == nil {
		return
	}
	fmt.Fprintf(logf, "%s meshlab: %s\n", time.Now().UTC().Format(time.RFC3339Nano), msg)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
