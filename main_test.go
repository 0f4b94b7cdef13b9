package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// runMainEnv makes the test binary run main() with its arguments: the
// modes are tested as the real command, signal handling included.
const runMainEnv = "MESHLAB_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// mode is one long-running command and how to exercise its drain.
type mode struct {
	args []string
	// up answers 200 once the mode serves; tcp://ADDR accepts connections
	// instead, for TCP modes.
	up string
	// upLog, when set, appears on stderr once the mode runs: for modes that
	// serve nothing.
	upLog string
	// slow is a request that takes about a second; target is the address
	// it goes to, which must refuse new connections once draining. Empty
	// for modes that are only checked to exit.
	slow, target string
	// ready, when set, must answer 503 while the mode drains.
	ready string
	// log must appear in the mode's stdout after it exits.
	log string
}

// TestSIGTERMDrains starts each long-running mode as a real process, sends
// it SIGTERM while a request is in flight, and checks what Istio's sidecar
// does on SIGTERM: readiness fails at once, new connections are refused,
// the request in flight completes, the access log is flushed, exit 0.
func TestSIGTERMDrains(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	tests := []struct {
		name  string
		setup func(t *testing.T) mode
	}{
		{"gateway", func(t *testing.T) mode { return proxyMode(t, "gateway", "router") }},
		{"proxy", func(t *testing.T) mode { return proxyMode(t, "proxy", "sidecar") }},
		{"sample httpbin", func(t *testing.T) mode {
			addr := freeAddr(t)
			return mode{args: []string{"sample", "httpbin", "--addr", addr},
				up: "http://" + addr + "/get", slow: "http://" + addr + "/delay/1", target: addr}
		}},
		{"sample helloworld", func(t *testing.T) mode {
			addr := freeAddr(t)
			return mode{args: []string{"sample", "helloworld", "--addr", addr}, up: "http://" + addr + "/hello", target: addr}
		}},
		{"sample tcp-echo", func(t *testing.T) mode {
			addr := freeAddr(t)
			host, port, _ := net.SplitHostPort(addr)
			return mode{args: []string{"sample", "tcp-echo", "--host", host, port, "hello"}, up: "tcp://" + addr, target: addr}
		}},
		{"sample sleep", func(t *testing.T) mode {
			return mode{args: []string{"sample", "sleep"}, upLog: "sleeping until stopped"}
		}},
		{"sample curl", func(t *testing.T) mode {
			return mode{args: []string{"sample", "curl"}, upLog: "sleeping until stopped"}
		}},
		{"sample bookinfo ratings", func(t *testing.T) mode {
			addr := freeAddr(t)
			return mode{args: []string{"sample", "bookinfo", "ratings", "--addr", addr},
				up: "http://" + addr + "/health"}
		}},
		{"zipkin", func(t *testing.T) mode {
			addr := freeAddr(t)
			return mode{args: []string{"zipkin", "--listen", addr, "--storage.path", t.TempDir()},
				up: "http://" + addr + "/health", target: addr}
		}},
		{"controlplane", func(t *testing.T) mode {
			api := freeAddr(t)
			return mode{args: []string{"controlplane", "--state-dir", t.TempDir(), "--xds-addr", freeAddr(t),
				"--http-addr", api, "--webhook-addr", ""}, up: "http://" + api + "/ready"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.setup(t)
			drainMode(t, m)
		})
	}
}

func drainMode(t *testing.T, m mode) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr syncBuffer
	cmd := exec.Command(self, m.args...)
	// As Istio's injector sets it: the drain is the default, 5s.
	cmd.Env = append(os.Environ(), runMainEnv+"=1", "TERMINATION_DRAIN_DURATION_SECONDS=5")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var exitErr error
	go func() { exitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		}
	})

	client := &http.Client{Timeout: 10 * time.Second}
	switch {
	case strings.HasPrefix(m.up, "tcp://"):
		if !waitUntil(20*time.Second, func() bool {
			c, err := net.DialTimeout("tcp", strings.TrimPrefix(m.up, "tcp://"), time.Second)
			if err == nil {
				_ = c.Close()
			}
			return err == nil
		}) {
			t.Fatalf("%s did not accept connections within 20s", m.up)
		}
	case m.up != "":
		if !waitUntil(20*time.Second, func() bool {
			code, _, err := fetch(client, m.up)
			return err == nil && code == http.StatusOK
		}) {
			t.Fatalf("%s did not answer 200 within 20s", m.up)
		}
	}
	if m.upLog != "" && !waitUntil(20*time.Second, func() bool { return strings.Contains(stderr.String(), m.upLog) }) {
		t.Fatalf("stderr has no %q within 20s", m.upLog)
	}

	type result struct {
		code int
		err  error
		took time.Duration
	}
	inflight := make(chan result, 1)
	if m.slow != "" {
		// Its own connection, so that it is in flight, not idle.
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		go func() {
			start := time.Now()
			code, _, err := fetch(c, m.slow)
			inflight <- result{code, err, time.Since(start)}
		}()
		time.Sleep(300 * time.Millisecond) // the request reaches the server
	}
	sent := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	if m.ready != "" {
		if !waitUntil(time.Second, func() bool {
			code, _, err := fetch(client, m.ready)
			return err == nil && code == http.StatusServiceUnavailable
		}) {
			t.Error("readiness did not answer 503 within 1s of SIGTERM")
		}
	}
	if m.target != "" {
		if !waitUntil(time.Second, func() bool {
			c, err := net.DialTimeout("tcp", m.target, time.Second)
			if err == nil {
				_ = c.Close()
				return false
			}
			return errors.Is(err, syscall.ECONNREFUSED)
		}) {
			t.Errorf("new connections to %s still accepted 1s after SIGTERM", m.target)
		}
	}
	if m.slow != "" {
		r := <-inflight
		// Cut short, it would answer before its second was up.
		if r.err != nil || r.code != http.StatusOK || r.took < 900*time.Millisecond {
			t.Errorf("request in flight at SIGTERM: %d %v after %v, want 200 after its 1s", r.code, r.err, r.took)
		}
	}

	select {
	case <-exited:
		if exitErr != nil {
			t.Errorf("exit after SIGTERM: %v, want exit status 0", exitErr)
		}
		if d := time.Since(sent); d > 4*time.Second {
			t.Errorf("exited %v after SIGTERM, want as soon as the request in flight is done", d)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("still running 15s after SIGTERM")
	}
	if m.log != "" && !strings.Contains(stdout.String(), m.log) {
		t.Errorf("access log has no %q", m.log)
	}
}

// proxyMode runs meshlab proxy or gateway against a go-control-plane ADS
// server on loopback, with a listener routing to a backend whose /slow
// answers after a second.
func proxyMode(t *testing.T, command, nodeType string) mode {
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(time.Second)
		}
		_, _ = io.WriteString(w, "ok")
	})}
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = backend.Serve(bln) }()
	t.Cleanup(func() { _ = backend.Close() })
	bport := bln.Addr().(*net.TCPAddr).Port

	node := nodeType + "~127.0.0.1~drain-0.default~default.svc.cluster.local"
	listen := freeAddr(t)
	lport, _ := strconv.Atoi(listen[strings.LastIndexByte(listen, ':')+1:])
	const cluster = "outbound|80||backend.default.svc.cluster.local"
	hcm := &hcmv3.HttpConnectionManager{StatPrefix: "drain",
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{Name: "drain",
			VirtualHosts: []*routev3.VirtualHost{{Name: "all", Domains: []string{"*"}, Routes: []*routev3.Route{{
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}},
			}}}}}},
		HttpFilters: []*hcmv3.HttpFilter{{Name: wellknown.Router, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}}},
		// The access log to stdout, as istiod sends it with
		// meshConfig.accessLogFile /dev/stdout, in Envoy's default format.
		AccessLog: []*accesslogv3.AccessLog{{Name: "envoy.access_loggers.file", ConfigType: &accesslogv3.AccessLog_TypedConfig{
			TypedConfig: mustAny(t, &filev3.FileAccessLog{Path: "/dev/stdout"})}}},
	}
	l := &listenerv3.Listener{Name: "0.0.0.0_" + strconv.Itoa(lport), Address: sockAddr("127.0.0.1", uint32(lport)),
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{Name: wellknown.HTTPConnectionManager,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, hcm)}}}}}}
	c := &clusterv3.Cluster{Name: cluster, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout: durationpb.New(time.Second), LbPolicy: clusterv3.Cluster_ROUND_ROBIN,
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: cluster, Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: sockAddr("127.0.0.1", uint32(bport))}}}}}}}}
	xds := adsServer(t, node, l, c)

	ready := freeAddr(t)
	return mode{
		args: []string{command, "--node-id", node, "--discovery-address", xds, "--control-plane-auth-policy", "NONE",
			"--admin-addr", freeAddr(t), "--ready-addr", ready, "--stats-addr", "-", "--status-addr", "-", "--dns-addr", "-", "--labels-file", "-"},
		up:     "http://" + listen + "/",
		slow:   "http://" + listen + "/slow",
		target: listen,
		ready:  "http://" + ready + "/healthz/ready",
		log:    `"GET /slow HTTP/1.1" 200`,
	}
}

// adsServer serves res to node over ADS on loopback.
func adsServer(t *testing.T, node string, res ...types.Resource) string {
	m := map[string][]types.Resource{}
	for _, r := range res {
		switch r.(type) {
		case *listenerv3.Listener:
			m[resourcev3.ListenerType] = append(m[resourcev3.ListenerType], r)
		case *clusterv3.Cluster:
			m[resourcev3.ClusterType] = append(m[resourcev3.ClusterType], r)
		}
	}
	snap, err := cachev3.NewSnapshot("1", m)
	if err != nil {
		t.Fatal(err)
	}
	cache := cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	if err := cache.SetSnapshot(context.Background(), node, snap); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, serverv3.NewServer(ctx, cache, nil))
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(func() { g.Stop(); cancel() })
	return ln.Addr().String()
}

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func sockAddr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// freeAddr returns a loopback address nothing listens on now.
// freeAddr is a loopback address whose port was free a moment ago, taken
// below the kernel's ephemeral range: a port from that range (what
// listening on :0 gives) can be handed to some process's outgoing
// connection before the mode under test binds it, as CI once saw
// ("bind: address already in use").
func freeAddr(t *testing.T) string {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 11000 {
				low = n
			}
		}
	}
	for range 1000 {
		port := 10000 + rand.IntN(low-10000)
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		return addr
	}
	t.Fatal("no free port below the ephemeral range")
	return ""
}

func fetch(c *http.Client, url string) (int, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// waitUntil polls cond for at most d and reports whether it came true.
func waitUntil(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}

// syncBuffer is an io.Writer safe for a process's output copied by
// os/exec on its own goroutine while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
