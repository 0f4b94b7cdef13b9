package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/process"
)

// findPod resolves what exec and logs are given: a pod's name; deploy/NAME
// (deployment/NAME) for the Deployment's first ready pod, else its newest;
// pod/NAME; or, as before, a Deployment's or app's name (lab.Status.FindPod).
func findPod(st lab.Status, ns, ref string) (lab.Pod, error) {
	kind, name, ok := strings.Cut(ref, "/")
	if !ok {
		return st.FindPod(ns, ref)
	}
	switch kind {
	case "pod", "pods", "po":
		for _, p := range st.Pods {
			if p.Namespace == ns && p.Name == name {
				return p, nil
			}
		}
		return lab.Pod{}, fmt.Errorf("pod %s/%s not found; see `meshlab get pods -n %s`", ns, name, ns)
	case "deploy", "deployment", "deployments", "deployment.apps", "deployments.apps":
		var newest *lab.Pod
		for i, p := range st.Pods {
			if p.Namespace != ns || p.Deployment != name {
				continue
			}
			if p.Ready && !p.Terminating {
				return p, nil
			}
			if newest == nil || p.CreatedAt.After(newest.CreatedAt) {
				newest = &st.Pods[i]
			}
		}
		if newest != nil {
			return *newest, nil
		}
		return lab.Pod{}, fmt.Errorf("deployment %s/%s has no pods; see `meshlab get deployments -n %s`", ns, name, ns)
	}
	return lab.Pod{}, fmt.Errorf("%q: want a pod name, pod/NAME or deploy/NAME", ref)
}

// pickContainer finds a pod's container by name; without one, the app's
// (the last that is not istio-proxy), as kubectl's default container.
func pickContainer(p lab.Pod, want string) (lab.Container, error) {
	var pick *lab.Container
	var names []string
	for i, ct := range p.Containers {
		names = append(names, ct.Name)
		if ct.Name == want || (want == "" && (pick == nil || pick.Name == "istio-proxy")) {
			pick = &p.Containers[i]
		}
	}
	if pick == nil {
		return lab.Container{}, fmt.Errorf("pod %s/%s has no container %q; it has %s", p.Namespace, p.Name, want, strings.Join(names, ", "))
	}
	return *pick, nil
}

func (l *Lab) findContainer(ns, ref, container string) (lab.Pod, lab.Container, error) {
	st, err := lab.ReadStatus(l.dir)
	if err != nil {
		return lab.Pod{}, lab.Container{}, err
	}
	p, err := findPod(st, ns, ref)
	if err != nil {
		return lab.Pod{}, lab.Container{}, err
	}
	ct, err := pickContainer(p, container)
	return p, ct, err
}

// Exec runs the command on the host's file system inside the pod's network
// namespace, as the container's user, without capabilities, with
// no_new_privs and a container's environment (process.NSExecName does
// that), and returns its exit code.
//
// It is not bound to ctx: the command's signals are its own, as with
// kubectl exec. Ctrl-C reaches it from the terminal (it is in our process
// group); SIGTERM and SIGHUP sent to meshlab are passed on, and Exec waits
// for the command to exit.
func (l *Lab) Exec(_ context.Context, o lab.ExecOptions) (int, error) {
	if len(o.Command) == 0 {
		return 0, errors.New("exec: no command")
	}
	p, ct, err := l.findContainer(o.Namespace, o.Pod, o.Container)
	if err != nil {
		return 0, err
	}
	ns := process.NSExec{Netns: p.Netns, UID: ct.UID, GID: ct.GID, Dir: "/"}
	if ct.PID > 0 {
		// The container's mount namespace: its volumes at their paths,
		// as kubectl exec sees them.
		ns.MountNS = process.MountNSPath(ct.PID)
	}
	args := ns.Args()
	cmd := exec.Command(l.self, append(args, o.Command...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = o.Stdin, o.Stdout, o.Stderr
	// A container's environment, not the caller's: like kubectl exec, and
	// so no http_proxy of the host sends pod traffic elsewhere.
	home := "/"
	if ct.UID == 0 {
		home = "/root"
	}
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + home, "TERM=" + os.Getenv("TERM"),
		"POD_NAME=" + p.Name, "POD_NAMESPACE=" + p.Namespace, "HOSTNAME=" + p.Name}
	// The running container's own environment when it can be read (its
	// env, envFrom, ConfigMap and Secret values), as a runtime's exec
	// inherits it; TERM stays the caller's.
	if env, err := containerEnviron(ct.PID); err == nil {
		cmd.Env = append(env, "TERM="+os.Getenv("TERM"))
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("exec in %s/%s: %w", p.Namespace, p.Name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for {
		select {
		case s := <-sigs:
			if s != os.Interrupt {
				_ = cmd.Process.Signal(s) // it may have exited meanwhile; Wait says how
			}
		case err := <-exited:
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				if code := ee.ExitCode(); code >= 0 {
					return code, nil
				}
				// Killed by a signal: as a shell reports it.
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					return 128 + int(ws.Signal()), nil
				}
			}
			if err != nil {
				return 0, fmt.Errorf("exec in %s/%s: %w", p.Namespace, p.Name, err)
			}
			return 0, nil
		}
	}
}

// Logs copies the container's log; with Follow it keeps copying what is
// appended until ctx ends, the pod is gone or the lab is down.
func (l *Lab) Logs(ctx context.Context, o lab.LogOptions) error {
	p, ct, err := l.findContainer(o.Namespace, o.Pod, o.Container)
	if err != nil {
		return err
	}
	if !o.Follow {
		b, err := os.ReadFile(ct.Log)
		if err != nil {
			return fmt.Errorf("read log of %s/%s/%s: %w", p.Namespace, p.Name, ct.Name, err)
		}
		_, err = o.Out.Write(b)
		return err
	}
	gone := func() bool {
		st, err := lab.ReadStatus(l.dir)
		if err != nil {
			return true
		}
		for _, q := range st.Pods {
			if q.Namespace == p.Namespace && q.Name == p.Name {
				return false
			}
		}
		return true
	}
	if err := follow(ctx, ct.Log, o.Out, gone, followPoll); err != nil {
		return fmt.Errorf("follow log of %s/%s/%s: %w", p.Namespace, p.Name, ct.Name, err)
	}
	return nil
}

// followPoll is how often a followed log is looked at for more.
const followPoll = 200 * time.Millisecond

// follow copies path to w and then what is written to it, until ctx ends
// or gone (asked every few polls) says the writer will never write again.
// The supervisor appends a restarted container's output to the same file;
// a file that is replaced or truncated is read again from its start.
func follow(ctx context.Context, path string, w io.Writer, gone func() bool, poll time.Duration) error {
	var f *os.File
	defer func() {
		if f != nil {
			_ = f.Close() // read only
		}
	}()
	var off int64
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for n := 0; ; n++ {
		fi, statErr := os.Stat(path)
		if f != nil && statErr == nil {
			cur, err := f.Stat()
			if err != nil {
				return err
			}
			if !os.SameFile(fi, cur) || fi.Size() < off {
				_ = f.Close() // read only; the new file is read instead
				f, off = nil, 0
			}
		}
		if f == nil && statErr == nil {
			var err error
			if f, err = os.Open(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		if f != nil {
			c, err := io.Copy(w, f)
			off += c
			if err != nil {
				return err
			}
		}
		if n%10 == 9 && gone() {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// containerEnviron is the environment of the container process pid.
func containerEnviron(pid int) ([]string, error) {
	if pid <= 0 {
		return nil, errors.New("no process")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return nil, err
	}
	var env []string
	for _, kv := range strings.Split(string(b), "\x00") {
		if kv != "" && !strings.HasPrefix(kv, "TERM=") {
			env = append(env, kv)
		}
	}
	if len(env) == 0 {
		return nil, errors.New("empty environment")
	}
	return env, nil
}
