// Package local owns the local runtime: a small pod runtime for this binary's
// own pods. A pod is a network namespace with an address on the host bridge;
// its containers are supervised processes started inside it. It does for the
// lab what kubelet, a CNI bridge plugin and kube-proxy do for a cluster, and
// it publishes the gateway and the control plane API on the host's loopback.
//
// Run is the lab's runtime process (the daemon `up` starts): it brings the
// lab up, records its state for `status`, keeps it running, and takes it all
// down again when its context ends.
package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"sort"

	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshlab/meshlab/controlplane"
	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/controlplane/registry"
	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/podnet"
	"github.com/meshlab/meshlab/lab/process"
	"github.com/meshlab/meshlab/lab/values"
)

// Options configure the local runtime.
type Options struct {
	StateDir string
	// Self is the meshlab binary every container runs.
	Self string
	// BookinfoNamespace is where bookinfo goes ("default").
	BookinfoNamespace string
	// Bookinfo and BookinfoGateway are the manifests to run and the Istio
	// config applied with them.
	Bookinfo, BookinfoGateway []byte
	// NoBookinfo leaves bookinfo out: the lab is ready once its pods are.
	NoBookinfo bool
	// HostAddr is the host address ports are published on (127.0.0.1).
	HostAddr string
	// HTTPPort and HTTPSPort publish the gateway's 8080 and 8443; APIPort the
	// control plane's 15014.
	HTTPPort, HTTPSPort, APIPort int
	// WorkloadCertTTL, when set, is given to the control plane
	// (--workload-cert-ttl) and to every proxy (--secret-ttl), so the
	// certificates really live that long: a proxy asks for its own
	// SECRET_TTL, which the CA honours over its default.
	WorkloadCertTTL time.Duration
	// MeshConfig is the mesh config (MeshConfig YAML) applied as the
	// istio ConfigMap once istiod is up, before any proxy starts: what a
	// proxy takes at start (its ProxyConfig) is there from the first.
	MeshConfig string
	// Addons are the telemetry components (zipkin, prometheus) and the
	// console (kiali) started in istio-system once the gateway is up, in
	// this order.
	Addons []Addon
	Logger *slog.Logger
}

// Network is the local runtime's pod network.
var Network = podnet.Network{
	Bridge:      "mlab0",
	Prefix:      netip.MustParsePrefix("198.18.0.0/16"),
	Gateway:     netip.MustParseAddr("198.18.0.1"),
	NetnsPrefix: "mlab-",
	// Beside OwnerFile: the sysctls are the machine's, as the pod network
	// is, and /run is emptied at boot, when they are reset too.
	SysctlRecord: "/run/meshlab/sysctls.json",
}

// Ports of the mesh, as Istio numbers them.
const (
	ProxyUID = 1337
	XDSPort  = 15010
	// XDSTLSPort is istiod's 15012: the CSR API and xDS over mutual TLS,
	// where every proxy of the lab connects.
	XDSTLSPort   = 15012
	MonitorPort  = 15014
	ReadyPort    = 15021
	GatewayHTTP  = 8080
	GatewayHTTPS = 8443
)

// Runtime is the running lab.
type Runtime struct {
	opts Options
	log  *slog.Logger
	cp   *api.Client

	mu       sync.Mutex
	statusMu sync.Mutex // serialises writeStatus
	status   lab.Status
	pods     []*pod
	nextIP   netip.Addr
	istiodIP netip.Addr
	uids     uint32 // app uids handed out, from AppUIDBase
	freeIPs  []netip.Addr
	// wake asks the controller for a pass; reconciled is the store
	// revision its last pass read.
	wake       chan struct{}
	dns        *clusterDNS // the cluster DNS for pods without a sidecar
	nodePorts  *nodePorts  // NodePort Services, published on the host
	reconciled uint64
	applied    uint64          // the last revision up applied
	waitFor    map[string]bool // namespace/name of the Deployments up waits for
	synced     bool

	wg sync.WaitGroup // every goroutine the runtime starts
}

type pod struct {
	lab.Pod
	serviceAccount string
	noSidecar      bool // sidecar.istio.io/inject: "false"
	containers     []*process.Supervisor
	names          []string
	logs           []string
	ids            []identity
	probe          *probe
	// owned pods are the controller's, made from a stored Deployment;
	// the control plane and gateway are the runtime's own (static pods).
	owned  bool
	cancel context.CancelFunc // ends the pod's readiness watch
	failed string             // why it could not start
	// grace is the template's terminationGracePeriodSeconds (nil: the
	// default), at most process.DefaultGrace, so down stays bounded.
	grace *time.Duration
}

func (p *pod) graceOpt() []process.Option {
	if p.grace == nil {
		return nil
	}
	return []process.Option{process.WithGrace(*p.grace)}
}

type probe struct {
	port uint16
	path string
}

// Run brings the lab up and keeps it up until ctx ends, then takes it down.
// The error is the first step that failed; the lab is torn down either way.
func Run(ctx context.Context, opts Options) (err error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	r := &Runtime{
		opts:   opts,
		log:    opts.Logger,
		cp:     api.NewClient(fmt.Sprintf("%s:%d", opts.HostAddr, opts.APIPort)),
		nextIP: Network.Gateway.Next(),
		wake:   make(chan struct{}, 1),
		status: lab.Status{
			Runtime:   "local",
			Phase:     lab.PhaseStarting,
			PID:       os.Getpid(),
			StartedAt: time.Now(),
			URLs: lab.URLs{
				ProductPage:  fmt.Sprintf("http://%s:%d/productpage", opts.HostAddr, opts.HTTPPort),
				Gateway:      fmt.Sprintf("http://%s:%d/", opts.HostAddr, opts.HTTPPort),
				GatewayTLS:   fmt.Sprintf("https://%s:%d/", opts.HostAddr, opts.HTTPSPort),
				ControlPlane: fmt.Sprintf("http://%s:%d/", opts.HostAddr, opts.APIPort),
			},
		},
	}
	if err := claim(opts.StateDir); err != nil {
		return err
	}
	// A new credential for every lab: a token read by someone while an
	// earlier lab ran opens nothing now.
	tokenFile := filepath.Join(opts.StateDir, lab.APITokenFile)
	token, err := controlplane.WriteTokenFile(tokenFile)
	if err != nil {
		release(opts.StateDir)
		return err
	}
	r.cp.Token = token
	runCtx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		r.teardown()
		r.wg.Wait()
		if err := os.Remove(tokenFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			r.log.Warn("remove the API token", "err", err)
		}
		release(opts.StateDir)
	}()
	if err := r.up(runCtx); err != nil {
		r.mu.Lock()
		r.status.Phase = lab.PhaseFailed
		r.status.Error = err.Error()
		r.mu.Unlock()
		r.writeStatus()
		return err
	}
	r.mu.Lock()
	r.status.Phase = lab.PhaseRunning
	r.mu.Unlock()
	r.writeStatus()

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			r.mu.Lock()
			r.status.Phase = lab.PhaseStopping
			r.mu.Unlock()
			r.writeStatus()
			return nil
		case <-tick.C:
			r.writeStatus()
		}
	}
}

func (r *Runtime) up(ctx context.Context) error {
	if err := r.step(ctx, "network", fmt.Sprintf("bridge %s, pods in %s", Network.Bridge, Network.Prefix), func() error {
		if err := Cleanup(ctx); err != nil {
			return err
		}
		if err := Network.EnsureBridge(ctx); err != nil {
			return err
		}
		host, err := netip.ParseAddr(r.opts.HostAddr)
		if err != nil {
			return fmt.Errorf("host address %q: %w", r.opts.HostAddr, err)
		}
		r.nodePorts = newNodePorts([]netip.Addr{host, Network.Gateway}, r.log)
		return r.startClusterDNS(ctx)
	}); err != nil {
		return err
	}
	if err := r.step(ctx, "istiod", "", func() error { return r.startControlPlane(ctx) }); err != nil {
		return err
	}
	if r.opts.MeshConfig != "" {
		if err := r.step(ctx, "mesh config", "configmap istio-system/istio", func() error {
			cm, err := values.ConfigMap(r.opts.MeshConfig)
			if err != nil {
				return err
			}
			return r.applyManifest(ctx, "mesh config", cm)
		}); err != nil {
			return err
		}
	}
	if err := r.step(ctx, "istio-ingressgateway", fmt.Sprintf("%s:%d", r.opts.HostAddr, r.opts.HTTPPort), func() error {
		return r.startGateway(ctx)
	}); err != nil {
		return err
	}
	for _, a := range r.opts.Addons {
		if err := r.step(ctx, a.Name, r.addonURL(a), func() error { return r.startAddon(ctx, a) }); err != nil {
			return err
		}
		url := r.addonURL(a)
		r.mu.Lock()
		switch a.Name {
		case "prometheus":
			r.status.URLs.Prometheus = url
		case "zipkin":
			r.status.URLs.Zipkin = url
		case "kiali":
			r.status.URLs.Kiali = url
		}
		r.mu.Unlock()
	}
	r.runController(ctx)
	if !r.opts.NoBookinfo {
		ns := r.opts.BookinfoNamespace
		if err := r.step(ctx, "bookinfo", "namespace "+ns, func() error { return r.applyBookinfo(ctx) }); err != nil {
			return err
		}
	}
	return r.step(ctx, "ready", r.status.URLs.ProductPage, func() error { return r.waitReady(ctx) })
}

// step runs fn as a named step of `up`, recording it for the progress display.
func (r *Runtime) step(ctx context.Context, name, detail string, fn func() error) error {
	start := time.Now()
	r.mu.Lock()
	r.status.Steps = append(r.status.Steps, lab.Step{Name: name, Detail: detail})
	i := len(r.status.Steps) - 1
	r.mu.Unlock()
	r.writeStatus()
	err := fn()
	r.mu.Lock()
	r.status.Steps[i].Elapsed = time.Since(start)
	if err != nil {
		r.status.Steps[i].Error = err.Error()
	} else {
		r.status.Steps[i].Done = true
	}
	r.mu.Unlock()
	r.writeStatus()
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func (r *Runtime) allocIP() netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.freeIPs); n > 0 {
		ip := r.freeIPs[0]
		r.freeIPs = r.freeIPs[1:]
		return ip
	}
	ip := r.nextIP
	r.nextIP = ip.Next()
	return ip
}

// podName names a Deployment's pod the way a ReplicaSet does:
// <deployment>-<template hash>-<random suffix>.
func podName(deployment, hash string) string {
	const alnum = "bcdfghjklmnpqrstvwxz2456789"
	suffix := make([]byte, 5)
	for i := range suffix {
		suffix[i] = alnum[rand.IntN(len(alnum))]
	}
	return fmt.Sprintf("%s-%s-%s", deployment, hash, suffix)
}

// addPod creates a pod's network namespace and records it.
func (r *Runtime) addPod(ctx context.Context, namespace, name, deployment string, labels map[string]string) (*pod, error) {
	ip := r.allocIP()
	np, err := Network.AddPod(ctx, namespace+"-"+name, ip)
	if err != nil {
		return nil, fmt.Errorf("create pod %s/%s: %w", namespace, name, err)
	}
	p := &pod{Pod: lab.Pod{Namespace: namespace, Name: name, Deployment: deployment, Labels: labels,
		IP: ip.String(), Netns: np.NetnsPath, Phase: "Pending", CreatedAt: time.Now().UTC()}}
	r.mu.Lock()
	r.pods = append(r.pods, p)
	r.mu.Unlock()
	return p, nil
}

// startContainer starts one supervised process in a pod, as id, in dir
// ("" is /), with env added to the container's environment.
func (r *Runtime) startContainer(ctx context.Context, p *pod, name string, argv, env []string, id identity, dir string, mounts ...process.Mount) error {
	if len(argv) > 0 && (argv[0] == "/meshlab" || argv[0] == "meshlab") {
		argv = append([]string{r.opts.Self}, argv[1:]...)
	}
	logPath := filepath.Join(r.opts.StateDir, lab.LogsDir, p.Namespace, p.Name, name+".log")
	// 0700: no pod may read another's logs (nor its own, as in Kubernetes,
	// where logs live on the node).
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		return fmt.Errorf("create log dir of %s/%s: %w", p.Namespace, p.Name, err)
	}
	if dir == "" {
		dir = "/"
	}
	sup := process.NewSupervisor(process.Spec{
		Name:      p.Namespace + "/" + p.Name + "/" + name,
		Argv:      argv,
		Env:       containerEnv(p, id, env),
		NetnsPath: p.Netns,
		Mounts:    mounts,
		UID:       id.uid,
		GID:       id.gid,
		Dir:       dir,
		LogPath:   logPath,
		Self:      r.opts.Self,
	}, append([]process.Option{process.WithLogger(r.log)}, p.graceOpt()...)...)
	if err := sup.Start(ctx); err != nil {
		return fmt.Errorf("start container %s of %s/%s: %w", name, p.Namespace, p.Name, err)
	}
	r.mu.Lock()
	p.containers = append(p.containers, sup)
	p.names = append(p.names, name)
	p.logs = append(p.logs, logPath)
	p.ids = append(p.ids, id)
	r.mu.Unlock()
	return nil
}

// shown is p as the lab's record shows it: with its containers' states
// and the phase they make; r.mu held.
func (p *pod) shown() lab.Pod {
	lp := p.Pod
	lp.Containers = nil
	running := len(p.containers) > 0
	for i, c := range p.containers {
		cs := c.State()
		lp.Containers = append(lp.Containers, lab.Container{Name: p.names[i], Running: cs.Running, PID: cs.PID,
			Restarts: cs.Restarts, LastExit: cs.LastExit, Log: p.logs[i], UID: p.ids[i].uid, GID: p.ids[i].gid})
		running = running && cs.Running
	}
	if running {
		lp.Phase = "Running"
	}
	if p.failed != "" {
		lp.Phase, lp.Message = "Failed", p.failed
	}
	return lp
}

// writeStatus records the lab's state for `status`, `exec` and `logs`.
func (r *Runtime) writeStatus() {
	// One writer at a time, so a later snapshot is never replaced by an
	// earlier one renamed after it.
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	r.mu.Lock()
	st := r.status
	st.Steps = append([]lab.Step(nil), r.status.Steps...)
	st.Pods = nil
	for _, p := range r.pods {
		st.Pods = append(st.Pods, p.shown())
	}
	r.mu.Unlock()
	sort.Slice(st.Pods, func(i, j int) bool {
		if st.Pods[i].Namespace != st.Pods[j].Namespace {
			return st.Pods[i].Namespace < st.Pods[j].Namespace
		}
		return st.Pods[i].Name < st.Pods[j].Name
	})
	if err := lab.WriteStatus(r.opts.StateDir, st); err != nil {
		r.log.Error("write status", "err", err)
	}
}

// StopTimeout bounds teardown: containers get their grace period, then
// SIGKILL, and the network is removed. down waits this long for the runtime
// before it kills it and cleans up itself.
const StopTimeout = process.DefaultGrace + cleanupTimeout + 5*time.Second

const cleanupTimeout = 15 * time.Second

// teardown stops every container, each draining within its grace period,
// then removes every pod network and the bridge. It is bounded: containers
// get a grace period, then SIGKILL.
func (r *Runtime) teardown() {
	ctx, cancel := context.WithTimeout(context.Background(), process.DefaultGrace+5*time.Second)
	defer cancel()
	r.mu.Lock()
	pods := r.pods
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range pods {
		for _, c := range p.containers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := c.Stop(ctx); err != nil {
					r.log.Warn("stop container", "err", err)
				}
			}()
		}
	}
	wg.Wait()
	if r.nodePorts != nil {
		r.nodePorts.Close()
	}
	ctx, cancelCleanup := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancelCleanup()
	if err := Cleanup(ctx); err != nil {
		r.log.Error("clean up the lab's network", "err", err)
	}
}

// Cleanup removes whatever a lab left on this machine: processes still in a
// lab network namespace (after a crash of the runtime), the namespaces, veths
// and the bridge. It is what `down` runs when the runtime is gone.
func Cleanup(ctx context.Context) error {
	var errs []error
	if err := killNetnsProcesses(Network.NetnsPrefix); err != nil {
		errs = append(errs, err)
	}
	if err := Network.Teardown(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (r *Runtime) workload(p *pod, ready bool) registry.Workload {
	r.mu.Lock()
	shown := toPod(p.shown(), nodeName(), time.Now())
	r.mu.Unlock()
	return registry.Workload{Name: p.Name, Namespace: p.Namespace, IP: netip.MustParseAddr(p.IP),
		Labels: p.Labels, ServiceAccount: p.serviceAccount, Ready: ready, Pod: registryPod(&shown)}
}

// registryPod is what the control plane's Prometheus service discovery
// reports of a pod: the pod as `meshlab get pods -o yaml` shows it.
func registryPod(pod *corev1.Pod) *registry.Pod {
	out := &registry.Pod{Annotations: pod.Annotations, Phase: string(pod.Status.Phase),
		NodeName: pod.Spec.NodeName, HostIP: pod.Status.HostIP, UID: string(pod.UID), Terminating: pod.DeletionTimestamp != nil}
	if ref := metav1.GetControllerOf(pod); ref != nil {
		out.ControllerKind, out.ControllerName = ref.Kind, ref.Name
	}
	containers := func(cs []corev1.Container, statuses []corev1.ContainerStatus) []registry.Container {
		var out []registry.Container
		for _, c := range cs {
			rc := registry.Container{Name: c.Name, Image: c.Image}
			for _, st := range statuses {
				if st.Name == c.Name {
					rc.ID = st.ContainerID
				}
			}
			for _, cp := range c.Ports {
				rc.Ports = append(rc.Ports, registry.ContainerPort{Name: cp.Name, ContainerPort: uint32(cp.ContainerPort), Protocol: string(cp.Protocol)})
			}
			out = append(out, rc)
		}
		return out
	}
	out.Containers = containers(pod.Spec.Containers, pod.Status.ContainerStatuses)
	out.InitContainers = containers(pod.Spec.InitContainers, pod.Status.InitContainerStatuses)
	return out
}
