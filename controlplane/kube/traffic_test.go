package kube_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensions "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/meshlab/meshlab/controlplane"
	"github.com/meshlab/meshlab/controlplane/crd"
	"github.com/meshlab/meshlab/controlplane/meshconfig"
	"github.com/meshlab/meshlab/dataplane/capture"
	"github.com/meshlab/meshlab/lab/kube/kubetest"
	"github.com/meshlab/meshlab/lab/labtest"
	"github.com/meshlab/meshlab/lab/podnet"
	"github.com/meshlab/meshlab/lab/process"
)

// trafficNet is apart from the lab's network (and from the other packages'
// test networks: podnet's 198.18.254/24, process' 198.18.253/24), so the
// test never touches a running lab's bridge, namespaces or host table.
var trafficNet = podnet.Network{
	Bridge:      "mlabk0",
	Prefix:      netip.MustParsePrefix("198.18.252.0/24"),
	Gateway:     netip.MustParseAddr("198.18.252.1"),
	NetnsPrefix: "mlabk-",
}

const (
	trafficNS  = "demo"
	serverPod  = "httpbin-0"
	clientPod  = "sleep-0"
	httpbinURL = "http://httpbin.demo.svc.cluster.local:8000/headers"
)

var (
	serverIP = netip.MustParseAddr("198.18.252.2")
	clientIP = netip.MustParseAddr("198.18.252.3")
	vsGVRv1  = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}
)

// TestTrafficFromCluster is issue 4's path end to end, out of cluster: the
// control plane watches a real kube-apiserver, and what is created there (a
// Service, an EndpointSlice with the server pod's bridge address, a
// VirtualService) becomes the xDS two sidecars route real requests by,
// between pods of the local runtime.
func TestTrafficFromCluster(t *testing.T) {
	labtest.Skip(t)
	bin := labtest.Binary(t, "../..")
	labtest.Lock(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	n := trafficNet
	removeNet(t, n) // an interrupted earlier run
	t.Cleanup(func() {
		removeNet(t, n)
		for _, l := range netLeftovers(t, n) {
			t.Errorf("left behind: %s", l)
		}
	})
	if err := n.EnsureBridge(ctx); err != nil {
		t.Fatal(err)
	}

	// What kubelet and the CNI plugin would do: the pods' namespaces on the
	// bridge, istio-init's capture; the containers come later. Before the
	// API server starts: making a namespace ends the OS thread it was made
	// on, and kubetest's children die with the thread that started them
	// (Pdeathsig), which may be that one.
	logs := t.TempDir()
	if err := os.Chmod(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	pods := map[string]podnet.Pod{}
	for name, ip := range map[string]netip.Addr{serverPod: serverIP, clientPod: clientIP} {
		p, err := n.AddPod(ctx, name, ip)
		if err != nil {
			t.Fatal(err)
		}
		if err := podnet.Do(p.NetnsPath, func() error { return capture.Install(capture.DefaultOptions()) }); err != nil {
			t.Fatalf("install capture in %s: %v", name, err)
		}
		pods[name] = p
	}
	env := kubetest.Start(t)
	kc := kubernetes.NewForConfigOrDie(env.Config)
	dyn := dynamic.NewForConfigOrDie(env.Config)
	installCRDs(ctx, t, env.Config)
	// The mesh config istiod reads from the cluster: access logs on, as
	// the test reads them, and no tracing, as there is no trace store
	// (Istio's default would send spans to zipkin.istio-system).
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: meshconfig.Namespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.CoreV1().ConfigMaps(meshconfig.Namespace).Create(ctx, meshconfig.ConfigMap([]byte("accessLogFile: /dev/stdout\nenableTracing: false\n")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The pods reach the host through the bridge's address, not through
	// the host's loopback, so that is where xDS listens.
	xdsAddr := netip.AddrPortFrom(n.Gateway, freePortOn(t, n.Gateway))
	srv, err := controlplane.New(controlplane.Options{
		StateDir: t.TempDir(), XDSAddr: xdsAddr.String(), HTTPAddr: "127.0.0.1:0", Kube: env.Config,
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("control plane: %v", err)
		}
		srv.Close()
	})
	select {
	case <-srv.KubeSynced():
	case err := <-done:
		t.Fatalf("control plane stopped: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("the control plane did not sync with the API server")
	}

	start := func(pod, container string, uid uint32, argv ...string) string {
		p := pods[pod]
		logPath := filepath.Join(logs, pod+"-"+container+".log")
		sup := process.NewSupervisor(process.Spec{
			Name: trafficNS + "/" + pod + "/" + container, Argv: append([]string{bin}, argv...),
			Env:       []string{"PATH=" + os.Getenv("PATH"), "POD_NAME=" + pod, "POD_NAMESPACE=" + trafficNS, "INSTANCE_IP=" + p.IP.String()},
			NetnsPath: p.NetnsPath, UID: uid, GID: uid, LogPath: logPath, Self: bin,
		})
		if err := sup.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			stopCtx, done := context.WithTimeout(context.Background(), 15*time.Second)
			defer done()
			if err := sup.Stop(stopCtx); err != nil {
				t.Errorf("stop %s/%s: %v", pod, container, err)
			}
		})
		return logPath
	}
	proxy := func(pod, app string) string {
		return start(pod, "istio-proxy", capture.DefaultOptions().ProxyUID, "proxy",
			"--discovery-address", xdsAddr.String(), "--control-plane-auth-policy", "NONE", "--pod", pod, "--namespace", trafficNS,
			"--ip", pods[pod].IP.String(), "--label", "app="+app)
	}
	serverLog := proxy(serverPod, "httpbin")
	start(serverPod, "httpbin", 0, "sample", "httpbin")
	clientLog := proxy(clientPod, "sleep")
	for name, p := range pods {
		// From the host, as kubelet probes: 15021 escapes capture.
		url := fmt.Sprintf("http://%s:15021/healthz/ready", p.IP)
		eventually(t, name+"'s sidecar ready", func() error { return getOK(ctx, url) })
	}

	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: trafficNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc, err := kc.CoreV1().Services(trafficNS).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "httpbin", Namespace: trafficNS, Labels: map[string]string{"app": "httpbin"}},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "httpbin"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 8000}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Service httpbin has ClusterIP %s", svc.Spec.ClusterIP)
	slice := func(addr string) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "httpbin-1", Namespace: trafficNS, Labels: map[string]string{discoveryv1.LabelServiceName: "httpbin"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: proto.String("http"), Port: proto.Int32(8000)}},
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{addr}, Conditions: discoveryv1.EndpointConditions{Ready: proto.Bool(true)},
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: trafficNS, Name: serverPod}}},
		}
	}
	// Why the pods live on a bridge: the API server refuses the loopback
	// address an all-in-the-host setup would have.
	if _, err := kc.DiscoveryV1().EndpointSlices(trafficNS).Create(ctx, slice("127.0.0.1"), metav1.CreateOptions{}); err == nil {
		t.Error("the API server stored an EndpointSlice with a loopback address; want it refused")
	}
	if _, err := kc.DiscoveryV1().EndpointSlices(trafficNS).Create(ctx, slice(serverIP.String()), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	vs := func(n string) string {
		return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin, namespace: demo}
spec:
  hosts: [httpbin]
  http:
  - match:
    - headers:
        x-variant: {exact: direct}
    directResponse:
      status: 418
      body: {string: "direct-%[1]s"}
  - route:
    - destination: {host: httpbin}
    headers:
      request:
        set: {x-mesh-vs: "%[1]s"}
`, n)
	}
	u := object(t, vs("one"))
	if _, err := dyn.Resource(vsGVRv1).Namespace(trafficNS).Create(ctx, u, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	curl := func(header string) (int, string, error) {
		args := []string{process.NSExecName, "--net", pods[clientPod].NetnsPath, "--", "curl", "-sS", "-m", "5", "-w", "\n%{http_code}"}
		if header != "" {
			args = append(args, "-H", header)
		}
		cctx, done := context.WithTimeout(ctx, 10*time.Second)
		defer done()
		out, err := exec.CommandContext(cctx, bin, append(args, httpbinURL)...).CombinedOutput()
		if err != nil {
			return 0, "", fmt.Errorf("curl: %v: %s", err, out)
		}
		i := bytes.LastIndexByte(out, '\n')
		if i < 0 {
			return 0, "", fmt.Errorf("curl printed no status: %q", out)
		}
		c, err := strconv.Atoi(string(out[i+1:]))
		return c, string(out[:i]), err
	}
	// routed asks the server, through both sidecars, for the headers it got.
	routed := func(wantVS string) func() error {
		return func() error {
			code, body, err := curl("")
			if err != nil {
				return err
			}
			if code != http.StatusOK {
				return fmt.Errorf("status %d: %s", code, body)
			}
			var got struct{ Headers map[string]string }
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				return fmt.Errorf("decode %q: %w", body, err)
			}
			h := got.Headers
			if h["X-Request-Id"] == "" || h["X-Forwarded-Proto"] != "http" {
				return fmt.Errorf("headers %v: want the x-request-id and x-forwarded-proto a sidecar adds", h)
			}
			if h["X-Mesh-Vs"] != wantVS {
				return fmt.Errorf("x-mesh-vs %q, want %q (headers %v)", h["X-Mesh-Vs"], wantVS, h)
			}
			return nil
		}
	}
	direct := func(want string) func() error {
		return func() error {
			code, body, err := curl("x-variant: direct")
			if err != nil {
				return err
			}
			if code != http.StatusTeapot || body != want {
				return fmt.Errorf("got %d %q, want 418 %q", code, body, want)
			}
			return nil
		}
	}

	eventually(t, "a request routed by the VirtualService to httpbin", routed("one"))
	eventually(t, "the VirtualService's direct response", direct("direct-one"))
	// Both sidecars saw the request: it left the client through the
	// Service's outbound cluster and entered the server through its inbound.
	for log, want := range map[string]string{
		clientLog: "outbound|8000||httpbin.demo.svc.cluster.local",
		serverLog: "inbound|8000||",
	} {
		eventually(t, "access log "+filepath.Base(log)+" names "+want, func() error {
			b, err := os.ReadFile(log)
			if err != nil {
				return err
			}
			if !bytes.Contains(b, []byte(want)) {
				return fmt.Errorf("no %q in:\n%s", want, lastLines(b, 20))
			}
			return nil
		})
	}

	// A change in the API server reaches the sidecars.
	cur, err := dyn.Resource(vsGVRv1).Namespace(trafficNS).Get(ctx, "httpbin", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	u = object(t, vs("two"))
	u.SetResourceVersion(cur.GetResourceVersion())
	if _, err := dyn.Resource(vsGVRv1).Namespace(trafficNS).Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the updated VirtualService's header", routed("two"))
	eventually(t, "the updated VirtualService's direct response", direct("direct-two"))

	// And so does a deletion: no VirtualService, no header, no direct response.
	if err := dyn.Resource(vsGVRv1).Namespace(trafficNS).Delete(ctx, "httpbin", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the default route once the VirtualService is gone", routed(""))
}

func installCRDs(ctx context.Context, t *testing.T, cfg *rest.Config) {
	t.Helper()
	ext := apiextensions.NewForConfigOrDie(cfg)
	for _, c := range crd.CRDs() {
		if _, err := ext.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, c, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create CRD %s: %v", c.Name, err)
		}
		eventually(t, "CRD "+c.Name+" established", func() error {
			got, err := ext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, c.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			for _, cond := range got.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					return nil
				}
			}
			return errors.New("not established")
		})
	}
}

func object(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(j); err != nil {
		t.Fatal(err)
	}
	return u
}

func freePortOn(t *testing.T, ip netip.Addr) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

func getOK(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// removeNet deletes the test's pods and bridge. Not podnet's Teardown: that
// also deletes the host's "meshlab" nftables table, which belongs to a lab
// that may be running beside this test.
func removeNet(t *testing.T, n podnet.Network) {
	t.Helper()
	ctx := context.Background()
	for _, pod := range []string{serverPod, clientPod} {
		if err := n.DelPod(ctx, pod); err != nil {
			t.Errorf("remove pod %s: %v", pod, err)
		}
	}
	if br, err := netlink.LinkByName(n.Bridge); err == nil {
		if err := netlink.LinkDel(br); err != nil {
			t.Errorf("delete bridge %s: %v", n.Bridge, err)
		}
	}
}

// netLeftovers is podnet's Leftovers without the host table, which is not
// this test's.
func netLeftovers(t *testing.T, n podnet.Network) []string {
	t.Helper()
	all, err := n.Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range all {
		if !strings.HasPrefix(l, "nftables table ") {
			out = append(out, l)
		}
	}
	return out
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
