package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// KindResult is the kind runtime's cost (issue 14): the test environment
// warm, `up` to productpage on a fresh cluster, the node's memory and
// `down`. It needs scripts/kind-testenv's engine and node image, so it is
// not among the default sections.
type KindResult struct {
	Measured time.Time `json:"measured"`
	// Raw is the results file of that run, when merged into another's.
	Raw string `json:"raw,omitempty"`
	// Loaded is the run's Machine.Loaded, kept when merged into another's.
	Loaded   bool        `json:"loaded,omitempty"`
	Commands []string    `json:"commands"`
	Testenv  KindTestenv `json:"testenv"`

	Rounds int `json:"rounds"`
	// UpS is `meshlab up --runtime kind` to its return; ProductpageS from
	// the same start to the first 200 with the bookstore's title on the
	// published port.
	UpS            []float64 `json:"upSeconds"`
	ProductpageS   []float64 `json:"productpageSeconds"`
	DownS          []float64 `json:"downSeconds"`
	UpP50          float64   `json:"upP50s"`
	UpMax          float64   `json:"upMaxs"`
	ProductpageP50 float64   `json:"productpageP50s"`
	ProductpageMax float64   `json:"productpageMaxs"`
	DownP50        float64   `json:"downP50s"`
	DownMax        float64   `json:"downMaxs"`
	Reported       []float64 `json:"upReportedSeconds"` // "Lab is up on kind in N s."
	// Steps are up's own step lines, in their order, one sample a round.
	Steps  []KindStep   `json:"steps"`
	Memory []KindMemory `json:"memory"`
	// Clean is, per round, that down left no node container of the
	// cluster and no kind network; Left says what was left when not.
	Clean []bool   `json:"clean"`
	Left  []string `json:"left,omitempty"`
}

// KindTestenv is scripts/kind-testenv: its warm run and what it made.
type KindTestenv struct {
	WarmSeconds    float64 `json:"warmSeconds"`
	NodeImage      string  `json:"nodeImage"`
	NodeImageBytes int64   `json:"nodeImageBytes"`
	// Build is the cold build's record (<cache>/BUILD), when kind-testenv
	// wrote one.
	Build *KindBuild `json:"build,omitempty"`
}

// KindBuild is what the last cold build of the test environment took.
type KindBuild struct {
	BinariesSeconds  float64 `json:"binariesSeconds,omitempty"`
	NodeImageSeconds float64 `json:"nodeImageSeconds,omitempty"`
	Built            string  `json:"built,omitempty"`
}

// KindStep is one of up's steps over the rounds.
type KindStep struct {
	Name    string    `json:"name"`
	Seconds []float64 `json:"seconds"`
	P50     float64   `json:"p50s"`
}

// KindMemory is the node container's memory once the lab serves
// productpage and settled.
type KindMemory struct {
	// Source says where the figures come from: the container's cgroup v1
	// memory controller, or `docker stats` when that could not be read.
	Source       string  `json:"source"`
	UsageMB      float64 `json:"usageMB"`                // memory.usage_in_bytes (or docker stats' figure)
	NoCacheMB    float64 `json:"usageWithoutCacheMB"`    // usage − total_cache
	WorkingSetMB float64 `json:"workingSetMB,omitempty"` // usage − total_inactive_file, as the kubelet counts
	CacheMB      float64 `json:"cacheMB,omitempty"`
	// Namespaces sum the working sets of each namespace's pods, from the
	// kubelet's summary.
	Namespaces map[string]float64 `json:"namespaceWorkingSetMB,omitempty"`
}

const (
	kindCluster     = "meshlab"
	kindNode        = "meshlab-control-plane"
	kindLabel       = "io.x-k8s.kind.cluster"
	kindSettle      = 10 * time.Second
	kindUpTimeout   = 20 * time.Minute
	kindPageTimeout = 5 * time.Minute
	kindTitle       = "Simple Bookstore App"
)

// kindEnv is what scripts/kind-testenv prints.
type kindEnv struct{ dockerHost, nodeImage, bin string }

// kindBench runs the test environment twice (the first brings its cache
// up to date, the second is the warm figure), then, holding the pod
// network as the other labs do, the rounds of up and down.
func (h *harness) kindBench(ctx context.Context, wait time.Duration) error {
	res := &KindResult{Measured: time.Now().UTC(), Rounds: h.kindRounds,
		Commands: []string{"scripts/kind-testenv", "go run ./scripts/bench -sections kind -merge docs/bench/latest.json"}}
	h.res.Kind = res
	if _, _, err := h.kindTestenv(ctx); err != nil {
		return err
	}
	env, secs, err := h.kindTestenv(ctx)
	if err != nil {
		return err
	}
	res.Testenv.WarmSeconds, res.Testenv.NodeImage = round3(secs), env.nodeImage
	if res.Testenv.NodeImageBytes, err = imageSize(ctx, env); err != nil {
		return err
	}
	if res.Testenv.Build, err = readKindBuild(filepath.Join(filepath.Dir(env.bin), "BUILD")); err != nil {
		return err
	}
	return withLab(ctx, wait, func(ctx context.Context) error { return h.kindLab(ctx, env, res) })
}

func (h *harness) kindTestenv(ctx context.Context) (kindEnv, float64, error) {
	// A cold cache builds Kubernetes and the node image: about 10 minutes.
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(h.root, "scripts", "kind-testenv"))
	cmd.Dir = h.root
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	secs := time.Since(start).Seconds()
	if err != nil {
		return kindEnv{}, 0, fmt.Errorf("scripts/kind-testenv: %w\n%s", err, tailText(stderr.String(), 10))
	}
	env, err := parseKindEnv(string(out))
	return env, secs, err
}

func parseKindEnv(out string) (kindEnv, error) {
	kv := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "="); ok {
			kv[k] = v
		}
	}
	env := kindEnv{dockerHost: kv["DOCKER_HOST"], nodeImage: kv["MESHLAB_KIND_NODE_IMAGE"], bin: kv["MESHLAB_KIND_BIN"]}
	for k, v := range map[string]string{"DOCKER_HOST": env.dockerHost, "MESHLAB_KIND_NODE_IMAGE": env.nodeImage, "MESHLAB_KIND_BIN": env.bin} {
		if v == "" {
			return env, fmt.Errorf("read scripts/kind-testenv's output: no %s= line in:\n%s", k, out)
		}
	}
	return env, nil
}

// readKindBuild reads the cold build's record; none is not an error (older
// caches have none).
func readKindBuild(file string) (*KindBuild, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the test environment's build record: %w", err)
	}
	return parseKindBuild(string(b))
}

func parseKindBuild(s string) (*KindBuild, error) {
	var b KindBuild
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		var err error
		switch k {
		case "binaries_seconds":
			b.BinariesSeconds, err = strconv.ParseFloat(v, 64)
		case "node_image_seconds":
			b.NodeImageSeconds, err = strconv.ParseFloat(v, 64)
		case "built":
			_, err = time.Parse(time.RFC3339, v)
			b.Built = v
		}
		if err != nil {
			return nil, fmt.Errorf("read the test environment's build record: %s: %w", k, err)
		}
	}
	if b == (KindBuild{}) {
		return nil, nil
	}
	return &b, nil
}

// docker runs the docker CLI against the test environment's engine.
func docker(ctx context.Context, env kindEnv, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "docker", append([]string{"-H", env.dockerHost}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %w\n%s", strings.Join(args, " "), err, tailText(string(out), 5))
	}
	return string(out), nil
}

func imageSize(ctx context.Context, env kindEnv) (int64, error) {
	out, err := docker(ctx, env, "image", "inspect", "--format", "{{.Size}}", env.nodeImage)
	if err != nil {
		return 0, fmt.Errorf("size of the node image: %w", err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size of the node image: %w", err)
	}
	return n, nil
}

// kindLab brings the kind lab up and down h.kindRounds times, each
// from no cluster.
func (h *harness) kindLab(ctx context.Context, env kindEnv, res *KindResult) error {
	kubeconfig := filepath.Join(h.work, "kind-kubeconfig")
	l := &labCtl{bin: h.meshlab, state: filepath.Join(h.work, "kind-state"), ports: h.ports, timeout: kindUpTimeout,
		env: []string{"DOCKER_HOST=" + env.dockerHost, "KUBECONFIG=" + kubeconfig}}
	upArgs := []string{"up", "--runtime", "kind", "--node-image", env.nodeImage,
		"--http-port", strconv.Itoa(h.ports[0]), "--https-port", strconv.Itoa(h.ports[1])}
	res.Commands = append(res.Commands, "meshlab "+strings.Join(upArgs, " "), "meshlab down")
	// Another person's kind lab must not be taken down by ours.
	if left, err := kindLeft(ctx, env); err != nil {
		return err
	} else if left != "" {
		return fmt.Errorf("before the first round: a kind lab is on the engine at %s (%s); take it down first", env.dockerHost, left)
	}
	page := fmt.Sprintf("http://127.0.0.1:%d/productpage", h.ports[0])
	// A round that fails keeps the earlier rounds' figures, summed up.
	defer summarizeKind(res)
	steps := map[string]int{}
	for i := 0; i < h.kindRounds; i++ {
		start := time.Now()
		out, err := l.run(ctx, upArgs...)
		up := time.Since(start).Seconds()
		if err != nil {
			return errors.Join(fmt.Errorf("round %d: %w", i+1, err), l.down(context.WithoutCancel(ctx)))
		}
		if err := waitProductpage(ctx, page, kindPageTimeout); err != nil {
			return errors.Join(fmt.Errorf("round %d: productpage after up: %w", i+1, err), l.down(context.WithoutCancel(ctx)))
		}
		pageS := time.Since(start).Seconds()
		for _, s := range parseSteps(out) {
			j, ok := steps[s.name]
			if !ok {
				j = len(res.Steps)
				steps[s.name] = j
				res.Steps = append(res.Steps, KindStep{Name: s.name})
			}
			res.Steps[j].Seconds = append(res.Steps[j].Seconds, s.seconds)
		}
		if m := kindReported.FindStringSubmatch(out); m != nil {
			f, _ := strconv.ParseFloat(m[1], 64)
			res.Reported = append(res.Reported, f)
		}

		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), l.down(context.WithoutCancel(ctx)))
		case <-time.After(kindSettle):
		}
		mem, err := nodeMemory(ctx, env)
		if err != nil {
			return errors.Join(fmt.Errorf("round %d: %w", i+1, err), l.down(context.WithoutCancel(ctx)))
		}
		if ns, err := namespaceWorkingSets(ctx, env, kubeconfig); err != nil {
			slog.Warn("no per-namespace working sets", "err", err)
		} else {
			mem.Namespaces = ns
		}
		res.Memory = append(res.Memory, mem)

		start = time.Now()
		if err := l.down(context.WithoutCancel(ctx)); err != nil {
			return fmt.Errorf("round %d: %w", i+1, err)
		}
		down := time.Since(start).Seconds()
		left, err := kindLeft(ctx, env)
		if err != nil {
			return fmt.Errorf("round %d: after down: %w", i+1, err)
		}
		res.Clean = append(res.Clean, left == "")
		if left != "" {
			res.Left = append(res.Left, fmt.Sprintf("round %d: %s", i+1, left))
		}
		res.UpS = append(res.UpS, round3(up))
		res.ProductpageS = append(res.ProductpageS, round3(pageS))
		res.DownS = append(res.DownS, round3(down))
		slog.Info("kind round", "round", i+1, "up", up, "productpage", pageS, "down", down, "clean", left == "")
		if left != "" {
			// The next round would not start from no cluster.
			return fmt.Errorf("round %d: down left %s", i+1, left)
		}
	}
	return nil
}

// summarizeKind fills the p50s and maxima of the rounds there are.
func summarizeKind(res *KindResult) {
	pm := func(v []float64) (float64, float64) {
		if len(v) == 0 {
			return 0, 0
		}
		return p50max(v)
	}
	for i := range res.Steps {
		res.Steps[i].P50, _ = pm(res.Steps[i].Seconds)
	}
	res.UpP50, res.UpMax = pm(res.UpS)
	res.ProductpageP50, res.ProductpageMax = pm(res.ProductpageS)
	res.DownP50, res.DownMax = pm(res.DownS)
}

// kindLeft says what of a kind lab is on the engine: the cluster's node
// containers and kind's network; "" when nothing.
func kindLeft(ctx context.Context, env kindEnv) (string, error) {
	var left []string
	out, err := docker(ctx, env, "ps", "-a", "--filter", "label="+kindLabel+"="+kindCluster, "--format", "{{.Names}}")
	if err != nil {
		return "", fmt.Errorf("list the kind lab's containers: %w", err)
	}
	if names := strings.Fields(out); len(names) > 0 {
		left = append(left, "containers "+strings.Join(names, ", "))
	}
	out, err = docker(ctx, env, "network", "ls", "--format", "{{.Name}}")
	if err != nil {
		return "", fmt.Errorf("list the engine's networks: %w", err)
	}
	for _, n := range strings.Fields(out) {
		if n == "kind" {
			left = append(left, "network kind")
		}
	}
	return strings.Join(left, "; "), nil
}

// waitProductpage polls page until it answers 200 with the bookstore's
// title, or the bound passes.
func waitProductpage(ctx context.Context, page string, max time.Duration) error {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	deadline := time.Now().Add(max)
	for {
		err := getPage(ctx, c, page)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w (for %s)", err, max)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func getPage(ctx context.Context, c *http.Client, page string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, page, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", page, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("GET %s: %w", page, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", page, resp.Status)
	}
	if !strings.Contains(string(b), kindTitle) {
		return fmt.Errorf("GET %s: 200 without %q", page, kindTitle)
	}
	return nil
}

var (
	kindReported = regexp.MustCompile(`Lab is up on kind in ([0-9.]+)s`)
	// A step line as lab/kube prints it: mark, name in 22 columns, what
	// it did in 44, seconds. Names are short; the detail may hold spaces.
	stepLine = regexp.MustCompile(`^[✓✗] (.{22}) (?:.*\S)?\s+([0-9]+\.[0-9])s$`)
)

type stepTime struct {
	name    string
	seconds float64
}

// parseSteps reads up's step lines; a step printed twice (a retried one)
// counts once, its last time.
func parseSteps(out string) []stepTime {
	var steps []stepTime
	at := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		m := stepLine.FindStringSubmatch(strings.TrimRight(line, "\r "))
		if m == nil {
			continue
		}
		f, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			continue
		}
		name := strings.TrimSpace(m[1])
		if i, ok := at[name]; ok {
			steps[i].seconds = f
			continue
		}
		at[name] = len(steps)
		steps = append(steps, stepTime{name, f})
	}
	return steps
}

// nodeMemory reads the node container's memory from its cgroup v1 memory
// controller on this host (the engine is local), through docker stats when
// that cannot be read.
func nodeMemory(ctx context.Context, env kindEnv) (KindMemory, error) {
	out, err := docker(ctx, env, "inspect", "--format", "{{.State.Pid}} {{.Id}}", kindNode)
	if err != nil {
		return KindMemory{}, fmt.Errorf("the node's memory: %w", err)
	}
	pid, id, _ := strings.Cut(strings.TrimSpace(out), " ")
	m, cerr := cgroupMemory("/proc/"+pid+"/cgroup", "/sys/fs/cgroup/memory", id)
	if cerr == nil {
		return m, nil
	}
	slog.Warn("node memory from docker stats instead of the cgroup", "err", cerr)
	out, err = docker(ctx, env, "stats", "--no-stream", "--format", "{{.MemUsage}}", kindNode)
	if err != nil {
		return KindMemory{}, fmt.Errorf("the node's memory: %w", err)
	}
	b, err := parseMemUsage(out)
	if err != nil {
		return KindMemory{}, fmt.Errorf("the node's memory: %w", err)
	}
	return KindMemory{Source: "docker stats MemUsage (the cgroup's usage less the page cache the docker CLI subtracts)", UsageMB: mib(b), NoCacheMB: mib(b)}, nil
}

// cgroupMemory reads the memory of the container id from the cgroup its
// PID 1 is in: the node's systemd sits in a cgroup below the container's
// (…/<id>/init.scope), so the path is cut after the id to take in the
// whole node, its pods among it.
func cgroupMemory(procCgroup, root, id string) (KindMemory, error) {
	b, err := os.ReadFile(procCgroup)
	if err != nil {
		return KindMemory{}, fmt.Errorf("the node's memory cgroup: %w", err)
	}
	path, ok := memCgroupPath(string(b))
	if !ok {
		return KindMemory{}, fmt.Errorf("the node's memory cgroup: no cgroup v1 memory controller in %s", procCgroup)
	}
	// A path outside this process's cgroup namespace (../) or its root
	// would be some other cgroup's figures, the machine's at worst.
	if path == "/" || strings.Contains(path, "..") {
		return KindMemory{}, fmt.Errorf("the node's memory cgroup: %s is not below this process's cgroup root", path)
	}
	if i := strings.Index(path, id); id != "" && i >= 0 {
		path = path[:i+len(id)]
	}
	dir := filepath.Join(root, path)
	usage, err := os.ReadFile(filepath.Join(dir, "memory.usage_in_bytes"))
	if err != nil {
		return KindMemory{}, fmt.Errorf("the node's memory cgroup: %w", err)
	}
	stat, err := os.ReadFile(filepath.Join(dir, "memory.stat"))
	if err != nil {
		return KindMemory{}, fmt.Errorf("the node's memory cgroup: %w", err)
	}
	return memoryFromCgroup(string(usage), string(stat))
}

// memCgroupPath is the memory controller's path in /proc/<pid>/cgroup
// (cgroup v1: "N:memory:/path", the controller possibly sharing a line).
func memCgroupPath(s string) (string, bool) {
	for _, line := range strings.Split(s, "\n") {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "memory" {
				return parts[2], true
			}
		}
	}
	return "", false
}

// memoryFromCgroup: usage is hierarchical (the node's pods are cgroups
// below it); total_cache and total_inactive_file are the page cache and its
// reclaimable part over the whole hierarchy.
func memoryFromCgroup(usage, stat string) (KindMemory, error) {
	u, err := strconv.ParseFloat(strings.TrimSpace(usage), 64)
	if err != nil {
		return KindMemory{}, fmt.Errorf("read memory.usage_in_bytes: %w", err)
	}
	st := map[string]float64{}
	for _, line := range strings.Split(stat, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), " "); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				st[k] = f
			}
		}
	}
	cache, ok1 := st["total_cache"]
	inactive, ok2 := st["total_inactive_file"]
	if !ok1 || !ok2 {
		return KindMemory{}, fmt.Errorf("read memory.stat: no total_cache or total_inactive_file")
	}
	return KindMemory{Source: "cgroup v1 memory controller of the node container (memory.usage_in_bytes, memory.stat)",
		UsageMB: mib(u), CacheMB: mib(cache), NoCacheMB: mib(max(u-cache, 0)), WorkingSetMB: mib(max(u-inactive, 0))}, nil
}

var memUnits = map[string]float64{"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
	"kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}

// parseMemUsage reads docker stats' MemUsage ("1.23GiB / 7.5GiB"): the
// usage, in bytes.
func parseMemUsage(s string) (float64, error) {
	used, _, _ := strings.Cut(strings.TrimSpace(s), "/")
	used = strings.TrimSpace(used)
	i := strings.IndexFunc(used, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i <= 0 {
		return 0, fmt.Errorf("read docker stats' MemUsage %q: no number", s)
	}
	f, err := strconv.ParseFloat(used[:i], 64)
	if err != nil {
		return 0, fmt.Errorf("read docker stats' MemUsage %q: %w", s, err)
	}
	u, ok := memUnits[strings.TrimSpace(used[i:])]
	if !ok {
		return 0, fmt.Errorf("read docker stats' MemUsage %q: unknown unit", s)
	}
	return f * u, nil
}

// namespaceWorkingSets sums the pods' working sets per namespace from the
// kubelet's summary (through the API server's node proxy).
func namespaceWorkingSets(ctx context.Context, env kindEnv, kubeconfig string) (map[string]float64, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(env.bin, "kubectl"), "--kubeconfig", kubeconfig, "--context", "kind-"+kindCluster,
		"get", "--raw", "/api/v1/nodes/"+kindNode+"/proxy/stats/summary")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("the kubelet's stats summary: %w", err)
	}
	return parseSummary(out)
}

func parseSummary(b []byte) (map[string]float64, error) {
	var s struct {
		Pods []struct {
			PodRef struct {
				Namespace string `json:"namespace"`
			} `json:"podRef"`
			Memory *struct {
				WorkingSetBytes *float64 `json:"workingSetBytes"`
			} `json:"memory"`
		} `json:"pods"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("read the kubelet's stats summary: %w", err)
	}
	ns := map[string]float64{}
	for _, p := range s.Pods {
		if p.Memory == nil || p.Memory.WorkingSetBytes == nil {
			continue
		}
		ns[p.PodRef.Namespace] += *p.Memory.WorkingSetBytes
	}
	if len(ns) == 0 {
		return nil, fmt.Errorf("read the kubelet's stats summary: no pod has a working set")
	}
	for k, v := range ns {
		ns[k] = mib(v)
	}
	return ns, nil
}

func mib(b float64) float64 { return round1(b / (1 << 20)) }

func renderKind(w func(string, ...any), k *KindResult) {
	w("\n## kind runtime (issue 14)\n\nMeasured %s (`go run ./scripts/bench -sections kind`)", k.Measured.Format("2006-01-02 15:04 UTC"))
	if k.Raw != "" {
		w(", raw results: [`%s`](%s)", k.Raw, relDoc(k.Raw))
	}
	w(".")
	if k.Loaded {
		w(" Other work ran on the machine meanwhile: the times are upper bounds.")
	}
	w(" A kind cluster `%s` (one node) with MetalLB, istiod, the gateway and bookinfo, on the Docker engine and node image of `scripts/kind-testenv`, offline.\n\n", kindCluster)
	if len(k.UpS) > 0 {
		w("| | rounds | p50 s | max s | samples |\n|---|---:|---:|---:|---|\n")
		w("| `up --runtime kind` from no cluster → it returns | %d | %.2f | %.2f | %s |\n", len(k.UpS), k.UpP50, k.UpMax, floats(k.UpS))
		w("| `up --runtime kind` from no cluster → productpage answers 200 on the published port | %d | %.2f | %.2f | %s |\n", len(k.ProductpageS), k.ProductpageP50, k.ProductpageMax, floats(k.ProductpageS))
		w("| `down` → nothing left | %d | %.2f | %.2f | %s |\n", len(k.DownS), k.DownP50, k.DownMax, floats(k.DownS))
		clean := "yes, every round"
		for i, c := range k.Clean {
			if !c {
				clean = fmt.Sprintf("**no** (round %d)", i+1)
				break
			}
		}
		w("\n`up` printed %s. Nothing left after `down` (no container labelled `%s=%s`, no `kind` network): %s.\n", floats(k.Reported), kindLabel, kindCluster, clean)
		if len(k.Left) > 0 {
			w("\n")
		}
		for _, l := range k.Left {
			w("- left: %s\n", l)
		}
	}
	if len(k.Steps) > 0 {
		w("\n`up`'s own steps, as it prints them:\n\n| step | p50 s | samples |\n|---|---:|---|\n")
		for _, s := range k.Steps {
			w("| %s | %.1f | %s |\n", s.Name, s.P50, floats(s.Seconds))
		}
	}
	if len(k.Memory) > 0 {
		w("\nThe node container's memory, %.0f s after productpage answered (source: %s):\n\n", kindSettle.Seconds(), k.Memory[0].Source)
		w("| round | usage MB | usage − page cache MB | working set MB (usage − inactive file) |\n|---:|---:|---:|---:|\n")
		for i, m := range k.Memory {
			w("| %d | %.1f | %.1f | %s |\n", i+1, m.UsageMB, m.NoCacheMB, mb(m.WorkingSetMB))
		}
		if ns := k.Memory[len(k.Memory)-1].Namespaces; len(ns) > 0 {
			names := make([]string, 0, len(ns))
			for n := range ns {
				names = append(names, n)
			}
			sort.Strings(names)
			w("\nPods' working sets per namespace (the kubelet's summary, last round):\n\n| namespace | MB |\n|---|---:|\n")
			for _, n := range names {
				w("| %s | %.1f |\n", n, ns[n])
			}
		}
	}
	if t := k.Testenv; t.NodeImage != "" {
		w("\nTest environment: `scripts/kind-testenv` warm (cache current) %.2f s; node image `%s`, %.0f MB.", t.WarmSeconds, t.NodeImage, float64(t.NodeImageBytes)/(1<<20))
		if b := t.Build; b != nil {
			w(" Cold build (%s): binaries %.0f s, node image %.0f s.\n", b.Built, b.BinariesSeconds, b.NodeImageSeconds)
		} else {
			w(" Cold build: not recorded.\n")
		}
	}
	w("\nReproduce (as root):\n\n```\n")
	for _, c := range k.Commands {
		w("%s\n", c)
	}
	w("```\n")
}
