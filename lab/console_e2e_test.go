package lab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"sigs.k8s.io/yaml"

	"github.com/meshlab/meshlab/lab/labtest"
)

// TestConsole is the walkthrough's Kiali chapter on a real local lab, in
// headless Chromium: the console on its published port under the
// walkthrough's web_root, the live bookinfo graph from the lab's own
// Prometheus, the reviews 0/50/50 split made with the wizard (its YAML is
// the walkthrough's, and afterwards no request reaches v1), the
// circuit-breaker badge once a DestinationRule has an outlier policy, locks
// on every edge after PeerAuthentication STRICT, a trace opened with its
// spans, the reason an empty graph is empty, and the console through the
// gateway. MESHLAB_SCREENSHOTS=DIR writes a screenshot of each page there
// (docs/console/ holds the README's).
func TestConsole(t *testing.T) {
	labtest.Skip(t)
	b := labtest.NewBrowser(t)
	l := labtest.New(t, "..")
	const httpPort, kialiPort = "18095", "20011"
	const webRoot = "/dashboards/kiali"
	l.MustRun("up", "--bookinfo-namespace", "book-demo", "--http-port", httpPort, "--https-port", "18455",
		"--api-port", "25025", "--prometheus-port", "19092", "--zipkin-port", "19413",
		"--kiali-port", kialiPort, "--kiali-web-root", webRoot)
	console := "http://127.0.0.1:" + kialiPort + webRoot + "/"
	gateway := "http://127.0.0.1:" + httpPort
	shots := os.Getenv("MESHLAB_SCREENSHOTS")

	// Bookinfo traffic through the gateway for the whole test, as the
	// walkthrough's loop makes it.
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			_, _ = httpGet(gateway+"/productpage", nil)
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { stop(); wg.Wait() })

	graphURL := console + "api/namespaces/graph?namespaces=book-demo&graphType=versionedApp&duration=60s"
	t.Run("graph api", func(t *testing.T) {
		want := []string{
			"app istio-ingressgateway latest -> service productpage", // no version label: Istio's canonical revision "latest"
			"service productpage -> app productpage v1",
			"app productpage v1 -> service details", "service details -> app details v1",
			"app productpage v1 -> service reviews",
			"service reviews -> app reviews v1", "service reviews -> app reviews v2", "service reviews -> app reviews v3",
			"app reviews v2 -> service ratings", "app reviews v3 -> service ratings", "service ratings -> app ratings v1",
		}
		poll(t, "bookinfo's edges with rates in the console's graph", 120*time.Second, func() (bool, string) {
			g, err := getGraph(graphURL)
			if err != nil {
				return false, err.Error()
			}
			have := g.edgeNames(func(e graphEdge) bool { return e.rate("http") > 0 })
			for _, w := range want {
				if !have[w] {
					return false, fmt.Sprintf("no edge %q with a rate in %v", w, keys(have))
				}
			}
			return true, ""
		})
		// A figure for docs/BENCHMARKS.md, not an assertion.
		start := time.Now()
		if _, err := getGraph(graphURL); err != nil {
			t.Fatal(err)
		}
		t.Logf("bookinfo graph API answered in %s", time.Since(start))
	})

	t.Run("graph page", func(t *testing.T) {
		start := time.Now()
		b.Do(t, "graph page", chromedp.Navigate(console+"#/graph?namespaces=book-demo&graphType=versionedApp&duration=60"),
			labtest.WaitReady("graph"))
		nodes := labtest.Eval[[]string](t, b, `meshlabGraph.nodes().map(n => n.data('nodeType') + ' ' + (n.data('app') || n.data('service') || n.data('workload')) + ' ' + (n.data('version') || '')).map(s => s.trim())`)
		t.Logf("graph page loaded and drawn in %s", time.Since(start))
		for _, w := range []string{"app productpage v1", "app reviews v1", "app reviews v2", "app reviews v3", "app ratings v1", "app details v1", "service reviews"} {
			if !slices.Contains(nodes, w) {
				t.Errorf("the drawn graph has no node %q: %v", w, nodes)
			}
		}
		b.Do(t, "screenshot", labtest.Screenshot(shots, "graph"))
	})

	t.Run("overview", func(t *testing.T) {
		b.Do(t, "overview", chromedp.Navigate(console+"#/overview"), labtest.WaitReady("overview"))
		cards := labtest.Eval[int](t, b, `document.querySelectorAll('.ns-card[data-namespace="book-demo"]').length`)
		if cards != 1 {
			t.Errorf("overview shows %d cards for book-demo, want 1", cards)
		}
	})

	t.Run("wizard 0/50/50", func(t *testing.T) {
		b.Do(t, "request routing wizard on reviews",
			chromedp.Navigate(console+"#/namespaces/book-demo/services/reviews"), labtest.WaitReady("details"),
			chromedp.Click(chromedp.CSS(`[data-wizard="request_routing"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#wizard`)),
			setInput(`#wizard-api-version`, "v1beta1"),
			setInput(`input[data-weight="v1"]`, "0"),
			setInput(`input[data-weight="v2"]`, "50"),
			setInput(`input[data-weight="v3"]`, "50"),
			chromedp.Click(chromedp.CSS(`#wizard-preview`)),
			labtest.WaitJS(`document.querySelector('#wizard-yaml').textContent.includes('kind')`),
			labtest.Screenshot(shots, "wizard"))
		yamlText := labtest.Eval[string](t, b, `document.querySelector('#wizard-yaml').textContent`)
		// The walkthrough prints what Kiali 1.80 made of this split.
		if err := sameObjects(yamlText, walkthroughSplit); err != nil {
			t.Fatalf("the wizard's YAML is not the walkthrough's: %v\n%s", err, yamlText)
		}
		b.Do(t, "apply", chromedp.Click(chromedp.CSS(`#wizard-apply`)),
			labtest.WaitJS(`document.querySelector('#wizard-result.ok, #wizard-result.bad') !== null`))
		result := labtest.Eval[string](t, b, `document.querySelector('#wizard-result').textContent`)
		if !strings.Contains(result, "applied") {
			t.Fatalf("wizard apply: %q", result)
		}
		// Once the proxies have it, no request reaches v1.
		poll(t, "20 requests in a row to v2 or v3", 60*time.Second, func() (bool, string) {
			for i := range 20 {
				body, err := httpGet(gateway+"/productpage", nil)
				if err != nil {
					return false, err.Error()
				}
				if v := reviewsVersion(body); v != "v2" && v != "v3" {
					return false, fmt.Sprintf("request %d reached reviews %s", i, v)
				}
			}
			return true, ""
		})
		seen := map[string]int{}
		for range 100 {
			body, err := httpGet(gateway+"/productpage", nil)
			if err != nil {
				t.Fatal(err)
			}
			seen[reviewsVersion(body)]++
		}
		if seen["v1"] != 0 || seen["v2"] == 0 || seen["v3"] == 0 {
			t.Errorf("after the 0/50/50 split, 100 requests reached reviews %v; want v2 and v3 only", seen)
		}
	})

	t.Run("circuit breaker badge", func(t *testing.T) {
		// The walkthrough's circuit breaker: the wizard's DestinationRule
		// with an outlier policy.
		applyYAML(t, l, `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: book-demo, labels: {kiali_wizard: request_routing}}
spec:
  host: reviews.book-demo.svc.cluster.local
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 3m, maxEjectionPercent: 100}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
`)
		poll(t, "hasCB on the reviews service node", 30*time.Second, func() (bool, string) {
			g, err := getGraph(graphURL)
			if err != nil {
				return false, err.Error()
			}
			for _, n := range g.Elements.Nodes {
				if n.Data.NodeType == "service" && n.Data.Service == "reviews" {
					return n.Data.HasCB, fmt.Sprintf("reviews: %+v", n.Data)
				}
			}
			return false, "no reviews service node"
		})
		b.Do(t, "badge drawn", chromedp.Navigate(console+"#/graph?namespaces=book-demo&graphType=versionedApp&duration=60&t=cb"),
			labtest.WaitReady("graph"), labtest.Screenshot(shots, "graph-circuit-breaker"))
		badged := labtest.Eval[[]string](t, b, `meshlabGraph.nodes('.badge-cb').map(n => n.data('service') || n.data('app'))`)
		if !slices.Contains(badged, "reviews") {
			t.Errorf("nodes with the circuit-breaker badge: %v; want reviews", badged)
		}
	})

	t.Run("mtls locks", func(t *testing.T) {
		applyYAML(t, l, `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: book-demo}
spec: {mtls: {mode: STRICT}}
`)
		poll(t, "every bookinfo edge with mTLS traffic", 90*time.Second, func() (bool, string) {
			g, err := getGraph(graphURL)
			if err != nil {
				return false, err.Error()
			}
			plain := g.edgeNames(func(e graphEdge) bool { return e.rate("http") > 0 && e.Data.IsMTLS == "" })
			if len(plain) > 0 {
				return false, fmt.Sprintf("edges without mTLS: %v", keys(plain))
			}
			return true, ""
		})
		b.Do(t, "locks drawn", chromedp.Navigate(console+"#/graph?namespaces=book-demo&graphType=versionedApp&duration=60&t=mtls"),
			labtest.WaitReady("graph"), labtest.Screenshot(shots, "graph-mtls"))
		locked := labtest.Eval[int](t, b, `meshlabGraph.edges('.mtls').filter(e => String(e.style('label')).includes('🔒')).length`)
		all := labtest.Eval[int](t, b, `meshlabGraph.edges().length`)
		if all == 0 || locked != all {
			t.Errorf("%d of %d edges drawn with a lock; want all", locked, all)
		}
		// The console reads the mesh at most every few seconds, as Kiali
		// caches it.
		poll(t, "book-demo's overview card with a STRICT lock", 30*time.Second, func() (bool, string) {
			b.Do(t, "overview lock", chromedp.Navigate(console+"#/overview?t="+time.Now().Format("150405.000")), labtest.WaitReady("overview"))
			mode := labtest.Eval[string](t, b, `document.querySelector('.ns-card[data-namespace="book-demo"] .mtls-lock').dataset.mode`)
			return mode == "STRICT", "mode " + mode
		})
		b.Do(t, "screenshot", labtest.Screenshot(shots, "overview"))
	})

	t.Run("trace", func(t *testing.T) {
		b.Do(t, "open a trace", chromedp.Navigate(console+"#/traces?namespace=book-demo&service=productpage"),
			labtest.WaitReady("traces"),
			chromedp.WaitVisible(chromedp.CSS(`.trace-row`)),
			// The newest trace may still have spans in the proxies' report
			// buffers (flushed every 5 s); the oldest listed is complete.
			chromedp.Evaluate[chromedp.Void](`[...document.querySelectorAll('.trace-row')].pop().click()`),
			chromedp.WaitVisible(chromedp.CSS(`#trace-detail .span-row`)),
			labtest.Screenshot(shots, "trace"))
		spans := labtest.Eval[int](t, b, `document.querySelectorAll('#trace-detail .span-row').length`)
		// Gateway, productpage, details, reviews (and ratings): each hop is a
		// client and a server span.
		if spans < 6 {
			t.Errorf("the opened trace shows %d spans, want at least 6", spans)
		}
	})

	t.Run("empty graph says why", func(t *testing.T) {
		g, err := getGraph(console + "api/namespaces/graph?namespaces=default&graphType=versionedApp&duration=60s")
		if err != nil {
			t.Fatal(err)
		}
		if g.EmptyReason == nil || g.EmptyReason.Message == "" {
			t.Fatalf("the graph of default (no sidecars, no traffic) gives no reason: %+v", g)
		}
		b.Do(t, "empty graph page", chromedp.Navigate(console+"#/graph?namespaces=default&graphType=versionedApp&duration=60"),
			labtest.WaitReady("graph"))
		shown := labtest.Eval[string](t, b, `document.querySelector('#graph-empty').textContent`)
		if !strings.Contains(shown, g.EmptyReason.Message) {
			t.Errorf("the page shows %q, want the reason %q", shown, g.EmptyReason.Message)
		}
	})

	t.Run("pages", func(t *testing.T) {
		for _, p := range []struct{ route, ready, shot string }{
			{"#/applications", "list", "applications"},
			{"#/namespaces/book-demo/applications/reviews", "details", "application-reviews"},
			{"#/istio", "istio", "istio-config"},
			{"#/mesh", "mesh", "mesh"},
		} {
			b.Do(t, p.route, chromedp.Navigate(console+p.route), labtest.WaitReady(p.ready), labtest.Screenshot(shots, p.shot))
		}
		b.Do(t, "istio config rows", chromedp.Navigate(console+"#/istio?t=rows"), labtest.WaitReady("istio"))
		rows := labtest.Eval[int](t, b, `document.querySelectorAll('.config-row[data-key="VirtualService/book-demo/reviews"]').length`)
		if rows != 1 {
			t.Errorf("Istio Config lists VirtualService/book-demo/reviews %d times, want once", rows)
		}
	})

	t.Run("through the gateway", func(t *testing.T) {
		applyFile(t, l, filepath.Join("..", "samples", "console", "kiali-gateway.yaml"))
		poll(t, "the console under "+webRoot+" through the gateway", 30*time.Second, func() (bool, string) {
			body, err := httpGet(gateway+webRoot+"/api/namespaces", nil)
			if err != nil {
				return false, err.Error()
			}
			return strings.Contains(body, `"book-demo"`), body
		})
	})

	t.Run("wizard delete", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodDelete, console+"api/namespaces/book-demo/services/reviews/wizard", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("delete the wizard's objects: %s", resp.Status)
		}
		if out := mustRun(t, l, "get", "virtualservices,destinationrules", "-n", "book-demo"); strings.Contains(out, "reviews") {
			t.Errorf("the wizard's objects are still there:\n%s", out)
		}
	})
}

const walkthroughSplit = `kind: DestinationRule
apiVersion: networking.istio.io/v1beta1
metadata:
  namespace: book-demo
  name: reviews
  labels:
    kiali_wizard: request_routing
  annotations: ~
spec:
  host: reviews.book-demo.svc.cluster.local
  subsets:
    - name: v1
      labels:
        version: v1
    - name: v2
      labels:
        version: v2
    - name: v3
      labels:
        version: v3
  trafficPolicy: ~
---
kind: VirtualService
apiVersion: networking.istio.io/v1beta1
metadata:
  namespace: book-demo
  name: reviews
  labels:
    kiali_wizard: request_routing
spec:
  hosts:
    - reviews.book-demo.svc.cluster.local
  gateways: ~
  http:
    - route:
        - destination:
            host: reviews.book-demo.svc.cluster.local
            subset: v1
          weight: 0
        - destination:
            host: reviews.book-demo.svc.cluster.local
            subset: v2
          weight: 50
        - destination:
            host: reviews.book-demo.svc.cluster.local
            subset: v3
          weight: 50
`

// sameObjects compares two multi-document YAML texts as objects, nulls
// dropped (the walkthrough prints Kiali's empty fields as ~).
func sameObjects(got, want string) error {
	parse := func(s string) ([]any, error) {
		var out []any
		for _, doc := range strings.Split(s, "\n---") {
			if strings.TrimSpace(strings.Trim(doc, "-\n")) == "" {
				continue
			}
			var v any
			if err := yaml.Unmarshal([]byte(doc), &v); err != nil {
				return nil, err
			}
			out = append(out, dropNulls(v))
		}
		return out, nil
	}
	g, err := parse(got)
	if err != nil {
		return fmt.Errorf("parse the wizard's YAML: %w", err)
	}
	w, err := parse(want)
	if err != nil {
		return err
	}
	if !reflect.DeepEqual(g, w) {
		gj, _ := json.Marshal(g)
		wj, _ := json.Marshal(w)
		return fmt.Errorf("got %s\nwant %s", gj, wj)
	}
	return nil
}

func dropNulls(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if e == nil {
				delete(x, k)
				continue
			}
			x[k] = dropNulls(e)
		}
	case []any:
		for i := range x {
			x[i] = dropNulls(x[i])
		}
	}
	return v
}

// setInput sets an input's value as a person typing would, so the page's
// input handlers see it.
func setInput(sel, value string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => { const e = document.querySelector(%q); e.value = %q;
		e.dispatchEvent(new Event('input', {bubbles: true})); e.dispatchEvent(new Event('change', {bubbles: true})); return true })()`, sel, value))
}

func applyYAML(t *testing.T, l *labtest.Lab, doc string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "apply.yaml")
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	applyFile(t, l, f)
}

func applyFile(t *testing.T, l *labtest.Lab, f string) {
	t.Helper()
	mustRun(t, l, "apply", "-f", f, "--wait")
}

// graphJSON is the part of Kiali's cytoscape JSON the test reads.
type graphJSON struct {
	Elements struct {
		Nodes []struct {
			Data graphNode `json:"data"`
		} `json:"nodes"`
		Edges []graphEdge `json:"edges"`
	} `json:"elements"`
	EmptyReason *struct {
		Code, Message string
	} `json:"emptyReason"`
}

type graphNode struct {
	ID       string `json:"id"`
	NodeType string `json:"nodeType"`
	App      string `json:"app"`
	Version  string `json:"version"`
	Service  string `json:"service"`
	Workload string `json:"workload"`
	HasCB    bool   `json:"hasCB"`
}

type graphEdge struct {
	Data struct {
		Source  string `json:"source"`
		Target  string `json:"target"`
		IsMTLS  string `json:"isMTLS"`
		Traffic struct {
			Rates map[string]string `json:"rates"`
		} `json:"traffic"`
	} `json:"data"`
}

func (e graphEdge) rate(k string) float64 {
	var f float64
	_, _ = fmt.Sscan(e.Data.Traffic.Rates[k], &f)
	return f
}

func (g graphJSON) edgeNames(keep func(graphEdge) bool) map[string]bool {
	name := map[string]string{}
	for _, n := range g.Elements.Nodes {
		d := n.Data
		switch d.NodeType {
		case "service":
			name[d.ID] = "service " + d.Service
		case "app":
			name[d.ID] = strings.TrimSpace("app " + d.App + " " + d.Version)
		default:
			name[d.ID] = strings.TrimSpace(d.NodeType + " " + d.Workload)
		}
	}
	out := map[string]bool{}
	for _, e := range g.Elements.Edges {
		if keep(e) {
			out[name[e.Data.Source]+" -> "+name[e.Data.Target]] = true
		}
	}
	return out
}

func getGraph(u string) (graphJSON, error) {
	var g graphJSON
	err := getJSON(u, &g)
	return g, err
}

func keys(m map[string]bool) []string { return slices.Sorted(maps.Keys(m)) }
