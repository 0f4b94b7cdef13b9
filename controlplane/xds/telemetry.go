package xds

// Telemetry, as istiod computes it per proxy (pilot/pkg/model/telemetry.go):
// the Telemetry resources that apply to a workload — the oldest one of
// the root namespace without a selector (mesh-wide), the oldest one of
// its namespace without a selector (namespace-wide), the oldest one of
// its namespace whose selector matches its labels (workload) — merged in
// that order, later levels overriding earlier ones, with the mesh
// config's defaultProviders beneath them all. A Telemetry with a
// targetRef applies, in Istio 1.24, only to Gateway API gateways and
// waypoints, which meshlab does not have: it applies to no proxy here.

import (
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/types/known/durationpb"
	meshv1 "istio.io/api/mesh/v1alpha1"
	tpb "istio.io/api/telemetry/v1alpha1"

	"github.com/meshlab/meshlab/controlplane/config"
)

// telemetryRes is one Telemetry resource.
type telemetryRes struct {
	res  config.Resource
	spec *tpb.Telemetry
}

// telemetries are the Telemetry resources by namespace, oldest first, as
// Istio's getTelemetries sorts them.
type telemetries map[string][]*telemetryRes

func newTelemetries(cfg []config.Resource) telemetries {
	t := telemetries{}
	for _, r := range cfg {
		if s, ok := r.Spec.(*tpb.Telemetry); ok {
			t[r.Namespace] = append(t[r.Namespace], &telemetryRes{res: r, spec: s})
		}
	}
	for _, l := range t {
		slices.SortFunc(l, func(a, b *telemetryRes) int { return oldestFirst(a.res, b.res) })
	}
	return t
}

// namespaceWide is the oldest Telemetry of ns that selects no workload.
func (t telemetries) namespaceWide(ns string) *telemetryRes {
	for _, tel := range t[ns] {
		if len(tel.spec.GetSelector().GetMatchLabels()) == 0 && !targeted(tel.spec) {
			return tel
		}
	}
	return nil
}

func targeted(s *tpb.Telemetry) bool {
	return s.GetTargetRef() != nil || len(s.GetTargetRefs()) > 0
}

// applicable are the Telemetry resources that apply to a workload, in
// Istio's order: mesh-wide, namespace-wide, workload.
type applicable struct {
	levels []*telemetryRes
	// key names them, so that proxies under the same ones share their
	// computed configuration.
	key string
}

func (t telemetries) applicable(root, ns string, labels map[string]string) applicable {
	var a applicable
	add := func(tel *telemetryRes) {
		if tel != nil {
			a.levels = append(a.levels, tel)
			a.key += tel.res.Namespace + "/" + tel.res.Name + ";"
		} else {
			a.key += ";"
		}
	}
	add(t.namespaceWide(root))
	if ns != root {
		add(t.namespaceWide(ns))
	}
	var wl *telemetryRes
	for _, tel := range t[ns] {
		sel := tel.spec.GetSelector().GetMatchLabels()
		if len(sel) > 0 && selectorMatches(sel, labels) {
			wl = tel
			break
		}
	}
	add(wl)
	return a
}

func (a applicable) tracing() []*tpb.Tracing {
	var out []*tpb.Tracing
	for _, l := range a.levels {
		out = append(out, l.spec.GetTracing()...)
	}
	return out
}

func (a applicable) metrics() []*tpb.Metrics {
	var out []*tpb.Metrics
	for _, l := range a.levels {
		out = append(out, l.spec.GetMetrics()...)
	}
	return out
}

// logging is each level's access logging, levels without any left out.
func (a applicable) logging() [][]*tpb.AccessLogging {
	var out [][]*tpb.AccessLogging
	for _, l := range a.levels {
		if len(l.spec.GetAccessLogging()) > 0 {
			out = append(out, l.spec.GetAccessLogging())
		}
	}
	return out
}

// fetchProvider finds an extension provider by name, ignoring case, as
// Istio's fetchProvider.
func fetchProvider(mesh *meshv1.MeshConfig, name string) *meshv1.MeshConfig_ExtensionProvider {
	for _, p := range mesh.GetExtensionProviders() {
		if strings.EqualFold(name, p.GetName()) {
			return p
		}
	}
	return nil
}

func providerNames(ps []*tpb.ProviderRef) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.GetName())
	}
	return out
}

// tracingSpec is Istio's TracingSpec: the tracing of one mode.
type tracingSpec struct {
	provider             *meshv1.MeshConfig_ExtensionProvider
	disabled             bool
	randomSampling       *float64
	customTags           map[string]*tpb.Tracing_CustomTag
	useRequestIDSampling bool
	enableIstioTags      bool
}

// tracingConfig is Istio's Telemetries.Tracing: nil when neither a
// Telemetry nor defaultProviders.tracing says anything (the legacy mesh
// config then decides), else the client and server specs.
func tracingConfig(a applicable, mesh *meshv1.MeshConfig) (client, server *tracingSpec) {
	defaults := mesh.GetDefaultProviders().GetTracing()
	ts := a.tracing()
	if len(ts) == 0 && len(defaults) == 0 {
		return nil, nil
	}
	client = &tracingSpec{useRequestIDSampling: true, enableIstioTags: true}
	server = &tracingSpec{useRequestIDSampling: true, enableIstioTags: true}
	if len(defaults) > 0 {
		p := fetchProvider(mesh, defaults[0])
		client.provider, server.provider = p, p
	}
	for _, m := range ts {
		specs := []*tracingSpec{client, server}
		switch m.GetMatch().GetMode() {
		case tpb.WorkloadMode_CLIENT:
			specs = specs[:1]
		case tpb.WorkloadMode_SERVER:
			specs = specs[1:]
		}
		for _, s := range specs {
			if names := providerNames(m.GetProviders()); len(names) > 0 {
				// Istio supports one provider per mode: the first.
				s.provider = fetchProvider(mesh, names[0])
			}
			if m.GetDisableSpanReporting() != nil {
				s.disabled = m.GetDisableSpanReporting().GetValue()
			}
			if m.GetCustomTags() != nil {
				s.customTags = m.GetCustomTags() // a shallow merge, as Istio's
			}
			if m.GetRandomSamplingPercentage() != nil {
				v := m.GetRandomSamplingPercentage().GetValue()
				s.randomSampling = &v
			}
			if m.GetUseRequestIdForTraceSampling() != nil {
				s.useRequestIDSampling = m.GetUseRequestIdForTraceSampling().GetValue()
			}
			if m.GetEnableIstioTags() != nil {
				s.enableIstioTags = m.GetEnableIstioTags().GetValue()
			}
		}
	}
	for _, s := range []*tracingSpec{client, server} {
		if s.provider == nil {
			s.disabled = true
		}
	}
	return client, server
}

// loggingProviders is Istio's mergeLogs: the access log providers of one
// mode, by name, with their filter (nil: none); nil when neither a
// Telemetry nor defaultProviders.accessLogging says anything.
func loggingProviders(a applicable, mesh *meshv1.MeshConfig, mode tpb.WorkloadMode) map[string]*tpb.AccessLogging_Filter {
	logs := a.logging()
	defaults := mesh.GetDefaultProviders().GetAccessLogging()
	if len(logs) == 0 && len(defaults) == 0 {
		return nil
	}
	providers := map[string]*tpb.AccessLogging_Filter{}
	if len(logs) == 0 {
		for _, dp := range defaults {
			providers[dp] = nil
		}
		return providers
	}
	names := defaults
	filters := map[string]*tpb.AccessLogging_Filter{}
	for _, level := range logs {
		var levelNames []string
		for _, l := range level {
			for _, p := range providerNames(l.GetProviders()) {
				if !slices.Contains(levelNames, p) {
					levelNames = append(levelNames, p)
				}
				filters[p] = l.GetFilter()
			}
		}
		if len(levelNames) > 0 {
			names = levelNames
		}
	}
	parent := defaults
	for _, level := range logs {
		for _, l := range level {
			ps := providerNames(l.GetProviders())
			if len(ps) == 0 {
				ps = parent
			}
			parent = ps
			for _, p := range ps {
				if !slices.Contains(names, p) {
					continue // a higher level's provider a lower level replaced
				}
				if m := l.GetMatch(); m != nil && m.GetMode() != tpb.WorkloadMode_CLIENT_AND_SERVER && m.GetMode() != mode {
					continue
				}
				if l.GetDisabled().GetValue() {
					delete(providers, p)
					continue
				}
				providers[p] = filters[p]
			}
		}
	}
	return providers
}

// metricOverride is one metric's override in one mode, as Istio's
// metricsOverride.
type metricOverride struct {
	name     string
	disabled bool
	tags     []tagOverride
}

type tagOverride struct {
	name, value string
	remove      bool
}

// metricsConfig is one provider's merged metrics configuration.
type metricsConfig struct {
	client, server []metricOverride
	// disabledAll: an ALL_METRICS override disabled every metric (Istio
	// then drops the provider's filter).
	disabledAll bool
}

// allMetrics are Istio's metric names but ALL_METRICS, sorted.
var allMetrics = func() []string {
	var out []string
	for k := range tpb.MetricSelector_IstioMetric_value {
		if k != tpb.MetricSelector_ALL_METRICS.String() {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}()

// mergeMetrics is Istio's mergeMetrics: the metrics configuration of
// each provider in scope; configured reports whether anything (a
// Telemetry or defaultProviders.metrics) configured metrics at all;
// interval is the last reportingInterval set.
func mergeMetrics(a applicable, mesh *meshv1.MeshConfig) (out map[string]*metricsConfig, configured bool, interval *durationpb.Duration) {
	metrics := a.metrics()
	defaults := mesh.GetDefaultProviders().GetMetrics()
	if len(metrics) == 0 && len(defaults) == 0 {
		return nil, false, nil
	}
	type override struct {
		disabled *bool
		tags     map[string]*tpb.MetricsOverrides_TagOverride
	}
	providers := map[string]map[tpb.WorkloadMode]map[string]*override{}
	if len(metrics) == 0 {
		for _, dp := range defaults {
			providers[dp] = map[tpb.WorkloadMode]map[string]*override{}
		}
	}
	names := defaults
	for _, m := range metrics {
		if ps := providerNames(m.GetProviders()); len(ps) > 0 {
			names = ps
		}
		if m.GetReportingInterval() != nil {
			interval = m.GetReportingInterval()
		}
	}
	parent := defaults
	disabledAll := map[string]bool{}
	for _, m := range metrics {
		ps := providerNames(m.GetProviders())
		if len(ps) == 0 {
			ps = parent
		}
		parent = ps
		for _, p := range ps {
			if !slices.Contains(names, p) {
				continue
			}
			if providers[p] == nil {
				providers[p] = map[tpb.WorkloadMode]map[string]*override{tpb.WorkloadMode_CLIENT: {}, tpb.WorkloadMode_SERVER: {}}
			}
			mp := providers[p]
			for _, o := range m.GetOverrides() {
				if isAllMetrics(o.GetMatch()) && o.GetDisabled().GetValue() {
					disabledAll[p] = true
					continue
				}
				// A root namespace that disabled everything, enabled again below.
				delete(disabledAll, p)
				for _, mode := range modes(o.GetMatch().GetMode()) {
					if mp[mode] == nil {
						mp[mode] = map[string]*override{}
					}
					for _, name := range metricMatches(o.GetMatch()) {
						ov := mp[mode][name]
						if ov == nil {
							ov = &override{}
							mp[mode][name] = ov
						}
						if o.GetDisabled() != nil {
							d := o.GetDisabled().GetValue()
							ov.disabled = &d
						}
						for k, v := range o.GetTagOverrides() {
							if ov.tags == nil {
								ov.tags = map[string]*tpb.MetricsOverrides_TagOverride{}
							}
							ov.tags[k] = v
						}
					}
				}
			}
		}
	}
	out = map[string]*metricsConfig{}
	for p, byMode := range providers {
		mc := &metricsConfig{disabledAll: disabledAll[p]}
		for mode, byMetric := range byMode {
			for name, ov := range byMetric {
				mo := metricOverride{name: name, disabled: ov.disabled != nil && *ov.disabled}
				for _, k := range sortedKeys(ov.tags) {
					to := ov.tags[k]
					if to.GetOperation() == tpb.MetricsOverrides_TagOverride_REMOVE {
						mo.tags = append(mo.tags, tagOverride{name: k, remove: true})
					} else {
						mo.tags = append(mo.tags, tagOverride{name: k, value: to.GetValue()})
					}
				}
				if mode == tpb.WorkloadMode_CLIENT {
					mc.client = append(mc.client, mo)
				} else {
					mc.server = append(mc.server, mo)
				}
			}
		}
		sort.Slice(mc.client, func(i, j int) bool { return mc.client[i].name < mc.client[j].name })
		sort.Slice(mc.server, func(i, j int) bool { return mc.server[i].name < mc.server[j].name })
		out[p] = mc
	}
	return out, true, interval
}

func modes(m tpb.WorkloadMode) []tpb.WorkloadMode {
	switch m {
	case tpb.WorkloadMode_CLIENT, tpb.WorkloadMode_SERVER:
		return []tpb.WorkloadMode{m}
	}
	return []tpb.WorkloadMode{tpb.WorkloadMode_CLIENT, tpb.WorkloadMode_SERVER}
}

func isAllMetrics(m *tpb.MetricSelector) bool {
	mm, ok := m.GetMetricMatch().(*tpb.MetricSelector_Metric)
	return ok && mm.Metric == tpb.MetricSelector_ALL_METRICS
}

func metricMatches(m *tpb.MetricSelector) []string {
	switch mm := m.GetMetricMatch().(type) {
	case *tpb.MetricSelector_CustomMetric:
		return []string{mm.CustomMetric}
	case *tpb.MetricSelector_Metric:
		if mm.Metric == tpb.MetricSelector_ALL_METRICS {
			return allMetrics
		}
		return []string{mm.Metric.String()}
	}
	return allMetrics
}
