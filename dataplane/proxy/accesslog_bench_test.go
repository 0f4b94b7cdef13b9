package proxy

import (
	"io"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/meshlab/meshlab/dataplane/router"
	"github.com/meshlab/meshlab/dataplane/upstream"
)

// BenchmarkAccessLog is the access log line of one proxied request, which
// the sidecars of the lab write for every request.
func BenchmarkAccessLog(b *testing.B) {
	l := newLogWriter(io.Discard)
	r, _ := http.NewRequest("GET", "http://reviews:9080/reviews/0", nil)
	r.RequestURI = "/reviews/0"
	r.Header.Set("User-Agent", "Go-http-client/1.1")
	r.Header.Set("X-Request-Id", newRequestID())
	ex := &exchange{
		status:      200,
		bytes:       358,
		conn:        &connInfo{local: netip.MustParseAddrPort("198.18.0.9:9080"), remote: netip.MustParseAddrPort("198.18.0.12:43210")},
		route:       &router.Route{Name: "default"},
		cluster:     &upstream.Cluster{Name: "inbound|9080||"},
		endpoint:    &upstream.Endpoint{Addr: "198.18.0.9:9080"},
		upstreamDur: 3 * time.Millisecond,
	}
	ex.conn.chain = &chain{http: &hcm{logs: []*accessLogger{{w: l}}}}
	var p Proxy
	start := time.Now()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		p.logHTTP(start, r, ex)
		if n++; n%1000 == 0 {
			l.Flush() // as the flusher does
		}
	}
}
