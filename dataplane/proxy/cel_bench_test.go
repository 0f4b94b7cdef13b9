package proxy

import (
	"io"
	"testing"
	"time"

	"github.com/meshlab/meshlab/dataplane/telemetry"
)

// BenchmarkAccessLogCELFilter is one request's access log with a
// Telemetry API filter: the expression's evaluation, plus the line when
// it is true. "no filter" is BenchmarkAccessLog's cost, which a log
// without a filter keeps.
func BenchmarkAccessLogCELFilter(b *testing.B) {
	for _, tt := range []struct{ name, expr string }{
		{"no filter", ""},
		{"response.code>=400 logged", "response.code >= 400"},
		{"response.code>=400 skipped", "response.code >= 500 && response.code < 503"},
		{"header==true", "request.headers['x-debug'] == 'true'"},
		{"absent header", "request.headers['x-absent'] == 'true'"},
		{"url_path.startsWith", "request.url_path.startsWith('/api')"},
		{"connection.mtls", "connection.mtls"},
	} {
		b.Run(tt.name, func(b *testing.B) {
			e := celHTTPEntry(true, 503)
			l := newLogWriter(io.Discard)
			al := &accessLogger{w: l}
			if tt.expr != "" {
				c, err := compileCEL(tt.expr, envoyFilterCEL, nil)
				if err != nil {
					b.Fatal(err)
				}
				al.filter = c
			}
			e.ci.chain.http = &hcm{logs: []*accessLogger{al}}
			var p Proxy
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				p.logHTTP(e.start, e.r, e.ex)
				if n++; n%1000 == 0 {
					l.Flush()
				}
			}
		})
	}
}

// BenchmarkStatsDimension is one request's dimension values: the
// one-attribute fast path and whole CEL expressions.
func BenchmarkStatsDimension(b *testing.B) {
	for _, tt := range []struct{ name, expr string }{
		{"fast request.host", "request.host"},
		{"fast request.headers", "request.headers['x-debug']"},
		{"cel status class", "response.code >= 500 ? '5xx' : response.code >= 400 ? '4xx' : 'ok'"},
		{"cel url_path.startsWith", "request.url_path.startsWith('/api')"},
		{"cel absent header", "request.headers['x-absent'] + '!'"},
	} {
		b.Run(tt.name, func(b *testing.B) {
			e := celHTTPEntry(true, 503)
			d, err := compileDimension(tt.expr, nil)
			if err != nil {
				b.Fatal(err)
			}
			sc := &statsConfig{overrides: &telemetry.Overrides{}, dims: []dimension{d}}
			var k telemetry.Request
			var dims telemetry.Dims
			b.ReportAllocs()
			for b.Loop() {
				sc.httpDims(&k, &dims, e.r, e.ex, time.Millisecond)
			}
		})
	}
}

// BenchmarkCELCompile is an expression's compilation, which a build of
// a configuration that names it does unless it is in the cache.
func BenchmarkCELCompile(b *testing.B) {
	for _, tt := range []struct {
		name    string
		compile func(string, celOptions) (*celExpr, error)
	}{{"uncached", compileCELUncached}, {"cached", func(e string, o celOptions) (*celExpr, error) { return compileCEL(e, o, nil) }}} {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tt.compile("response.code >= 400 && request.url_path.startsWith('/api')", envoyFilterCEL); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
