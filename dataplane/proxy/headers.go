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
