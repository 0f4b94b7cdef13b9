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
	"syscall"
	"unsafe"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// NSExecName is the hidden subcommand the supervisor re-execs itself as.
const NSExecName = "ns-exec"

// NSExecCommand is `meshlab ns-exec --net PATH [--uid N --gid N] [--dir D] --
// cmd args...`, hidden: only the supervisor runs it.
func NSExecCommand() *cli.Command {
	return &cli.Command{
		Name:            NSExecName,
		Usage:           "run a command inside a network namespace as a user (used by the local runtime)",
		Hidden:          true,
		SkipFlagParsing: true,
		Action: func(c *cli.Context) error {
			return NSExecMain(c.Args().Slice())
		},
	}
}

// NSExecMain enters the network namespace, drops to the user and execs the
// command in place; it returns only on failure.
func NSExecMain(args []string) error {
	fs := flag.NewFlagSet(NSExecName, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	netPath := fs.String("net", "", "network namespace to enter (a path such as /run/netns/X)")
	uid := fs.Uint("uid", 0, "user id to run as")
	gid := fs.Uint("gid", 0, "group id to run as")
	dir := fs.String("dir", "", "working directory")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s: %w", NSExecName, err)
	}
	argv := fs.Args()
	if len(argv) == 0 {
		return fmt.Errorf("%s: no command after the flags (usage: %s --net PATH [--uid N --gid N] [--dir D] -- cmd args...)", NSExecName, NSExecName)
	}
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

	// The namespace is per thread: enter it on the thread that will exec.
	runtime.LockOSThread()
	if *netPath != "" {
		fd, err := unix.Open(*netPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("%s: open netns %s: %w", NSExecName, *netPath, err)
		}
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			unix.Close(fd)
			return fmt.Errorf("%s: enter netns %s: %w", NSExecName, *netPath, err)
		}
		unix.Close(fd)
	}
	// Groups before uid: after Setuid there is no privilege left to change
	// them. Go applies these to every thread of the process.
	if *uid != 0 || *gid != 0 {
		if err := syscall.Setgroups(nil); err != nil {
			return fmt.Errorf("%s: drop supplementary groups: %w", NSExecName, err)
		}
		if err := syscall.Setgid(int(*gid)); err != nil {
			return fmt.Errorf("%s: setgid %d: %w", NSExecName, *gid, err)
		}
		if err := syscall.Setuid(int(*uid)); err != nil {
			return fmt.Errorf("%s: setuid %d: %w", NSExecName, *uid, err)
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
