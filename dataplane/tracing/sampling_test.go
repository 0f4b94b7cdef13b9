package tracing

import (
	"net/http"
	"testing"
)

func TestDecide(t *testing.T) {
	const plain = "00001387-9a2b-4c3d-8e4f-0123456789ab" // hash 0x1387 = 4999
	const above = "00001388-9a2b-4c3d-8e4f-0123456789ab" // 5000
	pack := func(id string, c byte) string { b := []byte(id); b[14] = c; return string(b) }
	none := Sampling{Client: 10000, Random: 0, Overall: 10000}
	all := FullSampling
	half := Sampling{Client: 10000, Random: 5000, Overall: 10000}
	tests := []struct {
		name   string
		h      http.Header
		s      Sampling
		rid    RequestID
		want   Reason
		wantID string
	}{
		{"0% random", hdr("X-Request-Id", plain), none, DefaultRequestID, NotTraceable, plain},
		{"100% random", hdr("X-Request-Id", plain), all, DefaultRequestID, Sampled, pack(plain, '9')},
		{"hash under the threshold", hdr("X-Request-Id", plain), half, DefaultRequestID, Sampled, pack(plain, '9')},
		{"hash at the threshold", hdr("X-Request-Id", above), half, DefaultRequestID, NotTraceable, above},
		{"x-envoy-force-trace at 0%", hdr("X-Request-Id", plain, "X-Envoy-Force-Trace", "true"), none, DefaultRequestID, ServiceForced, pack(plain, 'a')},
		{"x-client-trace-id at 0%", hdr("X-Request-Id", plain, "X-Client-Trace-Id", "abc"), none, DefaultRequestID, ClientForced, pack(plain, 'b')},
		{"client sampling 0 ignores the client id", hdr("X-Request-Id", plain, "X-Client-Trace-Id", "abc"), Sampling{}, DefaultRequestID, NotTraceable, plain},
		{"an upstream proxy's decision stands", hdr("X-Request-Id", pack(plain, '9')), none, DefaultRequestID, Sampled, pack(plain, '9')},
		{"a forced one too", hdr("X-Request-Id", pack(plain, 'a')), none, DefaultRequestID, ServiceForced, pack(plain, 'a')},
		{"overall sampling caps a forced trace", hdr("X-Request-Id", plain, "X-Envoy-Force-Trace", "1"), Sampling{Client: 10000, Random: 10000}, DefaultRequestID, NotTraceable, plain},
		{"overall unpacks an upstream decision", hdr("X-Request-Id", pack(plain, '9')), Sampling{Client: 10000, Random: 10000}, DefaultRequestID, NotTraceable, pack(plain, '4')},
		{"pack_trace_reason false", hdr("X-Request-Id", plain), all, RequestID{UseForSampling: true}, Sampled, plain},
		{"not a UUID", hdr("X-Request-Id", "abc"), all, DefaultRequestID, NotTraceable, "abc"},
		{"no request id", hdr(), all, DefaultRequestID, NotTraceable, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Decide(tt.h, tt.s, tt.rid); got != tt.want {
				t.Errorf("reason = %v, want %v", got, tt.want)
			}
			if got := tt.h.Get("X-Request-Id"); got != tt.wantID {
				t.Errorf("x-request-id = %q, want %q", got, tt.wantID)
			}
		})
	}
}

// TestDecideStable: a request id is decided alike wherever it is decided
// (every proxy of the request's path), and the share sampled follows the
// percentage.
func TestDecideStable(t *testing.T) {
	s := Sampling{Client: 10000, Random: Percent(30), Overall: 10000}
	sampled := 0
	const n = 20000
	for i := 0; i < n; i++ {
		h := http.Header{}
		h.Set("X-Request-Id", newUUID())
		id := h.Get("X-Request-Id")
		first := Decide(h, s, RequestID{UseForSampling: true})
		for range 3 {
			h2 := http.Header{}
			h2.Set("X-Request-Id", id)
			if Decide(h2, s, RequestID{UseForSampling: true}) != first {
				t.Fatalf("%s decided differently", id)
			}
		}
		if first == Sampled {
			sampled++
		}
	}
	if share := float64(sampled) / n; share < 0.28 || share > 0.32 {
		t.Errorf("sampled %.3f of requests at 30%%", share)
	}
}

func newUUID() string {
	const hexd = "0123456789abcdef"
	b := []byte("xxxxxxxx-xxxx-4xxx-8xxx-xxxxxxxxxxxx")
	for i := range b {
		if b[i] == 'x' {
			b[i] = hexd[newID()%16]
		}
	}
	return string(b)
}

func TestPercent(t *testing.T) {
	for _, tt := range []struct {
		p    float64
		want uint32
	}{{0, 0}, {0.01, 1}, {1, 100}, {2.5, 250}, {0.004, 0}, {0.005, 1}, {99.99, 9999}, {100, 10000}, {150, 10000}, {-1, 0}} {
		if got := Percent(tt.p); got != tt.want {
			t.Errorf("Percent(%v) = %d, want %d", tt.p, got, tt.want)
		}
	}
}
