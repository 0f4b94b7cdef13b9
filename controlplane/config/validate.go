package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	telemetry "istio.io/api/telemetry/v1alpha1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Validate checks what Istio's admission webhook rejects and the schema
// alone does not: a VirtualService needs hosts and its destinations a host,
// weights are not negative, a Gateway needs servers with a port and hosts, a
// DestinationRule needs a host and uniquely named subsets, a ServiceEntry
// needs hosts, a PeerAuthentication's portLevelMtls needs a selector and
// valid ports, a DestinationRule's tls the fields its mode needs (Istio's
// pkg/config/validation). It returns an ErrorList naming the resource and field paths.
func Validate(r Resource) error {
	return validate(r).err()
}

func validate(r Resource) ErrorList {
	if r.Object != nil {
		return validateWorkload(r)
	}
	v := validator{}
	if r.Spec == nil {
		v.fail("spec", "required")
	} else if n := proto.Size(r.Spec); n > MaxSpecBytes {
		v.fail("spec", "is %.1f MiB encoded; Kubernetes stores at most 1.5 MiB per object (etcd's request limit), so Istio could not hold it either: split it into several resources", float64(n)/(1<<20))
	}
	switch s := r.Spec.(type) {
	case *networking.VirtualService:
		v.virtualService(s)
	case *networking.Gateway:
		v.gateway(s)
	case *networking.DestinationRule:
		v.destinationRule(s)
	case *security.PeerAuthentication:
		v.peerAuthentication(s)
	case *security.RequestAuthentication:
		v.requestAuthentication(s)
	case *telemetry.Telemetry:
		v.telemetry(s)
	case *networking.ServiceEntry:
		if len(s.GetHosts()) == 0 {
			v.fail("spec.hosts", "required: a ServiceEntry needs at least one host")
		}
		v.hosts("spec.hosts", s.GetHosts())
		for i, h := range s.GetHosts() {
			if h == "*" {
				// Istio refuses it: a ServiceEntry for every host would
				// claim the catch-all virtual host every route
				// configuration already has, and proxies reject the
				// duplicate domain.
				v.fail(fmt.Sprintf("spec.hosts[%d]", i), "invalid host \"*\": a ServiceEntry cannot be for every host")
			}
		}
		for i, p := range s.GetPorts() {
			if p.GetNumber() == 0 || p.GetNumber() > 65535 {
				v.fail(fmt.Sprintf("spec.ports[%d].number", i), "must be a port between 1 and 65535, got %d", p.GetNumber())
			}
		}
	}
	v.errs.about(string(r.Kind), r.Namespace, r.Name)
	return v.errs
}

type validator struct{ errs ErrorList }

func (v *validator) fail(field, format string, args ...any) {
	v.errs = append(v.errs, &Error{Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) hosts(field string, hosts []string) {
	for i, h := range hosts {
		p := fmt.Sprintf("%s[%d]", field, i)
		if h == "" {
			v.fail(p, "must not be empty")
			continue
		}
		if msg := checkWildcardDomain(h); msg != "" {
			v.fail(p, "%s", msg)
		}
	}
}

// checkWildcardDomain is Istio's ValidateWildcardDomain: a DNS name of at
// most 255 bytes whose labels are RFC 1123 labels, the first of which may
// be "*" or start with "*". Proxies take hosts as virtual host domains,
// which must not hold control characters and may be wildcards only at
// the start; an IP address is also a host. Unlike Istio, upper case is
// refused: proxies compare domains ignoring case, so "API.example.com"
// beside "api.example.com" would be one domain in two virtual hosts, which
// they reject.
func checkWildcardDomain(h string) string {
	if _, err := netip.ParseAddr(h); err == nil {
		return ""
	}
	if len(h) > 255 {
		return fmt.Sprintf("invalid host %q: longer than 255 bytes", h)
	}
	labels := strings.Split(h, ".")
	for i, l := range labels {
		if i == 0 {
			if l == "*" {
				continue
			}
			l = strings.TrimPrefix(l, "*")
		}
		if i > 0 && i == len(labels)-1 && l == "" {
			continue // a trailing dot: fully qualified
		}
		if len(l) > 63 || !dns1123Label.MatchString(l) {
			return fmt.Sprintf("invalid host %q: label %q must be lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 (RFC 1123); only the first label may be a wildcard", h, labels[i])
		}
	}
	return ""
}

// gatewayHosts checks a Gateway server's hosts, Istio's
// ValidateNamespaceSlashWildcardHostname: [namespace/]host, where the
// namespace is "*", "." or a namespace name, and the host "*" or a
// wildcard domain.
func (v *validator) gatewayHosts(field string, hosts []string) {
	for i, h := range hosts {
		p := fmt.Sprintf("%s[%d]", field, i)
		ns, host, ok := strings.Cut(h, "/")
		if !ok {
			ns, host = "", h
		}
		switch {
		case ok && ns != "*" && ns != "." && !dns1123Label.MatchString(ns):
			v.fail(p, "invalid namespace %q in %q: want \"*\", \".\" or a namespace name", ns, h)
		case host == "":
			v.fail(p, "must not be empty")
		case host == "*":
		default:
			if msg := checkWildcardDomain(host); msg != "" {
				v.fail(p, "%s", msg)
			}
		}
	}
}

func (v *validator) virtualService(s *networking.VirtualService) {
	if len(s.GetHosts()) == 0 {
		v.fail("spec.hosts", "required: a VirtualService needs at least one host")
	}
	v.hosts("spec.hosts", s.GetHosts())
	mesh := len(s.GetGateways()) == 0 || slices.Contains(s.GetGateways(), "mesh")
	for i, h := range s.GetHosts() {
		if h == "*" && mesh {
			v.fail(fmt.Sprintf("spec.hosts[%d]", i), "wildcard host * is not allowed for virtual services bound to the mesh gateway")
		}
	}
	for i, h := range s.GetHttp() {
		v.httpRoute(fmt.Sprintf("spec.http[%d]", i), h)
		for j, d := range h.GetRoute() {
			v.destination(fmt.Sprintf("spec.http[%d].route[%d]", i, j), d.GetDestination(), d.GetWeight())
		}
		if m := h.GetMirror(); m != nil {
			v.destinationHost(fmt.Sprintf("spec.http[%d].mirror.host", i), m.GetHost())
		}
		for j, m := range h.GetMirrors() {
			if m.GetDestination() != nil {
				v.destinationHost(fmt.Sprintf("spec.http[%d].mirrors[%d].destination.host", i, j), m.GetDestination().GetHost())
			}
		}
	}
	for i, t := range s.GetTcp() {
		for j, d := range t.GetRoute() {
			v.destination(fmt.Sprintf("spec.tcp[%d].route[%d]", i, j), d.GetDestination(), d.GetWeight())
		}
	}
	for i, t := range s.GetTls() {
		for j, d := range t.GetRoute() {
			v.destination(fmt.Sprintf("spec.tls[%d].route[%d]", i, j), d.GetDestination(), d.GetWeight())
		}
	}
}

func (v *validator) destination(path string, d *networking.Destination, weight int32) {
	if d.GetHost() == "" {
		v.fail(path+".destination.host", "required: a route destination needs a host")
	} else {
		v.destinationHost(path+".destination.host", d.GetHost())
	}
	if weight < 0 {
		v.fail(path+".weight", "must not be negative, got %d", weight)
	}
}

// destinationHost is Istio's validateDestination: a host, not "*".
func (v *validator) destinationHost(path, h string) {
	switch h {
	case "":
		v.fail(path, "required")
	case "*":
		v.fail(path, "invalid destination host \"*\"")
	default:
		if msg := checkWildcardDomain(h); msg != "" {
			v.fail(path, "%s", msg)
		}
	}
}

func (v *validator) gateway(s *networking.Gateway) {
	if len(s.GetServers()) == 0 {
		v.fail("spec.servers", "required: a Gateway needs at least one server")
	}
	for i, srv := range s.GetServers() {
		p := fmt.Sprintf("spec.servers[%d]", i)
		switch {
		case srv.GetPort() == nil:
			v.fail(p+".port", "required")
		case srv.GetPort().GetNumber() == 0 || srv.GetPort().GetNumber() > 65535:
			v.fail(p+".port.number", "must be a port between 1 and 65535, got %d", srv.GetPort().GetNumber())
		}
		if len(srv.GetHosts()) == 0 {
			v.fail(p+".hosts", "required: a server needs at least one host (\"*\" for any)")
		}
		v.gatewayHosts(p+".hosts", srv.GetHosts())
		v.serverTLS(p+".tls", srv.GetTls())
	}
}

// serverTLS is the error half of Istio's validateTLSOptions (its
// warnings about ciphers aside): ISTIO_MUTUAL takes no certificates (the
// gateway's own identity is used), SIMPLE needs a certificate and key and
// MUTUAL also a CA bundle unless credentialName names them, and a CRL
// goes with neither credentialName nor SIMPLE.
func (v *validator) serverTLS(path string, t *networking.ServerTLSSettings) {
	if t == nil {
		return
	}
	switch t.GetMode() {
	case networking.ServerTLSSettings_ISTIO_MUTUAL:
		for _, f := range []struct{ field, val string }{
			{"serverCertificate", t.GetServerCertificate()}, {"privateKey", t.GetPrivateKey()},
			{"caCertificates", t.GetCaCertificates()}, {"credentialName", t.GetCredentialName()},
		} {
			if f.val != "" {
				v.fail(path+"."+f.field, "ISTIO_MUTUAL TLS cannot have an associated %s: the gateway's own workload certificate is used", f.field)
			}
		}
		return
	case networking.ServerTLSSettings_SIMPLE, networking.ServerTLSSettings_MUTUAL, networking.ServerTLSSettings_OPTIONAL_MUTUAL:
		if t.GetCredentialName() == "" {
			mode := "SIMPLE"
			if t.GetMode() != networking.ServerTLSSettings_SIMPLE {
				mode = "MUTUAL"
			}
			if t.GetServerCertificate() == "" {
				v.fail(path+".serverCertificate", "%s TLS requires a server certificate (or credentialName)", mode)
			}
			if t.GetPrivateKey() == "" {
				v.fail(path+".privateKey", "%s TLS requires a private key (or credentialName)", mode)
			}
			if mode == "MUTUAL" && t.GetCaCertificates() == "" {
				v.fail(path+".caCertificates", "MUTUAL TLS requires a client CA bundle (or credentialName)")
			}
		}
	}
	if t.GetCaCrl() != "" {
		if t.GetCredentialName() != "" {
			v.fail(path+".caCrl", "CRL is not supported with credentialName: put the CRL in the credential")
		}
		if t.GetMode() == networking.ServerTLSSettings_SIMPLE {
			v.fail(path+".caCrl", "CRL is not supported with SIMPLE TLS")
		}
	}
}

func (v *validator) destinationRule(s *networking.DestinationRule) {
	if s.GetHost() == "" {
		v.fail("spec.host", "required: a DestinationRule needs a host")
	} else if msg := checkWildcardDomain(s.GetHost()); msg != "" {
		v.fail("spec.host", "%s", msg)
	}
	v.trafficPolicy("spec.trafficPolicy", s.GetTrafficPolicy())
	seen := map[string]int{}
	for i, ss := range s.GetSubsets() {
		v.trafficPolicy(fmt.Sprintf("spec.subsets[%d].trafficPolicy", i), ss.GetTrafficPolicy())
		p := fmt.Sprintf("spec.subsets[%d].name", i)
		switch prev, dup := seen[ss.GetName()]; {
		case ss.GetName() == "":
			v.fail(p, "required: a subset needs a name")
		case dup:
			v.fail(p, "duplicate subset name %q (also spec.subsets[%d])", ss.GetName(), prev)
		default:
			seen[ss.GetName()] = i
		}
	}
}

// peerAuthentication is Istio's ValidatePeerAuthentication: port-level
// settings only with a workload selector (a mesh or namespace policy
// cannot name a workload's ports), not an empty map, ports in 1..65535,
// and the selector's labels valid.
func (v *validator) peerAuthentication(s *security.PeerAuthentication) {
	if len(s.GetSelector().GetMatchLabels()) == 0 && len(s.GetPortLevelMtls()) > 0 {
		v.fail("spec.portLevelMtls", "a mesh or namespace PeerAuthentication (no selector) cannot have port level mTLS: add spec.selector.matchLabels naming the workload")
	}
	if s.PortLevelMtls != nil && len(s.PortLevelMtls) == 0 {
		v.fail("spec.portLevelMtls", "port level mTLS, if defined, must have at least one element")
	}
	ports := make([]uint32, 0, len(s.GetPortLevelMtls()))
	for p := range s.GetPortLevelMtls() {
		ports = append(ports, p)
	}
	slices.Sort(ports)
	for _, p := range ports {
		if p == 0 || p > 65535 {
			v.fail(fmt.Sprintf("spec.portLevelMtls[%d]", p), "port must be in range 1..65535")
		}
	}
	v.matchLabels("spec.selector.matchLabels", s.GetSelector().GetMatchLabels())
}

// matchLabels is Istio's validateWorkloadSelector: label keys and values
// as Kubernetes has them, and no empty key.
func (v *validator) matchLabels(path string, labels map[string]string) {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if k == "" {
			v.fail(path, "empty key is not supported in selector")
			continue
		}
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			v.fail(path+"["+k+"]", "invalid label key: %s", strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(labels[k]); len(errs) > 0 {
			v.fail(path+"["+k+"]", "invalid label value %q: %s", labels[k], strings.Join(errs, "; "))
		}
	}
}

// clientTLS is Istio's ValidateTLS (pkg/config/validation/agent) for a
// DestinationRule's tls: insecureSkipVerify excludes the fields it makes
// pointless, credentialName excludes the file fields, and MUTUAL needs a
// client certificate and key (or credentialName).
func (v *validator) clientTLS(path string, t *networking.ClientTLSSettings) {
	if t == nil {
		return
	}
	mode := t.GetMode()
	if t.GetInsecureSkipVerify().GetValue() {
		if mode == networking.ClientTLSSettings_SIMPLE && (t.GetCaCertificates() != "" || t.GetCredentialName() != "" || t.SubjectAltNames != nil) {
			v.fail(path+".insecureSkipVerify", "cannot specify caCertificates or credentialName or subjectAltNames when insecureSkipVerify is set true")
		}
		if mode == networking.ClientTLSSettings_MUTUAL && (t.GetCaCertificates() != "" || t.SubjectAltNames != nil) {
			v.fail(path+".insecureSkipVerify", "cannot specify caCertificates or subjectAltNames when insecureSkipVerify is set true")
		}
	}
	if (mode == networking.ClientTLSSettings_SIMPLE || mode == networking.ClientTLSSettings_MUTUAL) && t.GetCredentialName() != "" {
		if t.GetClientCertificate() != "" || t.GetCaCertificates() != "" || t.GetPrivateKey() != "" || t.GetCaCrl() != "" {
			v.fail(path+".credentialName", "cannot specify client certificates or CA certificate or CA CRL if credentialName is set")
		}
		return
	}
	if mode == networking.ClientTLSSettings_MUTUAL {
		if t.GetClientCertificate() == "" {
			v.fail(path+".clientCertificate", "client certificate required for mutual tls (or set credentialName)")
		}
		if t.GetPrivateKey() == "" {
			v.fail(path+".privateKey", "private key required for mutual tls (or set credentialName)")
		}
	}
}
