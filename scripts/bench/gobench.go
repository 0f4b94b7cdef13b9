package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// goBenchPackages are the packages whose micro-benchmarks the run collects.
var goBenchPackages = []string{"./dataplane/...", "./controlplane/xds/..."}

// goBench runs the Go micro-benchmarks, keeps their raw output (benchstat
// reads it) and parses it into the results.
func (h *harness) goBench(ctx context.Context) error {
	args := h.goBenchArgs(goBenchPackages...)
	h.cmd(append([]string{"go"}, args...)...)
	raw, bs, err := h.runGoBench(ctx, "gobench", args)
	h.res.GoBenchRaw, h.res.GoBench = raw, bs
	return err
}

// goBenchArgs are the arguments of `go test` running every benchmark of
// pkgs: five runs each (one with -quick), for benchstat and the median.
func (h *harness) goBenchArgs(pkgs ...string) []string {
	count := "5"
	if h.quick {
		count = "1"
	}
	return append([]string{"test", "-run", "^$", "-bench", ".", "-benchmem", "-count", count}, pkgs...)
}

// runGoBench runs `go test` with args from the repository's root, keeps
// its raw output as <prefix>-<run>-<mode>.txt under the results directory
// (benchstat reads it) and parses it. What was parsed is returned even
// when go test fails, with the failure.
func (h *harness) runGoBench(ctx context.Context, prefix string, args []string) (string, []GoBenchmark, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = h.root
	out, err := cmd.CombinedOutput()
	raw := fmt.Sprintf("%s-%s-%s.txt", prefix, h.res.Started.Format("20060102T150405Z"), h.res.Mode)
	if werr := os.WriteFile(filepath.Join(h.out, raw), out, 0o644); werr != nil {
		return "", nil, werr
	}
	bs := parseGoBench(string(out))
	if err != nil {
		return raw, bs, fmt.Errorf("go test -bench: %w\n%s", err, tailText(string(out), 15))
	}
	return raw, bs, nil
}

// parseGoBench reads `go test -bench -benchmem` output: pkg: lines name the
// package of the Benchmark lines after them. Units other than ns/op, B/op
// and allocs/op go to Metrics.
func parseGoBench(s string) []GoBenchmark {
	var out []GoBenchmark
	pkg := ""
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		b := GoBenchmark{Package: pkg, Name: f[0], Iterations: n}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				b.NsPerOp = v
			case "B/op":
				b.BytesPerOp = v
			case "allocs/op":
				b.AllocsPerOp = v
			default:
				// What the benchmark reported itself (b.ReportMetric):
				// the console's graph reports its heap, nodes and edges.
				if b.Metrics == nil {
					b.Metrics = map[string]float64{}
				}
				b.Metrics[f[i+1]] = v
			}
		}
		out = append(out, b)
	}
	return out
}
