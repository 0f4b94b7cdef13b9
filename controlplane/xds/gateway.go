package xds

import (
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlab/meshlab/controlplane/registry"
)

type boundServer struct {
	gw     *gateway
	server *networking.Server
}

// buildRouter builds a gateway pod's resources: for each port of the
// Gateway servers selecting it, a bound listener and route config
// `http.<port>` with a virtual host per host its VirtualServices and the
// server both name; plus the clusters those routes use.
func (x *index) buildRouter(w registry.Workload) Resources {
	byPort := map[uint32][]boundServer{}
	var ports []uint32
	for _, gw := range x.gateways {
		if !selectorMatches(gw.spec.GetSelector(), w.Labels) {
			continue
		}
		for _, srv := range gw.spec.GetServers() {
			n := srv.GetPort().GetNumber()
			if n == 0 || srv.GetTls() != nil || !httpGatewayProtocol(srv.GetPort().GetProtocol()) {
				continue // TLS and TCP gateway servers are not translated yet
			}
			if len(byPort[n]) == 0 {
				ports = append(ports, n)
			}
			byPort[n] = append(byPort[n], boundServer{gw, srv})
		}
	}
	slices.Sort(ports)

	needed := map[string]destination{}
	need := func(d destination) { needed[outboundClusterName(d.port, d.subset, d.host)] = d }
	listeners, routes := []types.Resource{}, []types.Resource{}
	for _, port := range ports {
		ps := portString(port)
		listeners = append(listeners, &listenerv3.Listener{
			Name:         "0.0.0.0_" + ps,
			Address:      socketAddress("0.0.0.0", port),
			FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{rdsFilter("outbound_0.0.0.0_"+ps, "http."+ps)}}},
		})
		rc := &routev3.RouteConfiguration{Name: "http." + ps, ValidateClusters: wrapperspb.Bool(false)}
		vhosts := map[string]*routev3.VirtualHost{}
		added := map[string]bool{} // host|vs: a VirtualService's routes go to a host once
		for _, bs := range byPort[port] {
			gwKey := bs.gw.res.Namespace + "/" + bs.gw.res.Name
			for _, vs := range x.virtualServices {
				if !vs.boundTo(gwKey) {
					continue
				}
				for _, vh := range vs.hosts {
					for _, sh := range bs.server.GetHosts() {
						sh, ok := hostOnServer(sh, bs.gw.res.Namespace, vs.res.Namespace)
						if !ok {
							continue
						}
						host := intersectHosts(vh, sh)
						key := host + "|" + vs.res.Namespace + "/" + vs.res.Name
						if host == "" || added[key] {
							continue
						}
						added[key] = true
						v := vhosts[host]
						if v == nil {
							v = &routev3.VirtualHost{Name: host + ":" + ps, Domains: []string{host, host + ":" + ps}}
							vhosts[host] = v
						}
						v.Routes = append(v.Routes, x.httpRoutes(vs, gwKey, port, workloadSource(w), need)...)
					}
				}
			}
		}
		for _, h := range sortedKeys(vhosts) {
			if len(vhosts[h].Routes) > 0 {
				rc.VirtualHosts = append(rc.VirtualHosts, vhosts[h])
			}
		}
		routes = append(routes, rc)
	}

	clusters, endpoints := []types.Resource{}, []types.Resource{}
	for _, name := range sortedKeys(needed) {
		d := needed[name]
		s := x.byHost[d.host]
		if s == nil {
			continue // not in the registry: the route answers 503, as Envoy does
		}
		p, ok := s.port(d.port)
		if !ok {
			continue
		}
		c, la, ok := x.destinationClusterFor(name, s, p, d.subset, w.Namespace)
		if !ok {
			continue
		}
		clusters = append(clusters, c)
		if la != nil {
			endpoints = append(endpoints, la)
		}
	}
	sortByName(listeners)
	sortByName(routes)
	return Resources{
		resource.ListenerType: listeners,
		resource.RouteType:    routes,
		resource.ClusterType:  clusters,
		resource.EndpointType: endpoints,
	}
}

func httpGatewayProtocol(p string) bool {
	switch strings.ToUpper(p) {
	case "HTTP", "HTTP2", "GRPC", "":
		return true
	}
	return false
}

func dataSource(b *networking.HTTPBody) *corev3.DataSource {
	if s := b.GetString_(); s != "" {
		return &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: s}}
	}
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b.GetBytes()}}
}
