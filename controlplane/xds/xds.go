// Package xds owns what the control plane tells proxies: the translation of
// Istio configuration and the service registry into Envoy v3 resources
// (listeners, routes, clusters, endpoints) per proxy, and serving them over
// ADS with per-proxy sync status and config dumps. docs/xds.md is its
// contract with the data plane.
package xds

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/registry"
)

// Proxy types, the first field of a node ID.
const (
	SidecarProxy = "sidecar"
	RouterProxy  = "router"
)

// Proxy is a connected (or to-be-connected) proxy as its node ID and
// metadata describe it.
type Proxy struct {
	Type      string // "sidecar" or "router"
	ID        string // the whole node ID, the key of its snapshot
	IP        netip.Addr
	Name      string // pod name
	Namespace string
	Labels    map[string]string // from node metadata; the registry's win when it knows the pod
}

// ParseNodeID parses `sidecar~<ip>~<pod>.<ns>~<ns>.svc.cluster.local` (or
// `router~...`), Istio's node ID format.
func ParseNodeID(id string) (Proxy, error) {
	parts := strings.Split(id, "~")
	if len(parts) != 4 {
		return Proxy{}, fmt.Errorf("parse node id %q: want 4 fields separated by ~, got %d", id, len(parts))
	}
	p := Proxy{Type: parts[0], ID: id}
	if p.Type != SidecarProxy && p.Type != RouterProxy {
		return Proxy{}, fmt.Errorf("parse node id %q: unknown proxy type %q (want sidecar or router)", id, p.Type)
	}
	ip, err := netip.ParseAddr(parts[1])
	if err != nil {
		return Proxy{}, fmt.Errorf("parse node id %q: %w", id, err)
	}
	p.IP = ip
	ns, _, ok := strings.Cut(parts[3], ".")
	if !ok || ns == "" {
		return Proxy{}, fmt.Errorf("parse node id %q: domain %q is not <ns>.svc.<domain>", id, parts[3])
	}
	p.Namespace = ns
	// Pod names may contain dots, the namespace never does.
	name, ok := strings.CutSuffix(parts[2], "."+ns)
	if !ok || name == "" {
		return Proxy{}, fmt.Errorf("parse node id %q: %q is not <pod>.%s", id, parts[2], ns)
	}
	p.Name = name
	return p, nil
}

// Input is everything translation reads: the stored Istio configuration
// and the registry.
type Input struct {
	Config   []config.Resource
	Registry registry.Snapshot
	// Secrets are the TLS credentials gateways' credentialName can name.
	Secrets []Secret
	// JWKS are the key sets RequestAuthentications name by jwksUri (or
	// issuer discovery), as the control plane fetched them (JWKSRequests
	// lists what to fetch); a missing one is inlined as FakeJWKS.
	JWKS map[JWKSKey]string
}

// Resources are one proxy's resources per type URL, as cache.NewSnapshot
// takes them. Every slice is sorted by resource name.
type Resources map[resource.Type][]types.Resource

// Build translates the input into the resources of one proxy.
func Build(in Input, p Proxy) (Resources, error) {
	return newIndex(in).build(p)
}
