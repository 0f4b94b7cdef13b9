package process

import (
	"bufio"
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshlab/meshlab/lab/podnet"
	"golang.org/x/sys/unix"
)

func TestParseMount(t *testing.T) {
	tests := []struct {
		in      string
		want    Mount
		wantErr string
	}{
		{"/src:/dst", Mount{Source: "/src", Target: "/dst"}, ""},
		{"/src:/dst:ro", Mount{Source: "/src", Target: "/dst", ReadOnly: true}, ""},
		{"/src:/dst:rw", Mount{Source: "/src", Target: "/dst"}, ""},
		{"/src", Mount{}, "want SOURCE:TARGET[:ro]"},
		{"/src:/dst:rx", Mount{}, "want SOURCE:TARGET[:ro]"},
		{"/s:rc:/dst:ro", Mount{}, "want SOURCE:TARGET[:ro]"},
		{"/src:dst", Mount{}, `target path "dst": want an absolute path`},
		{":/dst", Mount{}, "empty source path"},
		{"/src:/", Mount{}, "cannot hide"},
	}
	for _, tt := range tests {
		got, err := ParseMount(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseMount(%q) = %+v, %v; want an error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseMount(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
		if again, err := ParseMount(got.String()); err != nil || again != got {
			t.Errorf("ParseMount(%q.String()) = %+v, %v; want it back", got, again, err)
		}
	}
	// A path with ':' is refused where the runtime checks a Spec.
	if err := (Mount{Source: "/a:b", Target: "/c"}).Check(); err == nil || !strings.Contains(err.Error(), "containing ':'") {
		t.Errorf("Check of a source with ':' = %v; want it refused", err)
	}
}

// TestContainerMounts: a container sees its volumes at their targets (read
// only where asked), the host does not see them there, and a command
// joining the container's mount namespace, as `meshlab exec` does, sees
// what the container sees.
func TestContainerMounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	ctx := context.Background()
	const uid = 2000000011
	// Sources sit below a directory only root may enter: the container
	// reaches them through its mounts alone.
	srcBase := t.TempDir()
	cfg, data := filepath.Join(srcBase, "configmap"), filepath.Join(srcBase, "emptydir")
	for _, d := range []string{cfg, data} {
		if err := os.Mkdir(d, 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o777); err != nil { // past the umask
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(cfg, "key"), []byte("from-configmap"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Targets below a directory anyone may search, missing: ns-exec creates them.
	dstBase, err := os.MkdirTemp("", "meshlab-mounts")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dstBase) })
	// A shared mount, as / is on systemd hosts: what the container mounts
	// below it would propagate back to the host unless ns-exec stops it.
	if err := unix.Mount("tmpfs", dstBase, "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dstBase, unix.MNT_DETACH); err != nil {
			t.Error(err)
		}
	})
	if err := unix.Mount("", dstBase, "", unix.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}
	cfgDst, dataDst := filepath.Join(dstBase, "etc", "config"), filepath.Join(dstBase, "data")

	logPath := filepath.Join(t.TempDir(), "mounts.log")
	s := NewSupervisor(Spec{Name: "mounter", Argv: []string{"/meshlab"}, Self: self,
		Env: []string{helperEnv + "=mounts", "MOUNTS=" + cfgDst + "," + dataDst, "WAIT=1"},
		UID: uid, GID: uid, Dir: "/", LogPath: logPath,
		Mounts: []Mount{{Source: cfg, Target: cfgDst, ReadOnly: true}, {Source: data, Target: dataDst}}},
		WithGrace(time.Second), WithBackoff(Backoff{Initial: time.Hour, Max: time.Hour, ResetAfter: time.Hour}))
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(t, s) })
	wantCfg := "dst=" + cfgDst + " key=from-configmap write=open " + filepath.Join(cfgDst, "written") + ": read-only file system\n"
	wantData := "dst=" + dataDst + " key=error write=ok\n"
	waitFor(t, "the container to report its mounts", func() bool {
		return strings.Contains(readFile(t, logPath), wantData) || s.State().LastExit != ""
	})
	if log := readFile(t, logPath); !strings.Contains(log, wantCfg) || !strings.Contains(log, wantData) {
		t.Fatalf("container log:\n%s\nwant the lines\n%s%s", log, wantCfg, wantData)
	}
	// The read-write volume's write landed in its source.
	if b, err := os.ReadFile(filepath.Join(data, "written")); err != nil || string(b) != "x" {
		t.Errorf("the emptyDir's source after the container wrote to it: %q, %v; want \"x\"", b, err)
	}

	// The host: the targets exist, empty, and are no mount points of its.
	for _, dst := range []string{cfgDst, dataDst} {
		if mounted(t, "/proc/self/mountinfo", dst) {
			t.Errorf("the host sees a mount at %s; want it only in the container's namespace", dst)
			// Leave the host as it was even when the code under test did not.
			t.Cleanup(func() { _ = unix.Unmount(dst, unix.MNT_DETACH) })
		}
		if ents, err := os.ReadDir(dst); err != nil || len(ents) != 0 {
			t.Errorf("the host's %s: %v, %v; want an empty directory", dst, ents, err)
		}
	}
	pid := s.State().PID
	if !mounted(t, "/proc/"+strconv.Itoa(pid)+"/mountinfo", cfgDst) {
		t.Errorf("the container's mountinfo has no mount at %s", cfgDst)
	}

	// exec: joining the container's mount namespace sees its volumes;
	// without joining, the same command sees the host's empty directories.
	for _, tt := range []struct {
		name string
		o    NSExec
		want string
	}{
		{"joined", NSExec{MountNS: MountNSPath(pid), UID: uid, GID: uid, Dir: "/"}, "key=from-configmap"},
		{"not joined", NSExec{UID: uid, GID: uid, Dir: "/"}, "key=error"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(self, append(tt.o.Args(), self)...)
			cmd.Env = []string{helperEnv + "=mounts", "MOUNTS=" + cfgDst}
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "dst="+cfgDst+" "+tt.want+" ") {
				t.Fatalf("%q: %s, %v; want %q", cmd.Args, out, err, tt.want)
			}
		})
	}
}

// TestJoinChecksPodNetns: a PID that is not in the pod's network namespace
// (a container's PID reused since, or a wrong one) is refused, not joined.
func TestJoinChecksPodNetns(t *testing.T) {
	if err := podnet.Check(); err != nil {
		t.Skipf("needs a pod network: %v", err)
	}
	ctx := context.Background()
	n := podnet.Network{Bridge: "mlabm0", Prefix: netip.MustParsePrefix("198.18.251.0/24"),
		Gateway: netip.MustParseAddr("198.18.251.1"), NetnsPrefix: "mlabm-"}
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
	pod, err := n.AddPod(ctx, "mounts", netip.MustParseAddr("198.18.251.7"))
	if err != nil {
		t.Fatal(err)
	}
	s := NewSupervisor(Spec{Name: "sleeper", Argv: []string{self}, Env: []string{helperEnv + "=sleep"},
		NetnsPath: pod.NetnsPath, Mounts: []Mount{{Source: t.TempDir(), Target: t.TempDir(), ReadOnly: true}}},
		WithGrace(time.Second))
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(t, s) })
	// Right after Start: Running means the container is in its namespaces.
	if !s.State().Running {
		t.Fatalf("state after Start = %+v, want running", s.State())
	}
	// A process of the host's network namespace (not this test's own, some
	// of whose threads enter pods' namespaces).
	host := exec.Command("sleep", "60")
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = host.Process.Kill(); _ = host.Wait() })
	for _, tt := range []struct {
		name    string
		pid     int
		wantErr string
	}{
		{"the container", s.State().PID, ""},
		{"a process of the host", host.Process.Pid, "is not in the pod's network namespace"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := NSExec{Netns: pod.NetnsPath, MountNS: MountNSPath(tt.pid)}
			out, err := exec.Command(self, append(o.Args(), "true")...).CombinedOutput()
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(string(out), tt.wantErr)) {
				t.Fatalf("ns-exec %q: %s, %v; want error %q", o.Args(), out, err, tt.wantErr)
			}
		})
	}
}

// mounted reports whether mountinfo lists a mount at dir.
func mounted(t *testing.T, mountinfo, dir string) bool {
	t.Helper()
	f, err := os.Open(mountinfo)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) > 4 && fs[4] == dir {
			return true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return false
}
