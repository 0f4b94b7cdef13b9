package main

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"text/template"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/lab"
)

//go:embed testdata/bench.yaml.tmpl
var benchManifest string

//go:embed testdata/istio.yaml
var benchIstio []byte

const benchNS = "bench"

// renderManifest fills in the binaries the pods run.
func renderManifest(fortio string) ([]byte, error) {
	sleep := "/bin/sleep"
	if _, err := os.Stat(sleep); err != nil {
		sleep = "/usr/bin/sleep"
	}
	t, err := template.New("bench").Parse(benchManifest)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	err = t.Execute(&b, map[string]any{"Fortio": fortio, "Sleep": sleep, "Bare": []string{"client-direct", "nginx", "nginx-front", "haproxy"}})
	return b.Bytes(), err
}

// proxyRef names a proxy process on a path.
type proxyRef struct {
	name string
	pid  int
}

// path is one request path under test.
type path struct {
	name, title string
	pending     string
	netns       string // client pod
	spec        loadSpec
	proxies     []proxyRef

	hist     histogram
	ok, errs int64
	elapsed  float64 // seconds under fixed-rate load
	cpu      map[string]float64
	res      PathResult
}

// dataplaneBench brings up the benchmark lab, measures every path and takes
// the lab down again.
func (h *harness) dataplaneBench(ctx context.Context) error {
	if err := ensurePackages(ctx); err != nil {
		return err
	}
	h.res.Machine.Nginx = versionOf("nginx", "-v")
	h.res.Machine.HAProxy = versionOf("haproxy", "-v")
	man, err := renderManifest(h.fortio)
	if err != nil {
		return err
	}
	manPath := filepath.Join(h.work, "bench.yaml")
	if err := os.WriteFile(manPath, man, 0o644); err != nil {
		return err
	}
	l := h.newLab()
	// Tracing at Istio's default 1 % (the lab's is 100 %), so the paths
	// compare with Istio's published figures; the telemetry section
	// measures the other settings.
	istioDefaults := []string{"--set", "meshConfig.defaultConfig.tracing.sampling=1"}
	h.cmd(append([]string{"meshlab"}, l.upArgs(append([]string{"--no-bookinfo", "--manifest", "<scripts/bench/testdata/bench.yaml.tmpl rendered>"}, istioDefaults...)...)...)...)
	if _, err := l.up(ctx, append([]string{"--no-bookinfo", "--manifest", manPath}, istioDefaults...)...); err != nil {
		// A half-up lab left behind holds the pod network: say so too.
		return errors.Join(err, l.down(context.WithoutCancel(ctx)))
	}
	defer func() {
		if err := l.down(context.WithoutCancel(ctx)); err != nil {
			slog.Error("take the benchmark lab down", "err", err)
		}
	}()
	st, err := l.status()
	if err != nil {
		return err
	}
	if err := applyBenchConfig(ctx, l); err != nil {
		return err
	}
	paths, procs, err := h.paths(ctx, l, st)
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	if err != nil {
		return err
	}
	if h.profile {
		return h.profileProxies(ctx, l, paths)
	}
	return h.measure(ctx, paths)
}

// applyBenchConfig applies the gateway path's Istio config and waits for
// every proxy to take it.
func applyBenchConfig(ctx context.Context, l *labCtl) error {
	cp, err := l.api()
	if err != nil {
		return err
	}
	docs, err := api.Documents("scripts/bench/testdata/istio.yaml", benchIstio, benchNS)
	if err != nil {
		return err
	}
	r, err := cp.Apply(ctx, api.ApplyRequest{Documents: docs})
	if err != nil {
		return fmt.Errorf("apply the benchmark gateway: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := cp.WaitSynced(wctx, r.Revision); err != nil {
		return fmt.Errorf("wait for the proxies to take the gateway config: %w", err)
	}
	return nil
}

// paths finds the pods, starts nginx and haproxy, and returns the paths
// with what they go through.
func (h *harness) paths(ctx context.Context, l *labCtl, st lab.Status) ([]*path, []*proc, error) {
	var procs []*proc
	var errs []error
	pod := func(deploy string) lab.Pod {
		p, err := st.FindPod(benchNS, deploy)
		if err != nil {
			errs = append(errs, err)
		}
		return p
	}
	pid := func(deploy, container string) int {
		_, pid, err := containerPID(st, benchNS, deploy, container)
		if err != nil {
			errs = append(errs, err)
		}
		return pid
	}
	gw, gwPID, err := containerPID(st, "istio-system", "istio-ingressgateway", "istio-proxy")
	if err != nil {
		errs = append(errs, err)
	}
	client, direct := pod("client"), pod("client-direct")
	server, serverDirect := pod("server"), pod("server-direct")
	nginxPod, frontPod, haproxyPod := pod("nginx"), pod("nginx-front"), pod("haproxy")
	serverProxy := proxyRef{"server sidecar", pid("server", "istio-proxy")}
	clientProxy := proxyRef{"client sidecar", pid("client", "istio-proxy")}
	// The Services' VIPs, as kubectl would read them.
	var svcs corev1.ServiceList
	if out, err := l.run(ctx, "get", "services", "-n", benchNS, "-o", "json"); err != nil {
		errs = append(errs, fmt.Errorf("get services -n %s: %w", benchNS, err))
	} else if err := json.Unmarshal([]byte(out), &svcs); err != nil {
		errs = append(errs, fmt.Errorf("get services -n %s -o json: %w", benchNS, err))
	}
	vipOf := func(name string) string {
		for _, s := range svcs.Items {
			if s.Name == name && s.Spec.ClusterIP != "" {
				return s.Spec.ClusterIP
			}
		}
		errs = append(errs, fmt.Errorf("service %s/%s has no cluster IP", benchNS, name))
		return ""
	}
	vip, mtlsVIP := vipOf("server"), vipOf("server-mtls")
	if len(errs) > 0 {
		return nil, nil, fmt.Errorf("find the benchmark pods: %v", errs)
	}

	// The comparison proxies run in their own pods, without sidecars, with
	// the plain server behind them.
	upstream := serverDirect.IP + ":8080"
	ndir := filepath.Join(h.work, "nginx")
	if err := os.MkdirAll(ndir, 0o755); err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(ndir, "nginx.conf"), []byte(nginxConf(ndir, upstream)), 0o644); err != nil {
		return nil, nil, err
	}
	// A second nginx in front of the first: two proxies of the kind the
	// mesh path's goal is measured against, each hop a veth like the
	// mesh's.
	fdir := filepath.Join(h.work, "nginx-front")
	if err := os.MkdirAll(fdir, 0o755); err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(fdir, "nginx.conf"), []byte(nginxConf(fdir, nginxPod.IP+":8080")), 0o644); err != nil {
		return nil, nil, err
	}
	hconf := filepath.Join(h.work, "haproxy.cfg")
	if err := os.WriteFile(hconf, []byte(haproxyConf(upstream)), 0o644); err != nil {
		return nil, nil, err
	}
	np, err := l.startProxy(ctx, nginxPod.Netns, filepath.Join(h.work, "nginx.log"), "nginx", "-p", ndir, "-c", filepath.Join(ndir, "nginx.conf"))
	if err != nil {
		return nil, procs, err
	}
	procs = append(procs, np)
	fp, err := l.startProxy(ctx, frontPod.Netns, filepath.Join(h.work, "nginx-front.log"), "nginx", "-p", fdir, "-c", filepath.Join(fdir, "nginx.conf"))
	if err != nil {
		return nil, procs, err
	}
	procs = append(procs, fp)
	hp, err := l.startProxy(ctx, haproxyPod.Netns, filepath.Join(h.work, "haproxy.log"), "haproxy", "-db", "-f", hconf)
	if err != nil {
		return nil, procs, err
	}
	procs = append(procs, hp)

	q := fmt.Sprintf("/?size=%d", h.size)
	spec := func(host, hostHeader string) loadSpec {
		return loadSpec{QPS: h.qps, Conns: h.conns, URL: "http://" + host + ":8080" + q, Host: hostHeader, CPU: -1}
	}
	ps := []*path{
		{name: "direct", title: "client → server (no sidecars: the floor)", netns: direct.Netns, spec: spec(serverDirect.IP, "")},
		{name: "inbound", title: "client → server sidecar → server (one meshlab hop)", netns: direct.Netns, spec: spec(server.IP, ""),
			proxies: []proxyRef{serverProxy}},
		{name: "mesh", title: "client → client sidecar → server sidecar → server", netns: client.Netns, spec: spec(vip, ""),
			proxies: []proxyRef{clientProxy, serverProxy}},
		{name: "mesh-mtls", title: "the same with mutual TLS (Istio's auto mTLS)", netns: client.Netns, spec: spec(mtlsVIP, ""),
			proxies: []proxyRef{clientProxy, serverProxy}},
		{name: "gateway", title: "client → gateway → server sidecar → server", netns: direct.Netns, spec: spec(gw.IP, "server.bench.example"),
			proxies: []proxyRef{{"gateway", gwPID}, serverProxy}},
		{name: "nginx", title: "client → nginx → server", netns: direct.Netns, spec: spec(nginxPod.IP, ""),
			proxies: []proxyRef{{"nginx", np.pid()}}},
		{name: "nginx-2", title: "client → nginx → nginx → server (two plain proxies: a reference for the mesh path)", netns: direct.Netns, spec: spec(frontPod.IP, ""),
			proxies: []proxyRef{{"front nginx", fp.pid()}, {"nginx", np.pid()}}},
		{name: "haproxy", title: "client → haproxy → server", netns: direct.Netns, spec: spec(haproxyPod.IP, ""),
			proxies: []proxyRef{{"haproxy", hp.pid()}}},
	}
	for _, p := range ps {
		if p.pending != "" {
			continue
		}
		if err := waitPodGet(ctx, p.netns, p.spec.URL, p.spec.Host, 30*time.Second); err != nil {
			return nil, procs, fmt.Errorf("path %s does not answer: %w", p.name, err)
		}
	}
	return ps, procs, nil
}

// measure runs the fixed-rate load in interleaved chunks, then the
// open-throttle runs, and fills h.res.Paths.
func (h *harness) measure(ctx context.Context, ps []*path) error {
	live := make([]*path, 0, len(ps))
	for _, p := range ps {
		p.cpu = map[string]float64{}
		p.res = PathResult{Name: p.name, Title: p.title, Pending: p.pending}
		if p.pending == "" {
			live = append(live, p)
		}
	}
	// Idle memory, before any request.
	for _, p := range live {
		for _, pr := range p.proxies {
			rss, _, anon, err := memMB(pr.pid)
			if err != nil {
				return err
			}
			pss, err := pssMB(pr.pid)
			if err != nil {
				return err
			}
			// The peak counts from here: what starting the process touched
			// (the init of every package the one binary links) is not load.
			if err := resetPeakRSS(pr.pid); err != nil {
				return err
			}
			p.res.Proxies = append(p.res.Proxies, ProxyResult{Name: pr.name, PID: pr.pid, IdleRSSMB: round1(rss),
				IdlePssMB: round1(pss), IdleAnonMB: round1(anon)})
		}
	}
	// Warm-up, discarded: connections, pools and the Go runtime of every
	// process on the path settle before anything is counted.
	for _, p := range live {
		s := p.spec
		s.Requests = h.warmup
		if _, err := h.load(ctx, p, s); err != nil {
			return fmt.Errorf("warm up %s: %w", p.name, err)
		}
	}
	per := (h.requests + h.chunks - 1) / h.chunks
	for c := 0; c < h.chunks; c++ {
		// Rotate the order each chunk so that drift of the machine falls
		// on every path alike.
		for i := range live {
			p := live[(i+c)%len(live)]
			r, err := h.chunk(ctx, p, per)
			if err != nil {
				return err
			}
			slog.Info("chunk", "path", p.name, "chunk", c+1, "of", h.chunks, "qps", fmt.Sprintf("%.0f", r.ActualQPS),
				"p50ms", fmt.Sprintf("%.3f", r.DurationHistogram.percentile(50)*1e3), "p99ms", fmt.Sprintf("%.3f", r.DurationHistogram.percentile(99)*1e3))
		}
	}
	var floor *path
	for _, p := range live {
		if p.name == "direct" {
			floor = p
		}
	}
	for _, p := range live {
		ms := func(q float64) float64 { return round3(p.hist.percentile(q) * 1e3) }
		p.res.Requests = p.hist.Count
		p.res.Errors = p.errs
		p.res.QPS = round1(float64(p.hist.Count) / p.elapsed)
		p.res.P50, p.res.P90, p.res.P99, p.res.P999 = ms(50), ms(90), ms(99), ms(99.9)
		for i := range p.res.Proxies {
			pr := &p.res.Proxies[i]
			pr.CPUPer1k = round3(p.cpu[pr.Name] / float64(p.hist.Count) * 1000)
			_, hwm, _, err := memMB(pr.PID)
			if err != nil {
				return err
			}
			pr.PeakRSSMB = round1(hwm)
			pss, err := pssMB(pr.PID)
			if err != nil {
				return err
			}
			pr.LoadedPssMB = round1(pss)
		}
	}
	if floor != nil {
		for _, p := range live {
			p.res.AddedP50 = round3(p.res.P50 - floor.res.P50)
			p.res.AddedP90 = round3(p.res.P90 - floor.res.P90)
			p.res.AddedP99 = round3(p.res.P99 - floor.res.P99)
		}
	}
	if h.maxDuration > 0 {
		for _, p := range live {
			m, err := h.maxThroughput(ctx, p)
			if err != nil {
				return fmt.Errorf("maximum throughput of %s: %w", p.name, err)
			}
			p.res.Max = m
		}
	}
	for _, p := range ps {
		h.res.Paths = append(h.res.Paths, p.res)
	}
	return nil
}

// chunk runs n requests of p's fixed-rate load and adds them, and the CPU
// its proxies used, to p's totals.
func (h *harness) chunk(ctx context.Context, p *path, n int) (fortioResult, error) {
	s := p.spec
	s.Requests = n
	before, err := cpuOf(p.proxies)
	if err != nil {
		return fortioResult{}, err
	}
	r, err := h.load(ctx, p, s)
	if err != nil {
		return r, fmt.Errorf("load %s: %w", p.name, err)
	}
	after, err := cpuOf(p.proxies)
	if err != nil {
		return r, err
	}
	for k := range after {
		p.cpu[k] += after[k] - before[k]
	}
	p.hist.merge(r.DurationHistogram)
	p.ok += r.ok()
	p.errs += r.errs()
	p.elapsed += float64(r.ActualDuration) / 1e9
	return r, nil
}

// maxThroughput runs the open throttle with the path's proxies pinned to the
// last core and fortio to the first.
func (h *harness) maxThroughput(ctx context.Context, p *path) (_ *MaxResult, err error) {
	core := runtime.NumCPU() - 1
	for _, pr := range p.proxies {
		if err := pin(pr.pid, core); err != nil {
			return nil, err
		}
	}
	defer func() {
		// A proxy left pinned shares the core with the next path's
		// proxies and skews their figures.
		for _, pr := range p.proxies {
			if uerr := pin(pr.pid, -1); uerr != nil {
				err = errors.Join(err, fmt.Errorf("unpin: %w", uerr))
			}
		}
	}()
	s := p.spec
	s.QPS, s.Requests, s.Seconds = 0, 0, h.maxDuration.Seconds()
	if core > 0 {
		s.CPU = 0
	}
	before, err := cpuOf(p.proxies)
	if err != nil {
		return nil, err
	}
	r, err := h.load(ctx, p, s)
	if err != nil {
		return nil, err
	}
	after, err := cpuOf(p.proxies)
	if err != nil {
		return nil, err
	}
	m := &MaxResult{QPS: round1(r.ActualQPS), Requests: r.DurationHistogram.Count, Errors: r.errs(), CPUCore: core,
		P50: round3(r.DurationHistogram.percentile(50) * 1e3), P99: round3(r.DurationHistogram.percentile(99) * 1e3)}
	if len(p.proxies) > 0 {
		m.PerCore = map[string]float64{}
		for k := range after {
			if d := after[k] - before[k]; d > 0 {
				m.PerCore[k] = math.Round(float64(r.ok()) / d)
			}
		}
	}
	slog.Info("open throttle", "path", p.name, "qps", m.QPS, "requestsPerProxyCPUSecond", m.PerCore)
	return m, nil
}

func cpuOf(ps []proxyRef) (map[string]float64, error) {
	out := make(map[string]float64, len(ps))
	for _, p := range ps {
		c, err := cpuSeconds(p.pid)
		if err != nil {
			return nil, err
		}
		out[p.name] = c
	}
	return out, nil
}

// load runs fortio in the path's client pod.
func (h *harness) load(ctx context.Context, p *path, s loadSpec) (fortioResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := h.lab.nsCommand(ctx, p.netns, s.args(h.fortio)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return fortioResult{}, fmt.Errorf("fortio: %w\n%s", err, tailText(errb.String(), 10))
	}
	r, err := parseFortio(out.Bytes())
	if err != nil {
		return r, err
	}
	if r.DurationHistogram.Count == 0 {
		return r, fmt.Errorf("fortio made no calls:\n%s", tailText(errb.String(), 10))
	}
	if bad := r.errs(); bad*100 > r.DurationHistogram.Count {
		return r, fmt.Errorf("%d of %d calls failed (codes %v):\n%s", bad, r.DurationHistogram.Count, r.RetCodes, tailText(errb.String(), 10))
	}
	return r, nil
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }
func round3(f float64) float64 { return math.Round(f*1000) / 1000 }
