package process

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshlab/meshlab/lab/drain"
	"github.com/meshlab/meshlab/lab/podnet"
)

const helperEnv = "MESHLAB_PROCESS_HELPER"

// self is a copy of the test binary that any uid may run (go test builds
// into a directory only root can enter).
var self string

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == NSExecName {
		err := NSExecMain(os.Args[2:])
		fmt.Fprintln(os.Stderr, err)
		os.Exit(127)
	}
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode))
	}
	dir, err := os.MkdirTemp("", "meshlab-process-test")
	if err == nil {
		err = os.Chmod(dir, 0o755)
	}
	if err == nil {
		self = filepath.Join(dir, "process.test")
		err = copyFile(os.Args[0], self)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "copy test binary:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// helper is what the supervised test processes do.
func helper(mode string) int {
	switch mode {
	case "ifaces":
		ifs, err := net.Interfaces()
		if err != nil {
			fmt.Println(err)
			return 1
		}
		var names, addrs []string
		for _, i := range ifs {
			names = append(names, i.Name)
			as, _ := i.Addrs()
			for _, a := range as {
				if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
					addrs = append(addrs, p.Addr().String())
				}
			}
		}
		wd, _ := os.Getwd()
		fmt.Printf("ifaces=%s addrs=%s uid=%d gid=%d dir=%s\n", strings.Join(names, ","), strings.Join(addrs, ","),
			os.Getuid(), os.Getgid(), wd)
		return 0
	case "privs":
		// What a container's process may do, as /proc/self/status says.
		b, err := os.ReadFile("/proc/self/status")
		if err != nil {
			fmt.Println(err)
			return 1
		}
		var out []string
		for _, l := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(l, ":")
			switch k {
			case "Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs":
				out = append(out, k+"="+strings.Join(strings.Fields(v), ","))
			}
		}
		env := os.Environ()
		slices.Sort(env)
		fmt.Printf("%s env=%s\n", strings.Join(out, " "), strings.Join(env, ","))
		return 0
	case "mounts":
		// What a container sees at its volumes: each DST of $MOUNTS read
		// (its "key") and written to; then, with $WAIT, it stays up.
		for _, dst := range strings.Split(os.Getenv("MOUNTS"), ",") {
			key, err := os.ReadFile(filepath.Join(dst, "key"))
			got := string(key)
			if err != nil {
				got = "error"
			}
			write := "ok"
			if err := os.WriteFile(filepath.Join(dst, "written"), []byte("x"), 0o644); err != nil {
				write = err.Error()
			}
			fmt.Printf("dst=%s key=%s write=%s\n", dst, got, write)
		}
		if os.Getenv("WAIT") != "" {
			time.Sleep(time.Hour)
		}
		return 0
	case "sleep":
		fmt.Println("sleeping")
		time.Sleep(time.Hour)
		return 0
	case "crash":
		fmt.Println("crashing on purpose")
		return 3
	case "hang-with-child":
		signal.Ignore(syscall.SIGTERM)
		child := exec.Command(os.Args[0])
		child.Env = append(os.Environ(), helperEnv+"=hang")
		if err := child.Start(); err != nil {
			fmt.Println(err)
			return 1
		}
		if err := os.WriteFile(os.Getenv("PIDFILE"), []byte(strconv.Itoa(child.Process.Pid)), 0o644); err != nil {
			fmt.Println(err)
			return 1
		}
		fallthrough
	case "hang":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ignoring SIGTERM")
		time.Sleep(time.Hour)
		return 0
	case "drain":
		// A mode that drains for the whole default drain duration, then
		// flushes and exits as meshlab's modes do.
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		fmt.Println("serving")
		<-ctx.Done()
		time.Sleep(drain.DefaultDuration + 500*time.Millisecond)
		fmt.Println("drained")
		return 0
	}
	fmt.Println("unknown helper mode", mode)
	return 2
}

func TestBackoffNext(t *testing.T) {
	b := DefaultBackoff
	tests := []struct {
		cur, ran        time.Duration
		delay, wantNext time.Duration
	}{
		{0, 0, time.Second, 2 * time.Second},
		{2 * time.Second, time.Second, 2 * time.Second, 4 * time.Second},
		{16 * time.Second, 0, 16 * time.Second, 30 * time.Second},
		{30 * time.Second, 0, 30 * time.Second, 30 * time.Second},
		{30 * time.Second, 59 * time.Second, 30 * time.Second, 30 * time.Second},
		{30 * time.Second, 60 * time.Second, time.Second, 2 * time.Second}, // healthy long enough: reset
	}
	for _, tt := range tests {
		d, next := b.next(tt.cur, tt.ran)
		if d != tt.delay || next != tt.wantNext {
			t.Errorf("next(%v, ran %v) = %v, %v; want %v, %v", tt.cur, tt.ran, d, next, tt.delay, tt.wantNext)
		}
	}
}

func TestCrashRestartsWithBackoff(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "crash.log")
	s := NewSupervisor(Spec{Name: "crasher", Argv: []string{"/meshlab"}, Self: self,
		Env: []string{helperEnv + "=crash"}, LogPath: logPath})
	var mu sync.Mutex
	var delays []time.Duration
	s.sleep = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		delays = append(delays, d)
		mu.Unlock()
		return ctx.Err() // no real waiting: the test checks the delays asked for
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "4 restarts", func() bool { return s.State().Restarts >= 4 })
	stop(t, s)

	st := s.State()
	// Stop may catch a process between its start and its crash.
	if st.Running || (st.LastExit != "exit status 3" && st.LastExit != "signal: terminated") {
		t.Fatalf("state after Stop = %+v, want stopped after a crash or by SIGTERM", st)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}
	if len(delays) < len(want) {
		t.Fatalf("delays %v, want at least %v", delays, want)
	}
	for i, w := range want {
		if delays[i] != w {
			t.Fatalf("delays = %v, want them to start %v", delays, want)
		}
	}
	log := readFile(t, logPath)
	if strings.Count(log, "crashing on purpose") < 4 || !strings.Contains(log, "meshlab: started pid") ||
		!strings.Contains(log, "meshlab: exited: exit status 3") {
		t.Fatalf("log is missing the process output or the supervisor's lines:\n%s", log)
	}
}

func TestStopKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	s := NewSupervisor(Spec{Name: "hanger", Argv: []string{self}, Env: []string{helperEnv + "=hang-with-child", "PIDFILE=" + pidFile},
		LogPath: filepath.Join(dir, "hang.log")}, WithGrace(100*time.Millisecond))
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	var child int
	waitFor(t, "the grandchild's pid", func() bool {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return false
		}
		child, err = strconv.Atoi(string(b))
		return err == nil
	})
	pid := s.State().PID
	if !alive(pid) || !alive(child) {
		t.Fatalf("before Stop: process %d alive=%v, grandchild %d alive=%v", pid, alive(pid), child, alive(child))
	}
	stop(t, s)
	// Both ignore SIGTERM: only the SIGKILL to the whole group ends them.
	waitFor(t, "the grandchild to die", func() bool { return !alive(child) })
	if alive(pid) {
		t.Fatalf("process %d still alive after Stop", pid)
	}
	if st := s.State(); st.Running || st.LastExit != "signal: killed" {
		t.Fatalf("state after Stop = %+v, want killed", st)
	}
}

// TestStopLetsDrainFinish: under the default grace, a container that takes
// the whole default drain duration on SIGTERM exits by itself, 0, rather
// than being killed mid-drain.
func TestStopLetsDrainFinish(t *testing.T) {
	if testing.Short() {
		t.Skip("takes the drain duration")
	}
	dir := t.TempDir()
	logPath := filepath.Join(dir, "drain.log")
	s := NewSupervisor(Spec{Name: "drainer", Argv: []string{self}, Env: []string{helperEnv + "=drain"}, LogPath: logPath})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the process to serve", func() bool { return strings.Contains(readFile(t, logPath), "serving") })
	stop(t, s)
	if st := s.State(); st.LastExit != "exit status 0" || !strings.Contains(readFile(t, logPath), "drained") {
		t.Fatalf("after Stop: %+v, want a drain to the end and exit status 0; log:\n%s", st, readFile(t, logPath))
	}
}

func TestProcessInPodNetns(t *testing.T) {
	if err := podnet.Check(); err != nil {
		t.Skipf("needs a pod network: %v", err)
	}
	ctx := context.Background()
	n := podnet.Network{Bridge: "mlabp0", Prefix: netip.MustParsePrefix("198.18.253.0/24"),
		Gateway: netip.MustParseAddr("198.18.253.1"), NetnsPrefix: "mlabp-"}
	if err := n.Teardown(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Teardown(ctx); err != nil {
			t.Error(err)
		}
	})
	if err := n.EnsureBridge(ctx); err != nil {
		t.Fatal(err)
	}
	pod, err := n.AddPod(ctx, "details", netip.MustParseAddr("198.18.253.7"))
	if err != nil {
		t.Fatal(err)
	}
	workDir := filepath.Dir(self) // readable by the uid too

	// A binary the proxy's uid cannot reach by path, as with `go run` (a 0700
	// build directory) or a binary under /root.
	private := filepath.Join(t.TempDir(), "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	privateSelf := filepath.Join(private, "process.test")
	if err := copyFile(self, privateSelf); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		self     string
		uid, gid uint32
		want     string
	}{
		{"as root", self, 0, 0, "ifaces=lo,eth0 addrs=127.0.0.1,198.18.253.7 uid=0 gid=0 dir=" + workDir},
		{"as the proxy uid", self, 1337, 1337, "ifaces=lo,eth0 addrs=127.0.0.1,198.18.253.7 uid=1337 gid=1337 dir=" + workDir},
		{"as the proxy uid from a private directory", privateSelf, 1337, 1337, "ifaces=lo,eth0 addrs=127.0.0.1,198.18.253.7 uid=1337 gid=1337 dir=" + workDir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logPath := filepath.Join(t.TempDir(), "ifaces.log")
			s := NewSupervisor(Spec{Name: "details", Argv: []string{"/meshlab"}, Self: tt.self, Env: []string{helperEnv + "=ifaces"},
				NetnsPath: pod.NetnsPath, UID: tt.uid, GID: tt.gid, Dir: workDir, LogPath: logPath},
				WithBackoff(Backoff{Initial: time.Hour, Max: time.Hour, ResetAfter: time.Hour}))
			if err := s.Start(ctx); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the process to exit", func() bool { return s.State().LastExit != "" })
			stop(t, s)
			if st := s.State(); st.LastExit != "exit status 0" || st.Restarts != 0 {
				t.Fatalf("state = %+v, want one clean exit; log:\n%s", st, readFile(t, logPath))
			}
			if log := readFile(t, logPath); !strings.Contains(log, tt.want+"\n") {
				t.Fatalf("log:\n%s\nwant the line %q", log, tt.want)
			}
		})
	}
}

func TestNSExecUsage(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--net", "/nonexistent"}, "no command"},
		{[]string{"--bogus", "--", "true"}, "flag provided but not defined"},
		{[]string{"--", "no-such-command-meshlab"}, "executable file not found"},
		{[]string{"--net", "/nonexistent/netns", "--", "true"}, "open netns /nonexistent/netns"},
		{[]string{"--mount", "/a:/b:c", "--", "true"}, "want SOURCE:TARGET[:ro]"},
		{[]string{"--mount", "/a:/b:/c:ro", "--", "true"}, "want SOURCE:TARGET[:ro]"},
		{[]string{"--mount", "a:/b", "--", "true"}, `source path "a": want an absolute path`},
		{[]string{"--mount", "/a:/", "--", "true"}, "cannot hide"},
		{[]string{"--mnt", "/proc/1/ns/mnt", "--mount", "/a:/b", "--", "true"}, "--mnt joins a container's mount namespace"},
	}
	for _, tt := range tests {
		if err := NSExecMain(tt.args); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NSExecMain(%q) = %v, want an error containing %q", tt.args, err, tt.want)
		}
	}
}

func stop(t *testing.T, s *Supervisor) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Stop returned before the supervisor was done")
	}
}

// waitFor polls cond; the long limit only bounds a broken test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive is false for a missing process and for a zombie nobody reaped.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// The supervisor (root) appends to a container's log in the runtime's
// state directory: a symlink planted there must not send its writes
// elsewhere.
func TestLogDoesNotFollowSymlink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "app.log")
	if err := os.Symlink(victim, logPath); err != nil {
		t.Fatal(err)
	}
	s := NewSupervisor(Spec{Name: "crasher", Argv: []string{self}, Env: []string{helperEnv + "=crash"}, LogPath: logPath})
	if err := s.Start(context.Background()); err == nil {
		stop(t, s)
		t.Error("Start with a symlink planted at the log succeeded; want an error")
	}
	if b := readFile(t, victim); b != "precious\n" {
		t.Errorf("the symlink's target now holds %q; want it untouched", b)
	}
}

// A container of a user other than root runs as kubelet runs one with
// `capabilities: {drop: [ALL]}` and `allowPrivilegeEscalation: false`: no
// capability in any set, no_new_privs, no supplementary groups, and only
// the environment it was given, in a pod's namespace or not.
func TestUnprivilegedContainer(t *testing.T) {
	if err := podnet.Check(); err != nil {
		t.Skipf("needs root: %v", err)
	}
	ctx := context.Background()
	n := podnet.Network{Bridge: "mlabq0", Prefix: netip.MustParsePrefix("198.18.252.0/24"),
		Gateway: netip.MustParseAddr("198.18.252.1"), NetnsPrefix: "mlabq-"}
	if err := n.Teardown(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Teardown(ctx); err != nil {
			t.Error(err)
		}
	})
	if err := n.EnsureBridge(ctx); err != nil {
		t.Fatal(err)
	}
	pod, err := n.AddPod(ctx, "ratings", netip.MustParseAddr("198.18.252.7"))
	if err != nil {
		t.Fatal(err)
	}
	const none = "0000000000000000"
	want := "Uid=2000000007,2000000007,2000000007,2000000007 Gid=2000000008,2000000008,2000000008,2000000008 Groups= " +
		"CapInh=" + none + " CapPrm=" + none + " CapEff=" + none + " CapBnd=" + none + " CapAmb=" + none +
		" NoNewPrivs=1 env=" + helperEnv + "=privs,PATH=/usr/bin:/bin"
	for _, netns := range []string{pod.NetnsPath, ""} {
		t.Run("netns="+netns, func(t *testing.T) {
			logPath := filepath.Join(t.TempDir(), "privs.log")
			s := NewSupervisor(Spec{Name: "ratings", Argv: []string{"/meshlab"}, Self: self,
				Env:       []string{"PATH=/usr/bin:/bin", helperEnv + "=privs"},
				NetnsPath: netns, UID: 2000000007, GID: 2000000008, Dir: "/", LogPath: logPath},
				WithBackoff(Backoff{Initial: time.Hour, Max: time.Hour, ResetAfter: time.Hour}))
			if err := s.Start(ctx); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the process to exit", func() bool { return s.State().LastExit != "" })
			stop(t, s)
			if log := readFile(t, logPath); !strings.Contains(log, want+"\n") {
				t.Fatalf("log:\n%s\nwant the line %q", log, want)
			}
		})
	}
}

// TestRestart: a liveness failure ends the process (SIGTERM, SIGKILL when
// ignored past the grace period), records why, and the supervisor starts it
// again, counting one restart.
func TestRestart(t *testing.T) {
	tests := []struct {
		mode, started string
		wantExit      string
	}{
		{"sleep", "sleeping", "Liveness probe failed: HTTP probe failed with statuscode: 500 (signal: terminated)"},
		{"hang", "ignoring SIGTERM", "Liveness probe failed: HTTP probe failed with statuscode: 500 (signal: killed)"},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			logPath := filepath.Join(t.TempDir(), "restart.log")
			s := NewSupervisor(Spec{Name: "live", Argv: []string{self}, Env: []string{helperEnv + "=" + tt.mode}, LogPath: logPath},
				WithGrace(200*time.Millisecond), WithBackoff(Backoff{Initial: 10 * time.Millisecond, Max: time.Second, ResetAfter: time.Hour}))
			ctx := context.Background()
			if err := s.Restart(ctx, "before start"); err == nil {
				t.Fatal("Restart before Start succeeded; want an error")
			}
			if err := s.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer stop(t, s)
			waitFor(t, "the process to start", func() bool { return strings.Contains(readFile(t, logPath), tt.started) })
			first := s.State().PID
			if err := s.Restart(ctx, "Liveness probe failed: HTTP probe failed with statuscode: 500"); err != nil {
				t.Fatal(err)
			}
			if alive(first) {
				t.Fatalf("process %d alive after Restart returned", first)
			}
			if st := s.State(); st.LastExit != tt.wantExit {
				t.Fatalf("LastExit after Restart = %q, want %q", st.LastExit, tt.wantExit)
			}
			waitFor(t, "the restarted process", func() bool { return s.State().Running })
			if st := s.State(); st.Restarts != 1 || st.PID == first || st.LastExit != tt.wantExit {
				t.Fatalf("state after the restart = %+v; want 1 restart, a new pid, LastExit %q", st, tt.wantExit)
			}
			if log := readFile(t, logPath); !strings.Contains(log, "meshlab: exited: "+tt.wantExit+"\n") {
				t.Fatalf("log:\n%s\nwant the exit line with the reason", log)
			}
		})
	}
	t.Run("after stop", func(t *testing.T) {
		s := NewSupervisor(Spec{Name: "live", Argv: []string{self}, Env: []string{helperEnv + "=sleep"}}, WithGrace(time.Second))
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		stop(t, s)
		if err := s.Restart(context.Background(), "late"); err == nil {
			t.Fatal("Restart after Stop succeeded; want an error")
		}
	})
}
