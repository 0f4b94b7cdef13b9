package xds

import (
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlab/meshlab/controlplane/config"
)

// TestOldestFirst is Istio's sortConfigByCreationTime: creation time,
// then name, then namespace.
func TestOldestFirst(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	res := func(ns, name string, sec int) config.Resource {
		return config.Resource{Namespace: ns, Name: name, CreationTimestamp: t0.Add(time.Duration(sec) * time.Second)}
	}
	tests := []struct {
		name string
		a, b config.Resource
		want int
	}{
		{"older first, whatever the name", res("ns", "z", 0), res("ns", "a", 1), -1},
		{"younger last", res("ns", "a", 1), res("ns", "z", 0), 1},
		{"same second: by name", res("ns", "a", 0), res("ns", "b", 0), -1},
		{"same second and name: by namespace", res("b", "x", 0), res("a", "x", 0), 1},
		{"never stored (zero) sorts as oldest", config.Resource{Namespace: "ns", Name: "z"}, res("ns", "a", 0), -1},
		{"equal", res("ns", "a", 0), res("ns", "a", 0), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := oldestFirst(tt.a, tt.b); got != tt.want {
				t.Errorf("oldestFirst = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestIndexOldestWins: of two DestinationRules for one host in one
// namespace, the older applies (Istio's initDestinationRules merges into
// the oldest, whose traffic policy stays), and Gateways come oldest first
// (initGateways), though the younger sorts first by name.
func TestIndexOldestWins(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	dr := func(name string, sec int) config.Resource {
		return config.Resource{Kind: config.DestinationRule, Namespace: "default", Name: name,
			CreationTimestamp: t0.Add(time.Duration(sec) * time.Second),
			Spec:              &networking.DestinationRule{Host: "reviews"}}
	}
	gw := func(name string, sec int) config.Resource {
		return config.Resource{Kind: config.Gateway, Namespace: "default", Name: name,
			CreationTimestamp: t0.Add(time.Duration(sec) * time.Second),
			Spec:              &networking.Gateway{Selector: map[string]string{"istio": "ingressgateway"}}}
	}
	x := newIndex(Input{Config: []config.Resource{dr("a-newer", 5), dr("reviews", 1), gw("a-newer", 5), gw("z-older", 1)}})
	if got := x.drByHost["default"]["reviews.default.svc.cluster.local"]; got == nil || got.res.Name != "reviews" {
		t.Errorf("DestinationRule for reviews: %+v, want the older, reviews", got)
	}
	if len(x.gateways) != 2 || x.gateways[0].res.Name != "z-older" {
		t.Errorf("gateways not oldest first: %v", x.gateways)
	}
}
