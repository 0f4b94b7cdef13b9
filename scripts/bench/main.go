// Command bench is meshlab's benchmark harness (`task bench`). It measures,
// in one run on the local runtime: request paths through real veths between
// pod network namespaces with fortio (direct, one sidecar, two sidecars, the
// gateway, nginx and haproxy), the proxies' CPU and memory, the control
// plane's apply→ACK time with simulated ADS clients and its cost on a big
// mesh, the lab's up and down, the Go micro-benchmarks, and the console
// (its benchmarks, and on a bookinfo lab its graph API, first page load in
// headless Chromium and memory). It writes the raw results as JSON under
// docs/bench/ and regenerates docs/BENCHMARKS.md; -merge puts a run of some
// sections into an earlier run's results instead. The kind section (the
// kind runtime's up, memory and down, on scripts/kind-testenv's engine and
// node image) runs only when asked for with -sections kind.
//
// Traffic goes only to the lab's own pods and to loopback.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/meshlab/meshlab/lab/labtest"
)

// harness is one run: its settings, tools and results.
type harness struct {
	quick          bool
	profile        bool
	qps            float64
	conns          int
	size           int
	requests       int
	chunks         int
	warmup         int
	maxDuration    time.Duration
	labRounds      int
	cpRounds       int
	kindRounds     int
	profileSecs    int
	withConsoleLab bool
	merge          string

	// The CPU account (watchCPU) and the last observeLoad: when, the
	// machine's CPU seconds, the benchmark's.
	cpuMu             sync.Mutex
	cpu               *cpuAccount
	lastObserve       time.Time
	lastBusy, lastOwn float64

	root, out, doc, cache, work string
	fortio, meshlab             string
	ports                       [3]int
	lab                         *labCtl
	res                         Results
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == cpChildArg {
		if err := cpChild(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	h := &harness{}
	var sections, waitLab string
	flag.BoolVar(&h.quick, "quick", false, "a short run to try the harness (3,000 requests per path, one lab round)")
	flag.BoolVar(&h.profile, "profile", false, "instead of the figures: CPU and allocation profiles of the sidecars under load (task bench:profile)")
	flag.Float64Var(&h.qps, "qps", 1000, "fixed request rate of the latency runs")
	flag.IntVar(&h.conns, "c", 16, "connections")
	flag.IntVar(&h.size, "size", 1024, "response payload in bytes")
	flag.IntVar(&h.requests, "n", 0, "requests per path at the fixed rate (default 30,000; 3,000 with -quick)")
	flag.IntVar(&h.chunks, "chunks", 0, "interleaved chunks the requests of each path are split into (default 3; 1 with -quick)")
	flag.DurationVar(&h.maxDuration, "max-duration", 0, "length of each open-throttle run, 0 for the default (10s; 3s with -quick); negative skips them")
	flag.IntVar(&h.labRounds, "lab-rounds", 0, "rounds of up and down (default 3; 1 with -quick)")
	flag.IntVar(&h.kindRounds, "kind-rounds", 0, "rounds of the kind section's up and down (default 2; 1 with -quick)")
	flag.IntVar(&h.cpRounds, "cp-rounds", 0, "applies per control-plane scenario (default 20; 5 with -quick)")
	flag.StringVar(&sections, "sections", "lab,sandbox,dataplane,telemetry,controlplane,gobench,console", "sections to run, comma-separated (kind, not among them, needs scripts/kind-testenv's engine and node image)")
	flag.BoolVar(&h.withConsoleLab, "console-lab", true, "the console section's real-lab part (a bookinfo lab: graph API, first page load, the console's memory); false runs its Go benchmarks only")
	flag.StringVar(&h.merge, "merge", "", "a results JSON (docs/bench/latest.json) to merge this run's sections into: it is rewritten with them and the document rendered from it")
	flag.StringVar(&h.out, "out", "docs/bench", "directory of the raw results")
	flag.StringVar(&h.doc, "doc", "docs/BENCHMARKS.md", "the document to regenerate (empty: none)")
	flag.StringVar(&h.cache, "cache", "", "where fortio and the meshlab build go (default $XDG_CACHE_HOME/meshlab/bench)")
	flag.StringVar(&waitLab, "wait-lab", "10m", "wait at most this long for lab tests or another lab to free the pod network")
	flag.StringVar(&h.res.Machine.ExternalNote, "note", "", "a note on the machine's conditions for the document")
	rerender := flag.String("render", "", "only regenerate the document from this results JSON")
	flag.Parse()
	if *rerender != "" {
		if err := renderFile(*rerender, h.doc); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	h.defaults()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	wait, err := time.ParseDuration(waitLab)
	if err == nil {
		err = h.run(ctx, strings.Split(sections, ","), wait)
	}
	if err != nil {
		slog.Error("bench", "err", err)
		os.Exit(1)
	}
}

func (h *harness) defaults() {
	def := func(v *int, full, quick int) {
		if *v == 0 {
			*v = full
			if h.quick {
				*v = quick
			}
		}
	}
	def(&h.requests, 30000, 3000)
	def(&h.chunks, 3, 1)
	def(&h.labRounds, 3, 1)
	def(&h.cpRounds, 20, 5)
	def(&h.kindRounds, 2, 1)
	def(&h.profileSecs, 30, 10)
	h.warmup = max(h.requests/10, 500)
	if h.maxDuration == 0 {
		h.maxDuration = 10 * time.Second
		if h.quick {
			h.maxDuration = 3 * time.Second
		}
	}
	if h.maxDuration < 0 {
		h.maxDuration = 0
	}
	h.ports = [3]int{18180, 18543, 25114}
	h.res.Mode = "full"
	if h.quick {
		h.res.Mode = "quick"
	}
}

func (h *harness) run(ctx context.Context, sections []string, wait time.Duration) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the benchmarks run on the local runtime, which needs root")
	}
	var err error
	if h.root, err = os.Getwd(); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(h.root, "go.mod")); err != nil {
		return fmt.Errorf("run the harness from the repository's root (go run ./scripts/bench)")
	}
	if h.cache == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return err
		}
		h.cache = filepath.Join(base, "meshlab", "bench")
	}
	if h.work, err = os.MkdirTemp("", "meshlab-bench-"); err != nil {
		return err
	}
	defer func() {
		if err := os.RemoveAll(h.work); err != nil {
			slog.Warn("remove the work dir", "dir", h.work, "err", err)
		}
	}()
	if err := os.MkdirAll(h.out, 0o755); err != nil {
		return err
	}

	h.res.Started = time.Now().UTC()
	h.res.Settings = Settings{QPS: h.qps, Connections: h.conns, PayloadSize: h.size, Requests: h.requests, Chunks: h.chunks,
		Warmup: h.warmup, MaxDuration: h.maxDuration, LabRounds: h.labRounds, CPRounds: h.cpRounds}
	h.res.Machine.CPU, h.res.Machine.Cores, h.res.Machine.Kernel, h.res.Machine.Go = cpuModel(), runtime.NumCPU(), kernel(), runtime.Version()
	h.res.Machine.LoadStart = loadAvg()
	h.res.Machine.OtherProcs = busyProcesses(map[int]bool{os.Getpid(): true})
	h.meshlab = filepath.Join(h.cache, "meshlab")
	h.cpu = newCPUAccount(os.Getpid(), h.meshlab)
	h.observeLoad()
	watchCtx, stopWatch := context.WithCancel(ctx)
	var watching sync.WaitGroup
	watching.Add(1)
	go func() { defer watching.Done(); h.watchCPU(watchCtx) }()
	defer func() { stopWatch(); watching.Wait() }()
	h.cmd("go", "run", "./scripts/bench", strings.Join(os.Args[1:], " "))

	if err := buildMeshlab(ctx, h.root, h.meshlab); err != nil {
		return err
	}
	if h.fortio, err = labtest.EnsureFortio(ctx, h.cache); err != nil {
		return err
	}
	h.res.Machine.Fortio = "fortio " + FortioVersion
	h.lab = h.newLab()

	if h.profile {
		return h.runProfile(ctx, wait)
	}
	for _, s := range sections {
		var err error
		switch strings.TrimSpace(s) {
		case "lab":
			err = withLab(ctx, wait, h.labBench)
		case "sandbox":
			err = withLab(ctx, wait, h.sandboxBench)
		case "dataplane":
			err = withLab(ctx, wait, h.dataplaneBench)
		case "telemetry":
			err = withLab(ctx, wait, h.telemetryBench)
		case "controlplane":
			err = h.controlPlaneBench(ctx)
		case "gobench":
			err = h.goBench(ctx)
		case "console":
			err = h.consoleBench(ctx, wait, h.withConsoleLab)
		case "kind":
			err = h.kindBench(ctx, wait)
		case "":
			continue
		default:
			err = fmt.Errorf("unknown section %q (want lab, sandbox, dataplane, telemetry, controlplane, gobench, console, kind)", s)
		}
		h.observeLoad()
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			slog.Error("section failed", "section", s, "err", err)
			h.res.Errors = append(h.res.Errors, SectionError{Section: s, Error: err.Error()})
		}
	}
	h.res.Machine.LoadEnd = loadAvg()
	h.res.Finished = time.Now().UTC()
	return h.write(sections)
}

// observeLoad records the machine's load since the last call: the
// 1-minute load average, and the CPU time of processes that are not the
// benchmark's (cpuAccount, sampled every second by watchCPU). The load
// average counts the benchmark's own load too (the open-throttle runs keep
// both cores busy), so it cannot tell a quiet machine from a shared one;
// other work above a tenth of a core over a section of 10 s or more marks
// the figures as from a loaded machine.
func (h *harness) observeLoad() {
	l := loadAvg()[0]
	if l > h.res.Machine.LoadMax {
		h.res.Machine.LoadMax = l
	}
	h.cpuMu.Lock()
	err := h.cpu.sample()
	busy, own := h.cpu.busy, h.cpu.own
	h.cpuMu.Unlock()
	if err != nil {
		slog.Warn("cannot account other work's CPU", "err", err)
		return
	}
	now := time.Now()
	if !h.lastObserve.IsZero() {
		other := max((busy-h.lastBusy)-(own-h.lastOwn), 0)
		secs := now.Sub(h.lastObserve).Seconds()
		slog.Info("other work", "seconds", round1(secs), "otherCPUSeconds", round3(other), "ownCPUSeconds", round3(own-h.lastOwn))
		h.res.Machine.OtherCPUSeconds = round1(h.res.Machine.OtherCPUSeconds + other)
		// A section of a few seconds cannot be judged: the last moments of
		// an own process that init reaps (the lab daemon at each down) are
		// lost to the account (see cpuAccount) and weigh too much there.
		if share := other / secs; secs >= 10 && share > h.res.Machine.OtherCPUShareMax {
			h.res.Machine.OtherCPUShareMax = round3(share)
		}
		if secs >= 10 && other > 0.1*secs {
			h.res.Machine.Loaded = true
		}
	}
	h.lastObserve, h.lastBusy, h.lastOwn = now, busy, own
}

// watchCPU samples the CPU account every second until ctx ends, so that
// processes that come and go between sections are seen.
func (h *harness) watchCPU(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.cpuMu.Lock()
			err := h.cpu.sample()
			h.cpuMu.Unlock()
			if err != nil {
				slog.Warn("cannot account other work's CPU", "err", err)
				return
			}
		}
	}
}

// withLab runs fn holding the pod network.
func withLab(ctx context.Context, wait time.Duration, fn func(context.Context) error) error {
	release, err := acquireLab(ctx, wait)
	if err != nil {
		return err
	}
	defer release()
	return fn(ctx)
}

func (h *harness) cmd(argv ...string) {
	h.res.Commands = append(h.res.Commands, strings.TrimSpace(strings.Join(argv, " ")))
}

func (h *harness) newLab() *labCtl {
	return &labCtl{bin: h.meshlab, state: filepath.Join(h.work, "state"), ports: h.ports}
}

// write saves the JSON (a dated copy and latest.json) and the document.
// With -merge, the dated copy is this run alone, and the merge file, with
// this run's sections put in, is the one the document is rendered from.
func (h *harness) write(sections []string) error {
	name := filepath.Join(h.out, fmt.Sprintf("%s-%s.json", h.res.Started.Format("20060102T150405Z"), h.res.Mode))
	files := []string{name, filepath.Join(h.out, "latest.json")}
	if h.merge != "" {
		files = files[:1]
	}
	for _, f := range files {
		if err := writeResults(f, h.res); err != nil {
			return err
		}
	}
	slog.Info("results written", "json", name)
	docResults, docJSON := h.res, name
	if h.merge != "" {
		b, err := os.ReadFile(h.merge)
		if err != nil {
			return fmt.Errorf("read the results to merge into: %w", err)
		}
		var into Results
		if err := json.Unmarshal(b, &into); err != nil {
			return fmt.Errorf("read %s: %w", h.merge, err)
		}
		mergeSections(&into, h.res, sections, filepath.ToSlash(name))
		if err := writeResults(h.merge, into); err != nil {
			return err
		}
		slog.Info("results merged", "into", h.merge)
		docResults, docJSON = into, h.merge
	}
	if h.doc == "" {
		return nil
	}
	if err := os.WriteFile(h.doc, []byte(render(docResults, filepath.ToSlash(docJSON))), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", h.doc, err)
	}
	slog.Info("document written", "doc", h.doc)
	return nil
}

func writeResults(file string, r Results) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(file, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// mergeSections puts the sections of run that it ran into into: a
// section run alone (say, after a change to the console) joins the last
// full run's figures without redoing them. Sections that say when they
// were measured get the run's results file as their Raw; the others are
// marked in the machine's note. Errors of the merged sections are
// replaced by the run's.
func mergeSections(into *Results, run Results, sections []string, raw string) {
	ran := map[string]bool{}
	for _, s := range sections {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		ran[s] = true
		unstamped := false
		switch s {
		case "lab":
			into.Lab, unstamped = run.Lab, true
		case "sandbox":
			into.Sandbox = run.Sandbox
			if into.Sandbox != nil {
				into.Sandbox.Raw = raw
			}
		case "dataplane":
			into.Paths, unstamped = run.Paths, true
		case "telemetry":
			into.Telemetry = run.Telemetry
			if into.Telemetry != nil {
				into.Telemetry.Raw = raw
			}
		case "controlplane":
			into.ControlPlane, unstamped = run.ControlPlane, true
		case "gobench":
			into.GoBench, into.GoBenchRaw, unstamped = run.GoBench, run.GoBenchRaw, true
		case "console":
			into.Console = run.Console
			if into.Console != nil {
				into.Console.Raw, into.Console.Loaded = raw, run.Machine.Loaded
			}
		case "kind":
			into.Kind = run.Kind
			if into.Kind != nil {
				into.Kind.Raw, into.Kind.Loaded = raw, run.Machine.Loaded
			}
		}
		if unstamped {
			note := fmt.Sprintf("the %s section is from the %s run (%s), merged in", s, run.Started.Format("2006-01-02 15:04 UTC"), raw)
			into.Machine.ExternalNote = strings.TrimPrefix(into.Machine.ExternalNote+"; "+note, "; ")
		}
	}
	errs := into.Errors[:0:0]
	for _, e := range into.Errors {
		if !ran[e.Section] {
			errs = append(errs, e)
		}
	}
	into.Errors = append(errs, run.Errors...)
	if run.Machine.ExternalNote != "" {
		into.Machine.ExternalNote = strings.TrimPrefix(into.Machine.ExternalNote+"; "+run.Machine.ExternalNote, "; ")
	}
}

// renderFile regenerates the document from saved results, for when only
// the document's shape changed.
func renderFile(results, doc string) error {
	b, err := os.ReadFile(results)
	if err != nil {
		return err
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("read %s: %w", results, err)
	}
	return os.WriteFile(doc, []byte(render(r, filepath.ToSlash(results))), 0o644)
}
