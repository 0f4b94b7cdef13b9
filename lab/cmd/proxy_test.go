package cmd

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/urfave/cli/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshlab/meshlab/controlplane"
	"github.com/meshlab/meshlab/dataplane/xdsclient"
	"github.com/meshlab/meshlab/lab"
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
	xdsAddr, apiAddr, token := serveControlPlane(ctx, t)

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
		if err := app.Run([]string{"meshlab", "proxy-status", "--controlplane", "http://" + apiAddr, "--token", token}); err == nil &&
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

// `apply --wait` waits for the proxies the change concerns: a node that
// never acknowledges anything does not hold up a change to the gateway.
func TestApplyWaitIgnoresStranger(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	xdsAddr, apiAddr, token := serveControlPlane(ctx, t)

	// The stranger subscribes and never says another word.
	conn, err := grpc.NewClient(xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx, grpc.WaitForReady(true))
	if err != nil {
		t.Fatal(err)
	}
	for _, url := range []string{xdsclient.ClusterType, xdsclient.ListenerType} {
		if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "sidecar~198.18.0.66~stranger.default~default.svc.cluster.local"}, TypeUrl: url}); err != nil {
			t.Fatal(err)
		}
	}
	// The gateway ACKs what it gets.
	labels, err := structpb.NewStruct(map[string]any{"istio": "ingressgateway"})
	if err != nil {
		t.Fatal(err)
	}
	gw := xdsclient.New(xdsclient.Config{
		Address: xdsAddr,
		Node: &corev3.Node{Id: "router~198.18.0.2~istio-ingressgateway-0.istio-system~istio-system.svc.cluster.local",
			Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{"LABELS": structpb.NewStructValue(labels)}}},
		Logger: slog.New(slog.DiscardHandler),
	})
	gwCtx, stopGW := context.WithCancel(ctx)
	gwDone := make(chan struct{})
	go func() { defer close(gwDone); _ = gw.Run(gwCtx) }()
	defer func() { stopGW(); <-gwDone }()

	dir := t.TempDir()
	file := filepath.Join(dir, "gw.yaml")
	if err := os.WriteFile(file, []byte(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	app := &cli.App{Name: "meshlab", Writer: &out, ErrWriter: &out, ExitErrHandler: func(*cli.Context, error) {},
		Commands: []*cli.Command{Apply()}}
	start := time.Now()
	err = app.Run([]string{"meshlab", "apply", "-f", file, "--wait", "--controlplane", "http://" + apiAddr, "--token", token})
	if err != nil {
		t.Fatalf("apply --wait with a silent stranger: %v\n%s", err, out.String())
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("apply --wait took %s", d)
	}
	if !gw.Snapshot().Has(xdsclient.ListenerType) || gw.Snapshot().Listeners["0.0.0.0_8080"] == nil {
		t.Errorf("gateway has no listener for the change after the wait: %v", gw.Snapshot().Listeners)
	}
}

// serveControlPlane runs a real control plane on loopback until the test
// ends, and returns its xDS and API addresses and the API token it made.
func serveControlPlane(ctx context.Context, t *testing.T) (xdsAddr, apiAddr, token string) {
	t.Helper()
	xdsAddr, apiAddr = freeAddr(t), freeAddr(t)
	cpDir := t.TempDir()
	s, err := controlplane.New(controlplane.Options{StateDir: cpDir, XDSAddr: xdsAddr, HTTPAddr: apiAddr,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	token, err = lab.ReadAPIToken(cpDir) // the control plane made it there
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- s.Serve(serveCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		_ = s.Close()
	})
	return xdsAddr, apiAddr, token
}
