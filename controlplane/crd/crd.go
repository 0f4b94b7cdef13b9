// Package crd owns the CustomResourceDefinitions of the Istio kinds meshlab
// serves, under Istio's real groups, kinds, plurals, short names and versions.
// Their structural schemas are generated from the istio.io/api protobuf
// descriptors, so a Kubernetes apiserver (with kubectl's default strict field
// validation) accepts and rejects documents the way Istio's own CRDs do,
// without a copy of Istio's CRD YAML to keep in step.
package crd

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshlab/meshlab/controlplane/config"
)

// StorageVersion is the version every Istio CRD stores, as Istio does since v1
// went GA.
const StorageVersion = "v1"

// CRDs returns a fresh CustomResourceDefinition for every kind in
// config.Kinds, in that order.
func CRDs() []*apiextensionsv1.CustomResourceDefinition {
	out := make([]*apiextensionsv1.CustomResourceDefinition, 0, len(config.Kinds))
	for _, k := range config.Kinds {
		out = append(out, For(k))
	}
	return out
}

// For returns the CustomResourceDefinition of one kind.
func For(k config.KindInfo) *apiextensionsv1.CustomResourceDefinition {
	spec := Schema(k.NewSpec().ProtoReflect().Descriptor())
	spec.Description = fmt.Sprintf("Spec of the %s; see https://istio.io/latest/docs/reference/config/.", k.Kind)
	schema := &apiextensionsv1.JSONSchemaProps{
		Type: "object",
		Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"spec": spec,
			// Status is written by controllers (Istio's analysis); it is
			// kept as written rather than described.
			"status": {Type: "object", XPreserveUnknownFields: ptr(true)},
		},
	}
	group := strings.SplitN(k.Group, ".", 2)[0] // "networking", "security"
	var versions []apiextensionsv1.CustomResourceDefinitionVersion
	for _, v := range k.Versions {
		versions = append(versions, apiextensionsv1.CustomResourceDefinitionVersion{
			Name:                     v,
			Served:                   true,
			Storage:                  v == StorageVersion,
			Schema:                   &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: schema.DeepCopy()},
			Subresources:             &apiextensionsv1.CustomResourceSubresources{Status: &apiextensionsv1.CustomResourceSubresourceStatus{}},
			AdditionalPrinterColumns: columns(k.Kind),
		})
	}
	singular := strings.ToLower(string(k.Kind))
	return &apiextensionsv1.CustomResourceDefinition{
		TypeMeta: metav1.TypeMeta{APIVersion: "apiextensions.k8s.io/v1", Kind: "CustomResourceDefinition"},
		ObjectMeta: metav1.ObjectMeta{
			Name:   k.Plural + "." + k.Group,
			Labels: map[string]string{"app": "istiod", "istio": "crd", "app.kubernetes.io/part-of": "meshlab"},
		},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: k.Group,
			Names: apiextensionsv1.CustomResourceDefinitionNames{
				Kind:       string(k.Kind),
				ListKind:   string(k.Kind) + "List",
				Plural:     k.Plural,
				Singular:   singular,
				ShortNames: append([]string(nil), k.Short...),
				Categories: []string{"istio-io", group + "-istio-io"},
			},
			Scope:    apiextensionsv1.NamespaceScoped,
			Versions: versions,
		},
	}
}

// columns are the extra columns `kubectl get` prints, as Istio's CRDs have.
func columns(k config.Kind) []apiextensionsv1.CustomResourceColumnDefinition {
	col := func(name, typ, path, desc string) apiextensionsv1.CustomResourceColumnDefinition {
		return apiextensionsv1.CustomResourceColumnDefinition{Name: name, Type: typ, JSONPath: path, Description: desc}
	}
	age := col("Age", "date", ".metadata.creationTimestamp",
		"CreationTimestamp is a timestamp representing the server time when this object was created.")
	switch k {
	case config.VirtualService:
		return []apiextensionsv1.CustomResourceColumnDefinition{
			col("Gateways", "string", ".spec.gateways", "The names of gateways and sidecars that should apply these routes"),
			col("Hosts", "string", ".spec.hosts", "The destination hosts to which traffic is being sent"), age}
	case config.DestinationRule:
		return []apiextensionsv1.CustomResourceColumnDefinition{
			col("Host", "string", ".spec.host", "The name of a service from the service registry"), age}
	case config.ServiceEntry:
		return []apiextensionsv1.CustomResourceColumnDefinition{
			col("Hosts", "string", ".spec.hosts", "The hosts associated with the ServiceEntry"),
			col("Location", "string", ".spec.location", "Whether the service is external to the mesh or part of the mesh (MESH_EXTERNAL or MESH_INTERNAL)"),
			col("Resolution", "string", ".spec.resolution", "Service resolution mode for the hosts (NONE, STATIC, or DNS)"), age}
	case config.PeerAuthentication:
		return []apiextensionsv1.CustomResourceColumnDefinition{
			col("Mode", "string", ".spec.mtls.mode", "Defines the mTLS mode used for peer authentication."), age}
	case config.AuthorizationPolicy:
		return []apiextensionsv1.CustomResourceColumnDefinition{
			col("Action", "string", ".spec.action", "The operation to take."), age}
	}
	return []apiextensionsv1.CustomResourceColumnDefinition{age}
}

// Schema returns the structural OpenAPI v3 schema of a message as its
// protojson form: messages are objects with a property per field (by JSON
// name), repeated fields arrays, maps objects with additionalProperties,
// enums strings limited to their names, and the well-known types the way
// protojson writes them. Members of a oneof are plain optional properties.
func Schema(md protoreflect.MessageDescriptor) apiextensionsv1.JSONSchemaProps {
	return message(md, map[protoreflect.FullName]bool{})
}

func message(md protoreflect.MessageDescriptor, path map[protoreflect.FullName]bool) apiextensionsv1.JSONSchemaProps {
	if s, ok := wellKnown(md); ok {
		return s
	}
	// A message that contains itself cannot be spelled out; keep what is
	// written below that point, as Istio's generator does.
	if path[md.FullName()] {
		return apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: ptr(true)}
	}
	path[md.FullName()] = true
	defer delete(path, md.FullName())

	s := apiextensionsv1.JSONSchemaProps{Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{}}
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		s.Properties[fd.JSONName()] = field(fd, path)
	}
	return s
}

func field(fd protoreflect.FieldDescriptor, path map[protoreflect.FullName]bool) apiextensionsv1.JSONSchemaProps {
	switch {
	case fd.IsMap():
		v := single(fd.MapValue(), path)
		return apiextensionsv1.JSONSchemaProps{Type: "object", AdditionalProperties: &apiextensionsv1.JSONSchemaPropsOrBool{Allows: true, Schema: &v}}
	case fd.IsList():
		v := single(fd, path)
		return apiextensionsv1.JSONSchemaProps{Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &v}}
	}
	return single(fd, path)
}

// single is the schema of one value of fd's type, ignoring its cardinality.
func single(fd protoreflect.FieldDescriptor, path map[protoreflect.FullName]bool) apiextensionsv1.JSONSchemaProps {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return message(fd.Message(), path)
	case protoreflect.EnumKind:
		return enum(fd.Enum())
	}
	return scalar(fd.Kind())
}

func enum(ed protoreflect.EnumDescriptor) apiextensionsv1.JSONSchemaProps {
	s := apiextensionsv1.JSONSchemaProps{Type: "string"}
	values := ed.Values()
	for i := 0; i < values.Len(); i++ {
		s.Enum = append(s.Enum, apiextensionsv1.JSON{Raw: []byte(`"` + string(values.Get(i).Name()) + `"`)})
	}
	return s
}

func scalar(k protoreflect.Kind) apiextensionsv1.JSONSchemaProps {
	switch k {
	case protoreflect.StringKind:
		return apiextensionsv1.JSONSchemaProps{Type: "string"}
	case protoreflect.BytesKind:
		return apiextensionsv1.JSONSchemaProps{Type: "string", Format: "byte"}
	case protoreflect.BoolKind:
		return apiextensionsv1.JSONSchemaProps{Type: "boolean"}
	case protoreflect.FloatKind:
		return apiextensionsv1.JSONSchemaProps{Type: "number", Format: "float"}
	case protoreflect.DoubleKind:
		return apiextensionsv1.JSONSchemaProps{Type: "number", Format: "double"}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return apiextensionsv1.JSONSchemaProps{Type: "integer", Format: "int32"}
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return apiextensionsv1.JSONSchemaProps{Type: "integer", Minimum: ptr(0.0), Maximum: ptr(4294967295.0)}
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return apiextensionsv1.JSONSchemaProps{Type: "integer", Minimum: ptr(0.0)}
	default: // int64, sint64, sfixed64
		return apiextensionsv1.JSONSchemaProps{Type: "integer", Format: "int64"}
	}
}

// wellKnown maps the google.protobuf types to how protojson writes them.
func wellKnown(md protoreflect.MessageDescriptor) (apiextensionsv1.JSONSchemaProps, bool) {
	switch md.FullName() {
	case "google.protobuf.Duration":
		return apiextensionsv1.JSONSchemaProps{Type: "string"}, true
	case "google.protobuf.Timestamp":
		return apiextensionsv1.JSONSchemaProps{Type: "string", Format: "date-time"}, true
	case "google.protobuf.DoubleValue", "google.protobuf.FloatValue",
		"google.protobuf.Int64Value", "google.protobuf.UInt64Value",
		"google.protobuf.Int32Value", "google.protobuf.UInt32Value",
		"google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue":
		s := scalar(md.Fields().ByName("value").Kind())
		s.Nullable = true
		return s, true
	case "google.protobuf.Struct", "google.protobuf.Any":
		return apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: ptr(true)}, true
	case "google.protobuf.Value":
		return apiextensionsv1.JSONSchemaProps{XPreserveUnknownFields: ptr(true)}, true
	case "google.protobuf.ListValue":
		return apiextensionsv1.JSONSchemaProps{Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{
			Schema: &apiextensionsv1.JSONSchemaProps{XPreserveUnknownFields: ptr(true)}}}, true
	case "google.protobuf.Empty":
		return apiextensionsv1.JSONSchemaProps{Type: "object"}, true
	case "google.protobuf.FieldMask":
		return apiextensionsv1.JSONSchemaProps{Type: "string"}, true
	}
	return apiextensionsv1.JSONSchemaProps{}, false
}

func ptr[T any](v T) *T { return &v }
