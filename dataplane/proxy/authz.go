package proxy

import (
	"net/http"
	"net/netip"
	"path"
	"strings"

	"github.com/meshlab/meshlab/dataplane/rbac"
)

// The RBAC filters of a chain (AuthorizationPolicy, translated by the
// control plane as Istio does), checked as Envoy's run: the network
// filters once per connection before its terminal filter, the HTTP
// filters per request before routing, in order, the first denial ending
// it. Peer identities come from the verified client certificate of the
// connection's TLS handshake (mtls.go): its URI SAN is the principal
// (spiffe://<td>/ns/<ns>/sa/<sa>); a plaintext peer has none, so
// principal and namespace rules match nothing, as in Istio.

// authorizeConn runs a chain's network RBAC filters on a new connection.
func authorizeConn(engines []*rbac.Engine, ci *connInfo) bool {
	dst := ci.orig
	if !dst.IsValid() {
		dst = ci.local
	}
	req := rbac.Request{Source: ci.remote, Destination: dst}
	peerOf(&req, ci)
	for _, e := range engines {
		if !e.Allowed(&req).Allowed {
			return false
		}
	}
	return true
}

// authorize runs the connection manager's HTTP RBAC filters on a request;
// a denied one gets Envoy's 403 "RBAC: access denied" and its response
// detail names the policy that denied it.
func authorize(ex *exchange, r *http.Request, engines []*rbac.Engine) bool {
	dst := ex.conn.orig
	if !dst.IsValid() {
		dst = ex.conn.local
	}
	req := rbac.Request{
		Authority:   r.Host,
		Method:      r.Method,
		Path:        rbacPath(r.URL.Path),
		Headers:     r.Header,
		Source:      ex.conn.remote,
		Destination: dst,
	}
	peerOf(&req, ex.conn)
	if len(ex.conn.peer) > 0 {
		if a, err := netip.ParseAddr(ex.conn.peer[0]); err == nil {
			req.Remote = netip.AddrPortFrom(a, 0)
		}
	}
	for _, e := range engines {
		if d := e.Allowed(&req); !d.Allowed {
			ex.details = d.ResponseDetail()
			rbac.WriteDenied(ex)
			return false
		}
	}
	return true
}

// peerOf fills in what the connection's TLS handshake established, read
// once per connection (no request allocates it).
func peerOf(req *rbac.Request, ci *connInfo) {
	id := ci.id
	if id == nil {
		return
	}
	req.TLS, req.SNI = true, ci.sni
	req.PeerURISANs, req.PeerDNSSANs, req.PeerSubject = id.uriSANs, id.dnsSANs, id.subject
}

// rbacPath is the path the RBAC filters match, normalised as Istio's
// default (pathNormalization BASE: Envoy's normalize_path, RFC 3986) has
// Envoy do it before they run: percent-escapes decoded (net/http's
// URL.Path), dot segments removed, so that "/%68eaders" or
// "/x/../headers" cannot slip past a rule on "/headers" to an app that
// reads them as that. It also merges slashes and decodes %2F, which
// Istio does only on request: for a DENY that denies more, for an ALLOW
// allows less — never the other way round. The query is not part of it.
func rbacPath(p string) string {
	if p == "" {
		return "/"
	}
	clean := path.Clean(p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	return clean
}
