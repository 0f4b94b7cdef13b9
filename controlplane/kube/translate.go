package kube

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/registry"
)

// Translate turns Kubernetes objects into the registry the local runtime
// would have written for the same pods and Services:
//
//   - a Service becomes a registry.Service with its ClusterIP as the VIP
//     (headless Services have none), its ports (a named targetPort resolved
//     through the Service's EndpointSlices), selector and labels;
//   - a running pod with an IP becomes a registry.Workload with its labels
//     and service account, ready as its EndpointSlice endpoints say (its
//     Ready condition when no slice names it);
//   - an endpoint whose pod is not known (no targetRef, or a pod this
//     watcher has not seen) becomes a workload carrying the selector of the
//     Service it belongs to, so the Service still selects it.
func Translate(svcs []*corev1.Service, slices []*discoveryv1.EndpointSlice, pods []*corev1.Pod) registry.Snapshot {
	var snap registry.Snapshot
	bySvc := map[string][]*discoveryv1.EndpointSlice{}
	for _, s := range slices {
		if name := s.Labels[discoveryv1.LabelServiceName]; name != "" {
			k := s.Namespace + "/" + name
			bySvc[k] = append(bySvc[k], s)
		}
	}
	selectors := map[string]map[string]string{}
	for _, s := range svcs {
		svc := registry.Service{Name: s.Name, Namespace: s.Namespace, Selector: s.Spec.Selector, Labels: s.Labels}
		if ip, err := netip.ParseAddr(s.Spec.ClusterIP); err == nil {
			svc.VIP = ip
		}
		for _, p := range s.Spec.Ports {
			rp := registry.Port{Name: p.Name, Port: uint32(p.Port), Protocol: string(p.Protocol)}
			if p.AppProtocol != nil {
				rp.AppProtocol = *p.AppProtocol
			}
			if p.TargetPort.IntVal != 0 {
				rp.TargetPort = uint32(p.TargetPort.IntVal)
			} else if p.TargetPort.StrVal != "" {
				rp.TargetPort = namedPort(bySvc[s.Namespace+"/"+s.Name], p.Name)
			}
			if rp.TargetPort == rp.Port {
				rp.TargetPort = 0
			}
			if rp.Protocol == string(corev1.ProtocolTCP) {
				rp.Protocol = ""
			}
			svc.Ports = append(svc.Ports, rp)
		}
		snap.Services = append(snap.Services, svc)
		selectors[svc.Key()] = s.Spec.Selector
	}

	workloads := map[string]*registry.Workload{}
	podsByKey := map[string]*corev1.Pod{}
	for _, p := range pods {
		ip, err := netip.ParseAddr(p.Status.PodIP)
		if err != nil || p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		w := &registry.Workload{Name: p.Name, Namespace: p.Namespace, IP: ip, Labels: maps.Clone(p.Labels),
			ServiceAccount: p.Spec.ServiceAccountName, Ready: podReady(p)}
		workloads[w.Key()] = w
		podsByKey[w.Key()] = p
	}
	// Endpoint readiness is what Kubernetes routes by; it overrides the
	// pod's own condition, and any slice saying ready makes it ready.
	fromSlices := map[string]bool{}
	for _, s := range slices {
		svcKey := s.Namespace + "/" + s.Labels[discoveryv1.LabelServiceName]
		for _, ep := range s.Endpoints {
			ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
			for _, a := range ep.Addresses {
				ip, err := netip.ParseAddr(a)
				if err != nil {
					continue
				}
				key := ""
				if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" {
					ns := ep.TargetRef.Namespace
					if ns == "" {
						ns = s.Namespace
					}
					key = ns + "/" + ep.TargetRef.Name
				}
				w, known := workloads[key]
				if !known || podsByKey[key] == nil {
					sel := selectors[svcKey]
					if len(sel) == 0 {
						continue // a selectorless Service: the registry selects by labels only
					}
					name := strings.ReplaceAll(a, ".", "-")
					if ep.TargetRef != nil && ep.TargetRef.Name != "" {
						name = ep.TargetRef.Name
					}
					key = s.Namespace + "/" + name
					if w = workloads[key]; w == nil {
						w = &registry.Workload{Name: name, Namespace: s.Namespace, IP: ip, Labels: map[string]string{}}
						workloads[key] = w
					}
					maps.Copy(w.Labels, sel)
				}
				if !fromSlices[key] {
					w.Ready = ready
				} else {
					w.Ready = w.Ready || ready
				}
				fromSlices[key] = true
			}
		}
	}
	for _, w := range workloads {
		snap.Workloads = append(snap.Workloads, *w)
	}
	sort.Slice(snap.Services, func(i, j int) bool { return snap.Services[i].Key() < snap.Services[j].Key() })
	sort.Slice(snap.Workloads, func(i, j int) bool { return snap.Workloads[i].Key() < snap.Workloads[j].Key() })
	return snap
}

func namedPort(slices []*discoveryv1.EndpointSlice, name string) uint32 {
	for _, s := range slices {
		for _, p := range s.Ports {
			if p.Name != nil && *p.Name == name && p.Port != nil {
				return uint32(*p.Port)
			}
		}
	}
	return 0
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Resource turns an Istio object from the API server into a resource the
// way `meshlab apply` reads one: its JSON through config.Unmarshal and
// config.Validate. The resource's identity is filled in even on error, for
// reporting; rv is its resourceVersion.
func Resource(obj any) (config.Resource, string, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return config.Resource{}, "", fmt.Errorf("unexpected object %T", obj)
	}
	id := config.Resource{Kind: config.Kind(u.GetKind()), Namespace: u.GetNamespace(), Name: u.GetName(), APIVersion: u.GetAPIVersion()}
	// The API server's bookkeeping is not configuration.
	c := u.DeepCopy()
	unstructured.RemoveNestedField(c.Object, "metadata", "managedFields")
	unstructured.RemoveNestedField(c.Object, "status")
	b, err := json.Marshal(c.Object)
	if err != nil {
		return id, u.GetResourceVersion(), fmt.Errorf("encode %s: %w", id.Key(), err)
	}
	r, err := config.Unmarshal(b)
	if err == nil {
		err = config.Validate(r)
	}
	if err != nil {
		return id, u.GetResourceVersion(), err
	}
	r.Revision = 0 // the store numbers its own revisions
	return r, u.GetResourceVersion(), nil
}

func equalJSON(a, b any) bool {
	// Registry values are plain data; DeepEqual treats nil and empty maps
	// as different, so compare what would be sent instead.
	if reflect.DeepEqual(a, b) {
		return true
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}
