package config

import (
	"fmt"
	"sort"
	"strings"

	telemetry "istio.io/api/telemetry/v1alpha1"
)

// telemetry is Istio's ValidateTelemetry (pkg/config/validation): one of
// selector and targetRef(s), a valid selector, provider references with
// names, randomSamplingPercentage within [0, 100], custom tags with what
// their kind needs, tag overrides consistent with their operation, a
// non-empty customMetric, and access log filters with an expression.
// Whether a provider name exists in the mesh config's extensionProviders
// depends on the mesh config, which meshlab checks when it is applied
// with it (meshconfig.CheckTelemetry). What Istio 1.24 did not have, and
// meshlab's proxies do not implement, is refused rather than ignored:
// formatter custom tags, disableContextPropagation, and several tracing
// entries (Istio warns that only the first is supported).
func (v *validator) telemetry(s *telemetry.Telemetry) {
	refs := 0
	if s.GetTargetRef() != nil {
		refs++
	}
	if len(s.GetTargetRefs()) > 0 {
		refs++
	}
	if s.GetSelector() != nil {
		refs++
	}
	if refs > 1 {
		v.fail("spec", "only one of targetRefs or selector can be set")
	}
	v.workloadSelector("spec.selector", s.GetSelector())
	refs2 := s.GetTargetRefs()
	if s.GetTargetRef() != nil {
		refs2 = append(refs2, s.GetTargetRef())
	}
	for i, r := range refs2 {
		f := fmt.Sprintf("spec.targetRefs[%d]", i)
		if s.GetTargetRef() != nil {
			f = "spec.targetRef"
		}
		if r.GetName() == "" {
			v.fail(f+".name", "required")
		}
		if r.GetKind() == "" {
			v.fail(f+".kind", "required")
		}
	}
	for i, m := range s.GetMetrics() {
		f := fmt.Sprintf("spec.metrics[%d]", i)
		v.telemetryProviders(f, m.GetProviders())
		if d := m.GetReportingInterval(); d != nil && d.AsDuration() <= 0 {
			v.fail(f+".reportingInterval", "must be greater than zero, got %s", d.AsDuration())
		}
		for j, o := range m.GetOverrides() {
			of := fmt.Sprintf("%s.overrides[%d]", f, j)
			if o == nil {
				v.fail(of, "may not be null")
				continue
			}
			for _, name := range sortedTagKeys(o.GetTagOverrides()) {
				to := o.GetTagOverrides()[name]
				tf := of + ".tagOverrides[" + name + "]"
				if name == "" {
					v.fail(of+".tagOverrides", "tag name may not be empty")
				}
				switch {
				case to == nil:
					v.fail(tf, "may not be null")
				case to.GetOperation() == telemetry.MetricsOverrides_TagOverride_UPSERT && to.GetValue() == "":
					v.fail(tf+".value", "must be set when operation is UPSERT")
				case to.GetOperation() == telemetry.MetricsOverrides_TagOverride_REMOVE && to.GetValue() != "":
					v.fail(tf+".value", "may only be set when operation is UPSERT")
				}
			}
			if cm, ok := o.GetMatch().GetMetricMatch().(*telemetry.MetricSelector_CustomMetric); ok && cm.CustomMetric == "" {
				v.fail(of+".match.customMetric", "may not be empty")
			}
		}
	}
	if len(s.GetTracing()) > 1 {
		v.fail("spec.tracing", "has %d entries; Istio supports one (it warns and uses the first), and so does meshlab", len(s.GetTracing()))
	}
	for i, t := range s.GetTracing() {
		f := fmt.Sprintf("spec.tracing[%d]", i)
		v.telemetryProviders(f, t.GetProviders())
		if len(t.GetProviders()) > 1 {
			v.fail(f+".providers", "has %d providers; Istio supports one per mode (it warns and uses the first), and so does meshlab", len(t.GetProviders()))
		}
		if p := t.GetRandomSamplingPercentage(); p != nil && (p.GetValue() < 0 || p.GetValue() > 100) {
			v.fail(f+".randomSamplingPercentage", "must be in range [0.0, 100.0], got %v", p.GetValue())
		}
		if t.GetDisableContextPropagation() != nil {
			v.fail(f+".disableContextPropagation", "is not supported by meshlab (it is newer than Istio 1.24)")
		}
		for _, name := range sortedTagKeys(t.GetCustomTags()) {
			tag := t.GetCustomTags()[name]
			tf := f + ".customTags[" + name + "]"
			if name == "" {
				v.fail(f+".customTags", "tag name may not be empty")
			}
			switch tt := tag.GetType().(type) {
			case nil:
				v.fail(tf, "needs one of literal, environment or header")
			case *telemetry.Tracing_CustomTag_Literal:
				if tt.Literal.GetValue() == "" {
					v.fail(tf+".literal.value", "literal tag value may not be empty")
				}
			case *telemetry.Tracing_CustomTag_Header:
				if tt.Header.GetName() == "" {
					v.fail(tf+".header.name", "header tag name may not be empty")
				}
			case *telemetry.Tracing_CustomTag_Environment:
				if tt.Environment.GetName() == "" {
					v.fail(tf+".environment.name", "environment tag name may not be empty")
				}
			case *telemetry.Tracing_CustomTag_Formatter:
				v.fail(tf+".formatter", "formatter tags are not supported by meshlab (they are newer than Istio 1.24); use literal, environment or header")
			}
		}
	}
	for i, l := range s.GetAccessLogging() {
		f := fmt.Sprintf("spec.accessLogging[%d]", i)
		v.telemetryProviders(f, l.GetProviders())
		if l.GetFilter() != nil && strings.TrimSpace(l.GetFilter().GetExpression()) == "" {
			v.fail(f+".filter.expression", "must be a non-empty CEL expression")
		}
	}
}

func (v *validator) telemetryProviders(field string, ps []*telemetry.ProviderRef) {
	for i, p := range ps {
		if p.GetName() == "" {
			v.fail(fmt.Sprintf("%s.providers[%d].name", field, i), "may not be empty")
		}
	}
}

func sortedTagKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
