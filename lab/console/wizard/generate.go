package wizard

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Generate writes the objects of r's action: DestinationRule, VirtualService,
// then the Gateway and PeerAuthentication its advanced options ask for. Bad
// input is an error naming the field and what is expected, all of them
// joined, so a dialog can show every problem at once.
func Generate(r Request) ([]Object, error) {
	g := gen{r: r}
	g.check()
	if len(g.errs) > 0 {
		return nil, errors.Join(g.errs...)
	}
	var spec map[string]any
	switch r.Action {
	case TrafficShifting:
		spec = map[string]any{"http": []any{g.httpRoute("weights", r.Weights)}}
	case TCPTrafficShifting:
		spec = map[string]any{"tcp": []any{g.tcpRoute("weights", r.Weights)}}
	case RequestRouting:
		spec = map[string]any{"http": g.rules()}
	case FaultInjection:
		route := g.httpRoute("weights", r.Weights)
		f := r.Fault
		if f == nil {
			f = &Fault{Delay: &Delay{}, Abort: &Abort{}}
		}
		if fault := g.fault("fault", f); fault != nil {
			route["fault"] = fault
		} else {
			g.fail("fault", "neither delay nor abort; enable at least one")
		}
		spec = map[string]any{"http": []any{route}}
	case RequestTimeouts:
		route := g.httpRoute("weights", r.Weights)
		t := r.Timeouts
		if t == nil {
			t = &Timeouts{Timeout: DefaultTimeout, Retries: &Retries{}}
		}
		if t.Timeout == "" && t.Retries == nil {
			g.fail("timeouts", "neither timeout nor retries; set at least one")
		}
		if t.Timeout != "" {
			route["timeout"] = g.duration("timeouts.timeout", t.Timeout)
		}
		if t.Retries != nil {
			route["retries"] = g.retries("timeouts.retries", t.Retries)
		}
		spec = map[string]any{"http": []any{route}}
	}
	objs := g.objects(spec)
	if len(g.errs) > 0 {
		return nil, errors.Join(g.errs...)
	}
	return objs, nil
}

type gen struct {
	r    Request
	errs []error
}

func (g *gen) fail(field, format string, args ...any) {
	g.errs = append(g.errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
}

func (g *gen) host() string { return g.r.Service + "." + g.r.Namespace + ".svc.cluster.local" }

func (g *gen) check() {
	r := g.r
	if !slices.Contains(Actions, r.Action) {
		g.fail("action", "%q, want one of %s", r.Action, strings.Join(Actions, ", "))
	}
	if r.Namespace == "" {
		g.fail("namespace", "required")
	} else if msgs := validation.IsDNS1123Label(r.Namespace); len(msgs) > 0 {
		g.fail("namespace", "%q: %s", r.Namespace, strings.Join(msgs, "; "))
	}
	if r.Service == "" {
		g.fail("service", "required")
	} else if msgs := validation.IsDNS1035Label(r.Service); len(msgs) > 0 {
		g.fail("service", "%q: %s", r.Service, strings.Join(msgs, "; "))
	}
	switch r.APIVersion {
	case "", "v1", "v1beta1":
	default:
		g.fail("apiVersion", "%q, want v1 or v1beta1", r.APIVersion)
	}
	if len(r.Versions) == 0 {
		g.fail("versions", "none; the service has no workloads with a version label")
	}
	seen := map[string]bool{}
	for i, v := range r.Versions {
		field := fmt.Sprintf("versions[%d]", i)
		switch {
		case seen[v]:
			g.fail(field, "%q given twice", v)
		case v == "":
			g.fail(field, "empty")
		default:
			// The version names a subset and is a label value.
			if msgs := validation.IsValidLabelValue(v); len(msgs) > 0 {
				g.fail(field, "%q is not a label value: %s", v, strings.Join(msgs, "; "))
			}
		}
		seen[v] = true
	}
}

// split is Kiali's default: every version gets 100/n, the last the remainder.
func (g *gen) split() []Weight {
	n := len(g.r.Versions)
	out := make([]Weight, n)
	for i, v := range g.r.Versions {
		out[i] = Weight{Version: v, Weight: 100 / n}
	}
	out[n-1].Weight += 100 % n
	return out
}

// weights checks a route's weights and returns them with the default
// split for nil, and the mirrored one apart.
func (g *gen) weights(field string, ws []Weight) (routed []Weight, mirror *Weight) {
	if ws == nil {
		return g.split(), nil
	}
	if len(ws) == 0 {
		g.fail(field, "empty; give at least one version's weight")
		return nil, nil
	}
	sum, seen := 0, map[string]int{}
	for i, w := range ws {
		f := fmt.Sprintf("%s[%d]", field, i)
		if !slices.Contains(g.r.Versions, w.Version) {
			g.fail(f+".version", "%q is not a version of the service (%s)", w.Version, strings.Join(g.r.Versions, ", "))
		}
		if prev, dup := seen[w.Version]; dup {
			g.fail(f+".version", "%q also at %s[%d]; a version is routed or mirrored once", w.Version, field, prev)
		}
		seen[w.Version] = i
		if w.Weight < 0 || w.Weight > 100 {
			g.fail(f+".weight", "%d, want 0..100", w.Weight)
		}
		if w.Mirror {
			if mirror != nil {
				g.fail(f+".mirror", "a second mirrored version; a route mirrors to one")
			}
			mirror = &ws[i]
			continue
		}
		sum += w.Weight
		routed = append(routed, w)
	}
	if len(routed) == 0 {
		g.fail(field, "only mirrored versions; route to at least one")
	} else if sum != 100 {
		g.fail(field, "sum is %d, want 100", sum)
	}
	return routed, mirror
}

func (g *gen) destinations(routed []Weight) []any {
	out := make([]any, 0, len(routed))
	for _, w := range routed {
		out = append(out, map[string]any{
			"destination": map[string]any{"host": g.host(), "subset": w.Version},
			"weight":      w.Weight,
		})
	}
	return out
}

func (g *gen) httpRoute(field string, ws []Weight) map[string]any {
	routed, mirror := g.weights(field, ws)
	route := map[string]any{"route": g.destinations(routed)}
	if mirror != nil {
		route["mirror"] = map[string]any{"host": g.host(), "subset": mirror.Version}
		route["mirrorPercentage"] = map[string]any{"value": float64(mirror.Weight)}
	}
	return route
}

func (g *gen) tcpRoute(field string, ws []Weight) map[string]any {
	routed, mirror := g.weights(field, ws)
	if mirror != nil {
		g.fail(field, "TCP routes cannot mirror; unset mirror")
	}
	return map[string]any{"route": g.destinations(routed)}
}

func (g *gen) rules() []any {
	rules := g.r.Rules
	if len(rules) == 0 {
		rules = []Rule{{Weights: g.r.Weights}}
	}
	out := make([]any, 0, len(rules))
	for i, rule := range rules {
		field := fmt.Sprintf("rules[%d]", i)
		route := g.httpRoute(field+".weights", rule.Weights)
		if len(rule.Matches) > 0 {
			route["match"] = []any{g.match(field+".matches", rule.Matches)}
		} else if i < len(rules)-1 {
			g.fail(field+".matches", "none, so the rule catches every request and rules[%d..] would never match; move it last", i+1)
		}
		if rule.Fault != nil {
			if f := g.fault(field+".fault", rule.Fault); f != nil {
				route["fault"] = f
			}
		}
		if rule.Timeout != "" {
			route["timeout"] = g.duration(field+".timeout", rule.Timeout)
		}
		if rule.Retries != nil {
			route["retries"] = g.retries(field+".retries", rule.Retries)
		}
		out = append(out, route)
	}
	return out
}

var matchFields = []string{"headers", "uri", "scheme", "method", "authority"}

func (g *gen) match(field string, ms []Match) map[string]any {
	out := map[string]any{}
	headers := map[string]any{}
	for i, m := range ms {
		f := fmt.Sprintf("%s[%d]", field, i)
		if !slices.Contains(matchFields, m.Field) {
			g.fail(f+".field", "%q, want one of %s", m.Field, strings.Join(matchFields, ", "))
			continue
		}
		switch m.Op {
		case "exact", "prefix":
		case "regex":
			if _, err := regexp.Compile(m.Value); err != nil {
				g.fail(f+".value", "regex %q: %v", m.Value, err)
			}
		default:
			g.fail(f+".op", "%q, want exact, prefix or regex", m.Op)
		}
		if m.Value == "" {
			g.fail(f+".value", "empty")
		}
		cond := map[string]any{m.Op: m.Value}
		if m.Field == "headers" {
			name := strings.ToLower(m.Name)
			if name == "" {
				g.fail(f+".name", "required for a header match")
			} else if msgs := validation.IsHTTPHeaderName(m.Name); len(msgs) > 0 {
				g.fail(f+".name", "%q: %s", m.Name, strings.Join(msgs, "; "))
			}
			if _, dup := headers[name]; dup {
				g.fail(f+".name", "header %q matched twice in one rule; use one regex", name)
			}
			headers[name] = cond
			continue
		}
		if m.Name != "" {
			g.fail(f+".name", "only header matches have a name")
		}
		if _, dup := out[m.Field]; dup {
			g.fail(f+".field", "%s matched twice in one rule; conditions of a rule all hold, so use one (or two rules)", m.Field)
		}
		out[m.Field] = cond
	}
	if len(headers) > 0 {
		out["headers"] = headers
	}
	return out
}

func (g *gen) percentage(field string, p float64) map[string]any {
	if p == 0 {
		p = DefaultPercentage
	}
	if p < 0 || p > 100 {
		g.fail(field, "%v, want 0..100", p)
	}
	return map[string]any{"value": p}
}

func (g *gen) fault(field string, f *Fault) map[string]any {
	out := map[string]any{}
	if d := f.Delay; d != nil {
		fixed := d.FixedDelay
		if fixed == "" {
			fixed = DefaultDelay
		}
		out["delay"] = map[string]any{
			"percentage": g.percentage(field+".delay.percentage", d.Percentage),
			"fixedDelay": g.duration(field+".delay.fixedDelay", fixed),
		}
	}
	if a := f.Abort; a != nil {
		status := a.HTTPStatus
		if status == 0 {
			status = DefaultAbortStatus
		}
		if status < 200 || status > 599 {
			g.fail(field+".abort.httpStatus", "%d, want an HTTP status 200..599", status)
		}
		out["abort"] = map[string]any{
			"percentage": g.percentage(field+".abort.percentage", a.Percentage),
			"httpStatus": status,
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func (g *gen) retries(field string, r *Retries) map[string]any {
	attempts, per, on := r.Attempts, r.PerTryTimeout, r.RetryOn
	if attempts == 0 {
		attempts = DefaultAttempts
	}
	if attempts < 0 {
		g.fail(field+".attempts", "%d, want at least 1", attempts)
	}
	if per == "" {
		per = DefaultPerTryTimeout
	}
	if on == "" {
		on = DefaultRetryOn
	}
	return map[string]any{
		"attempts":      attempts,
		"perTryTimeout": g.duration(field+".perTryTimeout", per),
		"retryOn":       on,
	}
}

// duration checks a duration as Istio takes it (at least 1ms) and keeps
// the user's spelling.
func (g *gen) duration(field, s string) string {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		g.fail(field, "%q is not a duration; write e.g. 2s or 500ms", s)
	case d < time.Millisecond:
		g.fail(field, "%q, want at least 1ms", s)
	}
	return s
}
