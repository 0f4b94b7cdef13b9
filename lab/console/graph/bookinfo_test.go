package graph

import (
	"net/netip"

	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/registry"
)

const ns = "book-demo"

var (
	gateway     = peer{"istio-system", "istio-ingressgateway", "istio-ingressgateway", "latest"}
	productpage = peer{ns, "productpage-v1", "productpage", "v1"}
	details     = peer{ns, "details-v1", "details", "v1"}
	reviewsV1   = peer{ns, "reviews-v1", "reviews", "v1"}
	reviewsV2   = peer{ns, "reviews-v2", "reviews", "v2"}
	reviewsV3   = peer{ns, "reviews-v3", "reviews", "v3"}
	ratings     = peer{ns, "ratings-v1", "ratings", "v1"}
	mongodb     = peer{ns, "mongodb-v1", "mongodb", "v1"}
)

// bookinfoTraffic is bookinfo under load: 10 req/s through the gateway,
// reviews split 4/3/3 over v1/v2/v3 with v3 failing a third of its
// requests, v2 and v3 calling ratings, ratings on MongoDB over TCP, and
// requests from outside the mesh (a probe) straight to productpage.
func bookinfoTraffic() []request {
	return []request{
		{src: gateway, dst: productpage, svc: "productpage", svcNs: ns, code: "200", rps: 10, ms: 40, reqBytes: 500, mtls: true},
		{src: productpage, dst: details, svc: "details", svcNs: ns, code: "200", rps: 10, ms: 4, reqBytes: 200, mtls: true},
		{src: productpage, dst: reviewsV1, svc: "reviews", svcNs: ns, code: "200", rps: 4, ms: 8, reqBytes: 200, mtls: true},
		{src: productpage, dst: reviewsV2, svc: "reviews", svcNs: ns, code: "200", rps: 3, ms: 30, reqBytes: 200, mtls: true},
		{src: productpage, dst: reviewsV3, svc: "reviews", svcNs: ns, code: "200", rps: 2, ms: 30, reqBytes: 200, mtls: true},
		{src: productpage, dst: reviewsV3, svc: "reviews", svcNs: ns, code: "503", flags: "UF", rps: 1, ms: 30, reqBytes: 200, mtls: true},
		{src: reviewsV2, dst: ratings, svc: "ratings", svcNs: ns, code: "200", rps: 3, ms: 2, reqBytes: 100, mtls: true},
		{src: reviewsV3, dst: ratings, svc: "ratings", svcNs: ns, code: "200", rps: 2, ms: 2, reqBytes: 100, mtls: true},
		{src: ratings, dst: mongodb, svc: "mongodb", svcNs: ns, protocol: "tcp", rps: 2048, reporters: []string{"source"}},
		// details' external book API, a ServiceEntry: only details' proxy reports.
		{src: details, dst: unknownPeer, svc: "api.example.com", svcNs: ns, host: "api.example.com", code: "200", rps: 1, ms: 120, reqBytes: 100, reporters: []string{"source"}},
		// Requests the gateway could not route (404, no route): only the
		// gateway reports them, in istio-system.
		{src: gateway, dst: unknownPeer, svc: "unknown", svcNs: "unknown", host: "unknown", code: "404", flags: "NR", rps: 0.2, ms: 1, reporters: []string{"source"}},
		// A probe from outside the mesh: only productpage's proxy sees it.
		{src: unknownPeer, dst: productpage, svc: "productpage", svcNs: ns, code: "200", rps: 0.5, ms: 1, reqBytes: 100, reporters: []string{"destination"}},
	}
}

func pod(name, app, version string, sidecar bool, extra map[string]string) registry.Workload {
	labels := map[string]string{"app": app, "version": version, "pod-template-hash": "5d8f7c9b4"}
	for k, v := range extra {
		labels[k] = v
	}
	w := registry.Workload{
		Name: name + "-5d8f7c9b4-x7k2p", Namespace: ns, IP: netip.MustParseAddr("10.0.0.1"), Labels: labels, Ready: true,
		Pod: &registry.Pod{ControllerKind: "ReplicaSet", ControllerName: name + "-5d8f7c9b4", Annotations: map[string]string{}},
	}
	if sidecar {
		w.Pod.Annotations["sidecar.istio.io/status"] = `{"containers":["istio-proxy"]}`
	}
	return w
}

func service(name string, selector map[string]string) registry.Service {
	return registry.Service{Name: name, Namespace: ns, Selector: selector, Ports: []registry.Port{{Name: "http", Port: 9080}}}
}

// bookinfoMesh is the registry and config behind bookinfoTraffic, with an
// outlier-detection DestinationRule on reviews and the wizard's 0/50/50
// VirtualService.
func bookinfoMesh() Mesh {
	gw := pod("istio-ingressgateway", "istio-ingressgateway", "", false, map[string]string{"istio": "ingressgateway"})
	gw.Namespace = "istio-system"
	m := Mesh{
		Workloads: []registry.Workload{
			gw,
			pod("productpage-v1", "productpage", "v1", true, nil),
			pod("details-v1", "details", "v1", true, nil),
			pod("reviews-v1", "reviews", "v1", true, nil),
			pod("reviews-v2", "reviews", "v2", true, nil),
			pod("reviews-v3", "reviews", "v3", true, nil),
			pod("ratings-v1", "ratings", "v1", true, nil),
			pod("mongodb-v1", "mongodb", "v1", false, nil),
		},
		Services: []registry.Service{
			service("productpage", map[string]string{"app": "productpage"}),
			service("details", map[string]string{"app": "details"}),
			service("reviews", map[string]string{"app": "reviews"}),
			service("ratings", map[string]string{"app": "ratings"}),
			service("mongodb", map[string]string{"app": "mongodb"}),
			service("legacy", map[string]string{"app": "legacy"}),
		},
		Config: []config.Resource{
			{Kind: config.DestinationRule, Namespace: ns, Name: "reviews", Spec: &networking.DestinationRule{
				Host: "reviews",
				Subsets: []*networking.Subset{
					{Name: "v1", Labels: map[string]string{"version": "v1"}},
					{Name: "v2", Labels: map[string]string{"version": "v2"}},
					{Name: "v3", Labels: map[string]string{"version": "v3"}},
				},
				TrafficPolicy: &networking.TrafficPolicy{OutlierDetection: &networking.OutlierDetection{Consecutive_5XxErrors: nil}},
			}},
			{Kind: config.VirtualService, Namespace: ns, Name: "reviews", Labels: map[string]string{"kiali_wizard": "request_routing"}, Spec: &networking.VirtualService{
				Hosts: []string{"reviews.book-demo.svc.cluster.local"},
				Http: []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{
					{Destination: &networking.Destination{Host: "reviews.book-demo.svc.cluster.local", Subset: "v1"}, Weight: 0},
					{Destination: &networking.Destination{Host: "reviews.book-demo.svc.cluster.local", Subset: "v2"}, Weight: 50},
					{Destination: &networking.Destination{Host: "reviews.book-demo.svc.cluster.local", Subset: "v3"}, Weight: 50},
				}}},
			}},
			{Kind: config.VirtualService, Namespace: ns, Name: "ratings", Spec: &networking.VirtualService{
				Hosts: []string{"ratings"},
				Http: []*networking.HTTPRoute{{
					Fault:   &networking.HTTPFaultInjection{Abort: &networking.HTTPFaultInjection_Abort{ErrorType: &networking.HTTPFaultInjection_Abort_HttpStatus{HttpStatus: 503}}},
					Timeout: durationpb.New(2e9),
					Route:   []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "ratings"}}},
				}},
			}},
			{Kind: config.ServiceEntry, Namespace: ns, Name: "book-api", Spec: &networking.ServiceEntry{
				Hosts: []string{"api.example.com"}, Location: networking.ServiceEntry_MESH_EXTERNAL,
				Ports: []*networking.ServicePort{{Number: 443, Name: "https", Protocol: "HTTPS"}},
			}},
			{Kind: config.Gateway, Namespace: ns, Name: "bookinfo-gateway", Spec: &networking.Gateway{
				Selector: map[string]string{"istio": "ingressgateway"},
				Servers:  []*networking.Server{{Hosts: []string{"bookinfo.example.com"}, Port: &networking.Port{Number: 80, Name: "http", Protocol: "HTTP"}}},
			}},
			{Kind: config.VirtualService, Namespace: ns, Name: "bookinfo", Spec: &networking.VirtualService{
				Hosts:    []string{"*"},
				Gateways: []string{"bookinfo-gateway"},
				Http:     []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "productpage"}}}}},
			}},
		},
	}
	return m
}
