package controlplane

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/controlplane/xds"
)

// TestJWKSInlinedOnPush: a RequestAuthentication naming a jwksUri reaches
// the gateway with the key set the control plane fetched (from a
// loopback server) inlined, and one whose fetch fails with Istio's fake
// key set — end to end through apply, the push loop and ADS.
func TestJWKSInlinedOnPush(t *testing.T) {
	const keys = `{"keys":[{"kty":"oct","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA","alg":"HS256"}]}`
	keySrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/keys" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(keys))
	}))
	defer keySrv.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	xdsAddr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	s, err := New(Options{StateDir: dir, XDSAddr: xdsAddr, HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() { cancel(); <-done; s.Close() }()
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	cl := api.NewClient(hs.URL)
	cl.Token = testToken(t, dir)

	policy := `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: istio-system}
spec:
  selector:
    matchLabels: {istio: ingressgateway}
  jwtRules:
  - issuer: fetched
    jwksUri: ` + keySrv.URL + `/keys
  - issuer: unreachable
    jwksUri: ` + keySrv.URL + `/missing
`
	docs, err := api.Documents("jwt.yaml", []byte(policy), "default")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Apply(ctx, api.ApplyRequest{Documents: docs}); err != nil {
		t.Fatal(err)
	}

	conn, err := grpc.NewClient(xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	labels, _ := structpb.NewStruct(map[string]any{"istio": "ingressgateway"})
	node := &corev3.Node{Id: "router~127.0.0.1~gw-0.istio-system~istio-system.svc.cluster.local", Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
		"NAMESPACE": structpb.NewStringValue("istio-system"), "LABELS": structpb.NewStructValue(labels)}}}
	var providers map[string]*jwtv3.JwtProvider
	for attempt := 0; attempt < 50 && len(providers) == 0; attempt++ {
		providers = gatewayJWTProviders(ctx, t, conn, node)
		if len(providers) == 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	byIssuer := map[string]string{}
	for _, p := range providers {
		byIssuer[p.GetIssuer()] = p.GetLocalJwks().GetInlineString()
	}
	if byIssuer["fetched"] != keys {
		t.Errorf("fetched keys inlined as %.60q, want the server's", byIssuer["fetched"])
	}
	if byIssuer["unreachable"] != xds.FakeJWKS {
		t.Errorf("failed fetch inlined as %.60q, want Istio's fake JWKS", byIssuer["unreachable"])
	}
}

// gatewayJWTProviders asks for the gateway's listeners once and returns
// the jwt_authn providers of its first HCM (nil if none yet).
func gatewayJWTProviders(ctx context.Context, t *testing.T, conn *grpc.ClientConn, node *corev3.Node) map[string]*jwtv3.JwtProvider {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resource.ListenerType}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil
	}
	for _, a := range resp.GetResources() {
		var l listenerv3.Listener
		if err := a.UnmarshalTo(&l); err != nil {
			t.Fatal(err)
		}
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				var h hcmv3.HttpConnectionManager
				if f.GetTypedConfig().UnmarshalTo(&h) != nil {
					continue
				}
				for _, hf := range h.GetHttpFilters() {
					var cfg jwtv3.JwtAuthentication
					if hf.GetName() == "envoy.filters.http.jwt_authn" && hf.GetTypedConfig().UnmarshalTo(&cfg) == nil {
						return cfg.GetProviders()
					}
				}
			}
		}
	}
	return nil
}
