package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/meshlab/meshlab/lab/labtest"
)

// ConsoleResult is what the console costs (issue 13): its Go benchmarks
// (graph build, API, pages, the UI in headless Chromium), the size of its
// embedded UI, and the console of a real bookinfo lab.
type ConsoleResult struct {
	Measured time.Time `json:"measured"`
	// Raw is the results file of that run, when merged into another's.
	Raw string `json:"raw,omitempty"`
	// Loaded is the run's Machine.Loaded, kept when merged into another's.
	Loaded     bool          `json:"loaded,omitempty"`
	Commands   []string      `json:"commands"`
	GoBenchRaw string        `json:"goBenchRaw,omitempty"`
	GoBench    []GoBenchmark `json:"goBench,omitempty"`
	// AssetBytes and AssetGzipBytes are lab/console/web's embedded UI, as
	// stored and as served to a browser that takes gzip (files gzip does
	// not shrink count raw).
	AssetBytes     int         `json:"assetBytes,omitempty"`
	AssetGzipBytes int         `json:"assetGzipBytes,omitempty"`
	Lab            *ConsoleLab `json:"lab,omitempty"`
}

// ConsoleLab is the console pod of a local bookinfo lab under a request
// loop through the gateway.
type ConsoleLab struct {
	Namespace      string  `json:"namespace"`
	TrafficSeconds float64 `json:"trafficSecondsBeforeCalls"`
	TrafficRPS     float64 `json:"trafficRPS"`
	// The graph API: sequential calls on one keep-alive connection.
	Calls    int       `json:"calls"`
	APIP50ms float64   `json:"apiP50ms"`
	APIP99ms float64   `json:"apiP99ms"`
	APIMaxms float64   `json:"apiMaxms"`
	APIms    []float64 `json:"apiSamplesMs"`
	Nodes    int       `json:"nodes"`
	Edges    int       `json:"edges"`
	// The graph page: navigation → body[data-ready=graph], each load in
	// a fresh Chromium (empty profile, so nothing cached).
	PageMs    []float64 `json:"pageLoadSamplesMs"`
	PageP50ms float64   `json:"pageLoadP50ms"`
	// The console process after the calls and page loads: VmRSS, VmHWM
	// (reset once the lab was up), Pss and RssAnon.
	RSSMB     float64 `json:"rssMB"`
	PeakRSSMB float64 `json:"peakRSSMB"`
	PssMB     float64 `json:"pssMB"`
	AnonMB    float64 `json:"anonMB"`
}

const (
	consoleNS       = "bookinfo"
	consolePort     = 20021 // the lab's console on the host; not 20001, a person's lab's
	consoleWebRoot  = "/kiali"
	consoleCalls    = 50
	consolePages    = 5
	consoleTraffic  = 60 * time.Second
	consoleInterval = 100 * time.Millisecond // 10 rps
)

// consoleBenchPackages hold the console's benchmarks: graph.Build on
// bookinfo and on 1,000 services, the HTTP API and pages, health and
// validations, and the UI in headless Chromium (web; skipped without
// /usr/bin/chromium).
var consoleBenchPackages = []string{"./lab/console/..."}

// consoleBench runs the Go benchmarks, then, holding the pod network, the
// real lab's part; lab false leaves the lab out (-console-lab=false).
func (h *harness) consoleBench(ctx context.Context, wait time.Duration, lab bool) error {
	res := &ConsoleResult{Measured: time.Now().UTC()}
	h.res.Console = res
	err := h.consoleGoBench(ctx, res)
	if ctx.Err() != nil {
		return err
	}
	if !lab {
		return err
	}
	return errors.Join(err, withLab(ctx, wait, func(ctx context.Context) error { return h.consoleLab(ctx, res) }))
}

var assetLine = regexp.MustCompile(`embedded UI: (\d+) bytes, (\d+) bytes as served gzipped`)

func (h *harness) consoleGoBench(ctx context.Context, res *ConsoleResult) error {
	args := h.goBenchArgs(consoleBenchPackages...)
	res.Commands = append(res.Commands, "go "+shellJoin(args))
	raw, bs, err := h.runGoBench(ctx, "gobench-console", args)
	res.GoBenchRaw, res.GoBench = raw, bs
	// The web package's asset-budget test knows what the UI embeds, raw
	// and as served; it logs both.
	targs := []string{"test", "-count=1", "-run", "^TestAssetBudget$", "-v", "./lab/console/web/"}
	res.Commands = append(res.Commands, "go "+shellJoin(targs))
	cmd := exec.CommandContext(ctx, "go", targs...)
	cmd.Dir = h.root
	out, terr := cmd.CombinedOutput()
	if terr != nil {
		return errors.Join(err, fmt.Errorf("go test TestAssetBudget: %w\n%s", terr, tailText(string(out), 10)))
	}
	raw0, gz, ok := parseAssetLine(string(out))
	if !ok {
		return errors.Join(err, fmt.Errorf("go test TestAssetBudget logged no asset sizes:\n%s", tailText(string(out), 10)))
	}
	res.AssetBytes, res.AssetGzipBytes = raw0, gz
	return err
}

func parseAssetLine(s string) (raw, gz int, ok bool) {
	m := assetLine.FindStringSubmatch(s)
	if m == nil {
		return 0, 0, false
	}
	raw, err1 := strconv.Atoi(m[1])
	gz, err2 := strconv.Atoi(m[2])
	return raw, gz, err1 == nil && err2 == nil
}

// shellJoin quotes the arguments a shell would need quoted, so the
// document's commands can be pasted.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " ^$*?|()[]{}'\"\\&;<>") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

// consoleLab brings up a bookinfo lab with its console published, runs
// 10 rps through the gateway, and after a minute of it times the graph
// API, the graph page's first load in headless Chromium and reads the
// console process's memory.
func (h *harness) consoleLab(ctx context.Context, res *ConsoleResult) error {
	l := h.newLab()
	args := []string{"--bookinfo-namespace", consoleNS, "--prometheus-port", "0", "--zipkin-port", "0", "--kiali-port", strconv.Itoa(consolePort)}
	res.Commands = append(res.Commands, "meshlab "+shellJoin(l.upArgs(args...)),
		fmt.Sprintf("# %s of GET /productpage through the gateway at 10 rps (kept up throughout), then %d graph API calls, %d graph page loads in fresh headless Chromium", consoleTraffic, consoleCalls, consolePages),
		"meshlab down")
	if _, err := l.up(ctx, args...); err != nil {
		return errors.Join(err, l.down(context.WithoutCancel(ctx)))
	}
	defer func() {
		if err := l.down(context.WithoutCancel(ctx)); err != nil {
			slog.Error("down after the console section", "err", err)
		}
	}()
	st, err := l.status()
	if err != nil {
		return err
	}
	_, pid, err := containerPID(st, "istio-system", "kiali", "kiali")
	if err != nil {
		return err
	}
	if err := resetPeakRSS(pid); err != nil {
		return err
	}

	// Bookinfo traffic for the whole measurement, as a person's loop.
	tctx, stopTraffic := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stopTraffic(); wg.Wait() }()
	page := fmt.Sprintf("http://127.0.0.1:%d/productpage", l.ports[0])
	started := time.Now()
	wg.Add(1)
	go func() {
		defer wg.Done()
		trafficLoop(tctx, page, consoleInterval)
	}()

	base := fmt.Sprintf("http://127.0.0.1:%d%s/", consolePort, consoleWebRoot)
	api := base + "api/namespaces/graph?namespaces=" + consoleNS + "&graphType=versionedApp&duration=60s"
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}
	defer client.CloseIdleConnections()
	// The graph has edges once Prometheus has scraped two samples of the
	// sidecars' counters; then the rest of the minute.
	if err := waitGraphEdges(ctx, client, api, 2*time.Minute); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(started.Add(consoleTraffic))):
	}
	lr := &ConsoleLab{Namespace: consoleNS, TrafficSeconds: round1(time.Since(started).Seconds()), TrafficRPS: float64(time.Second / consoleInterval), Calls: consoleCalls}
	for range consoleCalls {
		start := time.Now()
		g, err := getGraphCounts(ctx, client, api)
		if err != nil {
			return err
		}
		lr.APIms = append(lr.APIms, round3(float64(time.Since(start))/1e6))
		lr.Nodes, lr.Edges = g.nodes, g.edges
	}
	s := append([]float64(nil), lr.APIms...)
	sort.Float64s(s)
	lr.APIP50ms, lr.APIP99ms, lr.APIMaxms = quantile(s, 0.5), quantile(s, 0.99), s[len(s)-1]

	graphPage := base + "#/graph?namespaces=" + consoleNS + "&graphType=versionedApp&duration=60"
	for i := range consolePages {
		d, err := h.firstLoad(ctx, graphPage)
		if err != nil {
			return fmt.Errorf("graph page load %d: %w", i+1, err)
		}
		lr.PageMs = append(lr.PageMs, round1(float64(d)/1e6))
	}
	s = append([]float64(nil), lr.PageMs...)
	sort.Float64s(s)
	lr.PageP50ms = quantile(s, 0.5)

	rss, hwm, anon, err := memMB(pid)
	if err != nil {
		return err
	}
	pss, err := pssMB(pid)
	if err != nil {
		return err
	}
	lr.RSSMB, lr.PeakRSSMB, lr.AnonMB, lr.PssMB = round1(rss), round1(hwm), round1(anon), round1(pss)
	res.Lab = lr
	slog.Info("console", "apiP50ms", lr.APIP50ms, "apiP99ms", lr.APIP99ms, "pageP50ms", lr.PageP50ms, "rssMB", lr.RSSMB)
	return nil
}

// trafficLoop GETs u every interval until ctx ends; answers are not
// judged, the lab's own tests do that.
func trafficLoop(ctx context.Context, u string, interval time.Duration) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	defer c.CloseIdleConnections()
	for ctx.Err() == nil {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return
		}
		if resp, err := c.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
		select {
		case <-ctx.Done():
		case <-time.After(interval):
		}
	}
}

type graphCounts struct{ nodes, edges int }

// getGraphCounts GETs the graph API, reads the whole answer and counts
// its elements.
func getGraphCounts(ctx context.Context, c *http.Client, u string) (graphCounts, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return graphCounts{}, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return graphCounts{}, fmt.Errorf("GET %s: %w", u, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return graphCounts{}, fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return graphCounts{}, fmt.Errorf("GET %s: %s: %s", u, resp.Status, tailText(string(b), 3))
	}
	return parseGraphCounts(b)
}

func parseGraphCounts(b []byte) (graphCounts, error) {
	var g struct {
		Elements struct {
			Nodes []json.RawMessage `json:"nodes"`
			Edges []json.RawMessage `json:"edges"`
		} `json:"elements"`
	}
	if err := json.Unmarshal(b, &g); err != nil {
		return graphCounts{}, fmt.Errorf("read the graph: %w", err)
	}
	return graphCounts{len(g.Elements.Nodes), len(g.Elements.Edges)}, nil
}

// waitGraphEdges polls the graph API until its graph has edges.
func waitGraphEdges(ctx context.Context, c *http.Client, u string, max time.Duration) error {
	deadline := time.Now().Add(max)
	for {
		g, err := getGraphCounts(ctx, c, u)
		if err == nil && g.edges > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("the graph has %d nodes and no edge", g.nodes)
			}
			return fmt.Errorf("wait for the console's bookinfo graph: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// firstLoad starts a fresh headless Chromium (an empty profile: no cache,
// as a first visit), navigates to u and times until the console says the
// graph is shown (body[data-ready=graph]). The flags are labtest's:
// Chromium kept off the network, which this machine closes.
func (h *harness) firstLoad(ctx context.Context, u string) (time.Duration, error) {
	if _, err := os.Stat(labtest.ChromiumPath); err != nil {
		return 0, fmt.Errorf("no %s (scripts/test installs Debian's chromium): %w", labtest.ChromiumPath, err)
	}
	dir, err := os.MkdirTemp(h.work, "chromium-")
	if err != nil {
		return 0, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(labtest.ChromiumPath),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.WindowSize(1280, 800),
		chromedp.UserDataDir(dir))
	defer cancelAlloc()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	// Starting the browser is not part of the load.
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(1280, 800)); err != nil {
		return 0, fmt.Errorf("start %s: %w", labtest.ChromiumPath, err)
	}
	lctx, cancelLoad := context.WithTimeout(bctx, 60*time.Second)
	defer cancelLoad()
	start := time.Now()
	if err := chromedp.Do(lctx, chromedp.Navigate(u), labtest.WaitReady("graph")); err != nil {
		return 0, fmt.Errorf("load %s: %w", u, err)
	}
	return time.Since(start), nil
}

// consoleBenchPurposes say what each console benchmark measures, by its
// name without the "Benchmark" prefix and GOMAXPROCS suffix.
var consoleBenchPurposes = map[string]string{
	"BuildBookinfo/engine":   "graph.Build for bookinfo's namespace, Prometheus's engine answering in process (the graph API's latency without HTTP)",
	"BuildBookinfo/console":  "the same, Prometheus's answers replayed over loopback HTTP: the console's own time and heap",
	"BuildLargeMesh/engine":  "graph.Build, 1,000 services and 3,000 calls over 10 namespaces (service nodes injected: 2,000 nodes, 4,000 edges), engine in process",
	"BuildLargeMesh/console": "the same, answers replayed over loopback HTTP: the console's own time and heap",
	"GraphAPI":               "GET namespaces/graph for bookinfo through the console's HTTP handler, real control plane and Prometheus in process",
	"OverviewAPI":            "GET overview: every namespace's health, validations, mTLS and sparkline",
	"IstioConfigAPI":         "GET istio/config with validations",
	"LargeMeshPages":         "list and detail pages on 1,000 services / 3,000 pods, a fresh snapshot each time",
	"Fold":                   "health: folding Prometheus's answers into every entity's health",
	"Validate":               "validations (KIA checks and the analyzer) of N services' config",
	"BrowserGraphLarge":      "headless Chromium: one load of the graph page (fetch, decorate, layout, first paint), warm browser, fixture API",
	"HandlerIndex":           "serving index.html, gzipped",
	"Load":                   "preparing the embedded UI at start (hashing, gzip)",
}

func consoleBenchPurpose(name string) string {
	name = strings.TrimPrefix(name, "Benchmark")
	if i := strings.LastIndex(name, "-"); i >= 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			name = name[:i]
		}
	}
	if p, ok := consoleBenchPurposes[name]; ok {
		return p
	}
	if i := strings.IndexByte(name, '/'); i >= 0 {
		return consoleBenchPurposes[name[:i]]
	}
	return ""
}

// consoleBenchRow finds a benchmark's median row by its name without the
// GOMAXPROCS suffix.
func consoleBenchRow(rows []GoBenchmark, name string) (GoBenchmark, bool) {
	for _, g := range rows {
		n := g.Name
		if i := strings.LastIndex(n, "-"); i >= 0 {
			if _, err := strconv.Atoi(n[i+1:]); err == nil {
				n = n[:i]
			}
		}
		if n == name {
			return g, true
		}
	}
	return GoBenchmark{}, false
}

// metricsText lists a benchmark's own metrics, sorted by unit.
func metricsText(m map[string]float64) string {
	units := make([]string, 0, len(m))
	for u := range m {
		units = append(units, u)
	}
	sort.Strings(units)
	parts := make([]string, len(units))
	for i, u := range units {
		parts[i] = fmt.Sprintf("%s %s", strconv.FormatFloat(m[u], 'f', -1, 64), u)
	}
	return strings.Join(parts, ", ")
}

func renderConsole(w func(string, ...any), c *ConsoleResult) {
	w("\n## Console (issue 13)\n\nMeasured %s (`go run ./scripts/bench -sections console`)", c.Measured.Format("2006-01-02 15:04 UTC"))
	if c.Raw != "" {
		w(", raw results: [`%s`](%s)", c.Raw, relDoc(c.Raw))
	}
	w(".")
	if c.Loaded {
		w(" Other work ran on the machine meanwhile: the times are upper bounds.")
	}
	w(" Commands:\n\n```\n")
	for _, cmd := range c.Commands {
		w("%s\n", cmd)
	}
	w("```\n")
	if l := c.Lab; l != nil {
		w("\nOn a local lab (bookinfo in namespace `%s`, its console published on the host), after %.0f s of `GET /productpage` through the gateway at %.0f rps, the loop running on:\n\n", l.Namespace, l.TrafficSeconds, l.TrafficRPS)
		w("| | samples | p50 | p99 | max |\n|---|---:|---:|---:|---:|\n")
		w("| `GET /kiali/api/namespaces/graph?namespaces=%s&graphType=versionedApp&duration=60s` (%d nodes, %d edges), one keep-alive connection | %d | %.1f ms | %.1f ms | %.1f ms |\n",
			l.Namespace, l.Nodes, l.Edges, l.Calls, l.APIP50ms, l.APIP99ms, l.APIMaxms)
		s := append([]float64(nil), l.PageMs...)
		sort.Float64s(s)
		if len(s) > 0 {
			w("| graph page, navigation → `body[data-ready=graph]` in a fresh headless Chromium each time (empty cache) | %d | %.0f ms | — | %.0f ms |\n", len(s), l.PageP50ms, s[len(s)-1])
		}
		w("\nThe console process (`meshlab kiali` in the lab's kiali pod) after that: RSS %.1f MB, peak %.1f MB (VmHWM since the lab was up), Pss %.1f MB, private (RssAnon) %.1f MB. "+
			"RSS counts the pages of the one meshlab binary it shares with the lab's other processes; Pss divides those among them.\n", l.RSSMB, l.PeakRSSMB, l.PssMB, l.AnonMB)
	}
	if c.AssetBytes > 0 {
		w("\nThe UI lab/console/web embeds (HTML, CSS, JavaScript modules and the vendored cytoscape and dagre builds): %.0f KB as stored, %.0f KB as served gzipped (from its `TestAssetBudget`).\n",
			float64(c.AssetBytes)/1024, float64(c.AssetGzipBytes)/1024)
	}
	if len(c.GoBench) > 0 {
		w("\nGo benchmarks ([`docs/bench/%s`](bench/%s), for `benchstat`). graph's *live* is the heap one build holds at once (its peak with GOGC=5), *peak over idle* the heap growth over the benchmark's loop under the default GOGC=100, *peak heap* the whole test process's heap at its highest (the generated mesh and the replayed answers included):\n\n", c.GoBenchRaw, c.GoBenchRaw)
		w("| package | benchmark | what it measures | runs | ms/op (median) | B/op | allocs/op | its own figures |\n|---|---|---|---:|---:|---:|---:|---|\n")
		for _, g := range medianBench(c.GoBench) {
			w("| %s | %s | %s | %d | %.3f | %.0f | %.0f | %s |\n", strings.TrimPrefix(g.Package, "github.com/meshlab/meshlab/"), g.Name, consoleBenchPurpose(g.Name),
				g.Iterations, g.NsPerOp/1e6, g.BytesPerOp, g.AllocsPerOp, metricsText(g.Metrics))
		}
	}
}

// consoleGoals are the console targets.
func consoleGoals(c *ConsoleResult, mark string) [][3]string {
	var out [][3]string
	verdict := func(ok bool) string {
		if ok {
			return "✅ met"
		}
		return "❌ missed"
	}
	rows := medianBench(c.GoBench)
	ms := func(g GoBenchmark) float64 { return g.NsPerOp / 1e6 }

	// Bookinfo's graph API.
	var got []string
	judged, ok := 0.0, false
	if l := c.Lab; l != nil {
		got = append(got, fmt.Sprintf("real lab: p50 %.1f ms, p99 %.1f ms over %d calls", l.APIP50ms, l.APIP99ms, l.Calls))
		judged, ok = l.APIP99ms, true
	}
	if g, found := consoleBenchRow(rows, "BenchmarkGraphAPI"); found {
		got = append(got, fmt.Sprintf("BenchmarkGraphAPI %.1f ms/op", ms(g)))
		if !ok {
			judged, ok = ms(g), true
		}
	}
	if g, found := consoleBenchRow(rows, "BenchmarkBuildBookinfo/engine"); found {
		got = append(got, fmt.Sprintf("graph.Build %.1f ms/op", ms(g)))
	}
	if ok {
		out = append(out, [3]string{"graph API for bookinfo < 100 ms", strings.Join(got, "; ") + mark, verdict(judged < 100)})
	}

	// The large mesh.
	if g, found := consoleBenchRow(rows, "BenchmarkBuildLargeMesh/engine"); found {
		m := fmt.Sprintf("graph.Build %.0f ms/op with Prometheus's engine answering in process", ms(g))
		if gc, found := consoleBenchRow(rows, "BenchmarkBuildLargeMesh/console"); found {
			m += fmt.Sprintf(" (%.0f ms/op with its answers replayed over HTTP instead)", ms(gc))
		}
		if gb, found := consoleBenchRow(rows, "BenchmarkBrowserGraphLarge/1000svc-3000edges/auto"); found {
			m += fmt.Sprintf("; drawn by the UI in %.0f ms (headless Chromium, warm)", ms(gb))
		}
		out = append(out, [3]string{"graph of 1,000 services / 3,000 edges < 2 s", m + mark, verdict(ms(g) < 2000)})
	}
	if g, found := consoleBenchRow(rows, "BenchmarkBuildLargeMesh/console"); found {
		live, over, peak := g.Metrics["live-peak-over-idle-MB"], g.Metrics["peak-heap-over-idle-MB"], g.Metrics["peak-heap-MB"]
		m := fmt.Sprintf("Go heap of the build: %.0f MB live, %.0f MB peak over idle (GOGC=100); the benchmark process's heap peak %.0f MB holds the generated mesh and replayed answers too", live, over, peak)
		if l := c.Lab; l != nil {
			m += fmt.Sprintf("; the lab's console process serving bookinfo: RSS %.0f MB (peak %.0f)", l.RSSMB, l.PeakRSSMB)
		}
		m += "; no console process was measured whole with this mesh: judged on the build's peak over idle"
		out = append(out, [3]string{"… under 200 MB in the console", m, verdict(over < 200)})
	}

	if c.AssetBytes > 0 {
		out = append(out, [3]string{"console assets under a few MB (< 3 MB)", fmt.Sprintf("%.0f KB embedded, %.0f KB served gzipped", float64(c.AssetBytes)/1024, float64(c.AssetGzipBytes)/1024),
			verdict(c.AssetBytes < 3<<20)})
	}

	got, ok = nil, false
	if l := c.Lab; l != nil && len(l.PageMs) > 0 {
		got = append(got, fmt.Sprintf("graph page, real lab: p50 %.0f ms over %d fresh loads", l.PageP50ms, len(l.PageMs)))
		judged, ok = l.PageP50ms, true
	}
	if g, found := consoleBenchRow(rows, "BenchmarkBrowserGraphLarge/bookinfo-size/auto"); found {
		got = append(got, fmt.Sprintf("bookinfo-size graph, warm browser: %.0f ms/op", ms(g)))
		if !ok {
			judged, ok = ms(g), true
		}
	}
	if ok {
		out = append(out, [3]string{"first load under 1 s", strings.Join(got, "; ") + mark, verdict(judged < 1000)})
	}
	return out
}
