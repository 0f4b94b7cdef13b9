package samples_test

import (
	"os"
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlab/meshlab/controlplane/analyze"
	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/registry"
	"github.com/meshlab/meshlab/samples"
)

// TestKialiGateway: the sample that puts the console under the gateway at
// the walkthrough's web root is valid Istio config, binds to the lab
// gateway's 8080, routes /dashboards/kiali to kiali:20001, and analyzed
// with bookinfo's gateway and routes (the lab's default) has no message:
// the two VirtualServices of host "*" share the port without conflict.
func TestKialiGateway(t *testing.T) {
	const file = "console/kiali-gateway.yaml"
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	res, err := config.Parse(file, data)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 {
		t.Fatalf("%d resources, want a Gateway and a VirtualService", len(res))
	}
	for _, r := range res {
		if err := config.Validate(r); err != nil {
			t.Errorf("%s: %v", r.Key(), err)
		}
	}
	gw, ok := res[0].Spec.(*networking.Gateway)
	if !ok || res[0].Namespace != "istio-system" {
		t.Fatalf("first document %s: want the Gateway in istio-system", res[0].Key())
	}
	if gw.GetSelector()["istio"] != "ingressgateway" || len(gw.GetServers()) != 1 || gw.GetServers()[0].GetPort().GetNumber() != 8080 ||
		gw.GetServers()[0].GetPort().GetProtocol() != "HTTP" {
		t.Errorf("gateway %v: want the ingress gateway's HTTP 8080", gw)
	}
	vs, ok := res[1].Spec.(*networking.VirtualService)
	if !ok {
		t.Fatalf("second document %s: want the VirtualService", res[1].Key())
	}
	if len(vs.GetGateways()) != 1 || vs.GetGateways()[0] != res[0].Name || len(vs.GetHttp()) != 1 {
		t.Fatalf("virtual service %v: want one route bound to %s", vs, res[0].Name)
	}
	route := vs.GetHttp()[0]
	if m := route.GetMatch(); len(m) != 1 || m[0].GetUri().GetPrefix() != "/dashboards/kiali" {
		t.Errorf("match %v: want prefix /dashboards/kiali", m)
	}
	if d := route.GetRoute(); len(d) != 1 || d[0].GetDestination().GetHost() != "kiali.istio-system.svc.cluster.local" || d[0].GetDestination().GetPort().GetNumber() != 20001 {
		t.Errorf("route %v: want kiali.istio-system.svc.cluster.local:20001", d)
	}

	bookinfo, err := config.ParseInNamespace("bookinfo-gateway.yaml", samples.BookinfoGateway(), "default")
	if err != nil {
		t.Fatal(err)
	}
	services := []registry.Service{
		{Name: "kiali", Namespace: "istio-system", Ports: []registry.Port{{Name: "http-kiali", Port: 20001}}, Selector: map[string]string{"app": "kiali"}},
		{Name: "productpage", Namespace: "default", Ports: []registry.Port{{Name: "http", Port: 9080}}, Selector: map[string]string{"app": "productpage"}},
	}
	for _, m := range analyze.Run(analyze.Input{Resources: append(bookinfo, res...), Services: services}) {
		if m.Kind == "VirtualService" && m.Name == "kiali" || m.Kind == "Gateway" && m.Name == "kiali-gateway" || strings.Contains(m.Text, "kiali") {
			t.Errorf("analysis: %s %s/%s %s: %s", m.Code, m.Namespace, m.Name, m.Field, m.Text)
		}
	}
}
