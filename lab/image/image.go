// Package image owns the meshlab container image: built from a static meshlab
// binary as a single layer with go-containerregistry (no Dockerfile, no docker
// build), written as a docker-loadable tarball, and loaded into a container
// engine through its API or into kind's nodes.
package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Repository is where every meshlab container's image comes from. The
// .local domain makes a node never try to pull it: it is loaded, not pulled.
const Repository = "meshlab.local/meshlab"

// Ref is the image reference of a meshlab version.
func Ref(version string) string {
	if version == "" {
		version = "dev"
	}
	// A tag allows [A-Za-z0-9_.-] only; versions like v1.2.3+dirty do not fit.
	tag := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
			return r
		}
		return '-'
	}, version)
	return Repository + ":" + tag
}

// Path of the binary inside the image; the entrypoint.
const BinaryPath = "/meshlab"

// Users the image knows by name: root for init-redirect (it programs nftables)
// and 1337, the uid Istio's proxy runs as and capture exempts.
const passwd = "root:x:0:0:root:/root:/sbin/nologin\nistio-proxy:x:1337:1337:istio-proxy:/tmp:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
const group = "root:x:0:\nistio-proxy:x:1337:\nnobody:x:65534:\n"

// Go's resolver reads /etc/hosts first only when nsswitch.conf says so.
const nsswitch = "hosts: files dns\n"

// Build makes the image from binary, a static linux executable for arch
// ("amd64" or "arm64"). The layer's timestamps are fixed, so the same binary
// always gives the same image ID and a reload can be skipped.
func Build(binary, arch string) (v1.Image, error) {
	if err := CheckBinary(binary, arch); err != nil {
		return nil, err
	}
	layerBytes, err := layerTar(binary)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	})
	if err != nil {
		return nil, fmt.Errorf("image layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = arch
	cf.Config.Entrypoint = []string{BinaryPath}
	cf.Config.Env = []string{"PATH=/", "HOME=/tmp"}
	cf.Config.WorkingDir = "/"
	cf.Config.Labels = map[string]string{"org.opencontainers.image.title": "meshlab"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	return img, nil
}

// layerTar is the gzipped tar of the image's only layer. Building it once in
// memory, at the fastest compression, is what keeps a build a couple of
// seconds: go-containerregistry would otherwise compress it once for the
// digest and again for the tarball.
func layerTar(binary string) ([]byte, error) {
	bin, err := os.Open(binary)
	if err != nil {
		return nil, fmt.Errorf("image: open the meshlab binary: %w", err)
	}
	defer func() { _ = bin.Close() }() // read only
	st, err := bin.Stat()
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	tw := tar.NewWriter(zw)
	epoch := time.Unix(0, 0).UTC()
	dir := func(name string, mode int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: epoch, Format: tar.FormatPAX})
	}
	link := func(name, target string) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: epoch, Format: tar.FormatPAX})
	}
	file := func(name string, mode int64, data string) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := io.WriteString(tw, data)
		return err
	}
	steps := []func() error{
		func() error { return dir("etc/", 0o755) },
		func() error { return file("etc/passwd", 0o644, passwd) },
		func() error { return file("etc/group", 0o644, group) },
		func() error { return file("etc/nsswitch.conf", 0o644, nsswitch) },
		func() error { return dir("tmp/", 0o1777) },
		func() error {
			h := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(BinaryPath, "/"), Mode: 0o755, Size: st.Size(), ModTime: epoch, Format: tar.FormatPAX}
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			_, err := io.Copy(tw, bin)
			return err
		},
		// The image has no other programs: curl (what Istio's exercises
		// exec in pods) is meshlab run by that name, found on PATH=/ or
		// at the path manifests name.
		func() error { return link("curl", "meshlab") },
		func() error { return dir("usr/", 0o755) },
		func() error { return dir("usr/bin/", 0o755) },
		func() error { return link("usr/bin/curl", BinaryPath) },
		tw.Close,
		zw.Close,
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return nil, fmt.Errorf("image: write the layer: %w", err)
		}
	}
	return buf.Bytes(), nil
}

// ErrNotStatic says a binary cannot run in the image: it is not a static
// linux executable for the nodes' architecture.
var ErrNotStatic = errors.New("not a static linux executable")

// CheckBinary reports whether path is a static linux ELF executable for arch.
func CheckBinary(path, arch string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w (%v)", path, ErrNotStatic, err)
	}
	defer func() { _ = f.Close() }() // read only
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]
	if want == 0 {
		return fmt.Errorf("image: architecture %q: want amd64 or arm64", arch)
	}
	if f.Machine != want {
		return fmt.Errorf("%s is for %v, the nodes are linux/%s: %w", path, f.Machine, arch, ErrNotStatic)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked (built with cgo): %w", path, ErrNotStatic)
		}
	}
	return nil
}

// Binary finds a binary the image can hold: the running one when it is a
// static linux executable for arch, else one built with the Go toolchain from
// the meshlab module in srcDir (CGO_ENABLED=0 GOOS=linux GOARCH=arch) into
// cacheDir. ldflags are passed to go build (to stamp the version).
func Binary(ctx context.Context, arch, srcDir, cacheDir, ldflags string) (string, error) {
	self, err := os.Executable()
	if err == nil && CheckBinary(self, arch) == nil {
		return self, nil
	}
	how := fmt.Sprintf("build one with `CGO_ENABLED=0 GOOS=linux GOARCH=%s go build -o meshlab-linux-%s .` in the meshlab source and run that", arch, arch)
	if runtime.GOOS == "linux" && runtime.GOARCH == arch {
		how = "build meshlab with `CGO_ENABLED=0 go build .` and run that"
	}
	goBin, lookErr := exec.LookPath("go")
	if lookErr != nil || srcDir == "" || !isMeshlabModule(srcDir) {
		return "", fmt.Errorf("the running meshlab (%s) cannot run in the linux/%s image: %v; %s", self, arch, CheckBinary(self, arch), how)
	}
	out := filepath.Join(cacheDir, "meshlab-linux-"+arch)
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("image: %w", err)
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-ldflags", ldflags, "-o", out, ".")
	cmd.Dir = srcDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build a linux/%s meshlab for the image: %v\n%s", arch, err, b)
	}
	return out, CheckBinary(out, arch)
}

func isMeshlabModule(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	return err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module github.com/meshlab/meshlab\n"))
}

// WriteTarball writes img as a docker-loadable tarball (`docker load`, kind's
// image-archive loading) tagged ref.
func WriteTarball(w io.Writer, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image reference %q: %w", ref, err)
	}
	if err := tarball.Write(tag, img, w); err != nil {
		return fmt.Errorf("write the image tarball: %w", err)
	}
	return nil
}

// WriteFile writes the tarball to path, through a temporary file so a reader
// never sees half of one.
func WriteFile(path, ref string, img v1.Image) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".image-*.tar")
	if err != nil {
		return fmt.Errorf("write the image tarball: %w", err)
	}
	// Once renamed there is nothing left to remove; before, a failure is
	// already being returned.
	defer func() { _ = os.Remove(tmp.Name()) }()
	if err := WriteTarball(tmp, ref, img); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write the image tarball: %w", err)
	}
	return os.Rename(tmp.Name(), path)
}

// ID is the image's ID as engines and containerd report it: its config digest.
func ID(img v1.Image) (string, error) {
	h, err := img.ConfigName()
	if err != nil {
		return "", fmt.Errorf("image ID: %w", err)
	}
	return h.String(), nil
}
