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
	count := "5"
	if h.quick {
		count = "1"
	}
	args := append([]string{"test", "-run", "^$", "-bench", ".", "-benchmem", "-count", count}, goBenchPackages...)
	h.cmd(append([]string{"go"}, args...)...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = h.root
	out, err := cmd.CombinedOutput()
	raw := fmt.Sprintf("gobench-%s-%s.txt", h.res.Started.Format("20060102T150405Z"), h.res.Mode)
	if werr := os.WriteFile(filepath.Join(h.out, raw), out, 0o644); werr != nil {
		return werr
	}
	h.res.GoBenchRaw = raw
	h.res.GoBench = parseGoBench(string(out))
	if err != nil {
		return fmt.Errorf("go test -bench: %w\n%s", err, tailText(string(out), 15))
	}
	return nil
}

// parseGoBench reads `go test -bench -benchmem` output: pkg: lines name the
// package of the Benchmark lines after them.
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
			}
		}
		out = append(out, b)
	}
	return out
}
