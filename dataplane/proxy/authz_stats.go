package proxy

import (
	"bufio"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
)

// The RBAC filters' counters under Envoy's names (rbac.Counters):
// http.<stat_prefix>.rbac.allowed/denied for enforced rules and
// http.<stat_prefix>.rbac.<shadow prefix>shadow_allowed/denied for shadow
// rules (Istio's dry-run prefixes istio_dry_run_allow_/deny_, and
// istio_ext_authz_ for CUSTOM); tcp.rbac.* for the network filter.

// authzCounters returns the counters by name, sorted.
func (p *Proxy) authzCounters() (names []string, values map[string]uint64) {
	values = map[string]uint64{}
	p.authzStats.Range(func(k, v any) bool {
		names = append(names, k.(string))
		values[k.(string)] = v.(*atomic.Uint64).Load()
		return true
	})
	sort.Strings(names)
	return names, values
}

// serveEnvoyStats is Envoy's admin /stats in its text form ("name: value"
// per line), for the counters meshlab keeps under Envoy's names; ?filter=
// is a substring (Envoy takes a regex; a substring of a name is one).
func (p *Proxy) serveEnvoyStats(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	bw := bufio.NewWriter(w)
	defer func() { _ = bw.Flush() }()
	filter := r.URL.Query().Get("filter")
	names, values := p.authzCounters()
	p.traces.stats.Each(func(n string, v uint64) {
		names = append(names, n)
		values[n] = v
	})
	sort.Strings(names)
	for _, n := range names {
		if filter == "" || strings.Contains(n, filter) {
			fmt.Fprintf(bw, "%s: %d\n", n, values[n])
		}
	}
}

// writeAuthzProm writes the counters as Istio's Prometheus endpoint shows
// them: Envoy's name with its bootstrap's tag regexes applied
// (authz_enforce_result for rbac.allowed/denied, authz_dry_run_action and
// authz_dry_run_result for the dry-run shadow counters), then sanitised
// with an envoy_ prefix.
func (p *Proxy) writeAuthzProm(bw *bufio.Writer) {
	names, values := p.authzCounters()
	type series struct {
		labels string
		value  uint64
	}
	families := map[string][]series{}
	var order []string
	for _, n := range names {
		fam, labels := authzPromName(n)
		if _, ok := families[fam]; !ok {
			order = append(order, fam)
		}
		families[fam] = append(families[fam], series{labels, values[n]})
	}
	sort.Strings(order)
	for _, fam := range order {
		fmt.Fprintf(bw, "# TYPE %s counter\n", fam)
		for _, s := range families[fam] {
			fmt.Fprintf(bw, "%s%s %d\n", fam, s.labels, s.value)
		}
	}
}

func authzPromName(n string) (family, labels string) {
	base, labels := n, ""
	if i := strings.LastIndex(n, ".rbac."); i >= 0 {
		rest := n[i+len(".rbac."):]
		switch {
		case rest == "allowed" || rest == "denied":
			base, labels = n[:i+len(".rbac")], fmt.Sprintf(`{authz_enforce_result=%q}`, rest)
		case strings.HasPrefix(rest, "istio_dry_run_"):
			var action, result string
			if _, err := fmt.Sscanf(strings.NewReplacer("_shadow_", " ", "istio_dry_run_", "").Replace(rest), "%s %s", &action, &result); err == nil {
				base, labels = n[:i+len(".rbac")], fmt.Sprintf(`{authz_dry_run_action=%q,authz_dry_run_result=%q}`, action, result)
			}
		}
	}
	return "envoy_" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		return '_'
	}, base), labels
}
