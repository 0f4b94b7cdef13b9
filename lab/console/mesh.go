package console

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/registry"
	"github.com/meshlab/meshlab/lab/console/graph"
)

// snapshotTTL is how long one listing of the control plane serves: a graph
// refresh, the overview and a list page opened together read it once.
const snapshotTTL = 2 * time.Second

// snapshot is the control plane's config, registry and proxy status at
// one moment.
type snapshot struct {
	at        time.Time
	resources []config.Resource
	services  []registry.Service
	workloads []registry.Workload
	proxies   []api.ProxyStatus          // nil when the control plane would not say
	byPod     map[string]api.ProxyStatus // proxies by namespace/pod

	valOnce sync.Once
	vals    map[string]*itemValidation // validations(), computed once per snapshot
}

// validations are the snapshot's KIA checks and analyzer messages, worked
// out on first use: a big mesh's checks are not redone for every page.
func (m *snapshot) validations() map[string]*itemValidation {
	m.valOnce.Do(func() { m.vals = validations(m) })
	return m.vals
}

func (m *snapshot) graphMesh() graph.Mesh {
	return graph.Mesh{Config: m.resources, Services: m.services, Workloads: m.workloads}
}

// meshSnapshot returns a snapshot at most snapshotTTL old. Concurrent
// callers share one listing.
func (s *server) meshSnapshot(ctx context.Context) (*snapshot, error) {
	s.meshMu.Lock()
	defer s.meshMu.Unlock()
	if s.mesh != nil && time.Since(s.mesh.at) < s.ttl {
		return s.mesh, nil
	}
	list, err := s.cp.List(ctx, "all", "", "")
	if err != nil {
		return nil, fmt.Errorf("list the control plane's config: %w", err)
	}
	m := &snapshot{at: time.Now()}
	for _, it := range list.Items {
		r, err := config.Unmarshal(it)
		if err != nil {
			return nil, fmt.Errorf("read stored config: %w", err)
		}
		m.resources = append(m.resources, r)
	}
	reg, err := s.cp.Registry(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the control plane's registry: %w", err)
	}
	m.services, m.workloads = reg.Services, reg.Workloads
	m.byPod = map[string]api.ProxyStatus{}
	if p, err := s.cp.Proxies(ctx); err == nil {
		m.proxies = p
		for _, ps := range p {
			m.byPod[ps.Namespace+"/"+ps.Pod] = ps
		}
	} else {
		s.log.Debug("proxy status", "err", err)
	}
	s.mesh = m
	return m, nil
}

// invalidate drops the snapshot after a change made through the console,
// so the next page shows it.
func (s *server) invalidate() {
	s.meshMu.Lock()
	s.mesh = nil
	s.meshMu.Unlock()
}

// hasSidecar says whether a pod runs in the mesh.
func hasSidecar(w registry.Workload) bool { return graph.Injected(w.Pod) }

// workloadName is the Kiali workload (the controller: Deployment, ...) a
// pod belongs to, the name Istio's telemetry reports.
func workloadName(w registry.Workload) string { return graph.TelemetryWorkload(w) }

// workload is one Kiali workload: a controller and its pods.
type workload struct {
	Name, Namespace string
	Labels          map[string]string
	Pods            []registry.Workload
	Sidecar         bool // every pod has one
}

func (w *workload) app() string     { return w.Labels["app"] }
func (w *workload) version() string { return w.Labels["version"] }

// workloadsIn groups the registry's pods of ns (all when "") into
// workloads, sorted by name.
func workloadsIn(m *snapshot, ns string) []*workload {
	by := map[string]*workload{}
	var out []*workload
	for _, p := range m.workloads {
		if ns != "" && p.Namespace != ns {
			continue
		}
		name := workloadName(p)
		k := p.Namespace + "/" + name
		w := by[k]
		if w == nil {
			labels := map[string]string{}
			for k, v := range p.Labels {
				if k != "pod-template-hash" {
					labels[k] = v
				}
			}
			w = &workload{Name: name, Namespace: p.Namespace, Labels: labels, Sidecar: true}
			by[k] = w
			out = append(out, w)
		}
		w.Pods = append(w.Pods, p)
		w.Sidecar = w.Sidecar && hasSidecar(p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out
}

func servicesIn(m *snapshot, ns string) []registry.Service {
	var out []registry.Service
	for _, s := range m.services {
		if ns == "" || s.Namespace == ns {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// appsIn groups ns's workloads by their app label; workloads without one
// belong to no app (as in Kiali).
func appsIn(m *snapshot, ns string) map[string][]*workload {
	out := map[string][]*workload{}
	for _, w := range workloadsIn(m, ns) {
		if a := w.app(); a != "" {
			out[a] = append(out[a], w)
		}
	}
	return out
}

// selects reports whether svc selects any pod of w.
func selects(svc registry.Service, w *workload) bool {
	for _, p := range w.Pods {
		if svc.Selects(p) {
			return true
		}
	}
	return false
}

// namespaceInfo is one namespace as api/namespaces lists it.
type namespaceInfo struct {
	Name     string            `json:"name"`
	Labels   map[string]string `json:"labels"`
	Injected bool              `json:"injected"`
}

// namespaces are the runtime's namespaces (with labels) when there is a
// runtime, and every namespace with a service, pod or config.
func (s *server) namespaces(ctx context.Context, m *snapshot) []namespaceInfo {
	by := map[string]*namespaceInfo{}
	add := func(ns string) *namespaceInfo {
		if ns == "" {
			return nil
		}
		n := by[ns]
		if n == nil {
			n = &namespaceInfo{Name: ns, Labels: map[string]string{}}
			by[ns] = n
		}
		return n
	}
	if s.o.Runtime != nil {
		if nss, err := s.o.Runtime.Namespaces(ctx); err == nil {
			for _, ns := range nss {
				n := add(ns.Name)
				for k, v := range ns.Labels {
					n.Labels[k] = v
				}
				if ns.Labels["istio-injection"] == "enabled" || ns.Labels["istio.io/rev"] != "" {
					n.Injected = true
				}
			}
		} else {
			s.log.Debug("runtime namespaces", "err", err)
		}
	}
	for _, svc := range m.services {
		add(svc.Namespace)
	}
	for _, w := range m.workloads {
		if n := add(w.Namespace); hasSidecar(w) {
			n.Injected = true
		}
	}
	for _, r := range m.resources {
		add(r.Namespace)
	}
	out := make([]namespaceInfo, 0, len(by))
	for _, n := range by {
		out = append(out, *n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// deployments maps namespace/name to the runtime's Deployments, for
// desired replicas; empty without a runtime.
func (s *server) deployments(ctx context.Context, ns string) map[string]appsv1.Deployment {
	out := map[string]appsv1.Deployment{}
	if s.o.Runtime == nil {
		return out
	}
	ds, err := s.o.Runtime.Deployments(ctx, ns)
	if err != nil {
		s.log.Debug("runtime deployments", "err", err)
		return out
	}
	for _, d := range ds {
		out[d.Namespace+"/"+d.Name] = d
	}
	return out
}

// proxyOf finds the proxy status of a pod.
func proxyOf(m *snapshot, ns, pod string) (api.ProxyStatus, bool) {
	p, ok := m.byPod[ns+"/"+pod]
	return p, ok
}

func proxySynced(p api.ProxyStatus) bool {
	if !p.Connected {
		return false
	}
	for _, t := range p.Types {
		if t.State != "SYNCED" && t.State != "" {
			return false
		}
	}
	return true
}
