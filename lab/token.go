package lab

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// APITokenFile is the state directory's file of the bearer token the lab's
// control plane API wants. The runtime writes a new one (0600) at every up;
// the CLI reads it to talk to the lab of its state directory.
const APITokenFile = "api-token"

// ReadAPIToken reads the lab's API token from its state directory, without
// following a link planted in its place.
func ReadAPIToken(stateDir string) (string, error) {
	path := filepath.Join(stateDir, APITokenFile)
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return "", fmt.Errorf("read the lab's API token: %w", err)
	}
	defer func() { _ = f.Close() }() // read only: nothing to lose
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", fmt.Errorf("read the lab's API token %s: %w", path, err)
	}
	return strings.TrimSpace(string(b)), nil
}
