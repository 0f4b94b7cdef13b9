// Package kube owns meshlab's Kubernetes runtime: bringing a lab up on a
// kind cluster step by step (the cluster, MetalLB, the meshlab image, the
// mesh and bookinfo) and taking it down, and Runtime, which answers every lab
// command (apply, get, scale, rollout restart, exec, logs, status) on a kind
// lab or any cluster meshlab was installed on, through client-go. Its
// subpackages install the mesh onto any cluster (install) and start a real
// API server for tests (kubetest).
package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/imagebundle"
	"github.com/meshlab/meshlab/lab/kind"
	"github.com/meshlab/meshlab/lab/kindnet"
	"github.com/meshlab/meshlab/lab/metallb"
)

// The gateway as the installer names it.
const (
	GatewayNamespace = "istio-system"
	GatewayService   = "istio-ingressgateway"
)

// MeshInstaller installs istiod, the ingress gateway and, when
// bookinfoNamespace is set, bookinfo onto the cluster of cfg, every container
// running image, and returns once the Deployments have rolled out.
// lab/kube/install provides it.
type MeshInstaller func(ctx context.Context, cfg *rest.Config, image, bookinfoNamespace, meshConfig string) error

// Options are the parameters of a kind lab.
type Options struct {
	Cluster  kind.Cluster
	StateDir string // the record of the lab goes here
	// Image builds the meshlab image tarball to load into the nodes.
	Image func(ctx context.Context) (kind.Image, error)
	// Subnets are the subnets of the engine network the nodes are on.
	Subnets func(ctx context.Context) ([]netip.Prefix, error)
	// Install installs the mesh.
	Install           MeshInstaller
	BookinfoNamespace string // "" leaves bookinfo out
	// MeshConfig is the istio ConfigMap's mesh (from up's values).
	MeshConfig string
	// SharedIPKey, when set, lets the gateway share its MetalLB address
	// with other Services carrying the same key.
	SharedIPKey string

	// EngineImages exports, of refs, those the container engine holds, for
	// loading into the nodes: how MetalLB's images reach a node in a room
	// without a registry (`--images`). Nil loads none.
	EngineImages func(ctx context.Context, refs []string) ([]kind.Image, error)
	// PodNetwork installs the cluster's pod network from the meshlab
	// image and waits for every node to be Ready; kindnet.Install when nil.
	PodNetwork func(ctx context.Context, kube kubernetes.Interface, image, podSubnet string, timeout time.Duration) error
	// WaitURL waits until url answers 200; an HTTP poll when nil.
	WaitURL func(ctx context.Context, url string) error
	// MetalLB installs MetalLB with a pool; metallb.Install when nil.
	MetalLB func(ctx context.Context, c metallb.Clients, r metallb.Range, images metallb.Images, timeout time.Duration) error
	// MetalLBImages replace MetalLB's pinned images where set.
	MetalLBImages metallb.Images
	// Clients makes the API clients from a rest config; real ones when nil.
	Clients func(cfg *rest.Config) (metallb.Clients, error)

	Out     io.Writer     // steps are printed here
	Timeout time.Duration // bound of each wait; 5 minutes when zero
}

// Record is what a kind lab leaves in its state directory, for status and
// down.
type Record struct {
	Runtime    string `json:"runtime"` // "kind"
	Cluster    string `json:"cluster"`
	Context    string `json:"context"`
	Image      string `json:"image"`
	Pool       string `json:"pool"`
	ExternalIP string `json:"externalIP"`
	URL        string `json:"url"`
	// BookinfoNamespace is where bookinfo runs; "" when it was left out.
	BookinfoNamespace string    `json:"bookinfoNamespace,omitempty"`
	CreatedAt         time.Time `json:"createdAt"`
}

// RecordFile is the record's name in the state directory.
const RecordFile = "kind.json"

// ReadRecord reads the kind lab's record.
func ReadRecord(stateDir string) (Record, error) {
	var r Record
	b, err := os.ReadFile(filepath.Join(stateDir, RecordFile))
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(b, &r)
}

type stepper struct {
	out   io.Writer
	start time.Time
}

// step runs f and prints its line: ✓ or ✗, its name, what it did, its time.
func (s *stepper) step(name string, f func() (string, error)) error {
	t := time.Now()
	detail, err := f()
	mark := "✓"
	if err != nil {
		mark, detail = "✗", "failed"
	}
	fmt.Fprintf(s.out, "%s %-22s %-44s %6.1fs\n", mark, name, detail, time.Since(t).Seconds())
	return err
}

// Up brings a lab up on the kind cluster o.Cluster.Name, creating it or
// reusing it. Every step after the cluster is idempotent, so an up over a
// lab that is up converges it. When a step fails on a cluster this up
// created, the cluster is deleted: nothing half-made is left for the next up
// to trip over. A reused cluster is kept as it was found.
func Up(ctx context.Context, o Options, p kind.Provider) (err error) {
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.MetalLB == nil {
		o.MetalLB = metallb.Install
	}
	if o.PodNetwork == nil {
		o.PodNetwork = kindnet.Install
	}
	if o.WaitURL == nil {
		o.WaitURL = waitOK
	}
	if o.Clients == nil {
		o.Clients = realClients
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	name := o.Cluster.Name
	s := &stepper{out: o.Out, start: time.Now()}
	// A record left from an earlier cluster would describe the wrong one
	// while this one comes up.
	if err := os.Remove(filepath.Join(o.StateDir, RecordFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the kind lab's old record: %w", err)
	}

	existing, err := p.List(ctx)
	if err != nil {
		return fmt.Errorf("%w\nis a Docker or Podman engine running? start it, or use --runtime local", err)
	}
	created := false
	defer func() {
		if err == nil || !created {
			if err != nil {
				err = fmt.Errorf("%w\nkind cluster %s is kept as it was; `meshlab up --runtime kind` again retries, `meshlab down` deletes it", err, name)
			}
			return
		}
		// A fresh context: the one that failed may be the reason.
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if derr := p.Delete(dctx, name); derr != nil {
			err = fmt.Errorf("%w\nand deleting the half-made cluster failed too: %v (delete it with `meshlab down`)", err, derr)
			return
		}
		err = fmt.Errorf("%w\nthe half-made kind cluster %s was deleted", err, name)
	}()

	var cfg *rest.Config
	if err := s.step("kind cluster", func() (string, error) {
		detail := "reused " + name + " (" + kind.Context(name) + ")"
		if !slices.Contains(existing, name) {
			created = true
			if err := p.Create(ctx, o.Cluster); err != nil {
				return "", err
			}
			nodes := "1 node"
			if o.Cluster.Workers > 0 {
				nodes = strconv.Itoa(o.Cluster.Workers+1) + " nodes"
			}
			detail = "created " + name + ", " + nodes + " (" + kind.Context(name) + ")"
		}
		kc, err := p.KubeConfig(ctx, name)
		if err != nil {
			return "", err
		}
		cfg, err = clientcmd.RESTConfigFromKubeConfig([]byte(kc))
		if err != nil {
			return "", fmt.Errorf("read the kubeconfig of kind cluster %s: %w", name, err)
		}
		return detail, nil
	}); err != nil {
		return err
	}
	clients, err := o.Clients(cfg)
	if err != nil {
		return err
	}

	var img kind.Image
	if err := s.step("image loaded", func() (string, error) {
		var err error
		if img, err = o.Image(ctx); err != nil {
			return "", err
		}
		n, err := p.LoadImage(ctx, name, img)
		if err != nil {
			return "", err
		}
		detail := img.Ref + " (already on the nodes)"
		if n > 0 {
			detail = fmt.Sprintf("%s (%d node%s)", img.Ref, n, plural(n))
		}
		if o.EngineImages == nil {
			return detail, nil
		}
		// MetalLB's images, from the engine when it has them (an archive
		// of `meshlab images save` put them there); a node that holds
		// them already, as the offline node image does, is skipped.
		more, err := o.EngineImages(ctx, []string{o.MetalLBImages.ControllerRef(), o.MetalLBImages.SpeakerRef()})
		if err != nil {
			return "", err
		}
		loaded := 0
		for _, m := range more {
			n, err := p.LoadImage(ctx, name, m)
			if err != nil {
				return "", err
			}
			loaded += n
		}
		if loaded > 0 {
			detail += fmt.Sprintf(", MetalLB's %d", loaded)
		}
		return detail, nil
	}); err != nil {
		return err
	}

	if err := s.step("pod network", func() (string, error) {
		if err := o.PodNetwork(ctx, clients.Kube, img.Ref, kind.PodSubnet, o.Timeout); err != nil {
			return "", err
		}
		return "meshlab-kindnet " + kind.PodSubnet + ", nodes Ready", nil
	}); err != nil {
		return err
	}

	var pool metallb.Range
	if err := s.step("MetalLB pool", func() (string, error) {
		subnets, err := o.Subnets(ctx)
		if err != nil {
			return "", err
		}
		if pool, err = metallb.PoolFor(subnets); err != nil {
			return "", err
		}
		if err := o.MetalLB(ctx, clients, pool, o.MetalLBImages, o.Timeout); err != nil {
			return "", err
		}
		return pool.String(), nil
	}); err != nil {
		return err
	}

	var ip string
	if err := s.step("istiod + gateway", func() (string, error) {
		if err := o.Install(ctx, cfg, img.Ref, o.BookinfoNamespace, o.MeshConfig); err != nil {
			return "", err
		}
		if err := publishGateway(ctx, clients.Kube, o.SharedIPKey); err != nil {
			return "", err
		}
		wctx, cancel := context.WithTimeout(ctx, o.Timeout)
		defer cancel()
		var err error
		if ip, err = metallb.WaitExternalIP(wctx, clients.Kube, GatewayNamespace, GatewayService); err != nil {
			return "", err
		}
		return "external IP " + ip, nil
	}); err != nil {
		return err
	}

	if o.BookinfoNamespace != "" {
		if err := s.step("bookinfo pods", func() (string, error) {
			wctx, cancel := context.WithTimeout(ctx, o.Timeout)
			defer cancel()
			n, err := waitPods(wctx, clients.Kube, o.BookinfoNamespace, 2)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("%d pods 2/2 Ready in %s", n, o.BookinfoNamespace), nil
		}); err != nil {
			return err
		}
	}

	url := fmt.Sprintf("http://%s:%d/productpage", o.Cluster.HostAddr, o.Cluster.HTTPPort)
	if o.BookinfoNamespace != "" {
		// Ready pods are not yet a page: the published port goes through
		// the engine's proxy and kube-proxy's NodePort rules, which follow
		// the gateway's pods a moment later. Up returns once a person's
		// first request would be answered.
		if err := s.step("productpage", func() (string, error) {
			wctx, cancel := context.WithTimeout(ctx, o.Timeout)
			defer cancel()
			if err := o.WaitURL(wctx, url); err != nil {
				return "", err
			}
			return "200 through " + o.Cluster.HostAddr + ":" + strconv.Itoa(o.Cluster.HTTPPort), nil
		}); err != nil {
			return err
		}
	}
	rec := Record{
		Runtime: "kind", Cluster: name, Context: kind.Context(name), Image: img.Ref,
		Pool: pool.String(), ExternalIP: ip, URL: url, BookinfoNamespace: o.BookinfoNamespace, CreatedAt: time.Now().UTC(),
	}
	if err := writeRecord(o.StateDir, rec); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "Lab is up on kind in %.1fs.\n", time.Since(s.start).Seconds())
	fmt.Fprintf(o.Out, "productpage:   %s (and http://%s:8080/productpage from this host)\n", url, ip)
	fmt.Fprintf(o.Out, "kubectl:       kubectl --context %s get pods -A\n", kind.Context(name))
	return nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// publishGateway pins the gateway Service's NodePorts to the ones the kind
// node publishes on the host, and marks it for address sharing when asked.
// A strategic merge patch: the installer's other fields stay as they are.
func publishGateway(ctx context.Context, kube kubernetes.Interface, sharedIPKey string) error {
	patch := map[string]any{"spec": map[string]any{"ports": []map[string]any{
		{"port": 8080, "nodePort": kind.GatewayHTTPNodePort},
		{"port": 8443, "nodePort": kind.GatewayHTTPSNodePort},
	}}}
	if sharedIPKey != "" {
		patch["metadata"] = map[string]any{"annotations": map[string]string{metallb.AllowSharedIP: sharedIPKey}}
	}
	b, _ := json.Marshal(patch)
	if _, err := kube.CoreV1().Services(GatewayNamespace).Patch(ctx, GatewayService, types.StrategicMergePatchType, b, metav1.PatchOptions{FieldManager: metallb.FieldManager}); err != nil {
		return fmt.Errorf("publish the gateway on NodePorts %d and %d: %w", kind.GatewayHTTPNodePort, kind.GatewayHTTPSNodePort, err)
	}
	return nil
}

// waitPods waits until the namespace has pods and every one is Ready with
// containers containers, and returns how many there are.
func waitPods(ctx context.Context, kube kubernetes.Interface, ns string, containers int) (int, error) {
	var n int
	last := "no pods yet"
	err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		pods, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		n = 0
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil {
				continue
			}
			n++
			if len(p.Spec.Containers) != containers {
				last = fmt.Sprintf("pod %s has %d containers, want %d (is the injector up, and %s labelled istio-injection=enabled?)", p.Name, len(p.Spec.Containers), containers, ns)
				return false, nil
			}
			if !podReady(p) {
				last = "pod " + p.Name + " is not ready"
				return false, nil
			}
		}
		return n > 0, nil
	})
	if err != nil {
		return 0, fmt.Errorf("bookinfo in %s: %s: %w", ns, last, err)
	}
	return n, nil
}

func podReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func writeRecord(dir string, r Record) error {
	if err := lab.PrepareStateDir(dir); err != nil {
		return fmt.Errorf("record the kind lab: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("record the kind lab: %w", err)
	}
	if err := lab.WriteFile(filepath.Join(dir, RecordFile), b, 0o600); err != nil {
		return fmt.Errorf("record the kind lab: %w", err)
	}
	return nil
}

// Down deletes the kind cluster name, if it exists, and the lab's record.
func Down(ctx context.Context, stateDir, name string, p kind.Provider, out io.Writer) error {
	start := time.Now()
	names, err := p.List(ctx)
	if err != nil {
		return fmt.Errorf("%w\nis the Docker or Podman engine running?", err)
	}
	if slices.Contains(names, name) {
		if err := p.Delete(ctx, name); err != nil {
			return err
		}
		fmt.Fprintf(out, "✓ kind cluster %s deleted in %.1fs\n", name, time.Since(start).Seconds())
	} else {
		fmt.Fprintf(out, "✓ no kind cluster %s to delete\n", name)
	}
	if err := os.Remove(filepath.Join(stateDir, RecordFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the kind lab's record: %w", err)
	}
	return nil
}

func realClients(cfg *rest.Config) (metallb.Clients, error) {
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return metallb.Clients{}, fmt.Errorf("kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return metallb.Clients{}, fmt.Errorf("kubernetes client: %w", err)
	}
	return metallb.Clients{Kube: kube, Dynamic: dyn}, nil
}

// loadArchive loads an archive of `meshlab images save` into the engine at
// sock, before kind looks for its node image there, and prints its step.
func loadArchive(ctx context.Context, sock, file string, out io.Writer) error {
	if out == nil {
		out = io.Discard
	}
	s := &stepper{out: out, start: time.Now()}
	return s.step("images archive", func() (string, error) {
		refs, err := imagebundle.Load(ctx, sock, file)
		if err != nil {
			return "", fmt.Errorf("--images %s: %w", file, err)
		}
		return fmt.Sprintf("%d images from %s", len(refs), filepath.Base(file)), nil
	})
}

// waitOK polls url until it answers 200, and says what it last saw.
func waitOK(ctx context.Context, url string) error {
	last := "no answer yet"
	cl := &http.Client{Timeout: 5 * time.Second}
	err := wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		resp, err := cl.Do(req)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			last = resp.Status
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("GET %s: %s: %w", url, last, err)
	}
	return nil
}

// engineImages are those of refs the engine at sock holds, each read from
// the engine (streamed) only for a node that lacks it.
func engineImages(ctx context.Context, sock string, refs []string) ([]kind.Image, error) {
	var out []kind.Image
	for _, ref := range refs {
		id, ok, err := imagebundle.ID(ctx, sock, ref)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, kind.Image{Ref: ref, ID: id, Open: func() (io.ReadCloser, error) {
				return imagebundle.Open(ctx, sock, ref)
			}})
		}
	}
	return out, nil
}
