package xds

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/registry"
	"github.com/meshlab/meshlab/dataplane/proxy"
	"github.com/meshlab/meshlab/dataplane/xdsclient"
)

// FuzzTranslate holds config intake to finding 5's property: whatever
// config.Parse accepts (it validates) translates, every resource passes
// its own Validate(), and the meshlab proxy accepts the result, as a
// sidecar and as the ingress gateway. A test importing the data plane is
// the only place the two halves meet; the data plane never imports this.
func FuzzTranslate(f *testing.F) {
	for _, dir := range []string{"../config/testdata/valid", "../config/testdata/walkthrough", "../config/testdata/invalid", "../../samples/bookinfo/networking"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		for _, name := range files {
			if b, err := os.ReadFile(name); err == nil {
				f.Add(b)
			}
		}
	}
	var reg registry.Snapshot
	readJSON(f, "testdata/bookinfo-registry.json", &reg)
	proxies := fuzzProxies(reg.Workloads)
	// One proxy for every input: Check only builds, it applies nothing.
	dp := proxy.New(proxy.Config{Logger: slog.New(slog.DiscardHandler), Resolver: noResolver{}})
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := config.Parse("fuzz.yaml", data)
		if err != nil {
			return
		}
		in := Input{Config: rs, Registry: reg}
		x := newIndex(in)
		for _, p := range proxies {
			res, err := x.build(p)
			if err != nil {
				t.Fatalf("build %s: %v\nconfig:\n%s", p.ID, err, data)
			}
			if msg := proxyRejects(dp, res); msg != "" {
				t.Fatalf("%s rejects what config.Parse accepted: %s\nconfig:\n%s", p.ID, msg, data)
			}
		}
	})
}

// proxyRejects is what a proxy given res would NACK with, or "".
func proxyRejects(p *proxy.Proxy, res Resources) string {
	for _, rs := range res {
		for _, r := range rs {
			if err := r.(interface{ Validate() error }).Validate(); err != nil {
				return "Validate: " + err.Error()
			}
		}
	}
	snap, err := cachev3.NewSnapshot("1", res)
	if err != nil {
		return "snapshot: " + err.Error()
	}
	if err := snap.Consistent(); err != nil {
		return "snapshot: " + err.Error()
	}
	s := &xdsclient.Snapshot{
		Listeners: map[string]*listenerv3.Listener{}, Clusters: map[string]*clusterv3.Cluster{},
		Routes: map[string]*routev3.RouteConfiguration{}, Endpoints: map[string]*endpointv3.ClusterLoadAssignment{},
		Secrets: map[string]*tlsv3.Secret{}, Versions: map[string]string{},
	}
	for _, r := range res[resource.ListenerType] {
		l := r.(*listenerv3.Listener)
		s.Listeners[l.GetName()] = l
	}
	for _, r := range res[resource.ClusterType] {
		c := r.(*clusterv3.Cluster)
		s.Clusters[c.GetName()] = c
	}
	for _, r := range res[resource.RouteType] {
		rc := r.(*routev3.RouteConfiguration)
		s.Routes[rc.GetName()] = rc
	}
	for _, r := range res[resource.EndpointType] {
		e := r.(*endpointv3.ClusterLoadAssignment)
		s.Endpoints[e.GetClusterName()] = e
	}
	for _, r := range res[resource.SecretType] {
		sec := r.(*tlsv3.Secret)
		s.Secrets[sec.GetName()] = sec
	}
	for _, t := range []string{xdsclient.ClusterType, xdsclient.ListenerType, xdsclient.RouteType, xdsclient.EndpointType} {
		s.Versions[t] = "1"
		if err := p.Check(s, t); err != nil {
			return "proxy: " + err.Error()
		}
	}
	return ""
}

// noResolver keeps DNS clusters from resolving anything: the test sends
// nothing off the machine.
type noResolver struct{}

func (noResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return nil, errors.New("no DNS in this test")
}

func fuzzProxies(workloads []registry.Workload) []Proxy {
	var out []Proxy
	for _, w := range workloads {
		if strings.HasPrefix(w.Name, "productpage") {
			out = append(out, Proxy{Type: SidecarProxy, ID: "sidecar~" + w.IP.String() + "~" + w.Name + "." + w.Namespace + "~" + w.Namespace + ".svc.cluster.local",
				IP: w.IP, Name: w.Name, Namespace: w.Namespace, Labels: w.Labels})
		}
		if w.Labels["istio"] == "ingressgateway" {
			out = append(out, Proxy{Type: RouterProxy, ID: "router~" + w.IP.String() + "~" + w.Name + "." + w.Namespace + "~" + w.Namespace + ".svc.cluster.local",
				IP: w.IP, Name: w.Name, Namespace: w.Namespace, Labels: w.Labels})
		}
	}
	return out
}
