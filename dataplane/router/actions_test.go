package router

import (
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
)

func TestRetryable(t *testing.T) {
	istio := &RetryPolicy{On: RetryConnectFailure | RetryRefusedStream | RetryGRPCUnavailable | RetryGRPCCancelled | RetryRetriableStatusCodes, StatusCodes: []int{503}}
	tests := []struct {
		name   string
		p      *RetryPolicy
		status int
		grpc   string
		f      Failure
		want   bool
	}{
		{"istio default: 503", istio, 503, "", NoFailure, true},
		{"istio default: 500", istio, 500, "", NoFailure, false},
		{"istio default: connect failure", istio, 0, "", ConnectFailure, true},
		{"istio default: reset", istio, 0, "", ResetFailure, false},
		{"istio default: per-try timeout", istio, 0, "", PerTryTimeout, false},
		{"istio default: grpc unavailable", istio, 200, "14", NoFailure, true},
		{"5xx: 500", &RetryPolicy{On: Retry5xx}, 500, "", NoFailure, true},
		{"5xx: reset", &RetryPolicy{On: Retry5xx}, 0, "", ResetFailure, true},
		{"5xx: 404", &RetryPolicy{On: Retry5xx}, 404, "", NoFailure, false},
		{"gateway-error: 504", &RetryPolicy{On: RetryGatewayError}, 504, "", NoFailure, true},
		{"gateway-error: 500", &RetryPolicy{On: RetryGatewayError}, 500, "", NoFailure, false},
		{"gateway-error: per-try timeout", &RetryPolicy{On: RetryGatewayError}, 0, "", PerTryTimeout, true},
		{"reset: reset", &RetryPolicy{On: RetryReset}, 0, "", ResetFailure, true},
		{"reset: 503", &RetryPolicy{On: RetryReset}, 503, "", NoFailure, false},
		{"retriable-4xx: 409", &RetryPolicy{On: RetryRetriable4xx}, 409, "", NoFailure, true},
		{"codes without the condition", &RetryPolicy{StatusCodes: []int{429}}, 429, "", NoFailure, false},
		{"no policy", nil, 503, "", ConnectFailure, false},
	}
	for _, tt := range tests {
		if got := tt.p.Retryable(tt.status, tt.grpc, tt.f); got != tt.want {
			t.Errorf("%s: Retryable = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestCompileRetryDefaults(t *testing.T) {
	p, err := compileRetry(&routev3.RetryPolicy{RetryOn: "5xx, bogus ,retriable-4xx"})
	if err != nil {
		t.Fatal(err)
	}
	if p.NumRetries != 1 || p.On != Retry5xx|RetryRetriable4xx || p.BackOffBase != DefaultRetryBaseInterval || p.BackOffMax != 10*DefaultRetryBaseInterval {
		t.Errorf("got %+v, want Envoy's defaults: 1 retry, 25ms base, 250ms max", p)
	}
	for n := 1; n < 10; n++ {
		if d := p.BackOff(n); d < 0 || d >= p.BackOffMax {
			t.Errorf("BackOff(%d) = %v, outside [0, %v)", n, d, p.BackOffMax)
		}
	}
}

func TestRedirectLocation(t *testing.T) {
	pfx := &Route{prefix: "/old/"}
	tests := []struct {
		name   string
		rd     Redirect
		scheme string
		host   string
		path   string
		query  string
		want   string
	}{
		{"path only", Redirect{Path: "/new"}, "http", "a.example.com:8080", "/x", "q=1", "http://a.example.com:8080/new?q=1"},
		{"host and port", Redirect{Host: "b.example.com", Port: 9090}, "http", "a.example.com:8080", "/x", "", "http://b.example.com:9090/x"},
		{"scheme drops the old default port", Redirect{Scheme: "https"}, "http", "a.example.com:80", "/x", "", "https://a.example.com/x"},
		{"scheme keeps another port", Redirect{Scheme: "https"}, "http", "a.example.com:8080", "/x", "", "https://a.example.com:8080/x"},
		{"default port of the new scheme dropped", Redirect{Scheme: "https", Port: 443}, "http", "a.example.com", "/x", "", "https://a.example.com/x"},
		{"query in path_redirect wins", Redirect{Path: "/n?a=b"}, "http", "h", "/x", "q=1", "http://h/n?a=b"},
		{"strip query", Redirect{Path: "/n", StripQuery: true}, "http", "h", "/x", "q=1", "http://h/n"},
		{"prefix rewrite", Redirect{PrefixRewrite: "/new/"}, "http", "h", "/old/page", "", "http://h/new/page"},
	}
	for _, tt := range tests {
		if got := tt.rd.Location(pfx, tt.scheme, tt.host, tt.path, tt.query); got != tt.want {
			t.Errorf("%s: Location = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestShadowHost(t *testing.T) {
	for in, want := range map[string]string{
		"reviews":                  "reviews-shadow",
		"reviews:9080":             "reviews-shadow:9080",
		"[::1]:80":                 "[::1]-shadow:80",
		"reviews.default.svc:9080": "reviews.default.svc-shadow:9080",
	} {
		if got := ShadowHost(in); got != want {
			t.Errorf("ShadowHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPerMillion(t *testing.T) {
	for _, tt := range []struct {
		p    *typev3.FractionalPercent
		want uint32
	}{
		{nil, 0},
		{&typev3.FractionalPercent{Numerator: 50}, 500_000},
		{&typev3.FractionalPercent{Numerator: 125_000, Denominator: typev3.FractionalPercent_MILLION}, 125_000},
		{&typev3.FractionalPercent{Numerator: 10, Denominator: typev3.FractionalPercent_TEN_THOUSAND}, 1_000},
		{&typev3.FractionalPercent{Numerator: 300}, 1_000_000},
	} {
		if got := perMillion(tt.p); got != tt.want {
			t.Errorf("perMillion(%v) = %d, want %d", tt.p, got, tt.want)
		}
	}
}
