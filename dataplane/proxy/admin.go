package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/meshlab/meshlab/dataplane/upstream"
	"github.com/meshlab/meshlab/dataplane/xdsclient"
)

// Version is what /server_info reports as the proxy's version.
var Version = "meshlab"

type stats struct {
	requests atomic.Uint64
	tcpConns atomic.Uint64
}

// AdminHandler serves Envoy's admin endpoints the mesh tools read:
// /config_dump, /clusters, /server_info, /ready, /stats/prometheus, and
// Go's /debug/pprof/.
func (p *Proxy) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/config_dump", p.serveConfigDump)
	mux.HandleFunc("/clusters", p.serveClusters)
	mux.HandleFunc("/server_info", p.serveServerInfo)
	mux.HandleFunc("/ready", p.serveReady)
	mux.HandleFunc("/healthz/ready", p.serveReady)
	mux.HandleFunc("/stats/prometheus", p.serveStats)
	mux.HandleFunc("/stats", p.serveEnvoyStats)
	// Go's profiles, as Envoy's admin has /cpuprofiler and /heapprofiler;
	// the admin server listens on the pod's loopback only.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// ReadyHandler serves /healthz/ready: 200 once the first listeners and
// clusters are applied, 503 before and from the start of the drain.
func (p *Proxy) ReadyHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz/ready", p.serveReady)
	return mux
}

// StatsHandler serves /stats/prometheus (the 15090 port).
func (p *Proxy) StatsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/stats/prometheus", p.serveStats)
	return mux
}

func (p *Proxy) serveReady(w http.ResponseWriter, r *http.Request) {
	if p.draining.Load() {
		// As Envoy's /ready while it drains: whoever sends traffic here
		// (a load balancer, the kubelet's probe) stops at once.
		http.Error(w, "DRAINING", http.StatusServiceUnavailable)
		return
	}
	if !p.Ready() {
		http.Error(w, "PRE_INITIALIZING", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "LIVE")
}

// ConfigDump returns the served configuration as Envoy's admin
// /config_dump does.
func (p *Proxy) ConfigDump() (*adminv3.ConfigDump, error) {
	s := p.Snapshot()
	ts := func(t string) *timestamppb.Timestamp {
		if u, ok := s.Updated[t]; ok {
			return timestamppb.New(u)
		}
		return nil
	}
	var errs error
	pack := func(m proto.Message) *anypb.Any {
		a, err := anypb.New(m)
		if err != nil && errs == nil {
			errs = err
		}
		return a
	}

	boot := &adminv3.BootstrapConfigDump{Bootstrap: &bootstrapv3.Bootstrap{Node: p.cfg.Node}, LastUpdated: timestamppb.New(p.start)}

	lv := s.Versions[xdsclient.ListenerType]
	ld := &adminv3.ListenersConfigDump{VersionInfo: lv}
	for _, name := range sortedKeys(s.Listeners) {
		ld.DynamicListeners = append(ld.DynamicListeners, &adminv3.ListenersConfigDump_DynamicListener{
			Name: name,
			ActiveState: &adminv3.ListenersConfigDump_DynamicListenerState{
				VersionInfo: lv, Listener: pack(s.Listeners[name]), LastUpdated: ts(xdsclient.ListenerType),
			},
		})
	}

	cv := s.Versions[xdsclient.ClusterType]
	cd := &adminv3.ClustersConfigDump{VersionInfo: cv}
	for _, name := range sortedKeys(s.Clusters) {
		cd.DynamicActiveClusters = append(cd.DynamicActiveClusters, &adminv3.ClustersConfigDump_DynamicCluster{
			VersionInfo: cv, Cluster: pack(s.Clusters[name]), LastUpdated: ts(xdsclient.ClusterType),
		})
	}

	rv := s.Versions[xdsclient.RouteType]
	rd := &adminv3.RoutesConfigDump{}
	for _, name := range sortedKeys(s.Routes) {
		rd.DynamicRouteConfigs = append(rd.DynamicRouteConfigs, &adminv3.RoutesConfigDump_DynamicRouteConfig{
			VersionInfo: rv, RouteConfig: pack(s.Routes[name]), LastUpdated: ts(xdsclient.RouteType),
		})
	}

	ev := s.Versions[xdsclient.EndpointType]
	ed := &adminv3.EndpointsConfigDump{}
	for _, name := range sortedKeys(s.Endpoints) {
		ed.DynamicEndpointConfigs = append(ed.DynamicEndpointConfigs, &adminv3.EndpointsConfigDump_DynamicEndpointConfig{
			VersionInfo: ev, EndpointConfig: pack(s.Endpoints[name]), LastUpdated: ts(xdsclient.EndpointType),
		})
	}
	dump := &adminv3.ConfigDump{Configs: []*anypb.Any{pack(boot), pack(ld), pack(cd), pack(rd), pack(ed)}}
	return dump, errs
}

func sortedKeys[T any](m map[string]T) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (p *Proxy) serveConfigDump(w http.ResponseWriter, r *http.Request) {
	dump, err := p.ConfigDump()
	if err != nil {
		http.Error(w, fmt.Sprintf("build config dump: %v", err), http.StatusInternalServerError)
		return
	}
	WriteConfigDump(w, dump)
}

// WriteConfigDump answers an admin /config_dump request with dump, as
// Envoy writes it (proto field names, indented).
func WriteConfigDump(w http.ResponseWriter, dump *adminv3.ConfigDump) {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", UseProtoNames: true}.Marshal(dump)
	if err != nil {
		http.Error(w, fmt.Sprintf("marshal config dump: %v", err), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	// A failed write means the admin client went away: no one left to tell.
	_, _ = w.Write(b)
}

// serveClusters writes Envoy's plain-text /clusters: one line per cluster
// setting and per host statistic.
func (p *Proxy) serveClusters(w http.ResponseWriter, r *http.Request) {
	rt := p.rt.Load()
	w.Header().Set("Content-Type", "text/plain")
	bw := bufio.NewWriter(w)
	// The Flush fails only when the admin client went away.
	defer func() { _ = bw.Flush() }()
	for _, name := range sortedKeys(rt.clusters) {
		c := rt.clusters[name]
		fmt.Fprintf(bw, "%s::observability_name::%s\n", name, name)
		fmt.Fprintf(bw, "%s::default_priority::max_connections::4294967295\n", name)
		for _, e := range c.Endpoints() {
			fmt.Fprintf(bw, "%s::%s::cx_active::%d\n", name, e.Addr, e.Active.Load())
			fmt.Fprintf(bw, "%s::%s::cx_connect_fail::%d\n", name, e.Addr, e.Fails.Load())
			fmt.Fprintf(bw, "%s::%s::rq_total::%d\n", name, e.Addr, e.Total.Load())
			fmt.Fprintf(bw, "%s::%s::health_flags::healthy\n", name, e.Addr)
		}
	}
}

func (p *Proxy) serveServerInfo(w http.ResponseWriter, r *http.Request) {
	state := adminv3.ServerInfo_PRE_INITIALIZING
	if p.Ready() {
		state = adminv3.ServerInfo_LIVE
	}
	up := durationpb.New(time.Since(p.start).Truncate(time.Second))
	info := &adminv3.ServerInfo{
		Version:            Version,
		State:              state,
		UptimeCurrentEpoch: up,
		UptimeAllEpochs:    up,
		Node:               p.cfg.Node,
		CommandLineOptions: &adminv3.CommandLineOptions{},
	}
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", UseProtoNames: true, EmitDefaultValues: true}.Marshal(info)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// serveStats writes Envoy-named counters and the Istio standard metrics
// in Prometheus text format.
func (p *Proxy) serveStats(w http.ResponseWriter, r *http.Request) {
	rt := p.rt.Load()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	bw := bufio.NewWriter(w)
	defer func() { _ = bw.Flush() }()
	live := 0
	if p.Ready() {
		live = 1
	}
	fmt.Fprintf(bw, "# TYPE envoy_server_live gauge\nenvoy_server_live %d\n", live)
	fmt.Fprintf(bw, "# TYPE envoy_server_uptime gauge\nenvoy_server_uptime %d\n", int(time.Since(p.start).Seconds()))
	fmt.Fprintf(bw, "# TYPE envoy_http_downstream_rq_total counter\nenvoy_http_downstream_rq_total %d\n", p.stats.requests.Load())
	fmt.Fprintf(bw, "# TYPE envoy_tcp_downstream_cx_total counter\nenvoy_tcp_downstream_cx_total %d\n", p.stats.tcpConns.Load())
	names := sortedKeys(rt.clusters)
	metric := func(name, typ string, v func(name string) uint64) {
		fmt.Fprintf(bw, "# TYPE %s %s\n", name, typ)
		for _, n := range names {
			fmt.Fprintf(bw, "%s{envoy_cluster_name=%s} %d\n", name, strconv.Quote(n), v(n))
		}
	}
	metric("envoy_cluster_upstream_rq_total", "counter", func(n string) uint64 { return rt.clusters[n].RequestsTotal.Load() })
	metric("envoy_cluster_upstream_cx_connect_fail", "counter", func(n string) uint64 { return rt.clusters[n].ConnectFails.Load() })
	metric("envoy_cluster_upstream_cx_none_healthy", "counter", func(n string) uint64 { return rt.clusters[n].NoHealthy.Load() })
	metric("envoy_cluster_membership_healthy", "gauge", func(n string) uint64 { return uint64(len(rt.clusters[n].Endpoints())) })
	p.writeAuthzProm(bw)
	p.writeTLSStats(bw)
	p.writeTracingStats(bw)
	families, err := p.metrics.Gatherer().Gather()
	if err != nil {
		p.log.Warn("gather istio metrics", "err", err)
	}
	enc := expfmt.NewEncoder(bw, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			return
		}
	}
}

// writeTLSStats writes Envoy's ssl.* counters of every listener and
// cluster that has a TLS context, with the tags Envoy's Prometheus output
// gives them: envoy_listener_ssl_handshake{envoy_listener_address="0.0.0.0_15006"},
// envoy_cluster_ssl_handshake{envoy_cluster_name="outbound|9080||reviews..."}.
func (p *Proxy) writeTLSStats(w io.Writer) {
	counters := []struct {
		name string
		v    func(*upstream.TLSStats) uint64
	}{
		{"ssl_handshake", func(s *upstream.TLSStats) uint64 { return s.Handshake.Load() }},
		{"ssl_connection_error", func(s *upstream.TLSStats) uint64 { return s.ConnectionError.Load() }},
		{"ssl_fail_verify_san", func(s *upstream.TLSStats) uint64 { return s.FailVerifySAN.Load() }},
		{"ssl_fail_verify_error", func(s *upstream.TLSStats) uint64 { return s.FailVerifyError.Load() }},
		{"ssl_no_certificate", func(s *upstream.TLSStats) uint64 { return s.NoCertificate.Load() }},
		{"ssl_session_reused", func(s *upstream.TLSStats) uint64 { return s.SessionReused.Load() }},
	}
	for _, scope := range []struct{ kind, tag string }{{"listener", "envoy_listener_address"}, {"cluster", "envoy_cluster_name"}} {
		for _, c := range counters {
			name := "envoy_" + scope.kind + "_" + c.name
			fmt.Fprintf(w, "# TYPE %s counter\n", name)
			p.tlsStats.each(scope.kind, func(n string, st *upstream.TLSStats) {
				if st.Handshake.Load() == 0 && st.ConnectionError.Load() == 0 {
					return // no TLS there (yet): Envoy has no ssl stats for it
				}
				fmt.Fprintf(w, "%s{%s=%s} %d\n", name, scope.tag, strconv.Quote(n), c.v(st))
			})
		}
	}
}
