package proxy

import (
	"fmt"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/anypb"
	statsv1 "istio.io/api/envoy/extensions/stats"

	"github.com/meshlab/meshlab/dataplane/fieldcheck"
	"github.com/meshlab/meshlab/dataplane/telemetry"
)

// istioStatsFilter is Istio's stats filter, an HTTP filter before the
// router and a network filter before tcp_proxy, configured with
// stats.PluginConfig. A chain without it records every standard metric
// with Istio's labels, as the proxy did before the control plane sent it.
const istioStatsFilter = "istio.stats"

// statsConfig is a compiled istio.stats filter.
type statsConfig struct {
	// tcpReport is tcp_reporting_duration (0: Istio's 5s).
	tcpReport time.Duration
	// hostFallback: a request to no known service is labelled with its
	// Host (Istio's default; it disables it on inbound and gateways).
	hostFallback bool
	// overrides are metrics[] (nil: none); dims their dimension
	// expressions, in the order of the key's Dims.
	overrides *telemetry.Overrides
	dims      []dimension
}

// compileStats decodes and compiles an istio.stats filter's config.
// Every field it does not honour is refused.
// node is the proxy's, which a dimension reads as node or xds.node.
func compileStats(tc *anypb.Any, m *telemetry.Metrics, node *corev3.Node) (*statsConfig, error) {
	var pc statsv1.PluginConfig
	if tc == nil || !tc.MessageIs(&pc) {
		return nil, fmt.Errorf("%s: typed_config must be stats.PluginConfig", istioStatsFilter)
	}
	if err := tc.UnmarshalTo(&pc); err != nil {
		return nil, fmt.Errorf("%s: decode stats.PluginConfig: %w", istioStatsFilter, err)
	}
	if err := fieldcheck.Only(&pc, "tcp_reporting_duration", "disable_host_header_fallback", "metrics"); err != nil {
		return nil, fmt.Errorf("%s: %w", istioStatsFilter, err)
	}
	sc := &statsConfig{hostFallback: !pc.GetDisableHostHeaderFallback()}
	if d := pc.GetTcpReportingDuration(); d != nil {
		if sc.tcpReport = d.AsDuration(); sc.tcpReport <= 0 {
			return nil, fmt.Errorf("%s: tcp_reporting_duration %v: want a positive duration", istioStatsFilter, sc.tcpReport)
		}
	}
	if len(pc.GetMetrics()) == 0 {
		return sc, nil
	}
	exprs := map[string]int{}
	var cfgs []telemetry.MetricConfig
	for i, mc := range pc.GetMetrics() {
		if err := fieldcheck.Only(mc, "name", "drop", "tags_to_remove", "dimensions"); err != nil {
			return nil, fmt.Errorf("%s: metrics[%d]: %w", istioStatsFilter, i, err)
		}
		c := telemetry.MetricConfig{Name: mc.GetName(), Drop: mc.GetDrop(), TagsToRemove: mc.GetTagsToRemove()}
		for label, expr := range mc.GetDimensions() {
			idx, ok := exprs[expr]
			if !ok {
				d, err := compileDimension(expr, node)
				if err != nil {
					return nil, fmt.Errorf("%s: metrics[%d] dimension %s: %w", istioStatsFilter, i, label, err)
				}
				if len(sc.dims) == telemetry.MaxDims {
					return nil, fmt.Errorf("%s: more than %d distinct dimension expressions", istioStatsFilter, telemetry.MaxDims)
				}
				idx = len(sc.dims)
				exprs[expr] = idx
				sc.dims = append(sc.dims, d)
			}
			if c.Dimensions == nil {
				c.Dimensions = map[string]int{}
			}
			c.Dimensions[label] = idx
		}
		cfgs = append(cfgs, c)
	}
	o, err := m.NewOverrides(cfgs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", istioStatsFilter, err)
	}
	sc.overrides = o
	return sc, nil
}

// dimension is a compiled dimension expression: its value for a request,
// and for a TCP connection. The common expressions, one attribute of
// Envoy's or a string literal, have functions of their own that compute
// the value without an evaluator and without allocating; any other is
// evaluated by CEL (cel), with the same result.
type dimension struct {
	http func(r *http.Request, ex *exchange) string
	tcp  func(ci *connInfo, cluster string) string
	cel  *celExpr
}

// compileDimension compiles a dimension's CEL expression; one that does
// not parse is refused (Istio's filter logs it and drops the dimension;
// a NACK tells the user instead).
func compileDimension(expr string, node *corev3.Node) (dimension, error) {
	if d, ok := fastDimension(expr); ok {
		return d, nil
	}
	c, err := compileCEL(expr, istioStatsCEL, node)
	if err != nil {
		return dimension{}, err
	}
	return dimension{cel: c}, nil
}

// fastDimension is the allocation-free evaluation of the expressions
// that are one attribute, each the same value CEL gives (an absent one
// is "", which the metrics label "unknown", as Istio labels an error).
func fastDimension(expr string) (dimension, bool) {
	e := strings.TrimSpace(expr)
	none := func(*connInfo, string) string { return "" }
	if len(e) >= 2 && (e[0] == '\'' || e[0] == '"') && e[len(e)-1] == e[0] && !strings.ContainsAny(e[1:len(e)-1], `\'"`) {
		lit := e[1 : len(e)-1]
		return dimension{
			http: func(*http.Request, *exchange) string { return lit },
			tcp:  func(*connInfo, string) string { return lit },
		}, true
	}
	header := func(key string) dimension {
		return dimension{http: func(r *http.Request, _ *exchange) string { return headerLabel(r.Header, key) }, tcp: none}
	}
	if arg, ok := strings.CutPrefix(e, "request.headers["); ok && strings.HasSuffix(arg, "]") {
		name := strings.TrimSuffix(arg, "]")
		if len(name) < 2 || (name[0] != '\'' && name[0] != '"') || name[len(name)-1] != name[0] {
			return dimension{}, false
		}
		name = name[1 : len(name)-1]
		if name == "" || strings.ContainsAny(name, `:\'" `) || strings.EqualFold(name, "host") {
			return dimension{}, false
		}
		return header(textproto.CanonicalMIMEHeaderKey(name)), true
	}
	switch e {
	case "request.host":
		return dimension{http: func(r *http.Request, _ *exchange) string { return r.Host }, tcp: none}, true
	case "request.method":
		return dimension{http: func(r *http.Request, _ *exchange) string { return r.Method }, tcp: none}, true
	case "request.path":
		return dimension{http: func(r *http.Request, _ *exchange) string { return r.RequestURI }, tcp: none}, true
	case "request.url_path":
		return dimension{http: func(r *http.Request, _ *exchange) string {
			p, _, _ := strings.Cut(r.RequestURI, "?")
			return p
		}, tcp: none}, true
	case "request.scheme":
		return dimension{http: func(r *http.Request, ex *exchange) string { return requestScheme(r, ex.conn) }, tcp: none}, true
	case "request.protocol":
		return dimension{http: func(r *http.Request, _ *exchange) string { return requestProtocol(r) }, tcp: none}, true
	case "request.useragent":
		return header("User-Agent"), true
	case "request.referer":
		return header("Referer"), true
	case "request.id":
		return header("X-Request-Id"), true
	case "response.code":
		return dimension{http: func(_ *http.Request, ex *exchange) string {
			if ex.status == 0 {
				return ""
			}
			return statusString(ex.status)
		}, tcp: none}, true
	case "connection.requested_server_name":
		return dimension{
			http: func(_ *http.Request, ex *exchange) string { return ex.conn.sni },
			tcp:  func(ci *connInfo, _ string) string { return ci.sni },
		}, true
	case "connection.mtls":
		mtls := func(ci *connInfo) string {
			if ci.id.mutualTLS() {
				return "true"
			}
			return "false"
		}
		return dimension{
			http: func(_ *http.Request, ex *exchange) string { return mtls(ex.conn) },
			tcp:  func(ci *connInfo, _ string) string { return mtls(ci) },
		}, true
	case "xds.cluster_name":
		return dimension{
			http: func(_ *http.Request, ex *exchange) string {
				if ex.cluster == nil {
					return ""
				}
				return ex.cluster.Name
			},
			tcp: func(_ *connInfo, cluster string) string { return cluster },
		}, true
	}
	return dimension{}, false
}

// headerLabel is headerAttr as a label value ("" when absent).
func headerLabel(h http.Header, key string) string {
	switch vs := h[key]; len(vs) {
	case 0:
		return ""
	case 1:
		return vs[0]
	default:
		return strings.Join(vs, ",")
	}
}

func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

// statusStrings are the status codes as label values, made once so that
// a dimension on response.code allocates nothing.
var statusStrings = func() []string {
	s := make([]string, 600)
	for i := range s {
		s[i] = strconv.Itoa(i)
	}
	return s
}()

func statusString(code int) string {
	if code >= 0 && code < len(statusStrings) {
		return statusStrings[code]
	}
	return strconv.Itoa(code)
}

// httpDims sets k's overrides from the connection manager's istio.stats
// filter, if it has one, and fills dims with its dimensions' values;
// false when there are none.
func (sc *statsConfig) httpDims(k *telemetry.Request, dims *telemetry.Dims, r *http.Request, ex *exchange, d time.Duration) bool {
	if sc == nil || sc.overrides == nil {
		return false
	}
	k.Overrides = sc.overrides
	var e logEntry
	for i, dim := range sc.dims {
		if dim.cel == nil {
			dims[i] = dim.http(r, ex)
			continue
		}
		if e.r == nil {
			e = logEntry{start: time.Now().Add(-d), r: r, ex: ex, ci: ex.conn}
		}
		dims[i] = dim.cel.label(&e)
	}
	return len(sc.dims) > 0
}

// tcpDims is httpDims for a TCP connection.
func (sc *statsConfig) tcpDims(k *telemetry.Conn, ci *connInfo, cluster string) {
	if sc == nil || sc.overrides == nil {
		return
	}
	k.Overrides = sc.overrides
	var e logEntry
	for i, dim := range sc.dims {
		if dim.cel == nil {
			k.Dims[i] = dim.tcp(ci, cluster)
			continue
		}
		if e.ci == nil {
			// At the connection's start, when its series is chosen.
			e = logEntry{start: time.Now(), ci: ci, cluster: cluster, flags: k.Flags}
		}
		k.Dims[i] = dim.cel.label(&e)
	}
}
