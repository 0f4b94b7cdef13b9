package extauthz

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// TestServer runs the sample on loopback and checks both APIs as Envoy
// calls them: the header or the allowed account allows, anything else is
// a 403 with x-ext-authz-check-result: denied.
func TestServer(t *testing.T) {
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{HTTPListener: hl, GRPCListener: gl, AllowedServiceAccount: "a", Drain: 100 * time.Millisecond})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	httpTests := []struct {
		name, header, xfcc string
		want               int
		result             string
	}{
		{"allow header", "allow", "", 200, ResultAllowed},
		{"other header", "deny", "", 403, ResultDenied},
		{"allowed account", "", "By=spiffe://cluster.local/ns/foo/sa/b;URI=spiffe://cluster.local/ns/foo/sa/a", 200, ResultAllowed},
		{"other account", "", "URI=spiffe://cluster.local/ns/foo/sa/b", 403, ResultDenied},
	}
	for _, tc := range httpTests {
		t.Run("http "+tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, "http://"+hl.Addr().String()+"/check/headers", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.header != "" {
				req.Header.Set(CheckHeader, tc.header)
			}
			if tc.xfcc != "" {
				req.Header.Set("X-Forwarded-Client-Cert", tc.xfcc)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != tc.want || resp.Header.Get(ResultHeader) != tc.result {
				t.Errorf("%d %s=%q, want %d %q", resp.StatusCode, ResultHeader, resp.Header.Get(ResultHeader), tc.want, tc.result)
			}
			if tc.want == 403 && !strings.Contains(string(b), "x-ext-authz: allow") {
				t.Errorf("body %q does not say why", b)
			}
		})
	}

	conn, err := grpc.NewClient("passthrough:///"+gl.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	client := authv3.NewAuthorizationClient(conn)
	grpcTests := []struct {
		name, header, principal string
		allowed                 bool
	}{
		{"allow header", "allow", "", true},
		{"no header", "", "", false},
		{"allowed account", "", "spiffe://cluster.local/ns/foo/sa/a", true},
		{"other account", "", "spiffe://cluster.local/ns/foo/sa/ab", false},
	}
	for _, tc := range grpcTests {
		t.Run("grpc "+tc.name, func(t *testing.T) {
			h := map[string]string{}
			if tc.header != "" {
				h[CheckHeader] = tc.header
			}
			resp, err := client.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Source:  &authv3.AttributeContext_Peer{Principal: tc.principal},
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/headers", Headers: h}},
			}})
			if err != nil {
				t.Fatal(err)
			}
			allowed := codes.Code(resp.GetStatus().GetCode()) == codes.OK
			if allowed != tc.allowed {
				t.Fatalf("allowed %v, want %v", allowed, tc.allowed)
			}
			if !allowed && (resp.GetDeniedResponse().GetStatus().GetCode() != 403 || resp.GetDeniedResponse().GetHeaders()[0].GetHeader().GetValue() != ResultDenied) {
				t.Errorf("denied response %v", resp.GetDeniedResponse())
			}
		})
	}
}
