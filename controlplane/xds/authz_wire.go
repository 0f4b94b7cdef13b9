package xds

import (
	"fmt"
	"sort"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"

	"github.com/meshlab/meshlab/controlplane/registry"
)

// authzOptions are the mesh-wide inputs of one workload's authorization
// filters: the mesh config's extension providers, resolved against this
// index's services.
func (x *index) authzOptions() AuthzOptions {
	return AuthzOptions{Mesh: x.in.Mesh, LookupCluster: x.lookupCluster}
}

// lookupCluster is Istio's extensionproviders.LookupCluster: "NS/HOST"
// names one service; a bare HOST must be unique across namespaces.
func (x *index) lookupCluster(svc string, port uint32) (string, string, error) {
	if svc == "" {
		return "", "", fmt.Errorf("service must not be empty")
	}
	var found []*service
	ns, host, qualified := strings.Cut(svc, "/")
	if !qualified {
		host = svc
	}
	for _, s := range x.services {
		if s.host == host && (!qualified || s.Namespace == ns) {
			found = append(found, s)
		}
	}
	switch {
	case len(found) == 1:
		return found[0].host, outboundClusterName(port, "", found[0].host), nil
	case len(found) > 1:
		var nss []string
		for _, s := range found {
			nss = append(nss, s.Namespace)
		}
		sort.Strings(nss)
		return "", "", fmt.Errorf("found %s in multiple namespaces %v, specify the namespace explicitly in the format of <Namespace>/<Hostname>", svc, nss)
	}
	return "", "", fmt.Errorf("could not find service %s in Istio service registry", svc)
}

// routerAuthz is the gateway workload's authorization filters (Istio
// applies AuthorizationPolicies selecting a gateway's pods to its HCMs),
// and the destination of its ext_authz provider, whose cluster the
// gateway must then have though no route names it.
func (x *index) routerAuthz(w registry.Workload) (AuthzFilters, []destination, error) {
	opts := x.authzOptions()
	authz, err := BuildAuthzFilters(x.authz, w.Namespace, w.Labels, opts)
	if err != nil {
		return AuthzFilters{}, nil, fmt.Errorf("build gateway %s/%s: %w", w.Namespace, w.Name, err)
	}
	var need []destination
	if authz.CustomHTTP > 0 {
		for _, p := range opts.Mesh.GetExtensionProviders() {
			var svc string
			var port uint32
			switch {
			case p.GetEnvoyExtAuthzHttp() != nil:
				svc, port = p.GetEnvoyExtAuthzHttp().GetService(), p.GetEnvoyExtAuthzHttp().GetPort()
			case p.GetEnvoyExtAuthzGrpc() != nil:
				svc, port = p.GetEnvoyExtAuthzGrpc().GetService(), p.GetEnvoyExtAuthzGrpc().GetPort()
			default:
				continue
			}
			if host, _, err := x.lookupCluster(svc, port); err == nil {
				need = append(need, destination{host: host, port: port})
			}
		}
	}
	return authz, need, nil
}

// gatewayTCPAuthz puts the gateway workload's network authorization
// filters in front of the tcp_proxy of its TCP and TLS chains, as Istio
// does for gateway TCP servers. The chains may be shared with other
// builds, so changed ones are copies.
func gatewayTCPAuthz(l *listenerv3.Listener, filters []*listenerv3.Filter) {
	if len(filters) == 0 {
		return
	}
	for i, fc := range l.FilterChains {
		fs := fc.GetFilters()
		if len(fs) == 0 || fs[len(fs)-1].GetName() != wellknown.TCPProxy {
			continue
		}
		c := proto.Clone(fc).(*listenerv3.FilterChain)
		c.Filters = append(append([]*listenerv3.Filter{}, filters...), fs...)
		l.FilterChains[i] = c
	}
}
