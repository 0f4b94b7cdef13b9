package helloworld

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

// start runs helloworld on a loopback listener until the test ends.
func start(t *testing.T, opts Options) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts.Listener, opts.Logger = ln, slog.New(slog.DiscardHandler)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opts) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestAnswers(t *testing.T) {
	tests := []struct {
		name       string
		opts       Options
		path       string
		wantStatus int
		wantBody   string
	}{
		{"hello v1", Options{Version: "v1", Instance: "helloworld-v1-7d8f9-abcde"}, "/hello", 200,
			"Hello version: v1, instance: helloworld-v1-7d8f9-abcde\n"},
		{"hello v2", Options{Version: "v2", Instance: "helloworld-v2-1"}, "/hello", 200,
			"Hello version: v2, instance: helloworld-v2-1\n"},
		{"default version", Options{Instance: "x"}, "/hello", 200, "Hello version: v1, instance: x\n"},
		{"health", Options{Version: "v2", Instance: "x"}, "/health", 200, "Helloworld is healthy"},
		{"unknown path", Options{Instance: "x"}, "/hello/there", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := start(t, tt.opts)
			code, body := get(t, base+tt.path)
			if code != tt.wantStatus {
				t.Errorf("GET %s = %d, want %d", tt.path, code, tt.wantStatus)
			}
			if tt.wantBody != "" && body != tt.wantBody {
				t.Errorf("GET %s body = %q, want %q", tt.path, body, tt.wantBody)
			}
		})
	}
}

// TestCommandReadsEnv: the manifest sets SERVICE_VERSION and the runtime
// sets HOSTNAME; the command must answer with both.
func TestCommandReadsEnv(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	t.Setenv("SERVICE_VERSION", "v2")
	t.Setenv("HOSTNAME", "helloworld-v2-abc")
	ctx, stop := context.WithCancel(context.Background())
	app := &cli.App{Name: "meshlab", Commands: []*cli.Command{Command()}, Writer: io.Discard, ErrWriter: io.Discard}
	done := make(chan error, 1)
	go func() { done <- app.RunContext(ctx, []string{"meshlab", "helloworld", "--addr", addr}) }()
	var body string
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/hello")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			body = string(b)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Errorf("command: %v", err)
	}
	if want := "Hello version: v2, instance: helloworld-v2-abc\n"; body != want {
		t.Errorf("GET /hello = %q, want %q", body, want)
	}
}

func TestCommandArgs(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr bool
	}{
		{[]string{"meshlab", "helloworld", "--help"}, false},
		{[]string{"meshlab", "helloworld", "extra"}, true},
		{[]string{"meshlab", "helloworld", "--termination-drain-duration", "0"}, true},
	}
	for _, tt := range tests {
		out := new(strings.Builder)
		app := &cli.App{Name: "meshlab", Commands: []*cli.Command{Command()}, Writer: out, ErrWriter: out,
			ExitErrHandler: func(*cli.Context, error) {}}
		err := app.Run(tt.args)
		if (err != nil) != tt.wantErr {
			t.Errorf("%v: err = %v, want error %v", tt.args, err, tt.wantErr)
		}
	}
}
