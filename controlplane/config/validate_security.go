package config

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
)

// validStrictHeaderName is Istio's validStrictHeaderNameRegex (RFC 7230
// token characters).
var validStrictHeaderName = regexp.MustCompile("^[a-zA-Z0-9!#$%&'*+\\-.^_|~`]+$")

// requestAuthentication is Istio's ValidateRequestAuthentication
// (pkg/config/validation/validation.go, 1.24): selector or targetRef(s),
// not both; per jwtRule an issuer, non-empty audiences and locations, a
// jwksUri Istio can parse (http or https), inline jwks that parse,
// claim-to-header names that are header names, a timeout of whole
// milliseconds ≥ 1 ms. Like Istio it does not refuse jwks and jwksUri
// together: the inline jwks win.
func (v *validator) requestAuthentication(s *security.RequestAuthentication) {
	set := 0
	if s.GetSelector() != nil {
		set++
	}
	if s.GetTargetRef() != nil {
		set++
	}
	if len(s.GetTargetRefs()) > 0 {
		set++
	}
	if set > 1 {
		v.fail("spec", "only one of targetRefs or workloadSelector can be set")
	}
	v.workloadSelector("spec.selector", s.GetSelector())
	for i, rule := range s.GetJwtRules() {
		if rule == nil {
			continue
		}
		f := fmt.Sprintf("spec.jwtRules[%d]", i)
		if rule.GetIssuer() == "" {
			v.fail(f+".issuer", "issuer must be set")
		}
		for j, a := range rule.GetAudiences() {
			if a == "" {
				v.fail(fmt.Sprintf("%s.audiences[%d]", f, j), "audience must be non-empty string")
			}
		}
		if u := rule.GetJwksUri(); u != "" {
			if err := parseJwksURI(u); err != nil {
				v.fail(f+".jwksUri", "%v", err)
			}
		}
		if k := rule.GetJwks(); k != "" {
			if err := parseJWKS(k); err != nil {
				v.fail(f+".jwks", "jwks parse error: %v", err)
			}
		}
		for j, h := range rule.GetFromHeaders() {
			if h == nil {
				v.fail(fmt.Sprintf("%s.fromHeaders[%d]", f, j), "location header name must be non-null")
				continue
			}
			if h.GetName() == "" {
				v.fail(fmt.Sprintf("%s.fromHeaders[%d].name", f, j), "location header name must be non-empty string")
			}
		}
		for j, p := range rule.GetFromParams() {
			if p == "" {
				v.fail(fmt.Sprintf("%s.fromParams[%d]", f, j), "location query must be non-empty string")
			}
		}
		for j, c := range rule.GetFromCookies() {
			if c == "" {
				v.fail(fmt.Sprintf("%s.fromCookies[%d]", f, j), "cookie name must be non-empty string")
			}
		}
		for j, ch := range rule.GetOutputClaimToHeaders() {
			cf := fmt.Sprintf("%s.outputClaimToHeaders[%d]", f, j)
			switch {
			case ch == nil:
				v.fail(cf, "outputClaimToHeaders must not be null")
			case ch.GetClaim() == "" || ch.GetHeader() == "":
				v.fail(cf, "outputClaimToHeaders header and claim value must be non-empty string")
			case !validStrictHeaderName.MatchString(ch.GetHeader()):
				v.fail(cf+".header", "header name %s is not a valid header name", ch.GetHeader())
			}
		}
		if t := rule.GetTimeout(); t != nil {
			d := t.AsDuration()
			switch {
			case d < time.Millisecond:
				v.fail(f+".timeout", "duration must be greater than 1ms")
			case d%time.Millisecond != 0:
				v.fail(f+".timeout", "only durations to ms precision are supported")
			}
		}
	}
}

// workloadSelector is Istio's validateWorkloadSelector (its warning for an
// empty selector aside).
func (v *validator) workloadSelector(field string, sel *typev1beta1.WorkloadSelector) {
	for k, val := range sel.GetMatchLabels() {
		if k == "" {
			v.fail(field+".matchLabels", "empty key is not supported in selector: %q", k+"="+val)
		}
		if strings.Contains(k, "*") || strings.Contains(val, "*") {
			v.fail(field+".matchLabels", "wildcard is not supported in selector: %q", k+"="+val)
		}
	}
}

// parseJwksURI is Istio's security.ParseJwksURI.
func parseJwksURI(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("URI scheme %q is not supported", u.Scheme)
	}
	if p := u.Port(); p != "" {
		if _, err := strconv.Atoi(p); err != nil {
			return err
		}
	}
	return nil
}

// parseJWKS accepts what Istio's jwk.Parse does: a key set, or one key.
func parseJWKS(s string) error {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal([]byte(s), &set); err != nil {
		return err
	}
	keys := set.Keys
	if keys == nil {
		keys = []json.RawMessage{json.RawMessage(s)}
	}
	for i, k := range keys {
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(k); err != nil {
			return fmt.Errorf("key %d: %w", i, err)
		}
	}
	return nil
}
