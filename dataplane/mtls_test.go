package dataplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
	"google.golang.org/grpc"

	"github.com/meshlab/meshlab/controlplane/ca"
	"github.com/meshlab/meshlab/controlplane/csr"
	"github.com/meshlab/meshlab/controlplane/store"
	"github.com/meshlab/meshlab/controlplane/xds"
	"github.com/meshlab/meshlab/dataplane/identity"
)

// istiod15012 is istiod's 15012 as the control plane serves it: the CSR
// API and ADS on one gRPC server over TLS, client certificates from the
// mesh CA asked for.
func istiod15012(t *testing.T) (addr string, root *ca.CA, tokens *csr.PodTokens, xs *xds.Server) {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	st, err := store.Open(filepath.Join(t.TempDir(), "meshlab.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	root, err = ca.Load(st)
	if err != nil {
		t.Fatal(err)
	}
	tokens = csr.NewPodTokens(st)
	cs, err := csr.New(csr.Options{CA: root, Auth: tokens, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	xs = xds.NewServer(quiet)
	ctx, cancel := context.WithCancel(context.Background())
	if err := xs.Update(ctx, xds.Input{}, "1"); err != nil {
		t.Fatal(err)
	}
	cert, err := root.ServingCert([]string{"istiod.istio-system.svc"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: root.Pool()}
	done := make(chan error, 1)
	go func() {
		done <- cs.ServeTLS(ctx, lis, cfg, time.Second, func(g *grpc.Server) { xs.Register(ctx, g) }, xds.GRPCOptions()...)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return lis.Addr().String(), root, tokens, xs
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// The proxy gets its certificate with the pod token, then speaks xDS over
// mutual TLS on the same port with it: the control plane knows it by the
// identity of its certificate. Its /config_dump lists "default" and
// "ROOTCA" as Envoy's SecretsConfigDump, without the private key.
func TestRunXDSOverMTLS(t *testing.T) {
	addr, root, tokens, xs := istiod15012(t)
	dir := t.TempDir()
	tok, err := tokens.Issue("foo", "httpbin", "httpbin-0")
	if err != nil {
		t.Fatal(err)
	}
	tokenPath, rootPath := filepath.Join(dir, "istio-token"), filepath.Join(dir, "root-cert.pem")
	if err := os.WriteFile(tokenPath, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rootPath, root.RootPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	admin, status := freeAddr(t), freeAddr(t)
	node := "sidecar~127.0.0.1~httpbin-0.foo~foo.svc.cluster.local"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{
			Mode: ModeSidecar, NodeID: node, Metadata: map[string]string{"SERVICE_ACCOUNT": "httpbin", "NAMESPACE": "foo"},
			DiscoveryAddress: addr, XDSServerName: "istiod.istio-system.svc",
			Identity: &identity.Config{CAAddress: addr, CAServerName: "istiod.istio-system.svc", TokenPath: tokenPath, RootCertPath: rootPath,
				Namespace: "foo", ServiceAccount: "httpbin", TTL: time.Hour},
			AdminAddr: admin, ReadyAddr: "127.0.0.1:0", StatsAddr: "-", DNSAddr: "-", StatusAddr: status, DrainTimeout: time.Second,
			Logger: slog.New(slog.DiscardHandler),
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	deadline := time.Now().Add(20 * time.Second)
	var synced bool
	for !synced && time.Now().Before(deadline) {
		for _, p := range xs.Status() {
			if p.ID == node && p.PerType["type.googleapis.com/envoy.config.listener.v3.Listener"].State == xds.Synced {
				if p.Identity != "spiffe://cluster.local/ns/foo/sa/httpbin" {
					t.Fatalf("the control plane knows the proxy as %q, want its certificate's identity", p.Identity)
				}
				synced = true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !synced {
		t.Fatalf("the proxy did not sync over mTLS: %+v", xs.Status())
	}

	resp, err := http.Get("http://" + admin + "/config_dump")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(body), "PRIVATE KEY") {
		t.Fatal("/config_dump shows a private key")
	}
	var dump struct {
		Configs []struct {
			Type    string `json:"@type"`
			Secrets []struct {
				Name   string `json:"name"`
				Secret struct {
					TLS *struct {
						Chain struct {
							Bytes []byte `json:"inline_bytes"`
						} `json:"certificate_chain"`
						Key struct {
							String string `json:"inline_string"`
						} `json:"private_key"`
					} `json:"tls_certificate"`
					VC *struct {
						CA struct {
							Bytes []byte `json:"inline_bytes"`
						} `json:"trusted_ca"`
					} `json:"validation_context"`
				} `json:"secret"`
			} `json:"dynamic_active_secrets"`
		} `json:"configs"`
	}
	if err := json.Unmarshal(body, &dump); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range dump.Configs {
		if c.Type != "type.googleapis.com/envoy.admin.v3.SecretsConfigDump" {
			continue
		}
		for _, s := range c.Secrets {
			names = append(names, s.Name)
			switch s.Name {
			case "default":
				if s.Secret.TLS == nil || s.Secret.TLS.Key.String != "[redacted]" {
					t.Errorf("default: %+v, want the key redacted", s.Secret.TLS)
					continue
				}
				b, _ := pem.Decode(s.Secret.TLS.Chain.Bytes)
				if b == nil {
					t.Fatal("default: no certificate chain")
				}
				leaf, err := x509.ParseCertificate(b.Bytes)
				if err != nil {
					t.Fatal(err)
				}
				if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://cluster.local/ns/foo/sa/httpbin" {
					t.Errorf("default is for %v", leaf.URIs)
				}
			case "ROOTCA":
				if s.Secret.VC == nil || string(s.Secret.VC.CA.Bytes) != string(root.RootPEM()) {
					t.Errorf("ROOTCA is not the root file")
				}
			}
		}
	}
	if strings.Join(names, ",") != "default,ROOTCA" {
		t.Errorf("secrets in the config dump: %v, want default and ROOTCA", names)
	}

	// The agent's metrics, merged on the status port: the certificate's
	// expiry, the CSR that got it, the xDS responses taken.
	resp, err = http.Get("http://" + status + "/stats/prometheus")
	if err != nil {
		t.Fatal(err)
	}
	stats, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	value := func(series string) float64 {
		for _, line := range strings.Split(string(stats), "\n") {
			if v, ok := strings.CutPrefix(line, series+" "); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatal(err)
				}
				return f
			}
		}
		return -1
	}
	if left := value(`istio_agent_cert_expiry_seconds{resource_name="default"}`); left < 3500 || left > 3600 {
		t.Errorf("istio_agent_cert_expiry_seconds = %v, want about 3600 (1h certificate)\n%s", left, stats)
	}
	if n := value(`istio_agent_num_outgoing_requests{request_type="csr"}`); n != 1 {
		t.Errorf("istio_agent_num_outgoing_requests{csr} = %v, want 1", n)
	}
	if n := value(`istio_agent_xds_proxy_responses`); n < 2 {
		t.Errorf("istio_agent_xds_proxy_responses = %v, want the listeners and clusters at least", n)
	}
	if n := value(`envoy_server_live`); n != 1 {
		t.Errorf("envoy_server_live = %v on the merged endpoint, want the proxy's 1", n)
	}
}

// Without a workload identity, xDS over TLS does not start.
func TestRunMTLSNeedsIdentity(t *testing.T) {
	err := Run(context.Background(), Options{Mode: ModeSidecar, NodeID: "sidecar~127.0.0.1~p.ns~ns.svc.cluster.local", DiscoveryAddress: "127.0.0.1:15012"})
	if err == nil || !strings.Contains(err.Error(), "workload identity") {
		t.Fatalf("Run: %v", err)
	}
}

func TestXDSTransportChoice(t *testing.T) {
	for _, tt := range []struct {
		addr, policy string
		plaintext    bool
		san          string
	}{
		{"istiod.istio-system.svc:15012", "", false, "istiod.istio-system.svc"},
		{"istiod.istio-system.svc:15010", "", true, "istiod.istio-system.svc"},
		{"198.18.0.2:15012", "", false, "istiod.istio-system.svc"},
		{"127.0.0.1:40000", "NONE", true, "istiod.istio-system.svc"},
		{"istiod.example:15010", "mutual_tls", false, "istiod.example"},
	} {
		app := &cli.App{Writer: io.Discard, Commands: []*cli.Command{Command()}}
		var got Options
		app.Commands[0].Action = func(c *cli.Context) error {
			o, err := optionsFrom(c, ModeSidecar)
			got = o
			return err
		}
		args := []string{"meshlab", "proxy", "--ip", "10.0.0.1", "--discovery-address", tt.addr}
		if tt.policy != "" {
			args = append(args, "--control-plane-auth-policy", tt.policy)
		}
		if err := app.Run(args); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if got.XDSPlaintext != tt.plaintext || got.XDSServerName != tt.san {
			t.Errorf("%s %s: plaintext %v, SAN %q; want %v, %q", tt.addr, tt.policy, got.XDSPlaintext, got.XDSServerName, tt.plaintext, tt.san)
		}
		if got.Identity == nil || got.Identity.CAAddress != tt.addr || got.Identity.TokenPath != identity.DefaultTokenPath {
			t.Errorf("%s: identity config %+v", tt.addr, got.Identity)
		}
	}
}
