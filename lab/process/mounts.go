package process

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Mount is a volume as a container sees it: the directory (or file)
// Source of the host, bind-mounted at Target in the container's own mount
// namespace, so that no other process, the host's included, sees it there.
type Mount struct {
	Source, Target string
	ReadOnly       bool
}

// String is the mount as ns-exec's --mount takes it: SRC:DST[:ro].
func (m Mount) String() string {
	s := m.Source + ":" + m.Target
	if m.ReadOnly {
		s += ":ro"
	}
	return s
}

// ParseMount reads SRC:DST[:ro] (or :rw).
func ParseMount(s string) (Mount, error) {
	parts := strings.Split(s, ":")
	var m Mount
	switch {
	case len(parts) == 2:
	case len(parts) == 3 && parts[2] == "ro":
		m.ReadOnly = true
	case len(parts) == 3 && parts[2] == "rw":
	default:
		return Mount{}, fmt.Errorf("mount %q: want SOURCE:TARGET[:ro] with absolute paths without ':'", s)
	}
	m.Source, m.Target = parts[0], parts[1]
	if err := m.Check(); err != nil {
		return Mount{}, err
	}
	return m, nil
}

// Check refuses what ns-exec cannot mount: relative paths, paths with ':'
// (the separator of --mount; Kubernetes refuses them in mountPath too) and
// a mount over the whole file system. The runtime may call it at apply time.
func (m Mount) Check() error {
	for _, p := range []struct{ what, path string }{{"source", m.Source}, {"target", m.Target}} {
		switch {
		case p.path == "":
			return fmt.Errorf("mount %s:%s: empty %s path", m.Source, m.Target, p.what)
		case strings.Contains(p.path, ":"):
			return fmt.Errorf("mount %s path %q: the local runtime cannot mount a path containing ':'; choose one without", p.what, p.path)
		case !filepath.IsAbs(p.path):
			return fmt.Errorf("mount %s path %q: want an absolute path", p.what, p.path)
		}
	}
	if filepath.Clean(m.Target) == "/" {
		return fmt.Errorf("mount %s on /: the local runtime shares the host's file system and cannot hide it; mount the volume at a directory", m.Source)
	}
	return nil
}

// setupMounts gives the calling thread, which must be locked to its
// goroutine and be the one that execs, a mount namespace of its own with
// the mounts in it. It runs as root, before privileges are dropped.
func setupMounts(mounts []Mount) error {
	// CLONE_NEWNS also unshares the thread's file system context, which
	// the Go runtime's other threads share: only this thread moves.
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("create the container's mount namespace: %w", err)
	}
	// Slave, not private: the host's later mounts and unmounts still reach
	// the container (a pod's netns unmounted from /run/netns is not kept
	// alive by another pod's copy), and nothing mounted here reaches back.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("make the container's mounts one-way (rslave): %w", err)
	}
	for _, m := range mounts {
		if err := bind(m); err != nil {
			return fmt.Errorf("mount %s: %w", m, err)
		}
	}
	return nil
}

// bind mounts one volume in the current (the container's) mount namespace.
func bind(m Mount) error {
	src, err := os.Stat(m.Source)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	dst, err := os.Stat(m.Target)
	switch {
	case err == nil && src.IsDir() != dst.IsDir():
		return fmt.Errorf("target %s: a %s cannot be mounted on a %s", m.Target, kind(src), kind(dst))
	case errors.Is(err, os.ErrNotExist) && src.IsDir():
		// The container shares the host's file system, so a missing target
		// is created there, as root, empty, 0755 (only what does not exist,
		// like mkdir -p), and left behind: an empty directory changes no
		// program's behaviour, and removing it later is not safe — since
		// Linux 3.18 removing a directory detaches whatever another mount
		// namespace has mounted on it, which would pull the volume from
		// every other pod mounting at the same path.
		if err := os.MkdirAll(m.Target, 0o755); err != nil {
			return fmt.Errorf("create target: %w", err)
		}
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("target %s does not exist: the local runtime mounts a single file only over an existing one (it would have to leave a file on the host's file system); mount the directory instead", m.Target)
	case err != nil:
		return fmt.Errorf("target: %w", err)
	}
	if err := unix.Mount(m.Source, m.Target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	// A bind mount takes its flags only from a remount, which replaces
	// them all: keep those of the mount the source is on, and add nosuid
	// and nodev, which a volume has in Kubernetes.
	var st unix.Statfs_t
	if err := unix.Statfs(m.Target, &st); err != nil {
		return fmt.Errorf("read the mount's flags: %w", err)
	}
	flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_NOSUID | unix.MS_NODEV)
	for _, f := range []struct{ st, ms uintptr }{
		{unix.ST_RDONLY, unix.MS_RDONLY}, {unix.ST_NOEXEC, unix.MS_NOEXEC},
		{unix.ST_NOATIME, unix.MS_NOATIME}, {unix.ST_NODIRATIME, unix.MS_NODIRATIME},
		{unix.ST_RELATIME, unix.MS_RELATIME},
	} {
		if uintptr(st.Flags)&f.st != 0 {
			flags |= f.ms
		}
	}
	if m.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount("", m.Target, "", flags, ""); err != nil {
		return fmt.Errorf("remount with its flags (read-only %v): %w", m.ReadOnly, err)
	}
	return nil
}

func kind(fi os.FileInfo) string {
	if fi.IsDir() {
		return "directory"
	}
	return "file"
}

// joinMountNS moves the calling thread, which must be locked to its
// goroutine and be the one that execs, into the mount namespace at path.
// When path is a process's (/proc/PID/ns/mnt) and netPath is given, the
// process must be in that network namespace: a PID read from the lab's
// state may have been reused by another process since.
func joinMountNS(path, netPath string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the container's mount namespace %s: %w (has the container restarted? look its PID up again)", path, err)
	}
	// fd is read only and only needed for setns: closing it loses nothing.
	defer func() { _ = unix.Close(fd) }()
	if pid, ok := procPID(path); ok && netPath != "" {
		same, err := sameFile(netPath, "/proc/"+pid+"/ns/net")
		if err != nil {
			return fmt.Errorf("check that process %s is the container: %w", pid, err)
		}
		if !same {
			return fmt.Errorf("process %s is not in the pod's network namespace %s: the container has restarted; look its PID up again", pid, netPath)
		}
	}
	// setns into a mount namespace refuses a thread whose file system
	// context is shared, as the Go runtime's threads share it.
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare the file system context: %w", err)
	}
	if err := unix.Setns(fd, unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("join the container's mount namespace %s: %w", path, err)
	}
	return nil
}

// procPID returns N of /proc/N/ns/mnt.
func procPID(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, "/proc/")
	if !ok {
		return "", false
	}
	pid, ok := strings.CutSuffix(rest, "/ns/mnt")
	if !ok {
		return "", false
	}
	if _, err := strconv.Atoi(pid); err != nil {
		return "", false
	}
	return pid, true
}

func sameFile(a, b string) (bool, error) {
	fa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	fb, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(fa, fb), nil
}
