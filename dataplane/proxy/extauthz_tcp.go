package proxy

// Envoy's envoy.filters.network.ext_authz, which Istio puts on TCP filter
// chains for a CUSTOM policy with a gRPC provider: after the shadow
// network RBAC filter, when its filter_enabled_metadata matches, a new
// connection is checked with Authorization/Check (source and destination
// only) before its terminal filter sees it; a denial or an error (unless
// failure_mode_allow) closes it with nothing sent, as the RBAC filter's.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	extauthznetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/ext_authz/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/meshlab/meshlab/dataplane/rbac"
)

// netAuthz is one network authorization filter of a chain: RBAC (with its
// counters' names) or ext_authz.
type netAuthz struct {
	rbac     *rbac.Engine
	counters rbac.Counters
	ext      *netExtAuthz
}

type netExtAuthz struct {
	cluster, authority string
	timeout            time.Duration
	failOpen           bool
	enabled            *metadataMatch
}

func compileNetExtAuthz(cfg *extauthznetv3.ExtAuthz) (*netExtAuthz, error) {
	eg := cfg.GetGrpcService().GetEnvoyGrpc()
	if eg == nil || eg.GetClusterName() == "" {
		return nil, errors.New("grpc_service: only envoy_grpc with a cluster is supported")
	}
	if cfg.GetShadowMode() || cfg.GetSendTlsAlertOnDenial() {
		return nil, errors.New("shadow_mode and send_tls_alert_on_denial are not supported")
	}
	x := &netExtAuthz{cluster: eg.GetClusterName(), authority: eg.GetAuthority(), failOpen: cfg.GetFailureModeAllow(),
		timeout: cfg.GetGrpcService().GetTimeout().AsDuration()}
	if x.authority == "" {
		x.authority = x.cluster
	}
	if x.timeout <= 0 {
		x.timeout = 200 * time.Millisecond
	}
	if m := cfg.GetFilterEnabledMetadata(); m != nil {
		mm, err := compileMetadataMatch(m)
		if err != nil {
			return nil, fmt.Errorf("filter_enabled_metadata: %w", err)
		}
		x.enabled = mm
	}
	return x, nil
}

// authorizeConn runs a chain's network authorization filters on a new
// connection, in order.
func (p *Proxy) authorizeConn(steps []netAuthz, ci *connInfo) bool {
	dst := ci.dest()
	req := rbac.Request{Source: ci.remote, Destination: dst}
	peerOf(&req, ci)
	for i := range steps {
		s := &steps[i]
		if s.ext != nil {
			if !p.netExtAuthorize(s.ext, ci, dst, req.Metadata) {
				return false
			}
			continue
		}
		d := s.rbac.Allowed(&req)
		p.countRBAC(s.counters, d)
		recordShadow(&req, s.rbac, d)
		if !d.Allowed {
			return false
		}
	}
	return true
}

func (p *Proxy) netExtAuthorize(x *netExtAuthz, ci *connInfo, dst netip.AddrPort, meta map[string]*structpb.Struct) bool {
	if x.enabled != nil && !x.enabled.matches(meta) {
		return true
	}
	conn, err := p.authzConn(x.cluster, x.authority)
	if err == nil {
		ctx, cancel := context.WithTimeout(p.ctx, x.timeout)
		defer cancel()
		var resp *authv3.CheckResponse
		resp, err = authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source:      &authv3.AttributeContext_Peer{Address: authzSockAddr(ci.remote)},
			Destination: &authv3.AttributeContext_Peer{Address: authzSockAddr(dst)},
			Request:     &authv3.AttributeContext_Request{Time: timestamppb.Now()},
		}})
		if err == nil {
			return codes.Code(resp.GetStatus().GetCode()) == codes.OK
		}
	}
	p.log.Debug("network ext_authz error", "cluster", x.cluster, "err", err)
	return x.failOpen
}
