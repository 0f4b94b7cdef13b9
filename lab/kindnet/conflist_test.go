package kindnet

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

func node(name string, podCIDRs []string, ips ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDRs: podCIDRs}}
	if len(podCIDRs) > 0 {
		n.Spec.PodCIDR = podCIDRs[0]
	}
	for _, ip := range ips {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip})
	}
	n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: name})
	return n
}

func TestConflist(t *testing.T) {
	legacy := node("old", nil)
	legacy.Spec.PodCIDR = "10.244.3.0/24"
	for _, tc := range []struct {
		name   string
		node   *corev1.Node
		mtu    int
		golden string // "" when an error is expected
		err    error
	}{
		{name: "one IPv4 range", node: node("meshlab-control-plane", []string{"10.244.0.0/24"}, "172.18.0.2"), mtu: 1500, golden: "conflist-v4.json"},
		{name: "dual stack, the uplink's MTU", node: node("meshlab-worker", []string{"10.244.1.0/24", "fd00:10:244:1::/64"}, "172.18.0.3", "fc00:f853:ccd:e793::3"), mtu: 1450, golden: "conflist-dual.json"},
		{name: "spec.podCIDR only, as older clusters set it", node: legacy, mtu: 1500, golden: "conflist-legacy.json"},
		{name: "no range yet", node: node("new", nil), err: errNoPodCIDR},
		{name: "a range that does not parse", node: node("bad", []string{"10.244.0.0"}), err: errAny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Conflist(tc.node, tc.mtu)
			if tc.err != nil {
				if err == nil || (tc.err != errAny && !errors.Is(err, tc.err)) {
					t.Fatalf("Conflist = %s, %v; want error %v", got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.golden)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to write it)", err)
			}
			if string(got) != string(want) {
				t.Errorf("Conflist differs from %s:\n got: %s\nwant: %s", path, got, want)
			}
		})
	}
}

// errAny stands for any error in a table.
var errAny = errors.New("any error")

func TestWriteIfChanged(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ConflistName)
	for i, step := range []struct {
		content string
		wrote   bool
	}{
		{`{"a":1}`, true},
		{`{"a":1}`, false},
		{`{"a":2}`, true},
	} {
		wrote, err := writeIfChanged(path, []byte(step.content))
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if wrote != step.wrote {
			t.Errorf("step %d: wrote = %v, want %v", i, wrote, step.wrote)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != step.content {
			t.Fatalf("step %d: file holds %q, %v; want %q", i, got, err, step.content)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only %s (temp files left behind?)", len(entries), ConflistName)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("mode = %v, %v; want 0644: the runtime reads it", st.Mode(), err)
	}
}
