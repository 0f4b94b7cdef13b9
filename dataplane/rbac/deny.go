package rbac

import (
	"net"
	"net/http"
	"strings"
	"unicode"

	"google.golang.org/protobuf/types/known/structpb"
)

// What Envoy's RBAC filters do when they deny, for the proxy to reproduce.
const (
	// DeniedStatus and DeniedBody are the HTTP filter's local reply (sent as
	// text/plain, 19 bytes).
	DeniedStatus = http.StatusForbidden
	DeniedBody   = "RBAC: access denied"

	// Dynamic metadata the filters write: under the filter's name, the shadow
	// result as ShadowStatPrefix+ShadowEngineResultKey ("allowed"/"denied")
	// and ShadowStatPrefix+ShadowEffectivePolicyIDKey (only when a shadow
	// policy matched); under "envoy.common", AccessLogHintKey for LOG filters.
	// Istio's tracing custom tags read istio_dry_run_{allow,deny}_shadow_*.
	ShadowEngineResultKey      = "shadow_engine_result"
	ShadowEffectivePolicyIDKey = "shadow_effective_policy_id"
	EngineResultAllowed        = "allowed"
	EngineResultDenied         = "denied"
	CommonMetadataNamespace    = "envoy.common"
	AccessLogHintKey           = "access_log_hint"
)

// ResponseDetail is the response code detail (%RESPONSE_CODE_DETAILS%) Envoy
// records for a deny: rbac_access_denied_matched_policy[ID], ID "none" when no
// policy matched (an ALLOW filter's deny), whitespace in the id replaced by
// "_" so the access log keeps its field count.
func ResponseDetail(policy string) string {
	if policy == "" {
		policy = "none"
	}
	return "rbac_access_denied_matched_policy[" + strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return '_'
		}
		return r
	}, policy) + "]"
}

// WriteDenied sends the HTTP filter's 403. The caller records
// d.ResponseDetail() as the response code detail.
func WriteDenied(w http.ResponseWriter) {
	h := w.Header()
	h["Content-Type"] = []string{"text/plain"}
	h["Content-Length"] = []string{"19"}
	w.WriteHeader(DeniedStatus)
	// A failed write is the client's leaving; nothing is left to tell it.
	_, _ = w.Write([]byte(DeniedBody))
}

// CloseDenied ends a connection the network filter denied: Envoy closes it
// with NoFlush and writes nothing, so the client sees a plain close (curl exit
// 56, nc "connection rejected" in Istio's TCP task), not an RST and not bytes.
// Honour Engine.DelayDeny before calling it.
func CloseDenied(c net.Conn) error {
	return c.Close()
}

// Counter names Envoy gives an RBAC filter's stats, for the proxy's /stats.
// prefix is the HTTP connection manager's "http.<stat_prefix>." for the HTTP
// filter, or "" for the network filter (whose own stat_prefix, Istio's "tcp.",
// is in Engine.StatPrefix). Istio's bootstrap tags the shadow ones: the
// ".istio_dry_run_(allow|deny)_" part becomes authz_dry_run_action and
// ".shadow_(allowed|denied)" authz_dry_run_result, so Prometheus sees e.g.
// envoy_http_inbound_0_0_0_0_80_rbac{authz_dry_run_action="deny",authz_dry_run_result="denied"}.
type Counters struct {
	Allowed, Denied, ShadowAllowed, ShadowDenied string
}

// Counters returns the counter names for this filter under prefix.
func (e *Engine) Counters(prefix string) Counters {
	base := prefix + e.StatPrefix + "rbac."
	rules := base + e.RulesStatPrefix
	shadow := base + e.ShadowStatPrefix
	return Counters{
		Allowed:       rules + "allowed",
		Denied:        rules + "denied",
		ShadowAllowed: shadow + "shadow_allowed",
		ShadowDenied:  shadow + "shadow_denied",
	}
}

// MetadataNamespace is where the filter writes its shadow result: its own
// filter name.
func (e *Engine) MetadataNamespace() string {
	if e.Network {
		return NetworkFilterName
	}
	return HTTPFilterName
}

// ShadowMetadata is the dynamic metadata the filter writes under
// MetadataNamespace() after evaluating its shadow rules, nil when it has
// none. Istio reads it back: tracing tags istio.authorization.dry_run.*, and
// for CUSTOM the ext_authz filter runs only when
// istio_ext_authz_shadow_effective_policy_id is set. It allocates, so call it
// only for filters with shadow rules.
func (e *Engine) ShadowMetadata(d Decision) *structpb.Struct {
	if !d.Shadow.Evaluated {
		return nil
	}
	result := EngineResultAllowed
	if !d.Shadow.Allowed {
		result = EngineResultDenied
	}
	fields := map[string]*structpb.Value{e.ShadowStatPrefix + ShadowEngineResultKey: structpb.NewStringValue(result)}
	if d.Shadow.Policy != "" {
		fields[e.ShadowStatPrefix+ShadowEffectivePolicyIDKey] = structpb.NewStringValue(d.Shadow.Policy)
	}
	return &structpb.Struct{Fields: fields}
}
