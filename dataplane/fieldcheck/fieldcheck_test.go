package fieldcheck

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

func TestOnly(t *testing.T) {
	unknown := &corev3.Locality{Region: "r"}
	unknown.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1))
	for _, tt := range []struct {
		name    string
		m       proto.Message
		allowed []protoreflect.Name
		wantErr string
	}{
		{"nil", nil, nil, ""},
		{"nothing set", &corev3.Locality{}, nil, ""},
		{"allowed fields", &corev3.Locality{Region: "r", Zone: "z"}, []protoreflect.Name{"region", "zone"}, ""},
		{"a field not allowed", &corev3.Locality{Region: "r", SubZone: "s"}, []protoreflect.Name{"region"}, "envoy.config.core.v3.Locality.sub_zone is not supported"},
		{"unknown wire field", unknown, []protoreflect.Name{"region"}, "envoy.config.core.v3.Locality carries fields unknown to this proxy"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := Only(tt.m, tt.allowed...)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Only = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
