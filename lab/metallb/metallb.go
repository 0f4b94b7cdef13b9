// Package metallb owns MetalLB on the kind runtime's cluster: its install
// objects, written here in Go (namespace, CRDs, RBAC, controller and speaker,
// memberlist secret), the address pool carved from the kind network's IPv4
// subnet with its L2Advertisement, applying them and waiting until MetalLB can
// hand out addresses.
package metallb

import (
	"errors"
	"fmt"
	"net/netip"
)

// Pinned MetalLB images. v0.15.2 because the offline images are built from
// the module go.universe.tf/metallb at that version (scripts/kind-testenv);
// the objects in objects.go follow that release's manifests and binaries.
const (
	Version         = "v0.15.2"
	ControllerImage = "quay.io/metallb/controller:" + Version
	SpeakerImage    = "quay.io/metallb/speaker:" + Version
)

// Images are the images MetalLB runs, for a room whose registry (or none)
// has them under other names; an empty field is the pinned image.
type Images struct {
	Controller, Speaker string
}

// ControllerRef is the controller's image with i.
func (i Images) ControllerRef() string {
	if i.Controller == "" {
		return ControllerImage
	}
	return i.Controller
}

// SpeakerRef is the speaker's image with i.
func (i Images) SpeakerRef() string {
	if i.Speaker == "" {
		return SpeakerImage
	}
	return i.Speaker
}

// Names of what Install makes.
const (
	Namespace     = "metallb-system"
	Group         = "metallb.io"
	PoolName      = "meshlab"
	MemberlistKey = "secretkey"
)

// AllowSharedIP is the annotation by which Services share one address: every
// Service carrying the same value (and no clashing ports) gets the same IP,
// as the walkthrough's istio-ingressgateway (8080/8443) shares one with an
// nginx ingress (80/443).
const AllowSharedIP = "metallb.universe.tf/allow-shared-ip"

// LoadBalancerIPs is the annotation that asks MetalLB for given addresses.
const LoadBalancerIPs = "metallb.universe.tf/loadBalancerIPs"

// Range is an inclusive range of addresses MetalLB hands out.
type Range struct{ First, Last netip.Addr }

func (r Range) String() string { return r.First.String() + "-" + r.Last.String() }

// Contains reports whether a is in r.
func (r Range) Contains(a netip.Addr) bool {
	return r.First.Compare(a) <= 0 && a.Compare(r.Last) <= 0
}

// ErrNoIPv4 says the network has no IPv4 subnet to carve a pool from.
var ErrNoIPv4 = errors.New("no IPv4 subnet")

// PoolFor carves the address pool from the first IPv4 subnet of the kind
// network: .200 to .250 of its last /24, e.g. 172.18.0.0/16 gives
// 172.18.255.200-172.18.255.250. The engine hands out node addresses from
// the bottom of the subnet, so the top stays free for Services.
func PoolFor(subnets []netip.Prefix) (Range, error) {
	for _, s := range subnets {
		if !s.Addr().Is4() {
			continue
		}
		s = s.Masked()
		if s.Bits() > 24 {
			return Range{}, fmt.Errorf("the kind network's subnet %s is smaller than a /24: no room for a pool of 51 addresses above the nodes", s)
		}
		last := lastAddr(s).As4()
		return Range{
			First: netip.AddrFrom4([4]byte{last[0], last[1], last[2], 200}),
			Last:  netip.AddrFrom4([4]byte{last[0], last[1], last[2], 250}),
		}, nil
	}
	return Range{}, fmt.Errorf("the kind network has %w (subnets %v): MetalLB's L2 pool needs one", ErrNoIPv4, subnets)
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := (uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
