package kube

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	"github.com/meshlab/meshlab/lab/kind"
	"github.com/meshlab/meshlab/lab/metallb"
)

// fakeProvider is kind without containers: it records what the flow asks.
type fakeProvider struct {
	clusters  []string
	listErr   error
	createErr error
	loadErr   error
	calls     []string
}

const kubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: kind-meshlab, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: kind-meshlab, user: {token: test}}]
contexts: [{name: kind-meshlab, context: {cluster: kind-meshlab, user: kind-meshlab}}]
current-context: kind-meshlab
`

func (f *fakeProvider) Create(_ context.Context, c kind.Cluster) error {
	f.calls = append(f.calls, "create "+c.Name)
	if f.createErr != nil {
		return f.createErr
	}
	f.clusters = append(f.clusters, c.Name)
	return nil
}

func (f *fakeProvider) Delete(_ context.Context, name string) error {
	f.calls = append(f.calls, "delete "+name)
	for i, c := range f.clusters {
		if c == name {
			f.clusters = append(f.clusters[:i], f.clusters[i+1:]...)
		}
	}
	return nil
}

func (f *fakeProvider) List(context.Context) ([]string, error) {
	f.calls = append(f.calls, "list")
	return append([]string(nil), f.clusters...), f.listErr
}

func (f *fakeProvider) KubeConfig(_ context.Context, name string) (string, error) {
	f.calls = append(f.calls, "kubeconfig "+name)
	return kubeconfig, nil
}

func (f *fakeProvider) LoadImage(_ context.Context, name string, img kind.Image) (int, error) {
	f.calls = append(f.calls, "load "+img.Ref)
	return 1, f.loadErr
}

// cluster is what a cluster looks like once the mesh and bookinfo are up:
// the gateway has its MetalLB address and bookinfo's pods are ready with
// their sidecars.
func cluster(containers int) *kubefake.Clientset {
	objs := []runtime.Object{&corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: GatewayService, Namespace: GatewayNamespace},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{
			{Name: "http2", Port: 8080}, {Name: "https", Port: 8443},
		}},
		Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "172.18.255.200"}}}},
	}}
	for _, app := range []string{"productpage", "details", "reviews", "ratings"} {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: app + "-v1-abc", Namespace: "default"},
			Status:     corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
		}
		for i := 0; i < containers; i++ {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: []string{app, "istio-proxy"}[i%2]})
		}
		objs = append(objs, p)
	}
	return kubefake.NewSimpleClientset(objs...)
}

type run struct {
	opts      Options
	out       bytes.Buffer
	kube      *kubefake.Clientset
	installed []string
	pool      metallb.Range
	// podNetwork is the image and pod subnet the pod network was given.
	podNetwork string
	// waited are the URLs up waited for.
	waited []string
}

func newRun(t *testing.T, containers int) *run {
	r := &run{kube: cluster(containers)}
	r.opts = Options{
		Cluster:  kind.Cluster{Name: "meshlab", HostAddr: "127.0.0.1", HTTPPort: 8080, HTTPSPort: 8443},
		StateDir: t.TempDir(),
		Image: func(context.Context) (kind.Image, error) {
			return kind.Image{Archive: "/nonexistent.tar", Ref: "meshlab.local/meshlab:test", ID: "sha256:abc"}, nil
		},
		Subnets: func(context.Context) ([]netip.Prefix, error) {
			return []netip.Prefix{netip.MustParsePrefix("172.18.0.0/16"), netip.MustParsePrefix("fc00:f853:ccd:e793::/64")}, nil
		},
		Install: func(_ context.Context, cfg *rest.Config, image, ns, _ string) error {
			r.installed = append(r.installed, cfg.Host+" "+image+" "+ns)
			return nil
		},
		BookinfoNamespace: "default",
		MetalLB: func(_ context.Context, _ metallb.Clients, p metallb.Range, _ metallb.Images, _ time.Duration) error {
			r.pool = p
			return nil
		},
		PodNetwork: func(_ context.Context, _ kubernetes.Interface, image, podSubnet string, _ time.Duration) error {
			r.podNetwork = image + " " + podSubnet
			return nil
		},
		WaitURL: func(_ context.Context, url string) error {
			r.waited = append(r.waited, url)
			return nil
		},
		Clients: func(*rest.Config) (metallb.Clients, error) { return metallb.Clients{Kube: r.kube}, nil },
		Out:     &r.out,
		Timeout: 3 * time.Second,
	}
	return r
}

func TestUpCreates(t *testing.T) {
	r := newRun(t, 2)
	r.opts.SharedIPKey = "my-lb-service"
	p := &fakeProvider{}
	if err := Up(context.Background(), r.opts, p); err != nil {
		t.Fatalf("up: %v\n%s", err, r.out.String())
	}
	if got, want := strings.Join(p.calls, ", "), "list, create meshlab, kubeconfig meshlab, load meshlab.local/meshlab:test"; got != want {
		t.Errorf("provider calls: %s\nwant %s", got, want)
	}
	if r.pool.String() != "172.18.255.200-172.18.255.250" {
		t.Errorf("MetalLB pool %s", r.pool)
	}
	// The pod network comes from the meshlab image, so after it is loaded.
	if r.podNetwork != "meshlab.local/meshlab:test "+kind.PodSubnet {
		t.Errorf("pod network got %q, want the meshlab image and %s", r.podNetwork, kind.PodSubnet)
	}
	if strings.Join(r.waited, " ") != "http://127.0.0.1:8080/productpage" {
		t.Errorf("up waited for %q, want productpage on the published port", r.waited)
	}
	if len(r.installed) != 1 || r.installed[0] != "https://127.0.0.1:6443 meshlab.local/meshlab:test default" {
		t.Errorf("installs: %q", r.installed)
	}
	out := r.out.String()
	for _, line := range []string{"✓ kind cluster", "created meshlab", "✓ MetalLB pool", "172.18.255.200-172.18.255.250", "✓ image loaded", "✓ pod network", "✓ istiod + gateway", "external IP 172.18.255.200", "✓ bookinfo pods", "4 pods 2/2 Ready", "http://127.0.0.1:8080/productpage"} {
		if !strings.Contains(out, line) {
			t.Errorf("output lacks %q:\n%s", line, out)
		}
	}
	// The gateway answers on the NodePorts the node publishes, and shares
	// its address as asked.
	svc, err := r.kube.CoreV1().Services(GatewayNamespace).Get(context.Background(), GatewayService, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nodePorts := map[int32]int32{}
	for _, sp := range svc.Spec.Ports {
		nodePorts[sp.Port] = sp.NodePort
	}
	if nodePorts[8080] != kind.GatewayHTTPNodePort || nodePorts[8443] != kind.GatewayHTTPSNodePort || len(svc.Spec.Ports) != 2 {
		t.Errorf("gateway ports %+v, want 8080→%d and 8443→%d", svc.Spec.Ports, kind.GatewayHTTPNodePort, kind.GatewayHTTPSNodePort)
	}
	if svc.Annotations[metallb.AllowSharedIP] != "my-lb-service" {
		t.Errorf("gateway annotations %v, want %s: my-lb-service", svc.Annotations, metallb.AllowSharedIP)
	}
	rec, err := ReadRecord(r.opts.StateDir)
	if err != nil || rec.Cluster != "meshlab" || rec.ExternalIP != "172.18.255.200" || rec.Context != "kind-meshlab" {
		t.Errorf("record %+v, %v", rec, err)
	}

	// down deletes the cluster and the record.
	var out2 bytes.Buffer
	if err := Down(context.Background(), r.opts.StateDir, "meshlab", p, &out2); err != nil {
		t.Fatal(err)
	}
	if len(p.clusters) != 0 || !strings.Contains(out2.String(), "deleted") {
		t.Errorf("after down: clusters %v, output %q", p.clusters, out2.String())
	}
	if _, err := ReadRecord(r.opts.StateDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the record survived down: %v", err)
	}
}

func TestUpReusesCluster(t *testing.T) {
	r := newRun(t, 2)
	p := &fakeProvider{clusters: []string{"other", "meshlab"}}
	if err := Up(context.Background(), r.opts, p); err != nil {
		t.Fatalf("up: %v\n%s", err, r.out.String())
	}
	for _, c := range p.calls {
		if strings.HasPrefix(c, "create") || strings.HasPrefix(c, "delete") {
			t.Errorf("up over an existing cluster called %s", c)
		}
	}
	if !strings.Contains(r.out.String(), "reused meshlab (kind-meshlab)") {
		t.Errorf("up does not say it reused the cluster:\n%s", r.out.String())
	}
}

func TestUpEngineMissing(t *testing.T) {
	r := newRun(t, 2)
	p := &fakeProvider{listErr: errors.New("list kind clusters: Cannot connect to the Docker daemon at unix:///var/run/docker.sock")}
	err := Up(context.Background(), r.opts, p)
	if err == nil || !strings.Contains(err.Error(), "--runtime local") || !strings.Contains(err.Error(), "Docker daemon") {
		t.Fatalf("up with no engine: %v; want the engine's error and the way out", err)
	}
	if strings.Join(p.calls, ",") != "list" {
		t.Errorf("up with no engine went on: %v", p.calls)
	}
}

func TestUpFailureCleansUp(t *testing.T) {
	for _, tc := range []struct {
		name        string
		break_      func(r *run, p *fakeProvider)
		existing    []string
		wantDeleted bool
		wantErr     string
	}{
		{"create fails", func(r *run, p *fakeProvider) { p.createErr = errors.New("node image pull failed") }, nil, true, "node image pull failed"},
		{"MetalLB fails on a new cluster", func(r *run, p *fakeProvider) {
			r.opts.MetalLB = func(context.Context, metallb.Clients, metallb.Range, metallb.Images, time.Duration) error {
				return errors.New("metallb is not ready")
			}
		}, nil, true, "metallb is not ready"},
		{"IPv6-only network", func(r *run, p *fakeProvider) {
			r.opts.Subnets = func(context.Context) ([]netip.Prefix, error) {
				return []netip.Prefix{netip.MustParsePrefix("fc00::/64")}, nil
			}
		}, nil, true, "no IPv4 subnet"},
		{"image load fails", func(r *run, p *fakeProvider) { p.loadErr = errors.New("ctr import failed") }, nil, true, "ctr import failed"},
		{"sidecars missing on a reused cluster", func(r *run, p *fakeProvider) { r.kube = cluster(1) }, []string{"meshlab"}, false, "istio-injection=enabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRun(t, 2)
			p := &fakeProvider{clusters: tc.existing}
			tc.break_(r, p)
			err := Up(context.Background(), r.opts, p)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("up: %v, want an error with %q\n%s", err, tc.wantErr, r.out.String())
			}
			deleted := strings.Contains(strings.Join(p.calls, ","), "delete meshlab")
			if deleted != tc.wantDeleted {
				t.Errorf("cluster deleted: %v, want %v (calls %v)", deleted, tc.wantDeleted, p.calls)
			}
			if tc.wantDeleted && len(p.clusters) != 0 {
				t.Errorf("clusters left: %v", p.clusters)
			}
			if !tc.wantDeleted && !strings.Contains(err.Error(), "kept") {
				t.Errorf("error does not say the cluster is kept: %v", err)
			}
			if !strings.Contains(r.out.String(), "✗") {
				t.Errorf("no failed step shown:\n%s", r.out.String())
			}
			if _, err := os.Stat(filepath.Join(r.opts.StateDir, RecordFile)); err == nil {
				t.Errorf("a failed up left a record")
			}
		})
	}
}

// The kind lab's record is written by whoever ran up, root included: a
// symlink planted where it (or the temporary file it once used) goes must
// not send the write elsewhere.
func TestRecordDoesNotFollowSymlinks(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{RecordFile, RecordFile + ".tmp"} {
		if err := os.Symlink(victim, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeRecord(dir, Record{Cluster: "meshlab"}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("the symlink's target now holds %q; want it untouched", b)
	}
	if rec, err := ReadRecord(dir); err != nil || rec.Cluster != "meshlab" {
		t.Errorf("ReadRecord = %+v, %v; want the record just written", rec, err)
	}
}

// A record up cannot clear would describe the old cluster while the new
// one comes up, and its write at the end would fail after the cluster was
// made: up refuses before it touches the provider.
func TestUpOldRecordNotRemovable(t *testing.T) {
	r := newRun(t, 2)
	// A non-empty directory where the record goes: os.Remove fails on it.
	if err := os.MkdirAll(filepath.Join(r.opts.StateDir, RecordFile, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := &fakeProvider{}
	err := Up(context.Background(), r.opts, p)
	if err == nil || !strings.Contains(err.Error(), "old record") {
		t.Fatalf("up: %v, want an error about the old record\n%s", err, r.out.String())
	}
	if len(p.calls) != 0 {
		t.Errorf("up went on with a stale record: %v", p.calls)
	}
}
