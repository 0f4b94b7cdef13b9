package cmd

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/controlplane/api"
)

// TestApplyRefusesLargeFiles: a file over the API's limit is refused by
// name before it is parsed or sent. (A batch over it is refused by the
// client: TestAPIBodyLimit.)
func TestApplyRefusesLargeFiles(t *testing.T) {
	dir := t.TempDir()
	// A VirtualService of n routes, about 120 bytes each.
	vs := func(name string, n int) string {
		var b strings.Builder
		fmt.Fprintf(&b, "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: %s}\nspec:\n  hosts: [%s]\n  http:\n", name, name)
		for i := range n {
			fmt.Fprintf(&b, "  - match: [{uri: {prefix: /items/%d}}]\n    route: [{destination: {host: %s}}]\n", i, name)
		}
		return b.String()
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	huge := write("huge.yaml", vs("huge", 0)+strings.Repeat("# padding to make the file large\n", api.MaxRequestBytes/32+1))
	// Nothing listens on port 1: a refusal that names the file was made
	// before anything was sent.
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		app := &cli.App{Name: "meshlab", Writer: &out, ErrWriter: &out, ExitErrHandler: func(*cli.Context, error) {},
			Commands: []*cli.Command{Apply()}}
		err := app.Run(append([]string{"meshlab", "apply", "--controlplane", "127.0.0.1:1", "--token", "x"}, args...))
		return out.String(), err
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"one file over the limit", []string{"-f", huge}, huge + ": larger than 3 MiB, the most the control plane API takes in one apply"},
		{"a small file is sent", []string{"-f", write("small.yaml", vs("small", 10))}, "control plane unreachable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := run(tt.args...)
			if err == nil || !strings.Contains(err.Error()+out, tt.want) {
				t.Fatalf("apply %v: %v\n%s\nwant an error with %q", tt.args, err, out, tt.want)
			}
		})
	}
}
