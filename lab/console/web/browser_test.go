package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/meshlab/meshlab/lab/labtest"
)

// webRoot is where the test mounts the console, as the walkthrough's
// gateway does: every UI fetch must be relative to it.
const webRoot = "/dashboards/kiali/"

// call is one request the fixture API saw.
type call struct {
	Method, Path, Query string
	Body                []byte
}

// fixtureAPI serves testdata/api/<path>.json for GETs and records every
// request, so the test can check what the UI posted. It stands in for
// package console only in this package's own test; the lead's e2e test runs
// the UI against the real console and lab.
type fixtureAPI struct {
	t          testing.TB
	mu         sync.Mutex
	calls      []call
	missing    []string
	failApply  string // when set, api/meshlab/apply answers 400 with this text
	tokenAuth  bool   // api/auth/info asks for a token until POST api/authenticate
	authorized bool
	dropCB     bool   // the graph fixture is served without hasCB, as after deleting the DR's outlier policy
	bigGraph   []byte // served for namespaces=big (the benchmark's generated mesh)
}

func (f *fixtureAPI) record(c call) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
}

func (f *fixtureAPI) find(method, p string) []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []call
	for _, c := range f.calls {
		if c.Method == method && c.Path == p {
			out = append(out, c)
		}
	}
	return out
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// wizardRequest mirrors the contract's wizard.Request; decoding with
// DisallowUnknownFields catches a UI posting fields package wizard lacks.
type wizardRequest struct {
	Action     string   `json:"action"`
	Namespace  string   `json:"namespace"`
	Service    string   `json:"service"`
	APIVersion string   `json:"apiVersion"`
	Versions   []string `json:"versions"`
	Weights    []struct {
		Version string `json:"version"`
		Weight  int    `json:"weight"`
		Mirror  bool   `json:"mirror"`
	} `json:"weights"`
	Rules []struct {
		Matches []struct {
			Field string `json:"field"`
			Name  string `json:"name,omitempty"`
			Op    string `json:"op"`
			Value string `json:"value"`
		} `json:"matches"`
		Weights []struct {
			Version string `json:"version"`
			Weight  int    `json:"weight"`
			Mirror  bool   `json:"mirror"`
		} `json:"weights"`
	} `json:"rules"`
	Fault *struct {
		Delay *struct {
			FixedDelay string  `json:"fixedDelay"`
			Percentage float64 `json:"percentage"`
		} `json:"delay"`
		Abort *struct {
			HTTPStatus int     `json:"httpStatus"`
			Percentage float64 `json:"percentage"`
		} `json:"abort"`
	} `json:"fault"`
	Timeouts *struct {
		Timeout string `json:"timeout"`
		Retries *struct {
			Attempts      int    `json:"attempts"`
			PerTryTimeout string `json:"perTryTimeout"`
			RetryOn       string `json:"retryOn"`
		} `json:"retries"`
	} `json:"timeouts"`
	Advanced *struct {
		Hosts []string `json:"hosts"`
		TLS   *struct {
			Mode              string `json:"mode"`
			ClientCertificate string `json:"clientCertificate,omitempty"`
			PrivateKey        string `json:"privateKey,omitempty"`
			CACertificates    string `json:"caCertificates,omitempty"`
		} `json:"tls"`
		LoadBalancer *struct {
			Simple         string `json:"simple,omitempty"`
			ConsistentHash *struct {
				HTTPHeaderName string `json:"httpHeaderName,omitempty"`
				HTTPCookie     *struct {
					Name string `json:"name"`
					Path string `json:"path,omitempty"`
					TTL  string `json:"ttl"`
				} `json:"httpCookie,omitempty"`
				UseSourceIP bool `json:"useSourceIp,omitempty"`
			} `json:"consistentHash,omitempty"`
		} `json:"loadBalancer"`
		ConnectionPool *struct {
			MaxConnections          int32 `json:"maxConnections"`
			HTTP1MaxPendingRequests int32 `json:"http1MaxPendingRequests"`
		} `json:"connectionPool"`
		OutlierDetection *struct {
			Consecutive5xxErrors uint32 `json:"consecutive5xxErrors"`
			Interval             string `json:"interval,omitempty"`
			BaseEjectionTime     string `json:"baseEjectionTime,omitempty"`
			MaxEjectionPercent   int32  `json:"maxEjectionPercent,omitempty"`
		} `json:"outlierDetection"`
		Gateway *struct {
			Existing string   `json:"existing,omitempty"`
			Port     uint32   `json:"port,omitempty"`
			Hosts    []string `json:"hosts,omitempty"`
			Mesh     bool     `json:"mesh"`
		} `json:"gateway"`
		PeerAuthentication *struct {
			Mode string `json:"mode"`
			App  string `json:"app,omitempty"`
		} `json:"peerAuthentication"`
	} `json:"advanced"`
}

func (f *fixtureAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	p := strings.TrimPrefix(r.URL.Path, webRoot)
	f.record(call{Method: r.Method, Path: p, Query: r.URL.RawQuery, Body: body})
	switch {
	case p == "api/auth/info" && f.tokenAuth:
		f.mu.Lock()
		ok := f.authorized
		f.mu.Unlock()
		writeJSON(w, 200, map[string]any{"strategy": "token", "authenticated": ok})
		return
	case p == "api/logout":
		f.mu.Lock()
		f.authorized = false
		f.mu.Unlock()
		writeJSON(w, 200, map[string]string{})
		return
	case p == "api/authenticate" && r.Method == http.MethodPost:
		v, _ := url.ParseQuery(string(body))
		if v.Get("token") != "s3cret" {
			writeJSON(w, 401, map[string]string{"error": "token refused"})
			return
		}
		f.mu.Lock()
		f.authorized = true
		f.mu.Unlock()
		writeJSON(w, 200, map[string]string{"strategy": "token"})
		return
	case p == "api/meshlab/wizard" && r.Method == http.MethodPost:
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		var req wizardRequest
		if err := dec.Decode(&req); err != nil {
			writeJSON(w, 400, map[string]string{"error": "wizard request: " + err.Error()})
			return
		}
		p = "api/meshlab/wizard"
	case p == "api/meshlab/apply" && r.Method == http.MethodPost:
		if f.failApply != "" {
			writeJSON(w, 400, map[string]string{"error": f.failApply})
			return
		}
	case r.Method == http.MethodDelete || r.Method == http.MethodPut:
		writeJSON(w, 200, map[string]any{"changes": []any{}})
		return
	case p == "api/namespaces/graph" && r.URL.Query().Get("namespaces") == "empty":
		p = "api/namespaces/graph-empty"
	case p == "api/namespaces/graph" && r.URL.Query().Get("namespaces") == "big" && f.bigGraph != nil:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(f.bigGraph)
		return
	case p == "api/namespaces/graph" && r.URL.Query().Get("namespaces") == "book-demo":
		// package graph's own golden output for bookinfo, per graph type
		b, err := os.ReadFile(filepath.Join("testdata", "graph-golden", "bookinfo-"+filepath.Base(r.URL.Query().Get("graphType"))+".json"))
		if err != nil {
			writeJSON(w, 404, map[string]string{"error": err.Error()})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
		return
	}
	file := filepath.Join("testdata", filepath.FromSlash(path.Clean("/"+p))+".json")
	b, err := os.ReadFile(file)
	if err != nil {
		f.mu.Lock()
		f.missing = append(f.missing, r.Method+" "+p)
		f.mu.Unlock()
		writeJSON(w, 404, map[string]string{"error": "no fixture for " + p})
		return
	}
	f.mu.Lock()
	dropCB := f.dropCB
	f.mu.Unlock()
	if dropCB && p == "api/namespaces/graph" {
		var g map[string]any
		if err := json.Unmarshal(b, &g); err != nil {
			f.t.Errorf("graph fixture: %v", err)
		}
		for _, n := range g["elements"].(map[string]any)["nodes"].([]any) {
			delete(n.(map[string]any)["data"].(map[string]any), "hasCB")
		}
		b, _ = json.Marshal(g)
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// browser runs one headless Chromium against the UI and fixture API and
// collects the page's exceptions, console errors and warnings (cytoscape
// reports bad styles as warnings).
type browser struct {
	*labtest.Browser
	t    testing.TB
	base string
	api  *fixtureAPI
}

func newBrowser(t testing.TB, api *fixtureAPI) *browser {
	t.Helper()
	if testing.Short() {
		t.Skip("headless UI test skipped in -short mode")
	}
	mux := http.NewServeMux()
	mux.Handle(webRoot+"api/", api)
	mux.Handle(webRoot, http.StripPrefix(strings.TrimSuffix(webRoot, "/"), Handler()))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &browser{Browser: labtest.NewBrowser(t), t: t, base: srv.URL + webRoot, api: api}
}

func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	b.Do(b.t, what, actions...)
}

func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	return labtest.Eval[T](b.t, b.Browser, expr)
}

// waitTrue polls a JavaScript predicate until it holds.
func (b *browser) waitTrue(what, expr string) {
	b.t.Helper()
	b.do(what, labtest.WaitJS(expr))
}

// open loads the console at a hash route and waits until the page says its
// data is shown.
func (b *browser) open(hash, ready string) {
	b.t.Helper()
	loaded := eval[bool](b, `typeof document !== 'undefined' && !!document.getElementById('main') && location.href.startsWith(`+jsString(b.base)+`)`)
	if !loaded {
		b.do("navigate", chromedp.Navigate(b.base+hash))
	} else {
		b.do("route "+hash, chromedp.Evaluate[chromedp.Void](`document.body.dataset.ready = ''; location.hash = `+jsString(hash)))
	}
	b.do("wait for "+ready, labtest.WaitReady(ready))
	// A value the UI failed to format shows up as one of these words.
	if bad := eval[string](b, `(document.getElementById('main').innerText.match(/\b(undefined|null|NaN)\b|\[object Object\]/) || [''])[0]`); bad != "" {
		b.t.Errorf("%s shows %q", hash, bad)
	}
}

func (b *browser) expectError(substr string) { b.Expect(substr) }
func (b *browser) forgetErrors()             { b.Forget() }
func (b *browser) jsErrors() string          { return b.Errors() }

// checkClean fails on JavaScript errors and on API calls without a fixture.
func (b *browser) checkClean() {
	b.t.Helper()
	if e := b.jsErrors(); e != "" {
		b.t.Errorf("JavaScript errors on the page:\n%s", e)
	}
	b.forgetErrors()
	b.api.mu.Lock()
	defer b.api.mu.Unlock()
	if len(b.api.missing) > 0 {
		b.t.Errorf("the UI called API paths without a fixture: %v", b.api.missing)
	}
}

func (b *browser) screenshot(name string) {
	b.t.Helper()
	b.do("screenshot "+name, labtest.Screenshot(os.Getenv("MESHLAB_SCREENSHOTS"), name))
}

var jsString = labtest.JSString

func fixtureText(t *testing.T, file string, field ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "api", file))
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	for _, f := range field {
		v = v.(map[string]any)[f]
	}
	return v.(string)
}

type graphState struct {
	Nodes, Edges int
	Labels       map[string]string
	Classes      map[string]string
	Empty        bool
}

const graphStateJS = `(() => {
  const cy = window.meshlabGraph;
  const labels = {}, classes = {};
  cy.elements().forEach((e) => { labels[e.id()] = e.data('label') || ''; classes[e.id()] = e.classes().join(' '); });
  return {nodes: cy.nodes().length, edges: cy.edges().length, labels, classes, empty: !document.getElementById('graph-empty').hidden};
})()`

func TestBrowserPages(t *testing.T) {
	api := &fixtureAPI{t: t}
	b := newBrowser(t, api)

	t.Run("page errors fail the test", func(t *testing.T) {
		b.t = t
		b.open("#/mesh", "mesh")
		b.do("throw", chromedp.Evaluate[chromedp.Void](`setTimeout(() => { throw new Error('provoked by the test') }, 0)`))
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(b.jsErrors(), "provoked by the test") && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if !strings.Contains(b.jsErrors(), "provoked by the test") {
			t.Fatalf("an uncaught exception was not reported; got %q", b.jsErrors())
		}
		b.forgetErrors()
	})

	t.Run("overview", func(t *testing.T) {
		b.t = t
		b.open("#/overview", "overview")
		cards := eval[[]string](b, `[...document.querySelectorAll('.ns-card[data-namespace]')].map(c => c.dataset.namespace)`)
		if strings.Join(cards, ",") != "bookinfo,empty,istio-system" {
			t.Errorf("namespace cards %v", cards)
		}
		tests := []struct{ sel, want string }{
			{`.ns-card[data-namespace="bookinfo"] .mtls-lock`, "STRICT"},
			{`.ns-card[data-namespace="empty"] .mtls-lock`, "PERMISSIVE"},
		}
		for _, tc := range tests {
			if got := eval[string](b, `document.querySelector(`+jsString(tc.sel)+`).dataset.mode`); got != tc.want {
				t.Errorf("%s: data-mode %q, want %q", tc.sel, got, tc.want)
			}
		}
		h := eval[string](b, `document.querySelector('.ns-card[data-namespace="bookinfo"] .health').textContent`)
		for _, want := range []string{"6 Workloads", "▲ 1", "■ 1"} {
			if !strings.Contains(h, want) {
				t.Errorf("bookinfo health %q lacks %q", h, want)
			}
		}
		if v := eval[string](b, `document.querySelector('.ns-card[data-namespace="bookinfo"] .validations').dataset.errors`); v != "1" {
			t.Errorf("bookinfo validations errors %q", v)
		}
		if e := eval[string](b, `document.querySelector('.ns-card[data-namespace="empty"] .card-error').textContent`); !strings.Contains(e, "no data for namespace empty") {
			t.Errorf("a card's partial error is not shown: %q", e)
		}
		if n := eval[int](b, `document.querySelectorAll('.ns-card[data-namespace="bookinfo"] svg.sparkline path').length`); n != 2 {
			t.Errorf("bookinfo sparkline has %d paths, want line and fill", n)
		}
		// A figure for the report, not an assertion: how long the first load took.
		nav := eval[map[string]float64](b, `(() => { const n = performance.getEntriesByType('navigation')[0]; return {dcl: n.domContentLoadedEventEnd, load: n.loadEventEnd, bytes: performance.getEntriesByType('resource').reduce((a, r) => a + (r.transferSize || 0), n.transferSize || 0)}; })()`)
		t.Logf("first load on loopback: DOMContentLoaded %.0f ms, load %.0f ms, %.0f bytes transferred", nav["dcl"], nav["load"], nav["bytes"])
		b.screenshot("overview")
		b.checkClean()
	})

	t.Run("graph", func(t *testing.T) {
		b.t = t
		b.open("#/graph?namespaces=bookinfo&graphType=versionedApp&duration=600", "graph")
		g := eval[graphState](b, graphStateJS)
		if g.Nodes != 14 || g.Edges != 14 || g.Empty {
			t.Fatalf("graph has %d nodes, %d edges, empty banner %v; want 14, 14, false", g.Nodes, g.Edges, g.Empty)
		}
		q := api.find("GET", "api/namespaces/graph")
		if len(q) == 0 || !strings.Contains(q[len(q)-1].Query, "graphType=versionedApp") || !strings.Contains(q[len(q)-1].Query, "duration=600s") {
			t.Errorf("graph query %v", q)
		}
		tests := []struct{ id, label, class, notClass string }{
			{"e1", "🔒 4.00rps", "mtls", "failure"},
			{"e2", "0.20rps", "", "mtls"},
			{"e6", "🔒 4.20rps\n7.1%", "degraded", ""},
			{"e9", "🔒 1.40rps\n21.4%", "failure", ""},
			{"e13", "🔒 2.00kps", "tcp", ""},
			{"s-reviews", "⚡ 🔀 ⚖\nreviews", "badge-cb", ""},
			{"s-ratings", "🔀 ⚠\nratings", "badge-fault", "badge-cb"},
			{"a-reviews-v3", "⚡\nreviews v3", "health-failure", ""},
			{"a-legacy", "legacy v1 ⊘", "out-of-mesh", ""},
			{"n-ingress", "istio-ingressgateway", "gateway", ""},
		}
		for _, tc := range tests {
			if g.Labels[tc.id] != tc.label {
				t.Errorf("%s label %q, want %q", tc.id, g.Labels[tc.id], tc.label)
			}
			cls := " " + g.Classes[tc.id] + " "
			if tc.class != "" && !strings.Contains(cls, " "+tc.class+" ") {
				t.Errorf("%s classes %q lack %s", tc.id, g.Classes[tc.id], tc.class)
			}
			if tc.notClass != "" && strings.Contains(cls, " "+tc.notClass+" ") {
				t.Errorf("%s classes %q have %s", tc.id, g.Classes[tc.id], tc.notClass)
			}
		}
		for _, c := range []string{"badge-vs", "badge-shift"} {
			if !strings.Contains(g.Classes["s-reviews"], c) {
				t.Errorf("reviews lacks %s: %q", c, g.Classes["s-reviews"])
			}
		}

		if l := eval[string](b, `document.getElementById('graph-status').dataset.layout`); l != "dagre" {
			t.Errorf("auto layout of bookinfo is %q, want dagre", l)
		}

		// A refresh keeps the layout and drops badges whose flag went away.
		before := eval[map[string]float64](b, `meshlabGraph.getElementById('s-reviews').position()`)
		api.mu.Lock()
		api.dropCB = true
		api.mu.Unlock()
		calls := len(api.find("GET", "api/namespaces/graph"))
		b.do("refresh", chromedp.Click(chromedp.CSS("#refresh-now")))
		b.waitTrue("refreshed", `document.body.dataset.ready === 'graph' && !meshlabGraph.getElementById('s-reviews').hasClass('badge-cb')`)
		if n := len(api.find("GET", "api/namespaces/graph")); n != calls+1 {
			t.Errorf("refresh fetched the graph %d times, want once", n-calls)
		}
		after := eval[map[string]float64](b, `meshlabGraph.getElementById('s-reviews').position()`)
		if before["x"] != after["x"] || before["y"] != after["y"] {
			t.Errorf("refresh moved reviews from %v to %v", before, after)
		}
		if got := eval[string](b, `meshlabGraph.getElementById('s-reviews').data('label')`); got != "🔀 ⚖\nreviews" {
			t.Errorf("after the CB went away reviews is labelled %q", got)
		}
		api.mu.Lock()
		api.dropCB = false
		api.mu.Unlock()
		b.do("refresh back", chromedp.Click(chromedp.CSS("#refresh-now")))
		b.waitTrue("CB back", `meshlabGraph.getElementById('s-reviews').hasClass('badge-cb')`)

		// Edge label modes.
		modes := []struct{ mode, id, want string }{
			{"responseTime", "e1", "🔒 45ms"},
			{"trafficDistribution", "e7", "🔒 33.3%"},
			{"trafficDistribution", "e1", "🔒"},
			{"throughput", "e1", "🔒 1.00kps"},
		}
		for _, m := range modes {
			b.do("edge labels "+m.mode, chromedp.Evaluate[chromedp.Void](`(() => { const s = document.getElementById('edge-labels'); s.value = `+jsString(m.mode)+`; s.dispatchEvent(new Event('change')); })()`))
			if got := eval[string](b, `meshlabGraph.getElementById(`+jsString(m.id)+`).data('label')`); got != m.want {
				t.Errorf("%s label of %s %q, want %q", m.mode, m.id, got, m.want)
			}
		}
		b.do("security off", chromedp.Click(chromedp.CSS("#security")))
		if got := eval[string](b, `meshlabGraph.getElementById('e1').data('label')`); got != "1.00kps" {
			t.Errorf("security off: e1 label %q", got)
		}
		b.do("security on, traffic rate", chromedp.Click(chromedp.CSS("#security")),
			chromedp.Evaluate[chromedp.Void](`(() => { const s = document.getElementById('edge-labels'); s.value = 'trafficRate'; s.dispatchEvent(new Event('change')); })()`))

		// Side panel of an edge with errors.
		b.do("tap edge", chromedp.Evaluate[chromedp.Void](`void meshlabGraph.getElementById('e6').emit('tap')`))
		panel := eval[string](b, `document.getElementById('side-panel').textContent`)
		for _, want := range []string{"503", "UO", "🔒 100%", "spiffe://cluster.local/ns/bookinfo/sa/default", "25ms"} {
			if !strings.Contains(panel, want) {
				t.Errorf("edge panel lacks %q: %s", want, panel)
			}
		}
		b.do("tap unknown node", chromedp.Evaluate[chromedp.Void](`void meshlabGraph.getElementById('n-unknown').emit('tap')`))
		if panel := eval[string](b, `document.getElementById('side-panel').textContent`); !strings.Contains(panel, "no source workload reported") {
			t.Errorf("unknown node panel does not explain it: %s", panel)
		}

		// Traffic animation draws on the overlay while on and clears when off.
		b.expectError("willReadFrequently") // Chromium's hint about the test's own pixel reads
		b.do("animate on", chromedp.Click(chromedp.CSS("#animate")))
		b.waitTrue("animation draws", `(() => { const c = document.getElementById('graph-anim'); if (!c.width) return false;
		  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; for (let i = 3; i < d.length; i += 4) if (d[i]) return true; return false; })()`)
		b.do("select reviews", chromedp.Evaluate[chromedp.Void](`void meshlabGraph.getElementById('s-reviews').select().emit('tap')`))
		b.waitTrue("reviews panel", `document.querySelectorAll('#side-panel .trace-links a').length === 3`)
		if panel := eval[string](b, `document.getElementById('side-panel').textContent`); !strings.Contains(panel, "Circuit breaker") || !strings.Contains(panel, "Traffic shifting") {
			t.Errorf("reviews panel lacks its badges: %s", panel)
		}
		b.screenshot("graph")
		b.do("animate off", chromedp.Click(chromedp.CSS("#animate")))
		if drawn := eval[bool](b, `(() => { const c = document.getElementById('graph-anim'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; for (let i = 3; i < d.length; i += 4) if (d[i]) return true; return false; })()`); drawn {
			t.Errorf("animation overlay not cleared after toggling off")
		}

		// Find highlights matching nodes.
		b.do("find reviews", chromedp.SendKeys(chromedp.CSS("#graph-find"), "reviews"))
		if found := eval[[]string](b, `meshlabGraph.nodes('.found').map(n => n.id()).sort()`); strings.Join(found, ",") != "a-reviews-v1,a-reviews-v2,a-reviews-v3,s-reviews" {
			t.Errorf("find reviews: %v", found)
		}

		// A node's panel lists its latest traces; one opens the trace's timeline.
		b.do("tap productpage", chromedp.Evaluate[chromedp.Void](`void meshlabGraph.getElementById('s-productpage').emit('tap')`))
		b.waitTrue("panel traces", `document.querySelectorAll('#side-panel .trace-links a').length === 3`)
		if q := api.find("GET", "api/namespaces/bookinfo/services/productpage/traces"); len(q) == 0 || !strings.Contains(q[len(q)-1].Query, "limit=5") {
			t.Errorf("panel traces query %v", q)
		}
		b.do("open trace from panel", chromedp.Evaluate[chromedp.Void](`document.body.dataset.ready = ''`),
			chromedp.Click(chromedp.CSS(`#side-panel .trace-links a[data-trace-id="5af7183fb1d4cf5f7d5b2a3c9e1d0a11"]`)),
			chromedp.WaitReady(chromedp.CSS(`body[data-ready="traces"]`)),
			chromedp.WaitReady(chromedp.CSS(`#trace-detail[data-trace-id="5af7183fb1d4cf5f7d5b2a3c9e1d0a11"] .span-row`)))
		b.checkClean()
	})

	// The graph package's golden bookinfo JSON (testdata/graph-golden, copied
	// from lab/console/graph/testdata) renders for every graph type.
	t.Run("graph golden", func(t *testing.T) {
		b.t = t
		for _, gt := range []string{"app", "versionedApp", "workload", "service"} {
			raw, err := os.ReadFile(filepath.Join("testdata", "graph-golden", "bookinfo-"+gt+".json"))
			if err != nil {
				t.Fatal(err)
			}
			var g struct {
				Elements struct {
					Nodes []struct{ Data map[string]any } `json:"nodes"`
					Edges []struct{ Data map[string]any } `json:"edges"`
				} `json:"elements"`
			}
			if err := json.Unmarshal(raw, &g); err != nil {
				t.Fatal(err)
			}
			b.open("#/graph?namespaces=book-demo&graphType="+gt+"&duration=600", "graph")
			got := eval[graphState](b, graphStateJS)
			if got.Nodes != len(g.Elements.Nodes) || got.Edges != len(g.Elements.Edges) || got.Empty {
				t.Errorf("%s: %d nodes, %d edges, empty %v; golden has %d, %d", gt, got.Nodes, got.Edges, got.Empty, len(g.Elements.Nodes), len(g.Elements.Edges))
			}
			for _, e := range g.Elements.Edges {
				id, _ := e.Data["id"].(string)
				mtls, _ := e.Data["isMTLS"].(string)
				locked := strings.HasPrefix(got.Labels[id], "🔒")
				if (mtls != "" && mtls != "0") != locked {
					t.Errorf("%s: edge %s isMTLS %q, label %q", gt, id, mtls, got.Labels[id])
				}
			}
			for _, n := range g.Elements.Nodes {
				id, _ := n.Data["id"].(string)
				if cb, _ := n.Data["hasCB"].(bool); cb != strings.Contains(got.Classes[id], "badge-cb") {
					t.Errorf("%s: node %s hasCB %v, classes %q", gt, id, cb, got.Classes[id])
				}
				if strings.Contains(got.Labels[id], "undefined") || got.Labels[id] == "" {
					t.Errorf("%s: node %s label %q", gt, id, got.Labels[id])
				}
			}
			if gt == "versionedApp" {
				b.screenshot("graph-bookinfo-golden")
			}
		}
		b.checkClean()
	})

	t.Run("graph empty", func(t *testing.T) {
		b.t = t
		b.open("#/graph?namespaces=empty", "graph")
		want := fixtureText(t, "namespaces/graph-empty.json", "emptyReason", "message")
		got := eval[string](b, `(() => { const e = document.getElementById('graph-empty'); return e.hidden ? '' : e.textContent; })()`)
		if !strings.Contains(got, want) {
			t.Errorf("#graph-empty %q does not show %q", got, want)
		}
		b.screenshot("graph-empty")
		b.checkClean()
	})

	t.Run("lists", func(t *testing.T) {
		b.t = t
		for _, tc := range []struct {
			kind string
			rows int
		}{{"applications", 5}, {"workloads", 6}, {"services", 4}} {
			b.open("#/"+tc.kind+"?namespaces=bookinfo", "list")
			if n := eval[int](b, `document.querySelectorAll('.list-row').length`); n != tc.rows {
				t.Errorf("%s: %d rows, want %d", tc.kind, n, tc.rows)
			}
			b.screenshot(tc.kind)
		}
		b.checkClean()
	})

	t.Run("service details and metrics", func(t *testing.T) {
		b.t = t
		b.open("#/namespaces/bookinfo/services/reviews?namespaces=bookinfo", "details")
		if n := eval[int](b, `document.querySelectorAll('.pod-row').length`); n != 3 {
			t.Errorf("%d pod rows, want 3", n)
		}
		if s := eval[string](b, `document.getElementById('tab-body').textContent`); !strings.Contains(s, "not synced") || !strings.Contains(s, "KIA0203") {
			t.Errorf("details overview lacks proxy sync state or validations: %s", s)
		}
		b.screenshot("service-details")
		b.open("#/namespaces/bookinfo/services/reviews?namespaces=bookinfo&tab=Inbound%20Metrics", "details")
		if n := eval[int](b, `document.querySelectorAll('#tab-body figure.chart').length`); n != 7 {
			t.Errorf("%d charts, want 7", n)
		}
		if n := eval[int](b, `[...document.querySelectorAll('#tab-body figure.chart')].filter(f => f.textContent.includes('p99')).length`); n != 1 {
			t.Errorf("duration chart lacks the p99 series")
		}
		b.screenshot("service-metrics")
		b.checkClean()
	})

	t.Run("wizard", func(t *testing.T) {
		b.t = t
		b.open("#/namespaces/bookinfo/services/reviews?namespaces=bookinfo", "details")
		for _, a := range []string{"request_routing", "fault_injection", "traffic_shifting", "tcp_traffic_shifting", "request_timeouts"} {
			if n := eval[int](b, `document.querySelectorAll('[data-wizard="`+a+`"]').length`); n != 1 {
				t.Errorf("no wizard button for %s", a)
			}
		}
		b.do("open wizard", chromedp.Click(chromedp.CSS(`[data-wizard="traffic_shifting"]`)), chromedp.WaitVisible(chromedp.CSS("#wizard[open]")))
		split := eval[[]string](b, `['v1','v2','v3'].map(v => document.querySelector('input[data-weight="' + v + '"]').value)`)
		if strings.Join(split, "/") != "33/33/34" {
			t.Errorf("default split %v, want Kiali's 33/33/34", split)
		}
		if v := eval[string](b, `document.getElementById('wizard-api-version').value`); v != "v1" {
			t.Errorf("API version default %q, want v1", v)
		}
		b.do("set 0/50/50", chromedp.Evaluate[chromedp.Void](`for (const [v, w] of [['v1', 0], ['v2', 50], ['v3', 50]]) {
		  const i = document.querySelector('input[data-weight="' + v + '"]'); i.value = w; i.dispatchEvent(new Event('input')); }`))
		b.do("preview", chromedp.Click(chromedp.CSS("#wizard-preview")))
		b.waitTrue("yaml shown", `document.getElementById('wizard-yaml').textContent.includes('kind: VirtualService')`)
		posts := api.find("POST", "api/meshlab/wizard")
		if len(posts) != 1 {
			t.Fatalf("%d wizard posts, want 1", len(posts))
		}
		var req wizardRequest
		if err := json.Unmarshal(posts[0].Body, &req); err != nil {
			t.Fatal(err)
		}
		got := fmt.Sprintf("%s %s/%s %s %v", req.Action, req.Namespace, req.Service, req.APIVersion, req.Versions)
		if got != "traffic_shifting bookinfo/reviews v1 [v1 v2 v3]" {
			t.Errorf("wizard request %s", got)
		}
		var ws []string
		for _, w := range req.Weights {
			ws = append(ws, fmt.Sprintf("%s=%d", w.Version, w.Weight))
		}
		if strings.Join(ws, ",") != "v1=0,v2=50,v3=50" {
			t.Errorf("posted weights %v, want v1=0,v2=50,v3=50", ws)
		}
		b.screenshot("wizard")

		b.do("apply", chromedp.Click(chromedp.CSS("#wizard-apply")))
		b.waitTrue("applied", `document.getElementById('wizard-result').textContent === 'applied'`)
		applies := api.find("POST", "api/meshlab/apply")
		if len(applies) != 1 {
			t.Fatalf("%d apply posts, want 1", len(applies))
		}
		var applied struct{ YAML string }
		if err := json.Unmarshal(applies[0].Body, &applied); err != nil {
			t.Fatal(err)
		}
		if want := fixtureText(t, "meshlab/wizard.json", "yaml"); applied.YAML != want {
			t.Errorf("applied YAML differs from the preview:\n%s\nwant\n%s", applied.YAML, want)
		}

		// An apply error is shown as the API's text.
		api.mu.Lock()
		api.failApply = `VirtualService/bookinfo/reviews: spec.http[0].route: weights sum to 90, want 100`
		api.mu.Unlock()
		b.do("v1beta1, apply again", chromedp.Evaluate[chromedp.Void](`(() => { const s = document.getElementById('wizard-api-version'); s.value = 'v1beta1'; })()`),
			chromedp.Click(chromedp.CSS("#wizard-apply")))
		b.waitTrue("error shown", `document.getElementById('wizard-result').textContent.includes('weights sum to 90')`)
		if got := eval[string](b, `document.getElementById('wizard-result').textContent`); got != api.failApply {
			t.Errorf("#wizard-result %q, want the API's error text", got)
		}
		b.expectError("status of 400") // the browser logs the intended 400 as a failed resource load
		if posts := api.find("POST", "api/meshlab/wizard"); !bytes.Contains(posts[len(posts)-1].Body, []byte(`"apiVersion":"v1beta1"`)) {
			t.Errorf("API version select not posted: %s", posts[len(posts)-1].Body)
		}

		b.do("delete", chromedp.Click(chromedp.CSS("#wizard-delete")))
		b.waitTrue("deleted", `document.getElementById('wizard-result').textContent === 'deleted'`)
		if n := len(api.find("DELETE", "api/namespaces/bookinfo/services/reviews/wizard")); n != 1 {
			t.Errorf("%d wizard deletes, want 1", n)
		}
		b.do("close", chromedp.Click(chromedp.CSS("#wizard-close")))

		lastWizard := func() wizardRequest {
			posts := api.find("POST", "api/meshlab/wizard")
			var req wizardRequest
			if err := json.Unmarshal(posts[len(posts)-1].Body, &req); err != nil {
				t.Fatal(err)
			}
			return req
		}
		preview := func(what string) {
			n := len(api.find("POST", "api/meshlab/wizard"))
			b.do(what, chromedp.Click(chromedp.CSS("#wizard-preview")))
			b.waitTrue(what+" posted", `document.getElementById('wizard-result').textContent.includes('objects')`)
			if got := len(api.find("POST", "api/meshlab/wizard")); got != n+1 {
				t.Fatalf("%s: %d posts, want 1", what, got-n)
			}
		}

		// Fault injection: Kiali's defaults, abort switched off, delay edited.
		b.do("fault dialog", chromedp.Click(chromedp.CSS(`[data-wizard="fault_injection"]`)), chromedp.WaitVisible(chromedp.CSS("#fault-delay-fixed")))
		if v := eval[string](b, `[document.getElementById('fault-delay-fixed').value, document.getElementById('fault-abort-status').value, document.getElementById('fault-delay-percentage').value].join(' ')`); v != "5s 503 100" {
			t.Errorf("fault defaults %q, want Kiali's 5s 503 100", v)
		}
		b.do("abort off, 2s delay", chromedp.Click(chromedp.CSS("#fault-abort")),
			chromedp.Evaluate[chromedp.Void](`document.getElementById('fault-delay-fixed').value = '2s'`))
		preview("fault preview")
		if req := lastWizard(); req.Action != "fault_injection" || req.Fault == nil || req.Fault.Abort != nil || req.Fault.Delay == nil ||
			req.Fault.Delay.FixedDelay != "2s" || req.Fault.Delay.Percentage != 100 {
			t.Errorf("fault request %s", api.find("POST", "api/meshlab/wizard")[len(api.find("POST", "api/meshlab/wizard"))-1].Body)
		}
		b.do("close fault", chromedp.Click(chromedp.CSS("#wizard-close")))

		// Request timeouts: Kiali's defaults as they stand.
		b.do("timeouts dialog", chromedp.Click(chromedp.CSS(`[data-wizard="request_timeouts"]`)), chromedp.WaitVisible(chromedp.CSS("#timeout")))
		preview("timeouts preview")
		if req := lastWizard(); req.Timeouts == nil || req.Timeouts.Timeout != "2s" || req.Timeouts.Retries == nil ||
			req.Timeouts.Retries.Attempts != 3 || req.Timeouts.Retries.PerTryTimeout != "2s" || req.Timeouts.Retries.RetryOn != "gateway-error,connect-failure,refused-stream" {
			t.Errorf("timeouts request %+v", req.Timeouts)
		}
		b.do("close timeouts", chromedp.Click(chromedp.CSS("#wizard-close")))

		// Advanced options: the outlier policy that puts the CB badge on
		// reviews, with TLS, a consistent-hash balancer, a gateway and a
		// STRICT PeerAuthentication.
		b.do("advanced dialog", chromedp.Click(chromedp.CSS(`[data-wizard="traffic_shifting"]`)), chromedp.WaitReady(chromedp.CSS("details.advanced")),
			chromedp.Evaluate[chromedp.Void](`(() => {
			  document.querySelector('details.advanced').open = true;
			  const set = (id, v) => { const e = document.getElementById(id); e.value = v; e.dispatchEvent(new Event('change')); };
			  const on = (id) => { const e = document.getElementById(id); e.checked = true; e.dispatchEvent(new Event('change')); };
			  set('adv-tls', 'ISTIO_MUTUAL');
			  on('adv-lb'); set('adv-lb-kind', 'header'); set('adv-lb-header', 'x-user');
			  on('adv-od'); set('adv-od-5xx', '1'); set('adv-od-interval', '1s'); set('adv-od-ejection', '3m'); set('adv-od-max-percent', '100');
			  on('adv-gateway'); set('adv-gateway-hosts', 'bookinfo.example.com');
			  on('adv-pa'); set('adv-pa-mode', 'STRICT');
			})()`))
		b.screenshot("wizard-advanced")
		preview("advanced preview")
		adv := lastWizard().Advanced
		switch {
		case adv == nil:
			t.Fatalf("no advanced options posted")
		case adv.TLS == nil || adv.TLS.Mode != "ISTIO_MUTUAL":
			t.Errorf("tls %+v", adv.TLS)
		case adv.LoadBalancer == nil || adv.LoadBalancer.ConsistentHash == nil || adv.LoadBalancer.ConsistentHash.HTTPHeaderName != "x-user":
			t.Errorf("load balancer %+v", adv.LoadBalancer)
		case adv.OutlierDetection == nil || *adv.OutlierDetection != struct {
			Consecutive5xxErrors uint32 `json:"consecutive5xxErrors"`
			Interval             string `json:"interval,omitempty"`
			BaseEjectionTime     string `json:"baseEjectionTime,omitempty"`
			MaxEjectionPercent   int32  `json:"maxEjectionPercent,omitempty"`
		}{1, "1s", "3m", 100}:
			t.Errorf("outlier detection %+v", adv.OutlierDetection)
		case adv.ConnectionPool != nil:
			t.Errorf("connection pool posted though not chosen: %+v", adv.ConnectionPool)
		case adv.Gateway == nil || !adv.Gateway.Mesh || adv.Gateway.Port != 80 || len(adv.Gateway.Hosts) != 1 || adv.Gateway.Hosts[0] != "bookinfo.example.com":
			t.Errorf("gateway %+v", adv.Gateway)
		case adv.PeerAuthentication == nil || adv.PeerAuthentication.Mode != "STRICT":
			t.Errorf("peer authentication %+v", adv.PeerAuthentication)
		}
		b.do("close advanced", chromedp.Click(chromedp.CSS("#wizard-close")))

		// Request routing: end-user jason goes to v2.
		b.do("routing dialog", chromedp.Click(chromedp.CSS(`[data-wizard="request_routing"]`)), chromedp.WaitVisible(chromedp.CSS("#wizard-add-rule")))
		b.do("match jason", chromedp.Click(chromedp.CSS(".rule button")), chromedp.Evaluate[chromedp.Void](`(() => {
		  const r = document.querySelector('.match-row');
		  r.querySelector('.match-name').value = 'end-user';
		  r.querySelector('.match-value').value = 'jason';
		  for (const [v, w] of [['v1', 0], ['v2', 100], ['v3', 0]]) { const i = document.querySelector('input[data-weight="' + v + '"]'); i.value = w; i.dispatchEvent(new Event('input')); }
		})()`))
		preview("routing preview")
		req = lastWizard()
		// Every version's weight is posted, 0 too: Kiali writes a weight-0
		// destination as the walkthrough prints it.
		if len(req.Rules) != 1 || len(req.Rules[0].Matches) != 1 || len(req.Rules[0].Weights) != 3 || req.Rules[0].Weights[1].Weight != 100 {
			t.Fatalf("routing rules %+v", req.Rules)
		}
		if m := req.Rules[0].Matches[0]; m.Field != "headers" || m.Name != "end-user" || m.Op != "exact" || m.Value != "jason" {
			t.Errorf("routing match %+v", m)
		}
		if w := req.Rules[0].Weights[1]; w.Version != "v2" || w.Weight != 100 {
			t.Errorf("routing weight %+v", w)
		}
		b.do("close routing", chromedp.Click(chromedp.CSS("#wizard-close")))
		b.checkClean()
	})

	t.Run("workload tabs", func(t *testing.T) {
		b.t = t
		b.open("#/namespaces/bookinfo/workloads/reviews-v1?namespaces=bookinfo&tab=Logs", "details")
		b.waitTrue("logs", `document.getElementById('logs').textContent.includes('GET /reviews/0 200')`)
		if q := api.find("GET", "api/namespaces/bookinfo/pods/reviews-v1-7d8f9c-abcde/logs"); len(q) != 1 || !strings.Contains(q[0].Query, "container=reviews") {
			t.Errorf("logs queries %v", q)
		}
		b.do("envoy tab", chromedp.Click(chromedp.CSS(`.tab[data-tab="Envoy"]`)))
		b.waitTrue("listeners", `document.querySelectorAll('#envoy-out .envoy-row').length === 2`)
		if got := eval[string](b, `document.querySelector('#envoy-out .envoy-row').textContent`); got != "0.0.0.0_90800.0.0.090802" {
			t.Errorf("listener row %q", got)
		}
		// Each section as proxy-config shows it; clusters come in protojson's camelCase.
		for _, tc := range []struct{ tab, row string }{
			{"clusters", "outbound|9080|v1|reviews.bookinfo.svc.cluster.localoutbound9080v1reviews.bookinfo.svc.cluster.localEDS"},
			{"routes", "9080reviews.bookinfo.svc.cluster.local:9080reviews.bookinfo.svc.cluster.local, reviews, reviews.bookinfo/*outbound|9080|v2|reviews.bookinfo.svc.cluster.local 50%, outbound|9080|v3|reviews.bookinfo.svc.cluster.local 50%"},
			{"endpoints", "10.0.0.10:9080HEALTHYoutbound|9080|v1|reviews.bookinfo.svc.cluster.local"},
			{"secrets", "defaultCert Chain2026-12-06T22:00:00Z2026-12-06T22:00:00Z"},
		} {
			b.do(tc.tab, chromedp.Click(chromedp.CSS(`.tab[data-tab="`+tc.tab+`"]`)))
			b.waitTrue(tc.tab, `document.querySelector('#envoy-out .envoy-row') !== null && document.querySelector('#envoy-out details.raw pre').textContent.includes('`+tc.tab[:len(tc.tab)-1]+`')`)
			if got := eval[[]string](b, `[...document.querySelectorAll('#envoy-out .envoy-row')].map(r => r.textContent)`); !slices.Contains(got, tc.row) {
				t.Errorf("%s rows %q lack %q", tc.tab, got, tc.row)
			}
		}
		b.screenshot("workload-envoy")
		b.do("traffic tab", chromedp.Click(chromedp.CSS(`.tab[data-tab="Traffic"]`)))
		b.waitTrue("traffic", `document.getElementById('tab-body').textContent.includes('productpage-v1') && document.getElementById('tab-body').textContent.includes('🔒')`)
		if s := eval[string](b, `document.getElementById('tab-body').innerText`); strings.Contains(s, "null") || strings.Contains(s, "undefined") {
			t.Errorf("the Traffic tab prints null/undefined: %q", s)
		}
		if n := eval[int](b, `document.querySelectorAll('#mini-graph canvas').length`); n == 0 {
			t.Errorf("the Traffic tab draws no graph")
		}
		b.screenshot("workload-traffic")
		b.checkClean()
	})

	t.Run("traces", func(t *testing.T) {
		b.t = t
		b.open("#/traces?namespace=bookinfo&service=productpage", "traces")
		ids := eval[[]string](b, `[...document.querySelectorAll('.trace-row[data-trace-id]')].map(r => r.dataset.traceId)`)
		if len(ids) != 3 {
			t.Fatalf("trace rows %v, want 3", ids)
		}
		if n := eval[int](b, `document.querySelectorAll('svg.scatter circle.dot.error').length`); n != 1 {
			t.Errorf("%d red dots, want 1 (one trace has an error)", n)
		}
		b.do("open trace", chromedp.Click(chromedp.CSS(`.trace-row[data-trace-id="5af7183fb1d4cf5f7d5b2a3c9e1d0a11"]`)),
			chromedp.WaitReady(chromedp.CSS(`#trace-detail[data-trace-id="5af7183fb1d4cf5f7d5b2a3c9e1d0a11"] .span-row`)))
		if n := eval[int](b, `document.querySelectorAll('#trace-detail .span-row').length`); n != 7 {
			t.Errorf("%d span rows, want 7", n)
		}
		if n := eval[int](b, `document.querySelectorAll('#trace-detail .span-row.error').length`); n != 2 {
			t.Errorf("%d error spans, want 2", n)
		}
		b.do("span tags", chromedp.Click(chromedp.CSS(`#trace-detail .span-row[data-span-id="a5"]`)))
		tags := eval[string](b, `(() => { const r = document.querySelector('#trace-detail .span-row[data-span-id="a5"]').nextElementSibling; return r.hidden ? '' : r.textContent; })()`)
		if !strings.Contains(tags, "response_flags") || !strings.Contains(tags, "UO") {
			t.Errorf("span tags not shown: %q", tags)
		}
		b.do("keyboard opens a trace", chromedp.Evaluate[chromedp.Void](`document.querySelector('.trace-row[data-trace-id="6c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f"]').focus()`),
			chromedp.KeyEvent(kb.Enter),
			chromedp.WaitReady(chromedp.CSS(`#trace-detail[data-trace-id="6c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f"] .span-row`)))
		b.do("back to the error trace", chromedp.Click(chromedp.CSS(`.trace-row[data-trace-id="5af7183fb1d4cf5f7d5b2a3c9e1d0a11"]`)),
			chromedp.WaitReady(chromedp.CSS(`#trace-detail[data-trace-id="5af7183fb1d4cf5f7d5b2a3c9e1d0a11"] .span-row`)),
			chromedp.Click(chromedp.CSS(`#trace-detail .span-row[data-span-id="a5"]`)))
		b.screenshot("traces")
		b.checkClean()
	})

	t.Run("istio config", func(t *testing.T) {
		b.t = t
		b.open("#/istio?namespaces=bookinfo", "istio")
		if n := eval[int](b, `document.querySelectorAll('.config-row[data-key]').length`); n != 4 {
			t.Errorf("%d config rows, want 4", n)
		}
		valid := eval[map[string]string](b, `Object.fromEntries([...document.querySelectorAll('.config-row')].map(r => [r.dataset.key, r.querySelector('.validation').dataset.valid]))`)
		if valid["VirtualService/bookinfo/reviews"] != "false" || valid["DestinationRule/bookinfo/reviews"] != "true" {
			t.Errorf("validation states %v", valid)
		}
		b.do("only findings", chromedp.Click(chromedp.CSS("#config-invalid")))
		if shown := eval[[]string](b, `[...document.querySelectorAll('.config-row')].filter(r => !r.hidden).map(r => r.dataset.key)`); strings.Join(shown, ",") != "DestinationRule/bookinfo/reviews,VirtualService/bookinfo/reviews" {
			t.Errorf("rows with findings %v", shown)
		}
		b.do("all again", chromedp.Click(chromedp.CSS("#config-invalid")))
		b.do("open VS", chromedp.Click(chromedp.CSS(`.config-row[data-key="VirtualService/bookinfo/reviews"]`)), chromedp.WaitReady(chromedp.CSS("#config-yaml")))
		editor := eval[string](b, `document.querySelector('.config-editor').textContent`)
		for _, want := range []string{"KIA1107", "IST0101"} {
			if !strings.Contains(editor, want) {
				t.Errorf("editor lacks %s", want)
			}
		}
		b.do("edit and apply", chromedp.Evaluate[chromedp.Void](`document.getElementById('config-yaml').value += '  gateways:\n  - mesh\n'`), chromedp.Click(chromedp.CSS("#config-apply")))
		b.waitTrue("applied", `document.getElementById('config-result').textContent === 'applied'`)
		puts := api.find("PUT", "api/namespaces/bookinfo/istio/VirtualService/reviews")
		if len(puts) != 1 || !bytes.HasSuffix(puts[0].Body, []byte("  gateways:\n  - mesh\n")) || !bytes.HasPrefix(puts[0].Body, []byte("apiVersion: networking.istio.io/v1\n")) {
			t.Errorf("PUT bodies %q", puts)
		}
		b.screenshot("istio-config")
		b.checkClean()
	})

	t.Run("mesh", func(t *testing.T) {
		b.t = t
		b.open("#/mesh", "mesh")
		if n := eval[int](b, `document.querySelectorAll('.component-row').length`); n != 5 {
			t.Errorf("%d components, want 5", n)
		}
		if n := eval[int](b, `document.querySelectorAll('.proxy-row').length`); n != 3 {
			t.Errorf("%d proxies, want 3", n)
		}
		if st := eval[string](b, `[...document.querySelectorAll('td[data-xds="RDS"]')].map(td => td.dataset.state).join(',')`); st != "SYNCED,SYNCED,STALE" {
			t.Errorf("RDS states %q", st)
		}
		b.screenshot("mesh")
		b.checkClean()
	})
}

func TestBrowserTokenLogin(t *testing.T) {
	api := &fixtureAPI{t: t, tokenAuth: true}
	b := newBrowser(t, api)
	b.open("#/overview", "login")
	b.screenshot("login")
	b.do("wrong token", chromedp.SendKeys(chromedp.CSS("#login-token"), "nope"), chromedp.Click(chromedp.CSS("#login-submit")))
	b.waitTrue("refused", `document.getElementById('login-result').textContent.includes('token refused')`)
	b.expectError("status of 401") // the browser logs the intended 401 as a failed resource load
	b.do("right token", chromedp.Evaluate[chromedp.Void](`document.getElementById('login-token').value = 's3cret'`), chromedp.Click(chromedp.CSS("#login-submit")))
	b.do("overview after login", chromedp.WaitReady(chromedp.CSS(`body[data-ready="overview"]`)))
	if n := len(api.find("GET", "api/overview")); n != 1 {
		t.Errorf("overview fetched %d times after login, want 1", n)
	}
	b.do("log out", chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitReady(chromedp.CSS(`body[data-ready="login"]`)))
	if n := len(api.find("GET", "api/logout")); n != 1 {
		t.Errorf("logout called %d times, want 1", n)
	}
	b.checkClean()
}
