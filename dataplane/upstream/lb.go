package upstream

import (
	"math/rand/v2"
	"slices"
	"strconv"

	"github.com/cespare/xxhash/v2"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
)

// lbSet is what a pick chooses from: the healthy hosts, or every host in
// panic mode, with the hash tables built over them. It is immutable;
// health and membership changes build a new one, as Envoy rebuilds its
// load balancers on host set changes.
type lbSet struct {
	hosts  []*Endpoint
	ring   []ringEntry // RING_HASH, sorted by hash
	maglev []uint32    // MAGLEV, index into hosts
}

type ringEntry struct {
	hash uint64
	host *Endpoint
}

// rebuild recomputes the lb set from the endpoints and their health; mu held.
func (cl *Cluster) rebuild() {
	all := *cl.endpoints.Load()
	hosts := make([]*Endpoint, 0, len(all))
	for _, e := range all {
		if !e.ejected.Load() {
			hosts = append(hosts, e)
		}
	}
	// Envoy's panic mode: below the threshold, the load balancer ignores
	// health rather than overload the few healthy hosts.
	if len(all) > 0 && 100*float64(len(hosts))/float64(len(all)) < cl.panicThreshold {
		hosts = all
	}
	s := &lbSet{hosts: hosts}
	switch cl.policy {
	case clusterv3.Cluster_RING_HASH:
		s.ring = buildRing(hosts, cl.minRing, cl.maxRing)
	case clusterv3.Cluster_MAGLEV:
		s.maglev = buildMaglev(hosts, cl.maglevSize)
	}
	cl.lb.Store(s)
}

func (s *lbSet) pick(cl *Cluster, hash uint64, hashed bool) *Endpoint {
	hosts := s.hosts
	switch len(hosts) {
	case 0:
		return nil
	case 1:
		return hosts[0]
	}
	switch cl.policy {
	case clusterv3.Cluster_RANDOM:
		return hosts[rand.IntN(len(hosts))]
	case clusterv3.Cluster_LEAST_REQUEST:
		// Envoy's default for equal weights: the least loaded of
		// choice_count random picks (power of two choices).
		best := hosts[rand.IntN(len(hosts))]
		for i := 1; i < cl.choices; i++ {
			if h := hosts[rand.IntN(len(hosts))]; h.Active.Load() < best.Active.Load() {
				best = h
			}
		}
		return best
	case clusterv3.Cluster_RING_HASH:
		if !hashed {
			hash = rand.Uint64()
		}
		return ringLookup(s.ring, hash)
	case clusterv3.Cluster_MAGLEV:
		if !hashed {
			hash = rand.Uint64()
		}
		return hosts[s.maglev[hash%uint64(len(s.maglev))]]
	default:
		return hosts[(cl.rr.Add(1)-1)%uint64(len(hosts))]
	}
}

// buildRing is Envoy's ring hash for equal weights: each host gets
// ceil(min_ring_size / hosts) points (capped by max_ring_size), each the
// xxHash64 of "<address>_<i>".
func buildRing(hosts []*Endpoint, minRing, maxRing uint64) []ringEntry {
	if len(hosts) == 0 {
		return nil
	}
	n := uint64(len(hosts))
	scale := min((minRing+n-1)/n*n, maxRing)
	per := scale / n
	if per == 0 {
		per = 1
	}
	ring := make([]ringEntry, 0, per*n)
	var buf []byte
	for _, h := range hosts {
		for i := uint64(0); i < per; i++ {
			buf = append(buf[:0], h.Addr...)
			buf = append(buf, '_')
			buf = strconv.AppendUint(buf, i, 10)
			ring = append(ring, ringEntry{hash: xxhash.Sum64(buf), host: h})
		}
	}
	slices.SortFunc(ring, func(a, b ringEntry) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		}
		return 0
	})
	return ring
}

// ringLookup finds the first point at or after hash, wrapping around.
func ringLookup(ring []ringEntry, hash uint64) *Endpoint {
	lo, hi := 0, len(ring)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if ring[m].hash < hash {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(ring) {
		lo = 0
	}
	return ring[lo].host
}

// buildMaglev fills Envoy's (and the Maglev paper's) lookup table: each
// host walks its own permutation (offset and skip from the xxHash64 of its
// address with seeds 0 and 1), claiming the first free slot in turn.
func buildMaglev(hosts []*Endpoint, size uint64) []uint32 {
	if len(hosts) == 0 {
		return nil
	}
	const empty = ^uint32(0)
	table := make([]uint32, size)
	for i := range table {
		table[i] = empty
	}
	offset := make([]uint64, len(hosts))
	skip := make([]uint64, len(hosts))
	next := make([]uint64, len(hosts))
	for i, h := range hosts {
		offset[i] = xxhash.Sum64String(h.Addr) % size
		skip[i] = seeded(h.Addr, 1)%(size-1) + 1
	}
	for filled := uint64(0); ; {
		for i := range hosts {
			c := (offset[i] + next[i]*skip[i]) % size
			for table[c] != empty {
				next[i]++
				c = (offset[i] + next[i]*skip[i]) % size
			}
			table[c] = uint32(i)
			next[i]++
			if filled++; filled == size {
				return table
			}
		}
	}
}

// seeded is xxHash64 with a seed, as Envoy's HashUtil::xxHash64(v, seed).
func seeded(s string, seed uint64) uint64 {
	d := xxhash.NewWithSeed(seed)
	_, _ = d.WriteString(s) // a hash's writes never fail
	return d.Sum64()
}
