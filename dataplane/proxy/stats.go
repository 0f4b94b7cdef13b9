package proxy

import (
	"fmt"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"

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
func compileStats(tc *anypb.Any, m *telemetry.Metrics) (*statsConfig, error) {
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
				d, err := compileDimension(expr)
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
// and for a TCP connection.
type dimension struct {
	http func(r *http.Request, ex *exchange) string
	tcp  func(ci *connInfo, cluster string) string
}

// compileDimension compiles a dimension's CEL expression. The proxy has
// no CEL evaluator (github.com/google/cel-go is not in its build), so it
// takes the expressions that are one attribute of Envoy's (the common
// case, such as request.host) or a string literal, and refuses any
// other rather than export a wrong value.
func compileDimension(expr string) (dimension, error) {
	e := strings.TrimSpace(expr)
	none := func(*connInfo, string) string { return "" }
	if len(e) >= 2 && (e[0] == '\'' || e[0] == '"') && e[len(e)-1] == e[0] && !strings.ContainsAny(e[1:len(e)-1], `\'"`) {
		lit := e[1 : len(e)-1]
		return dimension{
			http: func(*http.Request, *exchange) string { return lit },
			tcp:  func(*connInfo, string) string { return lit },
		}, nil
	}
	if arg, ok := strings.CutPrefix(e, "request.headers["); ok && strings.HasSuffix(arg, "]") {
		name := strings.TrimSuffix(arg, "]")
		if len(name) < 2 || (name[0] != '\'' && name[0] != '"') || name[len(name)-1] != name[0] {
			return dimension{}, fmt.Errorf("%q: want request.headers['name']", expr)
		}
		key := textproto.CanonicalMIMEHeaderKey(name[1 : len(name)-1])
		return dimension{http: func(r *http.Request, _ *exchange) string { return first(r.Header[key]) }, tcp: none}, nil
	}
	header := func(key string) dimension {
		return dimension{http: func(r *http.Request, _ *exchange) string { return first(r.Header[key]) }, tcp: none}
	}
	switch e {
	case "request.host":
		return dimension{http: func(r *http.Request, _ *exchange) string { return r.Host }, tcp: none}, nil
	case "request.method":
		return dimension{http: func(r *http.Request, _ *exchange) string { return r.Method }, tcp: none}, nil
	case "request.path":
		return dimension{http: func(r *http.Request, _ *exchange) string { return r.RequestURI }, tcp: none}, nil
	case "request.url_path":
		return dimension{http: func(r *http.Request, _ *exchange) string {
			p, _, _ := strings.Cut(r.RequestURI, "?")
			return p
		}, tcp: none}, nil
	case "request.scheme":
		return dimension{http: func(r *http.Request, _ *exchange) string {
			if r.TLS != nil {
				return "https"
			}
			return "http"
		}, tcp: none}, nil
	case "request.protocol":
		return dimension{http: func(r *http.Request, _ *exchange) string {
			if r.ProtoMajor == 2 {
				return "HTTP/2"
			}
			return r.Proto
		}, tcp: none}, nil
	case "request.useragent":
		return header("User-Agent"), nil
	case "request.referer":
		return header("Referer"), nil
	case "request.id":
		return header("X-Request-Id"), nil
	case "response.code":
		return dimension{http: func(_ *http.Request, ex *exchange) string { return statusString(ex.status) }, tcp: none}, nil
	case "connection.requested_server_name":
		return dimension{
			http: func(_ *http.Request, ex *exchange) string { return ex.conn.sni },
			tcp:  func(ci *connInfo, _ string) string { return ci.sni },
		}, nil
	case "connection.mtls":
		mtls := func(ci *connInfo) string {
			if ci.id != nil && ci.id.mutualTLS() {
				return "true"
			}
			return "false"
		}
		return dimension{
			http: func(_ *http.Request, ex *exchange) string { return mtls(ex.conn) },
			tcp:  func(ci *connInfo, _ string) string { return mtls(ci) },
		}, nil
	case "xds.cluster_name":
		return dimension{
			http: func(_ *http.Request, ex *exchange) string {
				if ex.cluster == nil {
					return ""
				}
				return ex.cluster.Name
			},
			tcp: func(_ *connInfo, cluster string) string { return cluster },
		}, nil
	case "upstream.address":
		return dimension{
			http: func(_ *http.Request, ex *exchange) string {
				if ex.endpoint == nil {
					return ""
				}
				return ex.endpoint.Addr
			},
			tcp: none,
		}, nil
	}
	return dimension{}, fmt.Errorf("%q: the proxy evaluates a single Envoy attribute (request.host, request.headers['x'], response.code, connection.mtls, xds.cluster_name, ...) or a string literal, not CEL at large (github.com/google/cel-go is not in its build)", expr)
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
func (sc *statsConfig) httpDims(k *telemetry.Request, dims *telemetry.Dims, r *http.Request, ex *exchange) bool {
	if sc == nil || sc.overrides == nil {
		return false
	}
	k.Overrides = sc.overrides
	for i, d := range sc.dims {
		dims[i] = d.http(r, ex)
	}
	return len(sc.dims) > 0
}

// tcpDims is httpDims for a TCP connection.
func (sc *statsConfig) tcpDims(k *telemetry.Conn, ci *connInfo, cluster string) {
	if sc == nil || sc.overrides == nil {
		return
	}
	k.Overrides = sc.overrides
	for i, d := range sc.dims {
		k.Dims[i] = d.tcp(ci, cluster)
	}
}
