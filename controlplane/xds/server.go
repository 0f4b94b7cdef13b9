package xds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// Server serves each connected proxy its resources over ADS and tracks
// what it sent and what each proxy acknowledged. Nodes become known on
// their first request; a node whose last stream closes stays in Status,
// marked disconnected, until a proxy for the same pod connects again.
type Server struct {
	log   *slog.Logger
	cache cachev3.SnapshotCache

	// buildMu serializes building and setting snapshots, so a node that
	// connects during an Update never gets an older snapshot after a newer one.
	buildMu sync.Mutex
	index   *index // of the last Update's input; nil before the first
	version string

	mu      sync.Mutex
	nodes   map[string]*node
	streams map[int64]string // stream id → node id
	changed chan struct{}    // closed and replaced on every status change
}

type node struct {
	proxy   Proxy
	streams int
	types   map[string]*typeState
}

type typeState struct {
	sent, acked, nacked, nackError string
	nonce                          string // of the last response sent
	nonceVersion                   string
	last                           *discoveryv3.DiscoveryResponse
	lastAt                         time.Time
}

// ProxyStatus is one proxy's sync state, as istioctl proxy-status shows it.
type ProxyStatus struct {
	ID        string                `json:"id"`
	Type      string                `json:"type"` // sidecar or router
	Pod       string                `json:"pod"`
	Namespace string                `json:"namespace"`
	IP        string                `json:"ip"`
	Connected bool                  `json:"connected"`
	PerType   map[string]TypeStatus `json:"perType"` // by type URL; TypeName shortens it
}

// TypeStatus is the sync state of one resource type of one proxy.
type TypeStatus struct {
	Sent   string `json:"sent,omitempty"`   // version last sent
	Acked  string `json:"acked,omitempty"`  // version last acknowledged
	Nacked string `json:"nacked,omitempty"` // version last rejected, until a newer one is acked
	Error  string `json:"error,omitempty"`  // the proxy's reason for that rejection
	State  string `json:"state"`            // SYNCED, STALE or NOT SENT
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
)

// NewServer returns a server with no configuration; proxies that connect
// before the first Update wait for it.
func NewServer(logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{
		log:     logger,
		cache:   cachev3.NewSnapshotCache(true, cachev3.IDHash{}, cacheLogger{logger}),
		nodes:   map[string]*node{},
		streams: map[int64]string{},
		changed: make(chan struct{}),
	}
}

// Serve serves ADS on lis until ctx ends, then stops and returns nil.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	g := grpc.NewServer(
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.MaxConcurrentStreams(1<<20),
	)
	xs := serverv3.NewServer(ctx, s.cache, s.callbacks())
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, xs)

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
	<-errc
	return nil
}

// Update makes in, at version, the configuration of every connected proxy
// and of those that connect later.
func (s *Server) Update(ctx context.Context, in Input, version string) error {
	s.buildMu.Lock()
	defer s.buildMu.Unlock()
	x := newIndex(in)
	s.index, s.version = x, version

	s.mu.Lock()
	var proxies []Proxy
	for _, n := range s.nodes {
		if n.streams > 0 {
			proxies = append(proxies, n.proxy)
		}
	}
	s.mu.Unlock()

	var errs []error
	for _, p := range proxies {
		if err := s.setSnapshot(ctx, x, p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// setSnapshot builds p's resources and hands them to the cache; buildMu held.
func (s *Server) setSnapshot(ctx context.Context, x *index, p Proxy) error {
	res, err := x.build(p)
	if err != nil {
		return err
	}
	snap, err := cachev3.NewSnapshot(s.version, res)
	if err != nil {
		return fmt.Errorf("snapshot for %s: %w", p.ID, err)
	}
	if err := s.cache.SetSnapshot(ctx, p.ID, snap); err != nil {
		return fmt.Errorf("set snapshot for %s: %w", p.ID, err)
	}
	return nil
}

// notify wakes WaitSynced; s.mu held.
func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) callbacks() serverv3.Callbacks {
	return serverv3.CallbackFuncs{
		StreamRequestFunc:  s.onRequest,
		StreamResponseFunc: s.onResponse,
		StreamClosedFunc:   s.onClosed,
	}
}

func (s *Server) onRequest(streamID int64, req *discoveryv3.DiscoveryRequest) error {
	id := req.GetNode().GetId()
	s.mu.Lock()
	n, connected := s.nodeFor(streamID, req.GetNode())
	if n == nil {
		s.mu.Unlock()
		return fmt.Errorf("unknown node id %q: want sidecar~<ip>~<pod>.<ns>~<ns>.svc.cluster.local", id)
	}
	ts := n.types[req.GetTypeUrl()]
	if ts == nil {
		ts = &typeState{}
		n.types[req.GetTypeUrl()] = ts
	}
	switch {
	case req.GetResponseNonce() == "":
		// A reconnecting proxy tells what it already runs.
		if v := req.GetVersionInfo(); v != "" {
			ts.acked = v
		}
	case req.GetResponseNonce() != ts.nonce:
		// Stale nonce: the server ignores it, and so do we.
	case req.GetErrorDetail() != nil:
		ts.nacked, ts.nackError = ts.nonceVersion, req.GetErrorDetail().GetMessage()
		s.log.Warn("proxy rejected config", "node", id, "type", req.GetTypeUrl(), "version", ts.nonceVersion, "error", ts.nackError)
	default:
		ts.acked = req.GetVersionInfo()
		if ts.acked == ts.nacked {
			ts.nacked, ts.nackError = "", ""
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
			if err := s.setSnapshot(context.Background(), s.index, proxy); err != nil {
				s.log.Error("build config for new proxy", "node", id, "err", err)
			}
		}
	}
	return nil
}

// nodeFor returns the node of a stream, registering it on the stream's
// first request; connected reports that it just got its first stream.
// s.mu held.
func (s *Server) nodeFor(streamID int64, cn *corev3.Node) (n *node, connected bool) {
	if id, ok := s.streams[streamID]; ok {
		return s.nodes[id], false
	}
	p, err := ParseNodeID(cn.GetId())
	if err != nil {
		return nil, false
	}
	p.Labels = metadataLabels(cn)
	n = s.nodes[p.ID]
	if n == nil {
		// A new pod replaces the disconnected record of its predecessor.
		for id, old := range s.nodes {
			if old.streams == 0 && old.proxy.Name == p.Name && old.proxy.Namespace == p.Namespace {
				delete(s.nodes, id)
			}
		}
		n = &node{types: map[string]*typeState{}}
		s.nodes[p.ID] = n
	}
	n.proxy = p
	s.streams[streamID] = p.ID
	n.streams++
	return n, n.streams == 1
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
	ts := n.types[resp.GetTypeUrl()]
	if ts == nil {
		ts = &typeState{}
		n.types[resp.GetTypeUrl()] = ts
	}
	ts.sent, ts.nonce, ts.nonceVersion = resp.GetVersionInfo(), resp.GetNonce(), resp.GetVersionInfo()
	ts.last, ts.lastAt = resp, time.Now()
	s.notify()
}

func (s *Server) onClosed(streamID int64, _ *corev3.Node) {
	s.mu.Lock()
	id, ok := s.streams[streamID]
	delete(s.streams, streamID)
	n := s.nodes[id]
	if ok && n != nil {
		n.streams--
	}
	s.notify()
	s.mu.Unlock()
	if !ok || n == nil {
		return
	}

	// Drop the snapshot of a node gone for good; it is rebuilt from the
	// latest input when it comes back. buildMu orders this against a new
	// stream of the same node setting its snapshot, which must win.
	s.buildMu.Lock()
	defer s.buildMu.Unlock()
	s.mu.Lock()
	gone := n.streams == 0
	s.mu.Unlock()
	if gone {
		s.log.Debug("proxy disconnected", "node", id)
		s.cache.ClearSnapshot(id)
	}
}

// Status reports every known proxy, sorted by node ID.
func (s *Server) Status() []ProxyStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ProxyStatus, 0, len(s.nodes))
	for id, n := range s.nodes {
		ps := ProxyStatus{
			ID: id, Type: n.proxy.Type, Pod: n.proxy.Name, Namespace: n.proxy.Namespace,
			IP: n.proxy.IP.String(), Connected: n.streams > 0, PerType: map[string]TypeStatus{},
		}
		for _, url := range []string{resource.ClusterType, resource.ListenerType, resource.EndpointType, resource.RouteType} {
			ps.PerType[url] = TypeStatus{State: NotSent}
		}
		for url, ts := range n.types {
			st := TypeStatus{Sent: ts.sent, Acked: ts.acked, Nacked: ts.nacked, Error: ts.nackError}
			switch {
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

// WaitAcked returns when every connected proxy has acknowledged, for every
// type it subscribed to, a version that reached satisfies, or with an error
// when one rejected such a version or ctx ends first. A predicate rather
// than one version: a later push may supersede the version a caller waits
// for before every proxy acknowledged it.
func (s *Server) WaitAcked(ctx context.Context, reached func(version string) bool) error {
	for {
		s.mu.Lock()
		pending, err := s.pending(reached)
		ch := s.changed
		s.mu.Unlock()
		if err != nil || pending == "" {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for proxies to ack: %s has not: %w", pending, ctx.Err())
		case <-ch:
		}
	}
}

// pending names a connected proxy that has not acked a version that reached
// accepts; s.mu held.
func (s *Server) pending(reached func(string) bool) (string, error) {
	waiting := ""
	for id, n := range s.nodes {
		if n.streams == 0 {
			continue
		}
		for url, ts := range n.types {
			if ts.sent == "" && url != resource.ListenerType && url != resource.ClusterType {
				continue // subscribed to something this server never sends
			}
			if ts.nacked != "" && reached(ts.nacked) && !reached(ts.acked) {
				return "", fmt.Errorf("proxy %s rejected %s version %s: %s", id, url, ts.nacked, ts.nackError)
			}
			if !reached(ts.acked) {
				waiting = id
			}
		}
	}
	return waiting, nil
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
