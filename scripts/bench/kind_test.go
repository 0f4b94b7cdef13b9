package main

import (
	"flag"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata from what the code renders now")

func TestParseSteps(t *testing.T) {
	// The lines as lab/kube's stepper prints them.
	line := func(mark, name, detail string, secs float64) string {
		return fmt.Sprintf("%s %-22s %-44s %6.1fs", mark, name, detail, secs)
	}
	for _, tc := range []struct {
		name string
		out  string
		want []stepTime
	}{
		{"an up", strings.Join([]string{
			line("✓", "kind cluster", "created meshlab, 1 node (kind-meshlab)", 13.8),
			line("✓", "image loaded", "meshlab.local/meshlab:dev (1 node)", 4.2),
			line("✓", "pod network", "meshlab-kindnet 10.244.0.0/16, nodes Ready", 9),
			line("✓", "MetalLB pool", "172.18.255.200-172.18.255.250", 21.4),
			line("✓", "istiod + gateway", "external IP 172.18.255.200", 48.1),
			line("✓", "bookinfo pods", "6 pods 2/2 Ready in default", 112.5),
			"Lab is up on kind in 209.1s.",
			"productpage:   http://127.0.0.1:18180/productpage (and http://172.18.255.200:8080/productpage from this host)",
		}, "\n") + "\n", []stepTime{{"kind cluster", 13.8}, {"image loaded", 4.2}, {"pod network", 9}, {"MetalLB pool", 21.4},
			{"istiod + gateway", 48.1}, {"bookinfo pods", 112.5}}},
		{"the literal line of the brief", "✓ kind cluster           created meshlab, 1 node (kind-meshlab)         13.8s\n",
			[]stepTime{{"kind cluster", 13.8}}},
		{"a failed step, an empty detail, a retried step, CRLF", line("✗", "MetalLB pool", "failed", 300) + "\r\n" +
			line("✓", "images archive", "", 2.5) + "\n" + line("✓", "MetalLB pool", "172.18.255.200-172.18.255.250", 1.5) + "\n",
			[]stepTime{{"MetalLB pool", 1.5}, {"images archive", 2.5}}},
		{"not step lines", "✓ kind cluster meshlab deleted in 12.3s\n✓ no kind cluster meshlab to delete\nLab is up on kind in 9.0s.\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseSteps(tc.out); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parseSteps = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseMemUsage(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		bad  bool
	}{
		{in: "1.5GiB / 7.6GiB\n", want: 1.5 * (1 << 30)},
		{in: "812.4MiB / 7.6GiB", want: 812.4 * (1 << 20)},
		{in: "900kB / 1GB", want: 900e3},
		{in: "0B / 0B", want: 0},
		{in: "-- / --", bad: true},
		{in: "12XB / 1GiB", bad: true},
		{in: "", bad: true},
	} {
		got, err := parseMemUsage(tc.in)
		if (err != nil) != tc.bad || (!tc.bad && got != tc.want) {
			t.Errorf("parseMemUsage(%q) = %v, %v; want %v (error %v)", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func TestMemCgroupPath(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"12:pids:/docker/abc\n9:memory:/docker/abc\n1:name=systemd:/docker/abc\n", "/docker/abc", true},
		{"4:cpu,memory:/system.slice/docker-abc.scope\n", "/system.slice/docker-abc.scope", true},
		{"0::/system.slice/docker-abc.scope\n", "", false}, // cgroup v2
		{"9:memoryx:/a\n", "", false},
	} {
		got, ok := memCgroupPath(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("memCgroupPath(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestMemoryFromCgroup(t *testing.T) {
	const mb = 1 << 20
	stat := fmt.Sprintf("cache %d\nrss 1\ntotal_cache %d\ntotal_rss %d\ntotal_inactive_file %d\n", 5*mb, 300*mb, 900*mb, 200*mb)
	for _, tc := range []struct {
		name, usage, stat string
		want              KindMemory
		bad               bool
	}{
		{"hierarchical totals", fmt.Sprintf("%d\n", 1250*mb), stat,
			KindMemory{UsageMB: 1250, CacheMB: 300, NoCacheMB: 950, WorkingSetMB: 1050}, false},
		{"cache above usage floors at zero", fmt.Sprintf("%d", 100*mb), stat, KindMemory{UsageMB: 100, CacheMB: 300}, false},
		{"usage not a number", "lots", stat, KindMemory{}, true},
		{"no totals", "1", "cache 1\ninactive_file 1\n", KindMemory{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := memoryFromCgroup(tc.usage, tc.stat)
			if (err != nil) != tc.bad {
				t.Fatalf("err %v, want error %v", err, tc.bad)
			}
			got.Source = ""
			if !tc.bad && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// The cgroup is read where /proc/<pid>/cgroup points under the memory
// controller's root.
func TestCgroupMemory(t *testing.T) {
	root := t.TempDir()
	dir := root + "/docker/abc"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for f, s := range map[string]string{
		root + "/cgroup":               "9:memory:/docker/abc/init.scope\n",
		dir + "/memory.usage_in_bytes": "2097152\n",
		dir + "/memory.stat":           "total_cache 1048576\ntotal_inactive_file 524288\n",
		root + "/cgroup-v2":            "0::/x\n",
	} {
		if err := os.WriteFile(f, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// PID 1 (systemd) is in init.scope below the container's cgroup; the
	// whole container is read.
	m, err := cgroupMemory(root+"/cgroup", root, "abc")
	if err != nil || m.UsageMB != 2 || m.NoCacheMB != 1 || m.WorkingSetMB != 1.5 {
		t.Errorf("cgroupMemory = %+v, %v", m, err)
	}
	for _, f := range []string{"cgroup-v2", "cgroup-outside", "cgroup-root"} {
		if m, err := cgroupMemory(root+"/"+f, root, "abc"); err == nil {
			t.Errorf("%s read: %+v", f, m)
		}
	}
}

func TestParseSummary(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     map[string]float64
		bad      bool
	}{
		{"pods by namespace", `{"node":{},"pods":[
			{"podRef":{"name":"a","namespace":"default"},"memory":{"workingSetBytes":10485760}},
			{"podRef":{"name":"b","namespace":"default"},"memory":{"workingSetBytes":5242880}},
			{"podRef":{"name":"istiod","namespace":"istio-system"},"memory":{"workingSetBytes":52428800}},
			{"podRef":{"name":"new","namespace":"kube-system"}}]}`,
			map[string]float64{"default": 15, "istio-system": 50}, false},
		{"no figures", `{"pods":[{"podRef":{"namespace":"x"},"memory":{}}]}`, nil, true},
		{"not JSON", `<html>`, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSummary([]byte(tc.in))
			if (err != nil) != tc.bad || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parseSummary = %v, %v; want %v (error %v)", got, err, tc.want, tc.bad)
			}
		})
	}
}

func TestParseKindEnvAndBuild(t *testing.T) {
	env, err := parseKindEnv("DOCKER_HOST=unix:///run/meshlab-kind-docker/docker.sock\nMESHLAB_KIND_NODE_IMAGE=meshlab.local/kind-node:v1.34.4\nMESHLAB_KIND_BIN=/c/bin\n")
	if err != nil || env != (kindEnv{"unix:///run/meshlab-kind-docker/docker.sock", "meshlab.local/kind-node:v1.34.4", "/c/bin"}) {
		t.Errorf("parseKindEnv = %+v, %v", env, err)
	}
	if _, err := parseKindEnv("DOCKER_HOST=x\n"); err == nil {
		t.Error("parseKindEnv without the image and bin lines: no error")
	}
	for _, tc := range []struct {
		in   string
		want *KindBuild
		bad  bool
	}{
		{"binaries_seconds=412\nnode_image_seconds=95.5\nbuilt=2026-12-07T02:10:00Z\n", &KindBuild{BinariesSeconds: 412, NodeImageSeconds: 95.5, Built: "2026-12-07T02:10:00Z"}, false},
		{"# nothing of ours\n", nil, false},
		{"binaries_seconds=soon\n", nil, true},
		{"built=yesterday\n", nil, true},
	} {
		got, err := parseKindBuild(tc.in)
		if (err != nil) != tc.bad || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseKindBuild(%q) = %+v, %v; want %+v (error %v)", tc.in, got, err, tc.want, tc.bad)
		}
	}
	if b, err := readKindBuild(t.TempDir() + "/BUILD"); b != nil || err != nil {
		t.Errorf("readKindBuild of no file = %+v, %v; want nil, nil", b, err)
	}
}

func kindFixture() *KindResult {
	return &KindResult{Measured: time.Date(2026, 12, 7, 3, 30, 0, 0, time.UTC), Raw: "docs/bench/20261207T033000Z-full.json", Rounds: 2,
		Commands: []string{"scripts/kind-testenv", "go run ./scripts/bench -sections kind -merge docs/bench/latest.json",
			"meshlab up --runtime kind --node-image meshlab.local/kind-node:v1.34.4 --http-port 18180 --https-port 18543", "meshlab down"},
		Testenv: KindTestenv{WarmSeconds: 3.412, NodeImage: "meshlab.local/kind-node:v1.34.4", NodeImageBytes: 1288490188},
		UpS:     []float64{201.5, 190.25}, ProductpageS: []float64{202.1, 190.9}, DownS: []float64{4.2, 3.9},
		UpP50: 190.25, UpMax: 201.5, ProductpageP50: 190.9, ProductpageMax: 202.1, DownP50: 3.9, DownMax: 4.2,
		Reported: []float64{200.9, 189.7},
		Steps:    []KindStep{{Name: "kind cluster", Seconds: []float64{13.8, 12.9}, P50: 12.9}, {Name: "istiod + gateway", Seconds: []float64{48.1, 45}, P50: 45}},
		Memory: []KindMemory{{Source: "cgroup v1 memory controller of the node container (memory.usage_in_bytes, memory.stat)", UsageMB: 1800.5, NoCacheMB: 1300.2, WorkingSetMB: 1500, CacheMB: 500.3},
			{Source: "cgroup v1 memory controller of the node container (memory.usage_in_bytes, memory.stat)", UsageMB: 1750, NoCacheMB: 1290, WorkingSetMB: 1480, CacheMB: 460,
				Namespaces: map[string]float64{"istio-system": 120.5, "default": 400.2, "kube-system": 380}}},
		Clean: []bool{true, true}}
}

func TestRenderKind(t *testing.T) {
	noBuild := kindFixture()
	built := kindFixture()
	built.Testenv.Build = &KindBuild{BinariesSeconds: 412, NodeImageSeconds: 95, Built: "2026-12-07T02:10:00Z"}
	built.Loaded, built.Clean, built.Left = true, []bool{true, false}, []string{"round 2: network kind"}
	for _, tc := range []struct {
		golden string
		k      *KindResult
	}{
		{"testdata/kind.md", noBuild},
		{"testdata/kind-built-left.md", built},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			var b strings.Builder
			renderKind(func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }, tc.k)
			if *update {
				if err := os.WriteFile(tc.golden, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(tc.golden)
			if err != nil {
				t.Fatalf("%v (go test ./scripts/bench/ -run TestRenderKind -update writes it)", err)
			}
			if b.String() != string(want) {
				t.Errorf("rendered differs from %s (-update rewrites it):\n%s", tc.golden, b.String())
			}
		})
	}
	// The whole document carries the section.
	if doc := render(Results{Kind: noBuild}, "docs/bench/latest.json"); !strings.Contains(doc, "\n## kind runtime (issue 14)\n") {
		t.Error("the document lacks the kind section")
	}
}

func TestMergeKind(t *testing.T) {
	into := Results{Kind: &KindResult{Rounds: 5}, Errors: []SectionError{{Section: "kind", Error: "old"}}}
	run := Results{Machine: Machine{Loaded: true}, Kind: &KindResult{Rounds: 2}}
	mergeSections(&into, run, []string{"kind"}, "docs/bench/new.json")
	if into.Kind == nil || into.Kind.Rounds != 2 || into.Kind.Raw != "docs/bench/new.json" || !into.Kind.Loaded || len(into.Errors) != 0 {
		t.Errorf("kind %+v, errors %+v", into.Kind, into.Errors)
	}
	if into.Machine.ExternalNote != "" {
		t.Errorf("a stamped section marked in the note: %q", into.Machine.ExternalNote)
	}
}

// A section that failed in its first round still renders.
func TestSummarizeKindPartial(t *testing.T) {
	k := &KindResult{Steps: []KindStep{{Name: "kind cluster"}}, UpS: []float64{3, 1, 2}}
	summarizeKind(k)
	if k.UpP50 != 2 || k.UpMax != 3 || k.DownP50 != 0 || k.Steps[0].P50 != 0 {
		t.Errorf("got %+v", k)
	}
}
