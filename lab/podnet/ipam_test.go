package podnet

import (
	"net/netip"
	"path/filepath"
	"testing"
)

func TestIPAM(t *testing.T) {
	type step struct {
		op    string // "alloc", "release", "reopen"
		owner string
		want  string // address for alloc, "" for an expected error
	}
	tests := []struct {
		name    string
		prefix  string
		gateway string
		steps   []step
	}{
		{
			name: "skips network and gateway", prefix: "198.18.0.0/16", gateway: "198.18.0.1",
			steps: []step{{"alloc", "a", "198.18.0.2"}, {"alloc", "b", "198.18.0.3"}, {"alloc", "a", "198.18.0.2"}},
		},
		{
			name: "release reuses the lowest", prefix: "198.18.0.0/16", gateway: "198.18.0.1",
			steps: []step{{"alloc", "a", "198.18.0.2"}, {"alloc", "b", "198.18.0.3"}, {"release", "a", ""},
				{"release", "a", ""}, {"alloc", "c", "198.18.0.2"}},
		},
		{
			name: "exhausted, without broadcast", prefix: "10.0.0.0/29", gateway: "10.0.0.1",
			steps: []step{{"alloc", "a", "10.0.0.2"}, {"alloc", "b", "10.0.0.3"}, {"alloc", "c", "10.0.0.4"},
				{"alloc", "d", "10.0.0.5"}, {"alloc", "e", "10.0.0.6"}, {"alloc", "f", ""}},
		},
		{
			name: "survives a restart", prefix: "198.18.0.0/16", gateway: "198.18.0.1",
			steps: []step{{"alloc", "a", "198.18.0.2"}, {"alloc", "b", "198.18.0.3"}, {"release", "a", ""},
				{"reopen", "", ""}, {"alloc", "b", "198.18.0.3"}, {"alloc", "c", "198.18.0.2"}, {"alloc", "d", "198.18.0.4"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ipam.json")
			prefix, gw := netip.MustParsePrefix(tt.prefix), netip.MustParseAddr(tt.gateway)
			m, err := OpenIPAM(path, prefix, gw)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tt.steps {
				switch s.op {
				case "alloc":
					got, err := m.Allocate(s.owner)
					if s.want == "" {
						if err == nil {
							t.Fatalf("step %d: Allocate(%q) = %s, want an error", i, s.owner, got)
						}
						continue
					}
					if err != nil || got != netip.MustParseAddr(s.want) {
						t.Fatalf("step %d: Allocate(%q) = %s, %v; want %s", i, s.owner, got, err, s.want)
					}
				case "release":
					if err := m.Release(s.owner); err != nil {
						t.Fatalf("step %d: Release(%q): %v", i, s.owner, err)
					}
				case "reopen":
					if m, err = OpenIPAM(path, prefix, gw); err != nil {
						t.Fatalf("step %d: reopen: %v", i, err)
					}
				}
			}
		})
	}
}

func TestIPAMRejectsOtherPrefix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ipam.json")
	m, err := OpenIPAM(path, netip.MustParsePrefix("198.18.0.0/16"), netip.MustParseAddr("198.18.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Allocate("a"); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenIPAM(path, netip.MustParsePrefix("10.0.0.0/8"), netip.MustParseAddr("10.0.0.1")); err == nil {
		t.Fatal("OpenIPAM with another prefix succeeded, want an error")
	}
}
