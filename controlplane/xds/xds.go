// Package xds owns what the control plane tells proxies: the translation of
// Istio configuration and the service registry into Envoy v3 resources
// (listeners, routes, clusters, endpoints) per proxy, and serving them over
// ADS with per-proxy sync status and config dumps. docs/xds.md is its
// contract with the data plane.
package xds

import (
	meshv1 "istio.io/api/mesh/v1alpha1"

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
	// Verified is the identity the proxy's client certificate proved on
	// the mTLS port (Istio's VerifiedIdentity), already checked against
	// the node's namespace and service account; nil on plaintext 15010.
	// Only a verified proxy is served secrets.
	Verified *Identity
	// ClusterID and MeshID are its node metadata's CLUSTER_ID and
	// MESH_ID, which its spans' istio.* tags report.
	ClusterID, MeshID string
	// ProxyConfig is its ProxyConfig as fixed when it connected (the
	// mesh defaultConfig then, overlaid with its PROXY_CONFIG metadata),
	// as Istio's proxies take theirs at start; nil: the mesh's current
	// defaultConfig.
	ProxyConfig *meshv1.ProxyConfig
	// proxyConfigMeta is its PROXY_CONFIG node metadata, parsed, and the
	// fields it sets.
	proxyConfigMeta    *meshv1.ProxyConfig
	proxyConfigMetaSet map[string]struct{}
	// bootID is its PROXY_BOOT_ID metadata, one value per proxy process.
	bootID string
	// key is its snapshot's key: the ID, and another for unverified
	// streams, so that a plaintext client claiming a verified proxy's ID
	// never shares its snapshot.
	key string
}

// Identity is a SPIFFE identity spiffe://TD/ns/NS/sa/SA.
type Identity struct {
	TrustDomain, Namespace, ServiceAccount string
}

func (id Identity) String() string {
	return "spiffe://" + id.TrustDomain + "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount
}

// ParseSPIFFE parses spiffe://TD/ns/NS/sa/SA, as Istio's spiffe.ParseIdentity.
func ParseSPIFFE(uri string) (Identity, error) {
	rest, ok := strings.CutPrefix(uri, "spiffe://")
	if !ok {
		return Identity{}, fmt.Errorf("identity %q is not a spiffe:// URI", uri)
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 5 || parts[1] != "ns" || parts[3] != "sa" || parts[0] == "" || parts[2] == "" || parts[4] == "" {
		return Identity{}, fmt.Errorf("identity %q is not spiffe://<trust domain>/ns/<namespace>/sa/<service account>", uri)
	}
	return Identity{TrustDomain: parts[0], Namespace: parts[2], ServiceAccount: parts[4]}, nil
}

func (p Proxy) cacheKey() string {
	if p.key != "" {
		return p.key
	}
	return p.ID
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
	// Mesh is the mesh config (controlplane/meshconfig); nil when the
	// istio ConfigMap has none.
	Mesh *meshv1.MeshConfig
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
