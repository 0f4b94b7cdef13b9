package controlplane

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/monitoring"
	"github.com/meshlab/meshlab/controlplane/registry"
)

// The Kubernetes side of the local runtime's store: without an API server,
// the control plane keeps the workload kinds (Namespaces, Services,
// Deployments, …) the way it keeps Istio config, does what the API server
// does on write (namespace existence, nodePort allocation, creation
// times), and turns stored Services into the registry's, as the endpoints
// and service controllers would. The runtime watches the store and runs the
// Deployments.

// SystemNamespaces exist without being applied and cannot be deleted, as in
// a cluster.
var SystemNamespaces = []string{"default", "istio-system", "kube-system", "kube-public", "kube-node-lease"}

// NodePortRange is Kubernetes' default --service-node-port-range.
const (
	NodePortMin = 30000
	NodePortMax = 32767
)

func isSystemNamespace(ns string) bool { return slices.Contains(SystemNamespaces, ns) }

// admitWorkloads does what the API server does when a batch is written:
// every namespaced object's namespace must exist (stored, or in the batch),
// Services of type NodePort get their nodePorts (kept across updates, the
// lowest free one otherwise; one already taken is an error) and the
// client's creation times are dropped, for the store's. The errors name
// document and field; the caller stores nothing if there are any.
func (s *Server) admitWorkloads(docs []api.Document, rs []config.Resource) []string {
	var errs []string
	fail := func(i int, field, format string, args ...any) {
		d := docs[i]
		r := rs[i]
		id := string(r.Kind) + " " + r.Name
		if !r.ClusterScoped() {
			id = string(r.Kind) + " " + r.Namespace + "/" + r.Name
		}
		errs = append(errs, fmt.Sprintf("%s: document %d (%s): %s: %s", d.Source, d.Index+1, id, field, fmt.Sprintf(format, args...)))
	}
	namespaces := map[string]bool{}
	for _, n := range SystemNamespaces {
		namespaces[n] = true
	}
	stored, err := s.store.List(config.Namespace, "")
	if err != nil {
		return []string{err.Error()}
	}
	for _, n := range stored {
		namespaces[n.Name] = true
	}
	for _, r := range rs {
		if r.Kind == config.Namespace {
			namespaces[r.Name] = true
		}
	}
	// nodePorts in use, by Services other than the one being written.
	used := map[int32]string{}
	svcs, err := s.store.List(config.Service, "")
	if err != nil {
		return []string{err.Error()}
	}
	inBatch := map[string]bool{}
	for _, r := range rs {
		if r.Kind == config.Service {
			inBatch[r.Key()] = true
		}
	}
	storedSvc := map[string]*corev1.Service{}
	for _, r := range svcs {
		svc := r.Object.(*corev1.Service)
		storedSvc[r.Key()] = svc
		if inBatch[r.Key()] {
			continue
		}
		for _, p := range svc.Spec.Ports {
			if p.NodePort != 0 {
				used[p.NodePort] = r.Namespace + "/" + r.Name
			}
		}
	}
	for i, r := range rs {
		// Every kind, Istio's included (Istio picks the oldest of
		// conflicting policies by it): a creation time the client sent is
		// ignored, as the API server does; the store sets it when the
		// object is created and keeps it when it is updated.
		rs[i].SetCreationTime(time.Time{})
		if r.Object == nil {
			continue
		}
		if !r.ClusterScoped() && !namespaces[r.Namespace] {
			fail(i, "metadata.namespace", "namespace %q not found; apply a Namespace named %s first, or in the same file (as Kubernetes, meshlab does not create it for you)", r.Namespace, r.Namespace)
		}
		svc, ok := r.Object.(*corev1.Service)
		if !ok || (svc.Spec.Type != corev1.ServiceTypeNodePort && svc.Spec.Type != corev1.ServiceTypeLoadBalancer) {
			continue
		}
		// Explicit ones first, so an allocated one never takes a port
		// another Service of the batch asks for.
		for j, p := range svc.Spec.Ports {
			if p.NodePort == 0 {
				continue
			}
			if owner, taken := used[p.NodePort]; taken {
				fail(i, fmt.Sprintf("spec.ports[%d].nodePort", j), "Invalid value: %d: provided port is already allocated (to Service %s)", p.NodePort, owner)
				continue
			}
			used[p.NodePort] = r.Namespace + "/" + r.Name
		}
		old := storedSvc[r.Key()]
		for j := range svc.Spec.Ports {
			p := &svc.Spec.Ports[j]
			if p.NodePort != 0 {
				continue
			}
			if old != nil {
				for _, op := range old.Spec.Ports {
					if op.NodePort != 0 && op.Port == p.Port && op.Protocol == p.Protocol && used[op.NodePort] == "" {
						p.NodePort = op.NodePort
					}
				}
			}
			for n := int32(NodePortMin); p.NodePort == 0 && n <= NodePortMax; n++ {
				if used[n] == "" {
					p.NodePort = n
				}
			}
			if p.NodePort == 0 {
				fail(i, fmt.Sprintf("spec.ports[%d].nodePort", j), "no free port left in %d-%d", NodePortMin, NodePortMax)
				continue
			}
			used[p.NodePort] = r.Namespace + "/" + r.Name
		}
	}
	return errs
}

// expandNamespaceDeletes adds, for every Namespace being deleted, every
// object stored in it: deleting a namespace deletes its contents, as in
// Kubernetes. System namespaces cannot be deleted.
func (s *Server) expandNamespaceDeletes(keys []string) ([]string, error) {
	out := append([]string(nil), keys...)
	for _, k := range keys {
		kind, _, _ := strings.Cut(k, "/")
		info, ok := config.LookupStoredKind(kind)
		if !ok || info.Kind != config.Namespace {
			continue
		}
		name := k[strings.LastIndex(k, "/")+1:]
		if isSystemNamespace(name) {
			return nil, fmt.Errorf("namespace %q is a system namespace and may not be deleted", name)
		}
		for _, list := range [][]config.KindInfo{config.Kinds, config.WorkloadKinds} {
			for _, kind := range list {
				if kind.ClusterScoped {
					continue
				}
				rs, err := s.store.List(kind.Kind, name)
				if err != nil {
					return nil, err
				}
				for _, r := range rs {
					out = append(out, r.Key())
				}
			}
		}
	}
	return out, nil
}

// syncServices makes the registry's Services those of the store (plus the
// ones runtimes put through the registry API): each gets its VIP (none when
// headless), its ports with their protocol hints and nodePorts; a Service no
// longer stored leaves the registry and frees its VIP.
func (s *Server) syncServices() error {
	s.svcMu.Lock()
	defer s.svcMu.Unlock()
	rs, err := s.store.List(config.Service, "")
	if err != nil {
		return fmt.Errorf("sync services: %w", err)
	}
	want := map[string]bool{}
	for _, r := range rs {
		svc := r.Object.(*corev1.Service)
		out, err := s.registryService(r.Namespace, r.Name, svc)
		if err != nil {
			return err
		}
		want[out.Key()] = true
		if cur, ok := s.reg.Snapshot().Service(out.Namespace, out.Name); ok && sameService(cur, out) {
			continue
		}
		s.reg.PutService(out)
		s.metrics.Inbound(monitoring.InboundService)
	}
	for key := range s.fromStore {
		if want[key] {
			continue
		}
		ns, name, _ := strings.Cut(key, "/")
		s.reg.DeleteService(ns, name)
		s.metrics.Inbound(monitoring.InboundServiceDelete)
		if err := s.store.ReleaseVIP(key); err != nil {
			return fmt.Errorf("free the VIP of %s: %w", key, err)
		}
	}
	s.fromStore = want
	return nil
}

func (s *Server) registryService(ns, name string, svc *corev1.Service) (registry.Service, error) {
	out := registry.Service{Name: name, Namespace: ns, Selector: svc.Spec.Selector, Labels: svc.Labels,
		Type: string(svc.Spec.Type)}
	if out.Type == string(corev1.ServiceTypeClusterIP) {
		out.Type = ""
	}
	if svc.Spec.ClusterIP == corev1.ClusterIPNone {
		out.Headless = true
	} else {
		vip, err := s.store.AllocateVIP(ns+"/"+name, s.opts.VIPPool)
		if err != nil {
			return out, fmt.Errorf("allocate a VIP for service %s/%s: %w", ns, name, err)
		}
		out.VIP = vip
	}
	for _, p := range svc.Spec.Ports {
		port := registry.Port{Name: p.Name, Port: uint32(p.Port), Protocol: string(p.Protocol), NodePort: uint32(p.NodePort)}
		if p.AppProtocol != nil {
			port.AppProtocol = *p.AppProtocol
		}
		if t := p.TargetPort.IntValue(); t > 0 {
			port.TargetPort = uint32(t)
		}
		out.Ports = append(out.Ports, port)
	}
	return out, nil
}

func sameService(a, b registry.Service) bool {
	return a.Name == b.Name && a.Namespace == b.Namespace && a.VIP == b.VIP && a.Headless == b.Headless && a.Type == b.Type &&
		slices.Equal(a.Ports, b.Ports) && maps.Equal(a.Selector, b.Selector) && maps.Equal(a.Labels, b.Labels)
}

// handleWatch answers once the store's revision is past the asked one, or
// after a while with the current one: the local runtime's long poll for
// workload changes (as a Kubernetes watch, without its stream).
func (s *Server) handleWatch(w http.ResponseWriter, r *http.Request) {
	since, err := strconv.ParseUint(r.URL.Query().Get("revision"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "revision: want a number: "+err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), api.WatchTimeout)
	defer cancel()
	revs := s.store.Watch(ctx)
	for s.store.Revision() <= since {
		select {
		case <-ctx.Done():
			writeJSON(w, http.StatusOK, api.Version{Revision: s.store.Revision()})
			return
		case <-revs:
		}
	}
	writeJSON(w, http.StatusOK, api.Version{Revision: s.store.Revision()})
}

// workloadsChanged follows a commit: the registry's Services follow the
// stored ones (on the local runtime; a cluster's come from its API server).
func (s *Server) workloadsChanged() error {
	if s.kube != nil {
		return nil
	}
	return s.syncServices()
}
