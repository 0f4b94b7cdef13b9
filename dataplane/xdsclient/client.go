// Package xdsclient owns the proxy's side of the aggregated discovery
// stream: it subscribes to listeners, clusters, routes, endpoints and the
// secrets (SDS) its listeners' TLS contexts name over one state-of-the-world
// ADS stream, ACKs what it accepts, NACKs what it
// cannot use, keeps the last good configuration while the control plane is
// away, and hands complete snapshots to its owner.
package xdsclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	// Linked so that typed configs inside resources can be decoded.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// Envoy v3 type URLs of the resource types the proxy subscribes to.
const (
	SecretType   = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
	ListenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	ClusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	RouteType    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	EndpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
)

// Snapshot is one consistent view of the accepted configuration. The maps
// are never modified once delivered; a new Snapshot shares the maps of the
// types that did not change.
type Snapshot struct {
	Listeners map[string]*listenerv3.Listener
	Clusters  map[string]*clusterv3.Cluster
	Routes    map[string]*routev3.RouteConfiguration
	Endpoints map[string]*endpointv3.ClusterLoadAssignment
	// Secrets are the SDS secrets the listeners name, by name.
	Secrets map[string]*tlsv3.Secret
	// Versions holds the last accepted version_info by type URL.
	Versions map[string]string
	// Updated holds when each type was last accepted, by type URL.
	Updated map[string]time.Time
}

// Has reports whether a response of typeURL has been accepted.
func (s *Snapshot) Has(typeURL string) bool {
	_, ok := s.Versions[typeURL]
	return ok
}

func (s *Snapshot) clone() *Snapshot {
	return &Snapshot{
		Listeners: s.Listeners, Clusters: s.Clusters, Routes: s.Routes, Endpoints: s.Endpoints, Secrets: s.Secrets,
		Versions: maps.Clone(s.Versions), Updated: maps.Clone(s.Updated),
	}
}

// Config configures a Client.
type Config struct {
	// Address is the control plane's gRPC address (host:port).
	Address string
	// TLS, when set, is the connection's TLS (istiod's 15012: the
	// workload certificate as client certificate); plaintext otherwise.
	TLS *tls.Config
	// Node identifies this proxy to the control plane.
	Node *corev3.Node
	// Check is the proxy's own acceptance test of a candidate snapshot,
	// called after the resources of typeURL decoded and validated; an
	// error NACKs the response. Optional.
	Check func(s *Snapshot, typeURL string) error
	// OnUpdate receives every newly accepted snapshot, from the client's
	// goroutine, in order.
	OnUpdate func(*Snapshot)
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// MinBackoff and MaxBackoff bound the reconnect delay (100ms and 5s
	// by default).
	MinBackoff, MaxBackoff time.Duration
	// DialOptions are added to the gRPC dial.
	DialOptions []grpc.DialOption
}

// MaxResponseBytes bounds one xDS response, as gRPC's default receive
// limit does; stated here because the control plane (controlplane/xds
// MaxResponseBytes) refuses to send anything larger, reporting it, rather
// than have the transport drop it unseen and the proxy reconnect forever.
const MaxResponseBytes = 4 << 20

// Client is an ADS client. Run drives it.
type Client struct {
	cfg Config
	log *slog.Logger

	mu   sync.Mutex
	snap *Snapshot
	// ackState is the last ACKed version by type URL (what to resend on
	// reconnect, as Envoy does).
	acks map[string]ackState
}

type ackState struct {
	version string
	names   []string
}

// New returns a Client for cfg.
func New(cfg Config) *Client {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	return &Client{
		cfg: cfg,
		log: cfg.Logger,
		snap: &Snapshot{
			Listeners: map[string]*listenerv3.Listener{},
			Clusters:  map[string]*clusterv3.Cluster{},
			Routes:    map[string]*routev3.RouteConfiguration{},
			Endpoints: map[string]*endpointv3.ClusterLoadAssignment{},
			Secrets:   map[string]*tlsv3.Secret{},
			Versions:  map[string]string{},
			Updated:   map[string]time.Time{},
		},
		acks: map[string]ackState{},
	}
}

// Snapshot returns the last accepted snapshot.
func (c *Client) Snapshot() *Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.snap
}

// Run keeps a stream to the control plane open until ctx ends,
// reconnecting with capped exponential backoff. It returns ctx's error.
func (c *Client) Run(ctx context.Context) error {
	creds := insecure.NewCredentials()
	if c.cfg.TLS != nil {
		creds = credentials.NewTLS(c.cfg.TLS)
	}
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxResponseBytes)),
	}, c.cfg.DialOptions...)
	conn, err := grpc.NewClient(c.cfg.Address, opts...)
	if err != nil {
		return fmt.Errorf("dial control plane %s: %w", c.cfg.Address, err)
	}
	defer func() { _ = conn.Close() }() // the stream's end is what Run reports
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	backoff := c.cfg.MinBackoff
	for {
		received, err := c.stream(ctx, ads)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if received {
			backoff = c.cfg.MinBackoff
		}
		c.log.Info("xds stream ended, reconnecting", "address", c.cfg.Address, "err", err, "in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(backoff*2, c.cfg.MaxBackoff)
	}
}

// stream runs one ADS stream; received reports whether any response came.
func (c *Client) stream(ctx context.Context, ads discoveryv3.AggregatedDiscoveryServiceClient) (received bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := ads.StreamAggregatedResources(ctx, grpc.WaitForReady(true))
	if err != nil {
		return false, fmt.Errorf("open ADS stream: %w", err)
	}
	s := &session{c: c, st: st, sent: map[string][]string{}}
	// Envoy's order: clusters and listeners first; endpoints, routes and
	// secrets follow from what those name.
	c.mu.Lock()
	acks := maps.Clone(c.acks)
	c.mu.Unlock()
	for _, t := range []string{ClusterType, ListenerType} {
		if err := s.send(t, acks[t].version, "", nil, nil); err != nil {
			return false, err
		}
	}
	for _, t := range []string{EndpointType, RouteType, SecretType} {
		if a, ok := acks[t]; ok && len(a.names) > 0 {
			if err := s.send(t, a.version, "", a.names, nil); err != nil {
				return false, err
			}
		}
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			return received, fmt.Errorf("receive from control plane: %w", err)
		}
		received = true
		if err := s.handle(resp); err != nil {
			return received, err
		}
	}
}

type session struct {
	c  *Client
	st discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	// sent is the resource names last subscribed to, by type (EDS, RDS,
	// SDS).
	sent map[string][]string
	// nonce is the last nonce received, by type.
	nonce map[string]string
}

func (s *session) send(typeURL, version, nonce string, names []string, detail error) error {
	req := &discoveryv3.DiscoveryRequest{
		VersionInfo:   version,
		Node:          s.c.cfg.Node,
		ResourceNames: names,
		TypeUrl:       typeURL,
		ResponseNonce: nonce,
	}
	if detail != nil {
		req.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: detail.Error()}
	}
	if typeURL == EndpointType || typeURL == RouteType || typeURL == SecretType {
		s.sent[typeURL] = names
	}
	if err := s.st.Send(req); err != nil {
		return fmt.Errorf("send %s request: %w", shortType(typeURL), err)
	}
	return nil
}

func (s *session) handle(resp *discoveryv3.DiscoveryResponse) error {
	c := s.c
	t := resp.GetTypeUrl()
	if s.nonce == nil {
		s.nonce = map[string]string{}
	}
	s.nonce[t] = resp.GetNonce()
	c.mu.Lock()
	cur := c.snap
	c.mu.Unlock()
	next, err := c.accept(cur, resp)
	if err != nil {
		c.log.Warn("rejecting xds update", "type", shortType(t), "version", resp.GetVersionInfo(), "err", err)
		return s.send(t, cur.Versions[t], resp.GetNonce(), s.names(t), err)
	}
	c.mu.Lock()
	c.snap = next
	c.acks[t] = ackState{version: resp.GetVersionInfo(), names: s.names(t)}
	c.mu.Unlock()
	if err := s.send(t, resp.GetVersionInfo(), resp.GetNonce(), s.names(t), nil); err != nil {
		return err
	}
	// Follow the dependencies: new clusters or listeners may name new
	// endpoints or routes.
	switch t {
	case ClusterType:
		if err := s.resubscribe(EndpointType, EndpointNames(next.Clusters)); err != nil {
			return err
		}
	case ListenerType:
		if err := s.resubscribe(RouteType, RouteNames(next.Listeners)); err != nil {
			return err
		}
		if err := s.resubscribe(SecretType, SecretNames(next.Listeners)); err != nil {
			return err
		}
	}
	if c.cfg.OnUpdate != nil {
		c.cfg.OnUpdate(next)
	}
	return nil
}

func (s *session) names(t string) []string {
	return s.sent[t]
}

func (s *session) resubscribe(t string, names []string) error {
	if prev, ok := s.sent[t]; ok && slices.Equal(prev, names) {
		return nil
	}
	if _, ok := s.sent[t]; !ok && len(names) == 0 {
		return nil
	}
	s.c.mu.Lock()
	v := s.c.snap.Versions[t]
	s.c.mu.Unlock()
	return s.send(t, v, s.nonce[t], names, nil)
}

// accept decodes, validates and checks resp against cur, returning the
// snapshot that results.
func (c *Client) accept(cur *Snapshot, resp *discoveryv3.DiscoveryResponse) (*Snapshot, error) {
	t := resp.GetTypeUrl()
	next := cur.clone()
	switch t {
	case ListenerType:
		m, err := decodeAll[*listenerv3.Listener](resp.GetResources(), t, func(l *listenerv3.Listener) string { return l.GetName() })
		if err != nil {
			return nil, err
		}
		next.Listeners = m
	case ClusterType:
		m, err := decodeAll[*clusterv3.Cluster](resp.GetResources(), t, func(c *clusterv3.Cluster) string { return c.GetName() })
		if err != nil {
			return nil, err
		}
		next.Clusters = m
		// Endpoints of clusters gone are gone too.
		next.Endpoints = keep(cur.Endpoints, EndpointNames(m))
	case RouteType:
		// For routes, endpoints and secrets Envoy keeps what a response
		// omits, as long as something still names it.
		m, err := decodeMerged(resp, cur.Routes, RouteNames(cur.Listeners), func(r *routev3.RouteConfiguration) string { return r.GetName() })
		if err != nil {
			return nil, err
		}
		next.Routes = m
	case EndpointType:
		m, err := decodeMerged(resp, cur.Endpoints, EndpointNames(cur.Clusters), func(e *endpointv3.ClusterLoadAssignment) string { return e.GetClusterName() })
		if err != nil {
			return nil, err
		}
		next.Endpoints = m
	case SecretType:
		m, err := decodeMerged(resp, cur.Secrets, SecretNames(cur.Listeners), func(s *tlsv3.Secret) string { return s.GetName() })
		if err != nil {
			return nil, err
		}
		next.Secrets = m
	default:
		return nil, fmt.Errorf("unexpected resource type %q", t)
	}
	if t == ListenerType {
		next.Routes = keep(next.Routes, RouteNames(next.Listeners))
		next.Secrets = keep(next.Secrets, SecretNames(next.Listeners))
	}
	next.Versions[t] = resp.GetVersionInfo()
	next.Updated[t] = time.Now()
	if c.cfg.Check != nil {
		if err := c.cfg.Check(next, t); err != nil {
			return nil, err
		}
	}
	return next, nil
}

type validator interface {
	proto.Message
	Validate() error
}

func decodeAll[T validator](rs []*anypb.Any, typeURL string, name func(T) string) (map[string]T, error) {
	out := make(map[string]T, len(rs))
	var errs []error
	for i, a := range rs {
		if a.GetTypeUrl() != typeURL {
			errs = append(errs, fmt.Errorf("resource %d: type %q in a %s response", i, a.GetTypeUrl(), shortType(typeURL)))
			continue
		}
		m, err := a.UnmarshalNew()
		if err != nil {
			errs = append(errs, fmt.Errorf("decode %s %d: %w", shortType(typeURL), i, err))
			continue
		}
		r := m.(T)
		if err := r.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("validate %s %q: %w", shortType(typeURL), name(r), err))
			continue
		}
		if _, dup := out[name(r)]; dup {
			errs = append(errs, fmt.Errorf("duplicate %s %q", shortType(typeURL), name(r)))
			continue
		}
		out[name(r)] = r
	}
	return out, errors.Join(errs...)
}

// decodeMerged decodes a response of a type whose responses may name only
// some resources: what it carries replaces, and what it omits is kept while
// still referenced.
func decodeMerged[T validator](resp *discoveryv3.DiscoveryResponse, cur map[string]T, referenced []string, name func(T) string) (map[string]T, error) {
	m, err := decodeAll[T](resp.GetResources(), resp.GetTypeUrl(), name)
	if err != nil {
		return nil, err
	}
	merged := keep(cur, referenced)
	maps.Copy(merged, m)
	return merged, nil
}

func keep[T any](m map[string]T, names []string) map[string]T {
	out := make(map[string]T, len(names))
	for _, n := range names {
		if v, ok := m[n]; ok {
			out[n] = v
		}
	}
	return out
}

// EndpointNames are the EDS service names of the EDS clusters, sorted.
func EndpointNames(cs map[string]*clusterv3.Cluster) []string {
	var out []string
	for name, c := range cs {
		if c.GetType() == clusterv3.Cluster_EDS {
			if sn := c.GetEdsClusterConfig().GetServiceName(); sn != "" {
				name = sn
			}
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// FilterChains are a listener's filter chains followed by its default
// chain, if it has one.
func FilterChains(l *listenerv3.Listener) []*listenerv3.FilterChain {
	chains := l.GetFilterChains()
	if d := l.GetDefaultFilterChain(); d != nil {
		chains = append(slices.Clip(chains), d)
	}
	return chains
}

// RouteNames are the route configurations the listeners' connection
// managers fetch over RDS, sorted.
func RouteNames(ls map[string]*listenerv3.Listener) []string {
	seen := map[string]bool{}
	for _, l := range ls {
		for _, fc := range FilterChains(l) {
			for _, f := range fc.GetFilters() {
				h, ok := HCM(f)
				if ok && h.GetRds() != nil {
					seen[h.GetRds().GetRouteConfigName()] = true
				}
			}
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// SecretNames are the secrets the listeners' downstream TLS contexts fetch
// over SDS (certificates and validation contexts), sorted, as Envoy
// subscribes to them when it loads the listeners.
func SecretNames(ls map[string]*listenerv3.Listener) []string {
	seen := map[string]bool{}
	for _, l := range ls {
		for _, fc := range FilterChains(l) {
			tc := fc.GetTransportSocket().GetTypedConfig()
			if tc == nil || !tc.MessageIs((*tlsv3.DownstreamTlsContext)(nil)) {
				continue
			}
			var dtc tlsv3.DownstreamTlsContext
			if err := tc.UnmarshalTo(&dtc); err != nil {
				continue
			}
			ctx := dtc.GetCommonTlsContext()
			for _, sc := range ctx.GetTlsCertificateSdsSecretConfigs() {
				if sc.GetSdsConfig().GetAds() != nil && sc.GetName() != "" {
					seen[sc.GetName()] = true
				}
			}
			vc := ctx.GetValidationContextSdsSecretConfig()
			if cv := ctx.GetCombinedValidationContext(); cv != nil {
				vc = cv.GetValidationContextSdsSecretConfig()
			}
			if vc.GetSdsConfig().GetAds() != nil && vc.GetName() != "" {
				seen[vc.GetName()] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// HCM decodes f's http_connection_manager config, if it is one.
func HCM(f *listenerv3.Filter) (*hcmv3.HttpConnectionManager, bool) {
	tc := f.GetTypedConfig()
	if tc == nil || !tc.MessageIs((*hcmv3.HttpConnectionManager)(nil)) {
		return nil, false
	}
	h := &hcmv3.HttpConnectionManager{}
	if err := tc.UnmarshalTo(h); err != nil {
		return nil, false
	}
	return h, true
}

func shortType(t string) string {
	switch t {
	case ListenerType:
		return "LDS"
	case ClusterType:
		return "CDS"
	case RouteType:
		return "RDS"
	case EndpointType:
		return "EDS"
	case SecretType:
		return "SDS"
	}
	return t
}
