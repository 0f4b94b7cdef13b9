package controlplane

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshlab/meshlab/controlplane/api"
)

// bigBatch is an apply request of n VirtualServices of routes routes each,
// every route to subset.
func bigBatch(tb testing.TB, n, routes int, subset string) []byte {
	tb.Helper()
	req := api.ApplyRequest{}
	for i := range n {
		var http []map[string]any
		for j := range routes {
			http = append(http, map[string]any{
				"match": []any{map[string]any{"uri": map[string]any{"prefix": fmt.Sprintf("/api/v%d/items/%d", i, j)},
					"headers": map[string]any{"x-tenant": map[string]any{"exact": fmt.Sprintf("tenant-%d", j)}}}},
				"route": []any{map[string]any{"destination": map[string]any{"host": "reviews", "subset": subset}}},
			})
		}
		obj, err := json.Marshal(map[string]any{"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
			"metadata": map[string]any{"name": fmt.Sprintf("vs-%d", i), "namespace": "default"},
			"spec":     map[string]any{"hosts": []string{fmt.Sprintf("h%d.example.com", i)}, "http": http}})
		if err != nil {
			tb.Fatal(err)
		}
		req.Documents = append(req.Documents, api.Document{Source: "big.yaml", Index: i, Object: obj})
	}
	b, err := json.Marshal(req)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// BenchmarkAPIApply is an apply of a batch just under the API's limit
// through the handler, alternating two versions so every round stores.
func BenchmarkAPIApply(b *testing.B) {
	dir := b.TempDir()
	s, err := New(Options{StateDir: dir})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	tok, _ := os.ReadFile(filepath.Join(dir, "api-token"))
	h := s.Handler()
	bodies := [2][]byte{bigBatch(b, 100, 120, "v1"), bigBatch(b, 100, 120, "v2")}
	b.Logf("batch of %.2f MiB", float64(len(bodies[0]))/(1<<20))
	b.SetBytes(int64(len(bodies[0])))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:15014"+api.PathApply, bytes.NewReader(bodies[i%2]))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("apply: %d %s", rec.Code, rec.Body.String())
		}
	}
}
