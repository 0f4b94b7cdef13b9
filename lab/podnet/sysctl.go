package podnet

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

const sysctlDir = "/proc/sys"

// hostSysctls are the host sysctls EnsureBridge sets, and their values: the
// bridge routes between pods and the host only with forwarding on.
var hostSysctls = []struct{ name, value string }{
	{"net.ipv4.ip_forward", "1"},
}

func sysctlPath(name string) string {
	return filepath.Join(sysctlDir, strings.ReplaceAll(name, ".", "/"))
}

func readSysctl(name string) (string, error) {
	b, err := os.ReadFile(sysctlPath(name))
	if err != nil {
		return "", fmt.Errorf("read sysctl %s: %w", name, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func writeSysctl(name, value string) error {
	if err := os.WriteFile(sysctlPath(name), []byte(value+"\n"), 0o644); err != nil {
		return fmt.Errorf("set sysctl %s=%s: %w", name, value, err)
	}
	return nil
}

// setSysctls records the host's values (unless a record is there already:
// it holds the values from before the first EnsureBridge, which a second
// one must not overwrite with its own) and sets the lab's.
func (n Network) setSysctls() error {
	if n.SysctlRecord != "" {
		if _, err := os.Lstat(n.SysctlRecord); errors.Is(err, fs.ErrNotExist) {
			saved := map[string]string{}
			for _, s := range hostSysctls {
				v, err := readSysctl(s.name)
				if err != nil {
					return err
				}
				saved[s.name] = v
			}
			if err := writeRecord(n.SysctlRecord, saved); err != nil {
				return err
			}
		} else if err != nil {
			return fmt.Errorf("sysctl record: %w", err)
		}
	}
	for _, s := range hostSysctls {
		if err := writeSysctl(s.name, s.value); err != nil {
			return err
		}
	}
	return nil
}

// restoreSysctls puts back the recorded values and drops the record.
func (n Network) restoreSysctls() error {
	if n.SysctlRecord == "" {
		return nil
	}
	b, err := os.ReadFile(n.SysctlRecord)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read sysctl record: %w", err)
	}
	var saved map[string]string
	if err := json.Unmarshal(b, &saved); err != nil {
		return fmt.Errorf("read sysctl record %s: %w", n.SysctlRecord, err)
	}
	var errs []error
	// Only the sysctls EnsureBridge sets: the record names nothing else.
	for _, s := range hostSysctls {
		if v, ok := saved[s.name]; ok {
			if err := writeSysctl(s.name, v); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := os.Remove(n.SysctlRecord); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove sysctl record: %w", err)
	}
	return nil
}

// writeRecord writes the record whole, through a fresh temporary file and a
// rename, so a crash never leaves half of it.
func writeRecord(path string, saved map[string]string) error {
	b, err := json.Marshal(saved)
	if err != nil {
		return fmt.Errorf("encode sysctl record: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write sysctl record: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write sysctl record: %w", err)
	}
	_, werr := tmp.Write(append(b, '\n'))
	if err := errors.Join(werr, tmp.Sync(), tmp.Close()); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write sysctl record %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write sysctl record %s: %w", path, err)
	}
	return nil
}
