package lab_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshlab/meshlab/lab/labtest"
	"github.com/meshlab/meshlab/lab/local"
)

// TestUpManifest: `up --manifest` applies the file as `apply -f` would once
// the lab is up; a bad one fails up before anything starts, naming its file
// and field.
func TestUpManifest(t *testing.T) {
	labtest.Skip(t)
	l := labtest.New(t, "..")
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec: {hostz: [x]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := l.Run("up", "--runtime", "local", "--no-bookinfo", "--manifest", bad, "--http-port", "18083", "--https-port", "18446", "--api-port", "25017")
	if err == nil || !strings.Contains(out, bad) || !strings.Contains(out, "hostz") {
		t.Fatalf("up with a bad manifest: %v\n%s\nwant a failure naming the file and the field", err, out)
	}
	if left, err := local.Network.Leftovers(); err != nil || len(left) > 0 {
		t.Errorf("up with a bad manifest left %v %v; want nothing started", left, err)
	}

	out = l.MustRun("up", "--runtime", "local", "--no-bookinfo", "--manifest", "../samples/bookinfo/networking/virtual-service-all-v1.yaml",
		"--http-port", "18083", "--https-port", "18446", "--api-port", "25017")
	t.Logf("up:\n%s", out)
	if !strings.Contains(out, "✓ apply") || !strings.Contains(out, "virtual-service-all-v1.yaml (4 objects)") || !strings.Contains(out, "Lab is up") {
		t.Errorf("up does not show the manifest applied:\n%s", out)
	}
	if got := l.MustRun("get", "vs", "-n", "default"); !strings.Contains(got, "reviews") || !strings.Contains(got, "productpage") {
		t.Errorf("get vs after up --manifest:\n%s", got)
	}
}
