// Package jaegertest runs a real Zipkin-protocol receiver for tests: Jaeger
// v2 (an OpenTelemetry Collector distribution) with the collector's zipkin
// receiver — the one Tempo embeds — storing in memory and answering Jaeger's
// query API, all on loopback. scripts/jaeger-testenv builds the binary from
// the Go module proxy into the cache this package reads.
package jaegertest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// JaegerVersion is the release scripts/jaeger-testenv builds (keep them in
// step).
const JaegerVersion = "v1.75.0"

// CacheDir is where scripts/jaeger-testenv puts the binary:
// $MESHLAB_JAEGER_TESTENV, else ~/.cache/meshlab/jaeger-testenv/<version>.
func CacheDir() string {
	if d := os.Getenv("MESHLAB_JAEGER_TESTENV"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = os.TempDir()
	}
	return filepath.Join(home, ".cache", "meshlab", "jaeger-testenv", JaegerVersion)
}

// Jaeger is a running Jaeger v2.
type Jaeger struct {
	// ZipkinAddr is the zipkin receiver's host:port; POST Zipkin v2 spans
	// to http://ZipkinAddr/api/v2/spans, as a proxy's tracer does.
	ZipkinAddr string
	// QueryURL is the base of Jaeger's HTTP query API (/api/traces, ...).
	QueryURL string
}

// config is Jaeger v2's collector configuration: the zipkin receiver into
// the memory store, the query API on loopback, no telemetry port of its own.
const config = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [zipkin]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: mem
    http:
      endpoint: %s
    grpc:
      endpoint: %s
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 10000
receivers:
  zipkin:
    endpoint: %s
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`

// Start runs Jaeger for t and returns once its query API answers and the
// zipkin receiver accepts connections; it stops when t ends. Without the
// binary the test is skipped with how to build it — except under CI=true,
// where it fails: CI must run what it claims to.
func Start(t testing.TB) *Jaeger {
	t.Helper()
	return StartOn(t, "127.0.0.1")
}

// StartOn is Start with the zipkin receiver on host (an address of this
// machine, such as a lab's bridge, so pods can send to it); the query API
// stays on loopback.
func StartOn(t testing.TB, host string) *Jaeger {
	t.Helper()
	bin := filepath.Join(CacheDir(), "jaeger")
	if _, err := os.Stat(bin); err != nil {
		msg := fmt.Sprintf("jaegertest: %s is missing: run scripts/jaeger-testenv (it builds Jaeger %s into %s)", bin, JaegerVersion, CacheDir())
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir := t.TempDir()
	ports := append(freePorts(t, "127.0.0.1", 2), freePorts(t, host, 1)...)
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, config, ports[0], ports[1], ports[2]), 0o644); err != nil {
		t.Fatal(err)
	}
	j := &Jaeger{ZipkinAddr: ports[2], QueryURL: "http://" + ports[0]}
	p := start(t, bin, dir, "--config", cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if j.ready() {
			return j
		}
		select {
		case <-p.exited:
			t.Fatalf("jaegertest: jaeger exited while starting (%v); its log ends:\n%s", p.err, p.tail())
		case <-ctx.Done():
			t.Fatalf("jaegertest: jaeger not ready within 60s; its log ends:\n%s", p.tail())
		case <-tick.C:
		}
	}
}

func (j *Jaeger) ready() bool {
	resp, err := http.Get(j.QueryURL + "/api/services")
	if err != nil {
		return false
	}
	_ = resp.Body.Close() // only the status matters
	if resp.StatusCode != http.StatusOK {
		return false
	}
	c, err := net.DialTimeout("tcp", j.ZipkinAddr, time.Second)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// Trace is one trace as Jaeger's HTTP API (/api/traces) answers it.
type Trace struct {
	TraceID   string             `json:"traceID"`
	Spans     []Span             `json:"spans"`
	Processes map[string]Process `json:"processes"`
}

// Span is a span in Jaeger's JSON model.
type Span struct {
	TraceID       string      `json:"traceID"`
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	References    []Reference `json:"references"`
	StartTime     int64       `json:"startTime"` // microseconds
	Duration      int64       `json:"duration"`  // microseconds
	Tags          []KeyValue  `json:"tags"`
	ProcessID     string      `json:"processID"`
}

// Reference links a span to another; CHILD_OF names its parent.
type Reference struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

// KeyValue is a Jaeger tag; Value is a string, bool or number by Type.
type KeyValue struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

// Process is the service that reported spans.
type Process struct {
	ServiceName string     `json:"serviceName"`
	Tags        []KeyValue `json:"tags"`
}

// Parent is the span's CHILD_OF reference, "" for a root.
func (s Span) Parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// Tag returns a tag's value as text ("true" for a bool true), and whether
// the span has it.
func (s Span) Tag(key string) (string, bool) {
	for _, kv := range s.Tags {
		if kv.Key == key {
			return fmt.Sprint(kv.Value), true
		}
	}
	return "", false
}

type answer struct {
	Data   []Trace `json:"data"`
	Errors []struct {
		Code int    `json:"code"`
		Msg  string `json:"msg"`
	} `json:"errors"`
}

func (j *Jaeger) get(ctx context.Context, path string, q url.Values) ([]Trace, error) {
	u := j.QueryURL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", u, resp.Status, body)
	}
	var a answer
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, fmt.Errorf("GET %s: decoding Jaeger's answer: %w", u, err)
	}
	if len(a.Errors) > 0 {
		return nil, fmt.Errorf("GET %s: Jaeger says %d %s", u, a.Errors[0].Code, a.Errors[0].Msg)
	}
	return a.Data, nil
}

// Traces returns the traces of a service in the last hour
// (/api/traces?service=).
func (j *Jaeger) Traces(ctx context.Context, service string) ([]Trace, error) {
	now := time.Now()
	return j.get(ctx, "/api/traces", url.Values{
		"service":  {service},
		"start":    {fmt.Sprint(now.Add(-time.Hour).UnixMicro())},
		"end":      {fmt.Sprint(now.Add(time.Minute).UnixMicro())},
		"limit":    {"100"},
		"lookback": {"1h"},
	})
}

// Trace returns one trace by id (/api/traces/{id}); nil when Jaeger has
// none.
func (j *Jaeger) Trace(ctx context.Context, id string) (*Trace, error) {
	ts, err := j.get(ctx, "/api/traces/"+id, nil)
	if err != nil || len(ts) == 0 {
		return nil, err
	}
	return &ts[0], nil
}

// proc is the child process; exited is closed when it ends.
type proc struct {
	log    string
	exited chan struct{}
	err    error
}

func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// start runs bin; t.Cleanup stops it with SIGTERM, then SIGKILL.
func start(t testing.TB, bin, dir string, args ...string) *proc {
	t.Helper()
	p := &proc{log: filepath.Join(dir, "jaeger.log"), exited: make(chan struct{})}
	out, err := os.Create(p.log)
	if err != nil {
		t.Fatalf("jaegertest: creating jaeger's log: %v", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Dir = dir
	// Its own process group, so a test's ^C does not reach it first; and
	// it dies with the thread that started it (held for its life, as
	// kubetest does, since Pdeathsig follows the forking thread).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = cmd.Wait()
		_ = out.Close()
		close(p.exited)
	}()
	if err := <-started; err != nil {
		_ = out.Close()
		t.Fatalf("jaegertest: starting jaeger: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("jaegertest: jaeger's log ends:\n%s", p.tail())
		}
		select {
		case <-p.exited:
			return
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// freePorts returns n distinct addresses of host whose ports were free a
// moment ago (every listener stays open until all are chosen).
func freePorts(t testing.TB, host string, n int) []string {
	t.Helper()
	addrs := make([]string, 0, n)
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatalf("jaegertest: finding a free port: %v", err)
		}
		defer func() { _ = l.Close() }()
		addrs = append(addrs, l.Addr().String())
	}
	return addrs
}
