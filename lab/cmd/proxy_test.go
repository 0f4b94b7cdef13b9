package cmd

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/controlplane"
	"github.com/meshlab/meshlab/dataplane/xdsclient"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// A proxy's NACK reaches `meshlab proxy-status` with the proxy's own
// message, as istioctl proxy-status shows it; a control character in
// that message does not reach the terminal.
func TestProxyStatusShowsNACK(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	xdsAddr, apiAddr := freeAddr(t), freeAddr(t)
	s, err := controlplane.New(controlplane.Options{StateDir: t.TempDir(), XDSAddr: xdsAddr, HTTPAddr: apiAddr,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- s.Serve(serveCtx) }()
	defer func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	// A real xDS client over loopback that refuses every listener update.
	cl := xdsclient.New(xdsclient.Config{
		Address: xdsAddr,
		Node:    &corev3.Node{Id: "sidecar~198.18.0.10~productpage-v1-0.default~default.svc.cluster.local"},
		Check: func(_ *xdsclient.Snapshot, typeURL string) error {
			if typeURL == xdsclient.ListenerType {
				return errors.New("listener \"virtualInbound\": unsupported filter\x1b[2J")
			}
			return nil
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	clientCtx, stopClient := context.WithCancel(ctx)
	clientDone := make(chan struct{})
	go func() { defer close(clientDone); _ = cl.Run(clientCtx) }()
	defer func() { stopClient(); <-clientDone }()

	for {
		var out bytes.Buffer
		app := &cli.App{Name: "meshlab", Writer: &out, ErrWriter: &out, ExitErrHandler: func(*cli.Context, error) {},
			Commands: []*cli.Command{ProxyStatus()}}
		if err := app.Run([]string{"meshlab", "proxy-status", "--controlplane", "http://" + apiAddr}); err == nil &&
			strings.Contains(out.String(), "productpage-v1-0.default LDS NACK of version") {
			got := out.String()
			if !strings.Contains(got, `listener "virtualInbound": unsupported filter?[2J`) {
				t.Errorf("proxy-status lacks the proxy's message, control characters replaced:\n%s", got)
			}
			if !strings.Contains(got, "STALE (NACK)") {
				t.Errorf("proxy-status table does not mark the NACK:\n%s", got)
			}
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("proxy-status never showed the NACK")
		case <-time.After(50 * time.Millisecond):
		}
	}
}
