// Command kubesd runs Prometheus v2.42's own Kubernetes service discovery
// (github.com/prometheus/prometheus/discovery/kubernetes, the version
// Debian ships) against an API server, for one role in some namespaces,
// and prints the target groups it found as HTTP SD JSON: the reference
// the control plane's HTTP SD is compared with. A module of its own, so
// Prometheus's dependencies stay out of meshlab's go.mod.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/prometheus/discovery/kubernetes"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

type group struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the API server")
	role := flag.String("role", "pod", "pod or endpoints")
	namespaces := flag.String("namespaces", "", "comma-separated namespaces (all when empty)")
	want := flag.Int("want", 1, "wait until this many targets are found")
	flag.Parse()
	if err := run(*kubeconfig, *role, *namespaces, *want); err != nil {
		fmt.Fprintln(os.Stderr, "kubesd:", err)
		os.Exit(1)
	}
}

func run(kubeconfig, role, namespaces string, want int) error {
	cfg := kubernetes.DefaultSDConfig
	cfg.Role = kubernetes.Role(role)
	cfg.KubeConfig = kubeconfig
	if namespaces != "" {
		cfg.NamespaceDiscovery.Names = strings.Split(namespaces, ",")
	}
	d, err := kubernetes.New(log.NewNopLogger(), &cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ch := make(chan []*targetgroup.Group)
	go d.Run(ctx, ch)
	groups := map[string]*targetgroup.Group{}
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("found %d targets, want %d: %w", count(groups), want, ctx.Err())
		case tgs := <-ch:
			for _, tg := range tgs {
				groups[tg.Source] = tg
			}
		}
		if count(groups) >= want {
			break
		}
	}
	var out []group
	for _, tg := range groups {
		for _, t := range tg.Targets {
			g := group{Labels: map[string]string{}}
			for k, v := range tg.Labels {
				g.Labels[string(k)] = string(v)
			}
			for k, v := range t {
				if k == "__address__" {
					g.Targets = []string{string(v)}
					continue
				}
				g.Labels[string(k)] = string(v)
			}
			out = append(out, g)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Targets[0]+out[i].Labels["__meta_kubernetes_pod_container_name"] < out[j].Targets[0]+out[j].Labels["__meta_kubernetes_pod_container_name"]
	})
	return json.NewEncoder(os.Stdout).Encode(out)
}

func count(groups map[string]*targetgroup.Group) int {
	n := 0
	for _, tg := range groups {
		n += len(tg.Targets)
	}
	return n
}
