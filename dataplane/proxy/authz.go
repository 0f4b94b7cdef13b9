package proxy

import (
	"net/http"
	"net/netip"
	"path"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshlab/meshlab/dataplane/jwtauthn"
	"github.com/meshlab/meshlab/dataplane/rbac"
)

// The RBAC filters of a chain (AuthorizationPolicy, translated by the
// control plane as Istio does), checked as Envoy's run: the network
// filters once per connection before its terminal filter, the HTTP
// filters per request before routing, in order, the first denial ending
// it. Peer identities come from the client certificate; until sidecars
// speak mutual TLS there is none, so principal rules match nothing, as in
// Istio for a plaintext peer.

// authorizeConn runs a chain's network RBAC filters on a new connection.
func authorizeConn(engines []*rbac.Engine, ci *connInfo) bool {
	dst := ci.orig
	if !dst.IsValid() {
		dst = ci.local
	}
	req := rbac.Request{Source: ci.remote, Destination: dst}
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
		TLS:         r.TLS != nil,
	}
	if ex.jwt != nil {
		req.Metadata = map[string]*structpb.Struct{jwtauthn.FilterName: ex.jwt}
	}
	if r.TLS != nil {
		req.SNI = r.TLS.ServerName
		if len(r.TLS.PeerCertificates) > 0 {
			leaf := r.TLS.PeerCertificates[0]
			for _, u := range leaf.URIs {
				req.PeerURISANs = append(req.PeerURISANs, u.String())
			}
			req.PeerDNSSANs = leaf.DNSNames
			req.PeerSubject = leaf.Subject.String()
		}
	}
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
