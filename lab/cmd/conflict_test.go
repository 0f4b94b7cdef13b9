package cmd

import (
	"bytes"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/controlplane"
	"github.com/meshlab/meshlab/lab"
)

// TestApplyStaleResourceVersion: get -o yaml, edit, apply round-trips; the
// same file applied after another change is refused, naming the object,
// and the command fails.
func TestApplyStaleResourceVersion(t *testing.T) {
	cpDir := t.TempDir()
	s, err := controlplane.New(controlplane.Options{StateDir: cpDir})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() { hs.Close(); s.Close() })
	token, err := lab.ReadAPIToken(cpDir)
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		app := &cli.App{Name: "meshlab", Writer: &out, ErrWriter: &out, ExitErrHandler: func(*cli.Context, error) {},
			Commands: []*cli.Command{Apply(), Get()}}
		err := app.Run(Intersperse(app, append([]string{"meshlab"}, append(args, "--controlplane", hs.URL, "--token", token)...)))
		return out.String(), err
	}
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const vs = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
`
	if out, err := run("apply", "-f", write("vs.yaml", vs)); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	got, err := run("get", "vs", "reviews", "-o", "yaml")
	if err != nil || !strings.Contains(got, "resourceVersion:") {
		t.Fatalf("get -o yaml: %v\n%s", err, got)
	}
	edited := write("edited.yaml", strings.Replace(got, "subset: v1", "subset: v2", 1))
	if out, err := run("apply", "-f", edited); err != nil || !strings.Contains(out, "configured") {
		t.Fatalf("apply of get -o yaml, edited: %v\n%s", err, out)
	}
	// The file still carries the version it was read at; the store moved on.
	out, err := run("apply", "-f", write("again.yaml", strings.Replace(got, "subset: v1", "subset: v3", 1)))
	if err == nil || !strings.Contains(err.Error()+out, "VirtualService default/reviews has been modified") {
		t.Fatalf("apply of a stale read: %v\n%s\nwant a failure naming the object", err, out)
	}
}
