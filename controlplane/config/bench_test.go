package config

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// bigVirtualService is one VirtualService with n HTTP routes, each with a
// URI prefix and a header match, as YAML: finding 14's 100k-route case.
func bigVirtualService(n int) []byte {
	var b strings.Builder
	b.WriteString("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: big\nspec:\n  hosts: [reviews]\n  http:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - name: r%d\n    match:\n    - uri:\n        prefix: /api/%d\n      headers:\n        x-user:\n          exact: u%d\n    route:\n    - destination:\n        host: reviews\n        subset: v1\n      weight: 100\n    timeout: 5s\n", i, i, i)
	}
	return []byte(b.String())
}

// longHeaderVirtualService has n routes matching a header value of size
// bytes: a spec about as large encoded as written.
func longHeaderVirtualService(n, size int) []byte {
	var b strings.Builder
	b.WriteString("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: big\nspec:\n  hosts: [reviews]\n  http:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - match: [{headers: {x: {exact: %s%d}}}]\n    route: [{destination: {host: reviews}}]\n", strings.Repeat("v", size), i)
	}
	return []byte(b.String())
}

func BenchmarkParseBigVirtualService(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		data := bigVirtualService(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				rs, err := Parse("big.yaml", data)
				// Over the API server's request limit, it is refused.
				if (len(data) > MaxDocumentBytes) != (err != nil) || err == nil && len(rs) != 1 {
					b.Fatalf("Parse of %d bytes: %d resources, %v", len(data), len(rs), err)
				}
			}
		})
	}
}

// Resources over what Kubernetes could store are refused, the huge ones
// before they are decoded.
func TestParseSizeLimits(t *testing.T) {
	big := bigVirtualService(100000) // about 23 MiB: finding 14's case
	asJSON, err := yamlViaJSON(bigVirtualService(20000))
	if err != nil {
		t.Fatal(err)
	}
	jsonDoc, err := json.Marshal(asJSON)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, file string
		data       []byte
		want       string
	}{
		{"100k routes in YAML", "big.yaml", big, "big.yaml: document 1: document is 2"},
		{"a big JSON document", "big.json", jsonDoc, "big.json: document 1: document is "},
		{"a big document after a good one", "two.yaml", append([]byte("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: r}\n---\n"), big...),
			"two.yaml: document 2: document is 2"},
		{"a spec Kubernetes could not store", "spec.yaml", longHeaderVirtualService(1700, 1000),
			"spec.yaml: document 1 (VirtualService default/big): spec: is 1."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			before := ms.TotalAlloc
			rs, err := Parse(tt.file, tt.data)
			runtime.ReadMemStats(&ms)
			if err == nil || rs != nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("Parse = %d resources, %v; want an error starting %q", len(rs), err, tt.want)
			}
			if len(tt.data) > MaxDocumentBytes {
				if !strings.Contains(err.Error(), "over the 3 MiB the Kubernetes API server accepts in one request") {
					t.Errorf("error does not say why: %v", err)
				}
				// Refused while scanning: a small multiple of the input,
				// not the gigabyte decoding it took.
				if got := ms.TotalAlloc - before; got > 4*uint64(len(tt.data)) {
					t.Errorf("refusing %d bytes allocated %d", len(tt.data), got)
				}
			}
		})
	}
}
