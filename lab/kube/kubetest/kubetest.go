// Package kubetest owns the real Kubernetes control plane that tests run
// against: etcd and kube-apiserver built by scripts/kube-testenv, started on
// free loopback ports for one test and stopped when it ends. There is no
// kubelet, scheduler or controller-manager: objects are stored, validated,
// defaulted and sent through admission webhooks, but nothing runs them.
package kubetest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// KubernetesVersion is the release scripts/kube-testenv builds: the one that
// matches the k8s.io/client-go in go.mod (v0.X.Y ↔ v1.X.Y).
const KubernetesVersion = "v1.37.2"

// Env is a running apiserver, reachable as cluster-admin.
type Env struct {
	Config     *rest.Config // admin access to the apiserver
	Kubeconfig string       // path of a kubeconfig file with the same access
	Kubectl    string       // path of a kubectl binary of the same release
}

// CacheDir is where scripts/kube-testenv puts the binaries:
// $MESHLAB_KUBE_TESTENV, else ~/.cache/meshlab/kube-testenv/<version>.
func CacheDir() string {
	if d := os.Getenv("MESHLAB_KUBE_TESTENV"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = os.TempDir()
	}
	return filepath.Join(home, ".cache", "meshlab", "kube-testenv", KubernetesVersion)
}

// Option configures Start.
type Option func(*options)

type options struct {
	rbac bool
}

// WithRBAC makes the apiserver authorize with RBAC, as a cluster does,
// instead of allowing everything: for tests of what a role lets a service
// account do (SubjectAccessReview). The admin stays in system:masters.
func WithRBAC() Option { return func(o *options) { o.rbac = true } }

// Start starts etcd and kube-apiserver for t and returns once /readyz
// answers. Both stop, and their data goes, when t ends. The apiserver
// authorizes everything unless WithRBAC (RBAC objects are still validated
// and stored) and runs the admission webhooks; the ServiceAccount admission
// plugin is off, since no controller creates the default service accounts
// that pods would need.
func Start(t testing.TB, opt ...Option) *Env {
	t.Helper()
	var o options
	for _, f := range opt {
		f(&o)
	}
	cache := CacheDir()
	bins := map[string]string{}
	for _, b := range []string{"etcd", "kube-apiserver", "kubectl"} {
		p := filepath.Join(cache, b)
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("kubetest: %s is missing: run scripts/kube-testenv (it builds kube-apiserver, etcd and kubectl into %s)", p, cache)
		}
		bins[b] = p
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	pki, err := newPKI(dir)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	etcdURL := startEtcd(ctx, t, bins["etcd"], dir)
	authz := "AlwaysAllow"
	if o.rbac {
		authz = "RBAC"
	}
	host := startAPIServer(ctx, t, bins["kube-apiserver"], dir, etcdURL, pki, authz)

	cfg := &rest.Config{
		Host:            host,
		BearerToken:     pki.token,
		TLSClientConfig: rest.TLSClientConfig{CAData: pki.caPEM},
		QPS:             200,
		Burst:           400,
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(kubeconfig, cfg); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return &Env{Config: cfg, Kubeconfig: kubeconfig, Kubectl: bins["kubectl"]}
}

// startEtcd runs a single-member etcd on loopback and returns its client URL.
func startEtcd(ctx context.Context, t testing.TB, bin, dir string) string {
	t.Helper()
	ports := freePorts(t, 2)
	client, peer := "http://"+ports[0], "http://"+ports[1]
	p := start(t, "etcd", bin, dir,
		"--name=kubetest",
		"--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=kubetest="+peer,
		"--unsafe-no-fsync", // a test's data need not survive a crash
		"--log-level=warn",
	)
	waitFor(ctx, t, p, func() bool {
		resp, err := http.Get(client + "/health")
		if err != nil {
			return false
		}
		_ = resp.Body.Close() // unread: only the status matters
		return resp.StatusCode == http.StatusOK
	})
	return client
}

// startAPIServer runs kube-apiserver against etcdURL and returns its URL.
func startAPIServer(ctx context.Context, t testing.TB, bin, dir, etcdURL string, pki *pki, authz string) string {
	t.Helper()
	addr := freePorts(t, 1)[0]
	_, port, _ := net.SplitHostPort(addr)
	p := start(t, "kube-apiserver", bin, dir,
		"--etcd-servers="+etcdURL,
		"--etcd-prefix=/registry",
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port="+port,
		"--tls-cert-file="+pki.certFile,
		"--tls-private-key-file="+pki.keyFile,
		"--token-auth-file="+pki.tokenFile,
		"--client-ca-file="+pki.caFile,
		"--service-account-key-file="+pki.saKeyFile,
		"--service-account-signing-key-file="+pki.saKeyFile,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range=10.96.0.0/16",
		"--authorization-mode="+authz,
		"--enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
		"--disable-admission-plugins=ServiceAccount",
		"--allow-privileged=true",
		// The "kubernetes" Service's endpoints would have to name a
		// non-loopback address; nothing here needs them.
		"--endpoint-reconciler-type=none",
		// Webhook and aggregated-API Services resolve to their endpoints, not
		// to a ClusterIP that would be routed off this machine.
		"--enable-aggregator-routing=true",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v=0",
	)
	host := "https://" + addr
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pki.caPEM)
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	t.Cleanup(hc.CloseIdleConnections)
	waitFor(ctx, t, p, func() bool {
		req, _ := http.NewRequest(http.MethodGet, host+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+pki.token)
		resp, err := hc.Do(req)
		if err != nil {
			return false
		}
		_ = resp.Body.Close() // unread: only the status matters
		return resp.StatusCode == http.StatusOK
	})
	return host
}

// proc is a child process whose output goes to a log file under the test's
// directory; exited is closed when it ends.
type proc struct {
	name   string
	log    string
	exited chan struct{}
	err    error
}

func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// start runs bin; t.Cleanup stops it with SIGTERM, then SIGKILL.
func start(t testing.TB, name, bin, dir string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, log: filepath.Join(dir, name+".log"), exited: make(chan struct{})}
	out, err := os.Create(p.log)
	if err != nil {
		t.Fatalf("kubetest: creating %s's log: %v", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Dir = dir
	// Its own process group, so that a test's ^C does not reach it first and
	// Cleanup stays the one that stops it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Pdeathsig fires when the thread that forked the child exits, not the
	// process, and code that switches network namespaces ends its locked
	// threads on purpose. So the child is started, and waited for, on a
	// thread held for its whole life.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = cmd.Wait()
		// The child wrote the log through its own descriptor; ours is
		// only closed, and the log is read back only for a failing test.
		_ = out.Close()
		close(p.exited)
	}()
	if err := <-started; err != nil {
		_ = out.Close()
		t.Fatalf("kubetest: starting %s: %v", name, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kubetest: %s's log ends:\n%s", name, p.tail())
		}
		select {
		case <-p.exited:
			return
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// waitFor polls ready until it holds, p exits, or ctx ends.
func waitFor(ctx context.Context, t testing.TB, p *proc, ready func() bool) {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !ready() {
		select {
		case <-p.exited:
			t.Fatalf("kubetest: %s exited while starting (%v); its log ends:\n%s", p.name, p.err, p.tail())
		case <-ctx.Done():
			t.Fatalf("kubetest: %s not ready: %v; its log ends:\n%s", p.name, ctx.Err(), p.tail())
		case <-tick.C:
		}
	}
}

// freePorts returns n loopback addresses whose ports were free a moment
// ago, and distinct: every listener stays open until all are chosen, so two
// calls cannot be handed the same port (etcd's client and peer URLs did,
// and etcd failed with "address already in use").
func freePorts(t testing.TB, n int) []string {
	t.Helper()
	addrs := make([]string, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("kubetest: finding a free port: %v", err)
		}
		defer func() { _ = l.Close() }()
		addrs = append(addrs, l.Addr().String())
	}
	return addrs
}

// pki is the apiserver's serving certificate, its CA, the admin token and the
// service-account signing key, as files under the test's directory.
type pki struct {
	caPEM                       []byte
	caFile, certFile, keyFile   string
	tokenFile, token, saKeyFile string
}

func newPKI(dir string) (*pki, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the CA key: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kubetest-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("signing the CA certificate: %w", err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the serving key: %w", err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("signing the serving certificate: %w", err)
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the service-account key: %w", err)
	}
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return nil, fmt.Errorf("generating the admin token: %w", err)
	}
	p := &pki{
		caPEM:     pemBlock("CERTIFICATE", caDER),
		caFile:    filepath.Join(dir, "ca.crt"),
		certFile:  filepath.Join(dir, "apiserver.crt"),
		keyFile:   filepath.Join(dir, "apiserver.key"),
		tokenFile: filepath.Join(dir, "tokens.csv"),
		saKeyFile: filepath.Join(dir, "sa.key"),
		token:     hex.EncodeToString(tok),
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	saDER, _ := x509.MarshalECPrivateKey(saKey)
	files := []struct {
		path string
		data []byte
	}{
		{p.caFile, p.caPEM},
		{p.certFile, pemBlock("CERTIFICATE", der)},
		{p.keyFile, pemBlock("EC PRIVATE KEY", keyDER)},
		{p.saKeyFile, pemBlock("EC PRIVATE KEY", saDER)},
		// token,user,uid,"group1,group2"
		{p.tokenFile, []byte(p.token + `,kubetest-admin,kubetest-admin,"system:masters"` + "\n")},
	}
	for _, f := range files {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			return nil, fmt.Errorf("writing %s: %w", f.path, err)
		}
	}
	return p, nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func writeKubeconfig(path string, cfg *rest.Config) error {
	c := clientcmdapi.NewConfig()
	c.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	c.AuthInfos["kubetest-admin"] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken}
	c.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: "kubetest-admin", Namespace: "default"}
	c.CurrentContext = "kubetest"
	if err := clientcmd.WriteToFile(*c, path); err != nil {
		return fmt.Errorf("writing the kubeconfig: %w", err)
	}
	return nil
}

// KubectlRun runs the Env's kubectl against its apiserver with stdin, and
// returns its combined output and error.
func (e *Env) KubectlRun(ctx context.Context, stdin []byte, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, e.Kubectl, append([]string{"--kubeconfig=" + e.Kubeconfig}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		err = fmt.Errorf("kubectl %s: exit status %s", strings.Join(args, " "), strconv.Itoa(exit.ExitCode()))
	}
	return string(out), err
}
