package registry

import "strings"

// FQDN expands a host as written in a resource of namespace ns the way
// the mesh's config tools read it: a short name is a Service of ns;
// "svc.ns" and "svc.ns.svc" are completed to the cluster domain; anything
// else (an external name, a wildcard) is taken as written.
func FQDN(host, ns string) string {
	if strings.Contains(host, "*") || strings.HasSuffix(host, "."+ClusterDomain) {
		return host
	}
	switch parts := strings.Split(host, "."); {
	case len(parts) == 1:
		return host + "." + ns + ".svc." + ClusterDomain
	case len(parts) == 2:
		return host + ".svc." + ClusterDomain
	case len(parts) == 3 && parts[2] == "svc":
		return host + "." + ClusterDomain
	}
	return host
}

// HostMatches reports whether a host pattern ("*", "*.example.com" or a
// name) covers host.
func HostMatches(pattern, host string) bool {
	if pattern == host || pattern == "*" {
		return true
	}
	if suffix, ok := strings.CutPrefix(pattern, "*"); ok {
		return strings.HasSuffix(host, suffix)
	}
	return false
}
