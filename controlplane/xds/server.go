package xds

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	meshv1 "istio.io/api/mesh/v1alpha1"

	"github.com/meshlab/meshlab/controlplane/registry"
)

// Server serves each connected proxy its resources over ADS and tracks
// what it sent and what each proxy acknowledged. Nodes become known on
// their first request and are forgotten when their last stream closes, so
// proxies that come and go leave nothing behind.
//
// Each proxy's snapshot carries one version per type, and a type's version
// changes only when its resources do: a push reaches, and a wait for it
// concerns, only the proxies whose configuration it changed.
type Server struct {
	log   *slog.Logger
	cache cachev3.SnapshotCache

	// buildMu serializes building and setting snapshots, so a node that
	// connects during an Update never gets an older snapshot after a newer one.
	buildMu sync.Mutex
	index   *index // of the last Update's input; nil before the first
	version string
	// snaps is what each node's snapshot holds, by node ID; buildMu.
	snaps map[string]*snapState
	// sums are the size and hash of each resource of index, which the
	// proxies share; buildMu.
	sums      map[types.Resource]resourceSum
	sumsIndex *index

	adsOnce sync.Once
	ads     serverv3.Server // one for both ports, so stream ids are unique

	mu      sync.Mutex
	nodes   map[string]*node // by snapshot key (Proxy.cacheKey)
	streams map[int64]string // stream id → snapshot key
	peers   map[int64]streamPeer
	pushed  string        // version of the last Update applied to every node
	changed chan struct{} // closed and replaced on every status change
	// retained are the ProxyConfigs of proxies whose streams all closed,
	// by snapshot key, for when the same process (PROXY_BOOT_ID)
	// reconnects; s.mu.
	retained map[string]retainedProxyConfig

	obs       Observer
	pushStart time.Time // when the last Update started; mu
}

// Observer hears the server's events for istiod's metrics (package
// monitoring). It is called with the server's locks held: it must be
// quick and must not call back.
type Observer interface {
	// Pushed: a response of typeURL, bytes long, went to a proxy, since
	// after the push or request it answers.
	Pushed(typeURL string, bytes int, since time.Duration)
	// SendFailed: a proxy's resources of typeURL could not be sent.
	SendFailed(typeURL string)
	// Rejected: a proxy NACKed typeURL.
	Rejected(typeURL string)
	// ExpiredNonce: a proxy answered a nonce other than the last sent.
	ExpiredNonce(typeURL string)
	// Converged: a proxy acknowledged every type a push changed, d
	// after that push started.
	Converged(d time.Duration)
	// Queued: a proxy's turn in a push came d after it started.
	Queued(d time.Duration)
	// PushContextInit: a push's shared index took d to build.
	PushContextInit(d time.Duration)
	// InternalError: a proxy's configuration failed to build.
	InternalError()
	// Sent: writing one response to a proxy's stream took d.
	Sent(d time.Duration)
}

type nopObserver struct{}

func (nopObserver) Pushed(string, int, time.Duration) {}
func (nopObserver) SendFailed(string)                 {}
func (nopObserver) Rejected(string)                   {}
func (nopObserver) ExpiredNonce(string)               {}
func (nopObserver) Converged(time.Duration)           {}
func (nopObserver) Queued(time.Duration)              {}
func (nopObserver) PushContextInit(time.Duration)     {}
func (nopObserver) InternalError()                    {}
func (nopObserver) Sent(time.Duration)                {}

// timedADS times each response's write to the stream (istiod's
// pilot_xds_send_time), which go-control-plane does after the response
// callback; the stream wrapper is made once per stream.
type timedADS struct {
	serverv3.Server
	s *Server
}

func (t timedADS) StreamAggregatedResources(stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return t.Server.StreamAggregatedResources(timedStream{stream, t.s})
}

type timedStream struct {
	discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer
	s *Server
}

func (t timedStream) Send(resp *discoveryv3.DiscoveryResponse) error {
	start := time.Now()
	err := t.AggregatedDiscoveryService_StreamAggregatedResourcesServer.Send(resp)
	t.s.obs.Sent(time.Since(start))
	// A stream closing (Unavailable, Canceled) is normal; anything else
	// is a failed push, as istiod's recordSendError counts it.
	if c := status.Code(err); err != nil && c != codes.Unavailable && c != codes.Canceled {
		t.s.obs.SendFailed(resp.GetTypeUrl())
	}
	return err
}

// IsHTTPPort is the protocol rule the inbound listeners follow, for the
// control plane's pilot_conflict_inbound_listener.
func IsHTTPPort(p registry.Port) bool { return isHTTP(p) }

// SetObserver makes o hear the server's events; call it before serving.
func (s *Server) SetObserver(o Observer) { s.obs = o }

// ConnectedVersions counts the connected proxies by the ISTIO_VERSION
// their node metadata gives ("" when none), istiod's pilot_xds{version}.
func (s *Server) ConnectedVersions() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for _, n := range s.nodes {
		if n.streams > 0 {
			out[n.version]++
		}
	}
	return out
}

type retainedProxyConfig struct {
	bootID string
	pc     *meshv1.ProxyConfig
	at     time.Time
}

// Retention of a disconnected proxy's ProxyConfig: long enough for any
// reconnect, bounded in count for proxies that come and go.
const (
	retainProxyConfigFor = time.Hour
	maxRetainedConfigs   = 10000
)

type node struct {
	proxy   Proxy
	streams int
	types   map[string]*typeState
	version string // ISTIO_VERSION of its metadata
	// since is when the oldest push it has not acknowledged started.
	since time.Time
}

type typeState struct {
	sent, acked, nacked, nackError string
	nonce                          string // of the last response sent
	nonceVersion                   string
	last                           *discoveryv3.DiscoveryResponse
	lastAt                         time.Time
	requestedAt                    time.Time // of its last request
	// target is the version of this type in the node's snapshot: what
	// the node should end up acknowledging, once it subscribed.
	target     string
	subscribed bool
	// undeliverable says why the resources of version failed to reach
	// the node (too large for a gRPC message); the node keeps target.
	undeliverable, undeliverableVersion string
}

// snapState is what a node's snapshot holds, per type: the version, a
// hash of the resources (to keep the version when they did not change)
// and the resources themselves (to keep serving them when a newer set
// cannot be delivered).
type snapState struct {
	types map[resource.Type]snapType
}

type snapType struct {
	version string
	hash    uint64
	res     []types.Resource
}

type resourceSum struct {
	size int
	hash uint64
}

// MaxResponseBytes is the largest xDS response a proxy takes: gRPC's
// default receive limit (4 MiB), which the meshlab proxy keeps
// (dataplane/xdsclient) and Envoy's own gRPC client enforces likewise. A
// response over it would be refused by the transport before the proxy
// could NACK it, and the proxy would reconnect and be refused again.
const MaxResponseBytes = 4 << 20

// ProxyStatus is one proxy's sync state, as istioctl proxy-status shows it.
type ProxyStatus struct {
	ID        string `json:"id"`
	Type      string `json:"type"` // sidecar or router
	Pod       string `json:"pod"`
	Namespace string `json:"namespace"`
	IP        string `json:"ip"`
	Connected bool   `json:"connected"`
	// Identity is the SPIFFE ID its client certificate proved on the
	// mTLS port; empty for a plaintext (15010) proxy.
	Identity string                `json:"identity,omitempty"`
	PerType  map[string]TypeStatus `json:"perType"` // by type URL; TypeName shortens it
}

// TypeStatus is the sync state of one resource type of one proxy.
type TypeStatus struct {
	Sent   string `json:"sent,omitempty"`   // version last sent
	Acked  string `json:"acked,omitempty"`  // version last acknowledged
	Nacked string `json:"nacked,omitempty"` // version last rejected, until a newer one is acked
	Error  string `json:"error,omitempty"`  // the proxy's reason for that rejection, or why the control plane could not send
	State  string `json:"state"`            // SYNCED, STALE, NOT SENT or ERROR
}

// TypeName is istioctl's column name for a type URL: CDS, LDS, EDS, RDS,
// or the URL itself for others.
func TypeName(url string) string {
	switch url {
	case resource.ClusterType:
		return "CDS"
	case resource.ListenerType:
		return "LDS"
	case resource.EndpointType:
		return "EDS"
	case resource.RouteType:
		return "RDS"
	case resource.SecretType:
		return "SDS"
	}
	return url
}

// Sync states, as istioctl spells them.
const (
	Synced  = "SYNCED"
	Stale   = "STALE"
	NotSent = "NOT SENT"
	// Undeliverable: the control plane could not send the latest
	// resources (TypeStatus.Error says why); the proxy keeps what it has.
	Undeliverable = "ERROR"
)

// NewServer returns a server with no configuration; proxies that connect
// before the first Update wait for it.
func NewServer(logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{
		log:      logger,
		cache:    cachev3.NewSnapshotCache(true, cachev3.IDHash{}, cacheLogger{logger}),
		nodes:    map[string]*node{},
		streams:  map[int64]string{},
		peers:    map[int64]streamPeer{},
		snaps:    map[string]*snapState{},
		changed:  make(chan struct{}),
		retained: map[string]retainedProxyConfig{},
		obs:      nopObserver{},
	}
}

// GRPCOptions are the gRPC server options of an xDS port: keepalives as
// istiod's, and room for every proxy's stream.
func GRPCOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.MaxConcurrentStreams(1 << 20),
	}
}

// Register adds ADS to g, a gRPC server over TLS that asks for client
// certificates (istiod's 15012): there a stream must bring a certificate
// from the mesh CA (verified by g's TLS), its SPIFFE identity must be of the
// node's namespace and service account, and then it may be served
// secrets. Streams end with ctx.
func (s *Server) Register(ctx context.Context, g *grpc.Server) {
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, timedADS{s.adsServer(ctx), s})
}

func (s *Server) adsServer(ctx context.Context) serverv3.Server {
	s.adsOnce.Do(func() { s.ads = serverv3.NewServer(ctx, s.cache, s.callbacks()) })
	return s.ads
}

// Serve serves ADS in plaintext on lis (istiod's 15010) until ctx ends,
// then stops and returns nil. Proxies there are unauthenticated: they get
// their configuration but never a secret.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	g := grpc.NewServer(GRPCOptions()...)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, timedADS{s.adsServer(ctx), s})

	errc := make(chan error, 1)
	go func() { errc <- g.Serve(lis) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve xds on %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	// The xDS server's streams end with ctx; give them a moment to say
	// goodbye, then cut whatever is left.
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		g.Stop()
		<-stopped
	}
	// After a stop, Serve returns nil; an error raced with the stop and
	// the server is down either way, so it is only worth a line.
	if err := <-errc; err != nil {
		s.log.Warn("serve xds", "addr", lis.Addr(), "err", err)
	}
	return nil
}

// Update makes in, at version, the configuration of every connected proxy
// and of those that connect later. A proxy whose resources cannot be
// delivered keeps its last good ones; that is returned as an error and
// shown in its status.
func (s *Server) Update(ctx context.Context, in Input, version string) error {
	s.buildMu.Lock()
	defer s.buildMu.Unlock()
	start := time.Now()
	x := newIndex(in)
	s.obs.PushContextInit(time.Since(start))
	s.index, s.version = x, version

	s.mu.Lock()
	s.pushStart = start
	var proxies []Proxy
	for _, n := range s.nodes {
		if n.streams > 0 {
			proxies = append(proxies, n.proxy)
		}
	}
	s.mu.Unlock()

	var errs []error
	for _, p := range proxies {
		s.obs.Queued(time.Since(start))
		if err := s.setSnapshot(ctx, x, p, start); err != nil {
			errs = append(errs, err)
		}
	}
	s.mu.Lock()
	s.pushed = version
	s.notify()
	s.mu.Unlock()
	return errors.Join(errs...)
}

// setSnapshot builds p's resources and hands them to the cache; buildMu
// held. pushStart is when the push it is part of started; zero for a
// proxy's first snapshot.
func (s *Server) setSnapshot(ctx context.Context, x *index, p Proxy, pushStart time.Time) error {
	key := p.cacheKey()
	if p.ProxyConfig == nil {
		// Its first build since it connected: its ProxyConfig is fixed
		// now, from the mesh's defaultConfig of this moment, for as long
		// as it stays connected (Istio's proxies read theirs at start).
		p.ProxyConfig = resolveProxyConfig(x.mesh.GetDefaultConfig(), p)
		s.mu.Lock()
		if n := s.nodes[key]; n != nil {
			n.proxy.ProxyConfig = p.ProxyConfig
		}
		s.mu.Unlock()
	}
	res, err := x.build(p)
	if err != nil {
		s.obs.InternalError()
		return err
	}
	if s.sumsIndex != x {
		s.sums, s.sumsIndex = map[types.Resource]resourceSum{}, x
	}
	prev := s.snaps[key]
	if prev == nil {
		prev = &snapState{}
	}
	next := &snapState{types: make(map[resource.Type]snapType, len(res))}
	var errs []error
	failed := map[resource.Type]string{}
	for url, rs := range res {
		size, hash := s.sum(rs)
		old, had := prev.types[url]
		if size > MaxResponseBytes {
			msg := fmt.Sprintf("%s response of %d resources is %.1f MiB, over the %d MiB gRPC message limit of the proxies; they keep their previous %s", TypeName(url), len(rs), float64(size)/(1<<20), MaxResponseBytes>>20, TypeName(url))
			failed[url] = msg
			errs = append(errs, fmt.Errorf("proxy %s, version %s: %s", p.ID, s.version, msg))
			if had {
				next.types[url] = old
			}
			continue
		}
		v := s.version
		if had && old.hash == hash {
			v = old.version // unchanged: the proxy need not hear of it
		}
		next.types[url] = snapType{version: v, hash: hash, res: rs}
	}
	snap := &cachev3.Snapshot{}
	for url, st := range next.types {
		snap.Resources[cachev3.GetResponseType(url)] = cachev3.NewResources(st.version, st.res)
	}
	if err := s.cache.SetSnapshot(ctx, key, snap); err != nil {
		return fmt.Errorf("set snapshot for %s: %w", p.ID, err)
	}
	s.snaps[key] = next

	s.mu.Lock()
	n := s.nodes[key]
	if n == nil {
		// Its last stream closed while this was built.
		s.mu.Unlock()
		s.cache.ClearSnapshot(key)
		delete(s.snaps, key)
		return nil
	}
	{
		for url, st := range next.types {
			ts := s.typeState(n, url)
			if ts.target != st.version && ts.subscribed && !pushStart.IsZero() && n.since.IsZero() {
				n.since = pushStart
			}
			ts.target = st.version
		}
		for url := range res {
			ts := s.typeState(n, url)
			if msg, ok := failed[url]; ok {
				s.obs.SendFailed(url)
				ts.undeliverable, ts.undeliverableVersion = msg, s.version
			} else {
				ts.undeliverable, ts.undeliverableVersion = "", ""
			}
		}
		s.notify()
	}
	s.mu.Unlock()
	for _, err := range errs {
		s.log.Error("config cannot be delivered", "node", p.ID, "version", s.version, "err", err)
	}
	return errors.Join(errs...)
}

// sum is the size of a response carrying rs and a hash of their content;
// each resource is measured once per index, since proxies share most.
func (s *Server) sum(rs []types.Resource) (size int, hash uint64) {
	h := xxhash.New()
	var b [8]byte
	for _, r := range rs {
		rsum, ok := s.sums[r]
		if !ok {
			m, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
			if err != nil {
				// Unreachable for built resources; measure it as too large
				// rather than send what cannot be encoded.
				m = make([]byte, MaxResponseBytes+1)
			}
			// An Any: the type URL, the value, and their tags and lengths.
			rsum = resourceSum{size: len(m) + len(anyPrefix) + len(r.ProtoReflect().Descriptor().FullName()) + 16, hash: xxhash.Sum64(m)}
			s.sums[r] = rsum
		}
		size += rsum.size
		binary.LittleEndian.PutUint64(b[:], rsum.hash)
		_, _ = h.Write(b[:])
	}
	return size + 1024, h.Sum64() // version, nonce, type URL
}

const anyPrefix = "type.googleapis.com/"

// typeState returns n's state of url, creating it; s.mu held.
func (s *Server) typeState(n *node, url string) *typeState {
	ts := n.types[url]
	if ts == nil {
		ts = &typeState{}
		n.types[url] = ts
	}
	return ts
}

// notify wakes WaitSynced; s.mu held.
func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) callbacks() serverv3.Callbacks {
	return serverv3.CallbackFuncs{
		StreamOpenFunc:     s.onOpen,
		StreamRequestFunc:  s.onRequest,
		StreamResponseFunc: s.onResponse,
		StreamClosedFunc:   s.onClosed,
	}
}

// streamPeer is how a stream's client authenticated: on the TLS port,
// the SPIFFE IDs of its verified certificate; on plaintext, not at all.
type streamPeer struct {
	tls        bool
	identities []string
	addr       string
}

// plaintextKeyPrefix makes the snapshot key of an unauthenticated stream;
// no node ID can start with it (ParseNodeID wants 4 fields).
const plaintextKeyPrefix = "plaintext~"

// onOpen authenticates a stream as istiod's authenticate does: plaintext
// (15010) passes unauthenticated; on TLS (15012) the client certificate,
// verified by the TLS handshake against the mesh root, is required and its
// URI SANs are the identities.
func (s *Server) onOpen(ctx context.Context, streamID int64, _ string) error {
	sp := streamPeer{}
	pr, ok := peer.FromContext(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "authentication failure: no peer")
	}
	if pr.Addr != nil {
		sp.addr = pr.Addr.String()
	}
	if info, ok := pr.AuthInfo.(credentials.TLSInfo); ok {
		sp.tls = true
		chains := info.State.VerifiedChains
		if len(chains) == 0 || len(chains[0]) == 0 {
			s.log.Warn("xDS stream refused: no client certificate", "peer", sp.addr)
			return status.Error(codes.Unauthenticated, "authentication failure: xDS on this port needs a client certificate from the mesh CA")
		}
		for _, u := range chains[0][0].URIs {
			sp.identities = append(sp.identities, u.String())
		}
		if len(sp.identities) == 0 {
			s.log.Warn("xDS stream refused: certificate without an identity", "peer", sp.addr)
			return status.Error(codes.Unauthenticated, "authentication failure: the client certificate has no URI SAN")
		}
	}
	s.mu.Lock()
	s.peers[streamID] = sp
	s.mu.Unlock()
	return nil
}

// checkConnectionIdentity is istiod's (pilot/pkg/xds/authentication.go):
// one of the certificate's SPIFFE IDs must be of the node's namespace and,
// when the node names one in its metadata, of its service account.
func checkConnectionIdentity(p Proxy, serviceAccount string, identities []string) (*Identity, error) {
	for _, raw := range identities {
		id, err := ParseSPIFFE(raw)
		if err != nil {
			continue
		}
		if p.Namespace != "" && id.Namespace != p.Namespace {
			continue
		}
		if serviceAccount != "" && id.ServiceAccount != serviceAccount {
			continue
		}
		return &id, nil
	}
	return nil, fmt.Errorf("no identities (%v) matched %v/%v", identities, p.Namespace, serviceAccount)
}

func (s *Server) onRequest(streamID int64, req *discoveryv3.DiscoveryRequest) error {
	id := req.GetNode().GetId()
	s.mu.Lock()
	n, connected, err := s.nodeFor(streamID, req.GetNode())
	if err != nil {
		s.mu.Unlock()
		return err
	}
	// The cache finds the snapshot by the request's node ID: make it the
	// stream's key, whatever ID this request claims.
	if req.Node != nil {
		req.Node.Id = s.streams[streamID]
	}
	ts := s.typeState(n, req.GetTypeUrl())
	ts.subscribed = true
	ts.requestedAt = time.Now()
	switch {
	case req.GetResponseNonce() == "":
		// A reconnecting proxy tells what it already runs.
		if v := req.GetVersionInfo(); v != "" {
			ts.acked = v
		}
	case req.GetResponseNonce() != ts.nonce:
		// Stale nonce: the server ignores it, and so do we.
		s.obs.ExpiredNonce(req.GetTypeUrl())
	case req.GetErrorDetail() != nil:
		s.obs.Rejected(req.GetTypeUrl())
		ts.nacked, ts.nackError = ts.nonceVersion, req.GetErrorDetail().GetMessage()
		s.log.Warn("proxy rejected config", "node", id, "type", req.GetTypeUrl(), "version", ts.nonceVersion, "error", ts.nackError)
	default:
		ts.acked = req.GetVersionInfo()
		if ts.acked == ts.nacked {
			ts.nacked, ts.nackError = "", ""
		}
		if !n.since.IsZero() && converged(n) {
			s.obs.Converged(time.Since(n.since))
			n.since = time.Time{}
		}
	}
	s.notify()
	proxy := n.proxy
	s.mu.Unlock()

	if connected {
		s.log.Debug("proxy connected", "node", id)
		s.buildMu.Lock()
		defer s.buildMu.Unlock()
		if s.index != nil {
			// The index memoizes what proxies share, so a crowd of proxies
			// connecting at once costs one translation of the mesh.
			if err := s.setSnapshot(context.Background(), s.index, proxy, time.Time{}); err != nil {
				s.log.Error("build config for new proxy", "node", id, "err", err)
			}
		}
	}
	return nil
}

// nodeFor returns the node of a stream, registering it on the stream's
// first request once its identity is checked against the node it claims;
// connected reports that it just got its first stream. s.mu held.
func (s *Server) nodeFor(streamID int64, cn *corev3.Node) (n *node, connected bool, err error) {
	if key, ok := s.streams[streamID]; ok {
		return s.nodes[key], false, nil
	}
	p, err := ParseNodeID(cn.GetId())
	if err != nil {
		return nil, false, fmt.Errorf("unknown node id %q: want sidecar~<ip>~<pod>.<ns>~<ns>.svc.cluster.local", cn.GetId())
	}
	p.Labels = metadataLabels(cn)
	md := cn.GetMetadata().GetFields()
	p.ClusterID, p.MeshID = md["CLUSTER_ID"].GetStringValue(), md["MESH_ID"].GetStringValue()
	p.bootID = md["PROXY_BOOT_ID"].GetStringValue()
	if pc, set, err := proxyConfigMetadata(md["PROXY_CONFIG"]); err != nil {
		// Istio's agent would not start with it; the proxy runs, with
		// the mesh's defaults.
		s.log.Warn("ignoring the proxy's PROXY_CONFIG metadata", "node", p.ID, "err", err)
	} else {
		p.proxyConfigMeta, p.proxyConfigMetaSet = pc, set
	}
	sp, ok := s.peers[streamID]
	if !ok {
		return nil, false, status.Error(codes.Unauthenticated, "authentication failure: stream not opened")
	}
	if sp.tls {
		sa := cn.GetMetadata().GetFields()["SERVICE_ACCOUNT"].GetStringValue()
		v, err := checkConnectionIdentity(p, sa, sp.identities)
		if err != nil {
			s.log.Warn("unauthorized xDS", "peer", sp.addr, "node", p.ID, "identities", sp.identities, "err", err)
			return nil, false, status.Errorf(codes.PermissionDenied, "authorization failed: node %s: %v", p.ID, err)
		}
		p.Verified = v
	} else {
		p.key = plaintextKeyPrefix + p.ID
	}
	key := p.cacheKey()
	n = s.nodes[key]
	if n == nil {
		n = &node{types: map[string]*typeState{}}
		s.nodes[key] = n
	}
	// Another stream of a connected proxy keeps its ProxyConfig, and so
	// does the same process reconnecting.
	p.ProxyConfig = n.proxy.ProxyConfig
	if r, ok := s.retained[key]; ok {
		if p.ProxyConfig == nil && r.bootID != "" && r.bootID == p.bootID {
			p.ProxyConfig = r.pc
		}
		delete(s.retained, key)
	}
	n.proxy = p
	n.version = cn.GetMetadata().GetFields()["ISTIO_VERSION"].GetStringValue()
	s.streams[streamID] = key
	n.streams++
	return n, n.streams == 1, nil
}

func metadataLabels(n *corev3.Node) map[string]string {
	f := n.GetMetadata().GetFields()["LABELS"].GetStructValue().GetFields()
	if len(f) == 0 {
		return nil
	}
	out := make(map[string]string, len(f))
	for k, v := range f {
		out[k] = v.GetStringValue()
	}
	return out
}

func (s *Server) onResponse(_ context.Context, streamID int64, req *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes[s.streams[streamID]]
	if n == nil {
		return
	}
	ts := s.typeState(n, resp.GetTypeUrl())
	ts.sent, ts.nonce, ts.nonceVersion = resp.GetVersionInfo(), resp.GetNonce(), resp.GetVersionInfo()
	ts.last, ts.lastAt = resp, time.Now()
	// The resources are already encoded: their sizes cost a sum.
	size := 0
	for _, r := range resp.GetResources() {
		size += len(r.GetValue())
	}
	start := s.pushStart
	if ts.requestedAt.After(start) {
		start = ts.requestedAt
	}
	s.obs.Pushed(resp.GetTypeUrl(), size, ts.lastAt.Sub(start))
	s.notify()
}

// converged reports whether n acknowledged the version its snapshot
// holds of every type it subscribed to; s.mu held.
func converged(n *node) bool {
	for _, ts := range n.types {
		if ts.subscribed && ts.target != "" && ts.acked != ts.target {
			return false
		}
	}
	return true
}

func (s *Server) onClosed(streamID int64, _ *corev3.Node) {
	s.mu.Lock()
	id, ok := s.streams[streamID]
	delete(s.streams, streamID)
	delete(s.peers, streamID)
	n := s.nodes[id]
	if ok && n != nil {
		n.streams--
	}
	s.notify()
	s.mu.Unlock()
	if !ok || n == nil {
		return
	}

	// Forget a node gone for good: its snapshot is rebuilt from the
	// latest input when it comes back. buildMu orders this against a new
	// stream of the same node setting its snapshot, which must win.
	s.buildMu.Lock()
	defer s.buildMu.Unlock()
	s.mu.Lock()
	gone := n.streams == 0 && s.nodes[id] == n
	if gone {
		delete(s.nodes, id)
		s.retain(id, n.proxy)
		s.notify()
	}
	s.mu.Unlock()
	if gone {
		s.log.Debug("proxy disconnected", "node", id)
		s.cache.ClearSnapshot(id)
		delete(s.snaps, id)
	}
}

// retain keeps a departed proxy's ProxyConfig for its process's
// reconnect, dropping what is too old or too many; s.mu held.
func (s *Server) retain(key string, p Proxy) {
	now := time.Now()
	for k, r := range s.retained {
		if now.Sub(r.at) > retainProxyConfigFor {
			delete(s.retained, k)
		}
	}
	if p.bootID == "" || p.ProxyConfig == nil || len(s.retained) >= maxRetainedConfigs {
		return
	}
	s.retained[key] = retainedProxyConfig{bootID: p.bootID, pc: p.ProxyConfig, at: now}
}

// nodeByID is the node of a node ID: the authenticated one, else the
// plaintext one; s.mu held.
func (s *Server) nodeByID(id string) *node {
	if n := s.nodes[id]; n != nil {
		return n
	}
	return s.nodes[plaintextKeyPrefix+id]
}

// Status reports every known proxy, sorted by node ID.
func (s *Server) Status() []ProxyStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ProxyStatus, 0, len(s.nodes))
	for _, n := range s.nodes {
		ps := ProxyStatus{
			ID: n.proxy.ID, Type: n.proxy.Type, Pod: n.proxy.Name, Namespace: n.proxy.Namespace,
			IP: n.proxy.IP.String(), Connected: n.streams > 0, PerType: map[string]TypeStatus{},
		}
		if n.proxy.Verified != nil {
			ps.Identity = n.proxy.Verified.String()
		}
		for _, url := range []string{resource.ClusterType, resource.ListenerType, resource.EndpointType, resource.RouteType} {
			ps.PerType[url] = TypeStatus{State: NotSent}
		}
		for url, ts := range n.types {
			st := TypeStatus{Sent: ts.sent, Acked: ts.acked, Nacked: ts.nacked, Error: ts.nackError}
			switch {
			case ts.undeliverable != "":
				st.State, st.Error = Undeliverable, ts.undeliverable
			case ts.sent == "":
				st.State = NotSent
			case ts.sent == ts.acked:
				st.State = Synced
			default:
				st.State = Stale
			}
			ps.PerType[url] = st
		}
		out = append(out, ps)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// WaitSynced returns when every connected proxy has acknowledged version
// for every type it subscribed to, or with an error when one rejected it
// or ctx ends first.
func (s *Server) WaitSynced(ctx context.Context, version string) error {
	return s.WaitAcked(ctx, func(v string) bool { return v == version })
}

// SyncError says which proxies did not take a change: those that rejected
// it or could not be sent it (Failed, with why), and those that had not
// acknowledged it when the wait ended (Pending).
type SyncError struct {
	Failed  []string // "pod.namespace: TYPE version V: reason"
	Pending []string // pod.namespace
	Err     error    // ctx's error when the wait ran out
}

func (e *SyncError) Error() string {
	var parts []string
	if len(e.Failed) > 0 {
		parts = append(parts, "rejected or undeliverable: "+strings.Join(e.Failed, "; "))
	}
	if len(e.Pending) > 0 {
		parts = append(parts, "no ACK from "+strings.Join(e.Pending, ", "))
	}
	if e.Err != nil {
		parts = append(parts, e.Err.Error())
	}
	return "wait for proxies to ack: " + strings.Join(parts, "; ")
}

func (e *SyncError) Unwrap() error { return e.Err }

// WaitAcked returns once the control plane has pushed a version that
// reached accepts and every proxy that push changed has acknowledged, for
// each type it changed, a version reached accepts. Proxies whose
// configuration the push left as it was are not waited for: a proxy that
// never acknowledges anything holds up only the changes that concern it.
// It fails with a *SyncError as soon as a concerned proxy rejects the
// change or cannot be sent it, or when ctx ends, naming the proxies.
// A predicate rather than one version: a later push may supersede the
// version a caller waits for before every proxy acknowledged it.
func (s *Server) WaitAcked(ctx context.Context, reached func(version string) bool) error {
	for {
		s.mu.Lock()
		pushed := reached(s.pushed)
		pending, failed := s.pending(reached)
		ch := s.changed
		s.mu.Unlock()
		if len(failed) > 0 {
			return &SyncError{Failed: failed}
		}
		if pushed && len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			if !pushed {
				return &SyncError{Err: fmt.Errorf("the control plane has not pushed the change: %w", ctx.Err())}
			}
			return &SyncError{Pending: pending, Err: ctx.Err()}
		case <-ch:
		}
	}
}

// pending names, sorted, the connected proxies whose snapshot has a type
// at a version reached accepts that they have not acknowledged, and those
// that rejected such a version or could not be sent it; s.mu held.
func (s *Server) pending(reached func(string) bool) (waiting, failed []string) {
	for _, n := range s.nodes {
		if n.streams == 0 {
			continue
		}
		name := n.proxy.Name + "." + n.proxy.Namespace
		late := false
		for url, ts := range n.types {
			switch {
			case ts.undeliverable != "" && reached(ts.undeliverableVersion):
				failed = append(failed, fmt.Sprintf("%s: %s version %s: %s", name, TypeName(url), ts.undeliverableVersion, ts.undeliverable))
			case !ts.subscribed || ts.target == "" || !reached(ts.target):
				// Not asked for, or not changed by the push waited for.
			case ts.nacked != "" && reached(ts.nacked) && !reached(ts.acked):
				// The message is the proxy's; it reaches terminals.
				failed = append(failed, fmt.Sprintf("%s: %s version %s rejected: %s", name, TypeName(url), ts.nacked, strconv.QuoteToGraphic(ts.nackError)))
			case !reached(ts.acked):
				late = true
			}
		}
		if late {
			waiting = append(waiting, name)
		}
	}
	sort.Strings(waiting)
	sort.Strings(failed)
	return waiting, failed
}

// cacheLogger sends go-control-plane's logging to slog at debug level:
// what it warns about ("not responding to request") is normal protocol.
type cacheLogger struct{ l *slog.Logger }

func (c cacheLogger) logf(level slog.Level, format string, args []any) {
	if c.l.Enabled(context.Background(), level) {
		c.l.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}

func (c cacheLogger) Debugf(format string, args ...any) { c.logf(slog.LevelDebug, format, args) }
func (c cacheLogger) Infof(format string, args ...any)  { c.logf(slog.LevelDebug, format, args) }
func (c cacheLogger) Warnf(format string, args ...any)  { c.logf(slog.LevelDebug, format, args) }
func (c cacheLogger) Errorf(format string, args ...any) { c.logf(slog.LevelWarn, format, args) }
