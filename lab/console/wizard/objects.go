package wizard

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

var (
	tlsModes = []string{"UNSET", "DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"}
	lbSimple = []string{"ROUND_ROBIN", "LEAST_REQUEST", "LEAST_CONN", "RANDOM", "PASSTHROUGH"}
	paModes  = []string{"UNSET", "DISABLE", "PERMISSIVE", "STRICT"}
)

func (g *gen) networkingVersion() string {
	if g.r.APIVersion == "v1beta1" {
		return "networking.istio.io/v1beta1"
	}
	return "networking.istio.io/v1"
}

func (g *gen) securityVersion() string {
	if g.r.APIVersion == "v1beta1" {
		return "security.istio.io/v1beta1"
	}
	return "security.istio.io/v1"
}

func (g *gen) metadata(name string) map[string]any {
	return map[string]any{
		"namespace": g.r.Namespace,
		"name":      name,
		"labels":    map[string]any{Label: g.r.Action},
	}
}

// objects wraps the VirtualService spec of the action with the
// DestinationRule and the advanced options' objects. Errors found on the
// way are recorded in g.errs; the caller checks them.
func (g *gen) objects(vsSpec map[string]any) []Object {
	adv := g.r.Advanced
	if adv == nil {
		adv = &Advanced{}
	}
	subsets := make([]any, 0, len(g.r.Versions))
	for _, v := range g.r.Versions {
		subsets = append(subsets, map[string]any{"name": v, "labels": map[string]any{"version": v}})
	}
	drMeta := g.metadata(g.r.Service)
	drMeta["annotations"] = nil
	dr := map[string]any{
		"kind":       "DestinationRule",
		"apiVersion": g.networkingVersion(),
		"metadata":   drMeta,
		"spec": map[string]any{
			"host":          g.host(),
			"subsets":       subsets,
			"trafficPolicy": g.trafficPolicy(adv),
		},
	}

	hosts := []any{g.host()}
	if adv.Hosts != nil {
		hosts = hosts[:0]
		for i, h := range adv.Hosts {
			if h == "" {
				g.fail(fmt.Sprintf("advanced.hosts[%d]", i), "empty")
			}
			hosts = append(hosts, h)
		}
		if len(hosts) == 0 {
			g.fail("advanced.hosts", "empty; leave it out for the service's host")
		}
	}
	vsSpec["hosts"] = hosts
	vsSpec["gateways"] = nil
	var gw map[string]any
	if a := adv.Gateway; a != nil {
		var gateways []any
		if a.Existing != "" {
			if ns, name, ok := strings.Cut(a.Existing, "/"); !ok || ns == "" || name == "" {
				g.fail("advanced.gateway.existing", "%q, want namespace/name", a.Existing)
			}
			gateways = append(gateways, a.Existing)
		} else {
			gw = g.gateway(a)
			gateways = append(gateways, g.r.Namespace+"/"+g.r.Service+"-gateway")
		}
		if a.Mesh {
			gateways = append(gateways, "mesh")
		}
		vsSpec["gateways"] = gateways
	}
	vs := map[string]any{
		"kind":       "VirtualService",
		"apiVersion": g.networkingVersion(),
		"metadata":   g.metadata(g.r.Service),
		"spec":       vsSpec,
	}
	objs := []Object{
		{Kind: "DestinationRule", Namespace: g.r.Namespace, Name: g.r.Service, Document: dr},
		{Kind: "VirtualService", Namespace: g.r.Namespace, Name: g.r.Service, Document: vs},
	}
	if gw != nil {
		objs = append(objs, Object{Kind: "Gateway", Namespace: g.r.Namespace, Name: g.r.Service + "-gateway", Document: gw})
	}
	if p := adv.PeerAuthentication; p != nil {
		if !slices.Contains(paModes, p.Mode) {
			g.fail("advanced.peerAuthentication.mode", "%q, want one of %s", p.Mode, strings.Join(paModes, ", "))
		}
		app := p.App
		if app == "" {
			app = g.r.Service
		}
		pa := map[string]any{
			"kind":       "PeerAuthentication",
			"apiVersion": g.securityVersion(),
			"metadata":   g.metadata(g.r.Service),
			"spec": map[string]any{
				"selector": map[string]any{"matchLabels": map[string]any{"app": app}},
				"mtls":     map[string]any{"mode": p.Mode},
			},
		}
		drMeta["annotations"] = map[string]any{RelatedAnnotation: "PeerAuthentication/" + g.r.Service}
		objs = append(objs, Object{Kind: "PeerAuthentication", Namespace: g.r.Namespace, Name: g.r.Service, Document: pa})
	}
	return objs
}

func (g *gen) gateway(a *Gateway) map[string]any {
	port := a.Port
	if port == 0 {
		port = DefaultGatewayPort
	}
	if port > 65535 {
		g.fail("advanced.gateway.port", "%d, want 1..65535", port)
	}
	hosts := []any{"*"}
	if len(a.Hosts) > 0 {
		hosts = hosts[:0]
		for _, h := range a.Hosts {
			hosts = append(hosts, h)
		}
	}
	return map[string]any{
		"kind":       "Gateway",
		"apiVersion": g.networkingVersion(),
		"metadata":   g.metadata(g.r.Service + "-gateway"),
		"spec": map[string]any{
			"selector": map[string]any{"istio": "ingressgateway"},
			"servers": []any{map[string]any{
				"port":  map[string]any{"number": port, "name": "http", "protocol": "HTTP"},
				"hosts": hosts,
			}},
		},
	}
}

// trafficPolicy is nil (written as null, as Kiali clears it) when no
// advanced option sets one.
func (g *gen) trafficPolicy(adv *Advanced) map[string]any {
	tp := map[string]any{}
	if t := adv.TLS; t != nil && t.Mode != "UNSET" {
		if !slices.Contains(tlsModes, t.Mode) {
			g.fail("advanced.tls.mode", "%q, want one of %s", t.Mode, strings.Join(tlsModes, ", "))
		}
		tls := map[string]any{"mode": t.Mode}
		files := map[string]string{"clientCertificate": t.ClientCertificate, "privateKey": t.PrivateKey, "caCertificates": t.CACertificates}
		for _, k := range []string{"clientCertificate", "privateKey", "caCertificates"} {
			switch v := files[k]; {
			case t.Mode == "MUTUAL" && v == "":
				g.fail("advanced.tls."+k, "required with mode MUTUAL (a file path in the sidecar)")
			case t.Mode != "MUTUAL" && v != "":
				g.fail("advanced.tls."+k, "only with mode MUTUAL")
			case v != "":
				tls[k] = v
			}
		}
		tp["tls"] = tls
	}
	if lb := adv.LoadBalancer; lb != nil {
		switch {
		case (lb.Simple == "") == (lb.ConsistentHash == nil):
			g.fail("advanced.loadBalancer", "set exactly one of simple and consistentHash")
		case lb.Simple != "":
			if !slices.Contains(lbSimple, lb.Simple) {
				g.fail("advanced.loadBalancer.simple", "%q, want one of %s", lb.Simple, strings.Join(lbSimple, ", "))
			}
			tp["loadBalancer"] = map[string]any{"simple": lb.Simple}
		default:
			tp["loadBalancer"] = map[string]any{"consistentHash": g.consistentHash(lb.ConsistentHash)}
		}
	}
	if cp := adv.ConnectionPool; cp != nil {
		maxConn, pending := cp.MaxConnections, cp.HTTP1MaxPendingRequests
		if maxConn == 0 {
			maxConn = 1
		}
		if pending == 0 {
			pending = 1
		}
		tcp := map[string]any{"maxConnections": maxConn}
		if cp.ConnectTimeout != "" {
			tcp["connectTimeout"] = g.duration("advanced.connectionPool.connectTimeout", cp.ConnectTimeout)
		}
		http := map[string]any{"http1MaxPendingRequests": pending}
		for k, v := range map[string]int32{"http2MaxRequests": cp.HTTP2MaxRequests, "maxRequestsPerConnection": cp.MaxRequestsPerConnection, "maxRetries": cp.MaxRetries} {
			if v != 0 {
				http[k] = v
			}
		}
		for k, v := range map[string]int32{"maxConnections": maxConn, "http1MaxPendingRequests": pending, "http2MaxRequests": cp.HTTP2MaxRequests, "maxRequestsPerConnection": cp.MaxRequestsPerConnection, "maxRetries": cp.MaxRetries} {
			if v < 0 {
				g.fail("advanced.connectionPool."+k, "%d, want 0 or more", v)
			}
		}
		tp["connectionPool"] = map[string]any{"tcp": tcp, "http": http}
	}
	if od := adv.OutlierDetection; od != nil {
		errs := od.Consecutive5xxErrors
		if errs == 0 {
			errs = 1
		}
		o := map[string]any{"consecutive5xxErrors": errs}
		if od.Interval != "" {
			o["interval"] = g.duration("advanced.outlierDetection.interval", od.Interval)
		}
		if od.BaseEjectionTime != "" {
			o["baseEjectionTime"] = g.duration("advanced.outlierDetection.baseEjectionTime", od.BaseEjectionTime)
		}
		if od.MaxEjectionPercent != 0 {
			if od.MaxEjectionPercent < 0 || od.MaxEjectionPercent > 100 {
				g.fail("advanced.outlierDetection.maxEjectionPercent", "%d, want 0..100", od.MaxEjectionPercent)
			}
			o["maxEjectionPercent"] = od.MaxEjectionPercent
		}
		tp["outlierDetection"] = o
	}
	if len(tp) == 0 {
		return nil
	}
	return tp
}

func (g *gen) consistentHash(c *ConsistentHash) map[string]any {
	n := 0
	out := map[string]any{}
	if c.HTTPHeaderName != "" {
		n++
		out["httpHeaderName"] = c.HTTPHeaderName
	}
	if c.HTTPCookie != nil {
		n++
		if c.HTTPCookie.Name == "" {
			g.fail("advanced.loadBalancer.consistentHash.httpCookie.name", "required")
		}
		cookie := map[string]any{"name": c.HTTPCookie.Name, "ttl": c.HTTPCookie.TTL}
		// 0s is a session cookie, so unlike other durations it may be zero.
		if d, err := time.ParseDuration(c.HTTPCookie.TTL); err != nil || d < 0 {
			g.fail("advanced.loadBalancer.consistentHash.httpCookie.ttl", "%q, want a duration such as 0s (session cookie) or 1h", c.HTTPCookie.TTL)
		}
		if c.HTTPCookie.Path != "" {
			cookie["path"] = c.HTTPCookie.Path
		}
		out["httpCookie"] = cookie
	}
	if c.UseSourceIP {
		n++
		out["useSourceIp"] = true
	}
	if n != 1 {
		g.fail("advanced.loadBalancer.consistentHash", "set exactly one of httpHeaderName, httpCookie and useSourceIp")
	}
	return out
}
