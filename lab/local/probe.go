package local

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/meshlab/meshlab/lab/podnet"
	"github.com/meshlab/meshlab/lab/process"
)

// probeUserAgent is what kubelet 1.33 sends; apps that tell probes from
// users by it see the same.
const probeUserAgent = "kube-probe/1.33"

// probeMaxOutput is how much of a probe's answer kubelet reads (and keeps
// of an exec probe's output for the failure message).
const probeMaxOutput = 10 << 10

// probeKind is which of a container's probes: it decides the result before
// the first probe and what a failure does.
type probeKind string

const (
	// readinessProbe starts failed: a pod is no endpoint until it passes.
	readinessProbe probeKind = "Readiness"
	// livenessProbe starts passed; its failure restarts the container.
	livenessProbe probeKind = "Liveness"
	// startupProbe starts unknown; until it passes, the others wait, and
	// its failure restarts the container.
	startupProbe probeKind = "Startup"
)

// probeResult is kubelet's: a startup probe's is unknown until it has one.
type probeResult int8

const (
	resultUnknown probeResult = iota
	resultSuccess
	resultFailure
)

// probeTarget is the container a probe checks.
type probeTarget struct {
	// Netns is the pod's network namespace; "" probes from the host's
	// (tests, and pods on the host's network).
	Netns string
	// Ports are the container's ports, where a port given by name is looked up.
	Ports []corev1.ContainerPort
	// State is the container's supervisor's: probes wait for a running
	// container, count initialDelaySeconds from its start, and start over
	// when it restarts.
	State func() process.State
	// Exec probes run as the container does: Self (the meshlab binary, for
	// ns-exec and a command of "/meshlab"), its user, environment and
	// working directory, in its mount namespace (found from State's PID).
	Self     string
	UID, GID uint32
	Env      []string
	Dir      string
}

// prober runs one corev1.Probe of one container as kubelet's prober does.
type prober struct {
	kind   probeKind
	spec   corev1.Probe // with Kubernetes' defaults filled in
	target probeTarget
	port   int // of httpGet or tcpSocket, resolved from its name
	client *http.Client
	// second is the unit of the probe's *Seconds fields; tests shorten it.
	second time.Duration
	// gate holds probing while it is false (a container whose startup
	// probe has not passed); nil never holds.
	gate func(process.State) bool
	// trigger runs a probe now rather than at the next period, as kubelet
	// does for readiness once a container has started.
	trigger chan struct{}
}

// checkProbe refuses a probe the local runtime cannot run, naming the field
// (field is the probe's path, e.g. spec.template.spec.containers[0].livenessProbe):
// what the API server's validation would refuse, and gRPC probes, which
// the local runtime does not run. The runtime calls it at apply time.
func checkProbe(field string, kind probeKind, spec *corev1.Probe, ports []corev1.ContainerPort) error {
	handlers := 0
	for _, set := range []bool{spec.Exec != nil, spec.HTTPGet != nil, spec.TCPSocket != nil, spec.GRPC != nil} {
		if set {
			handlers++
		}
	}
	switch {
	case spec.GRPC != nil:
		return fmt.Errorf("%s.grpc: the local runtime does not run gRPC probes; use httpGet, tcpSocket or exec (or --runtime kind)", field)
	case handlers == 0:
		return fmt.Errorf("%s: give one of httpGet, tcpSocket or exec", field)
	case handlers > 1:
		return fmt.Errorf("%s: give only one of httpGet, tcpSocket or exec", field)
	}
	for _, n := range []struct {
		name string
		v    int32
	}{
		{"initialDelaySeconds", spec.InitialDelaySeconds}, {"timeoutSeconds", spec.TimeoutSeconds},
		{"periodSeconds", spec.PeriodSeconds}, {"successThreshold", spec.SuccessThreshold},
		{"failureThreshold", spec.FailureThreshold},
	} {
		if n.v < 0 {
			return fmt.Errorf("%s.%s: %d: must be 0 (the default) or more", field, n.name, n.v)
		}
	}
	if kind != readinessProbe && spec.SuccessThreshold > 1 {
		return fmt.Errorf("%s.successThreshold: %d: must be 1 for a %s probe", field, spec.SuccessThreshold, strings.ToLower(string(kind)))
	}
	switch {
	case spec.Exec != nil:
		if len(spec.Exec.Command) == 0 {
			return fmt.Errorf("%s.exec.command: give the command to run", field)
		}
	case spec.HTTPGet != nil:
		g := spec.HTTPGet
		if g.Scheme != "" && g.Scheme != corev1.URISchemeHTTP && g.Scheme != corev1.URISchemeHTTPS {
			return fmt.Errorf("%s.httpGet.scheme: %q: want HTTP or HTTPS", field, g.Scheme)
		}
		if g.Protocol != nil && *g.Protocol != corev1.HTTPProtocolHTTP1 && *g.Protocol != corev1.HTTPProtocolHTTP2 {
			return fmt.Errorf("%s.httpGet.protocol: %q: want HTTP1 or HTTP2", field, *g.Protocol)
		}
		for i, h := range g.HTTPHeaders {
			if h.Name == "" {
				return fmt.Errorf("%s.httpGet.httpHeaders[%d].name: give the header's name", field, i)
			}
		}
		if _, err := resolvePort(g.Port, ports); err != nil {
			return fmt.Errorf("%s.httpGet.port: %w", field, err)
		}
	case spec.TCPSocket != nil:
		if _, err := resolvePort(spec.TCPSocket.Port, ports); err != nil {
			return fmt.Errorf("%s.tcpSocket.port: %w", field, err)
		}
	}
	return nil
}

// resolvePort is a probe's port number: given, or the container's port of
// that name, as kubelet looks it up.
func resolvePort(p intstr.IntOrString, ports []corev1.ContainerPort) (int, error) {
	if p.Type == intstr.Int {
		if p.IntVal < 1 || p.IntVal > 65535 {
			return 0, fmt.Errorf("%d: want a port from 1 to 65535", p.IntVal)
		}
		return int(p.IntVal), nil
	}
	for _, cp := range ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("%q: the container has no port of that name", p.StrVal)
}

// newProber prepares spec for target, refusing what checkProbe refuses.
func newProber(kind probeKind, spec *corev1.Probe, target probeTarget) (*prober, error) {
	if err := checkProbe(strings.ToLower(string(kind))+"Probe", kind, spec, target.Ports); err != nil {
		return nil, err
	}
	p := &prober{kind: kind, spec: *spec.DeepCopy(), target: target, second: time.Second, trigger: make(chan struct{}, 1)}
	// Kubernetes' defaults, which the API server would have filled in.
	for _, d := range []struct {
		f   *int32
		def int32
	}{{&p.spec.TimeoutSeconds, 1}, {&p.spec.PeriodSeconds, 10}, {&p.spec.SuccessThreshold, 1}, {&p.spec.FailureThreshold, 3}} {
		if *d.f == 0 {
			*d.f = d.def
		}
	}
	switch {
	case spec.HTTPGet != nil:
		p.port, _ = resolvePort(spec.HTTPGet.Port, target.Ports) // checked above
		p.client = p.httpClient()
	case spec.TCPSocket != nil:
		p.port, _ = resolvePort(spec.TCPSocket.Port, target.Ports)
	}
	return p, nil
}

// host is where httpGet and tcpSocket connect: the probe's host if it
// names one, else 127.0.0.1 inside the pod — not the pod IP kubelet
// dials from the node. Capture redirects whatever a pod's processes send
// to its own IP into the sidecar, which would answer a plaintext probe
// itself (or refuse it under STRICT mTLS); loopback is left alone, so the
// probe reaches the app as Istio's rewritten probes (via pilot-agent) do.
// An app listening on the pod IP alone is therefore not reachable by a
// probe here; meshlab's modes and Istio's samples listen on all addresses.
func (p *prober) host(named string) string {
	if named != "" {
		return named
	}
	return "127.0.0.1"
}

// dial connects from inside the pod's network namespace: the socket is
// made there and stays there, whichever thread uses it later.
func (p *prober) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	if p.target.Netns == "" {
		return d.DialContext(ctx, network, addr)
	}
	var c net.Conn
	err := podnet.Do(p.target.Netns, func() error {
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

func (p *prober) httpClient() *http.Client {
	g := p.spec.HTTPGet
	t := &http.Transport{
		DialContext:       p.dial,
		Proxy:             nil, // never the runtime's proxy settings
		DisableKeepAlives: true,
		// As kubelet: a probe checks that the app answers, not its certificate.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // kubelet's probes skip verification too
	}
	if g.Protocol != nil && *g.Protocol == corev1.HTTPProtocolHTTP2 {
		t.Protocols = new(http.Protocols)
		t.Protocols.SetHTTP2(true)            // over TLS
		t.Protocols.SetUnencryptedHTTP2(true) // h2c with prior knowledge over HTTP
	}
	return &http.Client{
		Transport: t,
		// kubelet follows up to 10 redirects on the same host; one to
		// another host is not followed and counts as a success.
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			if req.URL.Hostname() != via[0].URL.Hostname() {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
}

// probeOnce runs the probe once, bounded by timeoutSeconds: nil is a
// success, the error says why it failed as kubelet's events do.
func (p *prober) probeOnce(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(p.spec.TimeoutSeconds)*p.second)
	defer cancel()
	switch {
	case p.spec.HTTPGet != nil:
		return p.probeHTTP(ctx)
	case p.spec.TCPSocket != nil:
		c, err := p.dial(ctx, "tcp", net.JoinHostPort(p.host(p.spec.TCPSocket.Host), strconv.Itoa(p.port)))
		if err != nil {
			return err
		}
		_ = c.Close() // connecting was the probe
		return nil
	case p.spec.Exec != nil:
		return p.probeExec(ctx)
	}
	return errors.New("the local runtime runs httpGet, tcpSocket and exec probes only")
}

func (p *prober) probeHTTP(ctx context.Context) error {
	g := p.spec.HTTPGet
	scheme := strings.ToLower(string(g.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	path := g.Path
	if path != "" && !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u, err := url.Parse(scheme + "://" + net.JoinHostPort(p.host(g.Host), strconv.Itoa(p.port)) + path)
	if err != nil {
		return fmt.Errorf("probe URL: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", probeUserAgent)
	req.Header.Set("Accept", "*/*")
	// The probe's headers replace the defaults of the same name, as kubelet's.
	set := map[string]bool{}
	for _, h := range g.HTTPHeaders {
		name := http.CanonicalHeaderKey(h.Name)
		if name == "Host" {
			req.Host = h.Value
			continue
		}
		if !set[name] {
			req.Header.Del(name)
			set[name] = true
		}
		req.Header.Add(name, h.Value)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	// Read like kubelet (a bounded part of the body), so the app sees its
	// answer taken; what it says does not matter.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, probeMaxOutput))
	if resp.StatusCode < http.StatusOK || resp.StatusCode >= http.StatusBadRequest {
		return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
	}
	return nil
}

// probeExec runs the command in the container, as the container runs:
// through ns-exec into its network and mount namespaces, as its user.
func (p *prober) probeExec(ctx context.Context) error {
	pid := 0
	if p.target.State != nil {
		pid = p.target.State().PID
	}
	if pid == 0 {
		return errors.New("the container is not running")
	}
	o := process.NSExec{Netns: p.target.Netns, MountNS: process.MountNSPath(pid),
		UID: p.target.UID, GID: p.target.GID, Dir: p.target.Dir}
	argv := append([]string(nil), p.spec.Exec.Command...)
	if argv[0] == "/meshlab" {
		argv[0] = p.target.Self
	}
	cmd := exec.CommandContext(ctx, p.target.Self, append(o.Args(), argv...)...)
	cmd.Env = p.target.Env
	// A timed-out command dies with everything it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	var out limitedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("command %q timed out after %ds", p.spec.Exec.Command, p.spec.TimeoutSeconds)
	case err != nil:
		msg := strings.TrimSpace(out.String())
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.Exited() {
			return fmt.Errorf("command %q exited with %d: %s", p.spec.Exec.Command, ee.ExitCode(), msg)
		}
		return fmt.Errorf("command %q: %w: %s", p.spec.Exec.Command, err, msg)
	}
	return nil
}

// limitedBuffer keeps the first probeMaxOutput bytes written to it and
// takes the rest without keeping it, so the command never blocks on output.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := probeMaxOutput - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// run probes every periodSeconds until ctx ends, as kubelet's probe worker
// does, and calls onChange when the result changes: reason says why it
// failed ("Liveness probe failed: ..."; "" when ok), for the pod's status
// and Supervisor.Restart. Before the first result a readiness probe counts
// as failed, a liveness probe as passed and a startup probe as unknown,
// and nothing is called.
//
// Kubernetes' timing: no probe while the container runs shorter than
// initialDelaySeconds; each probe bounded by timeoutSeconds; the result
// changes after successThreshold passes or failureThreshold failures in a
// row. A container that is not running is not ready, and is not probed.
// After a liveness or startup failure, or a startup success, probing stops
// until the container has restarted, then starts over (initial delay
// included) from the initial result.
func (p *prober) run(ctx context.Context, onChange func(ok bool, reason string)) {
	initial := map[probeKind]probeResult{readinessProbe: resultFailure, livenessProbe: resultSuccess, startupProbe: resultUnknown}[p.kind]
	result := initial
	set := func(r probeResult, reason string) {
		if r == result {
			return
		}
		result = r
		if r != resultUnknown {
			onChange(r == resultSuccess, reason)
		}
	}
	var started time.Time // of the container probed; a new one starts over
	runs, lastOK := 0, false
	onHold, everReady := false, false
	tick := time.NewTicker(time.Duration(p.spec.PeriodSeconds) * p.second)
	defer tick.Stop()
	for {
		st := process.State{Running: true}
		if p.target.State != nil {
			st = p.target.State()
		}
		switch {
		case !st.Running:
			if p.kind == readinessProbe {
				set(resultFailure, fmt.Sprintf("%s probe failed: the container is not running", p.kind))
			}
		case !st.StartedAt.Equal(started):
			// A new container (or the first): start over.
			started, onHold, runs = st.StartedAt, false, 0
			set(initial, fmt.Sprintf("%s probe: the container has restarted", p.kind))
			fallthrough
		default:
			if p.gate != nil && !p.gate(st) {
				// Not started: kubelet runs neither readiness nor liveness
				// probes, and the container is not ready.
				if p.kind == readinessProbe {
					set(resultFailure, fmt.Sprintf("%s probe: the container has not passed its startup probe", p.kind))
				}
				break
			}
			if onHold || time.Since(st.StartedAt) < time.Duration(p.spec.InitialDelaySeconds)*p.second {
				break
			}
			err := p.probeOnce(ctx)
			if ctx.Err() != nil {
				return
			}
			if ok := err == nil; ok == lastOK && runs > 0 {
				runs++
			} else {
				lastOK, runs = ok, 1
			}
			switch {
			case lastOK && runs >= int(p.spec.SuccessThreshold):
				set(resultSuccess, "")
				if p.kind == startupProbe {
					onHold = true // started: never probed again for this container
				}
			case !lastOK && runs >= int(p.spec.FailureThreshold):
				set(resultFailure, fmt.Sprintf("%s probe failed: %v", p.kind, err))
				if p.kind != readinessProbe {
					// The container is being restarted: nothing to probe
					// until the new one runs.
					onHold, runs = true, 0
				}
			}
		}
		// Until a container first turns ready, readiness is probed every
		// fastReadinessPoll rather than every period: kubelet waits a
		// whole period after a failed first probe, and a lab whose apps
		// listen within milliseconds would sit unready for 10 s. Failure
		// counting is unchanged, since an unready container stays unready.
		var fast <-chan time.Time
		if p.kind == readinessProbe && result != resultSuccess && !everReady {
			fast = time.After(fastReadinessPoll)
		}
		if result == resultSuccess {
			everReady = true
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-p.trigger:
		case <-fast:
		}
	}
}

const fastReadinessPoll = 200 * time.Millisecond

// containerProbes are one container's probes, run together as kubelet
// runs them: liveness and readiness wait for the startup probe, and a
// container without a readiness probe is ready while it runs (and has
// started).
type containerProbes struct {
	target                       probeTarget
	startup, liveness, readiness *prober // nil when the container has none
	// poll is how often readiness follows the container's state when it
	// has no readiness probe.
	poll time.Duration

	mu         sync.Mutex
	started    bool
	startedFor time.Time // StartedAt of the container whose startup probe passed
}

// containerProbeSpecs are c's probes with their field names, in the order
// kubelet starts them.
func containerProbeSpecs(c *corev1.Container) []struct {
	kind  probeKind
	field string
	spec  *corev1.Probe
} {
	return []struct {
		kind  probeKind
		field string
		spec  *corev1.Probe
	}{
		{startupProbe, ".startupProbe", c.StartupProbe},
		{livenessProbe, ".livenessProbe", c.LivenessProbe},
		{readinessProbe, ".readinessProbe", c.ReadinessProbe},
	}
}

// checkContainerProbes refuses the probes of container c that the local
// runtime cannot run, naming the field (field is c's path, e.g.
// spec.template.spec.containers[0]): for apply time, so that a gRPC probe
// is refused before anything changes rather than failing in a running pod.
func checkContainerProbes(field string, c *corev1.Container) error {
	for _, pr := range containerProbeSpecs(c) {
		if pr.spec == nil {
			continue
		}
		if err := checkProbe(field+pr.field, pr.kind, pr.spec, c.Ports); err != nil {
			return err
		}
	}
	return nil
}

// newContainerProbes prepares container c's probes, refusing (with c's
// field path, e.g. spec.template.spec.containers[0]) what checkProbe
// refuses. target.Ports is set from c.
func newContainerProbes(field string, c *corev1.Container, target probeTarget) (*containerProbes, error) {
	target.Ports = c.Ports
	cp := &containerProbes{target: target, poll: 100 * time.Millisecond}
	if err := checkContainerProbes(field, c); err != nil {
		return nil, err
	}
	dst := map[probeKind]**prober{startupProbe: &cp.startup, livenessProbe: &cp.liveness, readinessProbe: &cp.readiness}
	for _, pr := range containerProbeSpecs(c) {
		if pr.spec == nil {
			continue
		}
		p, err := newProber(pr.kind, pr.spec, target)
		if err != nil {
			return nil, err
		}
		p.gate = cp.hasStarted
		*dst[pr.kind] = p
	}
	if cp.startup != nil {
		cp.startup.gate = nil
	}
	return cp, nil
}

// hasStarted reports whether the container of st has passed its startup
// probe (always, without one).
func (cp *containerProbes) hasStarted(st process.State) bool {
	if cp.startup == nil {
		return true
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.started && cp.startedFor.Equal(st.StartedAt)
}

// run runs the probes until ctx ends: ready is called when the
// container's readiness changes (Kubernetes' ContainerStatus.ready, for
// the pod's endpoints), restart when a liveness or startup probe has
// failed, with kubelet's reason, for Supervisor.Restart.
func (cp *containerProbes) run(ctx context.Context, ready func(ok bool, reason string), restart func(reason string)) {
	var wg sync.WaitGroup
	defer wg.Wait()
	goRun := func(p *prober, onChange func(bool, string)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.run(ctx, onChange)
		}()
	}
	// Without a readiness probe, readiness follows the state: the poller
	// is woken like a probe when the container starts.
	poke := make(chan struct{}, 1)
	if cp.readiness != nil {
		poke = cp.readiness.trigger
	}
	if cp.startup != nil {
		goRun(cp.startup, func(ok bool, reason string) {
			if !ok {
				restart(reason)
				return
			}
			st := cp.target.State()
			cp.mu.Lock()
			cp.started, cp.startedFor = true, st.StartedAt
			cp.mu.Unlock()
			select {
			case poke <- struct{}{}:
			default:
			}
		})
	}
	if cp.liveness != nil {
		goRun(cp.liveness, func(ok bool, reason string) {
			if !ok {
				restart(reason)
			}
		})
	}
	if cp.readiness != nil {
		goRun(cp.readiness, ready)
		return
	}
	tick := time.NewTicker(cp.poll)
	defer tick.Stop()
	last := false
	for {
		st := cp.target.State()
		if now := st.Running && cp.hasStarted(st); now != last {
			last = now
			reason := ""
			if !now {
				reason = "the container is not running"
				if st.Running {
					reason = "the container has not passed its startup probe"
				}
			}
			ready(now, reason)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-poke:
		}
	}
}
