package jwtauthn

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"

	"github.com/meshlab/meshlab/dataplane/fieldcheck"
)

type provider struct {
	name              string
	issuer            string
	audiences         []string
	keys              *keySet
	forward           bool
	payloadHeader     string
	padPayload        bool
	payloadInMetadata string
	spaceDelimited    []string
	claimHeaders      []claimHeader
	clockSkew         time.Duration
	headers           []headerLoc
	params, cookies   []string
}

type claimHeader struct{ header, claim string }

type headerLoc struct{ name, prefix string }

// compileProvider accepts the fields Istio sets (and a few harmless
// neighbours); remote_jwks, subjects, max_lifetime and the like would
// change what is accepted and are refused.
func compileProvider(name string, p *jwtv3.JwtProvider) (*provider, error) {
	if err := fieldcheck.Only(p, "issuer", "audiences", "local_jwks", "forward", "from_headers", "from_params", "from_cookies",
		"forward_payload_header", "pad_forward_payload_header", "payload_in_metadata", "normalize_payload_in_metadata",
		"clock_skew_seconds", "claim_to_headers", "clear_route_cache", "require_expiration", "jwt_cache_config"); err != nil {
		return nil, err
	}
	out := &provider{
		name:              name,
		issuer:            p.GetIssuer(),
		audiences:         p.GetAudiences(),
		forward:           p.GetForward(),
		payloadHeader:     p.GetForwardPayloadHeader(),
		padPayload:        p.GetPadForwardPayloadHeader(),
		payloadInMetadata: p.GetPayloadInMetadata(),
		spaceDelimited:    p.GetNormalizePayloadInMetadata().GetSpaceDelimitedClaims(),
		clockSkew:         defaultClockSkew,
		params:            p.GetFromParams(),
		cookies:           p.GetFromCookies(),
	}
	if p.GetRequireExpiration() {
		return nil, fmt.Errorf("require_expiration is not supported")
	}
	if p.GetClockSkewSeconds() != 0 {
		out.clockSkew = time.Duration(p.GetClockSkewSeconds()) * time.Second
	}
	ds := p.GetLocalJwks()
	if ds == nil {
		return nil, fmt.Errorf("local_jwks is required (remote_jwks is not supported: the control plane inlines fetched keys)")
	}
	if err := fieldcheck.Only(ds, "inline_string", "inline_bytes"); err != nil {
		return nil, fmt.Errorf("local_jwks: %w", err)
	}
	raw := ds.GetInlineString()
	if raw == "" {
		raw = string(ds.GetInlineBytes())
	}
	// A key set Envoy cannot read is not a config error there either: it
	// is logged and every token of the provider fails.
	out.keys = parseKeySet(raw)
	for _, h := range p.GetFromHeaders() {
		if err := fieldcheck.Only(h, "name", "value_prefix"); err != nil {
			return nil, err
		}
		out.headers = append(out.headers, headerLoc{name: h.GetName(), prefix: h.GetValuePrefix()})
	}
	// Envoy's default locations, when none is given.
	if len(out.headers) == 0 && len(out.params) == 0 && len(out.cookies) == 0 {
		out.headers = []headerLoc{{name: "Authorization", prefix: "Bearer "}}
		out.params = []string{"access_token"}
	}
	for _, c := range p.GetClaimToHeaders() {
		out.claimHeaders = append(out.claimHeaders, claimHeader{header: c.GetHeaderName(), claim: c.GetClaimName()})
	}
	return out, nil
}

// token is one JWT found in a request, with the providers whose locations
// named where it was found (an allow_missing verifier accepts any of
// their issuers).
type token struct {
	value     string
	providers []*provider
	// header is set for a header location: the header is removed after
	// verification unless forward. Query and cookie tokens stay, as in
	// Envoy.
	header string
}

func (t *token) remove(r *http.Request) {
	if t.header != "" {
		r.Header.Del(t.header)
	}
}

// extract finds the tokens at the providers' locations as Envoy's
// extractor: header locations (by lower-cased name and prefix), then
// query parameters, then cookies, each kind in name order; a location
// several providers name is one token that any of their issuers may
// sign. A header's values are joined with ","; with a prefix, the token
// is the run of base64url characters and dots after it.
func (v *verification) extract(ps []*provider) []*token {
	type loc struct {
		name, prefix string
		t            *token
	}
	var headers, params, cookies []*loc
	find := func(list *[]*loc, name, prefix string, p *provider) {
		for _, l := range *list {
			if l.name == name && l.prefix == prefix {
				l.t.providers = append(l.t.providers, p)
				return
			}
		}
		*list = append(*list, &loc{name: name, prefix: prefix, t: &token{providers: []*provider{p}}})
	}
	for _, p := range ps {
		for _, h := range p.headers {
			find(&headers, strings.ToLower(h.name), h.prefix, p)
		}
		for _, q := range p.params {
			find(&params, q, "", p)
		}
		for _, c := range p.cookies {
			find(&cookies, c, "", p)
		}
	}
	byKey := func(a, b *loc) int { return strings.Compare(a.name+a.prefix, b.name+b.prefix) }
	var out []*token
	slices.SortFunc(headers, byKey)
	for _, l := range headers {
		vals := v.req.Header.Values(l.name)
		if len(vals) == 0 {
			continue
		}
		val := strings.Join(vals, ",")
		if l.prefix != "" {
			i := strings.Index(val, l.prefix)
			if i < 0 {
				continue
			}
			val = jwtRun(val, i+len(l.prefix))
		}
		l.t.value, l.t.header = val, l.name
		out = append(out, l.t)
	}
	if len(params) > 0 {
		if v.query == nil {
			v.query = v.req.URL.Query()
		}
		slices.SortFunc(params, byKey)
		for _, l := range params {
			if vals, ok := v.query[l.name]; ok && len(vals) > 0 {
				l.t.value = vals[0]
				out = append(out, l.t)
			}
		}
	}
	slices.SortFunc(cookies, byKey)
	for _, l := range cookies {
		if ck, err := v.req.Cookie(l.name); err == nil {
			l.t.value = ck.Value
			out = append(out, l.t)
		}
	}
	return out
}

// allows is the location's issuer check: one of the providers naming it
// has this issuer, or has none (any issuer).
func (t *token) allows(iss string) bool {
	for _, p := range t.providers {
		if p.issuer == "" || p.issuer == iss {
			return true
		}
	}
	return false
}

// jwtRun is Envoy's extractJWT: from offset after, skip to the first
// base64url character or dot and take the run of them; with none, the
// whole value.
func jwtRun(s string, after int) string {
	isJWT := func(c byte) bool {
		return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
	}
	i := after
	for i < len(s) && !isJWT(s[i]) {
		i++
	}
	if i == len(s) {
		return s
	}
	j := i
	for j < len(s) && isJWT(s[j]) {
		j++
	}
	return s[i:j]
}

// claimString is a claim as Envoy's addJWTClaimToHeader writes it:
// strings as they are, booleans as true/false, numbers as integers when
// whole, objects and lists as base64 of their JSON; nested claims by
// "a.b". A missing claim is not written.
func claimString(claims map[string]any, name string) (string, bool) {
	var v any = claims
	for _, part := range strings.Split(name, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return "", false
		}
		if v, ok = m[part]; !ok {
			return "", false
		}
	}
	switch x := v.(type) {
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<63 {
			return strconv.FormatInt(int64(x), 10), true
		}
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case map[string]any, []any:
		b, err := json.Marshal(x)
		if err != nil {
			return "", false
		}
		return base64.StdEncoding.EncodeToString(b), true
	}
	return "", false
}
