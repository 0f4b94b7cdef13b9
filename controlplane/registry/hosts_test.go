package registry

import "testing"

func TestFQDN(t *testing.T) {
	for _, tc := range []struct{ host, ns, want string }{
		{"reviews", "book-demo", "reviews.book-demo.svc.cluster.local"},
		{"reviews.default", "book-demo", "reviews.default.svc.cluster.local"},
		{"reviews.default.svc", "book-demo", "reviews.default.svc.cluster.local"},
		{"reviews.default.svc.cluster.local", "book-demo", "reviews.default.svc.cluster.local"},
		{"*", "book-demo", "*"},
		{"*.example.com", "book-demo", "*.example.com"},
		{"api.example.com", "book-demo", "api.example.com"},
	} {
		if got := FQDN(tc.host, tc.ns); got != tc.want {
			t.Errorf("FQDN(%q, %q) = %q, want %q", tc.host, tc.ns, got, tc.want)
		}
	}
}

func TestHostMatches(t *testing.T) {
	for _, tc := range []struct {
		pattern, host string
		want          bool
	}{
		{"*", "reviews.default.svc.cluster.local", true},
		{"*.default.svc.cluster.local", "reviews.default.svc.cluster.local", true},
		{"*.other.svc.cluster.local", "reviews.default.svc.cluster.local", false},
		{"reviews.default.svc.cluster.local", "reviews.default.svc.cluster.local", true},
		{"ratings.default.svc.cluster.local", "reviews.default.svc.cluster.local", false},
	} {
		if got := HostMatches(tc.pattern, tc.host); got != tc.want {
			t.Errorf("HostMatches(%q, %q) = %v, want %v", tc.pattern, tc.host, got, tc.want)
		}
	}
}
