package xds

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/registry"
)

// adsClient speaks ADS the way Envoy does: CDS and LDS first, then EDS for
// the EDS clusters and RDS for the route configs they name, ACKing (or, when
// told to, NACKing) each response.
type adsClient struct {
	t      *testing.T
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node   *corev3.Node
	types  map[string]*clientType
	nack   map[string]string // type URL → error to NACK its next response with
}

type clientType struct {
	names     []string
	acked     string
	nonce     string
	resources map[string]bool
	requested bool
}

func newADSClient(ctx context.Context, t *testing.T, addr, nodeID string) *adsClient {
	t.Helper()
	return newADSClientWith(ctx, t, addr, nodeID, nil, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// newADSClientWith dials with opts (TLS on the mTLS port) and adds md to
// the node metadata.
func newADSClientWith(ctx context.Context, t *testing.T, addr, nodeID string, md map[string]string, opts ...grpc.DialOption) *adsClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	labels, _ := structpb.NewStruct(map[string]any{"app": "productpage", "version": "v1"})
	fields := map[string]*structpb.Value{
		"NAMESPACE": structpb.NewStringValue("default"),
		"LABELS":    structpb.NewStructValue(labels),
	}
	for k, v := range md {
		fields[k] = structpb.NewStringValue(v)
	}
	c := &adsClient{
		t: t, stream: stream,
		node:  &corev3.Node{Id: nodeID, Metadata: &structpb.Struct{Fields: fields}},
		types: map[string]*clientType{},
		nack:  map[string]string{},
	}
	for _, url := range []string{resource.ClusterType, resource.ListenerType, resource.EndpointType, resource.RouteType} {
		c.types[url] = &clientType{}
	}
	c.subscribe(resource.ClusterType, nil)
	c.subscribe(resource.ListenerType, nil)
	return c
}

func (c *adsClient) send(req *discoveryv3.DiscoveryRequest) {
	c.t.Helper()
	if err := c.stream.Send(req); err != nil {
		c.t.Fatalf("send %s: %v", req.GetTypeUrl(), err)
	}
}

func (c *adsClient) subscribe(url string, names []string) {
	ct := c.types[url]
	if ct.requested && slices.Equal(ct.names, names) {
		return
	}
	ct.names, ct.requested = names, true
	// The node rides on every request here; Envoy may send it only once.
	c.send(&discoveryv3.DiscoveryRequest{Node: c.node, TypeUrl: url, VersionInfo: ct.acked, ResponseNonce: ct.nonce, ResourceNames: names})
}

// recv handles one response: records it, ACKs or NACKs it, and follows
// the names it carries to EDS and RDS.
func (c *adsClient) recv() {
	c.t.Helper()
	resp, err := c.stream.Recv()
	if err != nil {
		c.t.Fatalf("recv: %v", err)
	}
	url := resp.GetTypeUrl()
	ct := c.types[url]
	ct.nonce = resp.GetNonce()
	if msg, ok := c.nack[url]; ok {
		delete(c.nack, url)
		c.send(&discoveryv3.DiscoveryRequest{TypeUrl: url, VersionInfo: ct.acked, ResponseNonce: ct.nonce, ResourceNames: ct.names,
			ErrorDetail: &statuspb.Status{Code: 3, Message: msg}})
		return
	}
	ct.acked = resp.GetVersionInfo()
	ct.resources = map[string]bool{}
	var follow []string
	for _, a := range resp.GetResources() {
		m, err := a.UnmarshalNew()
		if err != nil {
			c.t.Fatalf("decode %s: %v", a.GetTypeUrl(), err)
		}
		ct.resources[resourceName(m)] = true
		switch m := m.(type) {
		case *clusterv3.Cluster:
			if m.GetType() == clusterv3.Cluster_EDS {
				follow = append(follow, m.GetName())
			}
		case *listenerv3.Listener:
			for _, fc := range m.GetFilterChains() {
				for _, f := range fc.GetFilters() {
					var h hcmv3.HttpConnectionManager
					if f.GetTypedConfig().MessageIs(&h) {
						if err := f.GetTypedConfig().UnmarshalTo(&h); err != nil {
							c.t.Fatal(err)
						}
						if n := h.GetRds().GetRouteConfigName(); n != "" {
							follow = append(follow, n)
						}
					}
				}
			}
		}
	}
	c.send(&discoveryv3.DiscoveryRequest{TypeUrl: url, VersionInfo: ct.acked, ResponseNonce: ct.nonce, ResourceNames: ct.names})
	sort.Strings(follow)
	switch url {
	case resource.ClusterType:
		c.subscribe(resource.EndpointType, follow)
	case resource.ListenerType:
		c.subscribe(resource.RouteType, follow)
	}
}

// until receives until the client has acknowledged, for every type it
// subscribed to, the version the server's snapshot for it holds, and has
// NACKed the types in nacked. A type's version moves only when its
// resources change, so it may lag the latest Update.
func (c *adsClient) until(s *Server, nacked ...string) {
	c.t.Helper()
	for {
		done := true
		for url, ct := range c.types {
			target := s.target(c.node.GetId(), url)
			switch {
			case slices.Contains(nacked, url):
				if _, pending := c.nack[url]; pending {
					done = false
				}
			case !ct.requested:
			case target == "" && (url == resource.ClusterType || url == resource.ListenerType):
				done = false // not built yet
			case ct.acked != target:
				done = false
			}
		}
		if done {
			return
		}
		c.recv()
	}
}

// target is the version of url in node id's snapshot.
func (s *Server) target(id, url string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.nodeByID(id); n != nil && n.types[url] != nil {
		return n.types[url].target
	}
	return ""
}

func bookinfoInput(t *testing.T) Input {
	in, _ := loadFixture(t, "testdata/cases/default.json")
	return in
}

// waitStatus waits (bounded by ctx) until cond holds for the status.
func waitStatus(ctx context.Context, t *testing.T, s *Server, cond func([]ProxyStatus) bool) []ProxyStatus {
	t.Helper()
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		st := s.Status()
		if cond(st) {
			return st
		}
		select {
		case <-ctx.Done():
			t.Fatalf("status never matched: %+v", st)
		case <-ch:
		}
	}
}

func TestServerADS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(slog.New(slog.DiscardHandler))
	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- s.Serve(serveCtx, lis) }()
	defer func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	in := bookinfoInput(t)
	if err := s.Update(ctx, in, "1.1"); err != nil {
		t.Fatal(err)
	}

	const id = "sidecar~198.18.0.10~productpage-v1-0.default~default.svc.cluster.local"
	streamCtx, closeStream := context.WithCancel(ctx)
	defer closeStream()
	c := newADSClient(streamCtx, t, lis.Addr().String(), id)
	c.until(s)
	if err := s.WaitSynced(ctx, "1.1"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct{ url, name string }{
		{resource.ListenerType, "virtualOutbound"},
		{resource.ListenerType, "virtualInbound"},
		{resource.RouteType, "9080"},
		{resource.ClusterType, "inbound|9080||"},
		{resource.EndpointType, "outbound|9080||reviews.default.svc.cluster.local"},
	} {
		if !c.types[want.url].resources[want.name] {
			t.Errorf("%s: %q not received; got %v", want.url, want.name, c.types[want.url].resources)
		}
	}
	st := s.Status()
	if len(st) != 1 || st[0].ID != id || !st[0].Connected || st[0].Pod != "productpage-v1-0" || st[0].Namespace != "default" || st[0].IP != "198.18.0.10" {
		t.Fatalf("Status = %+v", st)
	}
	for _, url := range []string{resource.ListenerType, resource.RouteType, resource.ClusterType, resource.EndpointType} {
		if ts := st[0].PerType[url]; ts.State != Synced || ts.Sent != "1.1" || ts.Acked != "1.1" {
			t.Errorf("%s: %+v, want SYNCED at 1.1", url, ts)
		}
	}

	// A new version reaches the connected proxy: a VirtualService sending
	// reviews to v2, with its DestinationRule.
	in.Config = append(in.Config,
		config.Resource{Kind: config.VirtualService, Namespace: "default", Name: "reviews", Spec: &networking.VirtualService{
			Hosts: []string{"reviews"},
			Http:  []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "reviews", Subset: "v2"}}}}},
		}},
		config.Resource{Kind: config.DestinationRule, Namespace: "default", Name: "reviews", Spec: &networking.DestinationRule{
			Host: "reviews", Subsets: []*networking.Subset{{Name: "v2", Labels: map[string]string{"version": "v2"}}},
		}})
	if err := s.Update(ctx, in, "1.2"); err != nil {
		t.Fatal(err)
	}
	c.until(s)
	if !c.types[resource.EndpointType].resources["outbound|9080|v2|reviews.default.svc.cluster.local"] {
		t.Errorf("subset endpoints not received: %v", c.types[resource.EndpointType].resources)
	}
	if err := s.WaitSynced(ctx, "1.2"); err != nil {
		t.Fatal(err)
	}

	// The proxy rejects the next listeners (a new TCP service brings
	// one): status says so, WaitSynced fails naming the proxy and why.
	c.nack[resource.ListenerType] = "bad listener"
	in.Registry.Services = append(in.Registry.Services, registry.Service{Name: "db", Namespace: "default",
		VIP: netip.MustParseAddr("198.19.0.99"), Ports: []registry.Port{{Name: "tcp", Port: 7000}}})
	if err := s.Update(ctx, in, "1.3"); err != nil {
		t.Fatal(err)
	}
	c.until(s, resource.ListenerType)
	st = waitStatus(ctx, t, s, func(st []ProxyStatus) bool { return st[0].PerType[resource.ListenerType].Nacked == "1.3" })
	if ts := st[0].PerType[resource.ListenerType]; ts.State != Stale || ts.Acked != "1.1" || ts.Sent != "1.3" || ts.Error != "bad listener" {
		t.Errorf("after NACK: %+v", ts)
	}
	if err := s.WaitSynced(ctx, "1.3"); err == nil || !strings.Contains(err.Error(), `productpage-v1-0.default: LDS version 1.3 rejected: "bad listener"`) {
		t.Errorf("WaitSynced after NACK = %v, want the rejection", err)
	}

	dump, err := s.ConfigDump(id)
	if err != nil {
		t.Fatal(err)
	}
	var lds adminv3.ListenersConfigDump
	var found bool
	for _, a := range dump.GetConfigs() {
		if a.MessageIs(&lds) {
			found = true
			if err := a.UnmarshalTo(&lds); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !found || len(dump.GetConfigs()) != 4 {
		t.Fatalf("config dump has %d configs, listeners %v", len(dump.GetConfigs()), found)
	}
	var names []string
	for _, l := range lds.GetDynamicListeners() {
		names = append(names, l.GetName())
	}
	if !slices.Contains(names, "virtualOutbound") || lds.GetVersionInfo() != "1.3" {
		t.Errorf("listeners dump: version %q names %v", lds.GetVersionInfo(), names)
	}
	if _, err := s.ConfigDump("sidecar~1.2.3.4~x.y~y.svc.cluster.local"); err == nil {
		t.Error("ConfigDump of an unknown node succeeded")
	}

	// Disconnecting removes the proxy from Status.
	closeStream()
	waitStatus(ctx, t, s, func(st []ProxyStatus) bool { return len(st) == 0 })
	// With nobody connected, every connected proxy is trivially in sync.
	if err := s.WaitSynced(ctx, "1.3"); err != nil {
		t.Errorf("WaitSynced with no proxies: %v", err)
	}

	// Coming back, the proxy gets the latest config at once.
	c = newADSClient(ctx, t, lis.Addr().String(), id)
	c.until(s)
	if err := s.WaitSynced(ctx, "1.3"); err != nil {
		t.Fatal(err)
	}
	if st := s.Status(); len(st) != 1 || !st[0].Connected || st[0].PerType[resource.ListenerType].State != Synced {
		t.Errorf("after reconnect: %+v", st)
	}
}

// A proxy that connects before the control plane has any config waits
// for the first Update, then gets it without asking again.
func TestServerConnectBeforeUpdate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(nil)
	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- s.Serve(serveCtx, lis) }()
	defer func() { stop(); <-served }()

	const id = "router~198.18.0.2~istio-ingressgateway-0.istio-system~istio-system.svc.cluster.local"
	c := newADSClient(ctx, t, lis.Addr().String(), id)
	waitStatus(ctx, t, s, func(st []ProxyStatus) bool { return len(st) == 1 && st[0].Connected })
	if st := s.Status(); st[0].PerType[resource.ListenerType].State != NotSent || st[0].Type != RouterProxy {
		t.Errorf("before any Update: %+v", st[0])
	}
	in, _ := loadFixture(t, "testdata/cases/gateway.json")
	if err := s.Update(ctx, in, "7.1"); err != nil {
		t.Fatal(err)
	}
	c.until(s)
	if !c.types[resource.RouteType].resources["http.8080"] || !c.types[resource.ListenerType].resources["0.0.0.0_8080"] {
		t.Errorf("gateway got listeners %v routes %v", c.types[resource.ListenerType].resources, c.types[resource.RouteType].resources)
	}
	if err := s.WaitSynced(ctx, "7.1"); err != nil {
		t.Fatal(err)
	}
}

func TestServerRejectsBadNodeID(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(nil)
	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- s.Serve(serveCtx, lis) }()
	defer func() { stop(); <-served }()

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "not-a-node-id"}, TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err == nil || !strings.Contains(err.Error(), "not-a-node-id") {
		t.Errorf("Recv = %v, want the stream refused naming the node id", err)
	}
	if st := s.Status(); len(st) != 0 {
		t.Errorf("Status = %+v, want no proxies", st)
	}
}

// startServer serves s on loopback until the test ends.
func startServer(ctx context.Context, t *testing.T, s *Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- s.Serve(serveCtx, lis) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return lis.Addr().String()
}

// silentNode opens a stream as id, subscribes to clusters and listeners
// and never reads or acknowledges anything.
func silentNode(ctx context.Context, t *testing.T, addr, id string) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, url := range []string{resource.ClusterType, resource.ListenerType} {
		if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: id}, TypeUrl: url}); err != nil {
			t.Fatal(err)
		}
	}
}

func revAtLeast(rev int) func(string) bool {
	return func(v string) bool {
		head, _, _ := strings.Cut(v, ".")
		n, err := strconv.Atoi(head)
		return err == nil && n >= rev
	}
}

// waitAcked runs WaitAcked bounded by d while drive keeps a proxy talking.
func waitAcked(ctx context.Context, s *Server, d time.Duration, reached func(string) bool, drive func()) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.WaitAcked(ctx, reached) }()
	drive()
	return <-done
}

// A node that never acknowledges anything holds up only the changes that
// concern it, and a wait it holds up names it.
func TestServerWaitConcernsChangedProxies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := NewServer(nil)
	addr := startServer(ctx, t, s)
	in, proxies := loadFixture(t, "testdata/cases/gateway.json")
	if err := s.Update(ctx, in, "1.1"); err != nil {
		t.Fatal(err)
	}
	gw := newADSClient(ctx, t, addr, proxies["gateway"])
	gw.until(s)
	const stranger = "sidecar~198.18.0.77~stranger.default~default.svc.cluster.local"
	silentNode(ctx, t, addr, stranger)
	waitStatus(ctx, t, s, func(st []ProxyStatus) bool {
		for _, p := range st {
			if p.ID == stranger && p.PerType[resource.ClusterType].Sent == "1.1" {
				return true
			}
		}
		return false
	})

	// Only the gateway's routes change: the wait is the gateway's.
	vs := in.Config[1].Spec.(*networking.VirtualService)
	vs.Http = append([]*networking.HTTPRoute{{
		Match: []*networking.HTTPMatchRequest{{Uri: &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: "/new"}}}},
		Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "productpage"}}},
	}}, vs.Http...)
	if err := s.Update(ctx, in, "2.1"); err != nil {
		t.Fatal(err)
	}
	if err := waitAcked(ctx, s, 10*time.Second, revAtLeast(2), func() { gw.until(s) }); err != nil {
		t.Fatalf("wait for a gateway-only change: %v", err)
	}

	// A new subset changes every proxy's clusters: the stranger is named.
	in.Config = append(in.Config, config.Resource{Kind: config.DestinationRule, Namespace: "default", Name: "reviews", Spec: &networking.DestinationRule{
		Host: "reviews", Subsets: []*networking.Subset{{Name: "v2", Labels: map[string]string{"version": "v2"}}},
	}})
	if err := s.Update(ctx, in, "3.1"); err != nil {
		t.Fatal(err)
	}
	err := waitAcked(ctx, s, time.Second, revAtLeast(3), func() { gw.until(s) })
	var se *SyncError
	if !errors.As(err, &se) || !slices.Equal(se.Pending, []string{"stranger.default"}) || len(se.Failed) != 0 ||
		!errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait for a change concerning the stranger = %#v, want it pending alone", err)
	}
}

// Nodes that connect and leave, hundreds of them, leave nothing behind.
func TestServerForgetsDisconnectedNodes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := NewServer(nil)
	addr := startServer(ctx, t, s)
	if err := s.Update(ctx, bookinfoInput(t), "1.1"); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	for i := range 200 {
		streamCtx, closeStream := context.WithCancel(ctx)
		stream, err := ads.StreamAggregatedResources(streamCtx)
		if err != nil {
			t.Fatal(err)
		}
		id := "sidecar~198.18.1." + strconv.Itoa(i%250) + "~fake-" + strconv.Itoa(i) + ".default~default.svc.cluster.local"
		if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: id}, TypeUrl: resource.ClusterType}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil { // registered, snapshot built and sent
			t.Fatal(err)
		}
		closeStream()
	}
	waitStatus(ctx, t, s, func(st []ProxyStatus) bool { return len(st) == 0 })
	s.buildMu.Lock()
	snaps := len(s.snaps)
	s.buildMu.Unlock()
	if keys := s.cache.GetStatusKeys(); len(keys) != 0 || snaps != 0 {
		t.Errorf("after 200 nodes left: %d cache entries, %d snapshots kept", len(keys), snaps)
	}
}

// A route configuration over the proxies' gRPC message limit is never
// sent: the push fails naming the proxy, its status says ERROR and why,
// the proxy keeps its routes and stays connected, and a wait for it fails
// at once instead of timing out.
func TestServerOversizedRoutes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := NewServer(nil)
	addr := startServer(ctx, t, s)
	in := bookinfoInput(t)
	if err := s.Update(ctx, in, "1.1"); err != nil {
		t.Fatal(err)
	}
	const id = "sidecar~198.18.0.10~productpage-v1-0.default~default.svc.cluster.local"
	c := newADSClient(ctx, t, addr, id)
	c.until(s)

	// 3,000 routes with 2 KiB header matches: over 4 MiB of RDS.
	vs := &networking.VirtualService{Hosts: []string{"reviews"}}
	for i := range 3000 {
		vs.Http = append(vs.Http, &networking.HTTPRoute{
			Match: []*networking.HTTPMatchRequest{{Headers: map[string]*networking.StringMatch{
				"x-user": {MatchType: &networking.StringMatch_Exact{Exact: strconv.Itoa(i) + strings.Repeat("x", 2048)}},
			}}},
			Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "reviews"}}},
		})
	}
	in.Config = append(in.Config, config.Resource{Kind: config.VirtualService, Namespace: "default", Name: "reviews", Spec: vs})
	err := s.Update(ctx, in, "2.1")
	if err == nil || !strings.Contains(err.Error(), id) || !strings.Contains(err.Error(), "RDS response") || !strings.Contains(err.Error(), "gRPC message limit") {
		t.Fatalf("Update = %v, want the undeliverable RDS named", err)
	}
	st := waitStatus(ctx, t, s, func(st []ProxyStatus) bool { return len(st) == 1 })
	rds := st[0].PerType[resource.RouteType]
	if rds.State != Undeliverable || !strings.Contains(rds.Error, "over the 4 MiB gRPC message limit") || rds.Acked != "1.1" {
		t.Errorf("RDS status = %+v, want ERROR with the reason, 1.1 still acked", rds)
	}
	err = waitAcked(ctx, s, 10*time.Second, revAtLeast(2), func() {})
	var se *SyncError
	if !errors.As(err, &se) || len(se.Failed) != 1 || !strings.Contains(se.Failed[0], "productpage-v1-0.default: RDS version 2.1") {
		t.Errorf("wait = %v, want the undeliverable RDS reported", err)
	}
	// Still connected and served: a later deliverable change arrives.
	in.Config = in.Config[:len(in.Config)-1]
	in.Config = append(in.Config, config.Resource{Kind: config.VirtualService, Namespace: "default", Name: "reviews", Spec: &networking.VirtualService{
		Hosts: []string{"reviews"}, Http: []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "reviews"}, Weight: 100}}, Timeout: durationpb.New(time.Second)}},
	}})
	if err := s.Update(ctx, in, "3.1"); err != nil {
		t.Fatal(err)
	}
	c.until(s)
	if got := c.types[resource.RouteType].acked; got != "3.1" {
		t.Errorf("routes after the oversized push: acked %q, want 3.1", got)
	}
	waitStatus(ctx, t, s, func(st []ProxyStatus) bool { return st[0].PerType[resource.RouteType].State == Synced })
}
