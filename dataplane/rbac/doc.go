// Package rbac evaluates Envoy's RBAC filters (envoy.filters.http.rbac and
// envoy.filters.network.rbac) as Istio 1.24 configures them for
// AuthorizationPolicy, so the proxy enforces exactly what the control plane
// sends.
//
// A config is compiled once (regexes compiled, CIDRs parsed, policies sorted by
// name) and then evaluated per request without allocating. Compile accepts the
// subset of the RBAC API that Istio's builder emits, plus a few neighbours of
// the same shape (destination_port_range, range_match, contains); any other
// field, oneof case, extension or unknown wire field is an error naming it, so
// the proxy NACKs the filter instead of failing open.
//
// Semantics follow Envoy 1.32 (the proxy of Istio 1.24):
//   - Policies are tried in lexicographic name order (Envoy keeps them in a
//     std::map); the first match is the effective policy id.
//   - ALLOW: allowed only if a policy matches, so an ALLOW config with no
//     policies denies everything. DENY: denied if a policy matches, so a DENY
//     config with no policies allows everything. LOG: never denies; a match
//     sets the access log hint.
//   - A filter with no rules (only shadow_rules, as Istio's dry-run emits)
//     enforces nothing: "no engine, allowed by default".
//   - shadow_rules are evaluated first and only reported.
//
// What the engine assumes of the proxy (see Request):
//   - Path is the :path after the connection manager's normalisation: Istio
//     sets normalize_path (RFC 3986 dot segments), merge_slashes and the
//     escaped-slash action from meshConfig.pathNormalization before any filter
//     runs, and RBAC matches what the route sees. The engine does not
//     normalise; url_path and uri_template strip the query and fragment
//     themselves, header matchers on :path see it whole, as Envoy's do.
//   - Header names in Headers are http.Header's canonical keys; pseudo-headers
//     travel in Authority, Method, Path and Scheme. A header sent more than
//     once is matched as its values joined with ",", as Envoy joins them.
//   - TCP connections are evaluated with no HTTP fields: header, url_path and
//     uri_template rules never match there, which is how Envoy's network
//     filter behaves. Istio's builder already drops ALLOW rules with HTTP-only
//     fields and widens DENY rules for TCP; the engine does not second-guess it.
//
// How the proxy must chain the filters: Istio emits one RBAC filter per action
// and relies on filter order, not on the engine, for precedence. In 1.24 the
// inbound HTTP chain is istio.metadata_exchange, then CUSTOM (an RBAC filter
// with only shadow_rules under the istio_ext_authz_ prefix, then ext_authz),
// then jwt_authn/istio_authn, then AUDIT (action LOG), DENY, ALLOW, then
// stats and the router. Each filter is its own Engine; the first that denies
// ends the request, so DENY is decided before ALLOW. The TCP chain has the
// same order with envoy.filters.network.rbac before tcp_proxy.
package rbac
