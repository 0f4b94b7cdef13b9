package upstream

import (
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// RequestHash is Envoy's hash of a request by a route's hash policies:
// each policy that yields a value is folded in (rotate left by one, xor),
// and a terminal policy that yields one ends the walk. ok is false when no
// policy yields a value. A cookie policy with a ttl whose cookie is absent
// generates one, as Envoy does: the hex xxHash64 of the downstream address,
// added to resp as Set-Cookie so the client sticks to the same host.
func RequestHash(policies []*routev3.RouteAction_HashPolicy, r *http.Request, remote netip.AddrPort, resp http.Header) (hash uint64, ok bool) {
	for _, p := range policies {
		h, got := policyHash(p, r, remote, resp)
		if !got {
			continue
		}
		if ok {
			hash = (hash<<1 | hash>>63) ^ h
		} else {
			hash, ok = h, true
		}
		if p.GetTerminal() {
			break
		}
	}
	return hash, ok
}

func policyHash(p *routev3.RouteAction_HashPolicy, r *http.Request, remote netip.AddrPort, resp http.Header) (uint64, bool) {
	switch ps := p.GetPolicySpecifier().(type) {
	case *routev3.RouteAction_HashPolicy_Header_:
		name := ps.Header.GetHeaderName()
		var vs []string
		if strings.EqualFold(name, ":authority") || strings.EqualFold(name, "host") {
			vs = []string{r.Host}
		} else {
			vs = headerValues(r.Header, name)
		}
		if len(vs) == 0 {
			return 0, false
		}
		return xxhash.Sum64String(vs[0]), true
	case *routev3.RouteAction_HashPolicy_Cookie_:
		c := ps.Cookie
		if v, found := cookieValue(r.Header["Cookie"], c.GetName()); found && v != "" {
			return xxhash.Sum64String(v), true
		}
		if c.GetTtl() == nil || resp == nil || !remote.IsValid() {
			return 0, false
		}
		var buf [64]byte
		v := hex16(buf[:0], xxhash.Sum64(remote.AppendTo(buf[16:16])))
		resp.Add("Set-Cookie", setCookie(c, string(v)))
		return xxhash.Sum64(v), true
	case *routev3.RouteAction_HashPolicy_ConnectionProperties_:
		if !ps.ConnectionProperties.GetSourceIp() || !remote.IsValid() {
			return 0, false
		}
		var buf [48]byte
		return xxhash.Sum64(remote.Addr().Unmap().AppendTo(buf[:0])), true
	case *routev3.RouteAction_HashPolicy_QueryParameter_:
		v, found := queryValue(r.URL.RawQuery, ps.QueryParameter.GetName())
		if !found {
			return 0, false
		}
		return xxhash.Sum64String(v), true
	}
	return 0, false
}

// setCookie is Envoy's Set-Cookie for a generated hash cookie.
func setCookie(c *routev3.RouteAction_HashPolicy_Cookie, value string) string {
	var b strings.Builder
	b.WriteString(c.GetName())
	b.WriteString(`="`)
	b.WriteString(value)
	b.WriteByte('"')
	if s := c.GetTtl().GetSeconds(); s > 0 {
		b.WriteString("; Max-Age=")
		b.WriteString(strconv.FormatInt(s, 10))
	}
	if p := c.GetPath(); p != "" {
		b.WriteString("; Path=")
		b.WriteString(p)
	}
	for _, a := range c.GetAttributes() {
		b.WriteString("; ")
		b.WriteString(a.GetName())
		if a.GetValue() != "" {
			b.WriteByte('=')
			b.WriteString(a.GetValue())
		}
	}
	b.WriteString("; HttpOnly")
	return b.String()
}

// cookieValue finds a cookie in Cookie headers without parsing the rest,
// dropping one pair of surrounding quotes as Envoy does.
func cookieValue(headers []string, name string) (string, bool) {
	for _, h := range headers {
		for h != "" {
			var part string
			part, h, _ = strings.Cut(h, ";")
			k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
			if k != name {
				continue
			}
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, true
		}
	}
	return "", false
}

// queryValue finds the first value of a query parameter, decoded.
func queryValue(raw, name string) (string, bool) {
	for raw != "" {
		var part string
		part, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(part, "=")
		if k != name {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			if d, err := url.QueryUnescape(v); err == nil {
				v = d
			}
		}
		return v, true
	}
	return "", false
}

// hex16 appends v as 16 hex digits, as Envoy's Hex::uint64ToHex.
func hex16(b []byte, v uint64) []byte {
	const digits = "0123456789abcdef"
	for i := 60; i >= 0; i -= 4 {
		b = append(b, digits[v>>uint(i)&0xf])
	}
	return b
}

// headerValues looks a header up by any spelling; the canonical form is
// built on the stack, so the lookup does not allocate per request.
func headerValues(h http.Header, name string) []string {
	if vs, ok := h[name]; ok || len(name) > 64 {
		if !ok {
			vs = h[http.CanonicalHeaderKey(name)]
		}
		return vs
	}
	var buf [64]byte
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case upper && 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		case !upper && 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		buf[i] = c
		upper = c == '-'
	}
	return h[string(buf[:len(name)])]
}
