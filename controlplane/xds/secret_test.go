package xds

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshlab/meshlab/controlplane/ca"
	"github.com/meshlab/meshlab/controlplane/registry"
)

const (
	gatewaySA     = "istio-ingressgateway-service-account"
	istiodName    = "istiod.istio-system.svc"
	secretTimeout = 1500 * time.Millisecond
)

// mtlsPort serves s as istiod's 15012 does: TLS with istiod's serving
// certificate, client certificates asked for and verified against the mesh
// root when given. It returns the address and the mesh CA.
func mtlsPort(ctx context.Context, t *testing.T, s *Server) (string, *ca.CA) {
	t.Helper()
	root, err := ca.New()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := root.ServingCert([]string{istiodName}, nil)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(append(GRPCOptions(), grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: root.Pool(),
	})))...)
	s.Register(ctx, g)
	done := make(chan error, 1)
	go func() { done <- g.Serve(lis) }()
	t.Cleanup(func() {
		g.Stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return lis.Addr().String(), root
}

// workloadCert is a certificate the mesh CA signs for ns/sa, as the agent
// gets it over the CSR API.
func workloadCert(t *testing.T, c *ca.CA, ns, sa string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := c.SignWorkload(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), ca.Identity{Namespace: ns, ServiceAccount: sa}, time.Hour, ca.WorkloadPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode([]byte(chain[0]))
	return tls.Certificate{Certificate: [][]byte{b.Bytes}, PrivateKey: key}
}

func withCert(root *ca.CA, cert *tls.Certificate) grpc.DialOption {
	cfg := &tls.Config{RootCAs: root.Pool(), ServerName: istiodName}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(cfg))
}

// secretsOf is what secrets the snapshot of the stream key holds.
func (s *Server) secretsOf(key string) []string {
	s.buildMu.Lock()
	defer s.buildMu.Unlock()
	st := s.snaps[key]
	if st == nil {
		return nil
	}
	var out []string
	for _, r := range st.types[resource.SecretType].res {
		out = append(out, resourceName(r))
	}
	return out
}

// noSecretOnWire subscribes c to names and fails if any Secret arrives
// within secretTimeout.
func noSecretOnWire(t *testing.T, c *adsClient, names []string) {
	t.Helper()
	c.types[resource.SecretType] = &clientType{}
	c.subscribe(resource.SecretType, names)
	got := make(chan *discoveryv3.DiscoveryResponse, 16)
	go func() {
		for {
			resp, err := c.stream.Recv()
			if err != nil {
				close(got)
				return
			}
			got <- resp
		}
	}()
	deadline := time.After(secretTimeout)
	for {
		select {
		case resp, ok := <-got:
			if !ok {
				return
			}
			if resp.GetTypeUrl() == resource.SecretType && len(resp.GetResources()) > 0 {
				t.Fatalf("served %d secrets: %v", len(resp.GetResources()), resp.GetResources()[0].GetTypeUrl())
			}
		case <-deadline:
			return
		}
	}
}

func gatewayFixture(t *testing.T) (Input, string, []string) {
	in, proxies := loadFixture(t, "testdata/cases/gateway-tls.json")
	p, err := ParseNodeID(proxies["gateway"])
	if err != nil {
		t.Fatal(err)
	}
	p.Verified = verifiedAs(in, p)
	res, err := Build(in, p)
	if err != nil {
		t.Fatal(err)
	}
	names := sdsNames(res[resource.ListenerType])
	want := []string{"kubernetes://cred-cert", "kubernetes://cred-cert-cacert", "kubernetes://merged-cert"}
	if !slices.Equal(names, want) {
		t.Fatalf("listeners name secrets %q, want %q", names, want)
	}
	return in, proxies["gateway"], names
}

// A gateway on the mTLS port whose certificate is of its namespace, that
// subscribes over ADS to the secrets its listeners name (as Envoy does for
// SDS configs with `ads: {}`), gets them, and a changed secret comes with
// the next version.
func TestServerSDSOverMTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := NewServer(nil)
	addr, root := mtlsPort(ctx, t, s)
	in, gw, names := gatewayFixture(t)
	if err := s.Update(ctx, in, "1.0"); err != nil {
		t.Fatal(err)
	}
	cert := workloadCert(t, root, "istio-system", gatewaySA)
	c := newADSClientWith(ctx, t, addr, gw, map[string]string{"SERVICE_ACCOUNT": gatewaySA}, withCert(root, &cert))
	c.until(s)
	c.types[resource.SecretType] = &clientType{}
	c.subscribe(resource.SecretType, names)
	c.until(s)
	for _, n := range names {
		if !c.types[resource.SecretType].resources[n] {
			t.Errorf("secret %s not served; got %v", n, c.types[resource.SecretType].resources)
		}
	}
	in.Secrets[0].Cert = []byte("rotated")
	if err := s.Update(ctx, in, "1.1"); err != nil {
		t.Fatal(err)
	}
	c.until(s)
	if err := s.WaitSynced(ctx, "1.1"); err != nil {
		t.Fatal(err)
	}
}

// Impersonation over plaintext (15010): a client claiming the gateway's
// node ID gets its listeners but no secret, even while the real gateway is
// connected over mTLS with the same node ID and is served them.
func TestServerPlaintextGetsNoSecret(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := NewServer(nil)
	plain := startServer(ctx, t, s)
	addr, root := mtlsPort(ctx, t, s)
	in, gw, names := gatewayFixture(t)
	if err := s.Update(ctx, in, "1.0"); err != nil {
		t.Fatal(err)
	}
	cert := workloadCert(t, root, "istio-system", gatewaySA)
	real := newADSClientWith(ctx, t, addr, gw, map[string]string{"SERVICE_ACCOUNT": gatewaySA}, withCert(root, &cert))
	real.until(s)
	real.types[resource.SecretType] = &clientType{}
	real.subscribe(resource.SecretType, names)
	real.until(s)
	if len(real.types[resource.SecretType].resources) != len(names) {
		t.Fatalf("the real gateway got %v", real.types[resource.SecretType].resources)
	}

	fake := newADSClientWith(ctx, t, plain, gw, map[string]string{"SERVICE_ACCOUNT": gatewaySA}, grpc.WithTransportCredentials(insecure.NewCredentials()))
	fake.until(s)
	if len(fake.types[resource.ListenerType].resources) == 0 {
		t.Fatal("the plaintext client got no listeners: the test would prove nothing")
	}
	if got := s.secretsOf(plaintextKeyPrefix + gw); len(got) != 0 {
		t.Errorf("the plaintext client's snapshot holds secrets %v", got)
	}
	noSecretOnWire(t, fake, names)
}

// On the mTLS port the certificate decides which node a client may be:
// istiod's checkConnectionIdentity, namespace and service account.
func TestServerMTLSNodeAuthentication(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := NewServer(nil)
	addr, root := mtlsPort(ctx, t, s)
	in, gw, _ := gatewayFixture(t)
	if err := s.Update(ctx, in, "1.0"); err != nil {
		t.Fatal(err)
	}
	other, err := ca.New()
	if err != nil {
		t.Fatal(err)
	}
	fooCert := workloadCert(t, root, "foo", gatewaySA)
	wrongSA := workloadCert(t, root, "istio-system", "default")
	foreign := workloadCert(t, other, "istio-system", gatewaySA)
	for _, tt := range []struct {
		name     string
		cert     *tls.Certificate
		sa       string
		wantCode codes.Code
		wantMsg  []string
	}{
		{"a certificate of ns foo claiming a node in istio-system", &fooCert, gatewaySA, codes.PermissionDenied,
			[]string{"spiffe://cluster.local/ns/foo/sa/" + gatewaySA, "istio-system/" + gatewaySA}},
		{"the node's namespace but another service account", &wrongSA, gatewaySA, codes.PermissionDenied,
			[]string{"spiffe://cluster.local/ns/istio-system/sa/default", "istio-system/" + gatewaySA}},
		{"no client certificate", nil, gatewaySA, codes.Unauthenticated, []string{"client certificate"}},
		{"a certificate of another CA", &foreign, gatewaySA, codes.Unavailable, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := grpc.NewClient(addr, withCert(root, tt.cert))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
			if err == nil {
				node := &corev3.Node{Id: gw, Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
					"SERVICE_ACCOUNT": structpb.NewStringValue(tt.sa),
				}}}
				err = stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resource.ListenerType})
				// A stream the server already ended says io.EOF on Send;
				// its status comes with Recv.
				if err == nil || errors.Is(err, io.EOF) {
					_, err = stream.Recv()
				}
			}
			if status.Code(err) != tt.wantCode {
				t.Fatalf("stream: %v, want %v", err, tt.wantCode)
			}
			for _, m := range tt.wantMsg {
				if !strings.Contains(status.Convert(err).Message(), m) {
					t.Errorf("error %q does not name %q", status.Convert(err).Message(), m)
				}
			}
		})
	}
	for _, p := range s.Status() {
		t.Errorf("a refused client is known as proxy %s", p.ID)
	}
}

// A sidecar never gets kubernetes:// credentials, even one authenticated
// in the gateway's namespace that asks for them by name.
func TestServerSidecarGetsNoCredential(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := NewServer(nil)
	addr, root := mtlsPort(ctx, t, s)
	in, _, names := gatewayFixture(t)
	if err := s.Update(ctx, in, "1.0"); err != nil {
		t.Fatal(err)
	}
	id := "sidecar~198.18.0.9~sleep-0.istio-system~istio-system.svc.cluster.local"
	cert := workloadCert(t, root, "istio-system", "sleep")
	c := newADSClientWith(ctx, t, addr, id, map[string]string{"SERVICE_ACCOUNT": "sleep"}, withCert(root, &cert))
	c.until(s)
	if got := s.secretsOf(id); len(got) != 0 {
		t.Errorf("the sidecar's snapshot holds secrets %v", got)
	}
	noSecretOnWire(t, c, names)
}

func TestCheckConnectionIdentity(t *testing.T) {
	p := Proxy{Namespace: "istio-system"}
	for _, tt := range []struct {
		ids    []string
		sa     string
		wantOK bool
	}{
		{[]string{"spiffe://cluster.local/ns/istio-system/sa/gw"}, "gw", true},
		{[]string{"spiffe://cluster.local/ns/istio-system/sa/gw"}, "", true},
		{[]string{"spiffe://cluster.local/ns/foo/sa/gw"}, "gw", false},
		{[]string{"spiffe://cluster.local/ns/istio-system/sa/other"}, "gw", false},
		{[]string{"spiffe://cluster.local/ns/foo/sa/gw", "spiffe://cluster.local/ns/istio-system/sa/gw"}, "gw", true},
		{[]string{"spiffe://cluster.local/ns/istio-system/sa/gw/extra"}, "gw", false},
		{[]string{"https://cluster.local/ns/istio-system/sa/gw"}, "gw", false},
	} {
		_, err := checkConnectionIdentity(p, tt.sa, tt.ids)
		if (err == nil) != tt.wantOK {
			t.Errorf("%v as %s: %v, want ok=%v", tt.ids, tt.sa, err, tt.wantOK)
		}
	}
}

func TestEntitledToSecrets(t *testing.T) {
	gw := registry.Workload{Name: "istio-ingressgateway-0", Namespace: "istio-system", ServiceAccount: gatewaySA}
	id := func(ns, sa string) *Identity {
		return &Identity{TrustDomain: "cluster.local", Namespace: ns, ServiceAccount: sa}
	}
	for _, tt := range []struct {
		name string
		p    Proxy
		w    registry.Workload
		want bool
	}{
		{"plaintext", Proxy{}, gw, false},
		{"the gateway's own identity", Proxy{Verified: id("istio-system", gatewaySA)}, gw, true},
		{"another namespace", Proxy{Verified: id("foo", gatewaySA)}, gw, false},
		{"another service account of the namespace", Proxy{Verified: id("istio-system", "sleep")}, gw, false},
		{"a pod the registry does not know: its namespace decides", Proxy{Verified: id("istio-system", "sleep")},
			registry.Workload{Name: "gw-x", Namespace: "istio-system"}, true},
	} {
		if got := entitledToSecrets(tt.p, tt.w); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
