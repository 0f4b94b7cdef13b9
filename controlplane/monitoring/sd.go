package monitoring

import (
	"cmp"
	"net"
	"regexp"
	"slices"
	"strconv"

	"github.com/meshlab/meshlab/controlplane/registry"
)

// PathSD is the control plane's Prometheus HTTP service discovery: the
// targets and __meta_kubernetes_* labels Prometheus's Kubernetes SD would
// find for role=pod or role=endpoints, for runtimes without a Kubernetes
// API to discover from (the local runtime).
const PathSD = "/debug/prometheus/sd"

// Roles PathSD answers, as kubernetes_sd_configs names them.
const (
	RolePod       = "pod"
	RoleEndpoints = "endpoints"
)

// TargetGroup is one entry of an HTTP SD answer
// (https://prometheus.io/docs/prometheus/latest/http_sd/).
type TargetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// The label names of Prometheus's Kubernetes SD, as v2.42's
// discovery/kubernetes (pod.go, endpoints.go, service.go) spells them.
const (
	meta          = "__meta_kubernetes_"
	labelNS       = meta + "namespace"
	labelPodName  = meta + "pod_name"
	labelPodIP    = meta + "pod_ip"
	labelPodReady = meta + "pod_ready"
	labelPodPhase = meta + "pod_phase"
	labelPodNode  = meta + "pod_node_name"
	labelPodHost  = meta + "pod_host_ip"
	labelPodUID   = meta + "pod_uid"
	labelCtlKind  = meta + "pod_controller_kind"
	labelCtlName  = meta + "pod_controller_name"
	labelCName    = meta + "pod_container_name"
	labelCID      = meta + "pod_container_id"
	labelCImage   = meta + "pod_container_image"
	labelCPort    = meta + "pod_container_port_number"
	labelCPortN   = meta + "pod_container_port_name"
	labelCPortP   = meta + "pod_container_port_protocol"
	labelCInit    = meta + "pod_container_init"

	labelEpsName    = meta + "endpoints_name"
	labelEpPortName = meta + "endpoint_port_name"
	labelEpPortProt = meta + "endpoint_port_protocol"
	labelEpReady    = meta + "endpoint_ready"
	labelEpKind     = meta + "endpoint_address_target_kind"
	labelEpTarget   = meta + "endpoint_address_target_name"
	labelEpNode     = meta + "endpoint_node_name"
	labelSvcName    = meta + "service_name"
)

// invalidLabelChar is Prometheus's strutil.SanitizeLabelName.
var invalidLabelChar = regexp.MustCompile(`[^a-zA-Z0-9_]`)

func sanitize(name string) string { return invalidLabelChar.ReplaceAllString(name, "_") }

// addMap adds a map of Kubernetes labels or annotations under prefix, with
// the *present label for each, as Prometheus does.
func addMap(ls map[string]string, prefix, presentPrefix string, m map[string]string) {
	for k, v := range m {
		ln := sanitize(k)
		ls[prefix+ln] = v
		ls[presentPrefix+ln] = "true"
	}
}

// Targets answers role for the workloads of snap in namespaces (all when
// empty), sorted by address and then labels so the answer is stable.
func Targets(snap registry.Snapshot, role string, namespaces []string) []TargetGroup {
	in := func(ns string) bool { return len(namespaces) == 0 || slices.Contains(namespaces, ns) }
	var out []TargetGroup
	switch role {
	case RolePod:
		for _, w := range snap.Workloads {
			if in(w.Namespace) {
				out = append(out, podTargets(w)...)
			}
		}
	case RoleEndpoints:
		for _, svc := range snap.Services {
			if in(svc.Namespace) {
				out = append(out, endpointsTargets(svc, snap.Workloads)...)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b TargetGroup) int {
		return cmp.Or(cmp.Compare(a.Labels[labelNS], b.Labels[labelNS]), cmp.Compare(a.Labels[labelPodName], b.Labels[labelPodName]),
			cmp.Compare(a.Labels[labelSvcName], b.Labels[labelSvcName]), cmp.Compare(a.Targets[0], b.Targets[0]),
			cmp.Compare(a.Labels[labelCName], b.Labels[labelCName]))
	})
	return out
}

// podInfo is w's pod; a workload the runtime said nothing more of is a
// running pod without containers (and so without targets).
func podInfo(w registry.Workload) registry.Pod {
	if w.Pod == nil {
		return registry.Pod{Phase: "Running"}
	}
	return *w.Pod
}

// podLabels is Prometheus's podLabels.
func podLabels(w registry.Workload) map[string]string {
	p := podInfo(w)
	ready := "false"
	if w.Ready {
		ready = "true"
	}
	ls := map[string]string{
		labelPodName: w.Name, labelPodIP: w.IP.String(), labelPodReady: ready, labelPodPhase: p.Phase,
		labelPodNode: p.NodeName, labelPodHost: p.HostIP, labelPodUID: p.UID,
	}
	if p.ControllerKind != "" {
		ls[labelCtlKind] = p.ControllerKind
	}
	if p.ControllerName != "" {
		ls[labelCtlName] = p.ControllerName
	}
	addMap(ls, meta+"pod_label_", meta+"pod_labelpresent_", w.Labels)
	addMap(ls, meta+"pod_annotation_", meta+"pod_annotationpresent_", p.Annotations)
	return ls
}

// protocol is a port's protocol as the API server defaults it.
func protocol(p string) string {
	if p == "" {
		return "TCP"
	}
	return p
}

// group makes the one-target group of addr with the group labels and the
// target's own (which win, as in Prometheus's scrape of a group).
func group(addr string, groupLabels, target map[string]string) TargetGroup {
	ls := make(map[string]string, len(groupLabels)+len(target))
	for k, v := range groupLabels {
		ls[k] = v
	}
	for k, v := range target {
		ls[k] = v
	}
	return TargetGroup{Targets: []string{addr}, Labels: ls}
}

// podTargets is Prometheus's buildPod: one target per container port of
// every container and init container, and one (the bare pod IP) for a
// container without ports.
func podTargets(w registry.Workload) []TargetGroup {
	p := podInfo(w)
	gl := podLabels(w)
	gl[labelNS] = w.Namespace
	ip := w.IP.String()
	var out []TargetGroup
	containers := append(slices.Clone(p.Containers), p.InitContainers...)
	for i, c := range containers {
		isInit := strconv.FormatBool(i >= len(p.Containers))
		if len(c.Ports) == 0 {
			out = append(out, group(ip, gl, map[string]string{labelCName: c.Name, labelCID: c.ID, labelCImage: c.Image, labelCInit: isInit}))
			continue
		}
		for _, port := range c.Ports {
			n := strconv.FormatUint(uint64(port.ContainerPort), 10)
			out = append(out, group(net.JoinHostPort(ip, n), gl, map[string]string{
				labelCName: c.Name, labelCID: c.ID, labelCImage: c.Image,
				labelCPort: n, labelCPortN: port.Name, labelCPortP: protocol(port.Protocol), labelCInit: isInit,
			}))
		}
	}
	return out
}

// endpointsTargets is Prometheus's buildEndpoints for the Endpoints object
// Kubernetes' endpoints controller keeps for svc: named as the Service,
// labelled with its labels (plus service.kubernetes.io/headless when
// headless), an address per selected pod (ready or not; terminating and
// finished pods left out) on every Service port's target port.
func endpointsTargets(svc registry.Service, workloads []registry.Workload) []TargetGroup {
	if len(svc.Selector) == 0 {
		return nil // Endpoints of a Service without a selector are the user's, not the controller's
	}
	epLabels := map[string]string{}
	for k, v := range svc.Labels {
		epLabels[k] = v
	}
	if svc.Headless {
		epLabels["service.kubernetes.io/headless"] = ""
	} else {
		delete(epLabels, "service.kubernetes.io/headless")
	}
	gl := map[string]string{labelNS: svc.Namespace, labelEpsName: svc.Name, labelSvcName: svc.Name}
	addMap(gl, meta+"service_label_", meta+"service_labelpresent_", svc.Labels)
	addMap(gl, meta+"endpoints_label_", meta+"endpoints_labelpresent_", epLabels)

	var pods []registry.Workload
	for _, w := range workloads {
		p := podInfo(w)
		if !svc.Selects(w) || p.Terminating || p.Phase == "Failed" || p.Phase == "Succeeded" {
			continue
		}
		pods = append(pods, w)
	}
	var out []TargetGroup
	for _, w := range pods {
		p := podInfo(w)
		covered := map[uint32]bool{}
		for _, sp := range svc.Ports {
			port := sp.Target()
			covered[port] = true
			n := strconv.FormatUint(uint64(port), 10)
			ready := "false"
			if w.Ready {
				ready = "true"
			}
			t := map[string]string{
				labelEpPortName: sp.Name, labelEpPortProt: protocol(sp.Protocol), labelEpReady: ready,
				labelEpKind: "Pod", labelEpTarget: w.Name,
			}
			if p.NodeName != "" {
				t[labelEpNode] = p.NodeName
			}
			for k, v := range podLabels(w) {
				t[k] = v
			}
			// The last container declaring the port wins, as in Prometheus.
			for _, c := range p.Containers {
				for _, cp := range c.Ports {
					if cp.ContainerPort == port {
						t[labelCName], t[labelCImage], t[labelCPortN] = c.Name, c.Image, cp.Name
						t[labelCPort], t[labelCPortP] = n, protocol(sp.Protocol)
						break
					}
				}
			}
			out = append(out, group(net.JoinHostPort(w.IP.String(), n), gl, t))
		}
		// The pod's other container ports, which no Service port covers.
		for _, c := range p.Containers {
			for _, cp := range c.Ports {
				if covered[cp.ContainerPort] {
					continue
				}
				n := strconv.FormatUint(uint64(cp.ContainerPort), 10)
				t := map[string]string{labelCName: c.Name, labelCImage: c.Image, labelCPortN: cp.Name, labelCPort: n, labelCPortP: protocol(cp.Protocol)}
				for k, v := range podLabels(w) {
					t[k] = v
				}
				out = append(out, group(net.JoinHostPort(w.IP.String(), n), gl, t))
			}
		}
	}
	return out
}
