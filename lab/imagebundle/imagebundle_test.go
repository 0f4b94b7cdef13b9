package imagebundle

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/meshlab/meshlab/lab/image"
	"github.com/meshlab/meshlab/lab/kind"
	"github.com/meshlab/meshlab/lab/metallb"
)

// engine is the test Docker engine (.ci/run and scripts/test start it);
// without one the test skips, and fails under CI.
func engine(t *testing.T) string {
	t.Helper()
	sock := os.Getenv("MESHLAB_TEST_DOCKER_SOCK")
	if sock == "" {
		sock = "/run/meshlab-test-docker/docker.sock"
	}
	if err := image.Ping(sock); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skipf("no test Docker engine: %v (scripts/test starts one; or set MESHLAB_TEST_DOCKER_SOCK)", err)
	}
	return sock
}

func TestRefs(t *testing.T) {
	for _, tc := range []struct {
		node string
		m    metallb.Images
		want []string
	}{
		{"", metallb.Images{}, []string{kind.NodeImage, metallb.ControllerImage, metallb.SpeakerImage}},
		{"example.local/node:v1", metallb.Images{}, []string{"example.local/node:v1", metallb.ControllerImage, metallb.SpeakerImage}},
		{"", metallb.Images{Speaker: "mirror.local/speaker:1"}, []string{kind.NodeImage, metallb.ControllerImage, "mirror.local/speaker:1"}},
		{"n:1", metallb.Images{Controller: "c:1", Speaker: "s:1"}, []string{"n:1", "c:1", "s:1"}},
	} {
		if got := Refs(tc.node, tc.m); !slices.Equal(got, tc.want) {
			t.Errorf("Refs(%q, %+v) = %v, want %v", tc.node, tc.m, got, tc.want)
		}
	}
}

func TestTagOf(t *testing.T) {
	for _, tc := range []struct{ ref, want, err string }{
		{"kindest/node:v1.37.0@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5", "kindest/node:v1.37.0", ""},
		{"quay.io/metallb/speaker:v0.15.2", "quay.io/metallb/speaker:v0.15.2", ""},
		{"busybox", "busybox:latest", ""},
		{"Bad Ref", "", "image reference"},
	} {
		got, err := tagOf(tc.ref)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("tagOf(%q) error %v, want one with %q", tc.ref, err, tc.err)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("tagOf(%q) = %q, %v; want %q", tc.ref, got, err, tc.want)
		}
	}
}

// put loads a small random image into the engine as ref and removes it at
// the end of the test; it returns the engine's ID of it.
func put(t *testing.T, sock, ref string) {
	t.Helper()
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := image.LoadEngine(context.Background(), sock, ref, img); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { remove(t, sock, ref) })
}

func remove(t *testing.T, sock, ref string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, "http://engine/images/"+ref+"?force=1", nil)
	resp, err := image.UnixClient(sock).Do(req)
	if err != nil {
		t.Errorf("remove %s: %v", ref, err)
		return
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotFound {
		t.Errorf("remove %s: %s", ref, resp.Status)
	}
}

// engineID is the engine's ID of ref, "" when it does not hold it.
func engineID(t *testing.T, sock, ref string) string {
	t.Helper()
	resp, err := image.UnixClient(sock).Get("http://engine/images/" + ref + "/json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return ""
	}
	var v struct {
		ID string `json:"Id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("inspect %s: %s: %v", ref, resp.Status, err)
	}
	return v.ID
}

// manifestTags are the RepoTags of a docker-save archive's manifest.json.
func manifestTags(t *testing.T, file string) []string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			t.Fatalf("%s has no manifest.json", file)
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name != "manifest.json" {
			continue
		}
		var m []struct{ RepoTags []string }
		if err := json.NewDecoder(tr).Decode(&m); err != nil {
			t.Fatal(err)
		}
		var tags []string
		for _, e := range m {
			tags = append(tags, e.RepoTags...)
		}
		slices.Sort(tags)
		return tags
	}
}

func TestSaveLoad(t *testing.T) {
	sock := engine(t)
	// Names of this test only: the engine is shared with other tests, whose
	// real MetalLB and node images must stay as they are.
	suffix := fmt.Sprintf("%d", time.Now().UnixNano())
	refs := []string{
		"meshlab.local/imagebundle-test-node:" + suffix,
		"meshlab.local/imagebundle-test-controller:" + suffix,
		"meshlab.local/imagebundle-test-speaker:" + suffix,
	}
	for _, r := range refs {
		put(t, sock, r)
	}
	ids := map[string]string{}
	for _, r := range refs {
		ids[r] = engineID(t, sock, r)
	}
	// meshlab's image comes as a tarball, as lab/image writes it.
	dir := t.TempDir()
	meshRef := "meshlab.local/imagebundle-test-meshlab:" + suffix
	meshImg, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	meshArchive := filepath.Join(dir, "meshlab.tar")
	if err := image.WriteFile(meshArchive, meshRef, meshImg); err != nil {
		t.Fatal(err)
	}
	meshID, _ := image.ID(meshImg)
	t.Cleanup(func() { remove(t, sock, meshRef) })

	var progress strings.Builder
	file := filepath.Join(dir, "lab-images.tar")
	res, err := Save(context.Background(), Options{File: file, Sock: sock, Refs: refs, MeshlabArchive: meshArchive, MeshlabRef: meshRef, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(refs), meshRef)
	slices.Sort(want)
	if got := manifestTags(t, file); !slices.Equal(got, want) {
		t.Errorf("manifest.json RepoTags %v, want %v", got, want)
	}
	if res.File != file || len(res.Images) != 4 {
		t.Errorf("result %+v, want %s with 4 images", res, file)
	}
	for _, im := range res.Images {
		wantID := ids[im.Ref]
		if im.Ref == meshRef {
			wantID = meshID
		}
		if im.ID != wantID || im.Bytes <= 0 {
			t.Errorf("result image %+v, want ID %s and a size", im, wantID)
		}
	}
	if !strings.Contains(progress.String(), "wrote "+file) {
		t.Errorf("progress lacks the written file:\n%s", progress.String())
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".images-*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}

	for _, r := range refs {
		remove(t, sock, r)
		if id := engineID(t, sock, r); id != "" {
			t.Fatalf("%s still in the engine after removal", r)
		}
	}
	loaded, err := Load(context.Background(), sock, file)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(loaded)
	if !slices.Equal(loaded, want) {
		t.Errorf("Load returned %v, want %v", loaded, want)
	}
	ids[meshRef] = meshID
	for _, r := range want {
		if got := engineID(t, sock, r); got != ids[r] {
			t.Errorf("after Load %s has ID %q, want %q", r, got, ids[r])
		}
	}
}

func TestSaveErrors(t *testing.T) {
	sock := engine(t)
	suffix := fmt.Sprintf("%d", time.Now().UnixNano())
	present := "meshlab.local/imagebundle-test-present:" + suffix
	put(t, sock, present)
	absent := "meshlab.local/imagebundle-test-absent:" + suffix
	for _, tc := range []struct {
		name string
		opts func(file string) Options
		want []string
		is   error
	}{
		{"missing image", func(f string) Options { return Options{File: f, Sock: sock, Refs: []string{present, absent}} },
			[]string{absent, "docker pull " + absent}, ErrMissing},
		{"no file", func(string) Options { return Options{Sock: sock, Refs: []string{present}} },
			[]string{"FILE is empty"}, nil},
		{"bad ref", func(f string) Options { return Options{File: f, Sock: sock, Refs: []string{"Not A Ref"}} },
			[]string{`image reference "Not A Ref"`}, nil},
		{"no engine", func(f string) Options {
			return Options{File: f, Sock: filepath.Join(t.TempDir(), "none.sock"), Refs: []string{present}}
		}, []string{"no container engine answers"}, nil},
		{"meshlab without ref", func(f string) Options { return Options{File: f, MeshlabArchive: f + ".in"} },
			[]string{"MeshlabRef is empty"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "out.tar")
			_, err := Save(context.Background(), tc.opts(file))
			if err == nil {
				t.Fatal("Save succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("Save wrote %v before failing", entries)
			}
		})
	}
}
