package xds

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/registry"
)

// recorder counts the observer's calls, by "event type".
type recorder struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *recorder) add(k string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n[k]++
}

func (r *recorder) get(k string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[k]
}

func (r *recorder) Pushed(url string, bytes int, since time.Duration) {
	if bytes <= 0 || since < 0 {
		r.add("bad push " + TypeName(url))
	}
	r.add("pushed " + TypeName(url))
}
func (r *recorder) SendFailed(url string)         { r.add("senderr " + TypeName(url)) }
func (r *recorder) Rejected(url string)           { r.add("rejected " + TypeName(url)) }
func (r *recorder) ExpiredNonce(url string)       { r.add("expired " + TypeName(url)) }
func (r *recorder) Converged(time.Duration)       { r.add("converged") }
func (r *recorder) Queued(time.Duration)          { r.add("queued") }
func (r *recorder) PushContextInit(time.Duration) { r.add("init") }
func (r *recorder) InternalError()                { r.add("internal") }
func (r *recorder) Sent(time.Duration)            { r.add("sent") }

// TestServerObserver: each event of the xDS server reaches its observer
// when it happens, driven by a real ADS client on loopback.
func TestServerObserver(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := NewServer(nil)
	rec := &recorder{n: map[string]int{}}
	s.SetObserver(rec)
	addr := startServer(ctx, t, s)
	in := bookinfoInput(t)
	if err := s.Update(ctx, in, "1.1"); err != nil {
		t.Fatal(err)
	}
	const id = "sidecar~198.18.0.10~productpage-v1-0.default~default.svc.cluster.local"
	c := newADSClient(ctx, t, addr, id)
	version := 1

	update := func(wantErr bool) {
		version++
		err := s.Update(ctx, in, "1."+strconv.Itoa(version))
		if (err != nil) != wantErr {
			t.Fatalf("Update: %v, want error %v", err, wantErr)
		}
	}
	steps := []struct {
		name string
		do   func()
		// want are the counts that must have grown, by at least the value.
		want map[string]int
		// same are counts that must not have moved.
		same []string
	}{{
		name: "a proxy connects: every type is pushed, with its size",
		do:   func() { c.until(s) },
		want: map[string]int{"pushed CDS": 1, "pushed LDS": 1, "pushed EDS": 1, "pushed RDS": 1, "sent": 4},
		same: []string{"converged", "bad push CDS", "bad push LDS", "rejected LDS"},
	}, {
		name: "a push: queued, its index built, the proxy converges once it ACKs",
		do: func() {
			in.Config = append(in.Config, config.Resource{Kind: config.VirtualService, Namespace: "default", Name: "reviews", Spec: &networking.VirtualService{
				Hosts: []string{"reviews"}, Http: []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "reviews"}, Weight: 100}}, Timeout: nil}},
			}})
			in.Config[len(in.Config)-1].Spec.(*networking.VirtualService).Http[0].Retries = &networking.HTTPRetry{Attempts: 2}
			update(false)
			c.until(s)
			waitFor(ctx, t, func() bool { return rec.get("converged") > 0 })
		},
		want: map[string]int{"queued": 1, "init": 1, "converged": 1, "pushed RDS": 1},
		same: []string{"rejected RDS", "internal"},
	}, {
		name: "a NACK",
		do: func() {
			c.nack[resource.ListenerType] = "bad listener"
			in.Registry.Services = append(in.Registry.Services, registry.Service{Name: "db", Namespace: "default",
				VIP: netip.MustParseAddr("198.19.0.99"), Ports: []registry.Port{{Name: "tcp", Port: 7000}}})
			update(false)
			c.until(s, resource.ListenerType)
			waitFor(ctx, t, func() bool { return rec.get("rejected LDS") > 0 })
		},
		want: map[string]int{"rejected LDS": 1},
		same: []string{"converged"}, // the proxy has not taken the push
	}, {
		name: "a request answering an old nonce",
		do: func() {
			c.send(&discoveryv3.DiscoveryRequest{TypeUrl: resource.ClusterType, VersionInfo: c.types[resource.ClusterType].acked,
				ResponseNonce: "no-such-nonce", ResourceNames: c.types[resource.ClusterType].names})
			waitFor(ctx, t, func() bool { return rec.get("expired CDS") > 0 })
		},
		want: map[string]int{"expired CDS": 1},
	}, {
		name: "a configuration that fails to build",
		do: func() {
			in.Config = append(in.Config, config.Resource{Kind: config.AuthorizationPolicy, Namespace: "default", Name: "bad", Spec: &security.AuthorizationPolicy{
				Selector: &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "productpage"}},
				Rules:    []*security.Rule{{When: []*security.Condition{{Key: "no.such.key", Values: []string{"x"}}}}},
			}})
			update(true)
			in.Config = in.Config[:len(in.Config)-1]
		},
		want: map[string]int{"internal": 1},
	}, {
		name: "resources too large to send",
		do: func() {
			vs := &networking.VirtualService{Hosts: []string{"reviews"}}
			for i := range 3000 {
				vs.Http = append(vs.Http, &networking.HTTPRoute{
					Match: []*networking.HTTPMatchRequest{{Headers: map[string]*networking.StringMatch{
						"x-user": {MatchType: &networking.StringMatch_Exact{Exact: strconv.Itoa(i) + strings.Repeat("x", 2048)}},
					}}},
					Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "reviews"}}},
				})
			}
			in.Config = append(in.Config, config.Resource{Kind: config.VirtualService, Namespace: "default", Name: "huge", Spec: vs})
			update(true)
		},
		want: map[string]int{"senderr RDS": 1},
	}}
	for _, st := range steps {
		before := map[string]int{}
		for k := range st.want {
			before[k] = rec.get(k)
		}
		for _, k := range st.same {
			before[k] = rec.get(k)
		}
		st.do()
		for k, n := range st.want {
			if got := rec.get(k) - before[k]; got < n {
				t.Errorf("%s: %q moved by %d, want at least %d", st.name, k, got, n)
			}
		}
		for _, k := range st.same {
			if got := rec.get(k); got != before[k] {
				t.Errorf("%s: %q moved from %d to %d", st.name, k, before[k], got)
			}
		}
	}
	if v := s.ConnectedVersions(); fmt.Sprint(v) != "map[:1]" {
		t.Errorf("ConnectedVersions = %v, want one proxy without ISTIO_VERSION", v)
	}
}

func waitFor(ctx context.Context, t *testing.T, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatal("condition never held")
		case <-time.After(10 * time.Millisecond):
		}
	}
}
