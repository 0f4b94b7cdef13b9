package xds

// Access logging, as Istio 1.24 configures Envoy's file access logger
// (pilot/pkg/networking/core/accesslog.go, model/telemetry_logging.go):
// from the mesh config's accessLogFile/accessLogFormat/accessLogEncoding
// when no Telemetry (nor defaultProviders.accessLogging) configures
// access logging, else from the envoyFileAccessLog providers the
// Telemetry resources select, with their CEL filter.

import (
	"encoding/json"
	"strings"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	celv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/filters/cel/v3"
	"google.golang.org/protobuf/types/known/structpb"
	meshv1 "istio.io/api/mesh/v1alpha1"
	tpb "istio.io/api/telemetry/v1alpha1"
)

const (
	fileAccessLog = "envoy.access_loggers.file"
	celFilter     = "envoy.access_loggers.extension_filters.cel"
)

// defaultTextFormat is Istio's EnvoyTextLogFormat, as meshlab's proxy
// prints it (Istio 1.24 writes %UPSTREAM_CLUSTER_RAW%, which is the same
// cluster name where, as here, no cluster has an alt_stat_name).
const defaultTextFormat = `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" ` +
	`%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% ` +
	`"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% ` +
	`%DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" ` +
	`"%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% ` +
	`%DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%` + "\n"

// defaultJSONFormat is Istio's EnvoyJSONLogFormatIstio.
var defaultJSONFormat = &structpb.Struct{Fields: map[string]*structpb.Value{
	"start_time":                        structpb.NewStringValue("%START_TIME%"),
	"route_name":                        structpb.NewStringValue("%ROUTE_NAME%"),
	"method":                            structpb.NewStringValue("%REQ(:METHOD)%"),
	"path":                              structpb.NewStringValue("%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
	"protocol":                          structpb.NewStringValue("%PROTOCOL%"),
	"response_code":                     structpb.NewStringValue("%RESPONSE_CODE%"),
	"response_flags":                    structpb.NewStringValue("%RESPONSE_FLAGS%"),
	"response_code_details":             structpb.NewStringValue("%RESPONSE_CODE_DETAILS%"),
	"connection_termination_details":    structpb.NewStringValue("%CONNECTION_TERMINATION_DETAILS%"),
	"bytes_received":                    structpb.NewStringValue("%BYTES_RECEIVED%"),
	"bytes_sent":                        structpb.NewStringValue("%BYTES_SENT%"),
	"duration":                          structpb.NewStringValue("%DURATION%"),
	"upstream_service_time":             structpb.NewStringValue("%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%"),
	"x_forwarded_for":                   structpb.NewStringValue("%REQ(X-FORWARDED-FOR)%"),
	"user_agent":                        structpb.NewStringValue("%REQ(USER-AGENT)%"),
	"request_id":                        structpb.NewStringValue("%REQ(X-REQUEST-ID)%"),
	"authority":                         structpb.NewStringValue("%REQ(:AUTHORITY)%"),
	"upstream_host":                     structpb.NewStringValue("%UPSTREAM_HOST%"),
	"upstream_cluster":                  structpb.NewStringValue("%UPSTREAM_CLUSTER%"),
	"upstream_local_address":            structpb.NewStringValue("%UPSTREAM_LOCAL_ADDRESS%"),
	"downstream_local_address":          structpb.NewStringValue("%DOWNSTREAM_LOCAL_ADDRESS%"),
	"downstream_remote_address":         structpb.NewStringValue("%DOWNSTREAM_REMOTE_ADDRESS%"),
	"requested_server_name":             structpb.NewStringValue("%REQUESTED_SERVER_NAME%"),
	"upstream_transport_failure_reason": structpb.NewStringValue("%UPSTREAM_TRANSPORT_FAILURE_REASON%"),
}}

// textFormat is Istio's: a format line ends with a newline.
func textFormat(f string) string {
	if f == "" {
		return defaultTextFormat
	}
	if !strings.HasSuffix(f, "\n") {
		f += "\n"
	}
	return f
}

func fileLogger(path string, format *corev3.SubstitutionFormatString, filter *tpb.AccessLogging_Filter) *accesslogv3.AccessLog {
	al := &accesslogv3.AccessLog{
		Name: fileAccessLog,
		ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: mustAny(&filev3.FileAccessLog{
			Path:            path,
			AccessLogFormat: &filev3.FileAccessLog_LogFormat{LogFormat: format},
		})},
	}
	if filter != nil {
		al.Filter = &accesslogv3.AccessLogFilter{FilterSpecifier: &accesslogv3.AccessLogFilter_ExtensionFilter{
			ExtensionFilter: &accesslogv3.ExtensionFilter{
				Name:       celFilter,
				ConfigType: &accesslogv3.ExtensionFilter_TypedConfig{TypedConfig: mustAny(&celv3.ExpressionFilter{Expression: filter.GetExpression()})},
			},
		}}
	}
	return al
}

func textLogFormat(f string, omitEmpty bool) *corev3.SubstitutionFormatString {
	return &corev3.SubstitutionFormatString{
		Format: &corev3.SubstitutionFormatString_TextFormatSource{TextFormatSource: &corev3.DataSource{
			Specifier: &corev3.DataSource_InlineString{InlineString: textFormat(f)},
		}},
		OmitEmptyValues: omitEmpty,
	}
}

func jsonLogFormat(s *structpb.Struct, omitEmpty bool) *corev3.SubstitutionFormatString {
	return &corev3.SubstitutionFormatString{
		Format:          &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: s},
		OmitEmptyValues: omitEmpty,
	}
}

// meshAccessLog is Istio's legacy access log: accessLogFile with
// accessLogFormat in accessLogEncoding (JSON: the format is a JSON
// object of keys to commands, Istio's default keys when empty or not
// an object); none when accessLogFile is empty.
func meshAccessLog(mesh *meshv1.MeshConfig) []*accesslogv3.AccessLog {
	if mesh.GetAccessLogFile() == "" {
		return nil
	}
	var f *corev3.SubstitutionFormatString
	if mesh.GetAccessLogEncoding() == meshv1.MeshConfig_JSON {
		s := defaultJSONFormat
		if mesh.GetAccessLogFormat() != "" {
			var m map[string]any
			if err := json.Unmarshal([]byte(mesh.GetAccessLogFormat()), &m); err == nil {
				if st, err := structpb.NewStruct(m); err == nil {
					s = st
				}
			}
		}
		f = jsonLogFormat(s, false)
	} else {
		f = textLogFormat(mesh.GetAccessLogFormat(), false)
	}
	return []*accesslogv3.AccessLog{fileLogger(mesh.GetAccessLogFile(), f, nil)}
}

// accessLogs are one class's access loggers: the mesh config's when no
// Telemetry configures access logging, else one per envoyFileAccessLog
// provider in scope (sorted by name; other provider kinds log nothing
// here).
func (x *index) accessLogs(a applicable, mode tpb.WorkloadMode) []*accesslogv3.AccessLog {
	providers := loggingProviders(a, x.mesh, mode)
	if providers == nil {
		return meshAccessLog(x.mesh)
	}
	var out []*accesslogv3.AccessLog
	for _, name := range sortedKeys(providers) {
		p := fetchProvider(x.mesh, name).GetEnvoyFileAccessLog()
		if p == nil {
			continue
		}
		var f *corev3.SubstitutionFormatString
		switch lf := p.GetLogFormat().GetLogFormat().(type) {
		case *meshv1.MeshConfig_ExtensionProvider_EnvoyFileAccessLogProvider_LogFormat_Labels:
			labels := lf.Labels
			if len(labels.GetFields()) == 0 {
				labels = defaultJSONFormat
			}
			f = jsonLogFormat(labels, p.GetOmitEmptyValues())
		case *meshv1.MeshConfig_ExtensionProvider_EnvoyFileAccessLogProvider_LogFormat_Text:
			f = textLogFormat(lf.Text, p.GetOmitEmptyValues())
		default:
			f = textLogFormat("", p.GetOmitEmptyValues())
		}
		path := p.GetPath()
		if path == "" {
			path = "/dev/stdout" // Istio's default; Envoy needs one
		}
		out = append(out, fileLogger(path, f, providers[name]))
	}
	return out
}
