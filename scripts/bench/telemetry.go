package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshlab/meshlab/controlplane/api"
)

// TelemetryResult is what telemetry costs (issue 12): the mesh path at
// the fixed rate with tracing and metrics switched by the Telemetry API
// between chunks, and the lab's Prometheus scraping bookinfo.
type TelemetryResult struct {
	Measured time.Time `json:"measured"`
	// Raw is the results file of that run, when merged into another's.
	Raw        string             `json:"raw,omitempty"`
	Variants   []TelemetryVariant `json:"variants"`
	Prometheus *PrometheusCost    `json:"prometheus,omitempty"`
}

// TelemetryVariant is the mesh path under one Telemetry configuration.
type TelemetryVariant struct {
	Name     string  `json:"name"`
	Title    string  `json:"title"`
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`
	QPS      float64 `json:"qps"`
	P50      float64 `json:"p50ms"`
	P90      float64 `json:"p90ms"`
	P99      float64 `json:"p99ms"`
	// AddedP90 is over the variant without tracing and metrics.
	AddedP90 float64 `json:"addedP90ms"`
	// ClientCPU and ServerCPU are CPU seconds per 1,000 requests of the
	// two sidecars (= vCPU at 1,000 rps).
	ClientCPU float64 `json:"clientCPUPer1k"`
	ServerCPU float64 `json:"serverCPUPer1k"`
}

// PrometheusCost is the lab's Prometheus while it scrapes a bookinfo lab
// under a steady request loop.
type PrometheusCost struct {
	Seconds        float64 `json:"seconds"`
	ScrapeInterval string  `json:"scrapeInterval"`
	Targets        int     `json:"targets"`
	Series         int     `json:"series"`
	VCPU           float64 `json:"vcpu"`
	RSSMB          float64 `json:"rssMB"`
	PeakRSSMB      float64 `json:"peakRSSMB"`
}

// telemetryVariants are the configurations compared, each a mesh-wide
// Telemetry resource (the lab's zipkin provider, named in the mesh
// config by the section's up).
var telemetryVariants = []struct{ name, title, spec string }{
	{"none", "no tracing, no metrics", "tracing: [{providers: [{name: zipkin}], randomSamplingPercentage: 0}]\n  metrics: [{overrides: [{disabled: true}]}]"},
	{"metrics", "metrics, no tracing", "tracing: [{providers: [{name: zipkin}], randomSamplingPercentage: 0}]"},
	{"trace-1", "metrics, tracing at 1 % (Istio's default)", "tracing: [{providers: [{name: zipkin}], randomSamplingPercentage: 1}]"},
	{"trace-100", "metrics, tracing at 100 % (the lab's default)", "tracing: [{providers: [{name: zipkin}], randomSamplingPercentage: 100}]"},
}

const telemetryDoc = `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  %s
`

// zipkinProvider names the lab's trace store as an extension provider,
// so Telemetry resources can select it.
var zipkinProvider = []string{
	"--set", "meshConfig.extensionProviders[0].name=zipkin",
	"--set", "meshConfig.extensionProviders[0].zipkin.service=zipkin.istio-system.svc.cluster.local",
	"--set", "meshConfig.extensionProviders[0].zipkin.port=9411",
	"--prometheus-port", "0", "--zipkin-port", "0",
}

func (h *harness) telemetryBench(ctx context.Context) error {
	res := &TelemetryResult{Measured: time.Now().UTC()}
	h.res.Telemetry = res
	if err := h.telemetryPaths(ctx, res); err != nil {
		return err
	}
	return h.prometheusCost(ctx, res)
}

func (h *harness) telemetryPaths(ctx context.Context, res *TelemetryResult) error {
	man, err := renderManifest(h.fortio)
	if err != nil {
		return err
	}
	manPath := filepath.Join(h.work, "bench.yaml")
	if err := os.WriteFile(manPath, man, 0o644); err != nil {
		return err
	}
	l := h.newLab()
	args := append([]string{"--no-bookinfo", "--manifest", manPath}, zipkinProvider...)
	h.cmd(append([]string{"meshlab"}, l.upArgs(append([]string{"--no-bookinfo", "--manifest", "<bench.yaml>"}, zipkinProvider...)...)...)...)
	if _, err := l.up(ctx, args...); err != nil {
		return err
	}
	defer func() {
		if err := l.down(context.WithoutCancel(ctx)); err != nil {
			slog.Error("down after the telemetry section", "err", err)
		}
	}()
	st, err := l.status()
	if err != nil {
		return err
	}
	client, err := st.FindPod(benchNS, "client")
	if err != nil {
		return err
	}
	_, clientPID, err := containerPID(st, benchNS, "client", "istio-proxy")
	if err != nil {
		return err
	}
	_, serverPID, err := containerPID(st, benchNS, "server", "istio-proxy")
	if err != nil {
		return err
	}
	var svcs corev1.ServiceList
	out, err := l.run(ctx, "get", "services", "-n", benchNS, "-o", "json")
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), &svcs); err != nil {
		return err
	}
	vip := ""
	for _, s := range svcs.Items {
		if s.Name == "server" {
			vip = s.Spec.ClusterIP
		}
	}
	if vip == "" {
		return fmt.Errorf("service %s/server has no cluster IP", benchNS)
	}
	cp, err := l.api()
	if err != nil {
		return err
	}
	apply := func(spec string) error {
		docs, err := api.Documents("telemetry.yaml", []byte(fmt.Sprintf(telemetryDoc, spec)), "istio-system")
		if err != nil {
			return err
		}
		r, err := cp.Apply(ctx, api.ApplyRequest{Documents: docs})
		if err != nil {
			return fmt.Errorf("apply the Telemetry: %w", err)
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return cp.WaitSynced(wctx, r.Revision)
	}
	h.cmd("meshlab", "apply", "-f", "telemetry.yaml  # each variant's mesh-wide Telemetry, switched between chunks")
	p := &path{name: "mesh", netns: client.Netns,
		spec:    loadSpec{QPS: h.qps, Conns: h.conns, URL: "http://" + vip + ":8080" + fmt.Sprintf("/?size=%d", h.size), CPU: -1},
		proxies: []proxyRef{{"client sidecar", clientPID}, {"server sidecar", serverPID}}}
	if err := waitPodGet(ctx, p.netns, p.spec.URL, "", 30*time.Second); err != nil {
		return err
	}
	// One path a variant: the same client, server and sidecars, each
	// with its own totals.
	ps := make([]*path, len(telemetryVariants))
	for i, v := range telemetryVariants {
		vp := *p
		vp.name, vp.cpu = v.name, map[string]float64{}
		ps[i] = &vp
		if err := apply(v.spec); err != nil {
			return err
		}
		s := p.spec
		s.Requests = h.warmup
		if _, err := h.load(ctx, ps[i], s); err != nil {
			return fmt.Errorf("warm up %s: %w", v.name, err)
		}
	}
	per := (h.requests + h.chunks - 1) / h.chunks
	for c := 0; c < h.chunks; c++ {
		for j := range telemetryVariants {
			i := (j + c) % len(telemetryVariants)
			if err := apply(telemetryVariants[i].spec); err != nil {
				return err
			}
			r, err := h.chunk(ctx, ps[i], per)
			if err != nil {
				return err
			}
			slog.Info("telemetry chunk", "variant", ps[i].name, "chunk", c+1, "p90ms", fmt.Sprintf("%.3f", r.DurationHistogram.percentile(90)*1e3))
		}
	}
	for i, v := range telemetryVariants {
		a := ps[i]
		ms := func(q float64) float64 { return round3(a.hist.percentile(q) * 1e3) }
		n := float64(a.hist.Count)
		res.Variants = append(res.Variants, TelemetryVariant{Name: v.name, Title: v.title, Requests: a.hist.Count, Errors: a.errs,
			QPS: round1(n / a.elapsed), P50: ms(50), P90: ms(90), P99: ms(99),
			ClientCPU: round3(a.cpu["client sidecar"] / n * 1000), ServerCPU: round3(a.cpu["server sidecar"] / n * 1000)})
	}
	for i := range res.Variants {
		res.Variants[i].AddedP90 = round3(res.Variants[i].P90 - res.Variants[0].P90)
	}
	return nil
}

// prometheusCost runs a bookinfo lab with a request loop through the
// gateway and reads the lab's Prometheus process over two minutes of
// scraping every 15 s.
func (h *harness) prometheusCost(ctx context.Context, res *TelemetryResult) error {
	l := h.newLab()
	h.cmd("meshlab", "up  # bookinfo, the lab's Prometheus scraping every 15 s for 120 s under a 10 rps loop")
	if _, err := l.up(ctx, "--prometheus-port", "0", "--zipkin-port", "0"); err != nil {
		return err
	}
	defer func() {
		if err := l.down(context.WithoutCancel(ctx)); err != nil {
			slog.Error("down after the Prometheus measurement", "err", err)
		}
	}()
	st, err := l.status()
	if err != nil {
		return err
	}
	pod, pid, err := containerPID(st, "istio-system", "prometheus", "prometheus")
	if err != nil {
		return err
	}
	if err := resetPeakRSS(pid); err != nil {
		return err
	}
	cpu0, err := cpuSeconds(pid)
	if err != nil {
		return err
	}
	const window = 120 * time.Second
	start := time.Now()
	page := fmt.Sprintf("http://127.0.0.1:%d/productpage", l.ports[0])
	for time.Since(start) < window {
		if resp, err := http.Get(page); err == nil {
			_ = resp.Body.Close()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	cpu1, err := cpuSeconds(pid)
	if err != nil {
		return err
	}
	rss, hwm, _, err := memMB(pid)
	if err != nil {
		return err
	}
	c := &PrometheusCost{Seconds: round1(time.Since(start).Seconds()), ScrapeInterval: "15s",
		VCPU: round3((cpu1 - cpu0) / time.Since(start).Seconds()), RSSMB: round1(rss), PeakRSSMB: round1(hwm)}
	base := "http://" + pod.IP + ":9090"
	var targets struct {
		Data struct {
			ActiveTargets []json.RawMessage `json:"activeTargets"`
		} `json:"data"`
	}
	if err := nsGetJSON(ctx, h, pod.Netns, base+"/api/v1/targets", &targets); err == nil {
		c.Targets = len(targets.Data.ActiveTargets)
	}
	var series struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := nsGetJSON(ctx, h, pod.Netns, base+"/api/v1/query?query="+url.QueryEscape(`count({__name__=~".+"})`), &series); err == nil && len(series.Data.Result) == 1 {
		if s, ok := series.Data.Result[0].Value[1].(string); ok {
			c.Series, _ = strconv.Atoi(s)
		}
	}
	res.Prometheus = c
	return nil
}

// nsGetJSON fetches u with curl from inside netns (the pod network is not
// the host's) and decodes it.
func nsGetJSON(ctx context.Context, h *harness, netns, u string, v any) error {
	cmd := h.lab.nsCommand(ctx, netns, "curl", "-sS", "--max-time", "10", u)
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("curl %s: %w", u, err)
	}
	return json.Unmarshal(out, v)
}
