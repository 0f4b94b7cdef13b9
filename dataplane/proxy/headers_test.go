package proxy

import (
	"net/http"
	"reflect"
	"testing"
)

func TestMoveResponseHeaders(t *testing.T) {
	tests := []struct {
		name               string
		down, resp         http.Header
		wantDown, wantResp http.Header
	}{
		{
			name:     "moved, content type too",
			down:     http.Header{},
			resp:     http.Header{"Content-Type": {"text/html"}, "X-Backend": {"a"}, "Set-Cookie": {"a=1", "b=2"}},
			wantDown: http.Header{"Content-Type": {"text/html"}, "X-Backend": {"a"}, "Set-Cookie": {"a=1", "b=2"}},
			wantResp: http.Header{},
		},
		{
			name:     "server-sent events content type left for ReverseProxy to flush",
			down:     http.Header{},
			resp:     http.Header{"Content-Type": {"Text/Event-Stream; charset=utf-8"}, "X-Backend": {"a"}},
			wantDown: http.Header{"X-Backend": {"a"}},
			wantResp: http.Header{"Content-Type": {"Text/Event-Stream; charset=utf-8"}},
		},
		{
			name:     "a key downstream already has is left to append",
			down:     http.Header{"Vary": {"Origin"}},
			resp:     http.Header{"Vary": {"Accept"}, "X-Backend": {"a"}},
			wantDown: http.Header{"Vary": {"Origin"}, "X-Backend": {"a"}},
			wantResp: http.Header{"Vary": {"Accept"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			moveResponseHeaders(tt.down, tt.resp)
			if !reflect.DeepEqual(tt.down, tt.wantDown) {
				t.Errorf("downstream %v, want %v", tt.down, tt.wantDown)
			}
			if !reflect.DeepEqual(tt.resp, tt.wantResp) {
				t.Errorf("upstream %v, want %v", tt.resp, tt.wantResp)
			}
		})
	}
}
