// Package registry owns the control plane's view of the mesh's services and
// workloads: what the runtime says exists (Services with their VIPs and ports,
// pods with their IPs and labels). Translation reads it through Snapshot; the
// runtime writes it through the control plane's API.
package registry

import (
	"net/netip"
	"sort"
	"sync"
)

// Port is one port of a Service, as Kubernetes spells it.
type Port struct {
	Name       string `json:"name,omitempty"`
	Port       uint32 `json:"port"`
	TargetPort uint32 `json:"targetPort,omitempty"` // 0 means the same as Port
	Protocol   string `json:"protocol,omitempty"`   // TCP (default) or UDP
	// AppProtocol follows Kubernetes' appProtocol; Istio also reads the port
	// name's prefix (http-, http2-, grpc-, tcp-) to pick the protocol.
	AppProtocol string `json:"appProtocol,omitempty"`
	// NodePort is the port a NodePort Service is published on at every
	// node (the host, on the local runtime); 0 for other Services.
	NodePort uint32 `json:"nodePort,omitempty"`
}

// Target is the port on the workload that Port forwards to.
func (p Port) Target() uint32 {
	if p.TargetPort == 0 {
		return p.Port
	}
	return p.TargetPort
}

// Service is a Kubernetes Service as far as the mesh cares.
type Service struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	VIP       netip.Addr        `json:"vip"`
	Ports     []Port            `json:"ports"`
	Selector  map[string]string `json:"selector,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	// Headless is a Service with clusterIP: None: no VIP; DNS answers
	// with its ready endpoints' addresses.
	Headless bool `json:"headless,omitempty"`
	// Type is ClusterIP (when empty) or NodePort.
	Type string `json:"type,omitempty"`
}

// Hostname is the service's fully qualified name, e.g.
// reviews.default.svc.cluster.local.
func (s Service) Hostname() string {
	return s.Name + "." + s.Namespace + ".svc." + ClusterDomain
}

// Key is namespace/name.
func (s Service) Key() string { return s.Namespace + "/" + s.Name }

// ClusterDomain is the DNS suffix of every Service, as in Kubernetes.
const ClusterDomain = "cluster.local"

// Workload is one pod of the mesh.
type Workload struct {
	Name           string            `json:"name"`
	Namespace      string            `json:"namespace"`
	IP             netip.Addr        `json:"ip"`
	Labels         map[string]string `json:"labels,omitempty"`
	ServiceAccount string            `json:"serviceAccount,omitempty"`
	// Ready is false while the pod's containers are starting; endpoints of
	// unready workloads are not served, as with Kubernetes readiness.
	Ready bool `json:"ready"`
	// Pod is the rest of the pod as Kubernetes shows it, which the mesh
	// does not need but Prometheus's service discovery reports (the
	// control plane's HTTP SD); nil when the runtime does not say.
	Pod *Pod `json:"pod,omitempty"`
}

// Pod is what Prometheus's Kubernetes SD reads of a pod beyond the
// workload's name, namespace, IP, labels and readiness.
type Pod struct {
	Annotations map[string]string `json:"annotations,omitempty"`
	Phase       string            `json:"phase,omitempty"` // Pending, Running, Failed, Succeeded
	NodeName    string            `json:"nodeName,omitempty"`
	HostIP      string            `json:"hostIP,omitempty"`
	UID         string            `json:"uid,omitempty"`
	// Terminating pods have left their Services' endpoints.
	Terminating bool `json:"terminating,omitempty"`
	// The controller of its ownerReferences: ReplicaSet <deployment>-<hash>
	// for a Deployment's pod.
	ControllerKind string      `json:"controllerKind,omitempty"`
	ControllerName string      `json:"controllerName,omitempty"`
	Containers     []Container `json:"containers,omitempty"`
	InitContainers []Container `json:"initContainers,omitempty"`
}

// Container is one container of a pod's spec, with the ID its status gives.
type Container struct {
	Name  string          `json:"name"`
	Image string          `json:"image,omitempty"`
	ID    string          `json:"id,omitempty"`
	Ports []ContainerPort `json:"ports,omitempty"`
}

// ContainerPort is a port a container declares, as Kubernetes spells it.
type ContainerPort struct {
	Name          string `json:"name,omitempty"`
	ContainerPort uint32 `json:"containerPort"`
	Protocol      string `json:"protocol,omitempty"` // TCP when empty, as Kubernetes defaults it
}

// Key is namespace/name.
func (w Workload) Key() string { return w.Namespace + "/" + w.Name }

// Selects reports whether the service's selector matches the workload's
// labels (an empty selector selects nothing, as in Kubernetes).
func (s Service) Selects(w Workload) bool {
	if len(s.Selector) == 0 || s.Namespace != w.Namespace {
		return false
	}
	for k, v := range s.Selector {
		if w.Labels[k] != v {
			return false
		}
	}
	return true
}

// Snapshot is an immutable, sorted copy of the registry.
type Snapshot struct {
	Services  []Service
	Workloads []Workload
	// Generation counts the changes the snapshot includes; it moves with
	// every change, under the same lock, so it always versions exactly
	// this content.
	Generation uint64
}

// Endpoints returns the ready workloads selected by the service, sorted by name.
func (s Snapshot) Endpoints(svc Service) []Workload {
	var out []Workload
	for _, w := range s.Workloads {
		if w.Ready && svc.Selects(w) {
			out = append(out, w)
		}
	}
	return out
}

// Service finds a service by namespace and name.
func (s Snapshot) Service(namespace, name string) (Service, bool) {
	for _, svc := range s.Services {
		if svc.Namespace == namespace && svc.Name == name {
			return svc, true
		}
	}
	return Service{}, false
}

// Registry is safe for concurrent use. Every change bumps its version and
// wakes the channel returned by Changed.
type Registry struct {
	mu        sync.Mutex
	services  map[string]Service
	workloads map[string]Workload
	gen       uint64
	changed   chan struct{}
}

// New returns an empty registry.
func New() *Registry {
	return &Registry{
		services:  map[string]Service{},
		workloads: map[string]Workload{},
		changed:   make(chan struct{}, 1),
	}
}

// Changed is signalled (coalesced) after every change.
func (r *Registry) Changed() <-chan struct{} { return r.changed }

func (r *Registry) notify() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// PutService adds or replaces a service.
func (r *Registry) PutService(s Service) {
	r.mu.Lock()
	r.services[s.Key()] = s
	r.gen++
	r.mu.Unlock()
	r.notify()
}

// DeleteService removes a service; a missing one is not an error.
func (r *Registry) DeleteService(namespace, name string) {
	r.mu.Lock()
	delete(r.services, namespace+"/"+name)
	r.gen++
	r.mu.Unlock()
	r.notify()
}

// PutWorkload adds or replaces a workload.
func (r *Registry) PutWorkload(w Workload) {
	r.mu.Lock()
	r.workloads[w.Key()] = w
	r.gen++
	r.mu.Unlock()
	r.notify()
}

// DeleteWorkload removes a workload; a missing one is not an error.
func (r *Registry) DeleteWorkload(namespace, name string) {
	r.mu.Lock()
	delete(r.workloads, namespace+"/"+name)
	r.gen++
	r.mu.Unlock()
	r.notify()
}

// Snapshot returns a sorted copy of everything registered.
func (r *Registry) Snapshot() Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Snapshot{Generation: r.gen}
	for _, v := range r.services {
		s.Services = append(s.Services, v)
	}
	for _, v := range r.workloads {
		s.Workloads = append(s.Workloads, v)
	}
	sort.Slice(s.Services, func(i, j int) bool { return s.Services[i].Key() < s.Services[j].Key() })
	sort.Slice(s.Workloads, func(i, j int) bool { return s.Workloads[i].Key() < s.Workloads[j].Key() })
	return s
}
