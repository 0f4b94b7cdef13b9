package console

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	security "istio.io/api/security/v1beta1"

	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/lab/console/health"
)

// Version is what api/status reports as the console's version.
var Version = "meshlab console"

func (s *server) listNamespaces(r *http.Request) (any, error) {
	m, err := s.meshSnapshot(r.Context())
	if err != nil {
		return nil, err
	}
	return s.namespaces(r.Context(), m), nil
}

// externalService is one row of api/status.
type externalService struct {
	Name  string `json:"name"`
	URL   string `json:"url"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

const probeTimeout = 3 * time.Second

// probes checks Prometheus, the trace store and the control plane at once.
func (s *server) probes(ctx context.Context) (prom, tracing, istiod externalService, version api.Version) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	prom = externalService{Name: "Prometheus", URL: s.o.PrometheusURL}
	tracing = externalService{Name: s.traces.Name(), URL: s.traces.URL()}
	istiod = externalService{Name: "istiod", URL: s.o.ControlPlaneURL}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		if _, _, _, err := s.prom.Query(ctx, "1", time.Now()); err != nil {
			prom.Error = err.Error()
		} else {
			prom.OK = true
		}
	}()
	go func() {
		defer wg.Done()
		if err := s.traces.Ping(ctx); err != nil {
			tracing.Error = err.Error()
		} else {
			tracing.OK = true
		}
	}()
	go func() {
		defer wg.Done()
		v, err := s.cp.Version(ctx)
		if err != nil {
			istiod.Error = err.Error()
			return
		}
		istiod.OK, version = true, v
	}()
	wg.Wait()
	return prom, tracing, istiod, version
}

func (s *server) status(r *http.Request) (any, error) {
	prom, tracing, istiod, v := s.probes(r.Context())
	st := map[string]string{"Kiali version": Version, "Kiali state": "running"}
	if v.Version != "" {
		st["Mesh version"] = v.Version
	}
	return map[string]any{"status": st, "externalServices": []externalService{prom, tracing, istiod}}, nil
}

type component struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	Status    string `json:"status"` // Healthy | Unreachable | NotReady
	Detail    string `json:"detail"`
}

func statusOf(e externalService) (string, string) {
	if e.OK {
		return "Healthy", e.URL
	}
	return "Unreachable", e.Error
}

func (s *server) meshStatus(r *http.Request) (any, error) {
	prom, tracing, istiod, v := s.probes(r.Context())
	comps := []component{}
	add := func(name string, e externalService) {
		st, detail := statusOf(e)
		comps = append(comps, component{Name: name, Namespace: rootNamespace, Status: st, Detail: detail})
	}
	add("istiod", istiod)
	if v.Version != "" {
		comps[0].Detail = "version " + v.Version
	}
	proxies := []api.ProxyStatus{}
	gw := component{Name: "istio-ingressgateway", Namespace: rootNamespace, Status: "Unreachable",
		Detail: "the control plane did not answer"}
	if m, err := s.meshSnapshot(r.Context()); err == nil {
		if m.proxies != nil {
			proxies = m.proxies
		}
		gw.Status, gw.Detail = "NotReady", "no ingress gateway pod (label istio=ingressgateway) in istio-system"
		ready, total := 0, 0
		for _, w := range m.workloads {
			if w.Namespace == rootNamespace && w.Labels["istio"] == "ingressgateway" {
				total++
				if w.Ready {
					ready++
				}
			}
		}
		if total > 0 {
			gw.Detail = fmt.Sprintf("%d/%d pods ready", ready, total)
			if ready > 0 {
				gw.Status = "Healthy"
			}
		}
	}
	comps = append(comps, gw)
	add("prometheus", prom)
	add(tracing.Name, tracing)
	comps = append(comps, component{Name: "kiali", Namespace: rootNamespace, Status: "Healthy", Detail: Version})
	return map[string]any{"components": comps, "proxies": proxies}, nil
}

// tlsState is a namespace's (or the mesh's) mTLS as Kiali reports it.
type tlsState struct {
	Status string `json:"status"` // MTLS_ENABLED | MTLS_PARTIALLY_ENABLED | MTLS_NOT_ENABLED | MTLS_DISABLED
	Mode   string `json:"mode"`   // STRICT | PERMISSIVE | DISABLE | ""
}

func tlsOfMode(mode string) tlsState {
	switch mode {
	case "STRICT":
		return tlsState{"MTLS_ENABLED", mode}
	case "PERMISSIVE":
		return tlsState{"MTLS_PARTIALLY_ENABLED", mode}
	case "DISABLE":
		return tlsState{"MTLS_DISABLED", mode}
	}
	return tlsState{"MTLS_NOT_ENABLED", ""}
}

// namespaceMode is the mode of ns's namespace-wide PeerAuthentication (no
// selector), the oldest when there are several, as Istio picks; "" when
// none or UNSET.
func namespaceMode(rs []config.Resource, ns string) string {
	var best *config.Resource
	for i := range rs {
		r := &rs[i]
		pa, ok := r.Spec.(*security.PeerAuthentication)
		if !ok || r.Namespace != ns || len(pa.GetSelector().GetMatchLabels()) > 0 {
			continue
		}
		if best == nil || r.CreationTime().Before(best.CreationTime()) {
			best = r
		}
	}
	if best == nil {
		return ""
	}
	m := best.Spec.(*security.PeerAuthentication).GetMtls().GetMode()
	if m == security.PeerAuthentication_MutualTLS_UNSET {
		return ""
	}
	return m.String()
}

// meshTLS is the mesh-wide PeerAuthentication's state.
func meshTLS(rs []config.Resource) tlsState { return tlsOfMode(namespaceMode(rs, rootNamespace)) }

// namespaceTLS is a namespace's own mode, or the mesh's it inherits.
func namespaceTLS(rs []config.Resource, ns string) tlsState {
	if m := namespaceMode(rs, ns); m != "" {
		return tlsOfMode(m)
	}
	return meshTLS(rs)
}

type healthCounts map[health.Status]int

type nsOverview struct {
	Name        string                  `json:"name"`
	Health      map[string]healthCounts `json:"health"`
	Validations validationSummary       `json:"validations"`
	TLS         tlsState                `json:"tls"`
	Sparkline   [][2]float64            `json:"sparkline"`
	Injected    bool                    `json:"injected"`
	Labels      map[string]string       `json:"labels"`
	Errors      map[string]string       `json:"errors,omitempty"`
}

type controlPlane struct {
	PushTimeMs  *float64 `json:"pushTimeMs"`
	Proxies     int      `json:"proxies"`
	CPU         *float64 `json:"cpu"` // cores
	MemoryBytes *float64 `json:"memoryBytes"`
	Version     string   `json:"version"`
	Error       string   `json:"error,omitempty"`
}

func (s *server) overview(r *http.Request) (any, error) {
	dur, err := durationParam(r, "duration", 10*time.Minute)
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	m, err := s.meshSnapshot(ctx)
	if err != nil {
		return nil, err
	}
	nss := s.namespaces(ctx, m)
	vals := m.validations()
	now := time.Now()
	step := max(dur/30, 15*time.Second)
	out := make([]nsOverview, len(nss))
	var wg sync.WaitGroup
	for i, ns := range nss {
		o := &out[i]
		o.Name, o.Injected, o.Labels = ns.Name, ns.Injected, ns.Labels
		o.TLS = namespaceTLS(m.resources, ns.Name)
		for _, res := range m.resources {
			if res.Namespace == ns.Name {
				if iv := vals[res.Key()]; iv != nil {
					o.Validations.count(iv)
				}
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			hs := s.healthOf(ctx, m, ns.Name, defaultRateInterval)
			o.Health = map[string]healthCounts{}
			for k, name := range map[entityKind]string{kindApp: "apps", kindWorkload: "workloads", kindService: "services"} {
				c := healthCounts{"Healthy": 0, "Degraded": 0, "Failure": 0, "NA": 0}
				for _, h := range hs[k] {
					c[h.Status]++
				}
				o.Health[name] = c
			}
			q := fmt.Sprintf(`sum(rate(istio_requests_total{reporter="destination",destination_service_namespace=%q}[%s]))`,
				ns.Name, promDuration(max(step, time.Minute)))
			o.Sparkline = [][2]float64{}
			ss, err := s.queryRange(ctx, q, promv1.Range{Start: now.Add(-dur), End: now, Step: step})
			if err != nil {
				o.Errors = map[string]string{"sparkline": err.Error()}
			} else if len(ss) > 0 {
				o.Sparkline = ss[0].Datapoints
			}
		}()
	}
	cp := s.controlPlaneCard(ctx, m, now)
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return map[string]any{"namespaces": out, "controlPlane": cp, "meshTLS": meshTLS(m.resources)}, nil
}

// controlPlaneCard reads istiod's own metrics: push (convergence) time,
// connected proxies, CPU and memory.
func (s *server) controlPlaneCard(ctx context.Context, m *snapshot, now time.Time) controlPlane {
	cp := controlPlane{Proxies: len(m.proxies)}
	if v, err := s.cp.Version(ctx); err == nil {
		cp.Version = v.Version
	}
	get := func(q string) *float64 {
		v, ok, err := s.queryScalar(ctx, q, now)
		if err != nil {
			if cp.Error == "" {
				cp.Error = err.Error()
			}
			return nil
		}
		if !ok {
			return nil
		}
		return &v
	}
	// A quiet lab pushed nothing in the window (the rate is 0/0): then the
	// average since istiod started, rather than no figure at all.
	if v := get(`1000 * sum(rate(pilot_proxy_convergence_time_sum{job="istiod"}[10m])) / sum(rate(pilot_proxy_convergence_time_count{job="istiod"}[10m]))`); v != nil {
		cp.PushTimeMs = v
	} else if v := get(`1000 * sum(pilot_proxy_convergence_time_sum{job="istiod"}) / sum(pilot_proxy_convergence_time_count{job="istiod"})`); v != nil {
		cp.PushTimeMs = v
	}
	if v := get(`sum(pilot_xds{job="istiod"})`); v != nil {
		cp.Proxies = int(*v)
	}
	cp.CPU = get(`sum(rate(process_cpu_seconds_total{job="istiod"}[1m]))`)
	cp.MemoryBytes = get(`sum(process_resident_memory_bytes{job="istiod"})`)
	return cp
}
