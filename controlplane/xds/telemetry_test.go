package xds

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	tpb "istio.io/api/telemetry/v1alpha1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/meshconfig"
)

// samplings are the random sampling percentages of every traced
// connection manager among listeners, by listener name.
func samplings(t *testing.T, ls []any) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, r := range ls {
		l := r.(*listenerv3.Listener)
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				h := &hcmv3.HttpConnectionManager{}
				if !f.GetTypedConfig().MessageIs(h) {
					continue
				}
				if err := f.GetTypedConfig().UnmarshalTo(h); err != nil {
					t.Fatal(err)
				}
				if h.GetTracing() != nil {
					out[l.GetName()] = h.GetTracing().GetRandomSampling().GetValue()
				}
			}
		}
	}
	return out
}

// snapListeners are the listeners in node id's snapshot.
func (s *Server) snapListeners(id string) []any {
	s.buildMu.Lock()
	defer s.buildMu.Unlock()
	st := s.snaps[plaintextKeyPrefix+id]
	if st == nil {
		return nil
	}
	var out []any
	for _, r := range st.types[resource.ListenerType].res {
		out = append(out, r)
	}
	return out
}

func allEqual(m map[string]float64, want float64) bool {
	if len(m) == 0 {
		return false
	}
	for _, v := range m {
		if v != want {
			return false
		}
	}
	return true
}

// A proxy's ProxyConfig is the mesh's defaultConfig when it connected,
// overlaid with its PROXY_CONFIG metadata (the pod's proxy.istio.io/config
// annotation): a later defaultConfig change reaches proxies that connect
// after it, not those already connected, as in Istio where a proxy reads
// it at start.
func TestServerProxyConfigAtConnect(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := NewServer(nil)
	addr := startServer(ctx, t, s)
	in := bookinfoInput(t)
	mesh := func(sampling string) {
		mc, err := meshconfig.Apply([]byte("defaultConfig: {tracing: {sampling: " + sampling + ", zipkin: {address: zipkin.istio-system:9411}}}"))
		if err != nil {
			t.Fatal(err)
		}
		in.Mesh = mc
	}
	mesh("10")
	if err := s.Update(ctx, in, "1.1"); err != nil {
		t.Fatal(err)
	}
	const (
		first     = "sidecar~198.18.0.10~productpage-v1-0.default~default.svc.cluster.local"
		annotated = "sidecar~198.18.0.11~details-v1-0.default~default.svc.cluster.local"
		later     = "sidecar~198.18.0.13~ratings-v1-0.default~default.svc.cluster.local"
	)
	a := newADSClient(ctx, t, addr, first)
	a.until(s)
	b := newADSClientWith(ctx, t, addr, annotated, map[string]string{"PROXY_CONFIG": `{"tracing": {"sampling": 50, "zipkin": {"address": "zipkin.istio-system:9411"}}}`}, grpcInsecure())
	b.until(s)
	if got := samplings(t, s.snapListeners(first)); !allEqual(got, 10) {
		t.Fatalf("first proxy's sampling = %v, want 10 everywhere (defaultConfig)", got)
	}
	if got := samplings(t, s.snapListeners(annotated)); !allEqual(got, 50) {
		t.Fatalf("annotated proxy's sampling = %v, want 50 everywhere (its PROXY_CONFIG)", got)
	}

	versionBefore := s.target(first, resource.ListenerType)
	mesh("20")
	if err := s.Update(ctx, in, "2.1"); err != nil {
		t.Fatal(err)
	}
	a.until(s)
	if got := samplings(t, s.snapListeners(first)); !allEqual(got, 10) {
		t.Errorf("after a defaultConfig change, the connected proxy's sampling = %v, want still 10", got)
	}
	if v := s.target(first, resource.ListenerType); v != versionBefore {
		t.Errorf("the connected proxy's listeners changed version (%s → %s) for a defaultConfig change", versionBefore, v)
	}
	c := newADSClient(ctx, t, addr, later)
	c.until(s)
	if got := samplings(t, s.snapListeners(later)); !allEqual(got, 20) {
		t.Errorf("a proxy connecting after the change has sampling %v, want 20", got)
	}

	// A Telemetry applies to connected proxies at once, over their
	// ProxyConfig, and only to those it selects.
	rdsBefore := s.target(first, resource.RouteType)
	otherBefore := s.target(later, resource.ListenerType)
	in.Config = append(in.Config, config.Resource{Kind: config.Telemetry, Namespace: "default", Name: "productpage",
		Spec: &tpb.Telemetry{
			Selector: selector("app", "productpage"),
			Tracing:  []*tpb.Tracing{{Providers: []*tpb.ProviderRef{{Name: "zipkin"}}, RandomSamplingPercentage: wrapperspb.Double(75)}},
		}})
	mc, err := meshconfig.Apply([]byte("defaultConfig: {tracing: {sampling: 20, zipkin: {address: zipkin.istio-system:9411}}}\nextensionProviders: [{name: zipkin, zipkin: {service: productpage.default.svc.cluster.local, port: 9080}}]"))
	if err != nil {
		t.Fatal(err)
	}
	in.Mesh = mc
	if err := s.Update(ctx, in, "3.1"); err != nil {
		t.Fatal(err)
	}
	a.until(s)
	if got := samplings(t, s.snapListeners(first)); !allEqual(got, 75) {
		t.Errorf("with a Telemetry for it, productpage's sampling = %v, want 75", got)
	}
	if s.target(first, resource.RouteType) != rdsBefore {
		t.Error("a Telemetry change changed the routes")
	}
	if s.target(later, resource.ListenerType) != otherBefore {
		t.Error("a Telemetry for productpage changed ratings' listeners")
	}

	// The mesh config's other fields apply at once too: accessLogFile
	// puts an access log on every connected proxy's connection managers,
	// and leaves routes and clusters as they were.
	cdsBefore := s.target(first, resource.ClusterType)
	mc, err = meshconfig.Apply([]byte("accessLogFile: /dev/stdout\ndefaultConfig: {tracing: {sampling: 20, zipkin: {address: zipkin.istio-system:9411}}}\nextensionProviders: [{name: zipkin, zipkin: {service: productpage.default.svc.cluster.local, port: 9080}}]"))
	if err != nil {
		t.Fatal(err)
	}
	in.Mesh = mc
	if err := s.Update(ctx, in, "4.1"); err != nil {
		t.Fatal(err)
	}
	a.until(s)
	for _, r := range s.snapListeners(first) {
		for _, fc := range r.(*listenerv3.Listener).GetFilterChains() {
			for _, f := range fc.GetFilters() {
				h := &hcmv3.HttpConnectionManager{}
				if f.GetTypedConfig().MessageIs(h) {
					_ = f.GetTypedConfig().UnmarshalTo(h)
					if len(h.GetAccessLog()) != 1 {
						t.Errorf("listener %s: %d access logs after accessLogFile was set, want 1", r.(*listenerv3.Listener).GetName(), len(h.GetAccessLog()))
					}
				}
			}
		}
	}
	if got := samplings(t, s.snapListeners(first)); !allEqual(got, 75) {
		t.Errorf("after a mesh change, productpage's sampling = %v, want still its Telemetry's 75", got)
	}
	if s.target(first, resource.RouteType) != rdsBefore || s.target(first, resource.ClusterType) != cdsBefore {
		t.Error("an accessLogFile change changed routes or clusters")
	}
}

func grpcInsecure() grpc.DialOption { return grpc.WithTransportCredentials(insecure.NewCredentials()) }

func selector(k, v string) *typev1beta1.WorkloadSelector {
	return &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{k: v}}
}

// Proxies built from one index, in any order, get what a fresh index
// gives each: what the index memoizes for one proxy's telemetry never
// leaks into another's.
func TestTelemetryMemoization(t *testing.T) {
	for _, name := range []string{"telemetry-precedence", "telemetry-json-accesslog", "telemetry-walkthrough"} {
		in, proxies := loadFixture(t, "testdata/cases/"+name+".json")
		x := newIndex(in)
		for _, order := range [][]string{sortedKeys(proxies), reversed(sortedKeys(proxies))} {
			for _, pn := range order {
				p, err := ParseNodeID(proxies[pn])
				if err != nil {
					t.Fatal(err)
				}
				shared, err := x.build(p)
				if err != nil {
					t.Fatal(err)
				}
				fresh, err := Build(in, p)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(render(t, shared), render(t, fresh)) {
					t.Errorf("%s/%s: built from a shared index differs from a fresh build", name, pn)
				}
			}
		}
	}
}

func reversed(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

func TestProxyConfigMetadata(t *testing.T) {
	obj, _ := structpb.NewStruct(map[string]any{"tracing": map[string]any{"sampling": 30.0}})
	tests := []struct {
		name    string
		v       *structpb.Value
		want    float64
		wantErr string
	}{
		{name: "none", v: nil},
		{name: "object, as the proxy sends it", v: structpb.NewStructValue(obj), want: 30},
		{name: "string", v: structpb.NewStringValue(`{"tracing": {"sampling": 40}}`), want: 40},
		{name: "yaml string", v: structpb.NewStringValue("tracing:\n  sampling: 45\n"), want: 45},
		{name: "misspelt", v: structpb.NewStringValue(`{"tracing": {"samplin": 40}}`), wantErr: "samplin"},
		{name: "a number", v: structpb.NewNumberValue(3), wantErr: "want a ProxyConfig object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pc, _, err := proxyConfigMetadata(tc.v)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := pc.GetTracing().GetSampling(); got != tc.want {
				t.Errorf("sampling = %v, want %v", got, tc.want)
			}
		})
	}
}

// The ProxyConfig fixed at a proxy's first connect survives its stream's
// reconnects as long as it is the same process (PROXY_BOOT_ID); a
// restarted proxy (a new boot ID) takes the defaultConfig of its start.
func TestServerProxyConfigAcrossReconnects(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := NewServer(nil)
	addr := startServer(ctx, t, s)
	in := bookinfoInput(t)
	mesh := func(sampling string) {
		mc, err := meshconfig.Apply([]byte("defaultConfig: {tracing: {sampling: " + sampling + ", zipkin: {address: zipkin.istio-system:9411}}}"))
		if err != nil {
			t.Fatal(err)
		}
		in.Mesh = mc
	}
	const id = "sidecar~198.18.0.10~productpage-v1-0.default~default.svc.cluster.local"
	connect := func(boot string) (*adsClient, context.CancelFunc) {
		sctx, stop := context.WithCancel(ctx)
		c := newADSClientWith(sctx, t, addr, id, map[string]string{"PROXY_BOOT_ID": boot}, grpcInsecure())
		c.until(s)
		return c, stop
	}
	gone := func() {
		waitStatus(ctx, t, s, func(st []ProxyStatus) bool { return len(st) == 0 })
	}
	mesh("10")
	if err := s.Update(ctx, in, "1.1"); err != nil {
		t.Fatal(err)
	}
	_, stop := connect("aaaa")
	stop()
	gone()
	mesh("20")
	if err := s.Update(ctx, in, "2.1"); err != nil {
		t.Fatal(err)
	}
	_, stop = connect("aaaa")
	if got := samplings(t, s.snapListeners(id)); !allEqual(got, 10) {
		t.Errorf("the same process reconnecting has sampling %v, want its first connect's 10", got)
	}
	stop()
	gone()
	_, stop = connect("bbbb")
	defer stop()
	if got := samplings(t, s.snapListeners(id)); !allEqual(got, 20) {
		t.Errorf("a restarted proxy has sampling %v, want the current defaultConfig's 20", got)
	}
}
