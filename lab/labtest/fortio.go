package labtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FortioVersion is the load generator the tests and benchmarks use. Newer
// releases pull in grol.io, which the module proxy here does not serve.
const FortioVersion = "v1.68.2"

// EnsureFortio returns the fortio binary in cache, installing it with
// `go install` when it is missing.
func EnsureFortio(ctx context.Context, cache string) (string, error) {
	bin := filepath.Join(cache, "bin", "fortio")
	if out, err := exec.CommandContext(ctx, bin, "version").Output(); err == nil && "v"+strings.TrimSpace(string(out)) == FortioVersion {
		return bin, nil
	}
	cmd := exec.CommandContext(ctx, "go", "install", "fortio.org/fortio@"+FortioVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+filepath.Join(cache, "bin"), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("install fortio %s: %w\n%s", FortioVersion, err, out)
	}
	return bin, nil
}

// Fortio is EnsureFortio for a test, in the user's cache directory (where
// the benchmarks keep it too).
func Fortio(t testing.TB) string {
	t.Helper()
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin, err := EnsureFortio(ctx, filepath.Join(cache, "meshlab", "bench"))
	if err != nil {
		t.Fatal(err)
	}
	return bin
}
