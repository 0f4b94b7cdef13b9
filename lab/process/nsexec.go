// Package process owns the local runtime's containers, which are processes:
// starting a command inside a pod's network namespace as a given user
// (the hidden `meshlab ns-exec` re-exec), and supervising it like kubelet
// does, with restarts, backoff, logs and a graceful stop.
package process

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// NSExecName is the hidden subcommand the supervisor re-execs itself as.
const NSExecName = "ns-exec"

// NSExecCommand is `meshlab ns-exec [--net PATH] [--mnt PATH | --mount
// SRC:DST[:ro]...] [--uid N --gid N] [--dir D] -- cmd args...`, hidden: only
// the runtime runs it.
func NSExecCommand() *cli.Command {
	return &cli.Command{
		Name:            NSExecName,
		Usage:           "run a command inside a pod's namespaces as a user (used by the local runtime)",
		Hidden:          true,
		SkipFlagParsing: true,
		Action: func(c *cli.Context) error {
			return NSExecMain(c.Args().Slice())
		},
	}
}

// NSExec is what one `meshlab ns-exec` does, as the runtime asks for it.
type NSExec struct {
	// Netns is the pod's network namespace; "" stays in the caller's.
	Netns string
	// Mounts are bind-mounted in a mount namespace of the command's own.
	Mounts []Mount
	// MountNS joins an existing mount namespace instead (a running
	// container's, see MountNSPath), so that `meshlab exec` and exec
	// probes see the container's volumes. Not with Mounts.
	MountNS string
	// UID and GID to run as; 0 is root.
	UID, GID uint32
	// Dir is the working directory, changed to as the user; "" keeps the caller's.
	Dir string
	// ReadyFD, when not 0, is a descriptor ns-exec inherits (the write end
	// of a pipe) and makes close-on-exec: its reader sees EOF once the
	// command runs in its namespaces, or ns-exec has failed.
	ReadyFD int
}

// Args are ns-exec's arguments, up to and including the "--" that ends
// them: run self with Args() followed by the command.
func (o NSExec) Args() []string {
	args := []string{NSExecName}
	if o.Netns != "" {
		args = append(args, "--net", o.Netns)
	}
	if o.MountNS != "" {
		args = append(args, "--mnt", o.MountNS)
	}
	for _, m := range o.Mounts {
		args = append(args, "--mount", m.String())
	}
	args = append(args, "--uid", strconv.FormatUint(uint64(o.UID), 10), "--gid", strconv.FormatUint(uint64(o.GID), 10))
	if o.Dir != "" {
		args = append(args, "--dir", o.Dir)
	}
	if o.ReadyFD != 0 {
		args = append(args, "--ready-fd", strconv.Itoa(o.ReadyFD))
	}
	return append(args, "--")
}

// MountNSPath is the mount namespace of the process pid — a container's
// PID as Supervisor.State (and lab.Container) report it — for NSExec.MountNS.
func MountNSPath(pid int) string {
	return "/proc/" + strconv.Itoa(pid) + "/ns/mnt"
}

// NSExecMain enters the network namespace, sets up the container's mount
// namespace, drops to the user and execs the command in place; it returns
// only on failure. A user other than root gets what kubelet gives a
// container with `capabilities: {drop: [ALL]}` and
// `allowPrivilegeEscalation: false`: no capabilities in any set, the
// bounding set included, and no_new_privs, so neither a setuid binary nor
// file capabilities give any back.
func NSExecMain(args []string) error {
	fs := flag.NewFlagSet(NSExecName, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	netPath := fs.String("net", "", "network namespace to enter (a path such as /run/netns/X)")
	mntPath := fs.String("mnt", "", "mount namespace to join (a path such as /proc/PID/ns/mnt)")
	var mounts []Mount
	fs.Func("mount", "SRC:DST[:ro] to bind-mount in a mount namespace of the command's own (repeatable)", func(v string) error {
		m, err := ParseMount(v)
		if err != nil {
			return err
		}
		mounts = append(mounts, m)
		return nil
	})
	uid := fs.Uint("uid", 0, "user id to run as")
	gid := fs.Uint("gid", 0, "group id to run as")
	dir := fs.String("dir", "", "working directory")
	readyFD := fs.Int("ready-fd", 0, "descriptor to close when the command runs")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s: %w", NSExecName, err)
	}
	if *readyFD > 0 {
		// Closed by the exec itself, not before: until then the container
		// is not yet in its namespaces, and a join would find the host's.
		unix.CloseOnExec(*readyFD)
	}
	argv := fs.Args()
	if len(argv) == 0 {
		return fmt.Errorf("%s: no command after the flags (usage: %s [--net PATH] [--mnt PATH | --mount SRC:DST[:ro]...] [--uid N --gid N] [--dir D] -- cmd args...)", NSExecName, NSExecName)
	}
	if *mntPath != "" && len(mounts) > 0 {
		return fmt.Errorf("%s: --mnt joins a container's mount namespace, which has its mounts already; give --mount only to start a container", NSExecName)
	}

	// Namespaces and the working directory are per thread once the file
	// system context is unshared: all of it happens on the thread that will
	// exec.
	runtime.LockOSThread()
	if *netPath != "" {
		fd, err := unix.Open(*netPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("%s: open netns %s: %w", NSExecName, *netPath, err)
		}
		// fd is read only and only needed for setns: closing it loses nothing.
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			_ = unix.Close(fd)
			return fmt.Errorf("%s: enter netns %s: %w", NSExecName, *netPath, err)
		}
		_ = unix.Close(fd)
	}
	switch {
	case *mntPath != "":
		if err := joinMountNS(*mntPath, *netPath); err != nil {
			return fmt.Errorf("%s: %w", NSExecName, err)
		}
	case len(mounts) > 0:
		if err := setupMounts(mounts); err != nil {
			return fmt.Errorf("%s: %w", NSExecName, err)
		}
	}

	// Looked up once the mounts are in place: the command may be a script
	// of a mounted volume.
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return fmt.Errorf("%s: %w", NSExecName, err)
	}
	// Held open across the uid switch: the binary may sit in a directory the
	// new user cannot search (go run builds in a 0700 temp dir; /root is
	// 0700), and execveat on this descriptor needs no path walk.
	bin, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%s: open %s: %w", NSExecName, path, err)
	}
	if *uid != 0 || *gid != 0 {
		if err := dropPrivileges(int(*uid), int(*gid)); err != nil {
			return fmt.Errorf("%s: %w", NSExecName, err)
		}
	}
	if *dir != "" {
		if err := os.Chdir(*dir); err != nil {
			return fmt.Errorf("%s: %w", NSExecName, err)
		}
	}
	err = syscall.Exec(path, argv, os.Environ())
	if errors.Is(err, syscall.EACCES) {
		err = execveat(bin, argv, os.Environ())
	}
	return fmt.Errorf("%s: exec %s: %w", NSExecName, path, err)
}

// execveat executes the file open at fd (execveat(2) with AT_EMPTY_PATH).
func execveat(fd int, argv, env []string) error {
	argvp, err := syscall.SlicePtrFromStrings(argv)
	if err != nil {
		return err
	}
	envp, err := syscall.SlicePtrFromStrings(env)
	if err != nil {
		return err
	}
	empty, err := unix.BytePtrFromString("")
	if err != nil {
		return err
	}
	_, _, errno := unix.Syscall6(unix.SYS_EXECVEAT, uintptr(fd), uintptr(unsafe.Pointer(empty)),
		uintptr(unsafe.Pointer(&argvp[0])), uintptr(unsafe.Pointer(&envp[0])), unix.AT_EMPTY_PATH, 0)
	return errno
}

// dropPrivileges makes the calling thread, which must be locked to its
// goroutine and be the one that execs, the unprivileged user: capabilities
// and no_new_privs are per thread and carried across exec.
func dropPrivileges(uid, gid int) error {
	last, err := lastCap()
	if err != nil {
		return err
	}
	// While CAP_SETPCAP is still there: nothing exec'd later may regain a
	// capability outside the bounding set.
	for c := 0; c <= last; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		// EINVAL: a kernel before 4.3, without ambient capabilities.
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	// Groups before uid: after Setuid there is no privilege left to change
	// them. Go applies these to every thread of the process.
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("drop supplementary groups: %w", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("setgid %d: %w", gid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("setuid %d: %w", uid, err)
	}
	// Leaving root empties the permitted, effective and ambient sets; this
	// empties the inheritable set too, and checks that all are empty.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("clear capabilities: %w", err)
	}
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read capabilities: %w", err)
	}
	for _, d := range data {
		if d.Effective|d.Permitted|d.Inheritable != 0 {
			return fmt.Errorf("capabilities left after dropping to uid %d: %+v", uid, data)
		}
	}
	return nil
}

// lastCap is the highest capability the kernel knows.
func lastCap() (int, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("read the kernel's last capability: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("read the kernel's last capability: %w", err)
	}
	return n, nil
}
