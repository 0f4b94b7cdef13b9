// Package config owns the Istio configuration model of meshlab: the resource
// kinds it accepts, parsing YAML and JSON into istio.io/api types with errors
// that name the file, document and field, and turning resources back into
// Kubernetes-shaped documents.
package config

import (
	"time"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	telemetry "istio.io/api/telemetry/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Kind is an Istio resource kind as spelled in YAML, e.g. "VirtualService".
type Kind string

// The kinds meshlab stores.
const (
	VirtualService        Kind = "VirtualService"
	DestinationRule       Kind = "DestinationRule"
	Gateway               Kind = "Gateway"
	ServiceEntry          Kind = "ServiceEntry"
	Sidecar               Kind = "Sidecar"
	PeerAuthentication    Kind = "PeerAuthentication"
	AuthorizationPolicy   Kind = "AuthorizationPolicy"
	RequestAuthentication Kind = "RequestAuthentication"
	Telemetry             Kind = "Telemetry"
)

// KindInfo describes a kind: its API group, the versions accepted in
// apiVersion, its plural (the name `get` takes) and how to make an empty spec.
type KindInfo struct {
	Kind     Kind
	Group    string
	Versions []string
	Plural   string
	Short    []string // kubectl short names, e.g. "vs"
	NewSpec  func() proto.Message
	// NewObject makes an empty Kubernetes object for the workload kinds
	// (Service, Deployment, …), whose resources carry Object, not Spec.
	NewObject func() runtime.Object
	// ClusterScoped kinds (Namespace) have no namespace.
	ClusterScoped bool
}

// Kinds lists every kind meshlab accepts, in the order `get all` prints them.
var Kinds = []KindInfo{
	{VirtualService, "networking.istio.io", []string{"v1", "v1beta1", "v1alpha3"}, "virtualservices", []string{"vs"}, func() proto.Message { return &networking.VirtualService{} }, nil, false},
	{DestinationRule, "networking.istio.io", []string{"v1", "v1beta1", "v1alpha3"}, "destinationrules", []string{"dr"}, func() proto.Message { return &networking.DestinationRule{} }, nil, false},
	{Gateway, "networking.istio.io", []string{"v1", "v1beta1", "v1alpha3"}, "gateways", []string{"gw"}, func() proto.Message { return &networking.Gateway{} }, nil, false},
	{ServiceEntry, "networking.istio.io", []string{"v1", "v1beta1", "v1alpha3"}, "serviceentries", []string{"se"}, func() proto.Message { return &networking.ServiceEntry{} }, nil, false},
	{Sidecar, "networking.istio.io", []string{"v1", "v1beta1", "v1alpha3"}, "sidecars", nil, func() proto.Message { return &networking.Sidecar{} }, nil, false},
	{PeerAuthentication, "security.istio.io", []string{"v1", "v1beta1"}, "peerauthentications", []string{"pa"}, func() proto.Message { return &security.PeerAuthentication{} }, nil, false},
	{AuthorizationPolicy, "security.istio.io", []string{"v1", "v1beta1"}, "authorizationpolicies", []string{"ap"}, func() proto.Message { return &security.AuthorizationPolicy{} }, nil, false},
	{RequestAuthentication, "security.istio.io", []string{"v1", "v1beta1"}, "requestauthentications", []string{"ra"}, func() proto.Message { return &security.RequestAuthentication{} }, nil, false},
	{Telemetry, "telemetry.istio.io", []string{"v1", "v1alpha1"}, "telemetries", []string{"telemetry"}, func() proto.Message { return &telemetry.Telemetry{} }, nil, false},
}

// Resource is one Istio resource: its identity and its typed spec.
// Spec is always the v1alpha3 (networking), v1beta1 (security) or
// v1alpha1 (telemetry) Go type; the v1 and v1beta1 packages of
// istio.io/api alias them.
type Resource struct {
	APIVersion  string            // as written, e.g. networking.istio.io/v1
	Kind        Kind              // e.g. VirtualService
	Namespace   string            // "default" when the document names none
	Name        string            // metadata.name
	Labels      map[string]string // metadata.labels
	Annotations map[string]string // metadata.annotations
	// CreationTimestamp is an Istio kind's metadata.creationTimestamp:
	// when the object was first stored, at the API server's precision (a
	// second); zero before that. A workload kind keeps its own in Object's
	// metadata; CreationTime and SetCreationTime read and write whichever
	// one the resource has.
	CreationTimestamp time.Time
	Spec              proto.Message // e.g. *networking.VirtualService
	// Object is the whole object of a workload kind (WorkloadKinds), e.g.
	// *appsv1.Deployment, defaulted as the API server would and with no
	// resourceVersion; nil for Istio kinds.
	Object runtime.Object

	// Revision is the store revision that last wrote this resource; zero
	// for a resource that has not been stored.
	Revision uint64
}

// Key identifies a resource: kind/namespace/name.
func (r Resource) Key() string { return string(r.Kind) + "/" + r.Namespace + "/" + r.Name }

// CreationTime is metadata.creationTimestamp, for any kind: Istio resolves
// conflicting configuration (two mesh-wide PeerAuthentications, say) by
// it, oldest first.
func (r Resource) CreationTime() time.Time {
	if m, ok := r.Object.(metav1.Object); ok {
		return m.GetCreationTimestamp().Time
	}
	return r.CreationTimestamp
}

// SetCreationTime sets metadata.creationTimestamp, truncated to the
// second as the API server stores it.
func (r *Resource) SetCreationTime(t time.Time) {
	t = t.UTC().Truncate(time.Second)
	if m, ok := r.Object.(metav1.Object); ok {
		m.SetCreationTimestamp(metav1.NewTime(t))
		return
	}
	r.CreationTimestamp = t
}
