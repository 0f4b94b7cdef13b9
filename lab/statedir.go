package lab

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrUnsafeStateDir is returned (wrapped) when root would write into a state
// directory that another user can change: whoever can create entries on the
// path can plant a symlink where root writes and have it overwrite any file.
var ErrUnsafeStateDir = errors.New("unsafe state directory")

// PrepareStateDir makes dir ready for root to write in: it creates what is
// missing, refuses a directory that a user other than root could change (the
// directory itself, or any directory on its path up to /), and closes the
// directory to everyone else (0700): it holds the store with the mesh's CA
// key and TLS secrets, the pods' logs and the lab's records, and pods run as
// other users on the same file system.
//
// It only applies to root; other users write only where they already may.
func PrepareStateDir(dir string) error {
	if os.Geteuid() != 0 {
		return os.MkdirAll(dir, 0o700)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("state directory %s: %w", dir, err)
	}
	// Created before the check, so that the check sees what root will use: a
	// name that did not exist yet could otherwise be planted in between.
	if err := mkdirAll(dir); err != nil {
		return fmt.Errorf("create state directory %s: %w", dir, err)
	}
	real, err := CheckStateDir(dir)
	if err != nil {
		return err
	}
	fi, err := os.Lstat(real)
	if err != nil {
		return fmt.Errorf("state directory %s: %w", dir, err)
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(real, 0o700); err != nil {
			return fmt.Errorf("close state directory %s to other users: %w", dir, err)
		}
	}
	return nil
}

// mkdirAll creates the missing directories of dir; the last one 0700, the
// ones above it 0755 as a person's mkdir -p would.
func mkdirAll(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}

// CheckStateDir returns dir with its symlinks resolved, or an error wrapping
// ErrUnsafeStateDir when a user other than root could change what it holds:
// dir, a directory above it or a symlink on its path is owned by another
// user, or a directory is writable by group or others (a directory above it
// may be when it has the sticky bit, as /tmp has, which keeps others from
// renaming or removing root's entries).
func CheckStateDir(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("state directory %s: %w", dir, err)
	}
	real, err := checkPath(dir, dir, 0)
	if err != nil {
		return "", err
	}
	fi, err := os.Lstat(real)
	if err != nil {
		return "", fmt.Errorf("state directory %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("state directory %s: %s is not a directory", dir, real)
	}
	// The directory itself may not rely on a sticky bit: others could still
	// create the names root is about to write.
	if fi.Mode()&0o022 != 0 {
		return "", unsafeDir(dir, real, fi, "is writable by group or others")
	}
	return real, nil
}

// checkPath walks path from / down, checking each directory and symlink on
// the way, and returns path with its symlinks resolved.
func checkPath(dir, path string, depth int) (string, error) {
	if depth > 40 {
		return "", fmt.Errorf("state directory %s: too many levels of symbolic links", dir)
	}
	cur := "/"
	if err := checkDir(dir, cur); err != nil {
		return "", err
	}
	rest := strings.Split(strings.TrimPrefix(filepath.Clean(path), "/"), "/")
	for i, elem := range rest {
		if elem == "" {
			continue
		}
		next := filepath.Join(cur, elem)
		fi, err := os.Lstat(next)
		if err != nil {
			return "", fmt.Errorf("state directory %s: %w", dir, err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			// A symlink is as trustworthy as its owner: its directory was
			// checked already.
			if owner(fi) != 0 {
				return "", unsafeDir(dir, next, fi, "is a symlink owned by another user")
			}
			target, err := os.Readlink(next)
			if err != nil {
				return "", fmt.Errorf("state directory %s: %w", dir, err)
			}
			if !filepath.IsAbs(target) {
				target = filepath.Join(cur, target)
			}
			return checkPath(dir, filepath.Join(append([]string{target}, rest[i+1:]...)...), depth+1)
		}
		if !fi.IsDir() {
			return "", fmt.Errorf("state directory %s: %s is not a directory", dir, next)
		}
		if err := checkDir(dir, next); err != nil {
			return "", err
		}
		cur = next
	}
	return cur, nil
}

func checkDir(dir, path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("state directory %s: %w", dir, err)
	}
	if owner(fi) != 0 {
		return unsafeDir(dir, path, fi, fmt.Sprintf("is owned by uid %d, not root", owner(fi)))
	}
	if fi.Mode()&0o022 != 0 && fi.Mode()&fs.ModeSticky == 0 {
		return unsafeDir(dir, path, fi, "is writable by group or others")
	}
	return nil
}

func owner(fi fs.FileInfo) uint32 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Uid
	}
	return ^uint32(0)
}

func unsafeDir(dir, path string, fi fs.FileInfo, why string) error {
	return fmt.Errorf("%w %s: %s (%s) %s, so another user could make root overwrite any file through a symlink; "+
		"use a --state-dir that only root can change (the default for root is /root/.local/state/meshlab; or e.g. /var/lib/meshlab), "+
		"or chown root and chmod go-w every directory on its path",
		ErrUnsafeStateDir, dir, path, fi.Mode(), why)
}

// WriteFile replaces path with data atomically, as a new file of mode perm:
// it writes a fresh temporary file beside it (O_EXCL under a random name, so
// nothing planted there is followed or reused) and renames it over path,
// which replaces a symlink at path rather than writing through it. A reader
// sees the old content or the new, never half of it.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	name := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			_ = tmp.Close()
			_ = os.Remove(name)
		}
	}()
	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(name, path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	ok = true
	return nil
}

// CreateLog opens path for writing, truncated (or appended to, with
// appendTo), creating it 0600. It never follows a symlink at path and
// refuses anything but a regular file, so a planted link or FIFO neither
// redirects root's writes nor blocks them.
func CreateLog(path string, appendTo bool) (*os.File, error) {
	flags := os.O_WRONLY | os.O_CREATE | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC
	if appendTo {
		flags |= os.O_APPEND
	} else {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("not a regular file (%s)", fi.Mode())
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return f, nil
}
