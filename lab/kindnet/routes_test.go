package kindnet

import (
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

func TestWantedRoutes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		nodes []*corev1.Node
		want  []route
	}{
		{
			name: "own node left out, others through their InternalIP, sorted by range",
			nodes: []*corev1.Node{
				node("w2", []string{"10.244.2.0/24"}, "172.18.0.4"),
				node("cp", []string{"10.244.0.0/24"}, "172.18.0.2"),
				node("w1", []string{"10.244.1.0/24"}, "172.18.0.3"),
			},
			want: []route{
				{Node: "w1", Dst: pfx("10.244.1.0/24"), Via: addr("172.18.0.3")},
				{Node: "w2", Dst: pfx("10.244.2.0/24"), Via: addr("172.18.0.4")},
			},
		},
		{
			name: "nodes without a range or an InternalIP skipped",
			nodes: []*corev1.Node{
				node("cp", []string{"10.244.0.0/24"}, "172.18.0.2"),
				node("no-range", nil, "172.18.0.3"),
				node("no-ip", []string{"10.244.2.0/24"}),
				node("bad-range", []string{"10.244.3.0"}, "172.18.0.5"),
			},
		},
		{
			name: "IPv6 range ignored without an IPv6 InternalIP",
			nodes: []*corev1.Node{
				node("cp", []string{"10.244.0.0/24"}, "172.18.0.2"),
				node("w1", []string{"10.244.1.0/24", "fd00:10:244:1::/64"}, "172.18.0.3"),
			},
			want: []route{{Node: "w1", Dst: pfx("10.244.1.0/24"), Via: addr("172.18.0.3")}},
		},
		{
			name: "dual stack: each range through the address of its family",
			nodes: []*corev1.Node{
				node("w1", []string{"10.244.1.0/24", "fd00:10:244:1::/64"}, "fc00::3", "172.18.0.3"),
			},
			want: []route{
				{Node: "w1", Dst: pfx("10.244.1.0/24"), Via: addr("172.18.0.3")},
				{Node: "w1", Dst: pfx("fd00:10:244:1::/64"), Via: addr("fc00::3")},
			},
		},
		{
			name: "IPv4 range ignored on an IPv6-only node",
			nodes: []*corev1.Node{
				node("w1", []string{"10.244.1.0/24"}, "fc00::3"),
			},
		},
		{
			name: "spec.podCIDR alone counts",
			nodes: func() []*corev1.Node {
				n := node("w1", nil, "172.18.0.3")
				n.Spec.PodCIDR = "10.244.1.0/24"
				return []*corev1.Node{n}
			}(),
			want: []route{{Node: "w1", Dst: pfx("10.244.1.0/24"), Via: addr("172.18.0.3")}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := wantedRoutes("cp", tc.nodes)
			if !slices.Equal(got, tc.want) {
				t.Errorf("wantedRoutes =\n %v\nwant\n %v", got, tc.want)
			}
		})
	}
}

func TestOnLink(t *testing.T) {
	nets := []localNet{
		{Prefix: pfx("127.0.0.1/8"), LinkIndex: 1},
		{Prefix: pfx("172.18.0.2/16"), LinkIndex: 7},
		{Prefix: pfx("10.244.0.1/32"), LinkIndex: 9}, // ptp's gateway on a pod's veth
		{Prefix: pfx("fc00::2/64"), LinkIndex: 7},
	}
	for _, tc := range []struct {
		via  string
		link int
		ok   bool
	}{
		{"172.18.0.3", 7, true},
		{"172.19.0.3", 0, false}, // another network: would need a gateway
		{"172.18.0.2", 0, false}, // this node's own address
		{"10.244.0.1", 0, false}, // a host prefix is no subnet
		{"fc00::3", 7, true},
		{"fc01::3", 0, false},
	} {
		link, ok := onLink(addr(tc.via), nets)
		if link != tc.link || ok != tc.ok {
			t.Errorf("onLink(%s) = %d, %v; want %d, %v", tc.via, link, ok, tc.link, tc.ok)
		}
	}
}

func TestPlanRoutes(t *testing.T) {
	w1 := kernelRoute{Dst: pfx("10.244.1.0/24"), Via: addr("172.18.0.3"), LinkIndex: 7}
	w2 := kernelRoute{Dst: pfx("10.244.2.0/24"), Via: addr("172.18.0.4"), LinkIndex: 7}
	w2moved := kernelRoute{Dst: pfx("10.244.2.0/24"), Via: addr("172.18.0.9"), LinkIndex: 7}
	for _, tc := range []struct {
		name                       string
		want, ours                 []kernelRoute
		foreign                    []netip.Prefix
		replace, remove, conflicts []kernelRoute
	}{
		{name: "first pass adds all", want: []kernelRoute{w1, w2}, replace: []kernelRoute{w1, w2}},
		{name: "in step: nothing to do", want: []kernelRoute{w1, w2}, ours: []kernelRoute{w1, w2}},
		{name: "a node gone: its route removed", want: []kernelRoute{w1}, ours: []kernelRoute{w1, w2}, remove: []kernelRoute{w2}},
		{name: "a node with a new address: replaced", want: []kernelRoute{w1, w2moved}, ours: []kernelRoute{w1, w2}, replace: []kernelRoute{w2moved}},
		{
			name: "a range another route holds is left alone", want: []kernelRoute{w1, w2},
			foreign:   []netip.Prefix{pfx("10.244.2.0/24"), pfx("172.18.0.0/16")},
			replace:   []kernelRoute{w1},
			conflicts: []kernelRoute{w2},
		},
		{name: "no nodes: every route of ours removed", ours: []kernelRoute{w1, w2}, remove: []kernelRoute{w1, w2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			replace, remove, conflicts := planRoutes(tc.want, tc.ours, tc.foreign)
			if !slices.Equal(replace, tc.replace) || !slices.Equal(remove, tc.remove) || !slices.Equal(conflicts, tc.conflicts) {
				t.Errorf("planRoutes = replace %v, remove %v, conflicts %v; want %v, %v, %v",
					replace, remove, conflicts, tc.replace, tc.remove, tc.conflicts)
			}
		})
	}
}

func TestMasqueradeRejectsIPv6(t *testing.T) {
	// Before any socket is opened: nil conn is never reached.
	if err := masquerade(nil, pfx("fd00::/48")); err == nil {
		t.Fatal("masquerade accepted an IPv6 pod subnet for an ip-family table")
	}
}
