// Package store owns the control plane's durable state: one bbolt file with
// the Istio resources under a global revision and their history, and small
// key/value buckets for the other owners of state (the CA root, service VIPs,
// the registry, lab metadata). Only one process opens the file; a crash at
// any instant leaves the last committed revision intact, because every batch
// is one bbolt transaction.
package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"google.golang.org/protobuf/proto"

	"github.com/meshlab/meshlab/controlplane/config"
)

// MaxHistory is how many batches History keeps.
const MaxHistory = 1000

var (
	bucketResources = []byte("resources") // kind/namespace/name -> config.Marshal JSON
	bucketHistory   = []byte("history")   // revision (8 bytes, big endian) -> Batch JSON
	bucketState     = []byte("state")     // "revision" -> uint64
	bucketMeta      = []byte("meta")      // holds one nested bucket per PutMeta bucket
	bucketVIPs      = []byte("vips")      // service key -> address
	bucketVIPAddrs  = []byte("vip-addrs") // address -> service key
	keyRevision     = []byte("revision")
)

// Store is the open state file. Its methods are safe for concurrent use.
type Store struct {
	db   *bolt.DB
	path string
	rev  atomic.Uint64

	mu       sync.Mutex
	watchers map[*watcher]struct{}
}

// Op is what a batch did to one resource.
type Op string

// The ops of a Change.
const (
	Created    Op = "created"
	Configured Op = "configured"
	Unchanged  Op = "unchanged"
	Deleted    Op = "deleted"
)

// Change is what happened to one resource in a batch.
type Change struct {
	Key string `json:"key"` // kind/namespace/name
	Op  Op     `json:"op"`
}

// ApplyResult is the outcome of Apply or Delete: the store revision after the
// batch (unchanged if nothing changed) and one Change per resource, in the
// order given.
type ApplyResult struct {
	Rev     uint64   `json:"revision"`
	Changes []Change `json:"changes"`
}

// Batch is one committed revision in the history.
type Batch struct {
	Rev     uint64        `json:"revision"`
	Time    time.Time     `json:"time"`
	Changes []BatchChange `json:"changes"`
}

// BatchChange is one resource a batch changed, with the document it replaced
// (nil when it was created).
type BatchChange struct {
	Key  string          `json:"key"`
	Op   Op              `json:"op"`
	Prev json.RawMessage `json:"prev,omitempty"`
}

// Open opens (creating if needed) the state file at path. It waits at most a
// second for the file lock, which another control plane may hold.
func Open(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open store: another meshlab control plane holds %s", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &Store{db: db, path: path, watchers: map[*watcher]struct{}{}}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketResources, bucketHistory, bucketState, bucketMeta, bucketVIPs, bucketVIPAddrs} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		s.rev.Store(revision(tx))
		return nil
	})
	if err != nil {
		_ = db.Close() // the failed Update committed nothing to keep
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return s, nil
}

// Close releases the file. Watch channels close when their contexts end,
// not here.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", s.path, err)
	}
	return nil
}

// Path is the file the store lives in.
func (s *Store) Path() string { return s.path }

// Revision is the revision of the last committed batch; 0 for a new store.
func (s *Store) Revision() uint64 { return s.rev.Load() }

func revision(tx *bolt.Tx) uint64 {
	if v := tx.Bucket(bucketState).Get(keyRevision); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func revKey(rev uint64) []byte { return binary.BigEndian.AppendUint64(nil, rev) }

// ConflictError is a resource applied with a revision (its
// metadata.resourceVersion) that is not the stored one: someone changed it
// since it was read. Nothing of the batch is stored.
type ConflictError struct {
	Key  string // kind/namespace/name
	Want uint64 // the revision the applied object carries
	Have uint64 // the stored object's revision; 0 when none is stored
}

func (e *ConflictError) Error() string {
	kind, rest, _ := strings.Cut(e.Key, "/")
	if e.Have == 0 {
		return fmt.Sprintf("%s %s: applied with resourceVersion %d, but no such object is stored; drop metadata.resourceVersion to create it", kind, rest, e.Want)
	}
	return fmt.Sprintf("%s %s has been modified: applied with resourceVersion %d, the stored object is at %d; get it again, redo your change and apply", kind, rest, e.Want, e.Have)
}

// Apply stores a batch of resources in one transaction: all of them or none.
// A resource that carries a Revision is applied only if that is the stored
// object's revision, as a Kubernetes update with a resourceVersion;
// otherwise the batch fails with a *ConflictError. Without one, the last
// write wins.
// A resource without a creation time (metadata.creationTimestamp) is
// given one as the API server does: the commit's when it is created, the
// stored one's when it is updated; one that carries a time keeps it (the
// kube runtime mirrors the API server's).
// A resource whose spec, labels, annotations and creation time equal the
// stored ones is left alone; when the whole batch is unchanged the
// revision does not move.
// Otherwise the revision goes up by one and every changed resource carries
// it. A key given twice takes its last value.
func (s *Store) Apply(ctx context.Context, rs []config.Resource) (ApplyResult, error) {
	if err := ctx.Err(); err != nil {
		return ApplyResult{Rev: s.Revision()}, fmt.Errorf("apply: %w", err)
	}
	for _, r := range rs {
		if (r.Spec == nil && r.Object == nil) || r.Name == "" || (r.Namespace == "") != r.ClusterScoped() || r.Kind == "" {
			return ApplyResult{Rev: s.Revision()}, fmt.Errorf("apply %s: a resource needs a kind, namespace, name and spec", r.Key())
		}
	}
	var res ApplyResult
	err := s.db.Update(func(tx *bolt.Tx) error {
		res = ApplyResult{}
		b := tx.Bucket(bucketResources)
		cur := revision(tx)
		next := cur + 1
		batch := Batch{Rev: next, Time: time.Now().UTC()}
		for _, r := range rs {
			key := []byte(r.Key())
			prev := b.Get(key)
			op := Created
			if prev == nil && r.Revision != 0 {
				return &ConflictError{Key: r.Key(), Want: r.Revision}
			}
			if prev == nil && r.CreationTime().IsZero() {
				r.SetCreationTime(batch.Time)
			}
			if prev != nil {
				old, err := config.Unmarshal(prev)
				if err != nil {
					return fmt.Errorf("read stored %s: %w", r.Key(), err)
				}
				if r.Revision != 0 && r.Revision != old.Revision {
					return &ConflictError{Key: r.Key(), Want: r.Revision, Have: old.Revision}
				}
				if r.CreationTime().IsZero() {
					r.SetCreationTime(old.CreationTime())
				}
				if same(old, r) {
					res.Changes = append(res.Changes, Change{Key: r.Key(), Op: Unchanged})
					continue
				}
				op = Configured
			}
			r.Revision = next
			doc, err := encode(r)
			if err != nil {
				return err
			}
			if err := b.Put(key, doc); err != nil {
				return fmt.Errorf("store %s: %w", r.Key(), err)
			}
			res.Changes = append(res.Changes, Change{Key: r.Key(), Op: op})
			batch.Changes = append(batch.Changes, BatchChange{Key: r.Key(), Op: op, Prev: bytes.Clone(prev)})
		}
		if len(batch.Changes) == 0 {
			res.Rev = cur
			return nil
		}
		res.Rev = next
		return commit(tx, batch)
	})
	if err != nil {
		return ApplyResult{Rev: s.Revision()}, fmt.Errorf("apply: %w", err)
	}
	s.committed(res.Rev)
	return res, nil
}

// Delete removes resources by key (kind/namespace/name; the kind may be any
// name LookupKind takes) in one transaction. A key that is not stored fails
// the whole batch and nothing is deleted.
func (s *Store) Delete(ctx context.Context, keys []string) (ApplyResult, error) {
	if err := ctx.Err(); err != nil {
		return ApplyResult{Rev: s.Revision()}, fmt.Errorf("delete: %w", err)
	}
	var res ApplyResult
	err := s.db.Update(func(tx *bolt.Tx) error {
		res = ApplyResult{}
		b := tx.Bucket(bucketResources)
		next := revision(tx) + 1
		batch := Batch{Rev: next, Time: time.Now().UTC()}
		seen := map[string]bool{}
		for _, k := range keys {
			key, err := normalizeKey(k)
			if err != nil {
				return err
			}
			if seen[key] {
				continue
			}
			seen[key] = true
			prev := b.Get([]byte(key))
			if prev == nil {
				return fmt.Errorf("%s not found", key)
			}
			batch.Changes = append(batch.Changes, BatchChange{Key: key, Op: Deleted, Prev: bytes.Clone(prev)})
			if err := b.Delete([]byte(key)); err != nil {
				return fmt.Errorf("delete %s: %w", key, err)
			}
			res.Changes = append(res.Changes, Change{Key: key, Op: Deleted})
		}
		if len(batch.Changes) == 0 {
			res.Rev = next - 1
			return nil
		}
		res.Rev = next
		return commit(tx, batch)
	})
	if err != nil {
		return ApplyResult{Rev: s.Revision()}, fmt.Errorf("delete: %w", err)
	}
	s.committed(res.Rev)
	return res, nil
}

// normalizeKey accepts any kind name LookupKind knows in the first segment.
func normalizeKey(k string) (string, error) {
	parts := strings.Split(k, "/")
	if len(parts) != 3 || parts[2] == "" {
		return "", fmt.Errorf("invalid key %q: want kind/namespace/name", k)
	}
	info, ok := config.LookupStoredKind(parts[0])
	if !ok {
		return "", fmt.Errorf("invalid key %q: unknown kind %q", k, parts[0])
	}
	if (parts[1] == "") != info.ClusterScoped {
		return "", fmt.Errorf("invalid key %q: want kind/namespace/name, kind//name for a cluster-scoped kind", k)
	}
	return string(info.Kind) + "/" + parts[1] + "/" + parts[2], nil
}

// commit records a batch in the history, trims it and moves the revision.
func commit(tx *bolt.Tx, batch Batch) error {
	h := tx.Bucket(bucketHistory)
	doc, err := json.Marshal(batch)
	if err != nil {
		return fmt.Errorf("encode history %d: %w", batch.Rev, err)
	}
	if err := h.Put(revKey(batch.Rev), doc); err != nil {
		return fmt.Errorf("record history %d: %w", batch.Rev, err)
	}
	c := h.Cursor()
	for k, _ := c.First(); k != nil && batch.Rev >= MaxHistory && binary.BigEndian.Uint64(k) <= batch.Rev-MaxHistory; k, _ = c.First() {
		if err := c.Delete(); err != nil {
			return fmt.Errorf("trim history: %w", err)
		}
	}
	if err := tx.Bucket(bucketState).Put(keyRevision, revKey(batch.Rev)); err != nil {
		return fmt.Errorf("store revision %d: %w", batch.Rev, err)
	}
	return nil
}

func same(a, b config.Resource) bool {
	if a.Object != nil || b.Object != nil {
		return a.Object != nil && b.Object != nil && config.SameObject(a.Object, b.Object)
	}
	// The creation time counts: on the kube runtime a policy deleted and
	// created again with the same spec is a younger policy, which changes
	// which one Istio's oldest-wins rules pick.
	return proto.Equal(a.Spec, b.Spec) && maps.Equal(a.Labels, b.Labels) && maps.Equal(a.Annotations, b.Annotations) &&
		a.CreationTimestamp.Equal(b.CreationTimestamp)
}

func encode(r config.Resource) ([]byte, error) {
	doc, err := config.Marshal(r)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", r.Key(), err)
	}
	return b, nil
}

// Get returns one resource, with the revision that last wrote it.
func (s *Store) Get(kind config.Kind, ns, name string) (config.Resource, bool, error) {
	var r config.Resource
	var found bool
	key := string(kind) + "/" + ns + "/" + name
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketResources).Get([]byte(key))
		if v == nil {
			return nil
		}
		found = true
		var err error
		r, err = config.Unmarshal(v)
		return err
	})
	if err != nil {
		return config.Resource{}, false, fmt.Errorf("get %s: %w", key, err)
	}
	return r, found, nil
}

// List returns the resources of one kind in namespace ns ("" for all),
// sorted by namespace then name.
func (s *Store) List(kind config.Kind, ns string) ([]config.Resource, error) {
	prefix := string(kind) + "/"
	if ns != "" {
		prefix += ns + "/"
	}
	var out []config.Resource
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketResources).Cursor()
		for k, v := c.Seek([]byte(prefix)); k != nil && bytes.HasPrefix(k, []byte(prefix)); k, v = c.Next() {
			r, err := config.Unmarshal(v)
			if err != nil {
				return fmt.Errorf("read %s: %w", k, err)
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", kind, err)
	}
	// Keys sort by bytes and "/" sorts after some name characters, so a
	// namespace that prefixes another could interleave; sort explicitly.
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// History returns the recorded batches with a revision greater than since,
// oldest first. Only the last MaxHistory batches are kept.
func (s *Store) History(since uint64) ([]Batch, error) {
	var out []Batch
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketHistory).Cursor()
		for k, v := c.Seek(revKey(since + 1)); k != nil; k, v = c.Next() {
			var b Batch
			if err := json.Unmarshal(v, &b); err != nil {
				return fmt.Errorf("read history %d: %w", binary.BigEndian.Uint64(k), err)
			}
			out = append(out, b)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("history since %d: %w", since, err)
	}
	return out, nil
}
