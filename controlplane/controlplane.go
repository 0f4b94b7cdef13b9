// Package controlplane is meshlab's istiod: it owns the process that opens the
// store, keeps the service registry, translates configuration and registry
// into Envoy xDS for every connected proxy, and serves the HTTP API the CLI
// and the runtimes use. The parts live in its subpackages (config, store,
// registry, xds, api); this package wires them and runs them.
package controlplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	meshv1 "istio.io/api/mesh/v1alpha1"
	"k8s.io/client-go/rest"

	"github.com/meshlab/meshlab/controlplane/ca"
	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/csr"
	"github.com/meshlab/meshlab/controlplane/inject"
	"github.com/meshlab/meshlab/controlplane/jwks"
	"github.com/meshlab/meshlab/controlplane/kube"
	"github.com/meshlab/meshlab/controlplane/meshconfig"
	"github.com/meshlab/meshlab/controlplane/monitoring"
	"github.com/meshlab/meshlab/controlplane/registry"
	"github.com/meshlab/meshlab/controlplane/store"
	"github.com/meshlab/meshlab/controlplane/webhook"
	"github.com/meshlab/meshlab/controlplane/xds"
)

// Options configure a control plane.
type Options struct {
	// StateDir holds the store file (meshlab.db).
	StateDir string
	// XDSAddr is where proxies connect over ADS (plaintext gRPC), :15010.
	XDSAddr string
	// HTTPAddr serves the API, /metrics and /ready, :15014.
	HTTPAddr string
	// VIPPool is where service VIPs are allocated from.
	VIPPool netip.Prefix
	// Version is reported by /version.
	Version string
	Logger  *slog.Logger

	// WebhookAddr serves the admission webhooks (/inject, /validate) over
	// TLS with a certificate from the mesh CA, :15017; empty serves none.
	WebhookAddr string
	// Kube, when set, makes a Kubernetes cluster the source of the registry
	// and of the Istio configuration (see package kube).
	Kube *rest.Config
	// Inject says what the injection webhook adds to pods.
	Inject inject.Params
	// CADir, when it holds a plugged-in CA (Istio's cacerts Secret mounted
	// at /etc/cacerts), is the mesh CA; otherwise the store keeps one.
	CADir string
	// DrainTimeout bounds how long API and webhook requests in flight may
	// take once the context of Serve ends (5s when zero).
	DrainTimeout time.Duration

	// Auth checks the credential of API calls. When nil: with Kube, the
	// cluster's TokenReview and SubjectAccessReview (the caller's
	// Kubernetes identity); else the token in APITokenFile; else a token
	// the control plane makes in StateDir/api-token on its first start.
	Auth Authenticator
	// APITokenFile holds the API's bearer token (0600), as the lab writes it.
	APITokenFile string

	// CSRAddr serves Istio's certificate service (gRPC
	// IstioCertificateService over TLS with istiod's certificate), :15012;
	// empty serves none.
	CSRAddr string
	// TrustDomain of the workloads' SPIFFE IDs; cluster.local when empty.
	TrustDomain string
	// WorkloadCertTTL is a workload certificate's lifetime when the request
	// names none (24h when zero); MaxWorkloadCertTTL the most a request may
	// ask for (90 days when zero), as istiod's DEFAULT_WORKLOAD_CERT_TTL
	// and MAX_WORKLOAD_CERT_TTL.
	WorkloadCertTTL, MaxWorkloadCertTTL time.Duration
}

// WebhookDNSNames and WebhookIPs are what the webhook certificate is for:
// the istiod Service in the cluster, and loopback for a control plane run
// out of the cluster that the API server calls by URL.
var (
	WebhookDNSNames = []string{"istiod.istio-system.svc", "istiod.istio-system.svc.cluster.local", "localhost"}
	WebhookIPs      = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
)

// DefaultVIPPool is the local runtime's service range (RFC 2544 benchmarking
// space, chosen to collide with no home or office network).
var DefaultVIPPool = netip.MustParsePrefix("198.19.0.0/16")

// Server is a running control plane.
type Server struct {
	opts  Options
	log   *slog.Logger
	store *store.Store
	reg   *registry.Registry
	xds   *xds.Server
	ca    *ca.CA
	kube  *kube.Controller // nil unless Options.Kube
	auth  Authenticator
	csr   *csr.Server
	// podTokens are the local runtime's workload credentials; nil with Kube.
	podTokens *csr.PodTokens

	started time.Time
	regGen  atomic.Uint64 // bumped after every secret change or cluster sync; the registry versions itself
	// secretWake wakes the push loop after a secret changed (secret.go).
	secretWake chan struct{}
	// jwks fetches and refreshes the key sets RequestAuthentications name
	// by jwksUri, inlined into the proxies' jwt_authn filters.
	jwks *jwks.Resolver

	// applyMu makes the API server's part of an apply (namespace checks,
	// nodePort allocation) and the store's commit one step.
	applyMu sync.Mutex
	// svcMu guards fromStore: the registry Services that come from
	// stored Service objects (workloads.go).
	svcMu     sync.Mutex
	fromStore map[string]bool

	// metrics are istiod's series on /metrics; pushState is the push
	// loop's memory of what it pushed, to say what triggered a push.
	metrics   *monitoring.Metrics
	pushState pushState

	listening chan struct{} // closed once Serve's listeners are open
	webhook   net.Addr      // set before listening closes; nil without webhooks
	csrAddr   net.Addr      // likewise, for the certificate service
}

// Run opens the store, starts serving xDS and HTTP, and blocks until ctx ends;
// then it stops both within a bound and closes the store.
func Run(ctx context.Context, opts Options) (err error) {
	s, err := New(opts)
	if err != nil {
		return err
	}
	defer func() {
		// The store's writes are committed per transaction; a failing
		// Close still says the state file was not released cleanly.
		if cerr := s.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	return s.Serve(ctx)
}

// New opens the store and loads the persisted registry.
func New(opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if !opts.VIPPool.IsValid() {
		opts.VIPPool = DefaultVIPPool
	}
	if err := os.MkdirAll(opts.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("create control plane state dir: %w", err)
	}
	st, err := store.Open(filepath.Join(opts.StateDir, "meshlab.db"))
	if err != nil {
		return nil, err
	}
	s := &Server{
		opts:       opts,
		log:        opts.Logger,
		store:      st,
		reg:        registry.New(),
		xds:        xds.NewServer(opts.Logger),
		started:    time.Now(),
		listening:  make(chan struct{}),
		secretWake: make(chan struct{}, 1),
	}
	// A refreshed key set is pushed like a changed secret.
	s.jwks = jwks.New(jwks.Options{Logger: opts.Logger, OnChange: s.secretsChanged,
		Fetched: func(err error) { s.metrics.JWKSFetched(err) }})
	if opts.CADir != "" && ca.InDir(opts.CADir) {
		if s.ca, err = ca.LoadDir(opts.CADir); err == nil {
			s.log.Info("mesh CA plugged in", "dir", opts.CADir)
		}
	} else {
		s.ca, err = ca.Load(st)
	}
	if err != nil {
		// The error being returned is the one to report: whatever New
		// wrote to the store is already committed, so its Close loses nothing.
		_ = st.Close()
		return nil, err
	}
	if s.auth, err = authenticator(opts); err != nil {
		_ = st.Close()
		return nil, err
	}
	if s.csr, s.podTokens, err = newCertService(opts, s.ca, st); err != nil {
		_ = st.Close()
		return nil, err
	}
	s.initMetrics()
	if opts.Kube != nil {
		// The cluster is the registry's only source: nothing is loaded
		// from the store, and the controller bumps the push version.
		s.kube, err = kube.New(kube.Options{Config: opts.Kube, Store: st, Registry: s.reg,
			Changed: func() { s.regGen.Add(1) }, Logger: opts.Logger, RootCert: s.ca.RootPEM()})
		if err != nil {
			_ = st.Close()
			return nil, err
		}
		return s, nil
	}
	if err := s.loadRegistry(); err != nil {
		_ = st.Close()
		return nil, err
	}
	if err := s.syncServices(); err != nil {
		_ = st.Close()
		return nil, err
	}
	return s, nil
}

// CA is the mesh's certificate authority.
func (s *Server) CA() *ca.CA { return s.ca }

// WebhookAddr is the address the webhooks listen on, once Serve has opened
// it (for an Options.WebhookAddr with port 0); nil when ctx ends first or
// there are no webhooks.
func (s *Server) WebhookAddr(ctx context.Context) net.Addr {
	select {
	case <-s.listening:
		return s.webhook
	case <-ctx.Done():
		return nil
	}
}

// Registry is the control plane's registry, for tests and tools in process.
func (s *Server) Registry() *registry.Registry { return s.reg }

// Store is the control plane's store, for tests and tools in process.
func (s *Server) Store() *store.Store { return s.store }

// KubeSynced is closed once the registry and store first match the cluster;
// nil when the control plane does not watch one.
func (s *Server) KubeSynced() <-chan struct{} {
	if s.kube == nil {
		return nil
	}
	return s.kube.Synced()
}

// WebhookHandler serves the admission webhooks.
func (s *Server) WebhookHandler() http.Handler {
	var namespaces inject.Namespaces
	if s.kube != nil {
		namespaces = s.kube.Namespace
	}
	p := s.opts.Inject
	if p.EnablePrometheusMerge == nil {
		p.EnablePrometheusMerge = s.prometheusMerge
	}
	mux := http.NewServeMux()
	mux.Handle("POST "+webhook.PathInject, webhook.Serve(inject.Webhook(p, namespaces)))
	mux.Handle("POST "+webhook.PathValidate, webhook.Serve(s.validate))
	return mux
}

// Close closes the store.
func (s *Server) Close() error { return s.store.Close() }

// Serve runs the xDS server, the HTTP API and the push loop until ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	xlis, err := net.Listen("tcp", s.opts.XDSAddr)
	if err != nil {
		return fmt.Errorf("listen for xDS on %s: %w", s.opts.XDSAddr, err)
	}
	hlis, err := net.Listen("tcp", s.opts.HTTPAddr)
	if err != nil {
		_ = xlis.Close()
		return fmt.Errorf("listen for the API on %s: %w", s.opts.HTTPAddr, err)
	}
	var wlis net.Listener
	if s.opts.WebhookAddr != "" {
		cert, err := s.ca.ServingCert(WebhookDNSNames, WebhookIPs)
		if err != nil {
			_ = xlis.Close()
			_ = hlis.Close()
			return fmt.Errorf("webhook certificate: %w", err)
		}
		l, err := net.Listen("tcp", s.opts.WebhookAddr)
		if err != nil {
			_ = xlis.Close()
			_ = hlis.Close()
			return fmt.Errorf("listen for the webhooks on %s: %w", s.opts.WebhookAddr, err)
		}
		wlis = tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		s.webhook = l.Addr()
		s.log.Info("webhooks serving", "addr", l.Addr().String())
	}
	clis, ccert, err := s.listenCSR()
	if err != nil {
		_ = xlis.Close()
		_ = hlis.Close()
		if wlis != nil {
			_ = wlis.Close()
		}
		return err
	}
	close(s.listening)
	s.log.Info("control plane serving", "xds", xlis.Addr().String(), "api", hlis.Addr().String())

	s.push(ctx) // proxies that connect at once get the stored config
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	ws := &http.Server{Handler: s.WebhookHandler(), ReadHeaderTimeout: 10 * time.Second}
	// The drain starts when ctx ends: the certificate service takes its
	// own (gRPC's GracefulStop), the HTTP servers theirs below.
	drain := s.opts.DrainTimeout
	if drain <= 0 {
		drain = 5 * time.Second
	}
	var wg sync.WaitGroup
	errc := make(chan error, 5)
	if clis != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// istiod's 15012: the CSR API and xDS on one gRPC server over
			// TLS; a client certificate from the mesh CA is asked for, and
			// xDS requires it (the CSR API takes the bearer token instead).
			cfg := &tls.Config{
				Certificates: []tls.Certificate{ccert}, MinVersion: tls.VersionTLS12,
				ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: s.ca.Pool(),
			}
			register := func(g *grpc.Server) { s.xds.Register(ctx, g) }
			if err := s.csr.ServeTLS(ctx, clis, cfg, drain, register, xds.GRPCOptions()...); err != nil {
				errc <- err
			}
		}()
	}
	if wlis != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ws.Serve(wlis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve webhooks: %w", err)
			}
		}()
	}
	if s.kube != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.kube.Run(ctx); err != nil {
				errc <- fmt.Errorf("watch Kubernetes: %w", err)
			}
		}()
	}
	wg.Add(3)
	go func() { defer wg.Done(); errc <- s.xds.Serve(ctx, xlis) }()
	go func() {
		defer wg.Done()
		if err := hs.Serve(hlis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("serve API: %w", err)
		}
	}()
	go func() { defer wg.Done(); s.pushLoop(ctx) }()
	wg.Add(1)
	go func() { defer wg.Done(); s.jwks.Run(ctx) }()

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		cancel()
	}
	// The listeners close at once; requests in flight get the drain.
	shutCtx, done := context.WithTimeout(context.Background(), drain)
	defer done()
	var shut sync.WaitGroup
	for _, srv := range []*http.Server{hs, ws} {
		shut.Add(1)
		go func() {
			defer shut.Done()
			if err := srv.Shutdown(shutCtx); err != nil {
				// Cut what is left: its requests' contexts end.
				_ = srv.Close()
			}
		}()
	}
	shut.Wait()
	wg.Wait()
	return runErr
}

// pushLoop rebuilds every proxy's snapshot after each store commit or
// registry change. Changes that arrive while a push is running coalesce into
// the next one, so a burst of applies costs one rebuild, not one per apply.
func (s *Server) pushLoop(ctx context.Context) {
	revs := s.store.Watch(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-revs:
		case <-s.reg.Changed():
		case <-s.secretWake:
			s.pushState.secret = true
		}
		s.push(ctx)
	}
}

func (s *Server) push(ctx context.Context) {
	// The versions are read before what they version: a commit or change
	// racing this push then gets a later version in the next push. Read
	// after, a racing commit would label the old config with the new
	// revision, and the next push, with the same version, would not reach
	// the proxies.
	rev := s.store.Revision()
	gen := s.regGen.Load()
	var cfg []config.Resource
	for _, k := range config.Kinds {
		rs, err := s.store.List(k.Kind, "")
		if err != nil {
			s.metrics.PushContextError()
			s.log.Error("list config for push", "kind", k.Kind, "err", err)
			return
		}
		cfg = append(cfg, rs...)
	}
	secrets, err := s.xdsSecrets()
	if err != nil {
		s.metrics.PushContextError()
		s.log.Error("list secrets for push", "err", err)
		return
	}
	// The mesh config, as istiod reads it from the istio ConfigMap; a bad
	// one was refused at apply, so an error here is a store failure.
	var mesh *meshv1.MeshConfig
	if cm, ok, err := s.store.Get(config.ConfigMap, meshconfig.Namespace, meshconfig.ConfigMapName); err != nil {
		s.metrics.PushContextError()
		s.log.Error("read mesh config for push", "err", err)
		return
	} else if ok {
		if mesh, err = meshconfig.FromResource(cm); err != nil {
			s.metrics.PushContextError()
			s.log.Error("read mesh config for push", "err", err)
			return
		}
	}
	reg := s.reg.Snapshot()
	// The registry's generation comes with its content; gen counts the
	// other changes (secrets, the cluster's) and is read before them.
	version := fmt.Sprintf("%d.%d", rev, reg.Generation+gen)
	start := time.Now()
	s.recordTriggers(rev, reg, start)
	s.metrics.MeshState(meshState(cfg, reg))
	// Keys never fetched are fetched now, bounded by each rule's timeout,
	// as istiod does while it builds; what fails is inlined as fake keys.
	keys := s.jwks.Resolve(ctx, xds.JWKSRequests(cfg))
	if err := s.xds.Update(ctx, xds.Input{Config: cfg, Registry: reg, Secrets: secrets, Mesh: mesh, JWKS: keys}, version); err != nil {
		// The proxies keep their last good configuration; the next change
		// triggers another push.
		s.log.Error("push", "version", version, "err", err)
		return
	}
	s.log.Debug("pushed", "version", version, "took", time.Since(start))
}
