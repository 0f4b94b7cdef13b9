package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// The console's benchmarks report their own figures (heap, nodes, edges)
// beside ns/op; they are parsed by unit and their medians kept.
func TestParseGoBenchMetrics(t *testing.T) {
	b, err := os.ReadFile("testdata/gobench-console.txt")
	if err != nil {
		t.Fatal(err)
	}
	rows := medianBench(parseGoBench(string(b)))
	for _, tc := range []struct {
		name          string
		nsPerOp       float64
		unit          string
		metric        float64
		allocsPerOp   float64
		wantNoMetrics bool
	}{
		{name: "BenchmarkBuildLargeMesh/console", nsPerOp: 285555946, unit: "peak-heap-over-idle-MB", metric: 154, allocsPerOp: 1860036},
		{name: "BenchmarkBuildLargeMesh/engine", nsPerOp: 465809326, unit: "edges", metric: 4000, allocsPerOp: 2252681},
		{name: "BenchmarkBuildBookinfo/console", nsPerOp: 1975795, unit: "live-peak-over-idle-MB", metric: 0.8792, allocsPerOp: 8869},
		{name: "BenchmarkBrowserGraphLarge/1000svc-3000edges/auto", nsPerOp: 1205454368, unit: "json-bytes", metric: 938154, allocsPerOp: 431},
		{name: "BenchmarkGraphAPI", nsPerOp: 7212144, allocsPerOp: 8976, wantNoMetrics: true},
		{name: "BenchmarkLargeMeshPages/istio/config?namespaces=ns-3", nsPerOp: 105341632, allocsPerOp: 231120, wantNoMetrics: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, ok := consoleBenchRow(rows, tc.name)
			if !ok {
				t.Fatalf("no row %s in %d rows", tc.name, len(rows))
			}
			if g.NsPerOp != tc.nsPerOp || g.AllocsPerOp != tc.allocsPerOp {
				t.Errorf("ns/op %v allocs/op %v, want %v %v", g.NsPerOp, g.AllocsPerOp, tc.nsPerOp, tc.allocsPerOp)
			}
			if tc.wantNoMetrics {
				if g.Metrics != nil {
					t.Errorf("metrics %v, want none", g.Metrics)
				}
				return
			}
			if g.Metrics[tc.unit] != tc.metric {
				t.Errorf("%s = %v, want %v (all: %v)", tc.unit, g.Metrics[tc.unit], tc.metric, g.Metrics)
			}
		})
	}
	if _, ok := consoleBenchRow(rows, "BenchmarkBuildLargeMesh"); ok {
		t.Error("a parent name matched a sub-benchmark's row")
	}
}

func TestMedianBenchMetrics(t *testing.T) {
	in := []GoBenchmark{
		{Package: "p", Name: "BenchmarkA-2", NsPerOp: 30, Metrics: map[string]float64{"peak-heap-MB": 300}},
		{Package: "p", Name: "BenchmarkA-2", NsPerOp: 10, Metrics: map[string]float64{"peak-heap-MB": 100}},
		{Package: "p", Name: "BenchmarkA-2", NsPerOp: 20, Metrics: map[string]float64{"peak-heap-MB": 250}},
	}
	got := medianBench(in)
	if len(got) != 1 || got[0].Metrics["peak-heap-MB"] != 250 || got[0].NsPerOp != 20 {
		t.Errorf("got %+v", got)
	}
}

func TestParseAssetLine(t *testing.T) {
	for _, tc := range []struct {
		in      string
		raw, gz int
		ok      bool
	}{
		{"=== RUN   TestAssetBudget\n    web_test.go:282: embedded UI: 612105 bytes, 197549 bytes as served gzipped\n--- PASS", 612105, 197549, true},
		{"--- PASS: TestAssetBudget (0.03s)\n", 0, 0, false},
		{"embedded UI: 99999999999999999999 bytes, 1 bytes as served gzipped", 0, 1, false},
	} {
		raw, gz, ok := parseAssetLine(tc.in)
		if ok != tc.ok || (ok && (raw != tc.raw || gz != tc.gz)) {
			t.Errorf("parseAssetLine(%q) = %d, %d, %v; want %d, %d, %v", tc.in, raw, gz, ok, tc.raw, tc.gz, tc.ok)
		}
	}
}

func TestParseGraphCounts(t *testing.T) {
	for _, tc := range []struct {
		in          string
		nodes, edge int
		err         bool
	}{
		{`{"elements":{"nodes":[{"data":{"id":"a"}},{"data":{"id":"b"}}],"edges":[{"data":{"source":"a","target":"b"}}]}}`, 2, 1, false},
		{`{"elements":{"nodes":[],"edges":[]},"emptyReason":{"message":"no traffic"}}`, 0, 0, false},
		{`<html>`, 0, 0, true},
	} {
		g, err := parseGraphCounts([]byte(tc.in))
		if (err != nil) != tc.err || g.nodes != tc.nodes || g.edges != tc.edge {
			t.Errorf("parseGraphCounts(%s) = %+v, %v", tc.in, g, err)
		}
	}
}

func TestShellJoin(t *testing.T) {
	got := shellJoin([]string{"test", "-run", "^$", "-bench", ".", "./lab/console/..."})
	if want := `test -run '^$' -bench . ./lab/console/...`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// consoleFixture is a console section as a run writes it.
func consoleFixture(t *testing.T, apiP99, pageP50, liveOver float64) *ConsoleResult {
	b, err := os.ReadFile("testdata/gobench-console.txt")
	if err != nil {
		t.Fatal(err)
	}
	bs := parseGoBench(string(b))
	for i := range bs {
		if strings.HasPrefix(bs[i].Name, "BenchmarkBuildLargeMesh/console") {
			bs[i].Metrics["peak-heap-over-idle-MB"] = liveOver
		}
	}
	return &ConsoleResult{Measured: time.Date(2026, 12, 7, 0, 30, 0, 0, time.UTC), GoBenchRaw: "gobench-console-x.txt", GoBench: bs,
		AssetBytes: 612105, AssetGzipBytes: 197549, Commands: []string{"go test -run '^$' -bench . ./lab/console/..."},
		Lab: &ConsoleLab{Namespace: consoleNS, TrafficSeconds: 60, TrafficRPS: 10, Calls: 50, APIP50ms: 20, APIP99ms: apiP99, APIMaxms: apiP99,
			Nodes: 15, Edges: 15, PageMs: []float64{pageP50, pageP50}, PageP50ms: pageP50, RSSMB: 60, PeakRSSMB: 70}}
}

func TestConsoleGoals(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		c                       *ConsoleResult
		want                    map[string]string
		measuredHas, measuredNo string
	}{
		{"met", consoleFixture(t, 40, 600, 154), map[string]string{
			"graph API for bookinfo < 100 ms":             "✅ met",
			"graph of 1,000 services / 3,000 edges < 2 s": "✅ met",
			"… under 200 MB in the console":               "✅ met",
			"console assets under a few MB (< 3 MB)":      "✅ met",
			"first load under 1 s":                        "✅ met",
		}, "real lab: p50 20.0 ms, p99 40.0 ms", ""},
		{"missed", consoleFixture(t, 140, 1200, 230), map[string]string{
			"graph API for bookinfo < 100 ms": "❌ missed",
			"… under 200 MB in the console":   "❌ missed",
			"first load under 1 s":            "❌ missed",
		}, "p50 1200 ms over 2 fresh loads", ""},
		{"no lab: judged on the benchmarks", func() *ConsoleResult { c := consoleFixture(t, 0, 0, 154); c.Lab = nil; return c }(), map[string]string{
			"graph API for bookinfo < 100 ms": "✅ met",
			"first load under 1 s":            "✅ met",
		}, "BenchmarkGraphAPI 7.2 ms/op", "real lab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, measured := map[string]string{}, ""
			for _, g := range consoleGoals(tc.c, "") {
				got[g[0]] = g[2]
				measured += g[1] + "\n"
			}
			for goal, want := range tc.want {
				if got[goal] != want {
					t.Errorf("%s: %q, want %q", goal, got[goal], want)
				}
			}
			if !strings.Contains(measured, tc.measuredHas) {
				t.Errorf("measured lacks %q:\n%s", tc.measuredHas, measured)
			}
			if tc.measuredNo != "" && strings.Contains(measured, tc.measuredNo) {
				t.Errorf("measured has %q:\n%s", tc.measuredNo, measured)
			}
		})
	}
}

func TestRenderConsole(t *testing.T) {
	r := Results{Console: consoleFixture(t, 40, 600, 154)}
	r.Console.Raw = "docs/bench/20261207T003000Z-quick.json"
	doc := render(r, "docs/bench/latest.json")
	for _, s := range []string{"## Console (issue 13)", "(bench/20261207T003000Z-quick.json)", "| graph of 1,000 services / 3,000 edges < 2 s |",
		"| lab/console/graph | BenchmarkBuildLargeMesh/console-2 |", "47.03 live-peak-over-idle-MB", "598 KB as stored, 193 KB as served gzipped",
		"namespaces=bookinfo&graphType=versionedApp&duration=60s` (15 nodes, 15 edges)"} {
		if !strings.Contains(doc, s) {
			t.Errorf("document lacks %q", s)
		}
	}
}

func TestMergeSections(t *testing.T) {
	into := Results{Mode: "full", Lab: &LabResult{Rounds: 3}, Telemetry: &TelemetryResult{Raw: "old.json"},
		Machine: Machine{ExternalNote: "earlier merges"},
		Errors:  []SectionError{{Section: "console", Error: "old failure"}, {Section: "sandbox", Error: "kept"}}}
	run := Results{Mode: "quick", Started: time.Date(2026, 12, 7, 0, 30, 0, 0, time.UTC), Machine: Machine{Loaded: true},
		Console: &ConsoleResult{AssetBytes: 1}, GoBench: []GoBenchmark{{Name: "BenchmarkX"}}, GoBenchRaw: "g.txt",
		Errors: []SectionError{{Section: "gobench", Error: "new"}}}
	mergeSections(&into, run, []string{"console", " gobench", ""}, "docs/bench/new.json")
	if into.Console == nil || into.Console.Raw != "docs/bench/new.json" || !into.Console.Loaded {
		t.Errorf("console = %+v", into.Console)
	}
	if into.Lab == nil || into.Lab.Rounds != 3 || into.Telemetry.Raw != "old.json" || into.Mode != "full" {
		t.Errorf("sections not run changed: lab %+v telemetry %+v mode %s", into.Lab, into.Telemetry, into.Mode)
	}
	if into.GoBenchRaw != "g.txt" || !strings.Contains(into.Machine.ExternalNote, "earlier merges; the gobench section is from the 2026-12-07 00:30 UTC run") {
		t.Errorf("gobench %s, note %q", into.GoBenchRaw, into.Machine.ExternalNote)
	}
	want := []SectionError{{Section: "sandbox", Error: "kept"}, {Section: "gobench", Error: "new"}}
	if len(into.Errors) != len(want) || into.Errors[0] != want[0] || into.Errors[1] != want[1] {
		t.Errorf("errors = %+v, want %+v", into.Errors, want)
	}
}
