package meshconfig

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// fields are the fields of m's message type.
func fields(m proto.Message) []protoreflect.FieldDescriptor {
	fds := m.ProtoReflect().Descriptor().Fields()
	out := make([]protoreflect.FieldDescriptor, fds.Len())
	for i := range out {
		out[i] = fds.Get(i)
	}
	return out
}

// protoJSONName is the JSON name of a key protojson accepts (the JSON
// name or the proto name, e.g. default_config), so that both spellings
// count as setting the field.
func protoJSONName(m proto.Message, key string) string {
	if fd := m.ProtoReflect().Descriptor().Fields().ByName(protoreflect.Name(key)); fd != nil {
		return fd.JSONName()
	}
	return key
}
