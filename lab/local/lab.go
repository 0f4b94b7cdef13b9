package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/values"
)

// Lab is the client side of the local runtime: what the CLI drives, as a
// lab.Runtime, for the lab of one state directory. It starts the runtime
// process (Run, as `meshlab lab-daemon`), reads the lab's record (lab.json)
// for pods, and talks to the lab's control plane for everything stored.
type Lab struct {
	dir    string
	self   string
	stderr io.Writer
	addr   string // --controlplane, "" for the lab's own
	token  string // --token, "" for the lab's own

	once sync.Once
	cp   *api.Client
}

var _ lab.Runtime = (*Lab)(nil)

// Option configures Open.
type Option func(*Lab)

// WithControlPlane talks to the control plane at addr (host:port or URL)
// with token instead of the lab's own; either may be "" for the lab's.
func WithControlPlane(addr, token string) Option {
	return func(l *Lab) { l.addr, l.token = addr, token }
}

// WithStderr sends warnings to w (default os.Stderr).
func WithStderr(w io.Writer) Option { return func(l *Lab) { l.stderr = w } }

// WithBinary names the meshlab binary that runs the lab's runtime process
// and exec's helper (default: this process's executable).
func WithBinary(path string) Option { return func(l *Lab) { l.self = path } }

// Open returns the local runtime for the lab of stateDir. The lab need not
// be up: Up starts it, and the other methods say when it is not.
func Open(stateDir string, o ...Option) (*Lab, error) {
	l := &Lab{dir: stateDir, stderr: os.Stderr}
	for _, f := range o {
		f(l)
	}
	if l.self == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find the meshlab binary: %w", err)
		}
		l.self = self
	}
	return l, nil
}

// Name is "local".
func (l *Lab) Name() string { return "local" }

// client is the lab's control plane, found once: the lab's address and
// token are in its state directory once it is up.
func (l *Lab) client() *api.Client {
	l.once.Do(func() {
		cl, warn := lab.ControlPlaneClient(l.dir, l.addr, l.token)
		if warn != nil {
			fmt.Fprintf(l.stderr, "warning: %v; run meshlab as the user that ran `meshlab up`, or pass --token\n", warn)
		}
		l.cp = cl
	})
	return l.cp
}

// Up starts the lab's runtime process, detached, and follows its progress
// from lab.json, showing each step, until the lab is ready or failed; then
// it applies o.Manifests as `meshlab apply -f` would and waits for their
// Deployments.
func (l *Lab) Up(ctx context.Context, o lab.UpOptions) error {
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	if st, err := lab.ReadStatus(l.dir); err == nil {
		fmt.Fprintf(out, "The lab is already up (runtime %s, %s, pid %d).\n", st.Runtime, st.Phase, st.PID)
		if o.MeshConfigGiven {
			// As helm upgrade: the values given replace the mesh config.
			// What proxies take at start reaches them on a restart.
			if err := l.applyMeshConfig(ctx, o.MeshConfig); err != nil {
				return err
			}
			fmt.Fprintln(out, "Mesh config applied (configmap istio-system/istio); proxies take defaultConfig when they start: `meshlab rollout restart deployment -n <ns>`.")
		}
		printURLs(out, st, l.dir)
		fmt.Fprintln(out, "`meshlab status` shows it; `meshlab down` stops it.")
		return nil
	}
	if err := preflight(); err != nil {
		return err
	}
	if err := CheckOwner(l.dir); err != nil {
		return err
	}
	// Read before anything starts: a bad manifest fails here, naming its
	// file, document and field, with nothing on the machine to undo.
	var manifests [][]lab.Document
	for _, m := range o.Manifests {
		docs, err := readManifest(m)
		if err != nil {
			return err
		}
		manifests = append(manifests, docs)
	}
	start := time.Now()
	if err := l.startDaemon(ctx, o, out); err != nil {
		return err
	}
	if err := l.applyManifests(ctx, o.Manifests, manifests, out); err != nil {
		return err
	}
	fmt.Fprintf(out, "Lab is up in %.1fs.\n", time.Since(start).Seconds())
	st, err := lab.ReadStatus(l.dir)
	if err != nil {
		return fmt.Errorf("read the lab's status: %w", err)
	}
	printURLs(out, st, l.dir)
	return nil
}

// MeshConfigFile is where up leaves the mesh config for the runtime
// process, in the state directory.
const MeshConfigFile = "mesh-config.yaml"

// applyMeshConfig applies mesh as the istio ConfigMap of the running lab.
func (l *Lab) applyMeshConfig(ctx context.Context, mesh string) error {
	cm, err := values.ConfigMap(mesh)
	if err != nil {
		return err
	}
	docs, err := api.Documents("mesh config", cm, "default")
	if err != nil {
		return err
	}
	if _, err := l.client().Apply(ctx, api.ApplyRequest{Documents: docs}); err != nil {
		return fmt.Errorf("apply the mesh config: %w", err)
	}
	return nil
}

// preflight fails at once, with what is missing, where the local runtime
// cannot run.
func preflight() error {
	if os.Geteuid() != 0 {
		return errors.New("the local runtime needs root to create network namespaces, a bridge and nftables rules: run `sudo meshlab up` (or use --runtime kind with Docker)")
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return errors.New("this kernel has no network namespaces (/proc/self/ns/net is missing); the local runtime needs them")
	}
	return nil
}

// readManifest reads one --manifest file into documents, checked as
// `meshlab apply -f` checks them.
func readManifest(path string) ([]lab.Document, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	docs, err := api.Documents(path, data, "default")
	if err != nil {
		return nil, err
	}
	out := make([]lab.Document, len(docs))
	for i, d := range docs {
		out[i] = lab.Document{Source: d.Source, Index: d.Index, JSON: d.Object}
	}
	return out, nil
}

// startDaemon starts the runtime process and shows its steps until the lab
// is ready (Running) or failed.
func (l *Lab) startDaemon(ctx context.Context, o lab.UpOptions, out io.Writer) error {
	if err := lab.PrepareStateDir(l.dir); err != nil {
		return err
	}
	logPath := filepath.Join(l.dir, lab.DaemonLog)
	logf, err := lab.CreateLog(logPath, false)
	if err != nil {
		return fmt.Errorf("open runtime log: %w", err)
	}
	// The runtime writes the log through its own descriptor; ours only
	// hands it over.
	defer func() { _ = logf.Close() }()
	if err := os.Remove(filepath.Join(l.dir, lab.StatusFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the last lab's status: %w", err)
	}
	args := daemonArgs(l.dir, o)
	if o.MeshConfig != "" {
		f := filepath.Join(l.dir, MeshConfigFile)
		if err := lab.WriteFile(f, []byte(o.MeshConfig), 0o600); err != nil {
			return fmt.Errorf("write the mesh config: %w", err)
		}
		args = append(args, "--mesh-config-file", f)
	}
	cmd := exec.Command(l.self, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the lab runtime: %w", err)
	}
	pid := cmd.Process.Pid
	if err := lab.WriteFile(filepath.Join(l.dir, lab.PIDFile), []byte(strconv.Itoa(pid)+"\n"), 0o600); err != nil {
		// down finds the runtime through its status record too.
		fmt.Fprintf(l.stderr, "warning: record the runtime's pid: %v\n", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	printed := 0
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-exited:
			st, _ := readStatusAnyway(l.dir)
			printSteps(out, st, &printed)
			return fmt.Errorf("the lab runtime exited (%v): %s\nits log: %s\n%s", err, st.Error, logPath, tail(logPath, 15))
		case <-tick.C:
		}
		st, err := readStatusAnyway(l.dir)
		if err != nil {
			continue
		}
		printSteps(out, st, &printed)
		switch st.Phase {
		case lab.PhaseRunning:
			return nil
		case lab.PhaseFailed:
			// The status says why; how the runtime then exited is told too.
			exit := <-exited
			return fmt.Errorf("the lab did not come up: %s (the runtime exited: %v)\nits log: %s\n%s", st.Error, exit, logPath, tail(logPath, 15))
		}
	}
}

// daemonArgs are the runtime process's flags (`meshlab lab-daemon`). The
// manifests are not among them: Up applies them once the lab is up.
func daemonArgs(dir string, o lab.UpOptions) []string {
	ns := o.BookinfoNamespace
	if ns == "" {
		ns = "default"
	}
	host := o.HostAddr
	if host == "" {
		host = "127.0.0.1"
	}
	args := []string{"lab-daemon", "--state-dir", dir, "--bookinfo-namespace", ns, "--host-addr", host}
	for _, f := range []struct {
		name   string
		v, def int
	}{{"http-port", o.HTTPPort, GatewayHTTP}, {"https-port", o.HTTPSPort, GatewayHTTPS}, {"api-port", o.APIPort, MonitorPort}} {
		if f.v == 0 {
			f.v = f.def
		}
		args = append(args, "--"+f.name, strconv.Itoa(f.v))
	}
	args = append(args, "--prometheus-port", strconv.Itoa(o.PrometheusPort), "--zipkin-port", strconv.Itoa(o.ZipkinPort),
		"--kiali-port", strconv.Itoa(o.KialiPort))
	if o.KialiWebRoot != "" {
		args = append(args, "--kiali-web-root", o.KialiWebRoot)
	}
	if o.NoBookinfo {
		args = append(args, "--no-bookinfo")
	}
	if o.WorkloadCertTTL > 0 {
		args = append(args, "--workload-cert-ttl", o.WorkloadCertTTL.String())
	}
	return args
}

// applyManifests applies each manifest as one `meshlab apply -f` and waits
// until the Deployments it holds are available, as the lab's own pods were.
func (l *Lab) applyManifests(ctx context.Context, names []string, manifests [][]lab.Document, out io.Writer) error {
	var want []lab.ObjectRef
	for i, docs := range manifests {
		start := time.Now()
		res, err := l.Apply(ctx, lab.ApplyRequest{Documents: docs, Namespace: "default"})
		if err != nil {
			fmt.Fprintf(out, "✗ %-22s %-44s %6.1fs\n", "apply", names[i], time.Since(start).Seconds())
			return fmt.Errorf("apply manifest %s: %w", names[i], err)
		}
		for _, c := range res.Changes {
			if c.Ref.Kind == "Deployment" {
				want = append(want, c.Ref)
			}
		}
		fmt.Fprintf(out, "✓ %-22s %-44s %6.1fs\n", "apply", fmt.Sprintf("%s (%d objects)", names[i], len(res.Changes)), time.Since(start).Seconds())
	}
	if len(want) == 0 {
		return nil
	}
	start := time.Now()
	if err := l.waitAvailable(ctx, want, 60*time.Second); err != nil {
		fmt.Fprintf(out, "✗ %-22s %-44s %6.1fs\n", "deployments", "", time.Since(start).Seconds())
		return err
	}
	fmt.Fprintf(out, "✓ %-22s %-44s %6.1fs\n", "deployments", fmt.Sprintf("%d available", len(want)), time.Since(start).Seconds())
	return nil
}

// waitAvailable waits until every Deployment of refs has all its replicas
// updated and ready.
func (l *Lab) waitAvailable(ctx context.Context, refs []lab.ObjectRef, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		ds, err := l.Deployments(ctx, "")
		if err != nil && ctx.Err() == nil {
			return err
		}
		have := map[string]bool{}
		for _, d := range ds {
			want := int32(1)
			if d.Spec.Replicas != nil {
				want = *d.Spec.Replicas
			}
			have[d.Namespace+"/"+d.Name] = d.Status.UpdatedReplicas == want && d.Status.AvailableReplicas == want && d.Status.Replicas == want
		}
		var pending []string
		for _, r := range refs {
			if !have[r.Namespace+"/"+r.Name] {
				pending = append(pending, r.Namespace+"/"+r.Name)
			}
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("deployments not available after %s: %s (see `meshlab get pods -A` and `meshlab logs`)", timeout, strings.Join(pending, ", "))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func readStatusAnyway(dir string) (lab.Status, error) {
	var st lab.Status
	b, err := os.ReadFile(filepath.Join(dir, lab.StatusFile))
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

func printSteps(w io.Writer, st lab.Status, printed *int) {
	for ; *printed < len(st.Steps); *printed++ {
		s := st.Steps[*printed]
		if !s.Done && s.Error == "" {
			return
		}
		mark := "✓"
		if s.Error != "" {
			mark = "✗"
		}
		fmt.Fprintf(w, "%s %-22s %-44s %6.1fs\n", mark, s.Name, s.Detail, s.Elapsed.Seconds())
	}
}

func printURLs(w io.Writer, st lab.Status, dir string) {
	fmt.Fprintf(w, "productpage:   %s\n", st.URLs.ProductPage)
	if st.URLs.Prometheus != "" {
		fmt.Fprintf(w, "prometheus:    %s\n", st.URLs.Prometheus)
	}
	if st.URLs.Zipkin != "" {
		fmt.Fprintf(w, "zipkin:        %s (Zipkin v2 API: %sapi/v2/traces)\n", st.URLs.Zipkin, st.URLs.Zipkin)
	}
	if st.URLs.Kiali != "" {
		fmt.Fprintf(w, "kiali:         %s\n", st.URLs.Kiali)
	}
	fmt.Fprintf(w, "control plane: %s (its API wants the token in %s, which meshlab sends)\n", st.URLs.ControlPlane, filepath.Join(dir, lab.APITokenFile))
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// Down stops the runtime process (it drains every pod and removes the
// network), cleans up after it if it is stuck or gone, and forgets the lab;
// the store is kept unless o.Purge.
func (l *Lab) Down(ctx context.Context, o lab.DownOptions) error {
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	start := time.Now()
	if err := CheckOwner(l.dir); err != nil {
		return fmt.Errorf("%w; this down is for %s, which has no lab running", err, l.dir)
	}
	if pid := readPID(l.dir); lab.Alive(pid) {
		// Cleaning up under a runtime that could not be signalled would
		// pull its network from under live pods; ESRCH is a runtime that
		// exited since Alive looked.
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("stop the lab runtime (pid %d): %w", pid, err)
		}
		// The runtime drains and stops every pod, then removes the
		// network; if it is stuck, what is left is killed and cleaned up
		// below.
		deadline := time.Now().Add(StopTimeout)
		for lab.Alive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if lab.Alive(pid) {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("kill the lab runtime (pid %d): %w", pid, err)
			}
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := Cleanup(cctx); err != nil {
		return fmt.Errorf("clean up the lab: %w", err)
	}
	left, err := Network.Leftovers()
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("the lab left these behind: %s", strings.Join(left, ", "))
	}
	// A pid file left behind would have the next down signal whatever
	// process reuses that pid.
	for _, f := range []string{lab.StatusFile, lab.PIDFile} {
		if err := os.Remove(filepath.Join(l.dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove the stopped lab's record: %w", err)
		}
	}
	Release(l.dir)
	if o.Purge {
		if os.Geteuid() == 0 {
			if _, err := lab.CheckStateDir(l.dir); err != nil {
				return fmt.Errorf("not purging: %w", err)
			}
		}
		if err := os.RemoveAll(l.dir); err != nil {
			return fmt.Errorf("purge %s: %w", l.dir, err)
		}
		fmt.Fprintf(out, "✓ lab down in %.1fs; %s removed\n", time.Since(start).Seconds(), l.dir)
		return nil
	}
	fmt.Fprintf(out, "✓ lab down in %.1fs; config kept in %s\n", time.Since(start).Seconds(), filepath.Join(l.dir, lab.ControlPlaneDir))
	return nil
}

func readPID(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, lab.PIDFile))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// Status reads the lab's record. A lab that is not up is a status
// ("NotRunning"), not an error.
func (l *Lab) Status(context.Context) (lab.StatusReport, error) {
	st, err := lab.ReadStatus(l.dir)
	if errors.Is(err, lab.ErrNotUp) {
		return StatusReport{Dir: l.dir}, nil
	}
	if err != nil {
		return nil, err
	}
	return StatusReport{Up: true, Status: st, Dir: l.dir}, nil
}

// StatusReport is the local lab's status: its record as the runtime wrote
// it (`status -o json` is lab.Status), or {"phase":"NotRunning"}.
type StatusReport struct {
	Up     bool
	Status lab.Status
	Dir    string
}

// MarshalJSON is lab.Status, or {"phase":"NotRunning"} when the lab is not
// up.
func (r StatusReport) MarshalJSON() ([]byte, error) {
	if !r.Up {
		return json.Marshal(map[string]string{"phase": "NotRunning"})
	}
	return json.Marshal(r.Status)
}

// Print writes the pods' table and the lab's URLs.
func (r StatusReport) Print(out io.Writer) error {
	if !r.Up {
		_, err := fmt.Fprintln(out, "No lab is running (start one with `meshlab up`).")
		return err
	}
	st := r.Status
	w := tabwriter.NewWriter(out, 0, 4, 3, ' ', 0)
	fmt.Fprintf(w, "Lab: %s (runtime %s, pid %d, up %s)\n\n", st.Phase, st.Runtime, st.PID, time.Since(st.StartedAt).Round(time.Second))
	fmt.Fprintln(w, "NAMESPACE\tNAME\tREADY\tSTATUS\tRESTARTS\tIP")
	for _, p := range st.Pods {
		running, restarts := 0, 0
		for _, ct := range p.Containers {
			if ct.Running {
				running++
			}
			restarts += ct.Restarts
		}
		ready := fmt.Sprintf("%d/%d", running, len(p.Containers))
		if !p.Ready {
			ready = fmt.Sprintf("0/%d", len(p.Containers))
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\n", p.Namespace, p.Name, ready, p.Phase, restarts, p.IP)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out)
	printURLs(out, st, r.Dir)
	return nil
}
