package local

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"

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
	p.Spec = &corev1.PodSpec{ServiceAccountName: a.Name, Containers: []corev1.Container{{
		Name: a.Name, Image: "meshlab.local/meshlab", Args: argv[1:],
		Ports: []corev1.ContainerPort{{Name: a.PortName, ContainerPort: int32(a.Port), Protocol: corev1.ProtocolTCP}},
	}}}
	if err := r.startContainer(ctx, p, a.Name, argv, nil, identity{uid, uid}, "", mount); err != nil {
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
	if a.HostPort == 0 {
		return ""
	}
	return fmt.Sprintf("http://%s:%d/", r.opts.HostAddr, a.HostPort)
}
