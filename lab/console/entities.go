package console

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"time"

	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	telemetry "istio.io/api/telemetry/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/registry"
	"github.com/meshlab/meshlab/lab/console/health"
)

// entityKind is what a list or details page shows.
type entityKind string

const (
	kindApp      entityKind = "app"
	kindWorkload entityKind = "workload"
	kindService  entityKind = "service"
)

func entityKindOf(pathKind string) entityKind {
	switch pathKind {
	case "applications", "apps", "app":
		return kindApp
	case "workloads", "workload":
		return kindWorkload
	case "services", "service":
		return kindService
	}
	return ""
}

// listItem is one row of the apps, workloads or services list.
type listItem struct {
	Name         string            `json:"name"`
	Namespace    string            `json:"namespace"`
	Labels       map[string]string `json:"labels"`
	Health       health.Status     `json:"health"`
	IstioSidecar bool              `json:"istioSidecar"`
	Versions     []string          `json:"versions"`
	Workloads    []string          `json:"workloads"`
	Services     []string          `json:"services"`
	Ports        []registry.Port   `json:"ports"`
}

type containerInfo struct {
	Name  string `json:"name"`
	Ready bool   `json:"ready"`
}

type podInfo struct {
	Name         string          `json:"name"`
	Status       string          `json:"status"`
	IP           string          `json:"ip"`
	Containers   []containerInfo `json:"containers"`
	IstioSidecar bool            `json:"istioSidecar"`
	ProxyID      string          `json:"proxyID"`
	ProxySynced  bool            `json:"proxySynced"`
}

type configRef struct {
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
}

type details struct {
	listItem
	Pods        []podInfo                  `json:"pods"`
	IstioConfig []configRef                `json:"istioConfig"`
	Validations map[string]*itemValidation `json:"validations"`
	// HealthDetail is the same as namespaces/{ns}/health's entry.
	HealthDetail entityHealth `json:"healthDetail"`
}

// entityHealth is one entry of namespaces/{ns}/health, as Kiali's.
type entityHealth struct {
	Status           health.Status           `json:"status"`
	Requests         health.Requests         `json:"requests"`
	WorkloadStatuses []health.WorkloadStatus `json:"workloadStatuses"`
}

// defaultRateInterval is Kiali's health rate interval.
const defaultRateInterval = time.Minute

func durationParam(r *http.Request, name string, def time.Duration) (time.Duration, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	d, err := parseDuration(v)
	if err != nil || d <= 0 {
		return 0, badRequest("%s %q: want a positive duration such as 600s, 10m or 600 (seconds)", name, v)
	}
	return d, nil
}

// parseDuration takes Go durations and Kiali's bare seconds.
func parseDuration(v string) (time.Duration, error) {
	var secs int64
	if _, err := fmt.Sscanf(v, "%d", &secs); err == nil && fmt.Sprint(secs) == v {
		return time.Duration(secs) * time.Second, nil
	}
	return time.ParseDuration(v)
}

// healthOf computes every app's, workload's and service's health in ns.
func (s *server) healthOf(ctx context.Context, m *snapshot, ns string, rate time.Duration) map[entityKind]map[string]entityHealth {
	reqs, err := health.QueryNamespace(ctx, s.prom, ns, s.o.Cluster, rate, time.Now())
	if err != nil {
		s.log.Debug("health query", "namespace", ns, "err", err)
	}
	deps := s.deployments(ctx, ns)
	tol := health.DefaultTolerances()
	out := map[entityKind]map[string]entityHealth{kindApp: {}, kindWorkload: {}, kindService: {}}
	reqStatus := func(r health.Requests) health.Status {
		st, _ := r.Evaluate(tol)
		return st
	}
	for _, w := range workloadsIn(m, ns) {
		ws := workloadStatus(m, w, deps)
		r := reqs.Workloads[w.Name]
		out[kindWorkload][w.Name] = entityHealth{Status: health.Worst(reqStatus(r), ws.Evaluate()), Requests: r,
			WorkloadStatuses: []health.WorkloadStatus{ws}}
	}
	for app, ws := range appsIn(m, ns) {
		r := reqs.Apps[app]
		h := entityHealth{Requests: r, WorkloadStatuses: []health.WorkloadStatus{}}
		sts := []health.Status{reqStatus(r)}
		for _, w := range ws {
			st := workloadStatus(m, w, deps)
			h.WorkloadStatuses = append(h.WorkloadStatuses, st)
			sts = append(sts, st.Evaluate())
		}
		h.Status = health.Worst(sts...)
		out[kindApp][app] = h
	}
	for _, svc := range servicesIn(m, ns) {
		r := reqs.Services[svc.Name]
		out[kindService][svc.Name] = entityHealth{Status: reqStatus(r), Requests: r, WorkloadStatuses: []health.WorkloadStatus{}}
	}
	return out
}

// workloadStatus is Kiali's pod health input for one workload.
func workloadStatus(m *snapshot, w *workload, deps map[string]appsv1.Deployment) health.WorkloadStatus {
	ws := health.WorkloadStatus{Name: w.Name, CurrentReplicas: int32(len(w.Pods)), DesiredReplicas: int32(len(w.Pods))}
	if d, ok := deps[w.Namespace+"/"+w.Name]; ok && d.Spec.Replicas != nil {
		ws.DesiredReplicas = *d.Spec.Replicas
	}
	synced := int32(0)
	for _, p := range w.Pods {
		if p.Ready && (p.Pod == nil || !p.Pod.Terminating) {
			ws.AvailableReplicas++
		}
		if ps, ok := proxyOf(m, p.Namespace, p.Name); ok && proxySynced(ps) {
			synced++
		}
	}
	ws.SyncedProxies = -1 // Kiali's "no proxies to sync"
	if w.Sidecar {
		ws.SyncedProxies = synced
	}
	return ws
}

func (s *server) namespaceHealth(r *http.Request) (any, error) {
	ns := r.PathValue("ns")
	k := entityKindOf(r.URL.Query().Get("type"))
	if t := r.URL.Query().Get("type"); t == "" {
		k = kindApp
	} else if k == "" {
		return nil, badRequest("type %q: want app, workload or service", t)
	}
	rate, err := durationParam(r, "rateInterval", defaultRateInterval)
	if err != nil {
		return nil, err
	}
	m, err := s.meshSnapshot(r.Context())
	if err != nil {
		return nil, err
	}
	return s.healthOf(r.Context(), m, ns, rate)[k], nil
}

// items lists ns's entities of a kind, with their health.
func (s *server) items(ctx context.Context, m *snapshot, ns string, k entityKind, hs map[entityKind]map[string]entityHealth) []listItem {
	out := []listItem{}
	svcs := servicesIn(m, ns)
	wls := workloadsIn(m, ns)
	switch k {
	case kindWorkload:
		for _, w := range wls {
			it := listItem{Name: w.Name, Namespace: w.Namespace, Labels: w.Labels, IstioSidecar: w.Sidecar,
				Health: hs[k][w.Name].Status, Versions: nonEmpty(w.version()), Workloads: []string{w.Name}, Services: []string{}, Ports: []registry.Port{}}
			for _, svc := range svcs {
				if selects(svc, w) {
					it.Services = append(it.Services, svc.Name)
				}
			}
			out = append(out, it)
		}
	case kindApp:
		apps := appsIn(m, ns)
		names := make([]string, 0, len(apps))
		for a := range apps {
			names = append(names, a)
		}
		sort.Strings(names)
		for _, a := range names {
			it := listItem{Name: a, Namespace: ns, Labels: map[string]string{"app": a}, IstioSidecar: true,
				Health: hs[k][a].Status, Versions: []string{}, Workloads: []string{}, Services: []string{}, Ports: []registry.Port{}}
			for _, w := range apps[a] {
				it.Workloads = append(it.Workloads, w.Name)
				it.Versions = appendUnique(it.Versions, w.version())
				it.IstioSidecar = it.IstioSidecar && w.Sidecar
				for _, svc := range svcs {
					if selects(svc, w) {
						it.Services = appendUnique(it.Services, svc.Name)
					}
				}
			}
			out = append(out, it)
		}
	case kindService:
		for _, svc := range svcs {
			it := listItem{Name: svc.Name, Namespace: svc.Namespace, Labels: orEmpty(svc.Labels), IstioSidecar: true,
				Health: hs[k][svc.Name].Status, Versions: []string{}, Workloads: []string{}, Services: []string{svc.Name}, Ports: svc.Ports}
			if it.Ports == nil {
				it.Ports = []registry.Port{}
			}
			any := false
			for _, w := range wls {
				if selects(svc, w) {
					any = true
					it.Workloads = append(it.Workloads, w.Name)
					it.Versions = appendUnique(it.Versions, w.version())
					it.IstioSidecar = it.IstioSidecar && w.Sidecar
				}
			}
			if !any {
				it.IstioSidecar = false
			}
			out = append(out, it)
		}
	}
	return out
}

func nonEmpty(v string) []string {
	if v == "" {
		return []string{}
	}
	return []string{v}
}

func appendUnique(l []string, v string) []string {
	if v == "" {
		return l
	}
	for _, x := range l {
		if x == v {
			return l
		}
	}
	return append(l, v)
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func (s *server) listEntities(r *http.Request, k entityKind) (any, error) {
	ns := r.PathValue("ns")
	m, err := s.meshSnapshot(r.Context())
	if err != nil {
		return nil, err
	}
	hs := s.healthOf(r.Context(), m, ns, defaultRateInterval)
	return map[string]any{"items": s.items(r.Context(), m, ns, k, hs)}, nil
}

func (s *server) entityDetails(r *http.Request, k entityKind) (any, error) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	m, err := s.meshSnapshot(r.Context())
	if err != nil {
		return nil, err
	}
	hs := s.healthOf(r.Context(), m, ns, defaultRateInterval)
	var d *details
	for _, it := range s.items(r.Context(), m, ns, k, hs) {
		if it.Name == name {
			d = &details{listItem: it}
		}
	}
	if d == nil {
		return nil, notFound("%s %s/%s not found", k, ns, name)
	}
	d.HealthDetail = hs[k][name]
	var pods []registry.Workload
	for _, w := range workloadsIn(m, ns) {
		if contains(d.Workloads, w.Name) {
			pods = append(pods, w.Pods...)
		}
	}
	d.Pods = s.podInfos(r.Context(), m, ns, pods)
	var svcs []registry.Service
	for _, svc := range servicesIn(m, ns) {
		if contains(d.Services, svc.Name) {
			svcs = append(svcs, svc)
		}
	}
	labels := []map[string]string{}
	for _, p := range pods {
		labels = append(labels, p.Labels)
	}
	d.IstioConfig = []configRef{}
	d.Validations = map[string]*itemValidation{}
	vals := m.validations()
	for _, res := range m.resources {
		if appliesTo(res, ns, svcs, labels) {
			d.IstioConfig = append(d.IstioConfig, configRef{Kind: string(res.Kind), Name: res.Name, Namespace: res.Namespace})
			if v := vals[res.Key()]; v != nil {
				d.Validations[res.Key()] = v
			}
		}
	}
	return d, nil
}

func contains(l []string, v string) bool {
	for _, x := range l {
		if x == v {
			return true
		}
	}
	return false
}

// podInfos are the pods of a details page: the runtime's view (phase,
// container readiness) when there is one, else the registry's.
func (s *server) podInfos(ctx context.Context, m *snapshot, ns string, pods []registry.Workload) []podInfo {
	rt := map[string]podInfo{}
	if s.o.Runtime != nil {
		if ps, err := s.o.Runtime.Pods(ctx, ns); err == nil {
			for _, p := range ps {
				pi := podInfo{Name: p.Name, Status: string(p.Status.Phase), IP: p.Status.PodIP, Containers: []containerInfo{}}
				for _, c := range p.Status.ContainerStatuses {
					pi.Containers = append(pi.Containers, containerInfo{Name: c.Name, Ready: c.Ready})
				}
				rt[p.Name] = pi
			}
		}
	}
	out := []podInfo{}
	for _, p := range pods {
		pi, ok := rt[p.Name]
		if !ok {
			pi = podInfo{Name: p.Name, Status: "Unknown", IP: p.IP.String(), Containers: []containerInfo{}}
			if p.Pod != nil {
				if p.Pod.Phase != "" {
					pi.Status = p.Pod.Phase
				}
				for _, c := range p.Pod.Containers {
					pi.Containers = append(pi.Containers, containerInfo{Name: c.Name, Ready: p.Ready})
				}
			}
		}
		pi.IstioSidecar = hasSidecar(p)
		if ps, ok := proxyOf(m, p.Namespace, p.Name); ok {
			pi.ProxyID, pi.ProxySynced = ps.ID, proxySynced(ps)
		}
		out = append(out, pi)
	}
	return out
}

// appliesTo says whether an Istio resource concerns the given services or
// pods: routing (VS, DR) by host, policies by workload selector (none =
// the whole namespace; the root namespace's apply mesh-wide).
func appliesTo(r config.Resource, ns string, svcs []registry.Service, podLabels []map[string]string) bool {
	hostOf := func(h string) bool {
		for _, svc := range svcs {
			if registry.FQDN(h, r.Namespace) == svc.Hostname() {
				return true
			}
		}
		return false
	}
	selected := func(sel map[string]string) bool {
		if r.Namespace != ns && r.Namespace != rootNamespace {
			return false
		}
		if len(sel) == 0 {
			return len(podLabels) > 0
		}
	pods:
		for _, l := range podLabels {
			for k, v := range sel {
				if l[k] != v {
					continue pods
				}
			}
			return true
		}
		return false
	}
	switch sp := r.Spec.(type) {
	case *networking.VirtualService:
		for _, h := range sp.GetHosts() {
			if hostOf(h) {
				return true
			}
		}
	case *networking.DestinationRule:
		return hostOf(sp.GetHost())
	case *security.PeerAuthentication:
		return selected(sp.GetSelector().GetMatchLabels())
	case *security.AuthorizationPolicy:
		return selected(sp.GetSelector().GetMatchLabels())
	case *security.RequestAuthentication:
		return selected(sp.GetSelector().GetMatchLabels())
	case *networking.Sidecar:
		return selected(sp.GetWorkloadSelector().GetLabels())
	case *telemetry.Telemetry:
		return selected(sp.GetSelector().GetMatchLabels())
	}
	return false
}

// rootNamespace is Istio's mesh config root namespace.
const rootNamespace = "istio-system"
