package rbac

import (
	"net/http"
	"net/netip"
	"strings"
	"time"

	rbacpb "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// Request is what an RBAC filter sees of one HTTP request or TCP connection.
// Leave the HTTP fields empty for a TCP connection.
type Request struct {
	// Pseudo-headers; an empty one is absent.
	Authority, Method, Path, Scheme string
	// Headers holds the other request headers under http.Header's canonical
	// keys.
	Headers http.Header

	// Source is the connection's remote address (Envoy's source_ip and
	// direct_remote_ip: meshlab has no PROXY protocol listener filter, so the
	// two are the same).
	Source netip.AddrPort
	// Remote is the downstream remote address as the connection manager
	// derived it (X-Forwarded-For with use_remote_address / xff_num_trusted_hops);
	// Envoy's remote_ip. Zero means Source.
	Remote netip.AddrPort
	// Destination is the downstream local address: the original destination
	// of a captured connection (destination_ip, destination_port).
	Destination netip.AddrPort
	// SNI is the server name the client asked for (requested_server_name).
	SNI string

	// TLS says the connection is TLS; the Peer* fields come from the client
	// certificate (empty when it sent none). authenticated principals match
	// the URI SANs, then the DNS SANs, then the subject, as Envoy does.
	TLS         bool
	PeerURISANs []string
	PeerDNSSANs []string
	PeerSubject string

	// Metadata is the stream's dynamic metadata by filter name, e.g.
	// "envoy.filters.http.jwt_authn" holding {"payload": {iss, sub, aud, ...}}
	// as the JWT filter writes it for Istio.
	Metadata map[string]*structpb.Struct
}

func (r *Request) remote() netip.AddrPort {
	if r.Remote.IsValid() {
		return r.Remote
	}
	return r.Source
}

// header returns the request's value for a header matcher's name, with
// repeated headers joined by "," as Envoy's getAllOfHeaderAsString does.
func (r *Request) header(h *headerMatcher) (string, bool) {
	switch h.pseudo {
	case pseudoAuthority:
		return r.Authority, r.Authority != ""
	case pseudoMethod:
		return r.Method, r.Method != ""
	case pseudoPath:
		return r.Path, r.Path != ""
	case pseudoScheme:
		return r.Scheme, r.Scheme != ""
	case pseudoOther:
		return "", false
	}
	vs := r.Headers[h.key]
	switch len(vs) {
	case 0:
		return "", false
	case 1:
		return vs[0], true
	}
	// Rare (a header sent twice); the only allocation a request can cost.
	return strings.Join(vs, ","), true
}

// Decision is an RBAC filter's verdict on one request or connection.
type Decision struct {
	// Allowed is false when the filter denies: send Denied (HTTP) or close the
	// connection (TCP).
	Allowed bool
	// Enforced says the filter has rules; without them it allows by default.
	Enforced bool
	// Policy is the effective policy id: the first policy, in name order,
	// that matched; "" when none did. A deny by an ALLOW filter has none.
	Policy string
	// Logged is the access log hint of a LOG (AUDIT) filter: a policy matched.
	// Envoy writes it as envoy.common access_log_hint.
	Logged bool
	// Shadow is the result of shadow_rules (Istio's dry-run policies).
	Shadow Shadow
}

// Shadow is the reported-only result of shadow_rules.
type Shadow struct {
	// Evaluated says the filter has shadow rules.
	Evaluated bool
	Allowed   bool
	// Policy is the effective shadow policy id, "" when none matched.
	Policy string
}

// ResponseDetail is the response code detail Envoy records for this decision
// when it denies.
func (d Decision) ResponseDetail() string { return ResponseDetail(d.Policy) }

// Engine is a compiled RBAC filter: its rules and shadow rules.
type Engine struct {
	rules  *ruleSet // nil: no enforcement
	shadow *ruleSet // nil: no shadow rules

	// ShadowStatPrefix is shadow_rules_stat_prefix (Istio: istio_dry_run_allow_
	// or istio_dry_run_deny_); it prefixes the shadow counters and the dynamic
	// metadata keys.
	ShadowStatPrefix string
	// RulesStatPrefix is rules_stat_prefix (Istio leaves it empty).
	RulesStatPrefix string
	// StatPrefix is the network filter's stat_prefix (Istio: "tcp.").
	StatPrefix string
	// Network says the engine came from envoy.filters.network.rbac.
	Network bool
	// Continuous is the network filter's CONTINUOUS enforcement type:
	// evaluate on every read instead of once on the first bytes.
	Continuous bool
	// DelayDeny is the network filter's delay_deny: hold a denied connection
	// this long before closing it.
	DelayDeny time.Duration
}

type ruleSet struct {
	action   rbacpb.RBAC_Action
	policies []policy // sorted by name
}

type policy struct {
	name        string
	permissions []node // any may match
	principals  []node // any may match
}

// Action is the enforced rules' action; ok is false when the filter has none.
func (e *Engine) Action() (action rbacpb.RBAC_Action, ok bool) {
	if e.rules == nil {
		return 0, false
	}
	return e.rules.action, true
}

// Allowed evaluates the filter for one request as Envoy's RBAC filter does:
// shadow rules first (reported only), then the enforced rules.
func (e *Engine) Allowed(req *Request) Decision {
	ev := &eval{Request: req, path: stripQuery(req.Path)}
	var d Decision
	if e.shadow != nil {
		allowed, id, _ := e.shadow.handle(ev)
		d.Shadow = Shadow{Evaluated: true, Allowed: allowed, Policy: id}
	}
	if e.rules == nil {
		d.Allowed = true
		return d
	}
	d.Enforced = true
	d.Allowed, d.Policy, d.Logged = e.rules.handle(ev)
	return d
}

// handle is Envoy's handleAction: the first matching policy in name order,
// then the action's verdict.
func (s *ruleSet) handle(req *eval) (allowed bool, id string, logged bool) {
	matched := false
	for i := range s.policies {
		p := &s.policies[i]
		if anyMatch(p.permissions, req) && anyMatch(p.principals, req) {
			matched, id = true, p.name
			break
		}
	}
	switch s.action {
	case rbacpb.RBAC_ALLOW:
		return matched, id, false
	case rbacpb.RBAC_DENY:
		return !matched, id, false
	default: // LOG; Compile admits no other action
		return true, id, matched
	}
}

func anyMatch(ns []node, req *eval) bool {
	for i := range ns {
		if ns[i].matches(req) {
			return true
		}
	}
	return false
}
