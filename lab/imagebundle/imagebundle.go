// Package imagebundle owns the air-gapped image archive of a kind lab: every
// image the lab needs (kind's node image, MetalLB's controller and speaker,
// meshlab's own) in one `docker save` tarball, written from a Docker engine's
// images and loaded back into an engine with its API, so a workshop room
// without internet still starts a lab.
package imagebundle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/meshlab/meshlab/lab/image"
	"github.com/meshlab/meshlab/lab/kind"
	"github.com/meshlab/meshlab/lab/metallb"
)

// Refs are the images a kind lab takes from a container engine: the node
// image (kind.NodeImage when nodeImage is empty) and MetalLB's two (the
// pinned ones where m leaves them empty). meshlab's own image is built from
// the binary, not pulled.
func Refs(nodeImage string, m metallb.Images) []string {
	if nodeImage == "" {
		nodeImage = kind.NodeImage
	}
	return []string{nodeImage, m.ControllerRef(), m.SpeakerRef()}
}

// Options says what Save writes.
type Options struct {
	File string // the archive to write
	Sock string // unix socket of the Docker engine the Refs come from
	// Refs are the images taken from the engine, in order (Refs("",
	// metallb.Images{}) for a lab's).
	Refs []string
	// MeshlabArchive is a docker-save tarball of one image (as lab/image
	// writes meshlab's) added under MeshlabRef; skipped when empty.
	MeshlabArchive, MeshlabRef string
	Progress                   io.Writer // a line per step with its elapsed time; nil for none
}

// Image is one image of a written archive.
type Image struct {
	Ref   string `json:"ref"`
	ID    string `json:"id"`    // config digest, the engine's image ID
	Bytes int64  `json:"bytes"` // config and layers as stored in the archive
}

// Result is what Save wrote.
type Result struct {
	File   string  `json:"file"`
	Images []Image `json:"images"`
}

// ErrMissing says an image the archive needs is not in the engine.
var ErrMissing = errors.New("image not in the Docker engine")

// Save writes the archive: it checks every ref is in the engine before
// writing anything, then writes through a temporary file beside opts.File
// so a reader never sees half an archive.
func Save(ctx context.Context, opts Options) (Result, error) {
	start := time.Now()
	step := func(format string, args ...any) {
		if opts.Progress != nil {
			_, _ = fmt.Fprintf(opts.Progress, "%-60s %6.1fs\n", fmt.Sprintf(format, args...), time.Since(start).Seconds())
		}
	}
	if opts.File == "" {
		return Result{}, errors.New("images save: the archive FILE is empty: want a path to write")
	}
	if opts.MeshlabArchive != "" && opts.MeshlabRef == "" {
		return Result{}, errors.New("images save: MeshlabRef is empty: want the reference of the meshlab image")
	}
	if err := Check(ctx, opts.Sock, opts.Refs); err != nil {
		return Result{}, err
	}
	step("%d images in the engine", len(opts.Refs))

	dir := filepath.Dir(opts.File)
	tmpDir, err := os.MkdirTemp(dir, ".images-*")
	if err != nil {
		return Result{}, fmt.Errorf("images save: %w", err)
	}
	defer func() { _ = os.RemoveAll(tmpDir) }() // scratch; the archive is renamed out first

	imgs := map[name.Reference]v1.Image{}
	var res Result
	add := func(ref string, path string) error {
		tag, err := tagOf(ref)
		if err != nil {
			return err
		}
		// The tarball holds one image; nil takes it whatever its RepoTags.
		img, err := tarball.ImageFromPath(path, nil)
		if err != nil {
			return fmt.Errorf("read %s from %s: %w", ref, path, err)
		}
		id, err := image.ID(img)
		if err != nil {
			return err
		}
		n, err := size(img)
		if err != nil {
			return fmt.Errorf("size of %s: %w", ref, err)
		}
		imgs[tag] = img
		res.Images = append(res.Images, Image{Ref: tag.String(), ID: id, Bytes: n})
		return nil
	}
	for i, ref := range opts.Refs {
		path := filepath.Join(tmpDir, fmt.Sprintf("%d.tar", i))
		if err := export(ctx, opts.Sock, ref, path); err != nil {
			return Result{}, fmt.Errorf("images save: %w", err)
		}
		if err := add(ref, path); err != nil {
			return Result{}, fmt.Errorf("images save: %w", err)
		}
		step("exported %s", ref)
	}
	if opts.MeshlabArchive != "" {
		if err := add(opts.MeshlabRef, opts.MeshlabArchive); err != nil {
			return Result{}, fmt.Errorf("images save: %w", err)
		}
	}
	tmp := filepath.Join(tmpDir, "archive.tar")
	if err := tarball.MultiRefWriteToFile(tmp, imgs); err != nil {
		return Result{}, fmt.Errorf("images save: write the archive: %w", err)
	}
	if err := os.Rename(tmp, opts.File); err != nil {
		return Result{}, fmt.Errorf("images save: %w", err)
	}
	step("wrote %s", opts.File)
	res.File = opts.File
	return res, nil
}

// Check reports, naming each and how to get it, the refs the engine at
// sock does not hold (errors.Is ErrMissing); nil when it holds all.
func Check(ctx context.Context, sock string, refs []string) error {
	if len(refs) == 0 {
		return nil
	}
	if err := image.Ping(sock); err != nil {
		return fmt.Errorf("images save: %w", err)
	}
	var missing []error
	for _, ref := range refs {
		if _, err := tagOf(ref); err != nil {
			return fmt.Errorf("images save: %w", err)
		}
		ok, err := inEngine(ctx, sock, ref)
		if err != nil {
			return fmt.Errorf("images save: %w", err)
		}
		if !ok {
			missing = append(missing, fmt.Errorf("%w at %s: %s; get it with `docker pull %s` on a machine with internet (then `docker save` it over), or build it offline (scripts/kind-nodebase for a node image)", ErrMissing, sock, ref, ref))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("images save: %w", errors.Join(missing...))
	}
	return nil
}

// tagOf is the tag an image is archived under: a docker-save manifest
// lists tags only, so a digest is dropped (and a bare name is :latest).
func tagOf(ref string) (name.Tag, error) {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	t, err := name.NewTag(ref)
	if err != nil {
		return name.Tag{}, fmt.Errorf("image reference %q: %w", ref, err)
	}
	// Spelled out, so the engine's RepoTags say the same as the result.
	if !strings.Contains(ref[strings.LastIndex(ref, "/")+1:], ":") {
		return name.NewTag(ref + ":" + t.TagStr())
	}
	return t, nil
}

func size(img v1.Image) (int64, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	n := m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n, nil
}

// inEngine reports whether the engine at sock holds ref.
func inEngine(ctx context.Context, sock, ref string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://engine/images/"+ref+"/json", nil)
	if err != nil {
		return false, err
	}
	resp, err := image.UnixClient(sock).Do(req)
	if err != nil {
		return false, fmt.Errorf("look up %s in the engine at %s: %w", ref, sock, err)
	}
	defer func() { _ = resp.Body.Close() }() // status only
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return false, fmt.Errorf("look up %s in the engine at %s: %s: %s", ref, sock, resp.Status, strings.TrimSpace(string(b)))
}

// Open streams the engine's docker-save tarball of ref (GET
// /images/<ref>/get, as `docker save`); the caller closes it.
func Open(ctx context.Context, sock, ref string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://engine/images/"+ref+"/get", nil)
	if err != nil {
		return nil, err
	}
	resp, err := image.UnixClient(sock).Do(req)
	if err != nil {
		return nil, fmt.Errorf("export %s from the engine at %s: %w", ref, sock, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		_ = resp.Body.Close() // read for the message
		return nil, fmt.Errorf("export %s from the engine at %s: %s: %s", ref, sock, resp.Status, strings.TrimSpace(string(b)))
	}
	return resp.Body, nil
}

// export writes the engine's docker-save tarball of ref to path.
func export(ctx context.Context, sock, ref, path string) error {
	body, err := Open(ctx, sock, ref)
	if err != nil {
		return err
	}
	defer func() { _ = body.Close() }() // errors show in the copy
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("export %s: %w", ref, err)
	}
	if _, err := io.Copy(f, body); err != nil {
		_ = f.Close()
		return fmt.Errorf("export %s from the engine at %s: %w", ref, sock, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("export %s: %w", ref, err)
	}
	return nil
}

// Load loads the archive file into the engine at sock (POST /images/load,
// as `docker load`) and returns the refs the engine says it loaded.
func Load(ctx context.Context, sock, file string) ([]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("load images: %w", err)
	}
	defer func() { _ = f.Close() }() // read only
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://engine/images/load?quiet=1", f)
	if err != nil {
		return nil, fmt.Errorf("load images: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-tar")
	resp, err := image.UnixClient(sock).Do(req)
	if err != nil {
		return nil, fmt.Errorf("load %s into the engine at %s: %w", file, sock, err)
	}
	defer func() { _ = resp.Body.Close() }() // read: its errors came from the reads
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("load %s into the engine at %s: %s: %s", file, sock, resp.Status, strings.TrimSpace(string(b)))
	}
	// A failure comes inside the 200's JSON stream.
	var refs []string
	dec := json.NewDecoder(resp.Body)
	for {
		var msg struct {
			Stream string `json:"stream"`
			Error  string `json:"error"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			return refs, nil
		} else if err != nil {
			return refs, fmt.Errorf("load %s into the engine at %s: read its answer: %w", file, sock, err)
		}
		if msg.Error != "" {
			return refs, fmt.Errorf("load %s into the engine at %s: %s", file, sock, msg.Error)
		}
		for _, line := range strings.Split(msg.Stream, "\n") {
			if r, ok := strings.CutPrefix(strings.TrimSpace(line), "Loaded image: "); ok {
				refs = append(refs, r)
			}
		}
	}
}

// ID is the engine's ID of ref (its config digest); ok is false when the
// engine does not hold ref.
func ID(ctx context.Context, sock, ref string) (id string, ok bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://engine/images/"+ref+"/json", nil)
	if err != nil {
		return "", false, err
	}
	resp, err := image.UnixClient(sock).Do(req)
	if err != nil {
		return "", false, fmt.Errorf("look up %s in the engine at %s: %w", ref, sock, err)
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close() // read whole
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return "", false, nil
	default:
		return "", false, fmt.Errorf("look up %s in the engine at %s: %s: %s", ref, sock, resp.Status, strings.TrimSpace(string(b)))
	}
	var inspect struct{ Id string } //nolint:revive // the engine's field name
	if err := json.Unmarshal(b, &inspect); err != nil || inspect.Id == "" {
		return "", false, fmt.Errorf("look up %s in the engine at %s: no image ID in its answer", ref, sock)
	}
	return inspect.Id, true, nil
}
