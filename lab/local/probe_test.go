package local

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/meshlab/meshlab/lab/podnet"
	"github.com/meshlab/meshlab/lab/process"
)

const probeHelperEnv = "MESHLAB_PROBE_HELPER"

// TestMain lets the test binary be the runtime's own: `ns-exec` for exec
// probes and containers, and a small app for the liveness test.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == process.NSExecName {
		err := process.NSExecMain(os.Args[2:])
		fmt.Fprintln(os.Stderr, err)
		os.Exit(127)
	}
	if os.Getenv(probeHelperEnv) == "app" {
		os.Exit(probeApp())
	}
	os.Exit(m.Run())
}

// probeApp answers /healthz 200, or 500 while $SICK exists.
func probeApp() int {
	l, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	if err != nil {
		fmt.Println(err)
		return 1
	}
	err = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := os.Stat(os.Getenv("SICK")); err == nil {
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	fmt.Println(err)
	return 1
}

func TestCheckProbe(t *testing.T) {
	ports := []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	field := "spec.template.spec.containers[0].livenessProbe"
	tests := []struct {
		name    string
		kind    probeKind
		spec    corev1.Probe
		wantErr string
	}{
		{"http by name", livenessProbe, corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromString("http")}}}, ""},
		{"tcp by number", readinessProbe, corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(9080)}}}, ""},
		{"exec", readinessProbe, corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}, SuccessThreshold: 2}, ""},
		{"grpc", livenessProbe, corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9090}}},
			field + ".grpc: the local runtime does not run gRPC probes"},
		{"no handler", livenessProbe, corev1.Probe{}, field + ": give one of httpGet, tcpSocket or exec"},
		{"two handlers", livenessProbe, corev1.Probe{ProbeHandler: corev1.ProbeHandler{
			Exec: &corev1.ExecAction{Command: []string{"true"}}, TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(1)}}}, field + ": give only one"},
		{"unknown port name", livenessProbe, corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromString("metrics")}}},
			field + `.httpGet.port: "metrics": the container has no port of that name`},
		{"port 0", livenessProbe, corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(0)}}},
			field + ".tcpSocket.port: 0: want a port from 1 to 65535"},
		{"scheme", livenessProbe, corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(1), Scheme: "FTP"}}},
			field + `.httpGet.scheme: "FTP": want HTTP or HTTPS`},
		{"empty exec", livenessProbe, corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{}}}, field + ".exec.command: give the command"},
		{"liveness success threshold", livenessProbe, corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}, SuccessThreshold: 2},
			field + ".successThreshold: 2: must be 1 for a liveness probe"},
		{"negative period", readinessProbe, corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}, PeriodSeconds: -1},
			field + ".periodSeconds: -1: must be 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkProbe(field, tt.kind, &tt.spec, ports)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("checkProbe = %v, want error %q", err, tt.wantErr)
			}
		})
	}
}

func TestCheckContainerProbes(t *testing.T) {
	get := func(port intstr.IntOrString) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: port}}}
	}
	grpc := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9090}}}
	ports := []corev1.ContainerPort{{Name: "http", ContainerPort: 9080}}
	tests := []struct {
		name    string
		c       corev1.Container
		wantErr string
	}{
		{"none", corev1.Container{}, ""},
		{"all three", corev1.Container{Ports: ports, StartupProbe: get(intstr.FromString("http")), LivenessProbe: get(intstr.FromInt32(9080)),
			ReadinessProbe: get(intstr.FromString("http"))}, ""},
		{"grpc readiness", corev1.Container{ReadinessProbe: grpc}, "spec.template.spec.containers[1].readinessProbe.grpc: the local runtime does not run gRPC probes"},
		{"grpc startup", corev1.Container{StartupProbe: grpc}, "spec.template.spec.containers[1].startupProbe.grpc"},
		{"liveness port not among the container's", corev1.Container{Ports: ports, LivenessProbe: get(intstr.FromString("admin"))},
			`spec.template.spec.containers[1].livenessProbe.httpGet.port: "admin": the container has no port of that name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkContainerProbes("spec.template.spec.containers[1]", &tt.c)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("checkContainerProbes = %v, want error %q", err, tt.wantErr)
			}
		})
	}
}

// probePod is a real pod network namespace with apps listening on its
// loopback only, and a container (a supervised sleep) with a volume.
type probePod struct {
	netns       string
	ip          string
	http, tls   int // servers on 127.0.0.1 inside the pod
	h2c, closed int
	flaky       sync.Map // name → *flakyPath, served at /flaky/name
	container   *process.Supervisor
	mountDst    string
	uid         uint32
}

func newProbePod(t testing.TB) *probePod {
	t.Helper()
	if err := podnet.Check(); err != nil {
		t.Skipf("needs a pod network: %v", err)
	}
	ctx := context.Background()
	n := podnet.Network{Bridge: "mlabr0", Prefix: netip.MustParsePrefix("198.18.250.0/24"),
		Gateway: netip.MustParseAddr("198.18.250.1"), NetnsPrefix: "mlabr-"}
	if err := n.Teardown(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Teardown(ctx); err != nil {
			t.Error(err)
		}
	})
	if err := n.EnsureBridge(ctx); err != nil {
		t.Fatal(err)
	}
	pod, err := n.AddPod(ctx, "probes", netip.MustParseAddr("198.18.250.7"))
	if err != nil {
		t.Fatal(err)
	}
	p := &probePod{netns: pod.NetnsPath, ip: "198.18.250.7", uid: AppUIDBase + 77}

	listen := func() net.Listener {
		var l net.Listener
		if err := podnet.Do(p.netns, func() error {
			var err error
			l, err = net.Listen("tcp", "127.0.0.1:0")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return l
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	mux.HandleFunc("/here", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusFound) })
	mux.HandleFunc("/here-fail", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/fail", http.StatusFound) })
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://elsewhere.invalid/fail", http.StatusFound)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) { time.Sleep(3 * time.Second) })
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		// What kubelet sends, and the probe's own headers over the defaults.
		if r.UserAgent() != "kube-probe/1.33" || r.Header.Get("Accept") != "*/*" || r.Host != "reviews.local" ||
			strings.Join(r.Header.Values("X-Probe"), ",") != "a,b" {
			w.WriteHeader(http.StatusTeapot)
		}
	})
	mux.HandleFunc("/flaky/{name}", func(w http.ResponseWriter, r *http.Request) {
		f := p.path(r.PathValue("name"))
		f.hits.Add(1)
		if f.sick.Load() {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	for _, s := range []struct {
		port  *int
		start func(*httptest.Server)
		proto func(*http.Server)
	}{
		{&p.http, (*httptest.Server).Start, nil},
		{&p.tls, (*httptest.Server).StartTLS, nil},
		{&p.h2c, (*httptest.Server).Start, func(s *http.Server) {
			s.Protocols = new(http.Protocols)
			s.Protocols.SetUnencryptedHTTP2(true) // and no HTTP/1
		}},
	} {
		srv := httptest.NewUnstartedServer(mux)
		srv.Listener = listen()
		if s.proto != nil {
			s.proto(srv.Config)
		}
		s.start(srv)
		t.Cleanup(srv.Close)
		*s.port = srv.Listener.Addr().(*net.TCPAddr).Port
	}
	l := listen()
	p.closed = l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// The container: its volume holds a file only it sees at mountDst.
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "healthy"), []byte("yes"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(src, 0o755); err != nil {
		t.Fatal(err)
	}
	base, err := os.MkdirTemp("", "meshlab-probe")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	p.mountDst = filepath.Join(base, "config")
	p.container = process.NewSupervisor(process.Spec{Name: "probed", Argv: []string{"/bin/sleep", "3600"},
		NetnsPath: p.netns, UID: p.uid, GID: p.uid, Dir: "/", Self: os.Args[0],
		Mounts: []process.Mount{{Source: src, Target: p.mountDst, ReadOnly: true}}}, process.WithGrace(time.Second))
	if err := p.container.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.container.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	return p
}

// flakyPath is a health endpoint whose answer the test decides.
type flakyPath struct {
	hits atomic.Int64 // requests served
	sick atomic.Bool  // answer 500
}

func (p *probePod) path(name string) *flakyPath {
	f, _ := p.flaky.LoadOrStore(name, &flakyPath{})
	return f.(*flakyPath)
}

func (p *probePod) target() probeTarget {
	return probeTarget{Netns: p.netns, State: p.container.State, Self: os.Args[0], UID: p.uid, GID: p.uid, Dir: "/",
		Env:   []string{"PATH=" + containerPath},
		Ports: []corev1.ContainerPort{{Name: "http-web", ContainerPort: int32(p.http)}, {Name: "tcp-closed", ContainerPort: int32(p.closed)}}}
}

// TestProbeOnce runs each kind of probe once against real servers that
// listen on a pod's loopback only, and an exec probe in a real container.
func TestProbeOnce(t *testing.T) {
	p := newProbePod(t)
	get := func(port intstr.IntOrString, path string, mod ...func(*corev1.HTTPGetAction)) corev1.ProbeHandler {
		g := &corev1.HTTPGetAction{Port: port, Path: path}
		for _, m := range mod {
			m(g)
		}
		return corev1.ProbeHandler{HTTPGet: g}
	}
	num := func(n int) intstr.IntOrString { return intstr.FromInt32(int32(n)) }
	sh := func(script string) corev1.ProbeHandler {
		return corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", script}}}
	}
	http2 := corev1.HTTPProtocolHTTP2
	tests := []struct {
		name    string
		h       corev1.ProbeHandler
		host    bool // probe from the host's network namespace instead
		wantErr string
	}{
		{"http 200", get(num(p.http), "/ok"), false, ""},
		{"http by port name", get(intstr.FromString("http-web"), "/ok"), false, ""},
		{"http path without slash", get(num(p.http), "ok"), false, ""},
		{"http 500", get(num(p.http), "/fail"), false, "HTTP probe failed with statuscode: 500"},
		{"http redirect followed", get(num(p.http), "/here"), false, ""},
		{"http redirect to a failure", get(num(p.http), "/here-fail"), false, "HTTP probe failed with statuscode: 500"},
		{"http redirect elsewhere not followed", get(num(p.http), "/elsewhere"), false, ""},
		{"http headers", get(num(p.http), "/headers", func(g *corev1.HTTPGetAction) {
			g.HTTPHeaders = []corev1.HTTPHeader{{Name: "Host", Value: "reviews.local"}, {Name: "x-probe", Value: "a"}, {Name: "X-Probe", Value: "b"}}
		}), false, ""},
		{"http timeout", get(num(p.http), "/slow"), false, "context deadline exceeded"},
		{"https without verification", get(num(p.tls), "/ok", func(g *corev1.HTTPGetAction) { g.Scheme = corev1.URISchemeHTTPS }), false, ""},
		{"http/1.1 to an h2c-only server", get(num(p.h2c), "/ok"), false, `Get "http://127.0.0.1:`},
		{"h2c", get(num(p.h2c), "/ok", func(g *corev1.HTTPGetAction) { g.Protocol = &http2 }), false, ""},
		{"http from the host's netns", get(num(p.http), "/ok"), true, "connection refused"},
		{"tcp open", corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: num(p.http)}}, false, ""},
		{"tcp closed by name", corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("tcp-closed")}}, false, "connection refused"},
		// The command runs as the container: its uid, its netns (its pod
		// IP) and its volume, which only its mount namespace has.
		{"exec in the container", sh(fmt.Sprintf("test $(id -u) = %d && grep -q %s /proc/net/fib_trie && test $(cat %s/healthy) = yes",
			p.uid, p.ip, p.mountDst)), false, ""},
		{"exec exit 3", sh("echo not yet >&2; exit 3"), false, `exited with 3: not yet`},
		{"exec timeout", sh("sleep 5"), false, "timed out after 1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := p.target()
			if tt.host {
				target.Netns = ""
			}
			pr, err := newProber(readinessProbe, &corev1.Probe{ProbeHandler: tt.h}, target)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			err = pr.probeOnce(context.Background())
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("probe = %v, want error %q", err, tt.wantErr)
			}
			// timeoutSeconds defaults to 1 and bounds every probe.
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("probe took %v; want it bounded by its 1s timeout", d)
			}
		})
	}
}

// TestProbeTiming runs the probe loop with Kubernetes' timing, a second
// shortened to 20ms, against a real server in a pod whose health flips.
func TestProbeTiming(t *testing.T) {
	p := newProbePod(t)
	const unit = 20 * time.Millisecond
	type change struct {
		ok     bool
		reason string
		hits   int64 // requests served when it changed
	}
	var mu sync.Mutex
	var started time.Time
	restarted := func() { mu.Lock(); started = time.Now(); mu.Unlock() }
	restarted()
	state := func() process.State {
		mu.Lock()
		defer mu.Unlock()
		return process.State{Running: true, PID: 1, StartedAt: started}
	}

	f := p.path("timing")
	run := func(t *testing.T, kind probeKind, spec corev1.Probe) (<-chan change, func()) {
		spec.HTTPGet = &corev1.HTTPGetAction{Port: intstr.FromString("http-web"), Path: "/flaky/timing"}
		target := p.target()
		target.State = state
		pr, err := newProber(kind, &spec, target)
		if err != nil {
			t.Fatal(err)
		}
		pr.second = unit
		ch := make(chan change, 16)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			pr.run(ctx, func(ok bool, reason string) { ch <- change{ok, reason, f.hits.Load()} })
		}()
		return ch, func() { cancel(); <-done }
	}
	next := func(t *testing.T, ch <-chan change) change {
		t.Helper()
		select {
		case c := <-ch:
			return c
		case <-time.After(10 * time.Second):
			t.Fatal("no change of the probe's result")
			return change{}
		}
	}
	none := func(t *testing.T, ch <-chan change, d time.Duration) {
		t.Helper()
		select {
		case c := <-ch:
			t.Fatalf("unexpected change %+v", c)
		case <-time.After(d):
		}
	}

	t.Run("readiness thresholds", func(t *testing.T) {
		f.sick.Store(false)
		restarted()
		f.hits.Store(0)
		ch, stop := run(t, readinessProbe, corev1.Probe{InitialDelaySeconds: 10, PeriodSeconds: 1, SuccessThreshold: 2, FailureThreshold: 3})
		defer stop()
		c := next(t, ch)
		mu.Lock()
		since := time.Since(started)
		mu.Unlock()
		// Not before initialDelaySeconds; ready after 2 successes in a row.
		if !c.ok || c.hits != 2 || since < 10*unit {
			t.Fatalf("first change %+v after %v; want ready after 2 probes and at least %v", c, since, 10*unit)
		}
		f.sick.Store(true)
		at := f.hits.Load()
		c = next(t, ch)
		if c.ok || c.hits-at != 3 || c.reason != "Readiness probe failed: HTTP probe failed with statuscode: 500" {
			t.Fatalf("change %+v, %d probes after it fell sick; want not ready after 3 failures, with the reason", c, c.hits-at)
		}
		f.sick.Store(false)
		at = f.hits.Load()
		if c = next(t, ch); !c.ok || c.hits-at != 2 {
			t.Fatalf("change %+v, %d probes after it healed; want ready after 2", c, c.hits-at)
		}
	})

	t.Run("liveness holds after a failure until the container restarts", func(t *testing.T) {
		f.sick.Store(true)
		restarted()
		f.hits.Store(0)
		ch, stop := run(t, livenessProbe, corev1.Probe{PeriodSeconds: 1, FailureThreshold: 3})
		defer stop()
		// Alive until proven otherwise: the first change is the failure.
		c := next(t, ch)
		if c.ok || c.hits != 3 || c.reason != "Liveness probe failed: HTTP probe failed with statuscode: 500" {
			t.Fatalf("first change %+v; want a liveness failure after 3 probes", c)
		}
		at := f.hits.Load()
		none(t, ch, 10*unit)
		if h := f.hits.Load(); h != at {
			t.Fatalf("%d probes while the container waited for its restart; want none", h-at)
		}
		f.sick.Store(false)
		restarted()
		if c = next(t, ch); !c.ok {
			t.Fatalf("change %+v after the restart; want alive again", c)
		}
		waitUntil(t, "probes of the new container", func() bool { return f.hits.Load() > at })
	})
}

// TestLivenessRestartsContainer wires a liveness probe to a real
// container's Supervisor.Restart, as the runtime does.
func TestLivenessRestartsContainer(t *testing.T) {
	p := newProbePod(t)
	sick := filepath.Join(t.TempDir(), "sick")
	if err := os.WriteFile(sick, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	port := p.closed // free inside the pod: the app listens there
	app := process.NewSupervisor(process.Spec{Name: "app", Argv: []string{os.Args[0]}, NetnsPath: p.netns, Self: os.Args[0],
		Env: []string{probeHelperEnv + "=app", "PORT=" + strconv.Itoa(port), "SICK=" + sick}},
		process.WithGrace(time.Second), process.WithBackoff(process.Backoff{Initial: 10 * time.Millisecond, Max: time.Second, ResetAfter: time.Hour}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := app.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := app.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	target := p.target()
	target.State = app.State
	pr, err := newProber(livenessProbe, &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
		HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromString("tcp-closed"), Path: "/healthz"}},
		InitialDelaySeconds: 10, PeriodSeconds: 1, FailureThreshold: 2}, target) // the delay covers the app's start, after the restart too
	if err != nil {
		t.Fatal(err)
	}
	pr.second = 50 * time.Millisecond
	alive := make(chan bool, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		pr.run(ctx, func(ok bool, reason string) {
			if !ok {
				if err := os.Remove(sick); err != nil { // the new process will be healthy
					t.Error(err)
				}
				if err := app.Restart(ctx, reason); err != nil {
					t.Error(err)
				}
			}
			alive <- ok
		})
	}()
	defer func() { cancel(); <-done }()
	for _, want := range []bool{false, true} {
		select {
		case got := <-alive:
			if got != want {
				t.Fatalf("liveness changed to %v, want %v", got, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("liveness did not change to %v", want)
		}
	}
	st := app.State()
	if st.Restarts != 1 || !strings.HasPrefix(st.LastExit, "Liveness probe failed: HTTP probe failed with statuscode: 500 (") {
		t.Fatalf("app after the liveness failure: %+v; want 1 restart with the probe's reason", st)
	}
}

// TestContainerProbes: a container's probes together, as kubelet runs
// them, against real servers in a pod; the container's state is the test's.
func TestContainerProbes(t *testing.T) {
	p := newProbePod(t)
	const unit = 20 * time.Millisecond
	var mu sync.Mutex
	st := process.State{Running: true, PID: 1, StartedAt: time.Now()}
	setState := func(f func(*process.State)) { mu.Lock(); f(&st); mu.Unlock() }
	state := func() process.State { mu.Lock(); defer mu.Unlock(); return st }
	get := func(name string, period int32) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromString("web"), Path: "/flaky/" + name}},
			PeriodSeconds: period, FailureThreshold: 3}
	}
	type event struct {
		what   string // "ready", "not ready", "restart"
		reason string
	}
	start := func(t *testing.T, c *corev1.Container) <-chan event {
		c.Ports = []corev1.ContainerPort{{Name: "web", ContainerPort: int32(p.http)}}
		target := p.target()
		target.State = state
		cp, err := newContainerProbes("spec.template.spec.containers[0]", c, target)
		if err != nil {
			t.Fatal(err)
		}
		for _, pr := range []*prober{cp.startup, cp.liveness, cp.readiness} {
			if pr != nil {
				pr.second = unit
			}
		}
		cp.poll = unit
		events := make(chan event, 16)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			cp.run(ctx, func(ok bool, reason string) {
				if ok {
					events <- event{"ready", reason}
				} else {
					events <- event{"not ready", reason}
				}
			}, func(reason string) { events <- event{"restart", reason} })
		}()
		t.Cleanup(func() { cancel(); <-done })
		return events
	}
	next := func(t *testing.T, events <-chan event, want event) time.Time {
		t.Helper()
		select {
		case e := <-events:
			if e != want {
				t.Fatalf("event %+v, want %+v", e, want)
			}
			return time.Now()
		case <-time.After(10 * time.Second):
			t.Fatalf("no event; want %+v", want)
			return time.Time{}
		}
	}

	t.Run("no readiness probe: ready while running", func(t *testing.T) {
		events := start(t, &corev1.Container{})
		next(t, events, event{"ready", ""})
		setState(func(s *process.State) { s.Running = false })
		next(t, events, event{"not ready", "the container is not running"})
		setState(func(s *process.State) { s.Running, s.StartedAt = true, time.Now() })
		next(t, events, event{"ready", ""})
	})

	t.Run("startup gates readiness and liveness", func(t *testing.T) {
		startup, ready, live := p.path("startup"), p.path("ready"), p.path("live")
		startup.sick.Store(true)
		setState(func(s *process.State) { s.Running, s.StartedAt = true, time.Now() })
		// A readiness period of 250 units (5s): only the trigger on startup makes
		// the container ready sooner.
		events := start(t, &corev1.Container{StartupProbe: get("startup", 1), ReadinessProbe: get("ready", 250), LivenessProbe: get("live", 1)})
		next(t, events, event{"restart", "Startup probe failed: HTTP probe failed with statuscode: 500"})
		if h := startup.hits.Load(); h != 3 {
			t.Errorf("%d startup probes before the restart, want 3 (failureThreshold)", h)
		}
		if r, l := ready.hits.Load(), live.hits.Load(); r != 0 || l != 0 {
			t.Fatalf("before the startup probe passed: %d readiness and %d liveness probes; want none", r, l)
		}
		// The new container starts healthy.
		startup.sick.Store(false)
		restarted := time.Now()
		setState(func(s *process.State) { s.StartedAt = restarted })
		at := next(t, events, event{"ready", ""})
		if d := at.Sub(restarted); d > 25*unit {
			t.Errorf("ready %v after the restart; want it right after the startup probe, not at the readiness period", d)
		}
		waitUntil(t, "liveness probes once started", func() bool { return live.hits.Load() > 0 })
		n := startup.hits.Load()
		time.Sleep(5 * unit)
		if h := startup.hits.Load(); h != n {
			t.Errorf("%d startup probes after it passed; want none until the container restarts", h-n)
		}
		live.sick.Store(true)
		next(t, events, event{"restart", "Liveness probe failed: HTTP probe failed with statuscode: 500"})
	})
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkProbe is what one probe of each kind costs the runtime: an
// httpGet or tcpSocket dial from inside the pod's netns, and an exec probe
// (ns-exec into the container's namespaces, then /bin/true as its user).
func BenchmarkProbe(b *testing.B) {
	p := newProbePod(b)
	for _, bb := range []struct {
		name string
		h    corev1.ProbeHandler
	}{
		{"httpGet", corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromString("http-web"), Path: "/ok"}}},
		{"tcpSocket", corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("http-web")}}},
		{"exec", corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/true"}}}},
	} {
		b.Run(bb.name, func(b *testing.B) {
			pr, err := newProber(readinessProbe, &corev1.Probe{ProbeHandler: bb.h}, p.target())
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if err := pr.probeOnce(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
