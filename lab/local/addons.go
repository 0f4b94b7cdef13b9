package local

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/process"
)

// Addon is one of the lab's telemetry components in istio-system, as
// Istio's samples/addons run them: a pod of this binary's mode, its
// Service, its data kept in the state directory (so traces and series
// outlive a lab restart), and its port published on the host.
type Addon struct {
	// Name is the Deployment, Service and app label (zipkin, prometheus).
	Name string
	// Port and PortName are the Service's and the container's port.
	Port     uint16
	PortName string
	// HostPort publishes Port on the host address; 0 does not.
	HostPort int
	// ReadyPath is the HTTP readiness probe's path on Port.
	ReadyPath string
	// Args runs the mode (without the binary), given the addon's data
	// directory as its container sees it, which it alone may write.
	Args func(dataDir string) []string
	// Files are written into the data directory before the mode starts
	// (its configuration), name → content.
	Files map[string][]byte
	// URLPath is what a person opens on the published port ("/" when
	// empty): the console's web root, e.g. /kiali/.
	URLPath string
	// Root keeps the addon's container root, as the lab's control plane
	// is, instead of a uid of its own. Only for a lab component that
	// reads the lab's own record: the console shows pods from lab.json
	// and their logs, which live in the state directory (0700, root's),
	// and acts with the lab's API token, which no pod's uid may read.
	Root bool
	// Mounts are further volumes of its container besides its data
	// directory; the console's is the state directory itself, read-only
	// at the same path (so the paths lab.json names are right), which
	// keeps a root container from writing anything of the lab.
	Mounts []process.Mount
}

// AddonsDir holds each addon's data directory, in the state directory;
// AddonDataDir is where an addon's container sees its own.
const (
	AddonsDir    = "addons"
	AddonDataDir = "/var/lib/meshlab"
)

func (r *Runtime) startAddon(ctx context.Context, a Addon) error {
	labels := map[string]string{"app": a.Name}
	p, err := r.addPod(ctx, systemNamespace, podName(a.Name, staticHash(a.Name)), a.Name, labels)
	if err != nil {
		return err
	}
	p.serviceAccount = a.Name
	p.noSidecar = true
	p.probe = &probe{port: a.Port, path: a.ReadyPath}
	// Out of the mesh, as Istio's addons: the cluster's DNS and Service
	// VIPs, as CoreDNS and kube-proxy give a pod (Prometheus reaches istiod
	// by name).
	if err := podDNS(p.Netns); err != nil {
		return fmt.Errorf("pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	if err := r.podServices(p.Netns); err != nil {
		return fmt.Errorf("pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	uid := r.allocUID()
	// The data stays in the (private) state directory and is mounted in
	// the addon's container where Istio's addons keep theirs, as a volume
	// is, so its uid reaches it without opening the state directory.
	dir := filepath.Join(r.opts.StateDir, AddonsDir, a.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s's data dir: %w", a.Name, err)
	}
	// The uid is the lab's for this run; data of an earlier run is handed
	// over to it, so the addon keeps what it stored.
	if err := filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, int(uid), int(uid))
	}); err != nil {
		return fmt.Errorf("hand %s's data dir to its uid: %w", a.Name, err)
	}
	for name, data := range a.Files {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, data, 0o600); err != nil {
			return fmt.Errorf("write %s's %s: %w", a.Name, name, err)
		}
		if err := os.Chown(f, int(uid), int(uid)); err != nil {
			return fmt.Errorf("hand %s's %s to its uid: %w", a.Name, name, err)
		}
	}
	mount := process.Mount{Source: dir, Target: AddonDataDir + "/" + a.Name}
	argv := append([]string{r.opts.Self}, a.Args(mount.Target)...)
	id := identity{uid, uid}
	if a.Root {
		id = identity{}
	}
	p.Spec = &corev1.PodSpec{ServiceAccountName: a.Name, Containers: []corev1.Container{{
		Name: a.Name, Image: "meshlab.local/meshlab", Args: argv[1:],
		Ports: []corev1.ContainerPort{{Name: a.PortName, ContainerPort: int32(a.Port), Protocol: corev1.ProtocolTCP}},
	}}}
	if err := r.startContainer(ctx, p, a.Name, argv, nil, id, "", append([]process.Mount{mount}, a.Mounts...)...); err != nil {
		return err
	}
	svc := fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: %[1]s
  namespace: istio-system
  labels: {app: %[1]s}
spec:
  selector: {app: %[1]s}
  ports:
  - {name: %[2]s, port: %[3]d, targetPort: %[3]d}
`, a.Name, a.PortName, a.Port)
	if err := r.applyObjects(ctx, a.Name, svc); err != nil {
		return err
	}
	if err := r.cp.PutWorkload(ctx, r.workload(p, false)); err != nil {
		return err
	}
	if a.HostPort != 0 {
		if err := r.publish(ctx, a.HostPort, netip.AddrPortFrom(netip.MustParseAddr(p.IP), a.Port)); err != nil {
			return err
		}
	}
	r.watchReadiness(ctx, p)
	return nil
}

// addonURL is where a person reaches a published addon.
func (r *Runtime) addonURL(a Addon) string {
	return AddonURL(r.opts.HostAddr, a)
}

// AddonURL is where a person reaches addon a published on host: "" when
// it is not published.
func AddonURL(host string, a Addon) string {
	if a.HostPort == 0 {
		return ""
	}
	path := a.URLPath
	if path == "" {
		path = "/"
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(a.HostPort)) + path
}

// publishedAddons are the addons up publishes, by Service, with the flag
// that publishes each: the local runtime's answer to a port-forward.
var publishedAddons = map[string]struct {
	flag string
	port int
	url  func(lab.URLs) string
}{
	"kiali":      {"--kiali-port", 20001, func(u lab.URLs) string { return u.Kiali }},
	"prometheus": {"--prometheus-port", 9090, func(u lab.URLs) string { return u.Prometheus }},
	"zipkin":     {"--zipkin-port", 9411, func(u lab.URLs) string { return u.Zipkin }},
}

// PortForward says where an addon of istio-system answers on the host:
// the local runtime publishes them itself (up's --kiali-port,
// --prometheus-port and --zipkin-port), so nothing is held.
func (l *Lab) PortForward(_ context.Context, o lab.PortForwardOptions) (lab.Forward, error) {
	st, err := lab.ReadStatus(l.dir)
	if err != nil {
		return lab.Forward{}, err
	}
	a, ok := publishedAddons[o.Service]
	if o.Namespace != systemNamespace || !ok {
		return lab.Forward{}, fmt.Errorf("service %s/%s: the local runtime publishes only kiali, prometheus and zipkin of %s on the host; reach other Services from a pod (`meshlab exec`)", o.Namespace, o.Service, systemNamespace)
	}
	url := a.url(st.URLs)
	if url == "" {
		return lab.Forward{}, fmt.Errorf("%s is not published on the host: the lab was started with %s 0; start it again with it published: meshlab down && sudo meshlab up %s %d", o.Service, a.flag, a.flag, a.port)
	}
	return lab.Forward{URL: url}, nil
}
