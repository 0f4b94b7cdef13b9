package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/meshlab/meshlab/lab"
)

// SandboxResult is what a developer's own workload costs on the local
// runtime (issue 10): apply → a new pod serving, a rollout restart of one
// pod, and scaling one Deployment to 10 pods, with and without a sidecar.
type SandboxResult struct {
	// Measured is when this section ran: it may run alone and be merged
	// into a full run's results (-render), so it says when it was taken.
	Measured time.Time `json:"measured"`
	// Raw is the results file of that run, when merged into another's.
	Raw    string `json:"raw,omitempty"`
	Rounds int    `json:"rounds"`
	// ApplyS: from `meshlab apply` of a Namespace, Service and Deployment
	// to the pod answering 200 on its own address.
	ApplyS   []float64 `json:"applyToServingSeconds"`
	ApplyP50 float64   `json:"applyToServingP50s"`
	ApplyMax float64   `json:"applyToServingMaxs"`
	// RestartS: from `meshlab rollout restart` of a 1-replica Deployment
	// to the new pod ready and the old one gone.
	RestartS   []float64      `json:"rolloutRestartSeconds"`
	RestartP50 float64        `json:"rolloutRestartP50s"`
	RestartMax float64        `json:"rolloutRestartMaxs"`
	Scale      []SandboxScale `json:"scale"`
}

// SandboxScale is one scale from 1 to Pods replicas.
type SandboxScale struct {
	Sidecar bool    `json:"sidecar"`
	Pods    int     `json:"pods"`
	Seconds float64 `json:"seconds"` // until every replica is ready
	// PssPerPodMB is the lab's processes' Pss added per extra pod.
	PssPerPodMB float64 `json:"pssPerPodMB"`
}

const sandboxApp = `apiVersion: v1
kind: Namespace
metadata:
  name: %[1]s
  labels: {%[2]s}
---
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: %[1]s}
spec:
  selector: {app: httpbin}
  ports: [{name: http, port: 8000}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: httpbin, namespace: %[1]s}
spec:
  replicas: 1
  selector: {matchLabels: {app: httpbin}}
  template:
    metadata: {labels: {app: httpbin}}
    spec:
      containers:
      - name: httpbin
        image: meshlab.local/meshlab:dev
        args: [sample, httpbin]
        readinessProbe: {httpGet: {path: /get, port: 8000}, periodSeconds: 1}
`

func (h *harness) sandboxBench(ctx context.Context) error {
	l := h.newLab()
	if _, err := l.up(ctx, "--no-bookinfo"); err != nil {
		return err
	}
	defer func() {
		if err := l.down(context.WithoutCancel(ctx)); err != nil {
			slog.Error("down after the sandbox section", "err", err)
		}
	}()
	write := func(ns, labels string) (string, error) {
		f := filepath.Join(h.work, ns+".yaml")
		return f, os.WriteFile(f, []byte(fmt.Sprintf(sandboxApp, ns, labels)), 0o644)
	}
	mesh, err := write("sandbox-mesh", "istio-injection: enabled")
	if err != nil {
		return err
	}
	plain, err := write("sandbox-plain", "")
	if err != nil {
		return err
	}
	h.cmd("meshlab", "apply", "-f", "sandbox-mesh.yaml")
	h.cmd("meshlab", "rollout", "restart", "deployment/httpbin", "-n", "sandbox-mesh")
	h.cmd("meshlab", "scale", "deployment/httpbin", "-n", "sandbox-mesh", "--replicas", "10")
	r := &SandboxResult{Rounds: h.labRounds, Measured: time.Now().UTC()}
	for i := 0; i < h.labRounds; i++ {
		start := time.Now()
		if _, err := l.run(ctx, "apply", "-f", mesh); err != nil {
			return err
		}
		if err := waitServing(ctx, l, "sandbox-mesh", 1, nil); err != nil {
			return err
		}
		r.ApplyS = append(r.ApplyS, round3(time.Since(start).Seconds()))
		if _, err := l.run(ctx, "delete", "-f", mesh); err != nil {
			return err
		}
		if err := waitPods(ctx, l, "sandbox-mesh", 0, nil); err != nil {
			return err
		}
	}
	if _, err := l.run(ctx, "apply", "-f", mesh); err != nil {
		return err
	}
	if err := waitServing(ctx, l, "sandbox-mesh", 1, nil); err != nil {
		return err
	}
	for i := 0; i < h.labRounds; i++ {
		old, err := podNames(l, "sandbox-mesh")
		if err != nil {
			return err
		}
		start := time.Now()
		if _, err := l.run(ctx, "rollout", "restart", "deployment/httpbin", "-n", "sandbox-mesh"); err != nil {
			return err
		}
		if err := waitServing(ctx, l, "sandbox-mesh", 1, old); err != nil {
			return err
		}
		r.RestartS = append(r.RestartS, round3(time.Since(start).Seconds()))
	}
	for _, c := range []struct {
		ns, file string
		sidecar  bool
	}{{"sandbox-mesh", mesh, true}, {"sandbox-plain", plain, false}} {
		if _, err := l.run(ctx, "apply", "-f", c.file); err != nil {
			return err
		}
		if err := waitServing(ctx, l, c.ns, 1, nil); err != nil {
			return err
		}
		time.Sleep(2 * time.Second) // let the first pod settle before its memory is read
		before, err := labPss(l)
		if err != nil {
			return err
		}
		start := time.Now()
		if _, err := l.run(ctx, "scale", "deployment/httpbin", "-n", c.ns, "--replicas", "10"); err != nil {
			return err
		}
		if err := waitServing(ctx, l, c.ns, 10, nil); err != nil {
			return err
		}
		took := time.Since(start).Seconds()
		time.Sleep(2 * time.Second)
		after, err := labPss(l)
		if err != nil {
			return err
		}
		r.Scale = append(r.Scale, SandboxScale{Sidecar: c.sidecar, Pods: 10, Seconds: round3(took), PssPerPodMB: round3((after - before) / 9)})
		if _, err := l.run(ctx, "delete", "-f", c.file); err != nil {
			return err
		}
		if err := waitPods(ctx, l, c.ns, 0, nil); err != nil {
			return err
		}
	}
	r.ApplyP50, r.ApplyMax = p50max(r.ApplyS)
	r.RestartP50, r.RestartMax = p50max(r.RestartS)
	h.res.Sandbox = r
	return nil
}

func podNames(l *labCtl, ns string) (map[string]bool, error) {
	st, err := l.status()
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, p := range st.Pods {
		if p.Namespace == ns {
			out[p.Name] = true
		}
	}
	return out, nil
}

// waitPods waits until ns has exactly n pods, none of them in not, every
// one ready (n 0: until they are all gone).
func waitPods(ctx context.Context, l *labCtl, ns string, n int, not map[string]bool) error {
	_, err := pollPods(ctx, l, ns, n, not)
	return err
}

func pollPods(ctx context.Context, l *labCtl, ns string, n int, not map[string]bool) ([]lab.Pod, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err := l.status()
		if err != nil {
			return nil, err
		}
		var ready []lab.Pod
		count := 0
		for _, p := range st.Pods {
			if p.Namespace != ns {
				continue
			}
			count++
			if p.Ready && !p.Terminating && !not[p.Name] {
				ready = append(ready, p)
			}
		}
		if count == n && len(ready) == n {
			return ready, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("namespace %s: %d pods, %d ready and new, after 2m; want %d", ns, count, len(ready), n)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// waitServing is waitPods, then every pod answering on its own address.
func waitServing(ctx context.Context, l *labCtl, ns string, n int, not map[string]bool) error {
	pods, err := pollPods(ctx, l, ns, n, not)
	if err != nil {
		return err
	}
	cl := &http.Client{Timeout: time.Second}
	for _, p := range pods {
		url := "http://" + p.IP + ":8000/get"
		for {
			resp, err := cl.Get(url)
			if err == nil {
				_ = resp.Body.Close() // the status is all that is read
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return nil
}

// labPss is the Pss of every container process of the lab, in MB.
func labPss(l *labCtl) (float64, error) {
	st, err := l.status()
	if err != nil {
		return 0, err
	}
	var sum float64
	var errs []string
	for _, p := range st.Pods {
		for _, c := range p.Containers {
			if c.PID == 0 {
				continue
			}
			v, err := pssMB(c.PID)
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			sum += v
		}
	}
	if len(errs) > 0 {
		return 0, fmt.Errorf("lab memory: %s", strings.Join(errs, "; "))
	}
	return sum, nil
}
