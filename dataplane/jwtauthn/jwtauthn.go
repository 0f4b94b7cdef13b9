// Package jwtauthn is Envoy's JWT authentication HTTP filter
// (envoy.filters.http.jwt_authn) as Istio 1.24 configures it for
// RequestAuthentication: tokens are taken from the providers' locations,
// parsed and checked as google/jwt_verify_lib does (issuer, nbf/exp with
// the clock skew, audiences, then the signature against the provider's
// inline JWKS), and the requirement tree (provider_name, requires_any,
// requires_all, allow_missing, allow_missing_or_failed) is evaluated as
// Envoy's verifier.cc does. Signatures are checked by go-jose; nothing
// here is hand-written cryptography.
//
// A config is compiled once; anything that would change what the filter
// accepts and that this package does not implement (remote_jwks, subjects,
// max_lifetime, requirement_map, ...) is an error naming it, so the proxy
// NACKs the filter rather than failing open.
package jwtauthn

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshlab/meshlab/dataplane/fieldcheck"
)

// FilterName is the filter's name and its dynamic metadata namespace.
const FilterName = "envoy.filters.http.jwt_authn"

// defaultClockSkew is Envoy's clock_skew_seconds default.
const defaultClockSkew = 60 * time.Second

// Filter is a compiled JwtAuthentication.
type Filter struct {
	rules     []rule
	providers map[string]*provider
	all       []*provider // by name
	// sanitize are the headers the filter writes (payload and claim
	// headers): a client's own are removed first, as Envoy's
	// sanitizePayloadHeaders does, so an app cannot be handed a forged one.
	sanitize    []string
	bypassPrefl bool
}

type rule struct {
	prefix, path string
	req          *requirement
}

type reqKind int

const (
	reqAllowAll reqKind = iota // requirement not set
	reqProvider
	reqAny
	reqAll
	reqAllowMissing
	reqAllowMissingOrFailed
)

type requirement struct {
	kind     reqKind
	provider *provider
	children []*requirement
	// allowMissing, allowFailed: a requires_any that also lists
	// allow_missing (a missing token passes) or allow_missing_or_failed
	// (anything passes).
	allowMissing, allowFailed bool
	// parents are the providers whose locations and issuers an
	// allow_missing(_or_failed) verifier uses: all of them, as Envoy's.
	parents []*provider
}

// Compile checks and compiles a filter config.
func Compile(cfg *jwtv3.JwtAuthentication) (*Filter, error) {
	if err := fieldcheck.Only(cfg, "providers", "rules", "bypass_cors_preflight"); err != nil {
		return nil, err
	}
	f := &Filter{providers: map[string]*provider{}, bypassPrefl: cfg.GetBypassCorsPreflight()}
	names := make([]string, 0, len(cfg.GetProviders()))
	for name := range cfg.GetProviders() {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		p, err := compileProvider(name, cfg.GetProviders()[name])
		if err != nil {
			return nil, fmt.Errorf("provider %q: %w", name, err)
		}
		f.providers[name] = p
		f.all = append(f.all, p)
		if p.payloadHeader != "" {
			f.sanitize = append(f.sanitize, p.payloadHeader)
		}
		for _, c := range p.claimHeaders {
			f.sanitize = append(f.sanitize, c.header)
		}
	}
	for i, r := range cfg.GetRules() {
		cr, err := f.compileRule(r)
		if err != nil {
			return nil, fmt.Errorf("rules[%d]: %w", i, err)
		}
		f.rules = append(f.rules, cr)
	}
	return f, nil
}

func (f *Filter) compileRule(r *jwtv3.RequirementRule) (rule, error) {
	if err := fieldcheck.Only(r, "match", "requires"); err != nil {
		return rule{}, err
	}
	m := r.GetMatch()
	if err := fieldcheck.Only(m, "prefix", "path"); err != nil {
		return rule{}, fmt.Errorf("match: %w", err)
	}
	out := rule{}
	switch ps := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		out.prefix = ps.Prefix
	case *routev3.RouteMatch_Path:
		out.path = ps.Path
	default:
		return rule{}, fmt.Errorf("match: a prefix or path is required")
	}
	req, err := f.compileRequirement(r.GetRequires())
	if err != nil {
		return rule{}, err
	}
	out.req = req
	return out, nil
}

func (f *Filter) compileRequirement(r *jwtv3.JwtRequirement) (*requirement, error) {
	if r == nil {
		return &requirement{kind: reqAllowAll}, nil
	}
	switch t := r.GetRequiresType().(type) {
	case *jwtv3.JwtRequirement_ProviderName:
		p, ok := f.providers[t.ProviderName]
		if !ok {
			return nil, fmt.Errorf("required provider [%q] is not configured", t.ProviderName)
		}
		return &requirement{kind: reqProvider, provider: p}, nil
	case *jwtv3.JwtRequirement_RequiresAny:
		// As AnyVerifierImpl: allow_missing(_or_failed) beside regular
		// requirements only relaxes the outcome; alone, it is a verifier
		// over every provider's locations.
		out := &requirement{kind: reqAny}
		for _, c := range t.RequiresAny.GetRequirements() {
			switch c.GetRequiresType().(type) {
			case *jwtv3.JwtRequirement_AllowMissing:
				out.allowMissing = true
				continue
			case *jwtv3.JwtRequirement_AllowMissingOrFailed:
				out.allowFailed = true
				continue
			}
			cr, err := f.compileRequirement(c)
			if err != nil {
				return nil, err
			}
			out.children = append(out.children, cr)
		}
		if len(out.children) == 0 {
			kind := reqAllowMissing
			if out.allowFailed {
				kind = reqAllowMissingOrFailed
			}
			out.children = append(out.children, &requirement{kind: kind, parents: f.all})
		}
		return out, nil
	case *jwtv3.JwtRequirement_RequiresAll:
		out := &requirement{kind: reqAll}
		for _, c := range t.RequiresAll.GetRequirements() {
			cr, err := f.compileRequirement(c)
			if err != nil {
				return nil, err
			}
			out.children = append(out.children, cr)
		}
		return out, nil
	case *jwtv3.JwtRequirement_AllowMissing:
		return &requirement{kind: reqAllowMissing, parents: f.all}, nil
	case *jwtv3.JwtRequirement_AllowMissingOrFailed:
		return &requirement{kind: reqAllowMissingOrFailed, parents: f.all}, nil
	case nil:
		return &requirement{kind: reqAllowAll}, nil
	default:
		return nil, fmt.Errorf("requirement %T is not supported", t)
	}
}

// Result is what the filter decided for one request.
type Result struct {
	// Status is Ok, or why the request is refused.
	Status Status
	// Metadata is the dynamic metadata the filter writes under FilterName:
	// each verified provider's payload under its payload_in_metadata
	// (Istio: "payload"). Nil when nothing was verified.
	Metadata *structpb.Struct
}

// Denied reports whether the request must be answered with Reply.
func (r Result) Denied() bool { return r.Status != Ok }

// Code is Envoy's status for a refused request: 403 for audiences not
// allowed, 401 for everything else.
func (r Result) Code() int {
	if r.Status == JwtAudienceNotAllowed {
		return http.StatusForbidden
	}
	return http.StatusUnauthorized
}

// WWWAuthenticate is the challenge Envoy sets on a refusal: the realm is
// the request's original URI; error="invalid_token" unless the token was
// missing.
func (r Result) WWWAuthenticate(req *http.Request) string {
	scheme := req.Header.Get("X-Forwarded-Proto")
	if scheme == "" {
		scheme = "http"
		if req.TLS != nil {
			scheme = "https"
		}
	}
	path := req.RequestURI
	if path == "" || !strings.HasPrefix(path, "/") {
		path = req.URL.RequestURI()
	}
	v := `Bearer realm="` + scheme + "://" + req.Host + path + `"`
	if r.Status != JwtMissed {
		v += `, error="invalid_token"`
	}
	return v
}

// ResponseDetail is Envoy's response code detail for a refusal
// (jwt_authn_access_denied{<status with spaces as underscores>}).
func (r Result) ResponseDetail() string {
	return "jwt_authn_access_denied{" + strings.ReplaceAll(r.Status.String(), " ", "_") + "}"
}

// Verify runs the filter on a request, changing its headers as Envoy
// does on success (payload and claim headers added, verified tokens
// removed from headers unless forward).
func (f *Filter) Verify(req *http.Request, now time.Time) Result {
	for _, h := range f.sanitize {
		req.Header.Del(h)
	}
	if f.bypassPrefl && req.Method == http.MethodOptions && req.Header.Get("Origin") != "" && req.Header.Get("Access-Control-Request-Method") != "" {
		return Result{Status: Ok}
	}
	var req0 *requirement
	for _, r := range f.rules {
		if (r.prefix != "" && strings.HasPrefix(req.URL.Path, r.prefix)) || (r.path != "" && req.URL.Path == r.path) || (r.prefix == "" && r.path == "") {
			req0 = r.req
			break
		}
	}
	if req0 == nil {
		return Result{Status: Ok}
	}
	v := verification{f: f, req: req, now: now}
	st := v.eval(req0)
	if st != Ok {
		return Result{Status: st}
	}
	if len(v.payload) == 0 {
		return Result{Status: Ok}
	}
	return Result{Status: Ok, Metadata: &structpb.Struct{Fields: v.payload}}
}

type verification struct {
	f       *Filter
	req     *http.Request
	now     time.Time
	query   url.Values
	payload map[string]*structpb.Value
}

func (v *verification) eval(r *requirement) Status {
	switch r.kind {
	case reqAllowAll:
		return Ok
	case reqProvider:
		return v.verifyTokens(v.extract([]*provider{r.provider}), r.provider, false)
	case reqAny:
		// AnyVerifierImpl: the first success wins. Otherwise a real
		// failure outranks a token of another issuer, which outranks a
		// missing token (the last of each kind counts); then
		// allow_missing_or_failed passes anything, allow_missing a
		// missing token.
		final := JwtMissed
		for _, c := range r.children {
			st := v.eval(c)
			if st == Ok {
				return Ok
			}
			if (st != JwtMissed && st != JwtUnknownIssuer) || final == JwtMissed {
				final = st
			}
		}
		if r.allowFailed || (r.allowMissing && final == JwtMissed) {
			return Ok
		}
		return final
	case reqAll:
		for _, c := range r.children {
			if st := v.eval(c); st != Ok {
				return st
			}
		}
		return Ok
	case reqAllowMissing, reqAllowMissingOrFailed:
		st := v.verifyTokens(v.extract(r.parents), nil, true)
		if r.kind == reqAllowMissingOrFailed || st == JwtMissed {
			return Ok
		}
		return st
	}
	return Ok
}

// verifyTokens is Envoy's authenticator, which takes the tokens from
// the last found to the first. For a provider every token must verify (a
// request carrying a good and a bad token is refused, so that the bad
// one cannot reach the app). For allow_missing (p nil, the provider found
// by the token's issuer) each is tried and the last one decides;
// allowFailed passes whatever happens.
func (v *verification) verifyTokens(tokens []*token, p *provider, allowMissing bool) Status {
	if len(tokens) == 0 {
		return JwtMissed
	}
	st := Ok
	for i := len(tokens) - 1; i >= 0; i-- {
		st = v.verifyOne(tokens[i], p)
		if st != Ok && !allowMissing {
			return st
		}
	}
	return st
}

func (v *verification) verifyOne(t *token, p *provider) Status {
	jwt, st := parseJWT(t.value)
	if st != Ok {
		return st
	}
	// The location must have been named by a provider of this issuer;
	// without a given provider, the first of this issuer (else the first
	// without one) verifies it, as Envoy's findByIssuer.
	if !t.allows(jwt.iss) {
		return JwtUnknownIssuer
	}
	prov := p
	if prov == nil {
		prov = v.f.byIssuer(jwt.iss)
		if prov == nil {
			return JwtUnknownIssuer
		}
	}
	if st := jwt.verifyTime(v.now, prov.clockSkew); st != Ok {
		return st
	}
	if len(prov.audiences) > 0 && !slices.ContainsFunc(jwt.aud, func(a string) bool { return slices.Contains(prov.audiences, a) }) {
		return JwtAudienceNotAllowed
	}
	if st := prov.keys.verify(jwt); st != Ok {
		return st
	}
	// Verified: outputs, as AuthenticatorImpl::verifyKey.
	if prov.payloadHeader != "" {
		val := jwt.payloadB64
		if prov.padPayload {
			val += strings.Repeat("=", (4-len(val)%4)%4)
		}
		v.req.Header.Add(prov.payloadHeader, val)
	}
	for _, c := range prov.claimHeaders {
		if s, ok := claimString(jwt.claims, c.claim); ok && s != "" {
			v.req.Header.Add(c.header, s)
		}
	}
	if !prov.forward {
		t.remove(v.req)
	}
	if prov.payloadInMetadata != "" {
		if v.payload == nil {
			v.payload = map[string]*structpb.Value{}
		}
		v.payload[prov.payloadInMetadata] = structpb.NewStructValue(jwt.metadata(prov.spaceDelimited))
	}
	return Ok
}

func (f *Filter) byIssuer(iss string) *provider {
	for _, p := range f.all {
		if p.issuer == iss {
			return p
		}
	}
	for _, p := range f.all {
		if p.issuer == "" {
			return p
		}
	}
	return nil
}
