package metallb

import (
	"bytes"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it):\n--- got\n%s", path, got)
	}
}

func TestPoolFor(t *testing.T) {
	for _, tc := range []struct {
		name    string
		subnets []string
		want    string
		err     string
	}{
		{"docker's kind network /16", []string{"172.18.0.0/16", "fc00:f853:ccd:e793::/64"}, "172.18.255.200-172.18.255.250", ""},
		{"/24", []string{"192.168.49.0/24"}, "192.168.49.200-192.168.49.250", ""},
		{"/20", []string{"10.89.0.0/20"}, "10.89.15.200-10.89.15.250", ""},
		{"an address inside the subnet", []string{"172.19.3.4/16"}, "172.19.255.200-172.19.255.250", ""},
		{"IPv6 first", []string{"fc00::/64", "172.20.0.0/16"}, "172.20.255.200-172.20.255.250", ""},
		{"IPv6 only", []string{"fc00:f853:ccd:e793::/64"}, "", "no IPv4 subnet"},
		{"no subnet", nil, "", "no IPv4 subnet"},
		{"too small", []string{"172.18.0.0/26"}, "", "smaller than a /24"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var subnets []netip.Prefix
			for _, s := range tc.subnets {
				subnets = append(subnets, netip.MustParsePrefix(s))
			}
			r, err := PoolFor(subnets)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("PoolFor(%v) = %v, %v; want error %q", tc.subnets, r, err, tc.err)
				}
				if tc.err == "no IPv4 subnet" && !errors.Is(err, ErrNoIPv4) {
					t.Errorf("error %v does not wrap ErrNoIPv4", err)
				}
				return
			}
			if err != nil || r.String() != tc.want {
				t.Fatalf("PoolFor(%v) = %v, %v; want %s", tc.subnets, r, err, tc.want)
			}
			// The pool lies inside the subnet, clear of its broadcast address.
			s := subnets[0]
			for _, p := range subnets {
				if p.Addr().Is4() {
					s = p
					break
				}
			}
			if !s.Contains(r.First) || !s.Contains(r.Last) || !r.Contains(netip.MustParseAddr(strings.Split(tc.want, "-")[0])) {
				t.Errorf("pool %s is not inside %s", r, s)
			}
		})
	}
}

func TestObjectsGolden(t *testing.T) {
	objs := Objects(Options{MemberlistKey: []byte("test-key-not-secret")})
	b, err := Render(objs)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "metallb.yaml", b)

	pool, err := Render(PoolObjects(Range{netip.MustParseAddr("172.18.255.200"), netip.MustParseAddr("172.18.255.250")}))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "pool.yaml", pool)

	// What must hold whatever the golden file says.
	kinds := map[string]int{}
	images := map[string]bool{}
	for _, o := range objs {
		u, err := ToUnstructured(o)
		if err != nil {
			t.Fatal(err)
		}
		kinds[u.GetKind()]++
		if u.GetKind() != "Namespace" && u.GetKind() != "CustomResourceDefinition" && !strings.HasPrefix(u.GetKind(), "Cluster") && u.GetNamespace() != Namespace {
			t.Errorf("%s %s is in namespace %q, want %s", u.GetKind(), u.GetName(), u.GetNamespace(), Namespace)
		}
		cs, _, _ := unstructuredContainers(u.Object)
		for _, img := range cs {
			images[img] = true
		}
	}
	for kind, n := range map[string]int{"Namespace": 1, "CustomResourceDefinition": 8, "Deployment": 1, "DaemonSet": 1, "ServiceAccount": 2, "Secret": 1} {
		if kinds[kind] != n {
			t.Errorf("%d %s objects, want %d", kinds[kind], kind, n)
		}
	}
	for _, img := range []string{"quay.io/metallb/controller:v0.15.2", "quay.io/metallb/speaker:v0.15.2"} {
		if !images[img] {
			t.Errorf("no container runs %s (images: %v)", img, images)
		}
	}
}

func unstructuredContainers(m map[string]any) ([]string, bool, error) {
	var out []string
	spec, ok := nested(m, "spec", "template", "spec")
	if !ok {
		return nil, false, nil
	}
	cs, _ := spec["containers"].([]any)
	for _, c := range cs {
		if cm, ok := c.(map[string]any); ok {
			img, _ := cm["image"].(string)
			out = append(out, img)
		}
	}
	return out, true, nil
}
