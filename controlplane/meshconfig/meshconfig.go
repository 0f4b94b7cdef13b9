// Package meshconfig reads the mesh configuration as istiod does: the
// `mesh` key of the `istio` ConfigMap in the root namespace, YAML of
// istio.io/api's mesh/v1alpha1 MeshConfig, parsed strictly (an unknown or
// mistyped field is an error naming it, as istiod's ApplyMeshConfig
// refuses it). It is kept small on purpose: the authorization CUSTOM
// action reads extensionProviders from it today, telemetry later.
package meshconfig

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	meshv1 "istio.io/api/mesh/v1alpha1"
	telemetry "istio.io/api/telemetry/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshlab/meshlab/controlplane/config"
)

// Where istiod finds it (pkg/config/mesh: the "istio" ConfigMap, key
// "mesh", in the istiod namespace, istio-system by default).
const (
	Namespace     = "istio-system"
	ConfigMapName = "istio"
	Key           = "mesh"
)

// Parse reads the YAML of a MeshConfig strictly, as written, without
// defaults (Apply adds them). An empty document is the empty MeshConfig.
func Parse(data []byte) (*meshv1.MeshConfig, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("mesh config: %w", err)
	}
	mc := &meshv1.MeshConfig{}
	if string(js) == "null" {
		return mc, nil
	}
	if err := protojson.Unmarshal(js, mc); err != nil {
		if f := fieldAt(js, err); f != "" {
			return nil, fmt.Errorf("mesh config: field %q: %w", f, err)
		}
		return nil, fmt.Errorf("mesh config: %w", err)
	}
	if err := validate(mc); err != nil {
		return nil, fmt.Errorf("mesh config: %w", err)
	}
	return mc, nil
}

var errPos = regexp.MustCompile(`\(line (\d+):(\d+)\)`)

// fieldAt names the field a protojson error is about: its position is in
// the JSON made from the YAML (one line), which the user never saw, and
// a bad value's message ("invalid google.protobuf.Duration value") does
// not name the field; the last key before that position does.
func fieldAt(js []byte, err error) string {
	m := errPos.FindStringSubmatch(err.Error())
	if m == nil || m[1] != "1" {
		return ""
	}
	col, _ := strconv.Atoi(m[2])
	if col < 1 || col > len(js) {
		return ""
	}
	keys := regexp.MustCompile(`"([A-Za-z0-9_]+)":`).FindAllSubmatchIndex(js[:col-1], -1)
	if len(keys) == 0 {
		return ""
	}
	last := keys[len(keys)-1]
	return string(js[last[2]:last[3]])
}

// validate refuses what istiod's ValidateMeshConfig refuses in the parts
// meshlab reads (validateExtensionProvider): a unique, non-empty name, and
// for the ext_authz providers a service, a port, a known statusOnError, a
// pathPrefix starting with "/", no lone "*" among the header lists.
func validate(mc *meshv1.MeshConfig) error {
	var errs []error
	seen := map[string]bool{}
	for i, p := range mc.GetExtensionProviders() {
		field := fmt.Sprintf("extensionProviders[%d]", i)
		switch {
		case p.GetName() == "":
			errs = append(errs, fmt.Errorf("%s.name: must not be empty", field))
		case seen[p.GetName()]:
			errs = append(errs, fmt.Errorf("%s.name: duplicate provider %q", field, p.GetName()))
		}
		seen[p.GetName()] = true
		if h := p.GetEnvoyExtAuthzHttp(); h != nil {
			f := field + ".envoyExtAuthzHttp"
			errs = append(errs, service(f, h.GetService(), h.GetPort()), statusOnError(f, h.GetStatusOnError()))
			if pp := h.GetPathPrefix(); pp != "" && !strings.HasPrefix(pp, "/") {
				errs = append(errs, fmt.Errorf("%s.pathPrefix: must begin with /, found %q", f, pp))
			}
			for name, l := range map[string][]string{
				"includeRequestHeadersInCheck": h.GetIncludeRequestHeadersInCheck(),
				"headersToUpstreamOnAllow":     h.GetHeadersToUpstreamOnAllow(),
				"headersToDownstreamOnDeny":    h.GetHeadersToDownstreamOnDeny(),
				"headersToDownstreamOnAllow":   h.GetHeadersToDownstreamOnAllow(),
			} {
				if slices.Contains(l, "*") {
					errs = append(errs, fmt.Errorf("%s.%s: a single wildcard \"*\" is not supported, use a prefix or suffix match", f, name))
				}
			}
		}
		if z := p.GetZipkin(); z != nil {
			errs = append(errs, service(field+".zipkin", z.GetService(), z.GetPort()))
		}
		if g := p.GetEnvoyExtAuthzGrpc(); g != nil {
			f := field + ".envoyExtAuthzGrpc"
			errs = append(errs, service(f, g.GetService(), g.GetPort()), statusOnError(f, g.GetStatusOnError()))
		}
	}
	return errors.Join(errs...)
}

func service(field, svc string, port uint32) error {
	var errs []error
	if svc == "" {
		errs = append(errs, fmt.Errorf("%s.service: must not be empty", field))
	}
	if port < 1 || port > 65535 {
		errs = append(errs, fmt.Errorf("%s.port: must be in [1, 65535], found %d", field, port))
	}
	return errors.Join(errs...)
}

func statusOnError(field, s string) error {
	if s == "" {
		return nil
	}
	if c, err := strconv.Atoi(s); err != nil || c < 100 || c > 599 {
		return fmt.Errorf("%s.statusOnError: %q is not an HTTP status code", field, s)
	}
	return nil
}

// IsMeshConfigMap says whether r is the ConfigMap istiod reads.
func IsMeshConfigMap(r config.Resource) bool {
	return r.Kind == config.ConfigMap && r.Namespace == Namespace && r.Name == ConfigMapName
}

// FromResource reads the mesh ConfigMap's `mesh` key over Istio's
// defaults (Apply); a ConfigMap without the key is the defaults.
func FromResource(r config.Resource) (*meshv1.MeshConfig, error) {
	cm, ok := r.Object.(*corev1.ConfigMap)
	if !ok {
		return nil, fmt.Errorf("configmap %s/%s: not a ConfigMap object", r.Namespace, r.Name)
	}
	mc, err := Apply([]byte(cm.Data[Key]))
	if err != nil {
		return nil, fmt.Errorf("configmap %s/%s key %q: %w", r.Namespace, r.Name, Key, err)
	}
	return mc, nil
}

// Check refuses, at apply, a mesh ConfigMap istiod would not load; other
// resources pass.
func Check(r config.Resource) error {
	if !IsMeshConfigMap(r) {
		return nil
	}
	_, err := FromResource(r)
	return err
}

// Find returns the mesh config among resources (nil when there is no
// mesh ConfigMap). A bad one was refused at apply; should one be stored
// anyway, the error says so and the caller keeps its last good one.
func Find(rs []config.Resource) (*meshv1.MeshConfig, error) {
	for _, r := range rs {
		if IsMeshConfigMap(r) {
			return FromResource(r)
		}
	}
	return nil, nil
}

// CheckTelemetry refuses a Telemetry naming a provider mc does not define
// (Istio's built-ins prometheus, stackdriver and envoy are always
// defined): istiod would configure nothing for it, and only say so in its
// log. Names match ignoring case, as istiod looks them up. Other
// resources pass.
func CheckTelemetry(r config.Resource, mc *meshv1.MeshConfig) error {
	tel, ok := r.Spec.(*telemetry.Telemetry)
	if !ok {
		return nil
	}
	if mc == nil {
		mc = Default()
	}
	var errs []error
	check := func(field string, ps []*telemetry.ProviderRef) {
		for i, p := range ps {
			if !slices.ContainsFunc(mc.GetExtensionProviders(), func(e *meshv1.MeshConfig_ExtensionProvider) bool {
				return strings.EqualFold(e.GetName(), p.GetName())
			}) {
				errs = append(errs, fmt.Errorf("%s.providers[%d].name: provider %q is not among the mesh config's extensionProviders (%s); define it in the mesh key of ConfigMap %s/%s", field, i, p.GetName(), providerList(mc), Namespace, ConfigMapName))
			}
		}
	}
	for i, t := range tel.GetTracing() {
		check(fmt.Sprintf("spec.tracing[%d]", i), t.GetProviders())
	}
	for i, m := range tel.GetMetrics() {
		check(fmt.Sprintf("spec.metrics[%d]", i), m.GetProviders())
	}
	for i, l := range tel.GetAccessLogging() {
		check(fmt.Sprintf("spec.accessLogging[%d]", i), l.GetProviders())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("telemetry %s/%s: %w", r.Namespace, r.Name, err)
	}
	return nil
}

func providerList(mc *meshv1.MeshConfig) string {
	var names []string
	for _, p := range mc.GetExtensionProviders() {
		names = append(names, p.GetName())
	}
	return strings.Join(names, ", ")
}
