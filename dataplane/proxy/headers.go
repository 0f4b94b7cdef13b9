package proxy

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header values the proxy sets on every request and response, built once.
// Each slice has cap 1, so an append by a later header mutation copies
// rather than writing into the shared array; nothing in the proxy or
// net/http writes a header value in place.
var (
	protoHTTP  = []string{"http"}
	protoHTTPS = []string{"https"}
	// serviceTimes are x-envoy-upstream-service-time values up to a
	// second, where nearly every upstream answers.
	serviceTimes = func() [][]string {
		v := make([][]string, 1000)
		for i := range v {
			v[i] = []string{strconv.Itoa(i)}
		}
		return v
	}()
)

// serviceTime is the x-envoy-upstream-service-time value of d.
func serviceTime(d time.Duration) []string {
	if ms := d.Milliseconds(); ms >= 0 && ms < int64(len(serviceTimes)) {
		return serviceTimes[ms]
	}
	return []string{strconv.FormatInt(d.Milliseconds(), 10)}
}

// moveResponseHeaders hands the upstream response's header values to the
// downstream response, so that ReverseProxy's copy (one allocation per
// key) has nothing left to do. A Content-Type that may name server-sent
// events stays: ReverseProxy reads it afterwards to flush those at once
// (and copies it itself); any other moves too, which spares ReverseProxy
// parsing it (mime.ParseMediaType, a map per response). A key the
// downstream header already has is left to that copy, which appends.
func moveResponseHeaders(down, resp http.Header) {
	for k, v := range resp {
		if k == "Content-Type" && mayBeEventStream(v) {
			continue
		}
		if _, ok := down[k]; ok {
			continue
		}
		down[k] = v
		delete(resp, k)
	}
}

// mayBeEventStream reports whether a Content-Type could parse to
// text/event-stream; it errs towards yes.
func mayBeEventStream(v []string) bool {
	return len(v) > 0 && strings.Contains(strings.ToLower(v[0]), "event-stream")
}

// forwardedHeaders sets the X-Forwarded-* headers of an upstream request
// as Envoy's connection manager does. peer is set when it uses the remote
// address (Istio's gateways): the peer is appended to X-Forwarded-For,
// X-Forwarded-Proto says how the client connected, and the request,
// external to the mesh, gets x-envoy-external-address (no
// internal_address_config, so no peer counts as internal) and loses the
// client's x-envoy-internal. Otherwise (sidecars) the client's values
// pass, and X-Forwarded-Proto is set only when missing.
func forwardedHeaders(out, in http.Header, peer []string, tls bool) {
	proto := protoHTTP
	if tls {
		proto = protoHTTPS
	}
	xff, hasXFF := in["X-Forwarded-For"]
	if peer == nil {
		if hasXFF {
			out["X-Forwarded-For"] = xff
		}
		if v, ok := in["X-Forwarded-Proto"]; ok {
			out["X-Forwarded-Proto"] = v
		} else {
			out["X-Forwarded-Proto"] = proto
		}
		return
	}
	if hasXFF && len(xff) > 0 {
		out["X-Forwarded-For"] = []string{strings.Join(xff, ",") + "," + peer[0]}
	} else {
		out["X-Forwarded-For"] = peer
	}
	out["X-Forwarded-Proto"] = proto
	out["X-Envoy-External-Address"] = peer
	delete(out, "X-Envoy-Internal")
}

// sanitizeConnection removes the headers a request's Connection header
// nominates and keeps in it only the connection's own options (close,
// keep-alive, upgrade, te, http2-settings), as Envoy's codec does before
// the connection manager adds its headers: then no later removal of
// nominated headers (ReverseProxy's) can take a header the proxy set,
// such as x-request-id or x-forwarded-for. Like Envoy it refuses (false)
// ten or more nominations.
func sanitizeConnection(h http.Header) bool {
	vs, ok := h["Connection"]
	if !ok {
		return true
	}
	n, clean := 0, true
	for _, v := range vs {
		for rest := v; rest != ""; {
			var t string
			t, rest, _ = strings.Cut(rest, ",")
			if t = strings.TrimSpace(t); t == "" {
				continue
			}
			n++
			clean = clean && connectionOption(t)
		}
	}
	if n >= 10 {
		return false
	}
	if clean {
		return true
	}
	var keep []string
	for _, v := range vs {
		for rest := v; rest != ""; {
			var t string
			t, rest, _ = strings.Cut(rest, ",")
			if t = strings.TrimSpace(t); t == "" {
				continue
			}
			if connectionOption(t) {
				keep = append(keep, t)
			} else {
				delete(h, http.CanonicalHeaderKey(t))
			}
		}
	}
	if len(keep) == 0 {
		delete(h, "Connection")
	} else {
		h["Connection"] = []string{strings.Join(keep, ", ")}
	}
	return true
}

func connectionOption(t string) bool {
	for _, o := range [...]string{"close", "keep-alive", "upgrade", "te", "http2-settings"} {
		if strings.EqualFold(t, o) {
			return true
		}
	}
	return false
}

// countHeaders counts header lines (values), as Envoy's max_headers_count.
func countHeaders(h http.Header) int {
	n := 0
	for _, vs := range h {
		n += len(vs)
	}
	return n
}
