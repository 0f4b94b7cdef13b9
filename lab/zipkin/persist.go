package zipkin

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// SnapshotFile is the store's file under --storage.path: the spans as a
// gzip-compressed Zipkin v2 JSON list, so it is also a valid POST body for
// any Zipkin (`curl -H 'Content-Encoding: gzip' --data-binary @spans.json.gz`).
//
// Why a snapshot and not a database: spans arrive many times a second and
// leave as whole traces; writing each to disk would cost the lab more than
// the traces are worth, while a lab restart is a clean shutdown. The file is
// rewritten periodically and on shutdown through a temporary file, fsync and
// rename, so a crash leaves the previous snapshot whole, losing at most the
// spans since it.
const SnapshotFile = "spans.json.gz"

// Save writes the store's spans to dir atomically.
func (s *Store) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating the storage directory %s: %w", dir, err)
	}
	spans := s.all()
	tmp, err := os.CreateTemp(dir, SnapshotFile+".tmp-*")
	if err != nil {
		return fmt.Errorf("creating a snapshot in %s: %w", dir, err)
	}
	done := false
	defer func() {
		if !done {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	zw := gzip.NewWriter(tmp)
	if err := json.NewEncoder(zw).Encode(spans); err != nil {
		return fmt.Errorf("writing the snapshot %s: %w", tmp.Name(), err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("writing the snapshot %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("syncing the snapshot %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("closing the snapshot %s: %w", tmp.Name(), err)
	}
	final := filepath.Join(dir, SnapshotFile)
	if err := os.Rename(tmp.Name(), final); err != nil {
		return fmt.Errorf("replacing %s: %w", final, err)
	}
	done = true
	// The rename is durable only once the directory is.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// Load reads the snapshot in dir into the store, applying the store's
// bounds. No snapshot is not an error. A snapshot that cannot be read (a
// disk that lied about fsync, a hand edit) is moved aside to
// spans.json.gz.corrupt and reported, and the store starts empty: old traces
// are not worth refusing to start for.
func (s *Store) Load(dir string) (int, error) {
	// A crash mid-Save leaves its temporary file; the snapshot it was
	// replacing is still whole.
	if stale, _ := filepath.Glob(filepath.Join(dir, SnapshotFile+".tmp-*")); len(stale) > 0 {
		for _, p := range stale {
			_ = os.Remove(p)
		}
	}
	path := filepath.Join(dir, SnapshotFile)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("opening the snapshot %s: %w", path, err)
	}
	defer func() { _ = f.Close() }()
	// A snapshot holds up to --max-spans spans, far more than one POST.
	spans, err := decodeSpans(f, "application/json", "gzip", 4<<30)
	if err != nil {
		_ = os.Rename(path, path+".corrupt")
		return 0, fmt.Errorf("reading the snapshot %s (moved aside to %s.corrupt, starting empty): %w", path, path, err)
	}
	s.Accept(spans)
	n, _ := s.Len()
	return n, nil
}
