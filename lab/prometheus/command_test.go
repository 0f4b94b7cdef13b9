package prometheus

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// TestCommand runs `meshlab prometheus` with Prometheus's flag names, as
// the lab's pod does, checks the flags reach the API, and that it ends
// cleanly when its context does (main cancels it on SIGTERM).
func TestCommand(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, KubeConfig(), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	app := &cli.App{Name: "meshlab", Commands: []*cli.Command{Command()}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- app.RunContext(ctx, []string{"meshlab", "prometheus", "--config.file", filepath.Join(dir, "local.yml"),
			"--storage.tsdb.path", filepath.Join(dir, "data"), "--web.listen-address", addr, "--log.level", "error"})
	}()
	// The file does not exist: it fails at once, naming the flag.
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("started without its config file")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a missing --config.file did not fail")
	}

	go func() {
		done <- app.RunContext(ctx, []string{"meshlab", "prometheus", "--config.file", cfg,
			"--storage.tsdb.path", filepath.Join(dir, "data"), "--web.listen-address", addr,
			"--storage.tsdb.retention.time", "3h", "--log.level", "error"})
	}()
	var flags struct {
		Data map[string]string `json:"data"`
	}
	eventually(t, 20*time.Second, "status/flags", func() error {
		resp, err := http.Get("http://" + addr + "/api/v1/status/flags")
		if err != nil {
			return err
		}
		defer func() { _ = resp.Body.Close() }()
		return json.NewDecoder(resp.Body).Decode(&flags)
	})
	if flags.Data["storage.tsdb.retention.time"] != "3h" || flags.Data["config.file"] != cfg {
		t.Errorf("status/flags: %v", flags.Data)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("after cancel: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("did not stop within 15s of its context ending")
	}
	if _, err := http.Get("http://" + addr + "/-/healthy"); err == nil {
		t.Error("still serving after shutdown")
	}
}

func TestCommandBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--storage.tsdb.retention.time", "6x"},
		{"--storage.tsdb.retention.size", "lots"},
		{"--log.level", "loud"},
	} {
		app := &cli.App{Name: "meshlab", Commands: []*cli.Command{Command()}, ExitErrHandler: func(*cli.Context, error) {}}
		err := app.Run(append([]string{"meshlab", "prometheus"}, args...))
		var ec cli.ExitCoder
		if err == nil || !asExit(err, &ec) || ec.ExitCode() != 2 {
			t.Errorf("%v: %v; want a usage error (exit 2)", args, err)
		}
	}
}

func asExit(err error, ec *cli.ExitCoder) bool {
	e, ok := err.(cli.ExitCoder)
	if ok {
		*ec = e
	}
	return ok && fmt.Sprint(e) != ""
}
