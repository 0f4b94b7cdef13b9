package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// runProfile is `task bench:profile`: the benchmark lab, the mesh path under
// fixed-rate load, and pprof CPU and allocation profiles of both sidecars
// and the gateway taken from their admin servers (127.0.0.1:15000 in each
// pod) while it runs.
func (h *harness) runProfile(ctx context.Context, wait time.Duration) error {
	return withLab(ctx, wait, h.dataplaneBench)
}

func (h *harness) profileProxies(ctx context.Context, l *labCtl, paths []*path) error {
	st, err := l.status()
	if err != nil {
		return err
	}
	dir := filepath.Join(h.out, "profiles", h.res.Started.Format("20060102T150405Z"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	targets := []struct{ name, ns, deploy string }{
		{"client-sidecar", benchNS, "client"}, {"server-sidecar", benchNS, "server"}, {"gateway", "istio-system", "istio-ingressgateway"},
	}
	for _, p := range paths {
		if p.name != "mesh" && p.name != "gateway" {
			continue
		}
		// Load for the whole profile and a little more on both sides.
		s := p.spec
		s.Requests = 0
		s.Seconds = float64(h.profileSecs + 4)
		var wg sync.WaitGroup
		var loadErr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, loadErr = h.load(ctx, p, s)
		}()
		time.Sleep(2 * time.Second)
		var mu sync.Mutex
		var perr []error
		var pwg sync.WaitGroup
		fetch := func(netns, path, file string) {
			defer pwg.Done()
			if err := fetchProfile(ctx, netns, path, file); err != nil {
				mu.Lock()
				perr = append(perr, err)
				mu.Unlock()
			}
		}
		// The CPU profiles of every proxy on the path run at once, over the
		// same load.
		for _, t := range targets {
			if !onPath(p.name, t.name) {
				continue
			}
			pod, err := st.FindPod(t.ns, t.deploy)
			if err != nil {
				return err
			}
			pwg.Add(1)
			go fetch(pod.Netns, "/debug/pprof/profile?seconds="+strconv.Itoa(h.profileSecs),
				filepath.Join(dir, fmt.Sprintf("%s-%s-cpu.pprof", p.name, t.name)))
		}
		pwg.Wait()
		wg.Wait()
		if loadErr != nil {
			return loadErr
		}
		for _, t := range targets {
			if !onPath(p.name, t.name) {
				continue
			}
			pod, err := st.FindPod(t.ns, t.deploy)
			if err != nil {
				return err
			}
			pwg.Add(1)
			fetch(pod.Netns, "/debug/pprof/allocs", filepath.Join(dir, fmt.Sprintf("%s-%s-allocs.pprof", p.name, t.name)))
		}
		for _, e := range perr {
			slog.Warn("profile", "err", e)
		}
	}
	slog.Info("profiles written", "dir", dir, "read with", "go tool pprof -top "+filepath.Join(dir, "mesh-server-sidecar-cpu.pprof"))
	h.res.Profiles = append(h.res.Profiles, dir)
	return nil
}

// fetchProfile saves a pprof endpoint of a pod's admin server to file.
func fetchProfile(ctx context.Context, netns, path, file string) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if err := podGet(ctx, netns, "http://127.0.0.1:15000"+path, "", f); err != nil {
		_ = f.Close()
		return err
	}
	// A profile cut short by a failed close would read as a whole one.
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", file, err)
	}
	return nil
}

// onPath says whether a profiled proxy carries the path's traffic.
func onPath(path, proxy string) bool {
	switch proxy {
	case "gateway":
		return path == "gateway"
	case "client-sidecar":
		return path == "mesh"
	}
	return true
}
