package podnet

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
)

// IPAM hands out pod addresses of a prefix, one per owner (a pod name),
// skipping the network, gateway and broadcast addresses. With a path, every
// change is written to that JSON file before it is returned, so a restarted
// supervisor reopening it never hands out an address a live pod still has.
type IPAM struct {
	mu      sync.Mutex
	path    string // "" keeps the allocations in memory only
	prefix  netip.Prefix
	gateway netip.Addr
	byOwner map[string]netip.Addr
}

type ipamFile struct {
	Prefix      netip.Prefix          `json:"prefix"`
	Allocations map[string]netip.Addr `json:"allocations"`
}

// OpenIPAM loads the allocations in path (created on the first change) or
// starts empty; path "" keeps them in memory.
func OpenIPAM(path string, prefix netip.Prefix, gateway netip.Addr) (*IPAM, error) {
	if !prefix.IsValid() || !prefix.Addr().Is4() || prefix.Bits() > 30 {
		return nil, fmt.Errorf("ipam: prefix %q: want an IPv4 prefix of /30 or larger", prefix)
	}
	m := &IPAM{path: path, prefix: prefix.Masked(), gateway: gateway, byOwner: map[string]netip.Addr{}}
	if path == "" {
		return m, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ipam: read %s: %w", path, err)
	}
	var f ipamFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("ipam: parse %s: %w", path, err)
	}
	if f.Prefix != m.prefix {
		return nil, fmt.Errorf("ipam: %s allocates from %s, not %s", path, f.Prefix, m.prefix)
	}
	for owner, a := range f.Allocations {
		m.byOwner[owner] = a
	}
	return m, nil
}

// Allocate returns owner's address, giving it the lowest free one if it has
// none yet.
func (m *IPAM) Allocate(owner string) (netip.Addr, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if a, ok := m.byOwner[owner]; ok {
		return a, nil
	}
	used := make(map[netip.Addr]bool, len(m.byOwner))
	for _, a := range m.byOwner {
		used[a] = true
	}
	for a := m.prefix.Addr().Next(); m.prefix.Contains(a); a = a.Next() {
		if a == m.gateway || used[a] || !m.prefix.Contains(a.Next()) { // the last is broadcast
			continue
		}
		m.byOwner[owner] = a
		if err := m.save(); err != nil {
			delete(m.byOwner, owner)
			return netip.Addr{}, err
		}
		return a, nil
	}
	return netip.Addr{}, fmt.Errorf("ipam: %s is exhausted (%d addresses allocated)", m.prefix, len(m.byOwner))
}

// Release frees owner's address; releasing twice is not an error.
func (m *IPAM) Release(owner string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.byOwner[owner]
	if !ok {
		return nil
	}
	delete(m.byOwner, owner)
	if err := m.save(); err != nil {
		m.byOwner[owner] = a
		return err
	}
	return nil
}

// Lookup returns owner's address, if it has one.
func (m *IPAM) Lookup(owner string) (netip.Addr, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.byOwner[owner]
	return a, ok
}

// Allocations returns a copy of every owner's address.
func (m *IPAM) Allocations() map[string]netip.Addr {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]netip.Addr, len(m.byOwner))
	for k, v := range m.byOwner {
		out[k] = v
	}
	return out
}

// save writes the file whole through a rename, so a crash leaves either
// the old allocations or the new ones.
func (m *IPAM) save() error {
	if m.path == "" {
		return nil
	}
	b, err := json.MarshalIndent(ipamFile{Prefix: m.prefix, Allocations: m.byOwner}, "", "  ")
	if err != nil {
		return fmt.Errorf("ipam: encode: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(m.path), filepath.Base(m.path)+".tmp*")
	if err != nil {
		return fmt.Errorf("ipam: write %s: %w", m.path, err)
	}
	// Once renamed there is nothing left to remove; before, a failure is
	// already being returned.
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("ipam: write %s: %w", m.path, err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("ipam: sync %s: %w", m.path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("ipam: write %s: %w", m.path, err)
	}
	if err := os.Rename(tmp.Name(), m.path); err != nil {
		return fmt.Errorf("ipam: replace %s: %w", m.path, err)
	}
	return nil
}
