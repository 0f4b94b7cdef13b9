// Package fieldcheck owns the data plane's rule for configuration it
// cannot honour: a message may set only the fields the proxy implements.
// A field the proxy would skip could be a restriction (a source range, a
// SAN to verify, a JWT requirement), and skipping a restriction fails
// open; so the update carrying it is refused (NACKed), as Envoy rejects
// what it does not know.
package fieldcheck

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Only returns an error naming the first field of m that is set and not
// in allowed, or saying that m carries fields this build's protos do not
// know (a newer control plane's). A nil m passes.
func Only(m proto.Message, allowed ...protoreflect.Name) error {
	if m == nil {
		return nil
	}
	r := m.ProtoReflect()
	if !r.IsValid() {
		return nil
	}
	var bad protoreflect.Name
	r.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !slices.Contains(allowed, fd.Name()) {
			bad = fd.Name()
			return false
		}
		return true
	})
	if bad != "" {
		return fmt.Errorf("%s.%s is not supported", r.Descriptor().FullName(), bad)
	}
	if len(r.GetUnknown()) > 0 {
		return fmt.Errorf("%s carries fields unknown to this proxy", r.Descriptor().FullName())
	}
	return nil
}
