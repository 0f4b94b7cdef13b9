package router

import (
	"fmt"

	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/anypb"
)

// Cors is a route's envoy.filters.http.cors policy, compiled; the proxy
// applies it where the connection manager has the CORS filter.
type Cors struct {
	origins []*stringMatcher
	// Percent is filter_enabled per million (100% when unset, as Envoy).
	Percent          uint32
	AllowMethods     string
	AllowHeaders     string
	ExposeHeaders    string
	MaxAge           string
	AllowCredentials bool
	// ForwardUnmatched: a preflight from an origin that is not allowed
	// goes upstream (Envoy's forward_not_matching_preflights, default
	// true) rather than being answered 200 without CORS headers.
	ForwardUnmatched bool
}

// OriginAllowed is Envoy's isOriginAllowed: some matcher matches the
// origin, or matches "*" (an allow-all entry).
func (c *Cors) OriginAllowed(origin string) bool {
	for _, m := range c.origins {
		if m.match("*") || m.match(origin) {
			return true
		}
	}
	return false
}

func compileCors(cfg map[string]*anypb.Any) (*Cors, error) {
	a, ok := cfg[wellknown.CORS]
	if !ok {
		return nil, nil
	}
	var p corsv3.CorsPolicy
	if err := a.UnmarshalTo(&p); err != nil {
		return nil, fmt.Errorf("decode %s per-route config: %w", wellknown.CORS, err)
	}
	c := &Cors{
		Percent:          1_000_000,
		AllowMethods:     p.GetAllowMethods(),
		AllowHeaders:     p.GetAllowHeaders(),
		ExposeHeaders:    p.GetExposeHeaders(),
		MaxAge:           p.GetMaxAge(),
		AllowCredentials: p.GetAllowCredentials().GetValue(),
		ForwardUnmatched: p.GetForwardNotMatchingPreflights() == nil || p.GetForwardNotMatchingPreflights().GetValue(),
	}
	if fe := p.GetFilterEnabled(); fe != nil {
		c.Percent = perMillion(fe.GetDefaultValue())
	}
	for _, o := range p.GetAllowOriginStringMatch() {
		sm, err := compileString(o)
		if err != nil {
			return nil, fmt.Errorf("cors allow origin: %w", err)
		}
		c.origins = append(c.origins, sm)
	}
	return c, nil
}
