package store

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math/big"
	"net/netip"

	bolt "go.etcd.io/bbolt"
)

// AllocateVIP returns the service VIP of serviceKey from pool, allocating it
// on first use. The address is stored, so the same key gets the same address
// across restarts; the first try is a hash of the key, so even a fresh store
// tends to hand out the same addresses. The pool's first address (the
// network address) is never handed out, nor, for IPv4, its last.
func (s *Store) AllocateVIP(serviceKey string, pool netip.Prefix) (netip.Addr, error) {
	pool = pool.Masked()
	if !pool.IsValid() {
		return netip.Addr{}, fmt.Errorf("allocate VIP for %s: invalid pool", serviceKey)
	}
	size := poolSize(pool)
	if size < 1 {
		return netip.Addr{}, fmt.Errorf("allocate VIP for %s: pool %s is too small", serviceKey, pool)
	}
	var out netip.Addr
	err := s.db.Update(func(tx *bolt.Tx) error {
		byKey, byAddr := tx.Bucket(bucketVIPs), tx.Bucket(bucketVIPAddrs)
		if v := byKey.Get([]byte(serviceKey)); v != nil {
			a, err := netip.ParseAddr(string(v))
			if err == nil && pool.Contains(a) {
				out = a
				return nil
			}
			// The pool changed since; give the key an address from the new one.
			if err := byKey.Delete([]byte(serviceKey)); err != nil {
				return err
			}
			if err == nil {
				if err := byAddr.Delete([]byte(a.String())); err != nil {
					return err
				}
			}
		}
		h := fnv.New64a()
		h.Write([]byte(serviceKey))
		start := h.Sum64() % size
		for i := uint64(0); i < size; i++ {
			a := nth(pool, 1+(start+i)%size)
			if byAddr.Get([]byte(a.String())) != nil {
				continue
			}
			if err := byAddr.Put([]byte(a.String()), []byte(serviceKey)); err != nil {
				return err
			}
			out = a
			return byKey.Put([]byte(serviceKey), []byte(a.String()))
		}
		return errors.New("pool " + pool.String() + " is exhausted")
	})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("allocate VIP for %s: %w", serviceKey, err)
	}
	return out, nil
}

// ReleaseVIP frees the address of serviceKey, if it has one.
func (s *Store) ReleaseVIP(serviceKey string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		byKey, byAddr := tx.Bucket(bucketVIPs), tx.Bucket(bucketVIPAddrs)
		v := byKey.Get([]byte(serviceKey))
		if v == nil {
			return nil
		}
		if err := byAddr.Delete(v); err != nil {
			return err
		}
		return byKey.Delete([]byte(serviceKey))
	})
	if err != nil {
		return fmt.Errorf("release VIP of %s: %w", serviceKey, err)
	}
	return nil
}

// poolSize is how many addresses of pool may be handed out: all but the
// first, and for IPv4 the last; capped so the arithmetic stays in uint64.
func poolSize(p netip.Prefix) uint64 {
	hostBits := p.Addr().BitLen() - p.Bits()
	if hostBits >= 63 {
		return 1 << 62
	}
	n := uint64(1)<<hostBits - 1
	if p.Addr().Is4() && n > 1 {
		n--
	}
	return n
}

// nth is the address i positions after the start of pool.
func nth(p netip.Prefix, i uint64) netip.Addr {
	base := new(big.Int).SetBytes(p.Addr().AsSlice())
	base.Add(base, new(big.Int).SetUint64(i))
	b := base.FillBytes(make([]byte, p.Addr().BitLen()/8))
	a, _ := netip.AddrFromSlice(b)
	return a
}
