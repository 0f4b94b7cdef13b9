package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	sigsjson "sigs.k8s.io/json"
)

// The Kubernetes kinds the store keeps for the local runtime, which has no
// API server of its own: what a workload needs to run in the lab.
const (
	Namespace      Kind = "Namespace"
	ServiceAccount Kind = "ServiceAccount"
	Service        Kind = "Service"
	ConfigMap      Kind = "ConfigMap"
	Secret         Kind = "Secret"
	Deployment     Kind = "Deployment"
)

// WorkloadKinds lists them, Namespaces first: the order an apply stores
// and a runtime acts on them.
var WorkloadKinds = []KindInfo{
	{Kind: Namespace, Versions: []string{"v1"}, Plural: "namespaces", Short: []string{"ns"}, ClusterScoped: true,
		NewObject: func() runtime.Object { return &corev1.Namespace{} }},
	{Kind: ServiceAccount, Versions: []string{"v1"}, Plural: "serviceaccounts", Short: []string{"sa"},
		NewObject: func() runtime.Object { return &corev1.ServiceAccount{} }},
	{Kind: ConfigMap, Versions: []string{"v1"}, Plural: "configmaps", Short: []string{"cm"},
		NewObject: func() runtime.Object { return &corev1.ConfigMap{} }},
	{Kind: Secret, Versions: []string{"v1"}, Plural: "secrets",
		NewObject: func() runtime.Object { return &corev1.Secret{} }},
	{Kind: Service, Versions: []string{"v1"}, Plural: "services", Short: []string{"svc"},
		NewObject: func() runtime.Object { return &corev1.Service{} }},
	{Kind: Deployment, Group: "apps", Versions: []string{"v1"}, Plural: "deployments", Short: []string{"deploy"},
		NewObject: func() runtime.Object { return &appsv1.Deployment{} }},
}

// IsWorkloadKind reports whether a document of this apiVersion and kind is
// one of WorkloadKinds.
func IsWorkloadKind(apiVersion, kind string) bool {
	info, ok := kindInfo(Kind(kind))
	if !ok || info.NewObject == nil {
		return false
	}
	group, _, found := strings.Cut(apiVersion, "/")
	if !found {
		group = ""
	}
	return group == info.Group
}

// LookupStoredKind is LookupKind over every kind the store keeps, the
// workload kinds included.
func LookupStoredKind(name string) (KindInfo, bool) {
	if k, ok := LookupKind(name); ok {
		return k, true
	}
	return lookupIn(WorkloadKinds, name)
}

// ClusterScoped reports whether r's kind has no namespace.
func (r Resource) ClusterScoped() bool {
	info, ok := kindInfo(r.Kind)
	return ok && info.ClusterScoped
}

// decodeKube reads a workload kind's document into its Kubernetes type,
// strictly (an unknown or duplicate field is an error naming its path, as
// kubectl apply --validate=strict), and applies the API server's defaults.
func decodeKube(obj map[string]any, r Resource, info KindInfo, version, defaultNamespace string) (Resource, ErrorList) {
	var errs ErrorList
	fail := func(field, format string, args ...any) {
		errs = append(errs, &Error{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	defer func() { errs.about(string(r.Kind), r.Namespace, r.Name) }()
	if version != "v1" {
		fail("apiVersion", "%s does not serve %s; use %s", r.APIVersion, r.Kind, apiVersions(info))
		return r, errs
	}
	b, err := json.Marshal(obj)
	if err != nil {
		fail("", "%v", err)
		return r, errs
	}
	o := info.NewObject()
	strict, err := sigsjson.UnmarshalStrict(b, o)
	if err != nil {
		fail(typeErrorField(err), "%s", typeErrorMessage(err))
		return r, errs
	}
	for _, e := range strict {
		path, msg := strictError(e)
		fail(path, "%s", msg)
	}
	if len(errs) > 0 {
		return r, errs
	}
	meta, err := metaOf(o)
	if err != nil {
		fail("metadata", "%v", err)
		return r, errs
	}
	if info.ClusterScoped {
		meta.SetNamespace("")
	} else if meta.GetNamespace() == "" {
		meta.SetNamespace(defaultNamespace)
	}
	r.Name, r.Namespace = meta.GetName(), meta.GetNamespace()
	if r.Name == "" && meta.GetGenerateName() != "" {
		fail("metadata.generateName", "not supported: meshlab apply needs metadata.name (as kubectl apply)")
	}
	if rv := meta.GetResourceVersion(); rv != "" {
		n, err := strconv.ParseUint(rv, 10, 64)
		if err != nil {
			fail("metadata.resourceVersion", "expected a decimal revision, got %q", rv)
		}
		r.Revision = n
	}
	// What the store owns, not the user: the revision is the store's, and
	// status is the runtime's to report.
	meta.SetResourceVersion("")
	meta.SetUID("")
	meta.SetGeneration(0)
	meta.SetManagedFields(nil)
	meta.SetSelfLink("")
	clearStatus(o)
	r.Labels, r.Annotations = meta.GetLabels(), meta.GetAnnotations()
	defaultKube(o)
	r.Object = o
	return r, errs
}

func metaOf(o runtime.Object) (metav1.Object, error) {
	m, ok := o.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("%T has no metadata", o)
	}
	return m, nil
}

func clearStatus(o runtime.Object) {
	switch x := o.(type) {
	case *corev1.Namespace:
		x.Status = corev1.NamespaceStatus{}
	case *corev1.Service:
		x.Status = corev1.ServiceStatus{}
	case *appsv1.Deployment:
		x.Status = appsv1.DeploymentStatus{}
	}
}

// strictError splits sigs.k8s.io/json's `unknown field "spec.x"` into the
// path and the message this package's errors use.
func strictError(e error) (string, string) {
	msg := e.Error()
	for _, prefix := range []string{"unknown field ", "duplicate field "} {
		if rest, ok := strings.CutPrefix(msg, prefix); ok {
			path, err := strconv.Unquote(rest)
			if err == nil {
				return path, strings.TrimSpace(prefix)
			}
		}
	}
	return "", msg
}

// typeErrorField finds the field path in encoding/json's type error
// ("… into Go struct field Container.spec.template.spec.containers.ports
// of type int32").
func typeErrorField(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return te.Field
	}
	return ""
}

func typeErrorMessage(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("expected %s, got a JSON %s", kubeTypeNoun(te.Type.String()), te.Value)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func kubeTypeNoun(t string) string {
	switch t {
	case "int32", "int64", "int":
		return "an integer"
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "intstr.IntOrString":
		return "an integer or a string"
	}
	switch {
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["):
		return "an object"
	}
	return "an object (" + t + ")"
}

// marshalKube is Marshal for a workload kind: the object with apiVersion,
// kind and the resource's metadata, in the JSON Kubernetes would show.
func marshalKube(r Resource) (map[string]any, error) {
	b, err := json.Marshal(r.Object)
	if err != nil {
		return nil, fmt.Errorf("marshal %s: %w", r.Key(), err)
	}
	var m map[string]any
	if err := decodeJSONInto(b, &m); err != nil {
		return nil, fmt.Errorf("marshal %s: %w", r.Key(), err)
	}
	info, _ := kindInfo(r.Kind)
	av := info.Group + "/" + info.Versions[0]
	if info.Group == "" {
		av = info.Versions[0]
	}
	m["apiVersion"], m["kind"] = av, string(r.Kind)
	meta, _ := m["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	meta["name"] = r.Name
	if !info.ClusterScoped {
		meta["namespace"] = r.Namespace
	}
	if r.Revision != 0 {
		meta["resourceVersion"] = strconv.FormatUint(r.Revision, 10)
	}
	if meta["creationTimestamp"] == nil {
		delete(meta, "creationTimestamp")
	}
	m["metadata"] = meta
	if st, ok := m["status"].(map[string]any); ok && len(st) == 0 {
		delete(m, "status")
	}
	return m, nil
}

// SameObject reports whether two workload objects are equal as Kubernetes
// compares them.
func SameObject(a, b runtime.Object) bool {
	return equality.Semantic.DeepEqual(a, b)
}

// validateWorkload runs the API server's validation of a workload kind and
// puts its errors in this package's form.
func validateWorkload(r Resource) ErrorList {
	errs := fieldErrors(validateKube(r.Object))
	errs.about(string(r.Kind), r.Namespace, r.Name)
	return errs
}

func decodeJSONInto(b []byte, m *map[string]any) error {
	v, err := decodeJSON(b)
	if err != nil {
		return err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("expected an object, got %s", describe(v))
	}
	*m = obj
	return nil
}
