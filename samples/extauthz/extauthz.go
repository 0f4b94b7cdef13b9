// Package extauthz owns the ext-authz sample: meshlab's own external
// authorization server, in the shape of Istio's samples/extauthz, for
// AuthorizationPolicy's CUSTOM action. It answers Envoy's HTTP ext_authz
// checks on port 8000 and envoy.service.auth.v3.Authorization/Check on
// port 9000, allowing a request that carries `x-ext-authz: allow` (or
// comes from the allowed service account) and denying any other with 403
// and `x-ext-authz-check-result: denied`.
package extauthz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/urfave/cli/v2"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/meshlab/meshlab/lab/drain"
	"github.com/meshlab/meshlab/samples/serve"
)

// The protocol of Istio's sample, which its tasks and tests rely on.
const (
	CheckHeader       = "x-ext-authz"
	AllowedValue      = "allow"
	ResultHeader      = "x-ext-authz-check-result"
	ReceivedHeader    = "x-ext-authz-check-received"
	OverrideHeader    = "x-ext-authz-additional-header-override"
	ResultAllowed     = "allowed"
	ResultDenied      = "denied"
	DefaultAllowedSA  = "a"
	deniedBodyFormat  = "denied by ext_authz for not found header `%s: %s` in the request"
	defaultHTTPAddr   = ":8000"
	defaultGRPCAddr   = ":9000"
	receivedMaxLength = 4096
)

// Options configures Run.
type Options struct {
	// HTTPAddr and GRPCAddr default to ":8000" and ":9000"; HTTPListener
	// and GRPCListener, when set, are served instead.
	HTTPAddr, GRPCAddr         string
	HTTPListener, GRPCListener net.Listener
	// AllowedServiceAccount is also allowed without the header (Istio's
	// -allow_service_account, default "a").
	AllowedServiceAccount string
	Logger                *slog.Logger
	Drain                 time.Duration
}

func deniedBody() string { return fmt.Sprintf(deniedBodyFormat, CheckHeader, AllowedValue) }

// allowedPrincipal: the source's SPIFFE ID names the allowed account.
func allowedPrincipal(principal, sa string) bool {
	return sa != "" && strings.HasSuffix(principal, "/sa/"+sa)
}

// Handler is the HTTP check server: Envoy sends it the request line and
// the allowed headers; 200 allows, 403 denies.
func Handler(allowedSA string, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		received := fmt.Sprintf("%s %s%s, headers: %v", r.Method, r.Host, r.URL, r.Header)
		if len(received) > receivedMaxLength {
			received = received[:receivedMaxLength]
		}
		w.Header().Set(ReceivedHeader, received)
		// The caller's identity reaches an HTTP check only through
		// headers the provider lists (x-forwarded-client-cert).
		principal := ""
		if xfcc := r.Header.Get("X-Forwarded-Client-Cert"); xfcc != "" {
			for _, part := range strings.Split(xfcc, ";") {
				if v, ok := strings.CutPrefix(part, "URI="); ok {
					principal = v
				}
			}
		}
		if r.Header.Get(CheckHeader) == AllowedValue || allowedPrincipal(principal, allowedSA) {
			log.Debug("http check allowed", "path", r.URL.Path)
			w.Header().Set(ResultHeader, ResultAllowed)
			w.Header().Set(OverrideHeader, r.Header.Get(OverrideHeader))
			w.WriteHeader(http.StatusOK)
			return
		}
		log.Debug("http check denied", "path", r.URL.Path)
		w.Header().Set(ResultHeader, ResultDenied)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusForbidden)
		_, _ = fmt.Fprint(w, deniedBody())
	})
}

// Server is the gRPC check server (envoy.service.auth.v3.Authorization).
type Server struct {
	authv3.UnimplementedAuthorizationServer
	AllowedServiceAccount string
	Logger                *slog.Logger
}

func header(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}}
}

// Check allows on the header or the service account, as Istio's sample.
func (s *Server) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp().GetHeaders()
	received := fmt.Sprintf("%s %s%s, headers: %v", attrs.GetRequest().GetHttp().GetMethod(), attrs.GetRequest().GetHttp().GetHost(), attrs.GetRequest().GetHttp().GetPath(), h)
	if len(received) > receivedMaxLength {
		received = received[:receivedMaxLength]
	}
	if h[CheckHeader] == AllowedValue || allowedPrincipal(attrs.GetSource().GetPrincipal(), s.AllowedServiceAccount) {
		s.log().Debug("grpc check allowed", "path", attrs.GetRequest().GetHttp().GetPath())
		return &authv3.CheckResponse{
			Status: &status.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{
				header(ResultHeader, ResultAllowed), header(ReceivedHeader, received), header(OverrideHeader, h[OverrideHeader]),
			}}},
		}, nil
	}
	s.log().Debug("grpc check denied", "path", attrs.GetRequest().GetHttp().GetPath())
	return &authv3.CheckResponse{
		Status: &status.Status{Code: int32(codes.PermissionDenied)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden},
			Body:    deniedBody(),
			Headers: []*corev3.HeaderValueOption{header(ResultHeader, ResultDenied), header(ReceivedHeader, received)},
		}},
	}, nil
}

func (s *Server) log() *slog.Logger {
	if s.Logger == nil {
		return slog.Default()
	}
	return s.Logger
}

// Run serves both check APIs until ctx is done, then drains.
func Run(ctx context.Context, opts Options) error {
	if opts.HTTPAddr == "" {
		opts.HTTPAddr = defaultHTTPAddr
	}
	if opts.GRPCAddr == "" {
		opts.GRPCAddr = defaultGRPCAddr
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	log := opts.Logger.With("service", "ext-authz")
	gln := opts.GRPCListener
	if gln == nil {
		var err error
		if gln, err = new(net.ListenConfig).Listen(ctx, "tcp", opts.GRPCAddr); err != nil {
			return fmt.Errorf("ext-authz: listen on %s: %w", opts.GRPCAddr, err)
		}
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, &Server{AllowedServiceAccount: opts.AllowedServiceAccount, Logger: log})
	gerr := make(chan error, 1)
	go func() { gerr <- gs.Serve(gln) }()
	log.Info("serving grpc", "addr", gln.Addr().String())
	herr := serve.Run(ctx, opts.HTTPListener, opts.HTTPAddr, Handler(opts.AllowedServiceAccount, log), opts.Drain, log)
	// The HTTP side has drained (or failed): the gRPC side stops too.
	stopped := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(serve.DefaultDrain):
		gs.Stop()
		<-stopped
	}
	if err := <-gerr; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return errors.Join(herr, fmt.Errorf("ext-authz: serve grpc: %w", err))
	}
	return herr
}

// Command returns `ext-authz`, which runs the sample in the foreground.
func Command() *cli.Command {
	return &cli.Command{
		Name:  "ext-authz",
		Usage: "run the ext-authz sample (an external authorization server for CUSTOM AuthorizationPolicies)",
		Description: `Serves Envoy's external authorization APIs as Istio's samples/extauthz does:
HTTP checks on port 8000 and gRPC envoy.service.auth.v3.Authorization/Check on
port 9000. A request carrying "x-ext-authz: allow" (or from the allowed service
account) is allowed; any other is denied with 403, "x-ext-authz-check-result:
denied" and a body saying why.

Examples:
   meshlab sample ext-authz
   meshlab sample ext-authz --http-addr 127.0.0.1:8000 --grpc-addr 127.0.0.1:9000
   curl -si -H 'x-ext-authz: allow' localhost:8000/anything   # 200, x-ext-authz-check-result: allowed
   curl -si localhost:8000/anything                           # 403, x-ext-authz-check-result: denied
   meshlab apply -n foo -f samples/extauthz/ext-authz.yaml`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "http-addr", Value: defaultHTTPAddr, Usage: "HTTP check listen address"},
			&cli.StringFlag{Name: "grpc-addr", Value: defaultGRPCAddr, Usage: "gRPC check listen address"},
			&cli.StringFlag{Name: "allow-service-account", Value: DefaultAllowedSA, Usage: "service account allowed without the header", EnvVars: []string{"ALLOW_SERVICE_ACCOUNT"}},
			drain.Flag(),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return cli.Exit(fmt.Sprintf("ext-authz: unexpected arguments %q", c.Args().Slice()), 2)
			}
			return Run(c.Context, Options{
				HTTPAddr: c.String("http-addr"), GRPCAddr: c.String("grpc-addr"),
				AllowedServiceAccount: c.String("allow-service-account"), Drain: drain.FromFlag(c),
			})
		},
	}
}
