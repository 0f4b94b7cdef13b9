package serve

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestRunDrains: when ctx ends, a request in flight finishes if it fits in
// the drain, and is cancelled when the drain ends if it does not; Run
// returns nil either way, bounded by the drain.
func TestRunDrains(t *testing.T) {
	tests := []struct {
		name      string
		takes     time.Duration
		drain     time.Duration
		wantOK    bool
		maxReturn time.Duration
	}{
		{"fits", 400 * time.Millisecond, 3 * time.Second, true, 2 * time.Second},
		{"outlasts", 30 * time.Second, 300 * time.Millisecond, false, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			started := make(chan struct{}, 1)
			cancelled := make(chan bool, 1)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				started <- struct{}{}
				select {
				case <-time.After(tt.takes):
					cancelled <- false
					_, _ = io.WriteString(w, "done")
				case <-r.Context().Done():
					cancelled <- true
				}
			})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			ran := make(chan error, 1)
			go func() { ran <- Run(ctx, ln, "", h, tt.drain, slog.New(slog.DiscardHandler)) }()
			got := make(chan string, 1)
			go func() {
				resp, err := http.Get("http://" + ln.Addr().String() + "/")
				if err != nil {
					got <- "error"
					return
				}
				b, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				got <- string(b)
			}()
			<-started
			stopped := time.Now()
			stop()
			select {
			case err := <-ran:
				if err != nil {
					t.Errorf("Run: %v, want nil", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return")
			}
			if d := time.Since(stopped); d > tt.maxReturn {
				t.Errorf("Run returned %v after ctx ended, want within %v", d, tt.maxReturn)
			}
			if body := <-got; (body == "done") != tt.wantOK {
				t.Errorf("request in flight got %q; want completed %v", body, tt.wantOK)
			}
			if c := <-cancelled; c == tt.wantOK {
				t.Errorf("handler cancelled %v, want %v", c, !tt.wantOK)
			}
		})
	}
}
