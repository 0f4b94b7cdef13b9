package proxy

import (
	"net/http"
	"net/netip"
	"path"
	"strings"
	"sync/atomic"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshlab/meshlab/dataplane/jwtauthn"
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

// httpAuthz is one authorization filter of a connection manager: RBAC
// (with its counters' names), ext_authz, or jwt_authn.
type httpAuthz struct {
	rbac     *rbac.Engine
	counters rbac.Counters
	ext      *extAuthz
	jwt      *jwtauthn.Filter
}

// authorize runs the connection manager's authentication and
// authorization filters on a request, in order: jwt_authn verifies the
// request's token (jwt.go) and writes its payload for the filters after
// it; a denying RBAC filter sends Envoy's 403 "RBAC: access
// denied" and its response detail names the policy that denied it; an
// ext_authz filter runs when the RBAC filters before it recorded what its
// filter_enabled_metadata asks for (Istio's CUSTOM shadow rules).
func (p *Proxy) authorize(ex *exchange, r *http.Request, steps []httpAuthz, trustedHops int) bool {
	dst := ex.conn.dest()
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
		if a, ok := trustedClient(r.Header["X-Forwarded-For"], trustedHops); ok {
			req.Remote = netip.AddrPortFrom(a, 0)
		}
	}
	for i := range steps {
		s := &steps[i]
		if s.jwt != nil {
			if !authenticate(ex, r, s.jwt) {
				return false
			}
			if ex.jwt != nil {
				if req.Metadata == nil {
					req.Metadata = map[string]*structpb.Struct{}
				}
				req.Metadata[jwtauthn.FilterName] = ex.jwt
			}
			continue
		}
		if s.ext != nil {
			if !p.extAuthorize(ex, r, s.ext, req.Metadata) {
				return false
			}
			continue
		}
		d := s.rbac.Allowed(&req)
		p.countRBAC(s.counters, d)
		recordShadow(&req, s.rbac, d)
		if !d.Allowed {
			ex.details = d.ResponseDetail()
			rbac.WriteDenied(ex)
			return false
		}
	}
	return true
}

// trustedClient is Envoy's use_remote_address with xff_num_trusted_hops
// N > 0: the (N+1)th address from the right of X-Forwarded-For once the
// peer is appended, i.e. the Nth of what the client sent; with fewer, or
// an unparsable one, the peer stays the client.
func trustedClient(xff []string, hops int) (netip.Addr, bool) {
	if hops <= 0 || len(xff) == 0 {
		return netip.Addr{}, false
	}
	var all []string
	for _, v := range xff {
		for _, part := range strings.Split(v, ",") {
			all = append(all, strings.TrimSpace(part))
		}
	}
	if len(all) < hops {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(all[len(all)-hops])
	return a, err == nil
}

// countRBAC counts an RBAC filter's decision under Envoy's stat names:
// rbac.allowed/denied when it enforces rules, <shadow prefix>shadow_allowed
// /denied when it has shadow rules (Istio's dry-run and CUSTOM).
func (p *Proxy) countRBAC(c rbac.Counters, d rbac.Decision) {
	if d.Enforced {
		if d.Allowed {
			p.authzCounter(c.Allowed).Add(1)
		} else {
			p.authzCounter(c.Denied).Add(1)
		}
	}
	if d.Shadow.Evaluated {
		if d.Shadow.Allowed {
			p.authzCounter(c.ShadowAllowed).Add(1)
		} else {
			p.authzCounter(c.ShadowDenied).Add(1)
		}
	}
}

func (p *Proxy) authzCounter(name string) *atomic.Uint64 {
	if c, ok := p.authzStats.Load(name); ok {
		return c.(*atomic.Uint64)
	}
	c, _ := p.authzStats.LoadOrStore(name, new(atomic.Uint64))
	return c.(*atomic.Uint64)
}

// recordShadow writes an RBAC filter's shadow result to the request's
// dynamic metadata, merged per filter name as Envoy does, for the
// ext_authz filters after it (Istio's CUSTOM shadow rules).
func recordShadow(req *rbac.Request, e *rbac.Engine, d rbac.Decision) {
	if !d.Shadow.Evaluated {
		return
	}
	if req.Metadata == nil {
		req.Metadata = map[string]*structpb.Struct{}
	}
	ns := e.MetadataNamespace()
	if req.Metadata[ns] == nil {
		req.Metadata[ns] = &structpb.Struct{Fields: map[string]*structpb.Value{}}
	}
	for k, v := range e.ShadowMetadata(d).GetFields() {
		req.Metadata[ns].Fields[k] = v
	}
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
