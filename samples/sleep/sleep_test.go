package sleep

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

// TestRunWaitsForStop: Run is still running while ctx lives and returns nil
// promptly once it ends, as the pod's main process must on SIGTERM.
func TestRunWaitsForStop(t *testing.T) {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, slog.New(slog.DiscardHandler)) }()
	select {
	case err := <-done:
		t.Fatalf("Run returned %v before it was stopped", err)
	case <-time.After(200 * time.Millisecond):
	}
	stopped := time.Now()
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v, want nil", err)
		}
		if d := time.Since(stopped); d > 100*time.Millisecond {
			t.Errorf("Run returned %v after stop, want at once", d)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return after stop")
	}
}

func TestCommand(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr bool
	}{
		{[]string{"meshlab", "sleep", "--help"}, false},
		{[]string{"meshlab", "curl", "--help"}, false},
		{[]string{"meshlab", "sleep", "extra"}, true},
		{[]string{"meshlab", "curl", "http://example"}, true},
		// A cancelled context: the mode returns at once and cleanly.
		{[]string{"meshlab", "curl"}, false},
		{[]string{"meshlab", "sleep"}, false},
	}
	for _, tt := range tests {
		out := new(strings.Builder)
		app := &cli.App{Name: "meshlab", Commands: []*cli.Command{Command()}, Writer: out, ErrWriter: out,
			ExitErrHandler: func(*cli.Context, error) {}}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := app.RunContext(ctx, tt.args)
		if (err != nil) != tt.wantErr {
			t.Errorf("%v: err = %v, want error %v", tt.args, err, tt.wantErr)
		}
		if strings.HasSuffix(tt.args[len(tt.args)-1], "--help") && !strings.Contains(out.String(), "meshlab exec") {
			t.Errorf("%v: help has no example of meshlab exec:\n%s", tt.args, out)
		}
	}
}
