package xds

import (
	"fmt"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ConfigDump is what the control plane last sent the node, shaped as
// Envoy's /config_dump (clusters, listeners, routes, endpoints) for
// proxy-config. It says what was sent, not whether the proxy accepted it.
func (s *Server) ConfigDump(nodeID string) (*adminv3.ConfigDump, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodeByID(nodeID)
	if n == nil {
		return nil, fmt.Errorf("config dump of %q: no such proxy", nodeID)
	}
	sent := func(url string) (version string, at *timestamppb.Timestamp, rs []*anypb.Any) {
		ts := n.types[url]
		if ts == nil || ts.last == nil {
			return "", nil, nil
		}
		return ts.sent, timestamppb.New(ts.lastAt), ts.last.GetResources()
	}

	cds := &adminv3.ClustersConfigDump{}
	v, at, rs := sent(resource.ClusterType)
	cds.VersionInfo = v
	for _, r := range rs {
		cds.DynamicActiveClusters = append(cds.DynamicActiveClusters, &adminv3.ClustersConfigDump_DynamicCluster{VersionInfo: v, Cluster: r, LastUpdated: at})
	}

	lds := &adminv3.ListenersConfigDump{}
	v, at, rs = sent(resource.ListenerType)
	lds.VersionInfo = v
	for _, r := range rs {
		name, err := anyName(r)
		if err != nil {
			return nil, fmt.Errorf("config dump of %q: %w", nodeID, err)
		}
		lds.DynamicListeners = append(lds.DynamicListeners, &adminv3.ListenersConfigDump_DynamicListener{
			Name:        name,
			ActiveState: &adminv3.ListenersConfigDump_DynamicListenerState{VersionInfo: v, Listener: r, LastUpdated: at},
		})
	}

	rds := &adminv3.RoutesConfigDump{}
	v, at, rs = sent(resource.RouteType)
	for _, r := range rs {
		rds.DynamicRouteConfigs = append(rds.DynamicRouteConfigs, &adminv3.RoutesConfigDump_DynamicRouteConfig{VersionInfo: v, RouteConfig: r, LastUpdated: at})
	}

	eds := &adminv3.EndpointsConfigDump{}
	v, at, rs = sent(resource.EndpointType)
	for _, r := range rs {
		eds.DynamicEndpointConfigs = append(eds.DynamicEndpointConfigs, &adminv3.EndpointsConfigDump_DynamicEndpointConfig{VersionInfo: v, EndpointConfig: r, LastUpdated: at})
	}

	out := &adminv3.ConfigDump{}
	for _, d := range []proto.Message{cds, lds, rds, eds} {
		a, err := anypb.New(d)
		if err != nil {
			return nil, fmt.Errorf("config dump of %q: %w", nodeID, err)
		}
		out.Configs = append(out.Configs, a)
	}
	return out, nil
}

func anyName(a *anypb.Any) (string, error) {
	m, err := a.UnmarshalNew()
	if err != nil {
		return "", fmt.Errorf("decode %s: %w", a.GetTypeUrl(), err)
	}
	return resourceName(m), nil
}
