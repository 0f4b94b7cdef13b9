package local

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/controlplane/registry"
	"github.com/meshlab/meshlab/dataplane/capture"
	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/manifest"
	"github.com/meshlab/meshlab/lab/podnet"
	"github.com/meshlab/meshlab/lab/process"
)

const systemNamespace = "istio-system"

// InjectAnnotation on a pod template set to "false" keeps the sidecar out of
// its pods, as it does in Istio.
const InjectAnnotation = "sidecar.istio.io/inject"

// optedOut applies Istio's rule for sidecar.istio.io/inject: a label set
// decides, else the annotation; everything else in the lab gets a sidecar.
func optedOut(labels, annotations map[string]string) bool {
	if v, ok := labels[InjectAnnotation]; ok {
		return v == "false"
	}
	return annotations[InjectAnnotation] == "false"
}

// running reports whether every container of p runs.
func (r *Runtime) running(p *pod) bool {
	r.mu.Lock()
	cs := append([]*process.Supervisor(nil), p.containers...)
	r.mu.Unlock()
	for _, c := range cs {
		if !c.State().Running {
			return false
		}
	}
	return len(cs) > 0
}

func (r *Runtime) startControlPlane(ctx context.Context) error {
	labels := map[string]string{"app": "istiod", "istio": "pilot"}
	p, err := r.addPod(ctx, systemNamespace, podName("istiod"), "istiod", labels)
	if err != nil {
		return err
	}
	p.serviceAccount = "istiod"
	r.istiodIP = netip.MustParseAddr(p.IP)
	// The lab's own control plane keeps root: it owns the store in the
	// state directory, which no pod may read.
	cpDir := filepath.Join(r.opts.StateDir, lab.ControlPlaneDir)
	if err := os.MkdirAll(cpDir, 0o700); err != nil {
		return fmt.Errorf("create the control plane's state dir: %w", err)
	}
	if err := os.Chmod(cpDir, 0o700); err != nil {
		return fmt.Errorf("close the control plane's state dir: %w", err)
	}
	argv := []string{r.opts.Self, "controlplane",
		"--state-dir", cpDir,
		"--xds-addr", fmt.Sprintf(":%d", XDSPort),
		"--http-addr", fmt.Sprintf(":%d", MonitorPort),
		"--api-token-file", filepath.Join(r.opts.StateDir, lab.APITokenFile)}
	if err := r.startContainer(ctx, p, "discovery", argv, nil, identity{}, ""); err != nil {
		return err
	}
	if err := r.publish(ctx, r.opts.APIPort, netip.AddrPortFrom(r.istiodIP, MonitorPort)); err != nil {
		return err
	}
	ready := fmt.Sprintf("http://%s:%d%s", p.IP, MonitorPort, api.PathReady)
	if err := waitHTTP(ctx, ready, 30*time.Second); err != nil {
		return fmt.Errorf("control plane did not become ready (see %s): %w", p.logs[0], err)
	}
	p.Ready = true
	// The store outlives labs; the pods of the last one are gone.
	if err := r.cp.DeleteAllWorkloads(ctx); err != nil {
		return fmt.Errorf("forget the pods of an earlier lab: %w", err)
	}
	// The control plane's own Service, so pods can name istiod as they do in Istio.
	_, err = r.cp.PutService(ctx, registry.Service{Name: "istiod", Namespace: systemNamespace,
		Selector: map[string]string{"app": "istiod"},
		Ports:    []registry.Port{{Name: "grpc-xds", Port: XDSPort}, {Name: "http-monitoring", Port: MonitorPort}}})
	if err != nil {
		return err
	}
	return r.cp.PutWorkload(ctx, r.workload(p, true))
}

func (r *Runtime) startGateway(ctx context.Context) error {
	labels := map[string]string{"app": "istio-ingressgateway", "istio": "ingressgateway"}
	p, err := r.addPod(ctx, systemNamespace, podName("istio-ingressgateway"), "istio-ingressgateway", labels)
	if err != nil {
		return err
	}
	p.serviceAccount = "istio-ingressgateway-service-account"
	p.probe = &probe{port: ReadyPort, path: "/healthz/ready"}
	if err := r.startContainer(ctx, p, "istio-proxy", r.proxyArgv("gateway", p), nil, identity{ProxyUID, ProxyUID}, ""); err != nil {
		return err
	}
	_, err = r.cp.PutService(ctx, registry.Service{Name: "istio-ingressgateway", Namespace: systemNamespace,
		Selector: map[string]string{"istio": "ingressgateway"}, Labels: labels,
		Ports: []registry.Port{{Name: "http2", Port: 80, TargetPort: GatewayHTTP}, {Name: "https", Port: 443, TargetPort: GatewayHTTPS}}})
	if err != nil {
		return err
	}
	if err := r.cp.PutWorkload(ctx, r.workload(p, false)); err != nil {
		return err
	}
	ip := netip.MustParseAddr(p.IP)
	if err := r.publish(ctx, r.opts.HTTPPort, netip.AddrPortFrom(ip, GatewayHTTP)); err != nil {
		return err
	}
	if err := r.publish(ctx, r.opts.HTTPSPort, netip.AddrPortFrom(ip, GatewayHTTPS)); err != nil {
		return err
	}
	r.watchReadiness(ctx, p)
	return nil
}

// proxyArgv starts a sidecar or gateway with what Istio's injector gives
// istio-proxy through the downward API: the pod's identity, its
// deployment as the workload and its labels, which the proxy's metrics
// and metadata exchange report.
func (r *Runtime) proxyArgv(mode string, p *pod) []string {
	argv := []string{r.opts.Self, mode,
		"--discovery-address", fmt.Sprintf("%s:%d", r.istiodIP, XDSPort),
		"--pod", p.Name, "--namespace", p.Namespace, "--ip", p.IP}
	if p.serviceAccount != "" {
		argv = append(argv, "--service-account", p.serviceAccount)
	}
	if p.Deployment != "" {
		argv = append(argv, "--workload", p.Deployment)
	}
	for _, k := range slices.Sorted(maps.Keys(p.Labels)) {
		argv = append(argv, "--label", k+"="+p.Labels[k])
	}
	return argv
}

func (r *Runtime) bookinfoObjects() (manifest.Objects, error) {
	return manifest.Parse("samples/bookinfo/bookinfo.yaml", r.opts.Bookinfo, r.opts.BookinfoNamespace)
}

func (r *Runtime) startBookinfo(ctx context.Context, objs manifest.Objects) error {
	ns := r.opts.BookinfoNamespace
	if err := r.registerServices(ctx, objs); err != nil {
		return err
	}
	docs, err := api.Documents("samples/bookinfo/networking/bookinfo-gateway.yaml", r.opts.BookinfoGateway, ns)
	if err != nil {
		return err
	}
	if _, err := r.cp.Apply(ctx, api.ApplyRequest{Documents: docs}); err != nil {
		return fmt.Errorf("apply the bookinfo gateway: %w", err)
	}
	return r.startDeployments(ctx, objs)
}

// startObjects runs the Services and Deployments of an extra manifest the
// way bookinfo's run; its other kinds are left to `meshlab apply`.
func (r *Runtime) startObjects(ctx context.Context, objs manifest.Objects) error {
	if err := r.registerServices(ctx, objs); err != nil {
		return err
	}
	return r.startDeployments(ctx, objs)
}

// registerServices puts a manifest's Services in the registry, which gives
// each its VIP, and records them for `status`.
func (r *Runtime) registerServices(ctx context.Context, objs manifest.Objects) error {
	for _, svc := range objs.Services {
		s := registry.Service{Name: svc.Name, Namespace: svc.Namespace, Selector: svc.Spec.Selector, Labels: svc.Labels}
		for _, sp := range svc.Spec.Ports {
			port := registry.Port{Name: sp.Name, Port: uint32(sp.Port), Protocol: string(sp.Protocol)}
			if sp.AppProtocol != nil {
				port.AppProtocol = *sp.AppProtocol
			}
			if sp.TargetPort.IntValue() > 0 {
				port.TargetPort = uint32(sp.TargetPort.IntValue())
			}
			s.Ports = append(s.Ports, port)
		}
		out, err := r.cp.PutService(ctx, s)
		if err != nil {
			return fmt.Errorf("register service %s/%s: %w", svc.Namespace, svc.Name, err)
		}
		r.mu.Lock()
		info := lab.ServiceInfo{Namespace: out.Namespace, Name: out.Name, VIP: out.VIP.String()}
		for _, p := range out.Ports {
			info.Ports = append(info.Ports, p.Port)
		}
		r.status.Services = append(r.status.Services, info)
		r.mu.Unlock()
	}
	return nil
}

func (r *Runtime) startDeployments(ctx context.Context, objs manifest.Objects) error {
	for _, d := range objs.Deployments {
		replicas := 1
		if d.Spec.Replicas != nil {
			replicas = int(*d.Spec.Replicas)
		}
		for range replicas {
			if err := r.startDeploymentPod(ctx, d); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *Runtime) startDeploymentPod(ctx context.Context, d appsv1.Deployment) error {
	labels := map[string]string{}
	for k, v := range d.Spec.Template.Labels {
		labels[k] = v
	}
	p, err := r.addPod(ctx, d.Namespace, podName(d.Name), d.Name, labels)
	if err != nil {
		return err
	}
	p.serviceAccount = d.Spec.Template.Spec.ServiceAccountName
	if p.serviceAccount == "" {
		p.serviceAccount = "default"
	}
	// As Istio's injector, the pod template's label or annotation opts a pod
	// out (the label wins): no capture rules, no istio-proxy.
	p.noSidecar = optedOut(d.Spec.Template.Labels, d.Spec.Template.Annotations)
	if !p.noSidecar {
		// istio-init: the capture rules go in before any container starts, so no
		// connection of the app escapes the sidecar.
		opts := capture.DefaultOptions()
		if err := podnet.Do(p.Netns, func() error { return capture.Install(opts) }); err != nil {
			return fmt.Errorf("istio-init of %s/%s: %w", p.Namespace, p.Name, err)
		}
		if err := r.startContainer(ctx, p, "istio-proxy", r.proxyArgv("proxy", p), nil, identity{ProxyUID, ProxyUID}, ""); err != nil {
			return err
		}
	}
	// One uid of the lab's per pod, for the containers the manifest names
	// none for: as in Kubernetes, a pod's containers share what they run as.
	def := r.allocUID()
	for i, c := range d.Spec.Template.Spec.Containers {
		argv := append(append([]string{}, c.Command...), c.Args...)
		if len(argv) == 0 {
			return fmt.Errorf("deployment %s/%s container %s: the local runtime runs a container's command; give it `command:`", d.Namespace, d.Name, c.Name)
		}
		id, err := appIdentity(d.Spec.Template.Spec, i, def)
		if err != nil {
			return fmt.Errorf("deployment %s/%s: %w", d.Namespace, d.Name, err)
		}
		if err := r.startContainer(ctx, p, c.Name, argv, envOf(c), id, c.WorkingDir); err != nil {
			return err
		}
		if p.probe == nil && c.ReadinessProbe != nil && c.ReadinessProbe.HTTPGet != nil {
			p.probe = &probe{port: uint16(c.ReadinessProbe.HTTPGet.Port.IntValue()), path: c.ReadinessProbe.HTTPGet.Path}
		}
	}
	if err := r.cp.PutWorkload(ctx, r.workload(p, false)); err != nil {
		return err
	}
	r.watchReadiness(ctx, p)
	return nil
}

func envOf(c corev1.Container) []string {
	var env []string
	for _, e := range c.Env {
		env = append(env, e.Name+"="+e.Value)
	}
	return env
}

// watchReadiness probes a pod until it is ready, then tells the control
// plane, which only then serves its endpoint — as kubelet and the endpoints
// controller do.
func (r *Runtime) watchReadiness(ctx context.Context, p *pod) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		ready := false
		for {
			ok := r.probe(ctx, p)
			if ok != ready {
				if err := r.cp.PutWorkload(ctx, r.workload(p, ok)); err != nil {
					if ctx.Err() != nil {
						return
					}
					r.log.Warn("report readiness", "pod", p.Namespace+"/"+p.Name, "err", err)
				} else {
					ready = ok
					r.mu.Lock()
					p.Ready = ok
					r.mu.Unlock()
				}
			}
			wait := 100 * time.Millisecond
			if ready {
				wait = 2 * time.Second
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}()
}

// probe checks the sidecar's readiness (15021, from the host, as kubelet
// does) and the app's readiness probe, which it runs inside the pod against
// loopback so that capture does not send it through the proxy.
func (r *Runtime) probe(ctx context.Context, p *pod) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if !p.noSidecar {
		if err := getOK(ctx, fmt.Sprintf("http://%s:%d/healthz/ready", p.IP, ReadyPort)); err != nil {
			return false
		}
	}
	if p.probe == nil || p.probe.port == ReadyPort {
		// No probe of its own: ready once its containers run, as kubelet has it.
		return !p.noSidecar || r.running(p)
	}
	err := podnet.Do(p.Netns, func() error {
		// The dial happens on this locked thread, so in the pod's namespace.
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p.probe.port))), time.Second)
		if err != nil {
			return err
		}
		defer func() { _ = c.Close() }()
		// A probe must not hang on a pod that accepts and never answers.
		if err := c.SetDeadline(time.Now().Add(time.Second)); err != nil {
			return err
		}
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nUser-Agent: kube-probe/1.33\r\n\r\n", p.probe.path)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		_ = resp.Body.Close() // only the status line is read
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	return err == nil
}

// waitReady waits for every pod, then for productpage through the gateway:
// the lab is ready when a person's first curl would work.
func (r *Runtime) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		r.mu.Lock()
		var pending []string
		for _, p := range r.pods {
			if !p.Ready {
				pending = append(pending, p.Namespace+"/"+p.Name)
			}
		}
		r.mu.Unlock()
		if len(pending) == 0 && (r.opts.NoBookinfo || getOK(ctx, r.status.URLs.ProductPage) == nil) {
			return nil
		}
		select {
		case <-ctx.Done():
			if len(pending) > 0 {
				return fmt.Errorf("pods not ready after 60s: %s (see `meshlab logs`)", strings.Join(pending, ", "))
			}
			return fmt.Errorf("%s does not answer 200 after 60s (see `meshlab proxy-status` and the gateway's logs)", r.status.URLs.ProductPage)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

var probeClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}, Timeout: 2 * time.Second}

func getOK(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close() // only the status is read
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

func waitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := getOK(ctx, url)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}
