package lab_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	securityv1 "istio.io/api/security/v1alpha1"

	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/labtest"
)

const gatewaySA = "istio-ingressgateway-service-account"

// TestImpersonation is issue 11's impersonation proof on a real local lab:
// a client on the host claiming the ingress gateway's node ID, with its
// labels and service account in the node metadata, gets none of the
// gateway's secrets — not over plaintext 15010 (which serves it the
// gateway's listeners, naming the credential), and not at all over 15012
// with a workload certificate of namespace foo (PermissionDenied). The real
// gateway gets the credential meanwhile.
func TestImpersonation(t *testing.T) {
	labtest.Skip(t)
	l := labtest.New(t, "..")
	const httpsPort = "18457"
	l.MustRun("up", "--no-bookinfo", "--http-port", "18094", "--https-port", httpsPort, "--api-port", "25024")
	l.MustRun("apply", "-f", "testdata/sandbox/namespaces.yaml")
	l.MustRun("apply", "-n", "foo", "-f", "../samples/sleep/sleep.yaml", "-f", "../samples/httpbin/httpbin.yaml", "--wait")

	// The gateway's TLS credential, as Istio's secure-ingress task has it.
	_, certPEM, keyPEM := serverCert(t, "httpbin.example.com")
	dir := t.TempDir()
	for name, b := range map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	l.MustRun("create", "secret", "tls", "httpbin-credential", "-n", "istio-system",
		"--cert", filepath.Join(dir, "tls.crt"), "--key", filepath.Join(dir, "tls.key"))
	l.MustRun("apply", "-f", "testdata/sandbox/https-gateway.yaml", "--wait")
	const credential = "kubernetes://httpbin-credential"

	var st lab.Status
	if err := json.Unmarshal([]byte(l.MustRun("status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	gw, err := st.FindPod("istio-system", "istio-ingressgateway")
	if err != nil {
		t.Fatal(err)
	}
	istiod, err := st.FindPod("istio-system", "istiod")
	if err != nil {
		t.Fatal(err)
	}
	// The real gateway is entitled to it: the control run.
	labtest.Eventually(t, "the gateway holding "+credential, func() bool {
		out, err := l.Run("proxy-config", "secret", "-n", "istio-system", gw.Name)
		return err == nil && strings.Contains(out, "\n"+credential+" ")
	})
	var proxies []api.ProxyStatus
	if err := json.Unmarshal([]byte(l.MustRun("proxy-status", "-o", "json")), &proxies); err != nil {
		t.Fatal(err)
	}
	var nodeID string
	for _, p := range proxies {
		if p.Type == "router" && p.Namespace == "istio-system" && p.Connected {
			nodeID = p.ID
		}
	}
	if !strings.HasPrefix(nodeID, "router~") || !strings.HasSuffix(nodeID, "~istio-system.svc.cluster.local") {
		t.Fatalf("the gateway's node id from proxy-status: %q", nodeID)
	}
	node := &corev3.Node{Id: nodeID, Metadata: mustStruct(t, map[string]any{
		"NAMESPACE": "istio-system", "SERVICE_ACCOUNT": gatewaySA, "CLUSTER_ID": "Kubernetes",
		"LABELS": map[string]any{"app": "istio-ingressgateway", "istio": "ingressgateway"},
	})}
	names := []string{credential, "default", "ROOTCA"}

	t.Run("plaintext 15010", func(t *testing.T) {
		conn, err := grpc.NewClient(net.JoinHostPort(istiod.IP, "15010"), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close() }()
		ads := openADS(t, conn)
		// The gateway's listeners come (15010 serves config), and they name
		// the credential: the impersonator knows what to ask for.
		ads.send(t, &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ListenerType})
		lds := ads.recv(t, resourcev3.ListenerType, 10*time.Second)
		if lds == nil || len(lds.Resources) == 0 {
			t.Fatalf("no listeners for the claimed gateway node: the test would prove nothing (%v)", lds)
		}
		if !strings.Contains(string(mustMarshal(t, lds)), credential) {
			t.Fatalf("the gateway's listeners as served on 15010 do not name %s", credential)
		}
		ads.send(t, &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.SecretType, ResourceNames: names})
		// Nothing, or an empty answer, within a while: either way no secret.
		if sds := ads.recv(t, resourcev3.SecretType, 5*time.Second); sds != nil && len(sds.Resources) > 0 {
			t.Errorf("plaintext 15010 served %d secrets to a client claiming the gateway", len(sds.Resources))
		}
		if leaked := ads.sawKey(keyPEM); leaked {
			t.Error("the gateway's private key went over plaintext 15010")
		}
	})

	t.Run("mTLS 15012 with a certificate of foo", func(t *testing.T) {
		cert, roots := workloadCertFromToken(t, l, istiod.IP, "foo", "sleep")
		conn, err := grpc.NewClient(net.JoinHostPort(istiod.IP, "15012"), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			RootCAs: roots, ServerName: "istiod.istio-system.svc", Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close() }()

		// The certificate works for what it is: a sidecar of foo running
		// as sleep gets its config on 15012.
		own := openADS(t, conn)
		ownNode := &corev3.Node{Id: "sidecar~198.18.255.250~sleep-impostor.foo~foo.svc.cluster.local",
			Metadata: mustStruct(t, map[string]any{"NAMESPACE": "foo", "SERVICE_ACCOUNT": "sleep", "CLUSTER_ID": "Kubernetes"})}
		own.send(t, &discoveryv3.DiscoveryRequest{Node: ownNode, TypeUrl: resourcev3.ClusterType})
		if cds := own.recv(t, resourcev3.ClusterType, 10*time.Second); cds == nil || len(cds.Resources) == 0 {
			t.Fatalf("foo's certificate as a sidecar of foo got no clusters (%v, %v): the test would prove nothing", cds, own.err())
		}

		// Claiming the gateway: refused on the first request.
		ads := openADS(t, conn)
		ads.send(t, &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.SecretType, ResourceNames: names})
		if sds := ads.recv(t, resourcev3.SecretType, 10*time.Second); sds != nil {
			t.Errorf("15012 answered a foo certificate claiming the gateway with %d secrets", len(sds.Resources))
		}
		err = ads.err()
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("the stream ended with %v; want PermissionDenied", err)
		}
		t.Logf("15012, foo's certificate claiming %s: %v", nodeID, err)
		if ads.sawKey(keyPEM) {
			t.Error("the gateway's private key went to a certificate of foo")
		}
	})
}

// ads is one ADS stream whose responses a goroutine collects.
type ads struct {
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	resps  chan *discoveryv3.DiscoveryResponse
	done   chan struct{}
	end    error
	seen   []*discoveryv3.DiscoveryResponse
}

func openADS(t *testing.T, conn *grpc.ClientConn) *ads {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := &ads{stream: stream, resps: make(chan *discoveryv3.DiscoveryResponse, 64), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		for {
			r, err := stream.Recv()
			if err != nil {
				a.end = err
				return
			}
			a.resps <- r
		}
	}()
	return a
}

func (a *ads) send(t *testing.T, req *discoveryv3.DiscoveryRequest) {
	t.Helper()
	if err := a.stream.Send(req); err != nil {
		t.Fatalf("send %s: %v", req.TypeUrl, err)
	}
}

// recv is the next response of typeURL within d (nil if none), ACKing
// each response as a proxy would.
func (a *ads) recv(t *testing.T, typeURL string, d time.Duration) *discoveryv3.DiscoveryResponse {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case r := <-a.resps:
			a.seen = append(a.seen, r)
			_ = a.stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: r.TypeUrl, VersionInfo: r.VersionInfo, ResponseNonce: r.Nonce})
			if r.TypeUrl == typeURL {
				return r
			}
		case <-a.done:
			// Drain what came before the end.
			select {
			case r := <-a.resps:
				a.seen = append(a.seen, r)
				if r.TypeUrl == typeURL {
					return r
				}
				continue
			default:
			}
			return nil
		case <-timeout:
			return nil
		}
	}
}

// err is how the stream ended (waits up to 5s for it to end).
func (a *ads) err() error {
	select {
	case <-a.done:
		return a.end
	case <-time.After(5 * time.Second):
		return nil
	}
}

// sawKey says whether any response so far carried key.
func (a *ads) sawKey(keyPEM []byte) bool {
	block, _ := pem.Decode(keyPEM)
	for _, r := range a.seen {
		b, _ := proto.Marshal(r)
		if strings.Contains(string(b), string(keyPEM)) || (block != nil && strings.Contains(string(b), string(block.Bytes))) {
			return true
		}
	}
	return false
}

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// workloadCertFromToken gets a workload certificate from the CSR API on
// 15012 with the pod token of deploy's istio-proxy in ns, as its sidecar
// does, and returns it with the mesh root the sidecar trusts.
func workloadCertFromToken(t *testing.T, l *labtest.Lab, istiodIP, ns, deploy string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	token := l.MustRun("exec", "-n", ns, "deploy/"+deploy, "-c", "istio-proxy", "--", "cat", "/var/run/secrets/tokens/istio-token")
	root := l.MustRun("exec", "-n", ns, "deploy/"+deploy, "-c", "istio-proxy", "--", "cat", "/var/run/secrets/istio/root-cert.pem")
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(root)) {
		t.Fatalf("root-cert.pem holds no certificate:\n%s", root)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(net.JoinHostPort(istiodIP, "15012"),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "istiod.istio-system.svc", MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+strings.TrimSpace(token))
	resp, err := securityv1.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx, &securityv1.IstioCertificateRequest{
		Csr: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), ValidityDuration: 3600})
	if err != nil {
		t.Fatalf("CreateCertificate with %s/%s's token: %v", ns, deploy, err)
	}
	var cert tls.Certificate
	for _, c := range resp.CertChain {
		b, _ := pem.Decode([]byte(c))
		if b == nil {
			t.Fatalf("a chain element is not PEM: %q", c)
		}
		cert.Certificate = append(cert.Certificate, b.Bytes)
	}
	cert.PrivateKey = key
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := "spiffe://cluster.local/ns/" + ns + "/sa/" + deploy; len(leaf.URIs) != 1 || leaf.URIs[0].String() != want {
		t.Fatalf("the certificate names %v; want %s", leaf.URIs, want)
	}
	return cert, roots
}
