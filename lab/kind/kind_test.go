package kind

import (
	"context"
	"flag"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		golden string
		c      Cluster
	}{
		{"config-default.yaml", Cluster{Name: DefaultName, HostAddr: "127.0.0.1", HTTPPort: 8080, HTTPSPort: 8443}},
		{"config-2-workers.yaml", Cluster{Name: "lab2", Workers: 2, HostAddr: "127.0.0.1", HTTPPort: 18080, HTTPSPort: 18443, NodeImage: "kindest/node:v1.36.0"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			b, err := ConfigYAML(tc.c)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.golden, b)
		})
	}
	if !strings.HasPrefix(NodeImage, "kindest/node:v") || !strings.Contains(NodeImage, "@sha256:") {
		t.Errorf("NodeImage %q is not a pinned kindest/node image", NodeImage)
	}
}

func TestNetworkSubnets(t *testing.T) {
	fixture, err := os.ReadFile("testdata/network-kind.json")
	if err != nil {
		t.Fatal(err)
	}
	// A real HTTP server on a unix socket, as the engine is.
	sock := filepath.Join(t.TempDir(), "engine.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/_ping":
			w.Write([]byte("OK"))
		case "/networks/kind":
			w.Write(fixture)
		default:
			http.Error(w, `{"message":"network not found"}`, http.StatusNotFound)
		}
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	t.Setenv("DOCKER_HOST", "unix://"+sock)
	e, err := FindEngine()
	if err != nil || e.Socket != sock {
		t.Fatalf("FindEngine = %v, %v; want the engine at %s", e, err, sock)
	}
	got, err := e.NetworkSubnets(context.Background(), "kind")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].String() != "172.18.0.0/16" || got[1].String() != "fc00:f853:ccd:e793::/64" {
		t.Errorf("subnets %v, want 172.18.0.0/16 and fc00:f853:ccd:e793::/64", got)
	}
	if _, err := e.NetworkSubnets(context.Background(), "other"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("a missing network: err %v, want the engine's not found", err)
	}
}

func TestFindEngineNone(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "nothing.sock"))
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	if _, err := os.Stat("/var/run/docker.sock"); err == nil {
		t.Skip("an engine may answer at /var/run/docker.sock")
	}
	if _, err := os.Stat("/run/podman/podman.sock"); err == nil {
		t.Skip("an engine may answer at /run/podman/podman.sock")
	}
	_, err := FindEngine()
	if err == nil || !strings.Contains(err.Error(), "nothing.sock") {
		t.Errorf("FindEngine with no engine: %v, want ErrNoEngine naming the sockets tried", err)
	}
	if _, err := Usable(); err == nil || !strings.Contains(err.Error(), "--runtime local") {
		t.Errorf("Usable with no engine: %v, want advice", err)
	}
}
