// Package dataplane runs the meshlab proxy (the istio-proxy analogue): the
// xDS client, the proxy runtime, its admin and readiness endpoints and its
// DNS server, as a sidecar or as the ingress gateway.
package dataplane

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshlab/meshlab/dataplane/dns"
	"github.com/meshlab/meshlab/dataplane/identity"
	"github.com/meshlab/meshlab/dataplane/proxy"
	"github.com/meshlab/meshlab/dataplane/xdsclient"
)

// Modes of the proxy, as the first field of Istio's node id.
const (
	ModeSidecar = "sidecar"
	ModeRouter  = "router"
)

// Options configures Run.
type Options struct {
	// Mode is ModeSidecar or ModeRouter (the gateway).
	Mode string
	// NodeID is the xDS node id, `<mode>~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`.
	NodeID string
	// Metadata are node metadata fields (NAMESPACE, SERVICE_ACCOUNT,
	// WORKLOAD_NAME, ...); Labels go in the LABELS struct.
	Metadata map[string]string
	Labels   map[string]string
	// ProxyConfig is the pod's ProxyConfig as JSON (the istio-proxy
	// container's PROXY_CONFIG env, from its proxy.istio.io/config
	// annotation), sent as node metadata PROXY_CONFIG: the control plane
	// lays it over the mesh's defaultConfig. Empty: none.
	ProxyConfig string
	// DiscoveryAddress is the control plane's xDS address (host:port).
	DiscoveryAddress string
	// XDSPlaintext dials it without TLS (istiod's 15010); otherwise xDS
	// is mutual TLS with the workload certificate, istiod's certificate
	// checked for XDSServerName against the mesh root.
	XDSPlaintext  bool
	XDSServerName string
	// Identity configures the workload identity agent (Istio's
	// pilot-agent SDS role): the "default" certificate and "ROOTCA".
	// Required for mutual TLS; with plaintext xDS it runs when its token
	// file exists. Nil runs none.
	Identity *identity.Config
	// AdminAddr (default 127.0.0.1:15000), ReadyAddr (default
	// 0.0.0.0:15021), StatsAddr (default 0.0.0.0:15090) and DNSAddr
	// (default 127.0.0.1:15053; sidecar only). "-" disables one.
	AdminAddr, ReadyAddr, StatsAddr, DNSAddr string
	// StatusAddr is the agent's status port (default 0.0.0.0:15020):
	// the merged /stats/prometheus and /healthz/ready. "-" disables it.
	StatusAddr string
	// PrometheusAnnotations is Istio's ISTIO_PROMETHEUS_ANNOTATIONS, the
	// app's original prometheus.io/* annotations as JSON
	// {"scrape","path","port"}: a sidecar's merged endpoint adds the
	// app's metrics from there.
	PrometheusAnnotations string
	// AccessLog receives the access log; nil disables it.
	AccessLog io.Writer
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// DrainTimeout bounds how long requests in flight may take once ctx
	// ends (Istio's terminationDrainDuration, 5s by default).
	DrainTimeout time.Duration
}

// bootID identifies this process among the starts of a proxy.
var bootID = func() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}()

// Node builds the xDS node from o.
func (o Options) Node() (*corev3.Node, error) {
	fields := map[string]any{}
	for k, v := range o.Metadata {
		fields[k] = v
	}
	labels := map[string]any{}
	for k, v := range o.Labels {
		labels[k] = v
	}
	fields["LABELS"] = labels
	// One value per proxy process: the control plane keeps the
	// ProxyConfig it fixed at this process's first connect across its
	// reconnects, as Istio's proxy keeps the one it started with.
	fields["PROXY_BOOT_ID"] = bootID
	if o.ProxyConfig != "" {
		// An object, as Istio's agent sends it; the control plane reads a
		// string holding one too, and says what is wrong with either.
		var pc map[string]any
		if err := json.Unmarshal([]byte(o.ProxyConfig), &pc); err == nil {
			fields["PROXY_CONFIG"] = pc
		} else {
			fields["PROXY_CONFIG"] = o.ProxyConfig
		}
	}
	md, err := structpb.NewStruct(fields)
	if err != nil {
		return nil, fmt.Errorf("build node metadata: %w", err)
	}
	return &corev3.Node{
		Id:            o.NodeID,
		Cluster:       o.Metadata["WORKLOAD_NAME"],
		Metadata:      md,
		UserAgentName: "meshlab",
	}, nil
}

func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

// Run runs the proxy until ctx ends, then shuts it down, draining
// requests in flight within the drain timeout. The xDS client, DNS, admin,
// readiness and stats servers serve on while the proxy drains, as Envoy's
// do: readiness then answers 503.
func Run(ctx context.Context, o Options) error {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	if o.DiscoveryAddress == "" {
		return errors.New("run proxy: no discovery address")
	}
	node, err := o.Node()
	if err != nil {
		return err
	}
	statusAddr := orDefault(o.StatusAddr, DefaultStatusAddr)
	var appScrape *PrometheusScrape
	if o.Mode != ModeRouter {
		// Only a sidecar's, as Istio's agent: a gateway's 15020 is
		// exposed by its Service.
		if appScrape, err = parsePrometheusScrape(o.PrometheusAnnotations, statusAddr); err != nil {
			return fmt.Errorf("run proxy: %w", err)
		}
	}
	am := newAgentMetrics()
	agent, err := o.identityAgent(log, am.onCSR)
	if err != nil {
		return err
	}
	if agent != nil {
		prometheus.WrapRegistererWithPrefix("istio_agent_", am.reg).MustRegister(newCertExpiry(agent))
	}
	pc := proxy.Config{Node: node, AccessLog: o.AccessLog, Logger: log, DrainTimeout: o.DrainTimeout}
	if agent != nil {
		pc.Identity = agent
	}
	p := proxy.New(pc)
	var dnsSrv *dns.Server
	if o.Mode != ModeRouter && o.DNSAddr != "-" {
		dnsSrv = dns.NewServer(log)
	}
	var xdsTLS *tls.Config
	if !o.XDSPlaintext {
		xdsTLS = agent.ClientTLS(orDefault(o.XDSServerName, "istiod.istio-system.svc"))
	}
	client := xdsclient.New(xdsclient.Config{
		Address: o.DiscoveryAddress,
		TLS:     xdsTLS,
		Node:    node,
		Check: func(s *xdsclient.Snapshot, typeURL string) error {
			am.xdsResponses.Inc()
			return p.Check(s, typeURL)
		},
		OnUpdate: func(s *xdsclient.Snapshot) {
			p.Apply(s)
			if dnsSrv != nil {
				dnsSrv.Update(dns.BuildTable(s.Routes, s.Listeners))
			}
		},
		Logger: log,
	})

	// ctx ends the proxy, which drains; aux, everything else, once the
	// proxy is done. A failure of any part ends both.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	aux, cancelAux := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelAux()
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	start := func(ctx context.Context, name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errc <- fmt.Errorf("%s: %w", name, err)
				cancel()
				cancelAux()
			}
		}()
	}
	run := func(name string, f func(context.Context) error) { start(aux, name, f) }
	serve := func(name, addr string, h http.Handler) error {
		if addr == "-" {
			return nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listen %s on %s: %w", name, addr, err)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		run(name, func(ctx context.Context) error {
			// Close's error is the listener's; Serve reports what matters.
			stop := context.AfterFunc(ctx, func() { _ = srv.Close() })
			defer stop()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		return nil
	}
	if err := serve("admin", orDefault(o.AdminAddr, "127.0.0.1:15000"), adminHandler(p, agent)); err != nil {
		cancelAux()
		wg.Wait()
		return err
	}
	ready := readyHandler(p, am)
	if err := serve("readiness", orDefault(o.ReadyAddr, "0.0.0.0:15021"), ready); err != nil {
		cancelAux()
		wg.Wait()
		return err
	}
	if err := serve("stats", orDefault(o.StatsAddr, "0.0.0.0:15090"), p.StatsHandler()); err != nil {
		cancelAux()
		wg.Wait()
		return err
	}
	status := &statusServer{metrics: am, proxyStats: p.StatsHandler(), ready: ready, app: appScrape, appHost: "localhost",
		client: &http.Client{Timeout: 30 * time.Second}, log: log}
	if err := serve("status", statusAddr, status.handler()); err != nil {
		cancelAux()
		wg.Wait()
		return err
	}
	if dnsSrv != nil {
		addr := orDefault(o.DNSAddr, "127.0.0.1:15053")
		run("dns", func(ctx context.Context) error { return dnsSrv.ListenAndServe(ctx, addr) })
	}
	if agent != nil {
		run("identity", agent.Run)
	}
	run("xds", func(ctx context.Context) error {
		if xdsTLS != nil {
			// The client certificate is what the control plane knows the
			// node by: no xDS before there is one.
			if err := agent.WaitReady(ctx); err != nil {
				return err
			}
		}
		return client.Run(ctx)
	})
	start(ctx, "proxy", func(ctx context.Context) error {
		defer cancelAux()
		return p.Run(ctx)
	})
	log.Info("proxy started", "mode", o.Mode, "node", o.NodeID, "discovery", o.DiscoveryAddress, "mtls", !o.XDSPlaintext, "identity", agent != nil)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// readyHandler is the proxy's readiness, which also records the agent's
// time to the first ready answer, as Istio's agent does on its probe.
func readyHandler(p *proxy.Proxy, am *agentMetrics) http.Handler {
	h := p.ReadyHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.Ready() {
			am.ready()
		}
		h.ServeHTTP(w, r)
	})
}

// identityAgent is the workload identity agent o asks for: required with
// mutual TLS xDS, optional (when its token is there) with plaintext.
func (o Options) identityAgent(log *slog.Logger, onCSR func(time.Duration, error)) (*identity.Agent, error) {
	if o.Identity == nil {
		if !o.XDSPlaintext {
			return nil, errors.New("run proxy: xDS over mutual TLS needs a workload identity (token and root certificate)")
		}
		return nil, nil
	}
	cfg := *o.Identity
	if o.XDSPlaintext {
		path := cfg.TokenPath
		if path == "" {
			path = identity.DefaultTokenPath
		}
		if _, err := os.Stat(path); err != nil {
			log.Info("no identity token: running without a workload certificate", "token", path)
			return nil, nil
		}
	}
	cfg.Logger = log
	cfg.OnCSR = onCSR
	a, err := identity.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("run proxy: %w", err)
	}
	return a, nil
}
