package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshlab/meshlab/controlplane"
	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/controlplane/registry"
	"github.com/meshlab/meshlab/controlplane/xds"
	"github.com/meshlab/meshlab/lab"
)

// cpChildArg runs one control-plane scenario in a process of its own, so
// that its memory is the control plane's and not the harness's.
const cpChildArg = "__controlplane"

// controlPlaneBench runs apply→ACK with 10, 100 and 1,000 simulated proxies
// and the 1,000-service scale scenario, each in a child process.
func (h *harness) controlPlaneBench(ctx context.Context) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cp := &ControlPlane{}
	run := func(args ...string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, self, append([]string{cpChildArg}, args...)...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("control-plane scenario %v: %w\n%s", args, err, tailText(errb.String(), 10))
		}
		return out.Bytes(), nil
	}
	rounds := strconv.Itoa(h.cpRounds)
	h.cmd("go run ./scripts/bench -sections controlplane  # controlplane.New/Serve on loopback, go-control-plane ADS client stubs")
	for _, n := range []int{10, 100, 1000} {
		b, err := run("-scenario", "push", "-proxies", strconv.Itoa(n), "-rounds", rounds)
		if err != nil {
			return err
		}
		var r PushResult
		if err := json.Unmarshal(b, &r); err != nil {
			return err
		}
		slog.Info("apply→ACK", "proxies", n, "p50ms", r.P50ms, "p99ms", r.P99ms, "rssMB", r.RSSMB)
		cp.Push = append(cp.Push, r)
		h.res.ControlPlane = cp
	}
	b, err := run("-scenario", "scale", "-services", "1000", "-endpoints", "10", "-rounds", rounds)
	if err != nil {
		return err
	}
	var s ScaleResult
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	slog.Info("scale", "services", s.Services, "endpoints", s.Endpoints, "buildP50ms", s.BuildP50ms, "rssMB", s.RSSMB)
	cp.Scale = &s
	return nil
}

func cpChild(args []string) error {
	fs := flag.NewFlagSet(cpChildArg, flag.ContinueOnError)
	scenario := fs.String("scenario", "push", "push or scale")
	proxies := fs.Int("proxies", 10, "simulated proxies (push)")
	rounds := fs.Int("rounds", 5, "applies")
	services := fs.Int("services", 1000, "services (scale)")
	endpoints := fs.Int("endpoints", 10, "endpoints per service (scale)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e, err := startControlPlane(ctx)
	if err != nil {
		return err
	}
	defer e.stop()
	var res any
	switch *scenario {
	case "push":
		res, err = e.push(ctx, *proxies, *rounds)
	case "scale":
		res, err = e.scale(ctx, *services, *endpoints, *rounds)
	default:
		err = fmt.Errorf("unknown scenario %q", *scenario)
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// cpEnv is a control plane served in this process on loopback.
type cpEnv struct {
	dir     string
	xdsAddr string
	api     *api.Client
	cancel  context.CancelFunc
	done    chan struct{}
	srv     *controlplane.Server
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String(), nil
}

func startControlPlane(ctx context.Context) (*cpEnv, error) {
	dir, err := os.MkdirTemp("", "meshlab-bench-cp-")
	if err != nil {
		return nil, err
	}
	x, err1 := freePort()
	hp, err2 := freePort()
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	srv, err := controlplane.New(controlplane.Options{StateDir: dir, XDSAddr: x, HTTPAddr: hp,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return nil, err
	}
	// Started without a token file, the control plane made one there.
	tok, err := lab.ReadAPIToken(dir)
	if err != nil {
		_ = srv.Close() // a throwaway store; the token error is the one to report
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	e := &cpEnv{dir: dir, xdsAddr: x, api: api.NewClient(hp), cancel: cancel, done: make(chan struct{}), srv: srv}
	e.api.Token = tok
	go func() {
		defer close(e.done)
		if err := srv.Serve(ctx); err != nil {
			slog.Error("control plane", "err", err)
		}
	}()
	for i := 0; ; i++ {
		if _, err := e.api.Version(ctx); err == nil {
			return e, nil
		} else if i == 200 {
			e.stop()
			return nil, fmt.Errorf("the control plane did not answer: %w", err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func (e *cpEnv) stop() {
	e.cancel()
	<-e.done
	// The store is a throwaway in e.dir, removed next; only a directory
	// left behind is worth a word.
	_ = e.srv.Close()
	if err := os.RemoveAll(e.dir); err != nil {
		slog.Warn("remove the bench control plane's state", "dir", e.dir, "err", err)
	}
}

// fill registers services with endpoints each through the API, 8 at a time.
func (e *cpEnv) fill(ctx context.Context, services, endpoints int) error {
	type job func() error
	jobs := make(chan job)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if err := j(); err != nil {
					select {
					case errc <- err:
					default:
					}
				}
			}
		}()
	}
	for i := 0; i < services; i++ {
		ns, name := fmt.Sprintf("ns%d", i%10), fmt.Sprintf("svc%d", i)
		jobs <- func() error {
			_, err := e.api.PutService(ctx, registry.Service{Name: name, Namespace: ns, Selector: map[string]string{"app": name},
				Ports: []registry.Port{{Name: "http", Port: 8080}}})
			return err
		}
	}
	for i := 0; i < services; i++ {
		for j := 0; j < endpoints; j++ {
			ns, name := fmt.Sprintf("ns%d", i%10), fmt.Sprintf("svc%d", i)
			n := i*endpoints + j
			ip := netip.AddrFrom4([4]byte{198, 18, byte(n >> 8), byte(n)})
			jobs <- func() error {
				return e.api.PutWorkload(ctx, registry.Workload{Name: fmt.Sprintf("%s-%d", name, j), Namespace: ns, IP: ip,
					Labels: map[string]string{"app": name, "version": "v1"}, ServiceAccount: "default", Ready: true})
			}
		}
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errc:
		return fmt.Errorf("fill the registry: %w", err)
	default:
		return nil
	}
}

// xdsTypes are what a sidecar subscribes to, as Envoy does over ADS.
var xdsTypes = []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType}

// tracker follows what every simulated proxy ACKed and says when all of
// them have ACKed a store revision.
type tracker struct {
	mu      sync.Mutex
	revs    [][]int64 // per proxy, per type: the revision ACKed, -1 none
	counted []bool
	target  int64
	reached int
	done    chan time.Time
}

func newTracker(n int) *tracker {
	t := &tracker{revs: make([][]int64, n), counted: make([]bool, n), target: -1}
	for i := range t.revs {
		t.revs[i] = []int64{-1, -1, -1, -1}
	}
	return t
}

func (t *tracker) ack(proxy, typ int, rev int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.revs[proxy][typ] = rev
	t.check(proxy)
}

// check counts proxy once it has every type at the target; t.mu held.
func (t *tracker) check(proxy int) {
	if t.done == nil || t.counted[proxy] {
		return
	}
	for _, r := range t.revs[proxy] {
		if r < t.target {
			return
		}
	}
	t.counted[proxy] = true
	t.reached++
	if t.reached == len(t.revs) {
		t.done <- time.Now()
		t.done = nil
	}
}

// arm starts waiting for every proxy to ACK target; the channel gets the
// time the last one did.
func (t *tracker) arm(target int64) <-chan time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	done := make(chan time.Time, 1)
	t.target, t.reached, t.done = target, 0, done
	for i := range t.counted {
		t.counted[i] = false
	}
	for i := range t.revs {
		t.check(i)
	}
	return done
}

// revOf reads the store revision out of a version "<rev>.<gen>".
func revOf(v string) int64 {
	head, _, _ := strings.Cut(v, ".")
	n, err := strconv.ParseInt(head, 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// simulate connects n ADS clients, each on its own connection as separate
// Envoys would be; they ACK everything until ctx ends.
func (e *cpEnv) simulate(ctx context.Context, n int, t *tracker, wg *sync.WaitGroup) error {
	for i := 0; i < n; i++ {
		conn, err := grpc.NewClient(e.xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return fmt.Errorf("dial the control plane: %w", err)
		}
		id := fmt.Sprintf("sidecar~198.18.%d.%d~sim-%d.bench~bench.svc.cluster.local", 100+i/250, i%250+1, i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { _ = conn.Close() }()
			// simProxy returns only when its stream breaks, which ctx
			// ending does too: only a break before then is news.
			err := simProxy(ctx, conn, id, i, t)
			if ctx.Err() == nil {
				slog.Error("simulated proxy", "id", id, "err", err)
			}
		}()
	}
	return nil
}

// simProxy is one ADS client that ACKs everything; it returns only when its
// stream fails, with the error that broke it.
func simProxy(ctx context.Context, conn *grpc.ClientConn, id string, idx int, t *tracker) error {
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	md, _ := structpb.NewStruct(map[string]any{"LABELS": map[string]any{"app": "sim"}, "NAMESPACE": "bench"})
	node := &corev3.Node{Id: id, Cluster: "sim.bench", Metadata: md}
	for _, typ := range xdsTypes {
		if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: typ}); err != nil {
			return err
		}
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resp.GetTypeUrl(),
			VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
			return err
		}
		for ti, typ := range xdsTypes {
			if typ == resp.GetTypeUrl() {
				t.ack(idx, ti, revOf(resp.GetVersionInfo()))
			}
		}
	}
}

func (e *cpEnv) registerSmallMesh(ctx context.Context) error { return e.fill(ctx, 10, 2) }

// applyRound applies a VirtualService whose timeout differs each round, so
// each apply is a new revision, and returns the time to the last ACK.
func (e *cpEnv) applyRound(ctx context.Context, t *tracker, round int) (time.Duration, error) {
	v, err := e.api.Version(ctx)
	if err != nil {
		return 0, err
	}
	doc := fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bench-svc0
  namespace: ns0
spec:
  hosts: [svc0.ns0.svc.cluster.local]
  http:
  - timeout: %ds
    route:
    - destination:
        host: svc0.ns0.svc.cluster.local
`, round+1)
	docs, err := api.Documents("bench-vs.yaml", []byte(doc), "ns0")
	if err != nil {
		return 0, err
	}
	want := int64(v.Revision) + 1
	done := t.arm(want)
	start := time.Now()
	r, err := e.api.Apply(ctx, api.ApplyRequest{Documents: docs})
	if err != nil {
		return 0, err
	}
	if int64(r.Revision) != want {
		// Someone else committed in between: wait for ours instead.
		done = t.arm(int64(r.Revision))
	}
	select {
	case at := <-done:
		return at.Sub(start), nil
	case <-time.After(60 * time.Second):
		return 0, fmt.Errorf("not every proxy ACKed revision %d within 60s", r.Revision)
	}
}

func (e *cpEnv) push(ctx context.Context, n, rounds int) (PushResult, error) {
	res := PushResult{Proxies: n, Rounds: rounds}
	if err := e.registerSmallMesh(ctx); err != nil {
		return res, err
	}
	v, err := e.api.Version(ctx)
	if err != nil {
		return res, err
	}
	t := newTracker(n)
	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	done := t.arm(int64(v.Revision))
	start := time.Now()
	if err := e.simulate(sctx, n, t, &wg); err != nil {
		return res, err
	}
	select {
	case at := <-done:
		res.ConnectS = round3(at.Sub(start).Seconds())
	case <-time.After(120 * time.Second):
		return res, fmt.Errorf("%d simulated proxies did not all get their config within 120s", n)
	}
	for i := 0; i < rounds; i++ {
		d, err := e.applyRound(ctx, t, i)
		if err != nil {
			return res, err
		}
		res.Samples = append(res.Samples, round3(float64(d)/1e6))
	}
	res.P50ms, res.P99ms = pcts(res.Samples)
	rss, _ := selfMem()
	res.RSSMB = round1(rss)
	return res, nil
}

func (e *cpEnv) scale(ctx context.Context, services, endpoints, rounds int) (ScaleResult, error) {
	res := ScaleResult{Services: services, Endpoints: services * endpoints, Rounds: rounds,
		ClientsShare: "one simulated sidecar connected; memory is the whole process (control plane and that client)"}
	start := time.Now()
	if err := e.fill(ctx, services, endpoints); err != nil {
		return res, err
	}
	res.FillSeconds = round3(time.Since(start).Seconds())
	v, err := e.api.Version(ctx)
	if err != nil {
		return res, err
	}
	t := newTracker(1)
	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	done := t.arm(int64(v.Revision))
	if err := e.simulate(sctx, 1, t, &wg); err != nil {
		return res, err
	}
	select {
	case <-done:
	case <-time.After(120 * time.Second):
		return res, fmt.Errorf("the simulated proxy did not get its config within 120s")
	}
	for i := 0; i < rounds; i++ {
		d, err := e.applyRound(ctx, t, i)
		if err != nil {
			return res, err
		}
		res.Samples = append(res.Samples, round3(float64(d)/1e6))
	}
	res.PushP50ms, res.PushP99ms = pcts(res.Samples)

	// Translation alone, for one sidecar of the mesh.
	reg, err := e.api.Registry(ctx)
	if err != nil {
		return res, err
	}
	in := xds.Input{Registry: registry.Snapshot{Services: reg.Services, Workloads: reg.Workloads}}
	w := reg.Workloads[0]
	p := xds.Proxy{Type: xds.SidecarProxy, ID: "sidecar~" + w.IP.String() + "~" + w.Name + "." + w.Namespace + "~" + w.Namespace + ".svc.cluster.local",
		IP: w.IP, Name: w.Name, Namespace: w.Namespace}
	var builds []float64
	for i := 0; i < rounds; i++ {
		s := time.Now()
		r, err := xds.Build(in, p)
		if err != nil {
			return res, fmt.Errorf("build: %w", err)
		}
		builds = append(builds, round3(float64(time.Since(s))/1e6))
		res.Resources = 0
		for _, rs := range r {
			res.Resources += len(rs)
		}
	}
	res.BuildP50ms, res.BuildP99ms = pcts(builds)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.HeapInuseMB = round1(float64(ms.HeapInuse) / 1e6)
	rss, hwm := selfMem()
	res.RSSMB, res.PeakRSSMB = round1(rss), round1(hwm)
	return res, nil
}

func selfMem() (rss, hwm float64) {
	rss, hwm, _, _ = memMB(os.Getpid())
	return rss, hwm
}

// pcts is the p50 and p99 of samples (nearest rank).
func pcts(v []float64) (float64, float64) {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return quantile(s, 0.5), quantile(s, 0.99)
}
