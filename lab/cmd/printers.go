package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/cli-runtime/pkg/printers"

	"github.com/meshlab/meshlab/lab"
)

// getClock is the clock AGE and RESTARTS are measured against; tests fix it.
var getClock = time.Now

// kubeKind is a Kubernetes kind `get` prints as kubectl does: its names on
// the command line and its table's columns, which are kubectl's own
// (kubernetes/pkg/printers/internalversion), Priority 1 being -o wide's.
type kubeKind struct {
	gvk        schema.GroupVersionKind
	resource   string // plural, as in "pods"
	namespaced bool
	names      []string // what kubectl takes for it, besides RESOURCE.GROUP
	columns    []metav1.TableColumnDefinition
}

func tableCol(name string, wide bool) metav1.TableColumnDefinition {
	d := metav1.TableColumnDefinition{Name: name, Type: "string"}
	if name == "Name" {
		d.Format = "name" // where -o wide's kind prefix goes with several kinds
	}
	if wide {
		d.Priority = 1
	}
	return d
}

var (
	podKind = &kubeKind{
		gvk: corev1.SchemeGroupVersion.WithKind("Pod"), resource: "pods", namespaced: true,
		names: []string{"pod", "pods", "po"},
		columns: []metav1.TableColumnDefinition{tableCol("Name", false), tableCol("Ready", false), tableCol("Status", false),
			tableCol("Restarts", false), tableCol("Age", false),
			tableCol("IP", true), tableCol("Node", true), tableCol("Nominated Node", true), tableCol("Readiness Gates", true)},
	}
	deploymentKind = &kubeKind{
		gvk: appsv1.SchemeGroupVersion.WithKind("Deployment"), resource: "deployments", namespaced: true,
		names: []string{"deployment", "deployments", "deploy"},
		columns: []metav1.TableColumnDefinition{tableCol("Name", false), tableCol("Ready", false), tableCol("Up-to-date", false),
			tableCol("Available", false), tableCol("Age", false),
			tableCol("Containers", true), tableCol("Images", true), tableCol("Selector", true)},
	}
	serviceKind = &kubeKind{
		gvk: corev1.SchemeGroupVersion.WithKind("Service"), resource: "services", namespaced: true,
		names: []string{"service", "services", "svc"},
		columns: []metav1.TableColumnDefinition{tableCol("Name", false), tableCol("Type", false), tableCol("Cluster-IP", false),
			tableCol("External-IP", false), tableCol("Port(s)", false), tableCol("Age", false),
			tableCol("Selector", true)},
	}
	namespaceKind = &kubeKind{
		gvk: corev1.SchemeGroupVersion.WithKind("Namespace"), resource: "namespaces",
		names:   []string{"namespace", "namespaces", "ns"},
		columns: []metav1.TableColumnDefinition{tableCol("Name", false), tableCol("Status", false), tableCol("Age", false)},
	}
	kubeKinds = []*kubeKind{podKind, deploymentKind, serviceKind, namespaceKind}
)

// qualified is the resource as the API names it in errors: "pods",
// "deployments.apps".
func (k *kubeKind) qualified() string {
	if k.gvk.Group == "" {
		return k.resource
	}
	return k.resource + "." + k.gvk.Group
}

// lookupKubeKind finds a kind by any of kubectl's names for it, also
// qualified by its group ("deployments.apps").
func lookupKubeKind(s string) (*kubeKind, bool) {
	s = strings.ToLower(s)
	for _, k := range kubeKinds {
		for _, n := range k.names {
			if s == n || (k.gvk.Group != "" && s == n+"."+k.gvk.Group) {
				return k, true
			}
		}
	}
	return nil, false
}

// list asks the runtime for the kind's objects in ns ("" for every
// namespace) and gives them their apiVersion and kind, which client-go's
// typed lists leave empty and -o json|yaml|name show.
func (k *kubeKind) list(ctx context.Context, rt lab.Runtime, ns string) ([]runtime.Object, error) {
	var objs []runtime.Object
	switch k {
	case podKind:
		items, err := rt.Pods(ctx, ns)
		if err != nil {
			return nil, err
		}
		for i := range items {
			objs = append(objs, &items[i])
		}
	case deploymentKind:
		items, err := rt.Deployments(ctx, ns)
		if err != nil {
			return nil, err
		}
		for i := range items {
			objs = append(objs, &items[i])
		}
	case serviceKind:
		items, err := rt.Services(ctx, ns)
		if err != nil {
			return nil, err
		}
		for i := range items {
			objs = append(objs, &items[i])
		}
	case namespaceKind:
		items, err := rt.Namespaces(ctx)
		if err != nil {
			return nil, err
		}
		for i := range items {
			objs = append(objs, &items[i])
		}
	default:
		return nil, fmt.Errorf("no lister for %s", k.resource)
	}
	for i, o := range objs {
		// A copy: a runtime may hand out the objects of its own cache.
		objs[i] = o.DeepCopyObject()
		objs[i].GetObjectKind().SetGroupVersionKind(k.gvk)
	}
	return objs, nil
}

// row is the object's table row, cell for cell as kubectl prints it.
func (k *kubeKind) row(obj runtime.Object, wide bool) metav1.TableRow {
	r := metav1.TableRow{Object: runtime.RawExtension{Object: obj}}
	switch o := obj.(type) {
	case *corev1.Pod:
		r.Cells = podCells(o)
	case *appsv1.Deployment:
		r.Cells = deploymentCells(o)
	case *corev1.Service:
		r.Cells = serviceCells(o, wide)
	case *corev1.Namespace:
		r.Cells = []any{o.Name, string(o.Status.Phase), kubeAge(o.CreationTimestamp)}
	}
	return r
}

// kubeAge is kubectl's AGE: a rounded, human duration since t.
func kubeAge(t metav1.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(getClock().Sub(t.Time))
}

func isRestartableInit(c *corev1.Container) bool {
	return c != nil && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

func podCondition(p *corev1.Pod, t corev1.PodConditionType) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podCells computes READY, STATUS and RESTARTS as kubectl's printPod does:
// STATUS is the phase unless an init container, then a container, says
// more (Init:1/2, CrashLoopBackOff, Completed...), and Terminating once the
// pod is being deleted; READY counts native sidecars as containers.
func podCells(pod *corev1.Pod) []any {
	restarts, sidecarRestarts := 0, 0
	total := len(pod.Spec.Containers)
	ready := 0
	var lastRestart, lastSidecarRestart time.Time
	later := func(last *time.Time, s corev1.ContainerStatus) {
		if t := s.LastTerminationState.Terminated; t != nil && last.Before(t.FinishedAt.Time) {
			*last = t.FinishedAt.Time
		}
	}

	reason := string(pod.Status.Phase)
	if pod.Status.Reason != "" {
		reason = pod.Status.Reason
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Reason == corev1.PodReasonSchedulingGated {
			reason = corev1.PodReasonSchedulingGated
		}
	}

	inits := map[string]*corev1.Container{}
	for i := range pod.Spec.InitContainers {
		inits[pod.Spec.InitContainers[i].Name] = &pod.Spec.InitContainers[i]
		if isRestartableInit(&pod.Spec.InitContainers[i]) {
			total++
		}
	}

	initializing := false
	for i, s := range pod.Status.InitContainerStatuses {
		restarts += int(s.RestartCount)
		later(&lastRestart, s)
		sidecar := isRestartableInit(inits[s.Name])
		if sidecar {
			sidecarRestarts += int(s.RestartCount)
			later(&lastSidecarRestart, s)
		}
		switch {
		case s.State.Terminated != nil && s.State.Terminated.ExitCode == 0:
			continue
		case sidecar && s.Started != nil && *s.Started:
			if s.Ready {
				ready++
			}
			continue
		case s.State.Terminated != nil:
			switch t := s.State.Terminated; {
			case t.Reason != "":
				reason = "Init:" + t.Reason
			case t.Signal != 0:
				reason = fmt.Sprintf("Init:Signal:%d", t.Signal)
			default:
				reason = fmt.Sprintf("Init:ExitCode:%d", t.ExitCode)
			}
		case s.State.Waiting != nil && s.State.Waiting.Reason != "" && s.State.Waiting.Reason != "PodInitializing":
			reason = "Init:" + s.State.Waiting.Reason
		default:
			reason = fmt.Sprintf("Init:%d/%d", i, len(pod.Spec.InitContainers))
		}
		initializing = true
		break
	}

	if !initializing || podCondition(pod, corev1.PodInitialized) {
		restarts, lastRestart = sidecarRestarts, lastSidecarRestart
		hasRunning := false
		errorReason := ""
		for i := len(pod.Status.ContainerStatuses) - 1; i >= 0; i-- {
			s := pod.Status.ContainerStatuses[i]
			restarts += int(s.RestartCount)
			later(&lastRestart, s)
			switch {
			case s.State.Waiting != nil && s.State.Waiting.Reason != "":
				reason = s.State.Waiting.Reason
			case s.State.Terminated != nil:
				t := s.State.Terminated
				switch {
				case t.Reason != "":
					reason = t.Reason
				case t.Signal != 0:
					reason = fmt.Sprintf("Signal:%d", t.Signal)
				default:
					reason = fmt.Sprintf("ExitCode:%d", t.ExitCode)
				}
				if t.ExitCode != 0 {
					errorReason = reason
				}
			case s.Ready && s.State.Running != nil:
				hasRunning = true
				ready++
			}
		}
		// A pod with one container still running is not Completed.
		if reason == "Completed" {
			switch {
			case hasRunning && podCondition(pod, corev1.PodReady):
				reason = "Running"
			case errorReason != "":
				reason = errorReason
			case hasRunning:
				reason = "NotReady"
			}
		}
	}

	terminal := pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
	switch {
	case pod.DeletionTimestamp != nil && pod.Status.Reason == "NodeLost":
		reason = "Unknown"
	case pod.DeletionTimestamp != nil && !terminal:
		reason = "Terminating"
	}

	restartsCell := strconv.Itoa(restarts)
	if restarts != 0 && !lastRestart.IsZero() {
		restartsCell = fmt.Sprintf("%d (%s ago)", restarts, kubeAge(metav1.NewTime(lastRestart)))
	}

	ip := "<none>"
	switch {
	case len(pod.Status.PodIPs) > 0:
		ip = orNone(pod.Status.PodIPs[0].IP)
	case pod.Status.PodIP != "":
		// The API server always fills podIPs from podIP; a runtime that
		// only sets the latter means the same address.
		ip = pod.Status.PodIP
	}
	node := orNone(pod.Spec.NodeName)
	nominated := orNone(pod.Status.NominatedNodeName)
	gates := "<none>"
	if len(pod.Spec.ReadinessGates) > 0 {
		n := 0
		for _, g := range pod.Spec.ReadinessGates {
			if podCondition(pod, g.ConditionType) {
				n++
			}
		}
		gates = fmt.Sprintf("%d/%d", n, len(pod.Spec.ReadinessGates))
	}
	return []any{pod.Name, fmt.Sprintf("%d/%d", ready, total), reason, restartsCell, kubeAge(pod.CreationTimestamp),
		ip, node, nominated, gates}
}

func deploymentCells(d *appsv1.Deployment) []any {
	var desired int32 = 1 // the API's default, for an object that never went through it
	if d.Spec.Replicas != nil {
		desired = *d.Spec.Replicas
	}
	selector := "<invalid>"
	if s, err := metav1.LabelSelectorAsSelector(d.Spec.Selector); err == nil {
		selector = s.String()
	}
	var names, images []string
	for _, c := range d.Spec.Template.Spec.Containers {
		names = append(names, c.Name)
		images = append(images, c.Image)
	}
	return []any{d.Name, fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, desired),
		int64(d.Status.UpdatedReplicas), int64(d.Status.AvailableReplicas), kubeAge(d.CreationTimestamp),
		strings.Join(names, ","), strings.Join(images, ","), selector}
}

func serviceCells(s *corev1.Service, wide bool) []any {
	clusterIP := "<none>"
	switch {
	case len(s.Spec.ClusterIPs) > 0:
		clusterIP = s.Spec.ClusterIPs[0]
	case s.Spec.ClusterIP != "":
		// The API server always fills clusterIPs from clusterIP; a
		// runtime that only sets the latter means the same address.
		clusterIP = s.Spec.ClusterIP
	}
	ports := make([]string, len(s.Spec.Ports))
	for i, p := range s.Spec.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP // the API's default
		}
		ports[i] = fmt.Sprintf("%d/%s", p.Port, proto)
		if p.NodePort > 0 {
			ports[i] = fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, proto)
		}
	}
	portsCell := strings.Join(ports, ",")
	if portsCell == "" {
		portsCell = "<none>"
	}
	typ := s.Spec.Type
	if typ == "" {
		typ = corev1.ServiceTypeClusterIP
	}
	return []any{s.Name, string(typ), clusterIP, externalIP(s, typ, wide), portsCell, kubeAge(s.CreationTimestamp),
		labels.FormatLabels(s.Spec.Selector)}
}

// externalIP is kubectl's EXTERNAL-IP: the external IPs, a LoadBalancer's
// ingress (<pending> until it has one), an ExternalName's name.
func externalIP(s *corev1.Service, typ corev1.ServiceType, wide bool) string {
	switch typ {
	case corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort:
		if len(s.Spec.ExternalIPs) > 0 {
			return strings.Join(s.Spec.ExternalIPs, ",")
		}
		return "<none>"
	case corev1.ServiceTypeLoadBalancer:
		lb := sets.New[string]()
		for _, in := range s.Status.LoadBalancer.Ingress {
			if in.IP != "" {
				lb.Insert(in.IP)
			} else if in.Hostname != "" {
				lb.Insert(in.Hostname)
			}
		}
		ingress := strings.Join(sets.List(lb), ",")
		if len(s.Spec.ExternalIPs) > 0 {
			return strings.Join(append(sets.List(lb), s.Spec.ExternalIPs...), ",")
		}
		if ingress == "" {
			return "<pending>"
		}
		// kubectl clips a long ingress list to 16 bytes but with -o wide.
		if !wide && len(ingress) > 16 {
			ingress = ingress[:13] + "..."
		}
		return ingress
	case corev1.ServiceTypeExternalName:
		return s.Spec.ExternalName
	}
	return "<unknown>"
}

// getOutput is a parsed -o.
type getOutput struct {
	format   string // table, wide, json, yaml, name, jsonpath
	template string // jsonpath's
	asJSON   bool   // jsonpath-as-json
}

// The -o values get takes, for errors and help.
const outputFormats = "wide, json, yaml, name, jsonpath=TEMPLATE, jsonpath-as-json=TEMPLATE, jsonpath-file=FILE"

// parseOutput reads -o as kubectl does: "jsonpath={.x}" (the shell has
// removed the quotes of -o jsonpath='{.x}'), "jsonpath-file=FILE", and a
// template given with its quotes still on, as when the argument did not go
// through a shell.
func parseOutput(o string) (getOutput, error) {
	switch o {
	case "", "table":
		return getOutput{format: "table"}, nil
	case "wide", "json", "yaml", "name":
		return getOutput{format: o}, nil
	}
	format, tmpl, ok := strings.Cut(o, "=")
	if !ok || (format != "jsonpath" && format != "jsonpath-as-json" && format != "jsonpath-file") {
		return getOutput{}, fmt.Errorf("--output %q: want one of %s", o, outputFormats)
	}
	if len(tmpl) >= 2 && (tmpl[0] == '\'' || tmpl[0] == '"') && tmpl[len(tmpl)-1] == tmpl[0] {
		tmpl = tmpl[1 : len(tmpl)-1]
	}
	if tmpl == "" {
		return getOutput{}, fmt.Errorf("--output %s: template format specified but no template given; e.g. -o %s='{.metadata.name}'", o, format)
	}
	if format == "jsonpath-file" {
		b, err := os.ReadFile(tmpl)
		if err != nil {
			return getOutput{}, fmt.Errorf("--output %s: read the template: %w", o, err)
		}
		tmpl = string(b)
	}
	out := getOutput{format: "jsonpath", template: tmpl, asJSON: format == "jsonpath-as-json"}
	if _, err := printers.NewJSONPathPrinter(tmpl); err != nil {
		return getOutput{}, fmt.Errorf("--output %s: error parsing jsonpath %s: %w", o, tmpl, err)
	}
	return out, nil
}

// printer is kubectl's printer for a machine format.
func (o getOutput) printer() (printers.ResourcePrinter, error) {
	switch o.format {
	// As kubectl without --show-managed-fields: the server's field
	// ownership is noise to a person reading an object.
	case "json":
		return &printers.OmitManagedFieldsPrinter{Delegate: &printers.JSONPrinter{}}, nil
	case "yaml":
		return &printers.OmitManagedFieldsPrinter{Delegate: &printers.YAMLPrinter{}}, nil
	case "name":
		return &printers.NamePrinter{}, nil
	case "jsonpath":
		p, err := printers.NewJSONPathPrinter(o.template)
		if err != nil {
			return nil, err
		}
		// As kubectl: a field one object lacks prints as nothing.
		p.AllowMissingKeys(true)
		p.EnableJSONOutput(o.asJSON)
		return p, nil
	}
	return nil, fmt.Errorf("no printer for -o %s", o.format)
}

// printGeneric prints objects in a machine format as kubectl does: the one
// object when a single one was named, else a v1 List of them all.
func printGeneric(w io.Writer, o getOutput, objs []runtime.Object, single bool) error {
	p, err := o.printer()
	if err != nil {
		return err
	}
	items := make([]unstructured.Unstructured, 0, len(objs))
	for _, obj := range objs {
		u, err := toUnstructured(obj)
		if err != nil {
			return err
		}
		items = append(items, *u)
	}
	if single && len(items) == 1 {
		return p.PrintObj(&items[0], w)
	}
	list := &unstructured.UnstructuredList{Object: map[string]any{
		"apiVersion": "v1", "kind": "List", "metadata": map[string]any{"resourceVersion": ""},
	}, Items: items}
	return p.PrintObj(list, w)
}

func toUnstructured(obj runtime.Object) (*unstructured.Unstructured, error) {
	if u, ok := obj.(*unstructured.Unstructured); ok {
		return u, nil
	}
	// Through JSON rather than the reflecting converter, so that the
	// object is exactly what the API would have sent (omitempty, quantities,
	// times as strings).
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", obj.GetObjectKind().GroupVersionKind().Kind, err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(b); err != nil {
		return nil, fmt.Errorf("decode %s: %w", obj.GetObjectKind().GroupVersionKind().Kind, err)
	}
	return u, nil
}

// tableOptions are the table's options besides the kind's.
type tableOptions struct {
	wide, allNamespaces, withKind, showLabels, noHeaders bool
}

// printTable prints one kind's objects as kubectl's table, through
// kubectl's own table printer (column widths, NAMESPACE first with -A,
// kind/name with several kinds, LABELS with --show-labels).
func printTable(w io.Writer, k *kubeKind, objs []runtime.Object, o tableOptions) error {
	table := &metav1.Table{ColumnDefinitions: k.columns}
	for _, obj := range objs {
		table.Rows = append(table.Rows, k.row(obj, o.wide))
	}
	p := printers.NewTablePrinter(printers.PrintOptions{
		Wide:          o.wide,
		WithNamespace: o.allNamespaces && k.namespaced,
		WithKind:      o.withKind,
		Kind:          k.gvk.GroupKind(),
		ShowLabels:    o.showLabels,
		NoHeaders:     o.noHeaders,
	})
	return p.PrintObj(table, w)
}

// orNone is kubectl's "<none>" for an empty cell.
func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
