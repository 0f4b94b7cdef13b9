// Package csr is istiod's certificate service: gRPC
// istio.v1.auth.IstioCertificateService/CreateCertificate, which signs a
// workload's CSR with the mesh CA for the identity its bearer token proves
// (Istio's security/pkg/server/ca). Who the caller is comes only from an
// Authenticator: a Kubernetes TokenReview of a projected service account
// token (audience istio-ca) on a cluster, or a per-pod token the control
// plane issued on the local runtime. The CSR only brings the key.
package csr

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"

	"github.com/meshlab/meshlab/controlplane/ca"
)

// Authenticator tells who holds a bearer token. It answers the identity,
// or an error wrapping ErrUnauthenticated for a missing, unknown or refused
// token; any other error is the authenticator's own failure.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (ca.Identity, error)
}

// ErrUnauthenticated is an Authenticator's refusal of a token.
var ErrUnauthenticated = errors.New("unauthenticated")

// Options configure a Server.
type Options struct {
	CA     *ca.CA
	Auth   Authenticator
	Policy ca.WorkloadPolicy
	Logger *slog.Logger
}

// Server implements IstioCertificateService.
type Server struct {
	pb.UnimplementedIstioCertificateServiceServer
	ca     *ca.CA
	auth   Authenticator
	policy ca.WorkloadPolicy
	log    *slog.Logger

	csrs, authFailures, issued prometheus.Counter
	signErrs                   *prometheus.CounterVec
	expiry                     []prometheus.Collector
}

// New makes a Server; Serve runs it.
func New(o Options) (*Server, error) {
	if o.CA == nil || o.Auth == nil {
		return nil, errors.New("certificate service: a CA and an authenticator are needed")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	c := o.CA
	// Names and help texts are istiod's (security/pkg/server/ca/monitoring.go),
	// so its dashboards and alerts work unchanged.
	s := &Server{
		ca: c, auth: o.Auth, policy: o.Policy, log: o.Logger,
		csrs: prometheus.NewCounter(prometheus.CounterOpts{Name: "citadel_server_csr_count",
			Help: "The number of CSRs received by Citadel server."}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "citadel_server_authentication_failure_count",
			Help: "The number of authentication failures."}),
		issued: prometheus.NewCounter(prometheus.CounterOpts{Name: "citadel_server_success_cert_issuance_count",
			Help: "The number of certificates issuances that have succeeded."}),
		signErrs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "citadel_server_csr_sign_err_count",
			Help: "The number of errors occurred when signing the CSR."}, []string{"error"}),
		expiry: []prometheus.Collector{
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "citadel_server_root_cert_expiry_timestamp",
				Help: "The unix timestamp, in seconds, when Citadel root cert will expire. A negative time indicates the cert is expired."},
				func() float64 { return float64(c.Root().NotAfter.Unix()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "citadel_server_root_cert_expiry_seconds",
				Help: "The time remaining, in seconds, before the root cert will expire. A negative value indicates the cert is expired."},
				func() float64 { return time.Until(c.Root().NotAfter).Seconds() }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "citadel_server_cert_chain_expiry_timestamp",
				Help: "The unix timestamp, in seconds, when Citadel cert chain will expire. A negative time indicates the cert is expired."},
				func() float64 { return float64(c.ChainNotAfter().Unix()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "citadel_server_cert_chain_expiry_seconds",
				Help: "The time remaining, in seconds, before the cert chain will expire. A negative value indicates the cert is expired."},
				func() float64 { return time.Until(c.ChainNotAfter()).Seconds() }),
		},
	}
	return s, nil
}

// Collectors are the service's metrics, for the control plane's registry.
func (s *Server) Collectors() []prometheus.Collector {
	return append([]prometheus.Collector{s.csrs, s.authFailures, s.issued, s.signErrs}, s.expiry...)
}

// CreateCertificate authenticates the caller, then signs its CSR for the
// caller's identity. Errors are istiod's codes and messages:
// Unauthenticated "request authenticate failure" for any failure to
// authenticate, InvalidArgument for a CSR or lifetime the CA refuses.
func (s *Server) CreateCertificate(ctx context.Context, req *pb.IstioCertificateRequest) (*pb.IstioCertificateResponse, error) {
	s.csrs.Inc()
	id, err := s.authenticate(ctx)
	if err != nil {
		s.authFailures.Inc()
		// As istiod, the caller learns nothing of why, not even whether the
		// authenticator itself failed (an unreachable API server); the
		// log says.
		if errors.Is(err, ErrUnauthenticated) {
			s.log.Info("certificate request refused", "peer", peerAddr(ctx), "err", err)
		} else {
			s.log.Error("certificate request: authenticate the caller", "peer", peerAddr(ctx), "err", err)
		}
		return nil, status.Error(codes.Unauthenticated, "request authenticate failure")
	}
	ttl := time.Duration(req.GetValidityDuration()) * time.Second
	chain, err := s.ca.SignWorkload([]byte(req.GetCsr()), id, ttl, s.policy)
	// Error types and codes as istiod's caerror: a bad CSR or lifetime
	// is the caller's (InvalidArgument), anything else the CA's.
	switch {
	case errors.Is(err, ca.ErrBadCSR):
		s.signErrs.WithLabelValues("CSR_ERROR").Inc()
		return nil, status.Errorf(codes.InvalidArgument, "CSR signing error (%v)", err)
	case errors.Is(err, ca.ErrTTL):
		s.signErrs.WithLabelValues("TTL_ERROR").Inc()
		return nil, status.Errorf(codes.InvalidArgument, "CSR signing error (%v)", err)
	case err != nil:
		s.signErrs.WithLabelValues("CERT_GEN_ERROR").Inc()
		return nil, status.Errorf(codes.Internal, "CSR signing error (%v)", err)
	}
	s.issued.Inc()
	s.log.Debug("workload certificate issued", "identity", id.SPIFFE(s.policy.TrustDomain), "peer", peerAddr(ctx))
	return &pb.IstioCertificateResponse{CertChain: chain}, nil
}

// authenticate takes the identity from the `authorization: Bearer` metadata
// only, as istiod's authenticators do.
func (s *Server) authenticate(ctx context.Context) (ca.Identity, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	var token string
	for _, v := range md.Get("authorization") {
		if scheme, t, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "Bearer") {
			token = strings.TrimSpace(t)
			break
		}
	}
	if token == "" {
		return ca.Identity{}, fmt.Errorf("%w: no bearer token in the authorization metadata", ErrUnauthenticated)
	}
	id, err := s.auth.Authenticate(ctx, token)
	if err != nil {
		return ca.Identity{}, err
	}
	if err := id.Validate(); err != nil {
		return ca.Identity{}, fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	}
	return id, nil
}

func peerAddr(ctx context.Context) string {
	p, _ := peerFrom(ctx)
	return p
}

// Serve answers on lis over TLS with cert (istiod's serving certificate)
// until ctx ends; then calls in flight get drain to finish before they are
// cut.
func (s *Server) Serve(ctx context.Context, lis net.Listener, cert tls.Certificate, drain time.Duration) error {
	return s.ServeTLS(ctx, lis, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, drain, nil)
}

// ServeTLS is Serve with the TLS configuration given, and other services
// on the same gRPC server (istiod's 15012 carries xDS too): register adds
// them, opts are the server's options. The certificate service itself
// asks nothing of the client's certificate; the bearer token decides.
func (s *Server) ServeTLS(ctx context.Context, lis net.Listener, cfg *tls.Config, drain time.Duration, register func(*grpc.Server), opts ...grpc.ServerOption) error {
	gs := grpc.NewServer(append(opts, grpc.Creds(credentials.NewTLS(cfg)))...)
	pb.RegisterIstioCertificateServiceServer(gs, s)
	if register != nil {
		register(gs)
	}
	ctx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		done := make(chan struct{})
		go func() { gs.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(drain):
			gs.Stop() // GracefulStop then returns too
			<-done
		}
	}()
	err := gs.Serve(lis)
	cancel() // Serve may fail on its own; the stopper must end either way
	<-stopped
	if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve gRPC over TLS on %s: %w", lis.Addr(), err)
	}
	return nil
}

func peerFrom(ctx context.Context) (string, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "", false
	}
	return p.Addr.String(), true
}
