package controlplane

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/meshlab/meshlab/controlplane/api"
)

// repeatedBatch streams an apply request of n copies of one VirtualService
// document without holding it in memory.
func repeatedBatch(n int) (io.Reader, int64) {
	const doc = `{"source":"big.yaml","index":0,"object":{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"r","namespace":"default"},"spec":{"hosts":["r"],"http":[{"route":[{"destination":{"host":"r","subset":"v1"}}]}]}}}`
	const per = 4096
	chunk := strings.Repeat(doc+",", per)
	var rs []io.Reader
	rs = append(rs, strings.NewReader(`{"documents":[`))
	left := n
	for ; left > per; left -= per {
		rs = append(rs, strings.NewReader(chunk))
	}
	rs = append(rs, strings.NewReader(strings.Repeat(doc+",", left-1)+doc+`]}`))
	size := int64(len(`{"documents":[`)+len(`]}`)) + int64(n)*int64(len(doc)+1) - 1
	return io.MultiReader(rs...), size
}

// TestAPIBodyLimit: a body over api.MaxRequestBytes gets 413 naming the
// limit, whether its length is announced or streamed, and costs a bounded
// amount of memory; one under the limit is applied.
func TestAPIBodyLimit(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Options{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	h := s.Handler()
	token := testToken(t, dir)

	perDoc := func() int64 { _, n := repeatedBatch(1); return n }()
	tests := []struct {
		name     string
		docs     int
		streamed bool // no Content-Length: chunked
		want     int
		maxAlloc uint64 // bytes the request may allocate; 0: no check
	}{
		{name: "under the limit", docs: int(api.MaxRequestBytes/perDoc) * 9 / 10, want: http.StatusOK},
		{name: "just over, announced", docs: int(api.MaxRequestBytes/perDoc) * 11 / 10, want: http.StatusRequestEntityTooLarge, maxAlloc: 1 << 20},
		{name: "60 MiB announced", docs: int(60 << 20 / perDoc), want: http.StatusRequestEntityTooLarge, maxAlloc: 1 << 20},
		{name: "60 MiB streamed", docs: int(60 << 20 / perDoc), streamed: true, want: http.StatusRequestEntityTooLarge, maxAlloc: 64 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, size := repeatedBatch(tt.docs)
			req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:15014"+api.PathApply, body)
			req.ContentLength = size
			if tt.streamed {
				req.ContentLength = -1
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+token)
			rec := httptest.NewRecorder()
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			h.ServeHTTP(rec, req)
			runtime.ReadMemStats(&after)
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%.1f MiB body: %d, allocated %.1f MiB", float64(size)/(1<<20), rec.Code, float64(alloc)/(1<<20))
			if rec.Code != tt.want {
				t.Fatalf("apply of %d bytes: %d %.300s; want %d", size, rec.Code, rec.Body.String(), tt.want)
			}
			if tt.want == http.StatusRequestEntityTooLarge && !bytes.Contains(rec.Body.Bytes(), []byte(fmt.Sprintf("limit of %d bytes (3 MiB", api.MaxRequestBytes))) {
				t.Errorf("a 413 should name the limit: %s", rec.Body.String())
			}
			if tt.maxAlloc != 0 && alloc > tt.maxAlloc {
				t.Errorf("refusing %.1f MiB allocated %.1f MiB, want at most %.1f", float64(size)/(1<<20), float64(alloc)/(1<<20), float64(tt.maxAlloc)/(1<<20))
			}
		})
	}
}

// TestClientRefusesLargeBatch: the client does not send a request the API
// would refuse; nothing listens on port 1, so the error is the client's.
func TestClientRefusesLargeBatch(t *testing.T) {
	obj := []byte(`{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"r"},"spec":{"hosts":["` + strings.Repeat("a", 1<<20) + `"]}}`)
	var docs []api.Document
	for i := range 4 {
		docs = append(docs, api.Document{Source: fmt.Sprintf("f%d.yaml", i), Object: obj})
	}
	_, err := api.NewClient("127.0.0.1:1").Apply(t.Context(), api.ApplyRequest{Documents: docs})
	if err == nil || !strings.Contains(err.Error(), "over the API's limit of 3 MiB") {
		t.Fatalf("apply of a 4 MiB batch: %v; want the client to refuse it", err)
	}
}
