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

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshlab/meshlab/controlplane/api"

	"github.com/meshlab/meshlab/lab"

	"github.com/meshlab/meshlab/lab/podnet"
	"github.com/meshlab/meshlab/lab/process"
)

const systemNamespace = "istio-system"

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
	p, err := r.addPod(ctx, systemNamespace, podName("istiod", staticHash("istiod")), "istiod", labels)
	if err != nil {
		return err
	}
	p.serviceAccount = "istiod"
	r.istiodIP = netip.MustParseAddr(p.IP)
	// The ports it serves, as istiod's container declares its own: what
	// Prometheus's pod and endpoints discovery report of it.
	p.Spec = &corev1.PodSpec{Containers: []corev1.Container{{Name: "discovery", Image: Image,
		Ports: []corev1.ContainerPort{{ContainerPort: XDSPort, Protocol: corev1.ProtocolTCP},
			{ContainerPort: XDSTLSPort, Protocol: corev1.ProtocolTCP}, {ContainerPort: MonitorPort, Protocol: corev1.ProtocolTCP}}}}}
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
	if ttl := r.opts.WorkloadCertTTL; ttl > 0 {
		argv = append(argv, "--workload-cert-ttl", ttl.String())
	}
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
	// The control plane's own Service, so pods can name istiod as they do
	// in Istio: stored as a Service object, as every Service of the lab.
	if err := r.applyObjects(ctx, "istiod", istiodService); err != nil {
		return err
	}
	return r.cp.PutWorkload(ctx, r.workload(p, true))
}

const istiodService = `apiVersion: v1
kind: Service
metadata:
  name: istiod
  namespace: istio-system
  labels: {app: istiod, istio: pilot}
spec:
  selector: {app: istiod}
  ports:
  - {name: grpc-xds, port: 15010}
  - {name: https-dns, port: 15012}
  - {name: http-monitoring, port: 15014}
`

const gatewayService = `apiVersion: v1
kind: Service
metadata:
  name: istio-ingressgateway
  namespace: istio-system
  labels: {app: istio-ingressgateway, istio: ingressgateway}
spec:
  selector: {istio: ingressgateway}
  ports:
  - {name: http2, port: 80, targetPort: 8080}
  - {name: https, port: 443, targetPort: 8443}
`

// staticHash stands in for the template hash of the runtime's own pods.
func staticHash(name string) string {
	return TemplateHash(&corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Name: name}})
}

// applyObjects applies a manifest through the control plane's API, as
// `meshlab apply -f` does: the one way objects get into the lab.
func (r *Runtime) applyObjects(ctx context.Context, source, data string) error {
	return r.applyManifest(ctx, source, []byte(data))
}

func (r *Runtime) applyManifest(ctx context.Context, source string, data []byte) error {
	docs, err := api.Documents(source, data, "default")
	if err != nil {
		return err
	}
	res, err := r.cp.Apply(ctx, api.ApplyRequest{Documents: docs})
	if err != nil {
		return fmt.Errorf("apply %s: %w", source, err)
	}
	r.mu.Lock()
	r.applied = max(r.applied, res.Revision)
	r.mu.Unlock()
	return nil
}

func (r *Runtime) startGateway(ctx context.Context) error {
	labels := map[string]string{"app": "istio-ingressgateway", "istio": "ingressgateway"}
	p, err := r.addPod(ctx, systemNamespace, podName("istio-ingressgateway", staticHash("istio-ingressgateway")), "istio-ingressgateway", labels)
	if err != nil {
		return err
	}
	p.serviceAccount = "istio-ingressgateway-service-account"
	p.probe = &probe{port: ReadyPort, path: "/healthz/ready"}
	// Its identity (istio-system's gateway service account) is what
	// entitles it to the kubernetes:// credentials of its namespace.
	mounts, err := r.proxyCredentials(ctx, p)
	if err != nil {
		return err
	}
	if err := r.startContainer(ctx, p, "istio-proxy", r.proxyArgv("gateway", p), nil, identity{ProxyUID, ProxyUID}, "", mounts...); err != nil {
		return err
	}
	if err := r.applyObjects(ctx, "istio-ingressgateway", gatewayService); err != nil {
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
		"--discovery-address", fmt.Sprintf("%s:%d", r.istiodIP, XDSTLSPort),
		"--pod", p.Name, "--namespace", p.Namespace, "--ip", p.IP}
	if p.serviceAccount != "" {
		argv = append(argv, "--service-account", p.serviceAccount)
	}
	if p.Deployment != "" {
		argv = append(argv, "--workload", p.Deployment)
	}
	if ttl := r.opts.WorkloadCertTTL; ttl > 0 {
		argv = append(argv, "--secret-ttl", ttl.String())
	}
	for _, k := range slices.Sorted(maps.Keys(p.Labels)) {
		argv = append(argv, "--label", k+"="+p.Labels[k])
	}
	return argv
}

// applyBookinfo applies bookinfo as a user would: its namespace labelled
// for injection (as the walkthrough's book-demo), its Services,
// ServiceAccounts and Deployments, and its gateway config, in one batch.
func (r *Runtime) applyBookinfo(ctx context.Context) error {
	ns := r.opts.BookinfoNamespace
	namespace := fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n  labels:\n    istio-injection: enabled\n", ns)
	var docs []api.Document
	for _, f := range []struct {
		source string
		data   []byte
	}{
		{"namespace " + ns, []byte(namespace)},
		{"samples/bookinfo/bookinfo.yaml", r.opts.Bookinfo},
		{"samples/bookinfo/networking/bookinfo-gateway.yaml", r.opts.BookinfoGateway},
	} {
		d, err := api.Documents(f.source, f.data, ns)
		if err != nil {
			return err
		}
		docs = append(docs, d...)
	}
	res, err := r.cp.Apply(ctx, api.ApplyRequest{Documents: docs})
	if err != nil {
		return fmt.Errorf("apply bookinfo: %w", err)
	}
	r.mu.Lock()
	r.applied = max(r.applied, res.Revision)
	if r.waitFor == nil {
		r.waitFor = map[string]bool{}
	}
	for _, c := range res.Changes {
		if kind, rest, _ := strings.Cut(c.Key, "/"); kind == "Deployment" {
			r.waitFor[rest] = true
		}
	}
	r.mu.Unlock()
	return nil
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
		pending := r.notReady(ctx)
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

// notReady names what keeps the lab from being ready: the controller has
// not yet acted on what up applied, one of up's own Deployments (bookinfo's)
// has fewer ready pods of its current template than replicas, or one of
// its pods, or the control plane's or gateway's, is not ready. Workloads a
// user applied in an earlier lab start again too, but up does not wait for
// them: a broken one of theirs must not keep the lab from coming up.
func (r *Runtime) notReady(ctx context.Context) []string {
	r.mu.Lock()
	behind := r.reconciled < r.applied
	var pending []string
	for _, p := range r.pods {
		if !p.Ready && !p.Terminating && (!p.owned || r.waitFor[p.Namespace+"/"+p.Deployment]) {
			pending = append(pending, p.Namespace+"/"+p.Name)
		}
	}
	waitFor := maps.Clone(r.waitFor)
	r.mu.Unlock()
	if behind {
		return append(pending, "the controller's first pass")
	}
	d, err := r.loadDesired(ctx)
	if err != nil {
		return append(pending, err.Error())
	}
	for _, dep := range d.deployments {
		if !waitFor[dep.Namespace+"/"+dep.Name] {
			continue
		}
		want := int32(1)
		if dep.Spec.Replicas != nil {
			want = *dep.Spec.Replicas
		}
		hash := TemplateHash(&dep.Spec.Template)
		var ready int32
		for _, p := range r.snapshotPods() {
			if p.owned && p.Ready && !p.Terminating && p.Namespace == dep.Namespace && p.Deployment == dep.Name && p.TemplateHash == hash {
				ready++
			}
		}
		if ready < want {
			pending = append(pending, fmt.Sprintf("deployment %s/%s (%d/%d ready)", dep.Namespace, dep.Name, ready, want))
		}
	}
	return pending
}
