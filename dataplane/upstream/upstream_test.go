package upstream

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func assignment(n int) *endpointv3.ClusterLoadAssignment {
	la := &endpointv3.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{{}}}
	for i := range n {
		la.Endpoints[0].LbEndpoints = append(la.Endpoints[0].LbEndpoints, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{
				Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address: fmt.Sprintf("127.0.0.%d", i+1), PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 9080}}}}}},
		})
	}
	return la
}

// testCluster is a static cluster of n hosts 127.0.0.<i>:9080.
func testCluster(t testing.TB, policy clusterv3.Cluster_LbPolicy, n int, now func() time.Time, mod ...func(*clusterv3.Cluster)) *Cluster {
	t.Helper()
	c := &clusterv3.Cluster{Name: "c", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LbPolicy: policy, LoadAssignment: assignment(n)}
	for _, m := range mod {
		m(c)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("invalid test cluster: %v", err)
	}
	cl, err := NewWithOptions(c, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// within fails unless got is within k standard deviations of a binomial
// count of n trials with probability p.
func within(t *testing.T, what string, got, n int, p, k float64) {
	t.Helper()
	mean := float64(n) * p
	sd := math.Sqrt(float64(n) * p * (1 - p))
	if math.Abs(float64(got)-mean) > k*sd {
		t.Errorf("%s: %d of %d, want %.0f ± %.0f", what, got, n, mean, k*sd)
	}
}

func TestDistribution(t *testing.T) {
	const hosts, picks = 4, 40000
	for _, policy := range []clusterv3.Cluster_LbPolicy{clusterv3.Cluster_ROUND_ROBIN, clusterv3.Cluster_RANDOM, clusterv3.Cluster_LEAST_REQUEST, clusterv3.Cluster_RING_HASH, clusterv3.Cluster_MAGLEV} {
		t.Run(policy.String(), func(t *testing.T) {
			cl := testCluster(t, policy, hosts, nil)
			count := map[*Endpoint]int{}
			for range picks {
				count[cl.Pick(netip.AddrPort{})]++
			}
			if len(count) != hosts {
				t.Fatalf("picked %d distinct hosts, want %d", len(count), hosts)
			}
			for e, n := range count {
				if policy == clusterv3.Cluster_ROUND_ROBIN {
					if n != picks/hosts {
						t.Errorf("%s: %d picks, want exactly %d", e.Addr, n, picks/hosts)
					}
					continue
				}
				// Ring hash without a hash key picks at random, but a host
				// owns its share of the ring only roughly: allow more.
				k := 6.0
				if policy == clusterv3.Cluster_RING_HASH {
					k = 25
				}
				within(t, e.Addr, n, picks, 1.0/hosts, k)
			}
		})
	}
}

func TestLeastRequestPrefersLessLoaded(t *testing.T) {
	cl := testCluster(t, clusterv3.Cluster_LEAST_REQUEST, 2, nil)
	eps := cl.Endpoints()
	eps[0].Active.Store(10)
	const picks = 20000
	idle := 0
	for range picks {
		if cl.Pick(netip.AddrPort{}) == eps[1] {
			idle++
		}
	}
	// Two random choices miss the idle host only when both land on the
	// busy one: 1/4 of the time.
	within(t, "idle host", idle, picks, 0.75, 6)

	three := testCluster(t, clusterv3.Cluster_LEAST_REQUEST, 2, nil, func(c *clusterv3.Cluster) {
		c.LbConfig = &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{ChoiceCount: wrapperspb.UInt32(3)}}
	})
	three.Endpoints()[0].Active.Store(10)
	idle = 0
	for range picks {
		if three.Pick(netip.AddrPort{}) == three.Endpoints()[1] {
			idle++
		}
	}
	within(t, "idle host, 3 choices", idle, picks, 0.875, 6)
}

func TestConsistentHashStickiness(t *testing.T) {
	for _, policy := range []clusterv3.Cluster_LbPolicy{clusterv3.Cluster_RING_HASH, clusterv3.Cluster_MAGLEV} {
		t.Run(policy.String(), func(t *testing.T) {
			cl := testCluster(t, policy, 5, nil)
			const keys = 5000
			owner := make([]*Endpoint, keys)
			share := map[*Endpoint]int{}
			for k := range keys {
				h := uint64(k) * 0x9e3779b97f4a7c15
				owner[k] = cl.PickHash(netip.AddrPort{}, h, true)
				for range 3 {
					if got := cl.PickHash(netip.AddrPort{}, h, true); got != owner[k] {
						t.Fatalf("key %d: picked %s then %s", k, owner[k].Addr, got.Addr)
					}
				}
				share[owner[k]]++
			}
			for e, n := range share {
				if n < keys/5/2 {
					t.Errorf("%s owns %d of %d keys, want about %d", e.Addr, n, keys, keys/5)
				}
			}
			// Removing a host moves its keys and only a few others: maglev
			// reshuffles a few slots; the ring gives each remaining host
			// more points (ceil(1024/4) rather than ceil(1024/5)), as
			// Envoy's does, and those take some keys over.
			limit := keys / 20
			if policy == clusterv3.Cluster_RING_HASH {
				limit = keys * 15 / 100
			}
			cl.SetEndpoints(assignment(4))
			gone := cl.Endpoints()
			moved := 0
			for k := range keys {
				got := cl.PickHash(netip.AddrPort{}, uint64(k)*0x9e3779b97f4a7c15, true)
				if owner[k].Addr == "127.0.0.5:9080" {
					continue
				}
				if got != owner[k] {
					moved++
				}
			}
			if moved > limit {
				t.Errorf("%d keys of remaining hosts moved (of %d hosts), want at most %d", moved, len(gone), limit)
			}
		})
	}
}

func TestRequestHash(t *testing.T) {
	header := &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: "x-user"}}}
	cookie := func(ttl *durationpb.Duration) *routev3.RouteAction_HashPolicy {
		return &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: "user", Ttl: ttl, Path: "/"}}}
	}
	srcIP := &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true}}}
	query := &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_QueryParameter_{QueryParameter: &routev3.RouteAction_HashPolicy_QueryParameter{Name: "id"}}}
	remote := netip.MustParseAddrPort("10.0.0.7:40000")
	otherPort := netip.MustParseAddrPort("10.0.0.7:40001")

	req := func(target string, hdr ...string) *http.Request {
		r := httptest.NewRequest("GET", target, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Add(hdr[i], hdr[i+1])
		}
		return r
	}
	hash := func(p []*routev3.RouteAction_HashPolicy, r *http.Request, from netip.AddrPort) (uint64, bool, string) {
		resp := http.Header{}
		h, ok := RequestHash(p, r, from, resp)
		return h, ok, resp.Get("Set-Cookie")
	}

	tests := []struct {
		name      string
		policies  []*routev3.RouteAction_HashPolicy
		a, b      *http.Request
		from      netip.AddrPort
		same      bool // a and b hash the same
		hashed    bool
		setCookie string // prefix of the Set-Cookie a gets
	}{
		{name: "header same value", policies: []*routev3.RouteAction_HashPolicy{header}, a: req("/", "X-User", "jason"), b: req("/x", "x-user", "jason"), same: true, hashed: true},
		{name: "header other value", policies: []*routev3.RouteAction_HashPolicy{header}, a: req("/", "X-User", "jason"), b: req("/", "X-User", "bob"), hashed: true},
		{name: "header absent", policies: []*routev3.RouteAction_HashPolicy{header}, a: req("/"), b: req("/")},
		{name: "cookie", policies: []*routev3.RouteAction_HashPolicy{cookie(nil)}, a: req("/", "Cookie", "a=1; user=jason"), b: req("/", "Cookie", `user="jason"`), same: true, hashed: true},
		{name: "cookie absent, no ttl", policies: []*routev3.RouteAction_HashPolicy{cookie(nil)}, a: req("/", "Cookie", "a=1"), b: req("/")},
		{name: "cookie generated", policies: []*routev3.RouteAction_HashPolicy{cookie(durationpb.New(time.Minute))}, a: req("/"), b: req("/"), same: true, hashed: true,
			setCookie: `user="`},
		{name: "source ip", policies: []*routev3.RouteAction_HashPolicy{srcIP}, a: req("/"), b: req("/other"), same: true, hashed: true},
		{name: "query", policies: []*routev3.RouteAction_HashPolicy{query}, a: req("/?a=b&id=a%2Fb"), b: req("/p?id=a/b"), same: true, hashed: true},
		{name: "query absent", policies: []*routev3.RouteAction_HashPolicy{query}, a: req("/?idx=1"), b: req("/")},
		{name: "first policy yields nothing", policies: []*routev3.RouteAction_HashPolicy{header, query}, a: req("/?id=1"), b: req("/?id=1", "X-User", "u"), hashed: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ha, oka, sc := hash(tc.policies, tc.a, remote)
			hb, okb, _ := hash(tc.policies, tc.b, remote)
			if oka != tc.hashed {
				t.Fatalf("hashed = %v, want %v", oka, tc.hashed)
			}
			if tc.hashed && (ha == hb) != tc.same {
				t.Errorf("same hash = %v, want %v", ha == hb, tc.same)
			}
			_ = okb
			if !strings.HasPrefix(sc, tc.setCookie) || (tc.setCookie == "") != (sc == "") {
				t.Errorf("Set-Cookie %q, want prefix %q", sc, tc.setCookie)
			}
		})
	}

	// A generated cookie sticks: sent back, it hashes as it did when made;
	// another connection gets another cookie.
	resp := http.Header{}
	h1, _ := RequestHash([]*routev3.RouteAction_HashPolicy{cookie(durationpb.New(time.Minute))}, req("/"), remote, resp)
	sc := resp.Get("Set-Cookie")
	if want := `; Max-Age=60; Path=/; HttpOnly`; !strings.HasSuffix(sc, want) || len(sc) != len(`user="0123456789abcdef"`)+len(want) {
		t.Fatalf("Set-Cookie %q, want user=\"<16 hex>\"%s", sc, want)
	}
	value := strings.SplitN(sc, ";", 2)[0]
	h2, ok := RequestHash([]*routev3.RouteAction_HashPolicy{cookie(durationpb.New(time.Minute))}, req("/", "Cookie", value), otherPort, http.Header{})
	if !ok || h2 != h1 {
		t.Errorf("cookie %s hashes %x, generated with %x", value, h2, h1)
	}
	_, _, other := hash([]*routev3.RouteAction_HashPolicy{cookie(durationpb.New(time.Minute))}, req("/"), otherPort)
	if other == sc {
		t.Errorf("two connections got the same cookie %q", sc)
	}
}

func TestCircuitBreaker(t *testing.T) {
	th := func(conns, pending, reqs, retries uint32) func(*clusterv3.Cluster) {
		return func(c *clusterv3.Cluster) {
			c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
				MaxConnections: wrapperspb.UInt32(conns), MaxPendingRequests: wrapperspb.UInt32(pending),
				MaxRequests: wrapperspb.UInt32(reqs), MaxRetries: wrapperspb.UInt32(retries)}}}
		}
	}
	ctx := context.Background()

	t.Run("defaults", func(t *testing.T) {
		if cl := testCluster(t, clusterv3.Cluster_ROUND_ROBIN, 1, nil); cl.Limits != defaultThresholds {
			t.Errorf("limits %+v, want Envoy's defaults %+v", cl.Limits, defaultThresholds)
		}
	})

	t.Run("http1 pending", func(t *testing.T) {
		cl := testCluster(t, clusterv3.Cluster_ROUND_ROBIN, 1, nil, th(1, 1, math.MaxUint32, 3))
		if err := cl.cb.acquire(ctx); err != nil {
			t.Fatalf("first request: %v", err)
		}
		// The second waits for the connection as a pending request.
		admitted := make(chan error, 1)
		go func() { admitted <- cl.cb.acquire(ctx) }()
		for cl.cb.pending.Load() != 1 {
			time.Sleep(time.Millisecond)
		}
		// The third finds the pending queue full.
		if err := cl.cb.acquire(ctx); err != ErrOverflow {
			t.Fatalf("third request: %v, want ErrOverflow", err)
		}
		if n := cl.cb.PendingOverflow.Load(); n != 1 {
			t.Errorf("pending overflow %d, want 1", n)
		}
		cl.cb.release()
		if err := <-admitted; err != nil {
			t.Fatalf("pending request: %v", err)
		}
		// A pending request whose context ends gives up its place.
		cctx, cancel := context.WithCancel(ctx)
		go func() { admitted <- cl.cb.acquire(cctx) }()
		for cl.cb.pending.Load() != 1 {
			time.Sleep(time.Millisecond)
		}
		cancel()
		if err := <-admitted; err != context.Canceled {
			t.Fatalf("cancelled pending request: %v", err)
		}
		cl.cb.release()
		if a, p := cl.cb.active.Load(), cl.cb.pending.Load(); a != 0 || p != 0 {
			t.Errorf("active %d pending %d after all done, want 0 0", a, p)
		}
	})

	t.Run("max requests", func(t *testing.T) {
		cl := testCluster(t, clusterv3.Cluster_ROUND_ROBIN, 1, nil, th(math.MaxUint32, math.MaxUint32, 2, 3), func(c *clusterv3.Cluster) {
			c.Http2ProtocolOptions = &corev3.Http2ProtocolOptions{} //nolint:staticcheck // still how many configs say it
		})
		for i := range 2 {
			if err := cl.cb.acquire(ctx); err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
		}
		if err := cl.cb.acquire(ctx); err != ErrOverflow {
			t.Fatalf("third request: %v, want ErrOverflow", err)
		}
		cl.cb.release()
		if err := cl.cb.acquire(ctx); err != nil {
			t.Fatalf("after a release: %v", err)
		}
	})

	t.Run("retries and connections", func(t *testing.T) {
		cl := testCluster(t, clusterv3.Cluster_ROUND_ROBIN, 1, nil, th(2, 1, 1, 1))
		// Each call admits or refuses one more: the order is the test.
		for i, want := range []bool{true, false} {
			if got := cl.AcquireRetry(); got != want {
				t.Fatalf("retry %d admitted %v, want %v (max_retries 1)", i+1, got, want)
			}
		}
		cl.ReleaseRetry()
		if !cl.AcquireRetry() {
			t.Fatal("retry refused after release")
		}
		for i, want := range []bool{true, true, false} {
			if got := cl.AcquireConn(); got != want {
				t.Fatalf("connection %d admitted %v, want %v (max_connections 2)", i+1, got, want)
			}
		}
		if got := cl.Overflows(); got != 2 {
			t.Errorf("overflows %d, want 2", got)
		}
	})
}

// clock is a settable clock for outlier detection.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(d time.Duration) { c.mu.Lock(); c.t = time.Unix(1e9, 0).Add(d); c.mu.Unlock() }

func TestOutlierTimeline(t *testing.T) {
	ck := &clock{}
	ck.set(0)
	cl := testCluster(t, clusterv3.Cluster_ROUND_ROBIN, 2, ck.now, func(c *clusterv3.Cluster) {
		c.OutlierDetection = &clusterv3.OutlierDetection{
			Consecutive_5Xx: wrapperspb.UInt32(3), Interval: durationpb.New(10 * time.Second),
			BaseEjectionTime: durationpb.New(30 * time.Second), MaxEjectionPercent: wrapperspb.UInt32(50),
			ConsecutiveGatewayFailure: wrapperspb.UInt32(2), EnforcingConsecutiveGatewayFailure: wrapperspb.UInt32(100),
		}
		c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: 0}}
	})
	a, b := cl.Endpoints()[0], cl.Endpoints()[1]
	picksOnly := func(at time.Duration, want *Endpoint) {
		t.Helper()
		ck.set(at)
		for range 4 {
			if got := cl.Pick(netip.AddrPort{}); got != want {
				t.Fatalf("at %v picked %s, want only %s", at, got.Addr, want.Addr)
			}
		}
	}
	picksBoth := func(at time.Duration) {
		t.Helper()
		ck.set(at)
		seen := map[*Endpoint]bool{}
		for range 4 {
			seen[cl.Pick(netip.AddrPort{})] = true
		}
		if len(seen) != 2 {
			t.Fatalf("at %v picked %d hosts, want both", at, len(seen))
		}
	}

	// Two 5xx, then a success: the count starts over.
	cl.Observe(a, 500)
	cl.Observe(a, 500)
	cl.Observe(a, 200)
	cl.Observe(a, 500)
	cl.Observe(a, 500)
	picksBoth(time.Second)
	ck.set(5 * time.Second)
	cl.Observe(a, 500) // third in a row: ejected at 5s for 30s
	if !a.Ejected() {
		t.Fatal("a not ejected after 3 consecutive 5xx")
	}
	picksOnly(6*time.Second, b)
	// max_ejection_percent 50: b cannot go too.
	cl.Observe(b, 500)
	cl.Observe(b, 500)
	cl.Observe(b, 500)
	if b.Ejected() {
		t.Fatal("b ejected beyond max_ejection_percent")
	}
	// Ejection ends at the first interval at or after 35s: 40s.
	picksOnly(39*time.Second, b)
	picksBoth(40 * time.Second)

	// Ejected again at 41s: the multiplier is now 2, so 60s, back at 110s.
	ck.set(41 * time.Second)
	cl.Observe(a, 502)
	cl.Observe(a, 503) // two gateway errors
	if !a.Ejected() {
		t.Fatal("a not ejected after 2 consecutive gateway errors")
	}
	picksOnly(109*time.Second, b)
	picksBoth(110 * time.Second)
	// Each healthy interval takes one off the multiplier: after the
	// intervals at 120s and 130s it is 0, so the next ejection lasts 30s.
	ck.set(131 * time.Second)
	cl.Pick(netip.AddrPort{})
	cl.Observe(a, 500)
	cl.Observe(a, 500)
	cl.Observe(a, 500)
	if !a.Ejected() {
		t.Fatal("a not ejected the third time")
	}
	picksOnly(160*time.Second, b)
	picksBoth(170 * time.Second)
	if n := a.Ejections.Load(); n != 3 {
		t.Errorf("a ejected %d times, want 3", n)
	}
}

func TestPanicThreshold(t *testing.T) {
	for _, tc := range []struct {
		name      string
		threshold *typev3.Percent
		want      int // distinct hosts picked with 2 of 3 ejected
	}{
		{"envoy default 50%: panic, all hosts", nil, 3},
		{"istio default 0: only the healthy host", &typev3.Percent{Value: 0}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := testCluster(t, clusterv3.Cluster_ROUND_ROBIN, 3, nil, func(c *clusterv3.Cluster) {
				c.OutlierDetection = &clusterv3.OutlierDetection{Consecutive_5Xx: wrapperspb.UInt32(1), MaxEjectionPercent: wrapperspb.UInt32(100)}
				if tc.threshold != nil {
					c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: tc.threshold}
				}
			})
			eps := cl.Endpoints()
			cl.Observe(eps[0], 500)
			cl.Observe(eps[1], 500)
			seen := map[*Endpoint]bool{}
			for range 9 {
				seen[cl.Pick(netip.AddrPort{})] = true
			}
			if len(seen) != tc.want {
				t.Errorf("picked %d hosts, want %d", len(seen), tc.want)
			}
			// All ejected: nothing to pick unless in panic.
			cl.Observe(eps[2], 500)
			if got := cl.Pick(netip.AddrPort{}); (got == nil) != (tc.threshold != nil) {
				t.Errorf("all ejected: picked %v", got)
			}
		})
	}
}
