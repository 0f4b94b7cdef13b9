package telemetry

import (
	"crypto/x509"
	"encoding/base64"
	"net/http"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// The headers of Istio's HTTP metadata exchange: a client sidecar sends
// its node metadata (a google.protobuf.Struct, serialized and base64
// encoded) with each request, the server's sidecar answers with its own
// on the response, and each removes the other's (and the ID header Istio
// sends beside it) before the application sees it.
const (
	HeaderMetadata   = "X-Envoy-Peer-Metadata"
	HeaderMetadataID = "X-Envoy-Peer-Metadata-Id"
)

// defaultCluster is the cluster_id of a lab: Istio's default for a
// single-cluster mesh.
const defaultCluster = "Kubernetes"

// Node is what a proxy says of itself: its node's metadata, the peer its
// labels describe, and the exchange header values built once from them.
type Node struct {
	Peer *Peer
	// metadata is the exchange header's value, shared by every request
	// (nothing appends to it).
	metadata []string
}

// NewNode describes the proxy whose xDS node is n.
func NewNode(n *corev3.Node) (*Node, error) {
	md := n.GetMetadata()
	if md == nil {
		md = &structpb.Struct{}
	}
	if _, ok := md.Fields["CLUSTER_ID"]; !ok {
		md = proto.Clone(md).(*structpb.Struct)
		if md.Fields == nil {
			md.Fields = map[string]*structpb.Value{}
		}
		md.Fields["CLUSTER_ID"] = structpb.NewStringValue(defaultCluster)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(exchanged(md))
	if err != nil {
		return nil, err
	}
	return &Node{
		Peer:     peerOf(md),
		metadata: []string{base64.StdEncoding.EncodeToString(b)},
	}, nil
}

// exchanged is the part of the node metadata a peer reads (peerOf):
// the workload, its namespace and cluster, and the labels Istio's metrics
// take app, version and the canonical service from. Istio's exchange
// sends the whole node; these few fields keep the header near 200 bytes,
// where the whole node would push a 1 KiB response past one TCP segment.
func exchanged(md *structpb.Struct) *structpb.Struct {
	out := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for _, k := range []string{"NAMESPACE", "WORKLOAD_NAME", "CLUSTER_ID"} {
		if v, ok := md.Fields[k]; ok {
			out.Fields[k] = v
		}
	}
	labels := md.GetFields()["LABELS"].GetStructValue().GetFields()
	kept := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for _, k := range exchangedLabels {
		if v, ok := labels[k]; ok {
			kept.Fields[k] = v
		}
	}
	if len(kept.Fields) > 0 {
		out.Fields["LABELS"] = structpb.NewStructValue(kept)
	}
	return out
}

// exchangedLabels are the labels peerOf reads.
var exchangedLabels = []string{"app", "version",
	"service.istio.io/canonical-name", "service.istio.io/canonical-revision",
	"app.kubernetes.io/name", "app.kubernetes.io/version"}

// AddMetadata sets the exchange header on h (a request to a mesh
// service, or an inbound request's response). Istio also sends the node
// ID in x-envoy-peer-metadata-id, which its sidecars only use as a cache
// key for the value; the value alone identifies the peer, and leaving the
// ID out saves a hundred bytes each way on every hop.
func (n *Node) AddMetadata(h http.Header) {
	h[HeaderMetadata] = n.metadata
}

// TakePeer removes the exchange headers from h and returns the peer they
// describe, UnknownPeer when there are none or they do not decode.
func (m *Metrics) TakePeer(h http.Header) *Peer {
	v, ok := h[HeaderMetadata]
	if !ok {
		return UnknownPeer
	}
	delete(h, HeaderMetadata)
	delete(h, HeaderMetadataID)
	if len(v) == 0 {
		return UnknownPeer
	}
	return m.peer(v[0])
}

// peer decodes an exchange header value; a value seen before is a map
// lookup, so the same peer costs nothing after its first request.
func (m *Metrics) peer(value string) *Peer {
	m.mu.RLock()
	p := m.peers[value]
	m.mu.RUnlock()
	if p != nil {
		return p
	}
	p = UnknownPeer
	if b, err := base64.StdEncoding.DecodeString(value); err == nil {
		md := &structpb.Struct{}
		if proto.Unmarshal(b, md) == nil && (md.Fields["WORKLOAD_NAME"] != nil || md.Fields["NAMESPACE"] != nil) {
			p = peerOf(md)
		}
	}
	m.mu.Lock()
	if len(m.peers) >= maxPeers {
		clear(m.peers)
	}
	m.peers[value] = p
	m.mu.Unlock()
	return p
}

// peerOf reads a peer from node metadata as Istio's stats filter does:
// workload and namespace from the node, app and version from its labels,
// the canonical service and revision from Istio's canonical labels with
// the same fallbacks as the injector.
func peerOf(md *structpb.Struct) *Peer {
	str := func(k string) string { return md.GetFields()[k].GetStringValue() }
	labels := md.GetFields()["LABELS"].GetStructValue().GetFields()
	label := func(keys ...string) string {
		for _, k := range keys {
			if v := labels[k].GetStringValue(); v != "" {
				return v
			}
		}
		return ""
	}
	workload := orUnknown(str("WORKLOAD_NAME"))
	p := &Peer{
		Workload:          workload,
		Namespace:         orUnknown(str("NAMESPACE")),
		Principal:         Unknown,
		App:               orUnknown(label("app")),
		Version:           orUnknown(label("version")),
		CanonicalService:  label("service.istio.io/canonical-name", "app.kubernetes.io/name", "app"),
		CanonicalRevision: label("service.istio.io/canonical-revision", "app.kubernetes.io/version", "version"),
		Cluster:           orUnknown(str("CLUSTER_ID")),
	}
	if p.CanonicalService == "" {
		p.CanonicalService = workload
	}
	if p.CanonicalRevision == "" {
		p.CanonicalRevision = "latest"
	}
	return p
}

// principalKey is a peer with a principal: given as a string (known once
// per connection) or as the certificate whose first URI SAN it is (so
// that a request on a known connection formats nothing).
type principalKey struct {
	peer      *Peer
	principal string
	cert      *x509.Certificate
}

// WithPrincipal is p with the principal of a mutual TLS connection
// (source_principal / destination_principal, spiffe://...), interned: a
// request with a known peer and principal allocates nothing. An empty
// principal leaves p as it is.
func (m *Metrics) WithPrincipal(p *Peer, principal string) *Peer {
	if principal == "" {
		return p
	}
	return m.withPrincipal(principalKey{peer: p, principal: principal})
}

// WithCertPrincipal is WithPrincipal with the principal read from cert's
// first URI SAN.
func (m *Metrics) WithCertPrincipal(p *Peer, cert *x509.Certificate) *Peer {
	if cert == nil || len(cert.URIs) == 0 {
		return p
	}
	return m.withPrincipal(principalKey{peer: p, cert: cert})
}

func (m *Metrics) withPrincipal(k principalKey) *Peer {
	m.mu.RLock()
	out := m.principals[k]
	m.mu.RUnlock()
	if out != nil {
		return out
	}
	c := *k.peer
	c.Principal = k.principal
	if k.cert != nil {
		c.Principal = k.cert.URIs[0].String()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if out := m.principals[k]; out != nil {
		return out
	}
	if len(m.principals) >= maxPeers {
		clear(m.principals)
	}
	// Series are keyed by peer pointer: the same peer and principal must
	// come back as the same pointer even when reached through another key.
	for _, q := range m.principals {
		if *q == c {
			m.principals[k] = q
			return q
		}
	}
	m.principals[k] = &c
	return &c
}
