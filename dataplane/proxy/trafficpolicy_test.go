package proxy

import (
	"io"
	"math"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// istioCluster is an EDS cluster as the control plane emits it for a
// DestinationRule: least request, Istio's unlimited default thresholds
// unless set, outlier detection and panic threshold when given.
func istioCluster(name string, th *clusterv3.CircuitBreakers_Thresholds, od *clusterv3.OutlierDetection) *clusterv3.Cluster {
	c := edsCluster(name)
	c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
	if th == nil {
		th = &clusterv3.CircuitBreakers_Thresholds{MaxConnections: wrapperspb.UInt32(math.MaxUint32), MaxPendingRequests: wrapperspb.UInt32(math.MaxUint32),
			MaxRequests: wrapperspb.UInt32(math.MaxUint32), MaxRetries: wrapperspb.UInt32(math.MaxUint32)}
	}
	c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{th}}
	if od != nil {
		c.OutlierDetection = od
		c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: 0}}
	}
	return c
}

func getBody(t testing.TB, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestCircuitBreakingOverflow follows Istio's circuit breaking task:
// connectionPool tcp.maxConnections 1 and http.http1MaxPendingRequests 1,
// under concurrent load, answer some requests 503 with flag UO.
func TestCircuitBreakingOverflow(t *testing.T) {
	hold := make(chan struct{})
	arrived := make(chan struct{}, 16)
	be := handlerBackend(t, "127.0.0.2", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			arrived <- struct{}{}
			<-hold
		} else {
			time.Sleep(2 * time.Millisecond)
		}
		io.WriteString(w, "ok")
	})
	cp := newControlPlane(t, "127.0.0.1:0")
	th := &clusterv3.CircuitBreakers_Thresholds{MaxConnections: wrapperspb.UInt32(1), MaxPendingRequests: wrapperspb.UInt32(1),
		MaxRequests: wrapperspb.UInt32(math.MaxUint32), MaxRetries: wrapperspb.UInt32(math.MaxUint32)}
	rc := &routev3.RouteConfiguration{Name: "http.8080", VirtualHosts: []*routev3.VirtualHost{{Name: "httpbin", Domains: []string{"*"},
		Routes: []*routev3.Route{{Match: prefix("/"), Action: toCluster("httpbin")}}}}}
	cp.set("1", gatewayListener("0.0.0.0_8080", "http.8080"), rc, istioCluster("httpbin", th, nil), cla("httpbin", be))
	p, log := startLoggingProxy(t, cp.addr)
	url := "http://" + p.addr(t, "0.0.0.0_8080")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()

	// One request holds the connection, one waits for it, the third
	// overflows the pending queue.
	var wg sync.WaitGroup
	codes := make(chan int, 2)
	wg.Add(1)
	go func() { defer wg.Done(); c, _ := getBody(t, client, url+"/hold"); codes <- c }()
	<-arrived
	wg.Add(1)
	go func() { defer wg.Done(); c, _ := getBody(t, client, url+"/hold"); codes <- c }()
	waitFor(t, "a pending request", func() bool { return p.rt.Load().clusters["httpbin"].PendingRequests() == 1 })
	code, body := getBody(t, client, url+"/")
	if code != http.StatusServiceUnavailable || body != bodyOverflow {
		t.Errorf("third request: %d %q, want 503 %q", code, body, bodyOverflow)
	}
	close(hold)
	wg.Wait()
	for range 2 {
		if c := <-codes; c != http.StatusOK {
			t.Errorf("held request answered %d, want 200", c)
		}
	}

	// fortio-like: 8 connections, 10 requests each.
	var mu sync.Mutex
	got := map[int]int{}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				c, _ := getBody(t, client, url+"/get")
				mu.Lock()
				got[c]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if got[200] == 0 || got[503] == 0 || got[200]+got[503] != 80 {
		t.Errorf("codes %v: want some 200 and some 503, nothing else", got)
	}
	if n := p.rt.Load().clusters["httpbin"].Overflows(); n != uint64(got[503]+1) {
		t.Errorf("cluster counted %d overflows, want %d", n, got[503]+1)
	}
	p.flushLogs()
	if n := strings.Count(log.String(), " 503 UO upstream_reset_before_response_started{overflow} "); n != got[503]+1 {
		t.Errorf("access log has %d 503 UO lines, want %d:\n%s", n, got[503]+1, log.String())
	}
}

// TestOutlierDetection follows the walkthrough's circuit breaker: a
// DestinationRule with outlierDetection consecutive5xxErrors 1,
// baseEjectionTime 1m, maxEjectionPercent 100 over a service with a
// normal and a poison (500) version. Routed to the service, the first
// error ejects the poison pod and every answer after it is "3"; routed
// 50/50 to the two subsets, the poison subset's only host is ejected and
// its half answers 503 "no healthy upstream" (flag UH), while the normal
// subset keeps answering.
func TestOutlierDetection(t *testing.T) {
	normal := handlerBackend(t, "127.0.0.2", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "3") })
	poison := handlerBackend(t, "127.0.0.3", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, `{"status":500,"error":"Internal Server Error"}`)
	})
	od := &clusterv3.OutlierDetection{
		Consecutive_5Xx: wrapperspb.UInt32(1), EnforcingConsecutive_5Xx: wrapperspb.UInt32(100), EnforcingSuccessRate: wrapperspb.UInt32(0),
		Interval: durationpb.New(10 * time.Second), BaseEjectionTime: durationpb.New(time.Minute), MaxEjectionPercent: wrapperspb.UInt32(100),
	}
	const (
		all    = "outbound|8080||calc-service.spring.svc.cluster.local"
		normC  = "outbound|8080|normal|calc-service.spring.svc.cluster.local"
		poisoC = "outbound|8080|poison|calc-service.spring.svc.cluster.local"
	)
	tests := []struct {
		name   string
		action *routev3.Route_Route
		// want maps each body seen to whether it may be seen after the
		// first error.
		after map[string]bool
	}{
		{"service", toCluster(all), map[string]bool{"3": true}},
		{"subsets 50/50", &routev3.Route_Route{Route: &routev3.RouteAction{Timeout: durationpb.New(0), ClusterSpecifier: &routev3.RouteAction_WeightedClusters{
			WeightedClusters: &routev3.WeightedCluster{TotalWeight: wrapperspb.UInt32(100), Clusters: []*routev3.WeightedCluster_ClusterWeight{ //nolint:staticcheck // SA1019: the proxy must keep honouring total_weight, as Envoy does
				{Name: normC, Weight: wrapperspb.UInt32(50)}, {Name: poisoC, Weight: wrapperspb.UInt32(50)}}}}}},
			map[string]bool{"3": true, bodyNoHealthy: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cp := newControlPlane(t, "127.0.0.1:0")
			rc := &routev3.RouteConfiguration{Name: "http.8080", VirtualHosts: []*routev3.VirtualHost{{Name: "calc", Domains: []string{"*"},
				Routes: []*routev3.Route{{Match: prefix("/"), Action: tc.action}}}}}
			cp.set("1", gatewayListener("0.0.0.0_8080", "http.8080"), rc,
				istioCluster(all, nil, od), istioCluster(normC, nil, od), istioCluster(poisoC, nil, od),
				cla(all, normal, poison), cla(normC, normal), cla(poisoC, poison))
			p, log := startLoggingProxy(t, cp.addr)
			url := "http://" + p.addr(t, "0.0.0.0_8080") + "/calculating/1/2"
			client := &http.Client{}
			defer client.CloseIdleConnections()

			errors, seen := 0, map[string]int{}
			for range 60 {
				code, body := getBody(t, client, url)
				switch {
				case code == http.StatusInternalServerError:
					errors++
					if errors > 1 {
						t.Fatalf("second 500 after the poison host was ejected (seen %v)", seen)
					}
				case errors == 0 && code == http.StatusOK:
					// before the first error
				case !tc.after[body]:
					t.Fatalf("after the first error: %d %q", code, body)
				case body == bodyNoHealthy && code != http.StatusServiceUnavailable:
					t.Fatalf("no healthy upstream with code %d", code)
				}
				if errors > 0 {
					seen[body]++
				}
			}
			if errors != 1 {
				t.Fatalf("%d errors, want exactly 1 (the poison host is ejected by it)", errors)
			}
			for body := range tc.after {
				if seen[body] == 0 {
					t.Errorf("never saw %q after the error (saw %v)", body, seen)
				}
			}
			p.flushLogs()
			if n, want := strings.Count(log.String(), " 503 UH no_healthy_upstream "), seen[bodyNoHealthy]; n != want {
				t.Errorf("access log has %d 503 UH lines, want %d", n, want)
			}
		})
	}
}

// TestConsistentHash: a DestinationRule's consistentHash, as a RING_HASH
// cluster and hash policies on the route, keeps a user on one host; a
// cookie policy with a ttl hands out the cookie, which then sticks.
func TestConsistentHash(t *testing.T) {
	var eps []netip.AddrPort
	for _, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
		_, a := backend(t, ip, ip)
		eps = append(eps, a)
	}
	c := istioCluster("reviews", nil, nil)
	c.LbPolicy = clusterv3.Cluster_RING_HASH
	c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{MinimumRingSize: wrapperspb.UInt64(1024)}}
	route := func(domain string, hp *routev3.RouteAction_HashPolicy) *routev3.VirtualHost {
		a := toCluster("reviews")
		a.Route.HashPolicy = []*routev3.RouteAction_HashPolicy{hp}
		return &routev3.VirtualHost{Name: domain, Domains: []string{domain}, Routes: []*routev3.Route{{Match: prefix("/"), Action: a}}}
	}
	rc := &routev3.RouteConfiguration{Name: "http.8080", VirtualHosts: []*routev3.VirtualHost{
		route("header.example.com", &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: "x-user"}}}),
		route("cookie.example.com", &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: "user", Ttl: durationpb.New(time.Hour), Path: "/"}}}),
	}}
	cp := newControlPlane(t, "127.0.0.1:0")
	cp.set("1", gatewayListener("0.0.0.0_8080", "http.8080"), rc, c, cla("reviews", eps...))
	p := startProxy(t, cp.addr, nil)
	addr := p.addr(t, "0.0.0.0_8080")
	client := &http.Client{}
	defer client.CloseIdleConnections()

	hosts := map[string]bool{}
	for _, user := range []string{"jason", "bob", "alice", "carol", "dave", "erin", "frank", "grace"} {
		_, first, _ := get(t, client, addr, "header.example.com", "/", "x-user", user)
		hosts[first] = true
		for range 5 {
			if _, got, _ := get(t, client, addr, "header.example.com", "/", "x-user", user); got != first {
				t.Fatalf("user %s: served by %s, then %s", user, first, got)
			}
		}
	}
	if len(hosts) < 2 {
		t.Errorf("8 users all on %v: the hash does not spread", hosts)
	}

	_, first, h := get(t, client, addr, "cookie.example.com", "/")
	sc := h.Get("Set-Cookie")
	if !strings.HasPrefix(sc, `user="`) || !strings.HasSuffix(sc, "; Max-Age=3600; Path=/; HttpOnly") {
		t.Fatalf("Set-Cookie %q, want Envoy's generated cookie", sc)
	}
	cookie := strings.SplitN(sc, ";", 2)[0]
	for range 5 {
		_, got, h := get(t, client, addr, "cookie.example.com", "/", "Cookie", cookie)
		if got != first {
			t.Fatalf("with cookie %s: served by %s, first by %s", cookie, got, first)
		}
		if h.Get("Set-Cookie") != "" {
			t.Fatalf("cookie sent, yet another set: %q", h.Get("Set-Cookie"))
		}
	}
}
