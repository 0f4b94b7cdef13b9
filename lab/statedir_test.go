package lab

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the state directory checks are root's")
	}
}

// Each file root writes in the state directory, with a symlink planted
// where it goes (and where the old code put its temporary file): the target
// must stay as it was, whether the write fails (a log, opened in place) or
// replaces the link (a record, renamed into place).
func TestStateWritesDoNotFollowSymlinks(t *testing.T) {
	tests := []struct {
		name  string
		links []string // planted names, each pointing at the victim
		write func(dir string) error
		fails bool
	}{
		{"lab.json", []string{StatusFile, StatusFile + ".tmp"}, func(dir string) error {
			return WriteStatus(dir, Status{Runtime: "local", Phase: PhaseRunning})
		}, false},
		{"daemon.pid", []string{PIDFile, PIDFile + ".tmp"}, func(dir string) error {
			return WriteFile(filepath.Join(dir, PIDFile), []byte("42\n"), 0o600)
		}, false},
		{"daemon.log", []string{DaemonLog}, func(dir string) error {
			f, err := CreateLog(filepath.Join(dir, DaemonLog), false)
			if err == nil {
				_, err = f.WriteString("overwritten\n")
				f.Close()
			}
			return err
		}, true},
		{"a container log, appended to", []string{"app.log"}, func(dir string) error {
			f, err := CreateLog(filepath.Join(dir, "app.log"), true)
			if err == nil {
				_, err = f.WriteString("appended\n")
				f.Close()
			}
			return err
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			victim := filepath.Join(t.TempDir(), "victim")
			const precious = "root's precious file\n"
			if err := os.WriteFile(victim, []byte(precious), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, l := range tt.links {
				if err := os.Symlink(victim, filepath.Join(dir, l)); err != nil {
					t.Fatal(err)
				}
			}
			err := tt.write(dir)
			if tt.fails && err == nil {
				t.Errorf("write through a planted symlink succeeded; want an error")
			}
			if !tt.fails && err != nil {
				t.Errorf("write: %v; want the record written in place of the link", err)
			}
			if b, _ := os.ReadFile(victim); string(b) != precious {
				t.Errorf("the symlink's target now holds %q; want it untouched", b)
			}
			if !tt.fails {
				fi, err := os.Lstat(filepath.Join(dir, tt.links[0]))
				if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
					t.Errorf("%s after the write: %v, %v; want a regular file, 0600", tt.links[0], fi, err)
				}
			}
		})
	}
}

// A FIFO planted as a log would block root's open; it is refused at once.
func TestCreateLogRefusesFIFO(t *testing.T) {
	p := filepath.Join(t.TempDir(), DaemonLog)
	if err := mkfifo(p); err != nil {
		t.Skip(err)
	}
	if f, err := CreateLog(p, false); err == nil {
		f.Close()
		t.Fatal("CreateLog opened a FIFO; want an error")
	}
}

func TestPrepareStateDir(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name    string
		setup   func(t *testing.T, base string) string // returns the state dir
		wantErr string
	}{
		{"new, under a root-owned directory", func(t *testing.T, base string) string {
			return filepath.Join(base, "a", "meshlab")
		}, ""},
		{"existing 0755 is closed to 0700", func(t *testing.T, base string) string {
			d := filepath.Join(base, "meshlab")
			mkdir(t, d, 0o755)
			return d
		}, ""},
		{"under a sticky world-writable directory, as /tmp", func(t *testing.T, base string) string {
			mkdir(t, filepath.Join(base, "tmp"), os.ModeSticky|0o777)
			return filepath.Join(base, "tmp", "lab2")
		}, ""},
		{"under a world-writable directory", func(t *testing.T, base string) string {
			mkdir(t, filepath.Join(base, "shared"), 0o777)
			return filepath.Join(base, "shared", "lab")
		}, "is writable by group or others"},
		{"under a group-writable directory", func(t *testing.T, base string) string {
			mkdir(t, filepath.Join(base, "team"), 0o775)
			return filepath.Join(base, "team", "lab")
		}, "is writable by group or others"},
		{"the directory itself world-writable, even sticky", func(t *testing.T, base string) string {
			d := filepath.Join(base, "lab")
			mkdir(t, d, os.ModeSticky|0o777)
			return d
		}, "is writable by group or others"},
		{"owned by another user", func(t *testing.T, base string) string {
			d := filepath.Join(base, "lab")
			mkdir(t, d, 0o700)
			chown(t, d, 65534)
			return d
		}, "is owned by uid 65534"},
		{"under a home directory of another user", func(t *testing.T, base string) string {
			home := filepath.Join(base, "home", "alice")
			mkdir(t, filepath.Join(base, "home"), 0o755)
			mkdir(t, home, 0o755)
			chown(t, home, 65534)
			return filepath.Join(home, ".local", "state", "meshlab")
		}, "is owned by uid 65534"},
		{"a symlink of another user on the path, in a sticky directory", func(t *testing.T, base string) string {
			mkdir(t, filepath.Join(base, "tmp"), os.ModeSticky|0o777)
			target := filepath.Join(base, "etc")
			mkdir(t, target, 0o755)
			link := filepath.Join(base, "tmp", "lab")
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			if err := os.Lchown(link, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			return link
		}, "is a symlink owned by another user"},
		{"a symlink of root's to a safe directory", func(t *testing.T, base string) string {
			target := filepath.Join(base, "var", "lib", "meshlab")
			if err := os.MkdirAll(target, 0o700); err != nil {
				t.Fatal(err)
			}
			link := filepath.Join(base, "lab")
			if err := os.Symlink("var/lib/meshlab", link); err != nil {
				t.Fatal(err)
			}
			return link
		}, ""},
		{"a symlink of root's to an unsafe directory", func(t *testing.T, base string) string {
			target := filepath.Join(base, "shared", "lab")
			mkdir(t, filepath.Join(base, "shared"), 0o777)
			mkdir(t, target, 0o700)
			link := filepath.Join(base, "lab")
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
			return link
		}, "is writable by group or others"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir() // root's, 0700, under /tmp
			dir := tt.setup(t, base)
			err := PrepareStateDir(dir)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrUnsafeStateDir) || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "--state-dir") {
					t.Fatalf("PrepareStateDir(%s) = %v; want ErrUnsafeStateDir saying %q and what to do", dir, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("PrepareStateDir(%s) = %v", dir, err)
			}
			fi, err := os.Stat(dir)
			if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
				t.Fatalf("state dir after PrepareStateDir: %v %v; want a 0700 directory", fi, err)
			}
		})
	}
}

func mkdir(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// Chmod, not the umask-filtered mode of Mkdir; and the sticky bit.
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
}

func chown(t *testing.T, path string, uid int) {
	t.Helper()
	if err := os.Chown(path, uid, uid); err != nil {
		t.Fatal(err)
	}
}
