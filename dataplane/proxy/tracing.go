package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/meshlab/meshlab/dataplane/router"
	"github.com/meshlab/meshlab/dataplane/tracing"
)

// traceSet is the proxy's tracing state: one reporter per collector, the
// tracing.zipkin.* counters they share, and what every span says of the
// proxy (its endpoint, node id and zone).
type traceSet struct {
	mu        sync.Mutex
	reporters map[collectorKey]*tracing.Reporter
	stats     tracing.Stats

	once   sync.Once
	local  *tracing.Endpoint
	nodeID string
	zone   string
}

// tracer is the tracer of a Zipkin provider, made on first use with the
// reporter of its collector.
func (p *Proxy) tracer(z *zipkinProvider) *tracing.Tracer {
	if t := z.tracer.Load(); t != nil {
		return t
	}
	ts := &p.traces
	ts.once.Do(func() { ts.local, ts.nodeID, ts.zone = p.localEndpoint() })
	ts.mu.Lock()
	rep := ts.reporters[z.collector]
	if rep == nil {
		if ts.reporters == nil {
			ts.reporters = map[collectorKey]*tracing.Reporter{}
		}
		rep = tracing.NewReporter(p.ctx, &p.wg, tracing.ReporterConfig{
			Send: p.collectorSender(z.collector), Stats: &ts.stats, Logger: p.log,
			MinFlushSpans: p.cfg.TraceFlushSpans, FlushInterval: p.cfg.TraceFlushInterval,
		})
		ts.reporters[z.collector] = rep
	}
	ts.mu.Unlock()
	t := &tracing.Tracer{TraceID128: z.trace128, SharedSpanContext: z.shared, W3C: z.w3c, Local: ts.local, Reporter: rep}
	z.tracer.Store(t)
	return t
}

// localEndpoint is the proxy's Zipkin endpoint as Istio's bootstrap
// makes Envoy's: the service cluster (Istio's default tracing service
// name, APP_LABEL_AND_NAMESPACE: `<app label>.<namespace>`, else
// `<workload>.<namespace>`, else `istio-proxy.<namespace>`; the gateway
// is istio-ingressgateway.istio-system by its app label) and the pod's IP.
func (p *Proxy) localEndpoint() (*tracing.Endpoint, string, string) {
	n := p.cfg.Node
	f := n.GetMetadata().GetFields()
	ns := f["NAMESPACE"].GetStringValue()
	name := "istio-proxy"
	if app := f["LABELS"].GetStructValue().GetFields()["app"].GetStringValue(); app != "" {
		name = app + "." + ns
	} else if w := f["WORKLOAD_NAME"].GetStringValue(); w != "" {
		name = w + "." + ns
	} else if ns != "" {
		name += "." + ns
	}
	e := &tracing.Endpoint{ServiceName: name}
	ip := ""
	if ips := f["INSTANCE_IPS"].GetStringValue(); ips != "" {
		ip, _, _ = strings.Cut(ips, ",")
	} else if parts := strings.Split(n.GetId(), "~"); len(parts) == 4 {
		ip = parts[1]
	}
	if a, err := netip.ParseAddr(ip); err == nil {
		if a.Is4() {
			e.IPv4 = a.String()
		} else {
			e.IPv6 = a.String()
		}
	}
	return e, n.GetId(), n.GetLocality().GetZone()
}

// collectorSender POSTs reports to a collector through its cluster, as
// Envoy's async client does: any of the proxy's clusters (EDS, STATIC,
// STRICT_DNS, TLS or not), found anew per report so that it follows the
// configuration.
func (p *Proxy) collectorSender(c collectorKey) tracing.Sender {
	return func(ctx context.Context, body []byte) (int, error) {
		cl := p.rt.Load().clusters[c.cluster]
		if cl == nil {
			return 0, tracing.ErrNoCluster
		}
		ep := cl.Pick(netip.AddrPort{})
		if ep == nil {
			cl.NoHealthy.Add(1)
			return 0, fmt.Errorf("collector cluster %s: no healthy upstream", c.cluster)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+ep.Addr+c.endpoint, bytes.NewReader(body))
		if err != nil {
			return 0, fmt.Errorf("zipkin report to %s: %w", c.cluster, err)
		}
		req.Host = c.hostname
		req.Header["Content-Type"] = []string{"application/json"}
		cl.RequestsTotal.Add(1)
		ep.Total.Add(1)
		resp, err := cl.Transport.RoundTrip(req)
		if err != nil {
			return 0, fmt.Errorf("zipkin report to %s (%s): %w", c.cluster, ep.Addr, err)
		}
		// The answer is only its status; reading a little lets the
		// connection be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
		cl.Observe(ep, resp.StatusCode)
		return resp.StatusCode, nil
	}
}

// startSpan runs a traced connection manager's part of a request before
// its filters, as Envoy's: the trace decision (packed into x-request-id),
// then the span, named by the route's decorator, else the Host.
// x-envoy-decorator-operation carries an egress decorator to the next
// hop, whose ingress span takes that name (and drops the header before
// the app sees it).
func (p *Proxy) startSpan(ex *exchange, r *http.Request, t *hcmTracing, egress bool, route *router.Route) {
	reason := tracing.Decide(r.Header, t.sampling, t.rid)
	if _, ok := r.Header[tracing.HeaderForceTrace]; ok {
		// Envoy answers a forced request with its x-request-id, so the
		// caller can find the trace.
		ex.forceTrace = true
		ex.Header()[tracing.HeaderRequestID] = r.Header[tracing.HeaderRequestID]
	}
	if t.zipkin == nil {
		return
	}
	s := p.tracer(t.zipkin).Start(r.Header, r.Host, egress, reason != tracing.NotTraceable, time.Now())
	if s == nil {
		return
	}
	if route != nil && route.Operation != "" {
		s.Name, s.Decorated, s.Propagate = route.Operation, route.Operation, route.PropagateOperation
	}
	if egress {
		if s.Decorated != "" && s.Propagate {
			r.Header[tracing.HeaderOperation] = []string{s.Decorated}
		}
	} else {
		if v, ok := r.Header[tracing.HeaderOperation]; ok {
			if len(v) > 0 && v[0] != "" {
				s.Name, s.Decorated = v[0], ""
			}
			delete(r.Header, tracing.HeaderOperation)
		}
		if s.Decorated != "" && s.Propagate {
			// Every response carries it, the proxy's own replies too
			// (traceResponse sets it on an upstream's).
			ex.Header()[tracing.HeaderOperation] = []string{s.Decorated}
		}
	}
	ex.span = s
}

// traceResponse is the response side of the decorator exchange: an
// egress span takes the name the upstream's ingress sent (and drops the
// header), an ingress span sends its decorator back. A forced request's
// x-request-id goes to the client.
func traceResponse(ex *exchange, resp *http.Response) {
	h := resp.Header
	if s := ex.span; s != nil {
		if s.Egress() {
			if v, ok := h[tracing.HeaderOperation]; ok {
				if len(v) > 0 && v[0] != "" {
					s.Name = v[0]
				}
				delete(h, tracing.HeaderOperation)
			}
		} else if s.Decorated != "" && s.Propagate {
			h[tracing.HeaderOperation] = []string{s.Decorated}
		}
	}
	if ex.forceTrace && resp.Request != nil {
		h[tracing.HeaderRequestID] = resp.Request.Header[tracing.HeaderRequestID]
	}
}

// finishSpan tags a sampled span as Envoy's connection manager does when
// the stream ends (finalizeDownstreamSpan, setCommonTags) and reports it.
func (p *Proxy) finishSpan(ex *exchange, r *http.Request) {
	s := ex.span
	if !s.Sampled {
		return
	}
	end := time.Now()
	t := ex.hcm.tracing
	ts := &p.traces
	// Envoy's tags and the custom ones, in one allocation.
	s.Tags = make([]tracing.Tag, 0, 24+len(t.tags))
	s.SetTag("node_id", ts.nodeID)
	s.SetTag("zone", ts.zone)
	h := r.Header
	s.SetTag("guid:x-request-id", first(h[tracing.HeaderRequestID]))
	s.SetTag("http.url", traceURL(ex, r, t.maxPath))
	s.SetTag("http.method", r.Method)
	s.SetTag("downstream_cluster", headerOr(h, "X-Envoy-Downstream-Service-Cluster", "-"))
	s.SetTag("user_agent", headerOr(h, "User-Agent", "-"))
	proto := r.Proto
	if r.ProtoMajor == 2 {
		proto = "HTTP/2"
	}
	s.SetTag("http.protocol", proto)
	s.SetTag("peer.address", ex.conn.remote.Addr().Unmap().String())
	s.SetTag("guid:x-client-trace-id", first(h[tracing.HeaderClientTrace]))
	grpc := strings.HasPrefix(first(h["Content-Type"]), "application/grpc")
	if grpc {
		s.SetTag("grpc.path", requestPath(r))
		s.SetTag("grpc.authority", r.Host)
		s.SetTag("grpc.content_type", first(h["Content-Type"]))
		s.SetTag("grpc.timeout", first(h["Grpc-Timeout"]))
	}
	for _, c := range t.tags {
		v := c.value
		if c.header != "" {
			if hv, ok := h[c.header]; ok && len(hv) > 0 {
				v = hv[0]
			}
		}
		s.SetTag(c.tag, v)
	}
	s.SetTag("request_size", strconv.FormatInt(max(r.ContentLength, 0), 10))
	s.SetTag("response_size", strconv.FormatInt(ex.bytes, 10))
	s.SetTag("component", "proxy")
	s.SetTag("http.status_code", statusString(ex.status))
	flags := "-"
	if ex.flags != 0 {
		flags = ex.flags.String()
	}
	s.SetTag("response_flags", flags)
	if ex.status == 0 || ex.status >= 500 {
		s.SetTag("error", "true")
	}
	if grpc {
		rh := ex.Header()
		if st, ok := trailerValue(rh, "Grpc-Status"); ok {
			s.SetTag("grpc.status_code", st)
			if st != "0" {
				s.SetTag("error", "true")
			}
		}
		if m, ok := trailerValue(rh, "Grpc-Message"); ok {
			s.SetTag("grpc.message", m)
		}
	}
	if ex.cluster != nil {
		s.SetTag("upstream_cluster", ex.cluster.Name)
		s.SetTag("upstream_cluster.name", ex.cluster.Name)
	}
	if ex.endpoint != nil {
		s.SetTag("upstream_address", ex.endpoint.Addr)
	}
	s.Finish(end)
}

// traceURL is Envoy's http.url tag: the forwarded proto, the host and the
// path (with its query) cut at max_path_tag_length.
func traceURL(ex *exchange, r *http.Request, maxPath int) string {
	scheme := "http"
	if r.TLS != nil || ex.conn.id != nil {
		scheme = "https"
	}
	if v := first(r.Header["X-Forwarded-Proto"]); v != "" && !ex.hcm.useRemoteAddress {
		scheme = v
	}
	path := requestPath(r)
	if len(path) > maxPath {
		path = path[:maxPath]
	}
	return scheme + "://" + r.Host + path
}

func requestPath(r *http.Request) string {
	if r.RequestURI != "" && r.RequestURI[0] == '/' {
		return r.RequestURI
	}
	return r.URL.RequestURI()
}

func headerOr(h http.Header, k, def string) string {
	if v := first(h[k]); v != "" {
		return v
	}
	return def
}

// trailerValue is a response header, or a trailer the reverse proxy
// wrote under net/http's trailer prefix.
func trailerValue(h http.Header, k string) (string, bool) {
	if v := h[k]; len(v) > 0 {
		return v[0], true
	}
	if v := h[http.TrailerPrefix+k]; len(v) > 0 {
		return v[0], true
	}
	return "", false
}

// writeTracingStats writes the tracing.zipkin.* counters in Prometheus's
// text format, named as Envoy's Prometheus output names them.
func (p *Proxy) writeTracingStats(w io.Writer) {
	p.traces.stats.Each(func(name string, v uint64) {
		prom := "envoy_" + strings.ReplaceAll(name, ".", "_")
		fmt.Fprintf(w, "# TYPE %s counter\n%s %d\n", prom, prom, v)
	})
}
