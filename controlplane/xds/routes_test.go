package xds

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

func TestRetryPolicy(t *testing.T) {
	withDefaults := func(f func(*routev3.RetryPolicy)) *routev3.RetryPolicy {
		p := defaultRetryPolicy()
		f(p)
		return p
	}
	tests := []struct {
		name string
		in   *networking.HTTPRetry
		want *routev3.RetryPolicy
	}{
		{"unset: Istio's default", nil, defaultRetryPolicy()},
		{"attempts 0 disables", &networking.HTTPRetry{Attempts: 0, RetryOn: "5xx"}, nil},
		{"attempts and per-try", &networking.HTTPRetry{Attempts: 3, PerTryTimeout: durationpb.New(2e9)}, withDefaults(func(p *routev3.RetryPolicy) {
			p.NumRetries, p.PerTryTimeout = wrapperspb.UInt32(3), durationpb.New(2e9)
		})},
		{"codes in retryOn", &networking.HTTPRetry{Attempts: 1, RetryOn: "5xx, 429 ,gateway-error,503"}, withDefaults(func(p *routev3.RetryPolicy) {
			p.NumRetries, p.RetryOn, p.RetriableStatusCodes = wrapperspb.UInt32(1), "5xx,gateway-error,retriable-status-codes", []uint32{429, 503}
		})},
		{"retriable-status-codes named", &networking.HTTPRetry{Attempts: 2, RetryOn: "retriable-status-codes,502"}, withDefaults(func(p *routev3.RetryPolicy) {
			p.RetryOn, p.RetriableStatusCodes = "retriable-status-codes", []uint32{502}
		})},
		{"only conditions: no codes", &networking.HTTPRetry{Attempts: 2, RetryOn: "reset"}, withDefaults(func(p *routev3.RetryPolicy) {
			p.RetryOn, p.RetriableStatusCodes = "reset", nil
		})},
	}
	for _, tt := range tests {
		if got := retryPolicy(tt.in); !proto.Equal(got, tt.want) {
			t.Errorf("%s:\n got %v\nwant %v", tt.name, got, tt.want)
		}
	}
}

func TestSourceMatches(t *testing.T) {
	pp := source{namespace: "default", labels: map[string]string{"app": "productpage", "version": "v1"}}
	tests := []struct {
		name string
		m    *networking.HTTPMatchRequest
		gw   string
		want bool
	}{
		{"no condition", &networking.HTTPMatchRequest{}, "mesh", true},
		{"labels subset", &networking.HTTPMatchRequest{SourceLabels: map[string]string{"app": "productpage"}}, "mesh", true},
		{"labels differ", &networking.HTTPMatchRequest{SourceLabels: map[string]string{"app": "reviews"}}, "mesh", false},
		{"namespace", &networking.HTTPMatchRequest{SourceNamespace: "default"}, "mesh", true},
		{"other namespace", &networking.HTTPMatchRequest{SourceNamespace: "prod"}, "mesh", false},
		{"gateway listed", &networking.HTTPMatchRequest{Gateways: []string{"bookinfo-gateway"}}, "default/bookinfo-gateway", true},
		{"gateway not listed", &networking.HTTPMatchRequest{Gateways: []string{"mesh"}}, "default/bookinfo-gateway", false},
		{"gateways win over labels", &networking.HTTPMatchRequest{Gateways: []string{"mesh"}, SourceLabels: map[string]string{"app": "reviews"}}, "mesh", true},
	}
	for _, tt := range tests {
		if got := sourceMatches(tt.m, tt.gw, "default", pp); got != tt.want {
			t.Errorf("%s: sourceMatches = %v, want %v", tt.name, got, tt.want)
		}
	}
}
