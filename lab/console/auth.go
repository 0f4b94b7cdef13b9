package console

import (
	"crypto/subtle"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// guard is the console's access check in front of every api call:
//   - a mutation (any method but GET/HEAD/OPTIONS) from another site is
//     refused, whatever the strategy: the console acts with the lab's
//     credential, and a page elsewhere must not drive it through a
//     browser that can reach a loopback console;
//   - an anonymous console answers only requests addressed to an IP, a
//     local or a private name, so DNS rebinding cannot reach it;
//   - under the token strategy every call but auth/info, authenticate and
//     logout needs the console token, as a Bearer header or the cookie.
func (s *server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !safeMethod(r.Method) {
			if why := crossSite(r); why != "" {
				writeJSON(w, http.StatusForbidden, map[string]string{"error": "cross-site request refused: " + why})
				return
			}
		}
		// Reads too: logs and config are not for a page that rebinds its
		// public name to a loopback console.
		if s.o.AuthStrategy == "anonymous" && !privateHost(r.Host) {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "refused: an anonymous console answers only requests to " +
				"an IP address, localhost or a private name (.local, .svc, ...), not to " + r.Host + " — a public name could be a DNS rebinding; " +
				"run the console with the token strategy (meshlab kiali --auth-strategy token) to serve it under a public name"})
			return
		}
		rel := strings.TrimPrefix(r.URL.Path, s.root)
		open := rel == "/api/auth/info" || rel == "/api/authenticate" || rel == "/api/logout"
		if s.o.AuthStrategy == "token" && !open && !s.authenticated(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="meshlab-console"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "this console needs its token: POST it to api/authenticate (form token=) or send Authorization: Bearer"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// privateHost says whether a Host header names this machine or a private
// network: an IP literal, localhost, a single label, or a suffix no public
// DNS answers for. A page on a public name that rebinds its DNS to a
// loopback console sends its own name, which is none of these.
func privateHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	if host == "localhost" || !strings.Contains(host, ".") {
		return true
	}
	for _, suffix := range []string{".localhost", ".local", ".internal", ".svc", ".lan", ".home.arpa", ".test"} {
		if strings.HasSuffix(host, suffix) {
			return true
		}
	}
	return false
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// crossSite says why a request comes from another site, "" when it does
// not: browsers send Sec-Fetch-Site on every request they make, and Origin
// on every POST/PUT/DELETE; tools such as curl send neither.
func crossSite(r *http.Request) string {
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "", "same-origin", "none":
	default:
		return "Sec-Fetch-Site is " + site
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if o == "null" || err != nil || !strings.EqualFold(u.Host, r.Host) {
			return "Origin " + o + " is not this console (" + r.Host + ")"
		}
	}
	return ""
}

// presented is the token the request carries, "" for none.
func presented(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
	}
	if c, err := r.Cookie(cookieName); err == nil {
		return c.Value
	}
	return ""
}

func (s *server) authenticated(r *http.Request) bool {
	if s.o.AuthStrategy != "token" {
		return true
	}
	return s.tokenMatches(presented(r))
}

func (s *server) tokenMatches(t string) bool {
	return t != "" && subtle.ConstantTimeCompare([]byte(t), []byte(s.authToken)) == 1
}

type authInfo struct {
	Strategy      string `json:"strategy"`
	Authenticated bool   `json:"authenticated"`
}

func (s *server) authInfo(r *http.Request) (any, error) {
	return authInfo{Strategy: s.o.AuthStrategy, Authenticated: s.authenticated(r)}, nil
}

func (s *server) authenticate(w http.ResponseWriter, r *http.Request) {
	if s.o.AuthStrategy != "token" {
		writeJSON(w, http.StatusOK, authInfo{Strategy: s.o.AuthStrategy, Authenticated: true})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	t := r.PostFormValue("token")
	if t == "" {
		t = presented(r)
	}
	if !s.tokenMatches(strings.TrimSpace(t)) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "token: not this console's token"})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: s.authToken, Path: s.root + "/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	writeJSON(w, http.StatusOK, authInfo{Strategy: s.o.AuthStrategy, Authenticated: true})
}

func (s *server) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: s.root + "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	writeJSON(w, http.StatusOK, authInfo{Strategy: s.o.AuthStrategy, Authenticated: false})
}
