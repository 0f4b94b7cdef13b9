// Package kind owns the kind cluster of meshlab's kind runtime: its
// configuration, creating, listing and deleting it through the
// sigs.k8s.io/kind library (never a kind binary), loading images into its
// nodes, and the container engine it runs on.
package kind

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"

	"sigs.k8s.io/kind/pkg/apis/config/defaults"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/kind/pkg/cluster"
	kindlog "sigs.k8s.io/kind/pkg/log"
	"sigs.k8s.io/yaml"

	"github.com/meshlab/meshlab/lab/image"
)

// DefaultName is the cluster's name; its kubeconfig context is kind-meshlab.
const DefaultName = "meshlab"

// NodeImage is the node image kind v0.33.0 defaults to, pinned by digest so
// every lab runs the same Kubernetes.
const NodeImage = defaults.Image

// The gateway's NodePorts. The host reaches the gateway through these: the
// control-plane node's container publishes them on the host's HTTP and HTTPS
// ports. NodePorts rather than hostPorts because the gateway Service is a
// LoadBalancer and has NodePorts on every node anyway: kube-proxy on the
// control-plane node forwards them to the gateway pod wherever it is
// scheduled, so the gateway needs no nodeSelector, toleration or hostPort
// (which would pin it to one node and depend on the CNI's portmap plugin),
// and it can move or scale. The MetalLB address answers too, from the host on
// Linux; the port mapping is what works on every engine (Docker Desktop and
// Podman machines cannot route to the kind network).
const (
	GatewayHTTPNodePort  = 30080
	GatewayHTTPSNodePort = 30443
)

// PodSubnet is the cluster's pod network, kind's default. Each node gets a
// /24 of it from the controller manager, and meshlab's pod network
// (lab/kindnet) routes between them.
const PodSubnet = "10.244.0.0/16"

// Cluster describes the cluster meshlab wants.
type Cluster struct {
	Name      string
	Workers   int    // nodes besides the control plane
	NodeImage string // NodeImage when empty
	HostAddr  string // where the gateway is published on the host (127.0.0.1)
	HTTPPort  int    // host port of the gateway's HTTP listener (8080)
	HTTPSPort int    // host port of the gateway's HTTPS listener (8443)
}

// Context is the kubeconfig context kind writes for a cluster.
func Context(name string) string { return "kind-" + name }

// Config is the kind configuration of c.
func Config(c Cluster) *v1alpha4.Cluster {
	img := c.NodeImage
	if img == "" {
		img = NodeImage
	}
	cp := v1alpha4.Node{
		Role:  v1alpha4.ControlPlaneRole,
		Image: img,
		ExtraPortMappings: []v1alpha4.PortMapping{
			{ContainerPort: GatewayHTTPNodePort, HostPort: int32(c.HTTPPort), ListenAddress: c.HostAddr, Protocol: v1alpha4.PortMappingProtocolTCP},
			{ContainerPort: GatewayHTTPSNodePort, HostPort: int32(c.HTTPSPort), ListenAddress: c.HostAddr, Protocol: v1alpha4.PortMappingProtocolTCP},
		},
	}
	cfg := &v1alpha4.Cluster{
		TypeMeta: v1alpha4.TypeMeta{Kind: "Cluster", APIVersion: "kind.x-k8s.io/v1alpha4"},
		Name:     c.Name,
		Nodes:    []v1alpha4.Node{cp},
		// kind's own pod network, kindnetd, is an image from a registry
		// (and not a Go module) that an offline room cannot have; meshlab
		// brings its own, from the meshlab image, on every kind lab so that
		// one pod network is what is tested.
		Networking: v1alpha4.Networking{DisableDefaultCNI: true, PodSubnet: PodSubnet},
	}
	for i := 0; i < c.Workers; i++ {
		cfg.Nodes = append(cfg.Nodes, v1alpha4.Node{Role: v1alpha4.WorkerRole, Image: img})
	}
	return cfg
}

// ConfigYAML is Config as the YAML `kind create cluster --config` reads.
func ConfigYAML(c Cluster) ([]byte, error) {
	return yaml.Marshal(Config(c))
}

// Image is an image tarball to load into the nodes.
type Image struct {
	Archive string // path of a docker-loadable tarball
	Ref     string // the reference it is tagged with
	ID      string // its config digest; nodes that hold it already are skipped
	// Open, when set, reads the tarball instead of Archive (an engine's
	// export, streamed): called only for a node that lacks the image.
	Open func() (io.ReadCloser, error)
}

// Provider is what the kind runtime needs of kind. The real one is thin; the
// runtime's flow is tested with a fake.
type Provider interface {
	Create(ctx context.Context, c Cluster) error
	Delete(ctx context.Context, name string) error
	List(ctx context.Context) ([]string, error)
	// KubeConfig returns the cluster's kubeconfig, and makes sure the user's
	// kubeconfig has its context (kind-<name>).
	KubeConfig(ctx context.Context, name string) (string, error)
	// LoadImage loads img into every node of the cluster that lacks it and
	// says how many needed it.
	LoadImage(ctx context.Context, name string, img Image) (int, error)
}

// NewProvider is the real Provider, on the Docker or Podman engine that kind
// detects (the docker or podman CLI must be installed: kind's library drives
// it).
func NewProvider() (Provider, error) {
	opt, err := cluster.DetectNodeProvider()
	if err != nil {
		return nil, fmt.Errorf("kind finds no docker or podman command (%v): install Docker (https://docs.docker.com/engine/install/) or Podman", err)
	}
	return &kindProvider{p: cluster.NewProvider(opt, cluster.ProviderWithLogger(kindlog.NoopLogger{}))}, nil
}

type kindProvider struct{ p *cluster.Provider }

func (k *kindProvider) Create(ctx context.Context, c Cluster) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// The kubeconfig goes where kubectl looks ($KUBECONFIG, else
	// ~/.kube/config) with context kind-<name>; a failed create leaves no
	// nodes behind (kind deletes them unless told to retain). No wait for
	// Ready: no node is before the pod network, which comes after.
	err := k.p.Create(c.Name,
		cluster.CreateWithV1Alpha4Config(Config(c)),
		cluster.CreateWithDisplayUsage(false),
		cluster.CreateWithDisplaySalutation(false),
	)
	if err != nil {
		return fmt.Errorf("create kind cluster %s: %w", c.Name, err)
	}
	return nil
}

// Delete deletes the cluster and, when it was the last kind cluster, the
// engine network kind made for it: kind keeps that network for the next
// cluster, but a lab's down should leave the engine as it found it.
func (k *kindProvider) Delete(ctx context.Context, name string) error {
	if err := k.p.Delete(name, ""); err != nil {
		return fmt.Errorf("delete kind cluster %s: %w", name, err)
	}
	left, err := k.p.List()
	if err != nil || len(left) > 0 {
		return nil //nolint:nilerr // the cluster is deleted; the network is only tidied when surely unused
	}
	e, err := FindEngine()
	if err != nil {
		return nil //nolint:nilerr // as above: nothing to tidy without an engine
	}
	if err := e.RemoveNetwork(ctx, NetworkName()); err != nil {
		return fmt.Errorf("kind cluster %s is deleted, but its network is not: %w", name, err)
	}
	return nil
}

func (k *kindProvider) List(context.Context) ([]string, error) {
	names, err := k.p.List()
	if err != nil {
		return nil, fmt.Errorf("list kind clusters: %w", err)
	}
	return names, nil
}

func (k *kindProvider) KubeConfig(_ context.Context, name string) (string, error) {
	if err := k.p.ExportKubeConfig(name, "", false); err != nil {
		return "", fmt.Errorf("export the kubeconfig of kind cluster %s: %w", name, err)
	}
	cfg, err := k.p.KubeConfig(name, false)
	if err != nil {
		return "", fmt.Errorf("kubeconfig of kind cluster %s: %w", name, err)
	}
	return cfg, nil
}

func (k *kindProvider) LoadImage(_ context.Context, name string, img Image) (int, error) {
	nodes, err := k.p.ListInternalNodes(name)
	if err != nil {
		return 0, fmt.Errorf("list the nodes of kind cluster %s: %w", name, err)
	}
	if len(nodes) == 0 {
		return 0, fmt.Errorf("kind cluster %s has no nodes", name)
	}
	open := img.Open
	if open == nil {
		open = func() (io.ReadCloser, error) { return os.Open(img.Archive) }
	}
	return image.LoadNodes(open, img.Ref, img.ID, nodes)
}

// NetworkName is the engine network kind puts its nodes on.
func NetworkName() string {
	if n := os.Getenv("KIND_EXPERIMENTAL_DOCKER_NETWORK"); n != "" {
		return n
	}
	return "kind"
}

// Ports says which host ports a cluster publishes, for messages.
func (c Cluster) Ports() string {
	return c.HostAddr + ":" + strconv.Itoa(c.HTTPPort) + ", " + c.HostAddr + ":" + strconv.Itoa(c.HTTPSPort)
}
