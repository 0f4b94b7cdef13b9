// Package conformance is meshlab's end-to-end traffic-management
// conformance suite: one local lab, and for each Istio exercise (request
// routing, fault injection, timeouts, retries, circuit breaking, outlier
// detection, mirroring, the walkthrough's YAML, analyze) its YAML applied
// with `apply --wait` and the outcome Istio documents checked through the
// gateway or from inside pods.
package conformance

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshlab/meshlab/lab/labtest"
)

const (
	httpPort = "18180"
	gateway  = "http://127.0.0.1:" + httpPort
	api      = "127.0.0.1:25114"
	samples  = "../../samples/bookinfo/networking/"
)

// suite is the one lab every case runs against.
type suite struct {
	*labtest.Lab
	t *testing.T
	// client keeps connections alive, so volume tests measure the mesh and
	// not connection setup.
	client *http.Client
}

func TestConformance(t *testing.T) {
	labtest.Skip(t)
	l := labtest.New(t, "../..")
	s := &suite{Lab: l, t: t, client: &http.Client{Timeout: 20 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true}}}
	out := l.MustRun("up", "--http-port", httpPort, "--https-port", "18543", "--api-port", "25114",
		"--manifest", "testdata/lab.yaml")
	t.Logf("up:\n%s", out)
	labtest.Eventually(t, "productpage through the gateway", func() bool {
		code, _, _ := s.get(gateway+"/productpage", "", nil)
		return code == 200
	})
	labtest.Eventually(t, "httpbin and calc to be ready", func() bool {
		out, err := l.Run("status", "-o", "json")
		return err == nil && strings.Count(out, `"ready": true`) >= 12
	})
	// Istio's tasks start from destination-rule-all.yaml; it stays for the suite.
	s.apply(t, samples+"destination-rule-all.yaml")

	for _, c := range []struct {
		name string
		run  func(*testing.T, *suite)
	}{
		{"RequestRoutingAllV1", requestRoutingAllV1},
		{"TrafficShiftingV2V3", trafficShiftingV2V3},
		{"RequestRoutingJasonV2", requestRoutingJason},
		{"FaultDelayJason", faultDelayJason},
		{"FaultAbortJason", faultAbortJason},
		{"RequestTimeout", requestTimeout},
		{"Retries", retries},
		{"CircuitBreaking", circuitBreaking},
		{"OutlierDetectionSubsetEjected", outlierDetection},
		{"Mirroring", mirroring},
		{"WalkthroughYAML", walkthroughYAML},
		{"HitlessReconfiguration", hitless},
		{"Analyze", analyzeLive},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, s) })
	}
}

// apply applies files with --wait (every proxy has ACKed when it returns)
// and deletes what they created or changed when the test ends. Resources
// are deleted one by one because two files of a test may name the same
// resource (all-v1's reviews, then reviews-test-v2's), and a delete is all
// or nothing.
func (s *suite) apply(t *testing.T, files ...string) {
	t.Helper()
	for _, f := range files {
		out := s.MustRun("apply", "-f", f, "--wait", "--controlplane", api)
		for _, m := range applied.FindAllStringSubmatch(out, -1) {
			kind, name, ns := m[1], m[2], m[3]
			t.Cleanup(func() {
				out, err := s.Run("delete", kind, name, "-n", ns, "--controlplane", api)
				if err != nil && !strings.Contains(out, "not found") {
					t.Errorf("delete %s %s -n %s: %v\n%s", kind, name, ns, err, out)
				}
			})
		}
	}
}

// applied matches apply's lines, e.g.
// "virtualservice.networking.istio.io/reviews created (namespace default)".
var applied = regexp.MustCompile(`(?m)^(\w+)\.[\w.]+/(\S+) \w+ \(namespace (\S+)\)$`)

// applyYAML applies an inline document set, as apply above.
func (s *suite) applyYAML(t *testing.T, name, doc string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	s.apply(t, f)
}

// get sends one request through the gateway; host, when set, is the
// Host header; jar carries the login session.
func (s *suite) get(u, host string, jar http.CookieJar) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return 0, "", err
	}
	if host != "" {
		req.Host = host
	}
	c := s.client
	if jar != nil {
		c = &http.Client{Timeout: s.client.Timeout, Transport: s.client.Transport, Jar: jar}
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func (s *suite) mustGet(t *testing.T, u, host string, jar http.CookieJar) string {
	t.Helper()
	code, body, err := s.get(u, host, jar)
	if err != nil || code != 200 {
		t.Fatalf("GET %s (host %q): %d %v\n%.400s", u, host, code, err, body)
	}
	return body
}

var servedBy = regexp.MustCompile(`reviews-(v[0-9])-`)

func reviewsVersion(body string) string {
	if m := servedBy.FindStringSubmatch(body); m != nil {
		return m[1]
	}
	return "none"
}

// login signs in as user through productpage's /login form.
func (s *suite) login(t *testing.T, user string) http.CookieJar {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Timeout: s.client.Timeout, Jar: jar}
	resp, err := c.PostForm(gateway+"/login", url.Values{"username": {user}, "passwd": {"password"}})
	if err != nil {
		t.Fatalf("login as %s: %v", user, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	u, _ := url.Parse(gateway)
	if len(jar.Cookies(u)) == 0 {
		t.Fatalf("login as %s set no session cookie (status %s)", user, resp.Status)
	}
	return jar
}

func requestRoutingAllV1(t *testing.T, s *suite) {
	s.apply(t, samples+"virtual-service-all-v1.yaml")
	for i := 0; i < 30; i++ {
		if v := reviewsVersion(s.mustGet(t, gateway+"/productpage", "", nil)); v != "v1" {
			t.Fatalf("request %d reached reviews %s; all-v1 sends every request to v1", i, v)
		}
	}
}

// trafficShiftingV2V3: 50/50 within ±5% over 2,000 requests. The reviews
// JSON names its pod, so the product API is enough and quicker than pages.
func trafficShiftingV2V3(t *testing.T, s *suite) {
	s.apply(t, samples+"virtual-service-all-v1.yaml", samples+"virtual-service-reviews-v2-v3.yaml")
	const n, workers = 2000, 8
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	var next atomic.Int64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= n {
				_, body, err := s.get(gateway+"/api/v1/products/0/reviews", "", nil)
				v := reviewsVersion(body)
				if err != nil {
					v = "error"
				}
				mu.Lock()
				counts[v]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("2,000 requests: %v", counts)
	if counts["v2"]+counts["v3"] != n {
		t.Fatalf("requests outside v2/v3: %v", counts)
	}
	if share := float64(counts["v2"]) / n; math.Abs(share-0.5) > 0.05 {
		t.Errorf("v2 share %.3f, want 0.50 ± 0.05", share)
	}
}

func requestRoutingJason(t *testing.T, s *suite) {
	s.apply(t, samples+"virtual-service-all-v1.yaml", samples+"virtual-service-reviews-test-v2.yaml")
	jar := s.login(t, "jason")
	for i := 0; i < 10; i++ {
		body := s.mustGet(t, gateway+"/productpage", "", jar)
		if v := reviewsVersion(body); v != "v2" || !strings.Contains(body, `color="black"`) {
			t.Fatalf("jason's request %d reached reviews %s (black stars: %v); want v2 with black stars", i, v, strings.Contains(body, `color="black"`))
		}
		if v := reviewsVersion(s.mustGet(t, gateway+"/productpage", "", nil)); v != "v1" {
			t.Fatalf("anonymous request %d reached reviews %s; want v1", i, v)
		}
	}
}

// faultDelayJason is Istio's fault-injection task: a 7s ratings delay for
// jason exceeds productpage's reviews timeout (3s, one retry), so the page
// says reviews are unavailable; others see v1 as usual.
func faultDelayJason(t *testing.T, s *suite) {
	s.apply(t, samples+"virtual-service-all-v1.yaml", samples+"virtual-service-reviews-test-v2.yaml",
		samples+"virtual-service-ratings-test-delay.yaml")
	jar := s.login(t, "jason")
	body := s.mustGet(t, gateway+"/productpage", "", jar)
	if !strings.Contains(body, "Sorry, product reviews are currently unavailable for this book.") {
		t.Errorf("jason's page with a 7s ratings delay should say reviews are unavailable:\n%.2000s", body)
	}
	if body := s.mustGet(t, gateway+"/productpage", "", nil); reviewsVersion(body) != "v1" {
		t.Errorf("anonymous page should be served by reviews v1, got %s", reviewsVersion(body))
	}
}

func faultAbortJason(t *testing.T, s *suite) {
	s.apply(t, samples+"virtual-service-all-v1.yaml", samples+"virtual-service-reviews-test-v2.yaml",
		samples+"virtual-service-ratings-test-abort.yaml")
	jar := s.login(t, "jason")
	body := s.mustGet(t, gateway+"/productpage", "", jar)
	if !strings.Contains(body, "Ratings service is currently unavailable") {
		t.Errorf("jason's page with ratings aborting 500 should say ratings are unavailable:\n%.2000s", body)
	}
	if body := s.mustGet(t, gateway+"/productpage", "", nil); strings.Contains(body, "Ratings service is currently unavailable") {
		t.Errorf("anonymous page should not be affected by jason's abort")
	}
}

// requestTimeout is Istio's request-timeouts task: ratings delayed 2s,
// reviews (v2) given 0.5s: the page says reviews are unavailable.
func requestTimeout(t *testing.T, s *suite) {
	s.apply(t, samples+"virtual-service-all-v1.yaml")
	s.applyYAML(t, "timeout.yaml", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts: [ratings]
  http:
  - fault:
      delay:
        percentage: {value: 100}
        fixedDelay: 2s
    route:
    - destination: {host: ratings, subset: v1}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v2}
    timeout: 0.5s
`)
	body := s.mustGet(t, gateway+"/productpage", "", nil)
	if !strings.Contains(body, "Sorry, product reviews are currently unavailable for this book.") {
		t.Errorf("with reviews timing out after 0.5s the page should say reviews are unavailable:\n%.2000s", body)
	}
}

// retries: calc has a healthy and an always-503 pod. Without retries about
// half the requests fail; with retries on 5xx (and Istio's previous_hosts
// predicate sending the retry elsewhere) none does.
func retries(t *testing.T, s *suite) {
	const n = 60
	failures := func() int {
		bad := 0
		for i := 0; i < n; i++ {
			if code, _, err := s.get(gateway+"/ratings/0", "calc.example.com", nil); err != nil || code != 200 {
				bad++
			}
		}
		return bad
	}
	vs := func(retries string) string {
		return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: calc-gateway
spec:
  hosts: [calc.example.com]
  gateways: [bookinfo-gateway]
  http:
  - route:
    - destination: {host: calc}
    retries: ` + retries + "\n"
	}
	t.Run("off", func(t *testing.T) {
		s.applyYAML(t, "calc.yaml", vs("{attempts: 0}"))
		if bad := failures(); bad < n/4 || bad > 3*n/4 {
			t.Errorf("without retries %d of %d requests failed; want about half (one of two pods always answers 503)", bad, n)
		}
	})
	t.Run("on", func(t *testing.T) {
		s.applyYAML(t, "calc.yaml", vs("{attempts: 3, retryOn: 5xx}"))
		if bad := failures(); bad != 0 {
			t.Errorf("with 3 retries on 5xx %d of %d requests failed; want none", bad, n)
		}
	})
}

// circuitBreaking is Istio's circuit-breaking task: one connection, one
// pending request, and concurrent load: some requests are refused with 503.
func circuitBreaking(t *testing.T, s *suite) {
	s.applyYAML(t, "httpbin-cb.yaml", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: httpbin
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin-gateway
spec:
  hosts: [httpbin.example.com]
  gateways: [bookinfo-gateway]
  http:
  - route:
    - destination: {host: httpbin, port: {number: 8000}}
`)
	const workers, each = 10, 10
	var ok, overflow, other atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				code, _, err := s.get(gateway+"/delay/0.05", "httpbin.example.com", nil)
				switch {
				case err == nil && code == 200:
					ok.Add(1)
				case err == nil && code == 503:
					overflow.Add(1)
				default:
					other.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d concurrent clients × %d: %d ok, %d 503, %d other", workers, each, ok.Load(), overflow.Load(), other.Load())
	if ok.Load() == 0 || overflow.Load() == 0 || other.Load() != 0 {
		t.Errorf("want some 200 and some 503 (overflow), nothing else")
	}
}

// outlierDetection is the walkthrough's circuit-breaker surprise: with a
// 50/50 split by subset and the poison pod ejected after one 5xx, the
// poison subset has no host left, so half the requests get 503 "no healthy
// upstream" while the normal subset keeps answering.
func outlierDetection(t *testing.T, s *suite) {
	s.applyYAML(t, "calc-outlier.yaml", `kind: DestinationRule
apiVersion: networking.istio.io/v1beta1
metadata:
  name: calc-destination-rule
spec:
  host: calc.default.svc.cluster.local
  subsets:
    - name: normal
      labels: {version: normal}
    - name: poison
      labels: {version: poison}
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 10s
      baseEjectionTime: 1m
      maxEjectionPercent: 100
---
kind: VirtualService
apiVersion: networking.istio.io/v1beta1
metadata:
  name: calc-virtual-service-for-gateway
spec:
  hosts: [calc.example.com]
  gateways: [bookinfo-gateway]
  http:
    - route:
        - destination: {host: calc.default.svc.cluster.local, subset: normal}
          weight: 50
        - destination: {host: calc.default.svc.cluster.local, subset: poison}
          weight: 50
`)
	const n = 60
	var ok, noHealthy, other int
	for i := 0; i < n; i++ {
		code, body, err := s.get(gateway+"/ratings/0", "calc.example.com", nil)
		switch {
		case err == nil && code == 200:
			ok++
		case err == nil && code == 503 && strings.TrimSpace(body) == "no healthy upstream":
			noHealthy++
		default:
			other++
		}
	}
	t.Logf("%d requests: %d ok, %d no healthy upstream, %d other", n, ok, noHealthy, other)
	if ok < n/4 || noHealthy < n/4 {
		t.Errorf("want about half 200 (normal) and half 503 no healthy upstream (poison ejected)")
	}
	if other > 1 {
		t.Errorf("%d responses were neither: only the poison pod's first 503 may show before it is ejected", other)
	}
}

// mirroring is Istio's mirroring task: all traffic to httpbin v1, mirrored
// to v2. Both pods' sidecars count the requests they passed to httpbin.
func mirroring(t *testing.T, s *suite) {
	s.applyYAML(t, "httpbin-mirror.yaml", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: httpbin
spec:
  host: httpbin
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin-gateway
spec:
  hosts: [httpbin.example.com]
  gateways: [bookinfo-gateway]
  http:
  - route:
    - destination: {host: httpbin, subset: v1}
      weight: 100
    mirror: {host: httpbin, subset: v2}
    mirrorPercentage: {value: 100.0}
`)
	v1Before, v2Before := s.inbound(t, "httpbin-v1"), s.inbound(t, "httpbin-v2")
	const n = 20
	for i := 0; i < n; i++ {
		s.mustGet(t, gateway+"/headers", "httpbin.example.com", nil)
	}
	// Mirrored requests are fire-and-forget: give them a moment to land.
	var v1, v2 int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		v1, v2 = s.inbound(t, "httpbin-v1")-v1Before, s.inbound(t, "httpbin-v2")-v2Before
		if v2 >= n || time.Now().After(deadline) {
			break
		}
	}
	if v1 != n || v2 != n {
		t.Errorf("v1 received %d and v2 %d of %d requests; want all on v1 and all mirrored to v2", v1, v2, n)
	}
}

// inboundRequests is the sidecar's count of requests it passed to its app.
var inboundRequests = regexp.MustCompile(`(?m)^envoy_cluster_upstream_rq_total\{envoy_cluster_name="inbound\|8000\|\|"\} ([0-9]+)$`)

// inbound is how many requests a pod's sidecar has passed to httpbin.
func (s *suite) inbound(t *testing.T, pod string) int {
	t.Helper()
	out := s.MustRun("exec", "-n", "default", pod, "--", "curl", "-sS", "http://127.0.0.1:15090/stats/prometheus")
	m := inboundRequests.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("%s's sidecar stats have no inbound|8000|| request count:\n%.3000s", pod, out)
	}
	var n int
	fmt.Sscan(m[1], &n)
	return n
}

// walkthroughYAML applies every valid document of the walkthrough (each
// must be ACKed by every proxy) and checks that its two invalid
// VirtualServices are rejected naming the document and field.
func walkthroughYAML(t *testing.T, s *suite) {
	files, err := filepath.Glob("../../controlplane/config/testdata/walkthrough/*.yaml")
	if err != nil || len(files) < 8 {
		t.Fatalf("walkthrough fixtures: %v %v", files, err)
	}
	// The walkthrough makes its namespace first; its Kubernetes objects
	// (the NodePort Service) need it, as on a cluster.
	s.apply(t, "testdata/book-demo-namespace.yaml")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { s.apply(t, f) })
	}
	for _, c := range []struct{ file, want string }{
		{"reviews-vs-header.yaml", `document 1 (VirtualService book-demo/reviews-vs): spec.http[0].match[1].header: unknown field "header"`},
		{"reviews-vs-headers-list.yaml", `document 1 (VirtualService book-demo/reviews-vs): spec.http[0].match[0].headers: expected an object`},
	} {
		out, err := s.Run("apply", "-f", "../../controlplane/config/testdata/invalid/"+c.file, "--controlplane", api)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("apply %s: err=%v, output should name the document and field (%s):\n%s", c.file, err, c.want, out)
		}
	}
}

// hitless: 4 clients through the gateway while reviews routing flips 10
// times between v1 and v3: no request may fail.
func hitless(t *testing.T, s *suite) {
	s.apply(t, samples+"virtual-service-all-v1.yaml")
	ctx, cancel := context.WithCancel(context.Background())
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				code, body, err := s.get(gateway+"/productpage", "", nil)
				if err != nil || code != 200 || !strings.Contains(body, "Simple Bookstore App") {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %v %.200s", code, err, body))
					continue
				}
				ok.Add(1)
			}
		}()
	}
	start := time.Now()
	for i := 0; i < 10; i++ {
		f := samples + "virtual-service-reviews-v3.yaml"
		if i%2 == 1 {
			f = samples + "virtual-service-all-v1.yaml"
		}
		s.MustRun("apply", "-f", f, "--wait", "--controlplane", api)
	}
	// At least 3 s of load, however quick the switches were.
	time.Sleep(time.Until(start.Add(3 * time.Second)))
	cancel()
	wg.Wait()
	t.Logf("10 switches under load: %d requests ok, %d failed", ok.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d requests failed during reconfiguration; first: %v", failed.Load(), firstErr.Load())
	}
	if ok.Load() == 0 {
		t.Errorf("no request succeeded")
	}
}

// analyzeLive runs meshlab analyze against the running lab: the stored
// configuration and the registry count, and a file's resource replaces the
// stored one.
func analyzeLive(t *testing.T, s *suite) {
	s.apply(t, samples+"virtual-service-all-v1.yaml")
	f := filepath.Join(t.TempDir(), "reviews-v9.yaml")
	os.WriteFile(f, []byte(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v9}
`), 0o644)
	out, err := s.Run("analyze", "-f", f, "--controlplane", api)
	if err == nil {
		t.Errorf("analyze of a route to an undefined subset should exit non-zero:\n%s", out)
	}
	for _, want := range []string{
		`Error [IST0101] (VirtualService default/reviews ` + f + `:9) spec.http[0].route[0].destination.subset: Referenced host+subset in destinationrule not found: "reviews+v9"`,
		// From the stored destination-rule-all.yaml and the lab's pods.
		`Error [IST0173] (DestinationRule default/ratings) spec.subsets[1]: The Subset v2 defined in the DestinationRule does not select any pods.`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("analyze output lacks\n%s\n got:\n%s", want, out)
		}
	}
	if strings.Contains(out, `"reviews+v1"`) {
		t.Errorf("the stored reviews VirtualService should be replaced by the file's")
	}
}
