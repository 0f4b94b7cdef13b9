package proxy

import (
	"net/http"

	"github.com/meshlab/meshlab/dataplane/router"
)

// What this file adds to the proxy: Envoy's CORS filter
// (envoy.filters.http.cors) with the route's CorsPolicy. A request with an
// Origin the policy allows is a CORS request: a preflight (OPTIONS with
// Access-Control-Request-Method) is answered by the proxy, any other gets
// the allow-origin, credentials and expose headers on its response. A
// preflight from another origin goes upstream, or with
// forward_not_matching_preflights false is answered 200 without CORS
// headers, as Envoy 1.30 and later do.

const (
	hdrOrigin            = "Origin"
	hdrReqMethod         = "Access-Control-Request-Method"
	hdrReqHeaders        = "Access-Control-Request-Headers"
	hdrAllowOrigin       = "Access-Control-Allow-Origin"
	hdrAllowCredentials  = "Access-Control-Allow-Credentials"
	hdrAllowMethods      = "Access-Control-Allow-Methods"
	hdrAllowHeaders      = "Access-Control-Allow-Headers"
	hdrExposeHeaders     = "Access-Control-Expose-Headers"
	hdrMaxAge            = "Access-Control-Max-Age"
	corsTrue             = "true"
	detailsCorsPreflight = "cors_response"
	detailsCorsNoMatch   = "cors_origin_not_allowed"
)

// cors runs the CORS filter's decoding step; it reports whether the
// request goes on (false: the proxy answered it). For a CORS request it
// records the origin so that the response gets its headers (corsHeaders).
func (p *Proxy) cors(ex *exchange, r *http.Request, c *router.Cors) bool {
	v := r.Header[hdrOrigin]
	if len(v) == 0 || v[0] == "" || !router.Sample(c.Percent) {
		return true
	}
	origin := v[0]
	allowed := c.OriginAllowed(origin)
	preflight := r.Method == http.MethodOptions && len(r.Header[hdrReqMethod]) > 0 && r.Header[hdrReqMethod][0] != ""
	if !allowed {
		if !preflight || c.ForwardUnmatched {
			return true
		}
		ex.details = detailsCorsNoMatch
		ex.WriteHeader(http.StatusOK)
		return false
	}
	if !preflight {
		ex.corsOrigin = origin
		corsHeaders(ex.Header(), c, origin)
		return true
	}
	h := ex.Header()
	h[hdrAllowOrigin] = []string{origin}
	if c.AllowCredentials {
		h[hdrAllowCredentials] = []string{corsTrue}
	}
	if c.AllowMethods != "" {
		h[hdrAllowMethods] = []string{c.AllowMethods}
	}
	if c.AllowHeaders != "" {
		h[hdrAllowHeaders] = []string{c.AllowHeaders}
	}
	if c.MaxAge != "" {
		h[hdrMaxAge] = []string{c.MaxAge}
	}
	ex.details = detailsCorsPreflight
	ex.WriteHeader(http.StatusOK)
	return false
}

// corsHeaders is the CORS filter's encoding step for an allowed origin;
// it replaces what the upstream said, as Envoy's filter does.
func corsHeaders(h http.Header, c *router.Cors, origin string) {
	h[hdrAllowOrigin] = []string{origin}
	if c.AllowCredentials {
		h[hdrAllowCredentials] = []string{corsTrue}
	}
	if c.ExposeHeaders != "" {
		h[hdrExposeHeaders] = []string{c.ExposeHeaders}
	}
}

// moveCorsHeaders puts the CORS headers set on the downstream response
// onto an upstream response that is about to be copied there, so that
// they replace the upstream's instead of being added to them.
func moveCorsHeaders(ex *exchange, resp http.Header) {
	down := ex.Header()
	for _, k := range [...]string{hdrAllowOrigin, hdrAllowCredentials, hdrExposeHeaders} {
		if v, ok := down[k]; ok {
			resp[k] = v
			delete(down, k)
		}
	}
}
