package lab

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/controlplane/config"
)

// Runtime is a running (or stoppable) lab as the CLI drives it, whatever it
// runs on: the local pod runtime (lab/local) or a Kubernetes cluster through
// client-go (lab/kube). Every command that acts on a lab goes through it, so
// the CLI never asks which runtime it talks to.
//
// Objects cross it in Kubernetes' own types, so that `get` prints what
// kubectl would, and -o yaml|json|jsonpath see the fields kubectl's do.
type Runtime interface {
	// Name is "local" or "kind" (or "kube" for an installed cluster).
	Name() string

	// Up brings the lab up, showing each step and its elapsed time on
	// o.Out; it returns once the lab is ready (the lab keeps running).
	Up(ctx context.Context, o UpOptions) error
	// Down stops the lab and removes what it put on the machine.
	Down(ctx context.Context, o DownOptions) error
	// Status reports the lab: `status` prints it, `status -o json` encodes
	// it as JSON.
	Status(ctx context.Context) (StatusReport, error)

	// Apply stores a batch of documents (Istio config and Kubernetes
	// workloads, in file order) all or nothing: if any is invalid, nothing
	// changes and the error names file, document and field.
	Apply(ctx context.Context, req ApplyRequest) (ApplyResult, error)
	// Delete removes objects all or nothing; a missing one fails the batch.
	Delete(ctx context.Context, refs []ObjectRef) (ApplyResult, error)

	// List returns stored objects of any kind Apply takes (Istio config
	// among them) as Kubernetes-shaped JSON: kind is a kind, plural or
	// short name ("vs", "virtualservices", "all" for every Istio kind),
	// ns "" means every namespace, name "" every name.
	List(ctx context.Context, kind, ns, name string) ([]json.RawMessage, error)

	// Pods, Deployments, Services and Namespaces list what runs, in
	// namespace ns ("" for every namespace), sorted by namespace then name.
	Pods(ctx context.Context, ns string) ([]corev1.Pod, error)
	Deployments(ctx context.Context, ns string) ([]appsv1.Deployment, error)
	Services(ctx context.Context, ns string) ([]corev1.Service, error)
	Namespaces(ctx context.Context) ([]corev1.Namespace, error)

	// RolloutRestart replaces a Deployment's pods as `kubectl rollout
	// restart` does (a new template annotation, then a rolling update).
	RolloutRestart(ctx context.Context, ns, deployment string) error
	// Scale sets a Deployment's replicas.
	Scale(ctx context.Context, ns, deployment string, replicas int32) error

	// Exec runs a command in a container of a pod and returns its exit
	// code; Logs copies a container's log.
	Exec(ctx context.Context, o ExecOptions) (int, error)
	Logs(ctx context.Context, o LogOptions) error

	// PortForward makes a Service's port reachable from this machine, as
	// `kubectl port-forward svc/NAME` does (`meshlab dashboard`): a
	// cluster's through the pods/portforward subresource to one of the
	// Service's ready pods, held until ctx ends; the local runtime's
	// addons are already published on the host, so it only says where.
	PortForward(ctx context.Context, o PortForwardOptions) (Forward, error)

	// ControlPlane is a client of the lab's control-plane API (what
	// proxy-status reads) and what reaching it holds open, to be released
	// with done: nothing on the local runtime, whose API is on the host; a
	// forward to istiod on a cluster, with a short-lived token of istiod's
	// service account (as `kubectl create token istiod` would give).
	ControlPlane(ctx context.Context) (cl *api.Client, done func(), err error)
	// ProxyAdmin GETs path ("/config_dump") from the admin port (15000)
	// of the proxy of a pod, named as Exec names one, as istioctl
	// proxy-config reads it: in the pod's network namespace on the local
	// runtime, through a port-forward to the pod on a cluster.
	ProxyAdmin(ctx context.Context, ns, pod, path string) ([]byte, error)
}

// ProxyAdminPort is where a proxy's admin interface listens, on the pod's
// loopback only (Envoy's and Istio's 15000).
const ProxyAdminPort = 15000

// PortForwardOptions is one `meshlab dashboard`.
type PortForwardOptions struct {
	Namespace string
	Service   string
	// Port is the Service's port.
	Port int
	// Address and LocalPort are where a forward listens on this machine
	// (127.0.0.1; 0 for Port). A runtime that publishes the Service
	// itself ignores them.
	Address   string
	LocalPort int
}

// Forward is where a Service answers on this machine.
type Forward struct {
	// URL is its HTTP address, http://HOST:PORT/, or the whole URL a
	// person opens when the runtime knows it (the local runtime's console
	// URL carries its web root).
	URL string
	// Wait blocks while the forward is held: until ctx ends (nil) or the
	// forward breaks. Nil when nothing is held (the port is published).
	Wait func() error
}

// Document is one document of an applied file, as JSON, and where it came
// from (for errors).
type Document struct {
	Source string // file name, "-" for stdin
	Index  int    // 0-based document index in the file
	JSON   []byte
}

// ApplyRequest is one `meshlab apply`.
type ApplyRequest struct {
	Documents []Document
	// Namespace is the default for documents that name none.
	Namespace string
	DryRun    bool
}

// ApplyResult says what happened to each object, in order.
type ApplyResult struct {
	Changes []Change
	// Warnings are for the user (printed as kubectl prints the API's
	// "Warning:" lines): the batch was applied, but not all of it does
	// what its author may expect.
	Warnings []string
	// Revision is the store revision after the batch (local runtime); a
	// `--wait` waits for the proxies to ACK it.
	Revision uint64
}

// Change is what happened to one object.
type Change struct {
	Ref ObjectRef
	Op  string // created, configured, unchanged, deleted
}

// ObjectRef names one object: its kind (as in YAML, e.g. "Deployment"),
// namespace ("" for cluster-scoped kinds) and name. Group is the API group
// ("" for core, "apps", "networking.istio.io", ...).
type ObjectRef struct {
	Group     string
	Kind      string
	Namespace string
	Name      string
}

// RefOfKey reads the control plane's key of an object, Kind/namespace/name
// (namespace empty for a cluster-scoped kind), with the kind's API group.
func RefOfKey(key string) ObjectRef {
	kind, rest, _ := strings.Cut(key, "/")
	ns, name, _ := strings.Cut(rest, "/")
	info, _ := config.LookupStoredKind(kind)
	return ObjectRef{Group: info.Group, Kind: kind, Namespace: ns, Name: name}
}

// ExecOptions is one `meshlab exec`.
type ExecOptions struct {
	Namespace string
	// Pod is a pod name, or deploy/NAME (or deployment/NAME) for a
	// Deployment's first ready pod, or an app name as before.
	Pod       string
	Container string // "" for the default (app) container
	Command   []string
	Stdin     io.Reader
	Stdout    io.Writer
	Stderr    io.Writer
}

// LogOptions is one `meshlab logs`.
type LogOptions struct {
	Namespace string
	Pod       string // as ExecOptions.Pod
	Container string
	Follow    bool
	Out       io.Writer
}

// UpOptions is one `meshlab up`.
type UpOptions struct {
	BookinfoNamespace string
	NoBookinfo        bool
	// Manifests are files applied, as `meshlab apply -f` would, once the
	// lab is up.
	Manifests []string
	HostAddr  string
	HTTPPort  int
	HTTPSPort int
	APIPort   int
	// Nodes is the number of kind worker nodes; SharedIPKey the MetalLB
	// sharing key of the gateway Service (kind only).
	Nodes       int
	SharedIPKey string
	// Kind is how a kind lab gets its images (kind only).
	Kind KindImages
	// WorkloadCertTTL is the lifetime of every workload certificate of
	// the lab (istiod's DEFAULT_WORKLOAD_CERT_TTL and every proxy's
	// SECRET_TTL); zero is Istio's 24h.
	WorkloadCertTTL time.Duration
	// MeshConfig is the mesh config (MeshConfig YAML, the `mesh` key of
	// the istio ConfigMap) from the lab's defaults and --values/--set;
	// MeshConfigGiven says the user gave values, so a lab already up
	// takes them too.
	MeshConfig      string
	MeshConfigGiven bool
	// PrometheusPort and ZipkinPort publish the lab's Prometheus and
	// trace store on the host (local runtime); 0 does not.
	PrometheusPort, ZipkinPort int
	// KialiPort publishes the lab's console (Kiali's 20001) on the host
	// (local runtime); 0 does not. KialiWebRoot is where it serves
	// ("/kiali", Kiali's default; the walkthrough's "/dashboards/kiali").
	KialiPort    int
	KialiWebRoot string
	Out          io.Writer
}

// KindImages are where a kind lab's images come from, for a room with no
// registry: an archive `meshlab images save` wrote, loaded into the engine
// first, and the images to run in place of the pinned ones. Empty fields
// keep the defaults.
type KindImages struct {
	Archive           string // docker-save archive loaded before the cluster is made
	Node              string // kind node image
	MetalLBController string
	MetalLBSpeaker    string
}

// IsZero says no field is set.
func (k KindImages) IsZero() bool { return k == KindImages{} }

// DownOptions is one `meshlab down`.
type DownOptions struct {
	Purge bool // also delete the state directory and its store
	Out   io.Writer
}

// StatusReport is what `status` shows; it encodes itself as JSON for
// `status -o json`.
type StatusReport interface {
	// Print writes the table a person reads.
	Print(w io.Writer) error
}
