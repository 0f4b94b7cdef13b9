package bookinfo

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// start serves service with opts on loopback for the test's duration.
func start(t *testing.T, service string, opts Options) (*httptest.Server, http.Handler) {
	t.Helper()
	h, err := Handler(service, opts)
	if err != nil {
		t.Fatalf("Handler(%q): %v", service, err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, h
}

func hostOf(srv *httptest.Server) string { return srv.Listener.Addr().String() }

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func get(t *testing.T, c *http.Client, url string, header http.Header) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// TestJSONShapes compares each service's answers with golden files under
// testdata/, which hold the shapes of Istio's services.
func TestJSONShapes(t *testing.T) {
	ratingsSrv, _ := start(t, "ratings", Options{})
	tests := []struct {
		service, path string
		opts          Options
		wantStatus    int
		golden        string
	}{
		{"details", "/details/0", Options{}, 200, "details-0.json"},
		{"details", "/details/abc", Options{}, 400, "details-bad-id.json"},
		{"details", "/health", Options{}, 200, "details-health.json"},
		{"ratings", "/ratings/0", Options{}, 200, "ratings-0.json"},
		{"ratings", "/ratings/x", Options{}, 400, "ratings-bad-id.json"},
		{"ratings", "/health", Options{}, 200, "ratings-health.json"},
		{"reviews", "/reviews/0", Options{Version: "v1", PodName: "reviews-v1-abc"}, 200, "reviews-v1.json"},
		{"reviews", "/reviews/0", Options{Version: "v2", PodName: "reviews-v2-abc", RatingsHost: hostOf(ratingsSrv)}, 200, "reviews-v2.json"},
		{"reviews", "/reviews/0", Options{Version: "v3", PodName: "reviews-v3-abc", ClusterName: "east", RatingsHost: hostOf(ratingsSrv)}, 200, "reviews-v3.json"},
		{"reviews", "/reviews/0", Options{Version: "v2", PodName: "reviews-v2-abc", RatingsHost: deadAddr(t)}, 200, "reviews-v2-no-ratings.json"},
		{"reviews", "/health", Options{}, 200, "reviews-health.json"},
	}
	for _, tt := range tests {
		t.Run(tt.service+tt.path+"-"+tt.golden, func(t *testing.T) {
			srv, _ := start(t, tt.service, tt.opts)
			status, hdr, body := get(t, nil, srv.URL+tt.path, nil)
			if status != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %s)", status, tt.wantStatus, body)
			}
			if ct := hdr.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			want, err := os.ReadFile(filepath.Join("testdata", tt.golden))
			if err != nil {
				t.Fatal(err)
			}
			assertJSONEqual(t, body, string(want))
		})
	}
}

func assertJSONEqual(t *testing.T, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("response is not JSON: %v: %s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("golden is not JSON: %v", err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("JSON mismatch\n got: %s\nwant: %s", got, want)
	}
}

// mesh is a full Bookinfo on loopback: details, ratings, reviews of one
// version and productpage, with ratings' inbound headers recorded.
type mesh struct {
	page *httptest.Server
	mu   sync.Mutex
	seen []http.Header // headers ratings received
}

func (m *mesh) ratingsHeaders() []http.Header {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]http.Header(nil), m.seen...)
}

func startMesh(t *testing.T, reviewsVersion string) *mesh {
	t.Helper()
	m := &mesh{}
	ratingsH, err := Handler("ratings", Options{})
	if err != nil {
		t.Fatal(err)
	}
	ratingsSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		m.seen = append(m.seen, r.Header.Clone())
		m.mu.Unlock()
		ratingsH.ServeHTTP(w, r)
	}))
	t.Cleanup(ratingsSrv.Close)
	details, _ := start(t, "details", Options{})
	reviews, _ := start(t, "reviews", Options{Version: reviewsVersion, PodName: "reviews-" + reviewsVersion + "-7f9c", RatingsHost: hostOf(ratingsSrv)})
	m.page, _ = start(t, "productpage", Options{DetailsHost: hostOf(details), ReviewsHost: hostOf(reviews), RatingsHost: hostOf(ratingsSrv)})
	return m
}

var (
	starRE      = regexp.MustCompile(`<span class="glyphicon glyphicon-star"></span>`)
	emptyStarRE = regexp.MustCompile(`<span class="glyphicon glyphicon-star-empty"></span>`)
	colorRE     = regexp.MustCompile(`<font color="(\w+)">`)
)

func TestProductPageVersions(t *testing.T) {
	tests := []struct {
		version    string
		wantStars  int // full stars over both reviews: 5 + 4
		wantEmpty  int
		wantColors []string
	}{
		{"v1", 0, 0, nil},
		{"v2", 9, 1, []string{"black", "black"}},
		{"v3", 9, 1, []string{"red", "red"}},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			m := startMesh(t, tt.version)
			status, _, body := get(t, nil, m.page.URL+"/productpage", nil)
			if status != 200 {
				t.Fatalf("status = %d", status)
			}
			for _, want := range []string{
				"<title>Simple Bookstore App</title>",
				"The Comedy of Errors",
				"Reviews served by: reviews-" + tt.version + "-7f9c on cluster Kubernetes",
				"An extremely entertaining play by Shakespeare.",
				"Absolutely fun and entertaining.",
				"Book Details",
				"PublisherA",
				"1234567890",
			} {
				if !strings.Contains(body, want) {
					t.Errorf("page lacks %q", want)
				}
			}
			if n := len(starRE.FindAllString(body, -1)); n != tt.wantStars {
				t.Errorf("full stars = %d, want %d", n, tt.wantStars)
			}
			if n := len(emptyStarRE.FindAllString(body, -1)); n != tt.wantEmpty {
				t.Errorf("empty stars = %d, want %d", n, tt.wantEmpty)
			}
			var colors []string
			for _, m := range colorRE.FindAllStringSubmatch(body, -1) {
				colors = append(colors, m[1])
			}
			if !reflect.DeepEqual(colors, tt.wantColors) {
				t.Errorf("star colours = %v, want %v", colors, tt.wantColors)
			}
		})
	}
}

func TestProductPageUpstreamErrors(t *testing.T) {
	details, _ := start(t, "details", Options{})
	reviews, _ := start(t, "reviews", Options{Version: "v1"})
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusServiceUnavailable)
	}))
	t.Cleanup(failing.Close)
	ratingsDown := deadAddr(t)

	tests := []struct {
		name                  string
		detailsHost, revHost  string
		wantText, notWantText []string
	}{
		{"details down", deadAddr(t), hostOf(reviews),
			[]string{"Sorry, product details are currently unavailable for this book.", "Book Reviews"},
			[]string{"Book Details"}},
		{"reviews 503", hostOf(details), hostOf(failing),
			[]string{"Sorry, product reviews are currently unavailable for this book.", "Book Details"},
			[]string{"Book Reviews", "Reviews served by"}},
		{"both down", ratingsDown, ratingsDown,
			[]string{"Sorry, product details are currently unavailable for this book.", "Sorry, product reviews are currently unavailable for this book."},
			nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			page, _ := start(t, "productpage", Options{DetailsHost: tt.detailsHost, ReviewsHost: tt.revHost})
			status, _, body := get(t, nil, page.URL+"/productpage", nil)
			if status != 200 {
				t.Errorf("status = %d, want 200 as Istio's page", status)
			}
			for _, s := range tt.wantText {
				if !strings.Contains(body, s) {
					t.Errorf("page lacks %q", s)
				}
			}
			for _, s := range tt.notWantText {
				if strings.Contains(body, s) {
					t.Errorf("page has %q", s)
				}
			}
		})
	}
}

// TestHeaderPropagation follows a request from productpage through reviews
// to ratings: Istio's list arrives — the tracing headers, the signed-in
// user and the session — and nothing else.
func TestHeaderPropagation(t *testing.T) {
	m := startMesh(t, "v2")
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}

	resp, err := c.PostForm(m.page.URL+"/login", url.Values{"username": {"jason"}, "passwd": {"x"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/productpage" {
		t.Fatalf("login ended at %d %s, want 200 /productpage", resp.StatusCode, resp.Request.URL.Path)
	}
	if !strings.Contains(mustBody(t, resp, c, m.page.URL+"/productpage"), "jason") {
		t.Error("page does not show the signed-in user")
	}

	before := len(m.ratingsHeaders())
	in := http.Header{
		"X-Request-Id":      {"req-1234"},
		"X-B3-Traceid":      {"80f198ee56343ba864fe8b2a57d3eff7"},
		"X-B3-Spanid":       {"e457b5a2e4d86bd1"},
		"X-B3-Parentspanid": {"05e3ac9a4f6e3b90"},
		"X-B3-Sampled":      {"1"},
		"Traceparent":       {"00-80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-01"},
		"Tracestate":        {"vendor=x"},
		"X-B3-Flags":        {"1"},
		"X-Ot-Span-Context": {"ot"},
		"Sw8":               {"sw"},
		"Authorization":     {"Bearer t"},
		"Jwt":               {"j"},
		"User-Agent":        {"meshlab-test/1"},
		"X-Not-Forwarded":   {"nope"},
		"B3":                {"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"},
	}
	if status, _, _ := get(t, c, m.page.URL+"/productpage", in); status != 200 {
		t.Fatalf("status = %d", status)
	}
	seen := m.ratingsHeaders()[before:]
	if len(seen) != 1 {
		t.Fatalf("ratings saw %d requests, want 1", len(seen))
	}
	got := seen[0]
	for k, v := range in {
		want := v[0]
		if k == "X-Not-Forwarded" || k == "B3" {
			want = ""
		}
		if g := got.Get(k); g != want {
			t.Errorf("ratings got %s = %q, want %q", k, g, want)
		}
	}
	if g := got.Get("End-User"); g != "jason" {
		t.Errorf("ratings got end-user %q, want jason", g)
	}
	if g := got.Get("Cookie"); !strings.Contains(g, "session=jason") {
		t.Errorf("ratings got cookie %q, want the session, as Istio's bookinfo forwards it", g)
	}

	// After logout, no end-user travels.
	if status, _, _ := get(t, c, m.page.URL+"/logout", nil); status != 200 {
		t.Fatalf("logout status = %d", status)
	}
	before = len(m.ratingsHeaders())
	get(t, c, m.page.URL+"/productpage", nil)
	if seen := m.ratingsHeaders()[before:]; len(seen) != 1 || seen[0].Get("End-User") != "" {
		t.Errorf("after logout ratings saw %v, want one request without end-user", seen)
	}
}

func mustBody(t *testing.T, _ *http.Response, c *http.Client, url string) string {
	t.Helper()
	_, _, body := get(t, c, url, nil)
	return body
}

func TestLoginCookie(t *testing.T) {
	page, _ := start(t, "productpage", Options{DetailsHost: deadAddr(t), ReviewsHost: deadAddr(t)})
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	tests := []struct {
		name, method, referer, wantLocation string
		wantCookie                          string
		wantCleared                         bool
	}{
		{"post", http.MethodPost, "", "/productpage", "jason", false},
		{"get with referer", http.MethodGet, page.URL + "/productpage?u=test", "/productpage?u=test", "jason", false},
		{"foreign referer keeps the path only", http.MethodPost, "http://evil.example//x", "/productpage", "jason", false},
		{"logout", http.MethodGet, "", "/productpage", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var req *http.Request
			if tt.wantCleared {
				req, _ = http.NewRequest(http.MethodGet, page.URL+"/logout", nil)
			} else if tt.method == http.MethodPost {
				req, _ = http.NewRequest(http.MethodPost, page.URL+"/login", strings.NewReader("username=jason"))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			} else {
				req, _ = http.NewRequest(http.MethodGet, page.URL+"/login?username=jason", nil)
			}
			if tt.referer != "" {
				req.Header.Set("Referer", tt.referer)
			}
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != tt.wantLocation {
				t.Errorf("got %d Location %q, want 302 %q", resp.StatusCode, resp.Header.Get("Location"), tt.wantLocation)
			}
			var found *http.Cookie
			for _, c := range resp.Cookies() {
				if c.Name == "session" {
					found = c
				}
			}
			if found == nil {
				t.Fatal("no session cookie set")
			}
			if tt.wantCleared {
				if found.MaxAge >= 0 {
					t.Errorf("logout cookie MaxAge = %d, want negative", found.MaxAge)
				}
			} else if found.Value != tt.wantCookie {
				t.Errorf("session = %q, want %q", found.Value, tt.wantCookie)
			}
		})
	}
}

func TestProductPageRoutes(t *testing.T) {
	m := startMesh(t, "v3")
	deadPage, _ := start(t, "productpage", Options{DetailsHost: deadAddr(t), ReviewsHost: deadAddr(t), RatingsHost: deadAddr(t)})
	tests := []struct {
		base, path   string
		wantStatus   int
		wantContains []string
	}{
		{m.page.URL, "/", 200, []string{"Normal user", "Test user"}},
		{m.page.URL, "/index.html", 200, []string{"Normal user"}},
		{m.page.URL, "/health", 200, []string{"Product page is healthy"}},
		{m.page.URL, "/static/css/bookinfo.css", 200, []string{"glyphicon-star"}},
		{m.page.URL, "/api/v1/products", 200, []string{`"title":"The Comedy of Errors"`, `"descriptionHtml"`}},
		{m.page.URL, "/api/v1/products/0", 200, []string{`"ISBN-13":"123-1234567890"`, `"publisher":"PublisherA"`}},
		{m.page.URL, "/api/v1/products/0/reviews", 200, []string{`"podname":"reviews-v3-7f9c"`, `"color":"red"`}},
		{m.page.URL, "/api/v1/products/0/ratings", 200, []string{`"Reviewer1":5`, `"Reviewer2":4`}},
		{deadPage.URL, "/api/v1/products/0", 500, []string{`"error":"Sorry, product details are currently unavailable for this book."`}},
		{deadPage.URL, "/api/v1/products/0/reviews", 500, []string{`"error":"Sorry, product reviews are currently unavailable for this book."`}},
		{deadPage.URL, "/api/v1/products/0/ratings", 500, []string{`"error":"Sorry, product ratings are currently unavailable for this book."`}},
		{m.page.URL, "/nothing", 404, nil},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			status, _, body := get(t, nil, tt.base+tt.path, nil)
			if status != tt.wantStatus {
				t.Fatalf("status = %d, want %d: %s", status, tt.wantStatus, body)
			}
			for _, s := range tt.wantContains {
				if !strings.Contains(body, s) {
					t.Errorf("body lacks %s: %s", s, body)
				}
			}
		})
	}
}

func TestRatingsFaults(t *testing.T) {
	t.Run("always-503", func(t *testing.T) {
		srv, _ := start(t, "ratings", Options{RatingsFault: FaultAlways503})
		for range 5 {
			if status, _, _ := get(t, nil, srv.URL+"/ratings/0", nil); status != 503 {
				t.Fatalf("status = %d, want 503", status)
			}
		}
		if status, _, _ := get(t, nil, srv.URL+"/health", nil); status != 200 {
			t.Errorf("health status = %d, want 200 (faults hit /ratings only)", status)
		}
	})
	t.Run("half-500", func(t *testing.T) {
		srv, _ := start(t, "ratings", Options{RatingsFault: FaultHalf500})
		const n = 200
		failed := 0
		for range n {
			switch status, _, _ := get(t, nil, srv.URL+"/ratings/0", nil); status {
			case 500:
				failed++
			case 200:
			default:
				t.Fatalf("status = %d, want 200 or 500", status)
			}
		}
		// Binomial(200, 0.5): 50..150 is more than 7 standard deviations wide.
		if failed < 50 || failed > 150 {
			t.Errorf("%d of %d failed, want about half", failed, n)
		}
	})
	t.Run("delay-7s", func(t *testing.T) {
		srv, h := start(t, "ratings", Options{RatingsFault: FaultDelay7s})
		var slept []time.Duration
		var mu sync.Mutex
		h.(*ratings).sleep = func(_ context.Context, d time.Duration) error {
			mu.Lock()
			slept = append(slept, d)
			mu.Unlock()
			return nil
		}
		status, _, body := get(t, nil, srv.URL+"/ratings/0", nil)
		if status != 200 || !strings.Contains(body, `"Reviewer1":5`) {
			t.Fatalf("got %d %s, want ratings after the delay", status, body)
		}
		if !reflect.DeepEqual(slept, []time.Duration{7 * time.Second}) {
			t.Errorf("slept %v, want [7s]", slept)
		}
	})
	t.Run("Istio SERVICE_VERSION alias", func(t *testing.T) {
		srv, _ := start(t, "ratings", Options{Version: "v-unavailable"})
		if status, _, _ := get(t, nil, srv.URL+"/ratings/0", nil); status != 503 {
			t.Errorf("status = %d, want 503", status)
		}
	})
	t.Run("unknown fault", func(t *testing.T) {
		if _, err := Handler("ratings", Options{RatingsFault: "sometimes"}); err == nil {
			t.Error("Handler accepted an unknown fault")
		}
	})
}

// TestReviewsRatingsTimeout: when ratings hangs, reviews gives up after its
// own timeout and reports the ratings as unavailable.
func TestReviewsRatingsTimeout(t *testing.T) {
	ratingsSrv, h := start(t, "ratings", Options{RatingsFault: FaultDelay7s})
	h.(*ratings).sleep = func(ctx context.Context, _ time.Duration) error { <-ctx.Done(); return ctx.Err() }
	reviewsSrv, rh := start(t, "reviews", Options{Version: "v3", RatingsHost: hostOf(ratingsSrv)})
	if got := rh.(*reviews).ratingsTimeout; got != 2500*time.Millisecond {
		t.Errorf("v3 ratings timeout = %v, want 2.5s as Istio's", got)
	}
	rh.(*reviews).ratingsTimeout = 20 * time.Millisecond
	_, _, body := get(t, nil, reviewsSrv.URL+"/reviews/0", nil)
	if strings.Count(body, `"error":"Ratings service is currently unavailable"`) != 2 {
		t.Errorf("body = %s, want both ratings unavailable", body)
	}
}

func TestRatingsPost(t *testing.T) {
	srv, _ := start(t, "ratings", Options{})
	resp, err := http.Post(srv.URL+"/ratings/3", "application/json", strings.NewReader(`{"Reviewer1":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST status = %d", resp.StatusCode)
	}
	_, _, body := get(t, nil, srv.URL+"/ratings/3", nil)
	assertJSONEqual(t, body, `{"id":3,"ratings":{"Reviewer1":1,"Reviewer2":4}}`)
	_, _, body = get(t, nil, srv.URL+"/ratings/0", nil)
	assertJSONEqual(t, body, `{"id":0,"ratings":{"Reviewer1":5,"Reviewer2":4}}`)
}

func TestBaseURL(t *testing.T) {
	tests := []struct{ host, domain, want string }{
		{"details", "", "http://details:9080"},
		{"details", "default.svc.cluster.local", "http://details.default.svc.cluster.local:9080"},
		{"127.0.0.1:31000", "", "http://127.0.0.1:31000"},
		{"127.0.0.1:31000", "svc", "http://127.0.0.1:31000"},
		{"ratings:8080", "ns", "http://ratings.ns:8080"},
		{"::1", "", "http://[::1]:9080"},
	}
	for _, tt := range tests {
		if got := baseURL(tt.host, tt.domain); got != tt.want {
			t.Errorf("baseURL(%q, %q) = %q, want %q", tt.host, tt.domain, got, tt.want)
		}
	}
}

func TestHandlerRejects(t *testing.T) {
	tests := []struct {
		service string
		opts    Options
	}{
		{"frontpage", Options{}},
		{"reviews", Options{Version: "v9"}},
	}
	for _, tt := range tests {
		if _, err := Handler(tt.service, tt.opts); err == nil {
			t.Errorf("Handler(%q, %+v) succeeded, want error", tt.service, tt.opts)
		}
	}
}

// TestRunShutdown: Run serves until its context ends, then returns nil.
func TestRunShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, "details", Options{Listener: ln}) }()

	status, _, body := get(t, nil, "http://"+ln.Addr().String()+"/health", nil)
	if status != 200 || !strings.Contains(body, "Details is healthy") {
		t.Errorf("health = %d %s", status, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v, want nil after shutdown", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("still listening after shutdown")
	}
}
