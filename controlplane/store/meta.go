package store

import (
	"bytes"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// GetMeta returns the value stored under key in a metadata bucket, or nil
// when there is none.
func (s *Store) GetMeta(bucket, key string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketMeta).Bucket([]byte(bucket)); b != nil {
			out = bytes.Clone(b.Get([]byte(key)))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("get %s/%s: %w", bucket, key, err)
	}
	return out, nil
}

// PutMeta stores val under key in a metadata bucket, creating the bucket; a
// nil val deletes the key. Metadata does not move the revision.
func (s *Store) PutMeta(bucket, key string, val []byte) error {
	if bucket == "" || key == "" {
		return fmt.Errorf("put meta %q/%q: bucket and key must not be empty", bucket, key)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketMeta).CreateBucketIfNotExists([]byte(bucket))
		if err != nil {
			return err
		}
		if val == nil {
			return b.Delete([]byte(key))
		}
		return b.Put([]byte(key), val)
	})
	if err != nil {
		return fmt.Errorf("put %s/%s: %w", bucket, key, err)
	}
	return nil
}

// ListMeta returns every key and value of a metadata bucket; an empty map
// when the bucket does not exist.
func (s *Store) ListMeta(bucket string) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMeta).Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if v != nil { // nil is a nested bucket
				out[string(k)] = bytes.Clone(v)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", bucket, err)
	}
	return out, nil
}
