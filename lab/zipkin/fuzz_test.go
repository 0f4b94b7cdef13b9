package zipkin

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzPostSpans: POST /api/v2/spans takes bodies from anywhere on the
// lab's network. Whatever the body, the answer is 202 or 400, never a
// panic or a 5xx, and the store still answers its queries after it.
func FuzzPostSpans(f *testing.F) {
	f.Add([]byte(`[{"traceId":"80f198ee56343ba864fe8b2a57d3eff7","id":"e457b5a2e4d86bd1","kind":"CLIENT","name":"get","timestamp":1700000000000000,"duration":12,"localEndpoint":{"serviceName":"a.ns"},"tags":{"http.status_code":"200"}}]`), "application/json")
	f.Add([]byte(`[{"traceId":"1","id":"2"}]`), "")
	f.Add([]byte{0x0a, 0x03, 0x12, 0x01, 0x00}, "application/x-protobuf")
	f.Add([]byte(`{"not":"a list"}`), "application/json")
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		s := New(Options{MaxSpans: 100})
		h := Handler(s, nil)
		req := httptest.NewRequest(http.MethodPost, "/api/v2/spans", bytes.NewReader(body))
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusAccepted && w.Code != http.StatusBadRequest {
			t.Fatalf("POST %q (%s): %d %s", body, contentType, w.Code, w.Body)
		}
		for _, q := range []string{"/api/v2/services", "/api/v2/traces?limit=10", "/api/v2/dependencies?endTs=1800000000000&lookback=999999999999"} {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, q, nil))
			if w.Code != http.StatusOK {
				t.Fatalf("GET %s after POST %q: %d %s", q, body, w.Code, w.Body)
			}
		}
	})
}
