package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestRef(t *testing.T) {
	for _, tc := range []struct{ version, want string }{
		{"v0.1.0", "meshlab.local/meshlab:v0.1.0"},
		{"", "meshlab.local/meshlab:dev"},
		{"v0.1.0+dirty", "meshlab.local/meshlab:v0.1.0-dirty"},
	} {
		if got := Ref(tc.version); got != tc.want {
			t.Errorf("Ref(%q) = %q, want %q", tc.version, got, tc.want)
		}
		if _, err := name.NewTag(Ref(tc.version)); err != nil {
			t.Errorf("Ref(%q) is no valid tag: %v", tc.version, err)
		}
	}
}

var (
	buildOnce sync.Once
	builtPath string
	buildErr  error
)

// meshlabBinary builds meshlab, static, stamped with version, once per test
// binary.
func meshlabBinary(t *testing.T, version string) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "meshlab-image-test-")
		if err != nil {
			buildErr = err
			return
		}
		builtPath = filepath.Join(dir, "meshlab")
		cmd := exec.Command("go", "build", "-ldflags", "-X github.com/meshlab/meshlab/lab/cmd.Version="+version, "-o", builtPath, ".")
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
		if b, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, b)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtPath != "" {
		os.RemoveAll(filepath.Dir(builtPath))
	}
	os.Exit(code)
}

const testVersion = "v0.0.0-imagetest"

func TestBuild(t *testing.T) {
	bin := meshlabBinary(t, testVersion)
	img, err := Build(bin, runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s, want linux/%s", cf.OS, cf.Architecture, runtime.GOARCH)
	}
	if got := strings.Join(cf.Config.Entrypoint, " "); got != "/meshlab" {
		t.Errorf("entrypoint %q, want /meshlab", got)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v; want one", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]*tar.Header{}
	contents := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = h
		if h.Size < 4096 {
			b, _ := io.ReadAll(tr)
			contents[h.Name] = string(b)
		}
	}
	var names []string
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	if got, want := strings.Join(names, " "), "curl etc/ etc/group etc/nsswitch.conf etc/passwd meshlab tmp/ usr/ usr/bin/ usr/bin/curl"; got != want {
		t.Errorf("layer holds %s, want %s", got, want)
	}
	// curl is meshlab by another name, on PATH=/ and at /usr/bin/curl.
	for _, l := range []struct{ name, target string }{{"curl", "meshlab"}, {"usr/bin/curl", "/meshlab"}} {
		if h := files[l.name]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != l.target {
			t.Errorf("the layer's /%s is %+v, want a symlink to %s", l.name, h, l.target)
		}
	}
	st, _ := os.Stat(bin)
	if h := files["meshlab"]; h == nil || h.Size != st.Size() || h.Mode&0o111 == 0 {
		t.Errorf("the layer's /meshlab is %+v, want the %d-byte executable", h, st.Size())
	}
	if h := files["tmp/"]; h == nil || h.Mode&0o1777 != 0o1777 {
		t.Errorf("/tmp is not world-writable and sticky: %+v", h)
	}
	for _, u := range []string{"root:x:0:0:", "istio-proxy:x:1337:1337:"} {
		if !strings.Contains(contents["etc/passwd"], u) {
			t.Errorf("/etc/passwd lacks %q:\n%s", u, contents["etc/passwd"])
		}
	}

	// The same binary gives the same image: a second up skips the reload.
	again, err := Build(bin, runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	id1, _ := ID(img)
	id2, _ := ID(again)
	if id1 != id2 || !strings.HasPrefix(id1, "sha256:") {
		t.Errorf("two builds of one binary: IDs %s and %s, want one sha256 ID", id1, id2)
	}

	// The tarball is what docker load and kind read: a manifest naming the tag.
	path := filepath.Join(t.TempDir(), "image.tar")
	if err := WriteFile(path, Ref(testVersion), img); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag(Ref(testVersion))
	back, err := tarball.ImageFromPath(path, &tag)
	if err != nil {
		t.Fatalf("read the tarball back: %v", err)
	}
	if id, _ := ID(back); id != id1 {
		t.Errorf("tarball image ID %s, want %s", id, id1)
	}
}

func TestCheckBinary(t *testing.T) {
	bin := meshlabBinary(t, testVersion)
	other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[runtime.GOARCH]
	notELF := filepath.Join(t.TempDir(), "script")
	os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755)
	for _, tc := range []struct {
		name, path, arch string
		ok               bool
	}{
		{"static for this arch", bin, runtime.GOARCH, true},
		{"other arch", bin, other, false},
		{"not an executable", notELF, runtime.GOARCH, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckBinary(tc.path, tc.arch)
			if tc.ok != (err == nil) {
				t.Fatalf("CheckBinary(%s, %s) = %v, want ok=%v", tc.path, tc.arch, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrNotStatic) {
				t.Errorf("error %v does not wrap ErrNotStatic", err)
			}
		})
	}
	// A dynamically linked binary, when the machine has one.
	if sh, err := exec.LookPath("sh"); err == nil {
		if err := CheckBinary(sh, runtime.GOARCH); err == nil {
			if b, _ := exec.Command("file", "-L", sh).Output(); !strings.Contains(string(b), "static") {
				t.Errorf("CheckBinary(%s) accepted a dynamic executable", sh)
			}
		}
	}
}

// TestDockerRun builds the image with our code, loads it into a real Docker
// engine through its API, and runs `meshlab version` in it as uid 1337 with
// no network.
func TestDockerRun(t *testing.T) {
	sock := dockerEngine(t)
	bin := meshlabBinary(t, testVersion)
	img, err := Build(bin, runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	ref := Ref(testVersion)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := LoadEngine(ctx, sock, ref, img); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		req, _ := http.NewRequest(http.MethodDelete, "http://engine/images/"+ref+"?force=1", nil)
		if resp, err := UnixClient(sock).Do(req); err == nil {
			resp.Body.Close()
		}
	})
	// The engine knows it by our ID.
	resp, err := UnixClient(sock).Get("http://engine/images/" + ref + "/json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	id, _ := ID(img)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), id) {
		t.Fatalf("inspect %s: %s %s, want ID %s", ref, resp.Status, body, id)
	}
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Fatalf("no docker CLI to run the image with: %v (apt-get install -y docker.io)", err)
	}
	cmd := exec.CommandContext(ctx, docker, "-H", "unix://"+sock, "run", "--rm", "--network", "none", "--user", "1337:1337", ref, "version")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("docker run %s version: %v\n%s", ref, err, out)
	}
	if !strings.Contains(string(out), "meshlab "+testVersion) {
		t.Errorf("docker run %s version printed %q, want meshlab %s", ref, out, testVersion)
	}

	// curl in the image is meshlab's: a refused loopback port is curl's
	// exit 7 and code 000, by either of its names.
	for _, entry := range []string{"curl", "/usr/bin/curl"} {
		cmd := exec.CommandContext(ctx, docker, "-H", "unix://"+sock, "run", "--rm", "--network", "none", "--user", "1337:1337",
			"--entrypoint", entry, ref, "-s", "-w", "%{http_code}", "http://127.0.0.1:1/")
		out, err := cmd.Output()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 7 || string(out) != "000" {
			t.Errorf("docker run --entrypoint %s %s: %v, printed %q; want exit 7 and 000", entry, ref, err, out)
		}
	}
}

// dockerEngine finds the test Docker engine, or starts one. It never uses
// /var/run/docker.sock: an engine there makes `up --runtime auto` pick kind,
// and the local runtime's end-to-end tests must keep running locally. CI
// (.ci/run) starts one on the same private socket first.
func dockerEngine(t *testing.T) string {
	t.Helper()
	sock := os.Getenv("MESHLAB_TEST_DOCKER_SOCK")
	if sock == "" {
		sock = defaultTestSocket
	}
	if Ping(sock) == nil {
		return sock
	}
	unavailable := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dockerd, err := exec.LookPath("dockerd")
	if err != nil {
		unavailable("no Docker engine answers at %s and dockerd is not installed: apt-get install -y docker.io (.ci/run does)", sock)
	}
	if os.Geteuid() != 0 {
		unavailable("no Docker engine answers at %s and starting dockerd needs root", sock)
	}
	dir := filepath.Dir(sock)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	logf, err := os.Create(filepath.Join(data, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	// No bridge and no iptables: the test's containers need no network, and
	// the machine's firewall stays as it was.
	cmd := exec.Command(dockerd, dockerdArgs(sock, filepath.Join(data, "root"), filepath.Join(data, "exec"))...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dockerd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		logf.Close()
		os.Remove(sock)
	})
	for i := 0; i < 300; i++ {
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("dockerd exited (%v) before it answered:\n%s", err, tailLines(string(b), 20))
		case <-time.After(100 * time.Millisecond):
		}
		if Ping(sock) == nil {
			return sock
		}
	}
	b, _ := os.ReadFile(logf.Name())
	t.Fatalf("dockerd did not answer at %s within 30s:\n%s", sock, tailLines(string(b), 20))
	return ""
}

// defaultTestSocket is where .ci/run starts the test engine.
const defaultTestSocket = "/run/meshlab-test-docker/docker.sock"

func dockerdArgs(sock, dataRoot, execRoot string) []string {
	return []string{"--host", "unix://" + sock, "--data-root", dataRoot, "--exec-root", execRoot,
		"--pidfile", filepath.Join(execRoot, "dockerd.pid"),
		"--bridge", "none", "--iptables=false", "--ip6tables=false", "--ip-masq=false"}
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
