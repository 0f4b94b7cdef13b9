package proxy

// Envoy's envoy.filters.http.ext_authz, as Istio configures it for an
// AuthorizationPolicy with action CUSTOM: it runs only when the shadow RBAC
// filter before it matched a CUSTOM rule (filter_enabled_metadata), asks the
// provider, reached through the proxy's own cluster for it, and lets the
// request on or answers for the provider. The HTTP service gets the request
// line and the allowed headers at path_prefix+path (200 allows, 5xx or no
// answer is an error, anything else a denial passed through with its
// status, body and allowed headers); the gRPC service gets
// envoy.service.auth.v3.Authorization/Check. Errors (connect failure,
// timeout) deny with status_on_error (403) unless failure_mode_allow.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// extAuthz is a compiled ext_authz HTTP filter.
type extAuthz struct {
	cluster   string
	grpc      bool
	authority string // gRPC :authority
	timeout   time.Duration
	failOpen  bool
	// statusOnError is the status of a denial for an error (403 unset).
	statusOnError int
	pathPrefix    string
	// Header lists; nil is unset (Envoy's meaning differs per list).
	allowedHeaders   *stringList
	headersToAdd     [][2]string
	upstreamHeaders  *stringList
	clientHeaders    *stringList
	clientOnSuccess  *stringList
	body             *extauthzv3.BufferSettings
	enabled          *metadataMatch // nil: always
	statusOnErrorSet bool
}

// compileExtAuthz refuses what it does not implement rather than run
// weaker: an authorization filter that silently skipped a setting could
// fail open.
func compileExtAuthz(cfg *extauthzv3.ExtAuthz) (*extAuthz, error) {
	x := &extAuthz{failOpen: cfg.GetFailureModeAllow(), statusOnError: http.StatusForbidden}
	if c := cfg.GetStatusOnError().GetCode(); c != 0 {
		x.statusOnError, x.statusOnErrorSet = int(c), true
	}
	if cfg.GetFilterEnabled() != nil || cfg.GetDenyAtDisable() != nil {
		return nil, errors.New("filter_enabled and deny_at_disable (runtime fractions) are not supported")
	}
	if m := cfg.GetFilterEnabledMetadata(); m != nil {
		mm, err := compileMetadataMatch(m)
		if err != nil {
			return nil, fmt.Errorf("filter_enabled_metadata: %w", err)
		}
		x.enabled = mm
	}
	if b := cfg.GetWithRequestBody(); b != nil {
		x.body = b
	}
	var err error
	if x.allowedHeaders, err = compileList(cfg.GetAllowedHeaders()); err != nil {
		return nil, fmt.Errorf("allowed_headers: %w", err)
	}
	switch s := cfg.GetServices().(type) {
	case *extauthzv3.ExtAuthz_HttpService:
		hs := s.HttpService
		x.cluster = hs.GetServerUri().GetCluster()
		x.timeout = hs.GetServerUri().GetTimeout().AsDuration()
		x.pathPrefix = hs.GetPathPrefix()
		if hs.GetPathOverride() != "" || hs.GetRetryPolicy() != nil {
			return nil, errors.New("http_service path_override and retry_policy are not supported")
		}
		if l := hs.GetAuthorizationRequest().GetAllowedHeaders(); l != nil { //nolint:staticcheck // Istio 1.24 sets it here
			if x.allowedHeaders, err = compileList(l); err != nil {
				return nil, fmt.Errorf("authorization_request.allowed_headers: %w", err)
			}
		}
		for _, h := range hs.GetAuthorizationRequest().GetHeadersToAdd() {
			x.headersToAdd = append(x.headersToAdd, [2]string{h.GetKey(), h.GetValue()})
		}
		ar := hs.GetAuthorizationResponse()
		if ar.GetAllowedUpstreamHeadersToAppend() != nil || ar.GetDynamicMetadataFromHeaders() != nil {
			return nil, errors.New("authorization_response allowed_upstream_headers_to_append and dynamic_metadata_from_headers are not supported")
		}
		for _, l := range []struct {
			dst **stringList
			src *matcherv3.ListStringMatcher
		}{{&x.upstreamHeaders, ar.GetAllowedUpstreamHeaders()}, {&x.clientHeaders, ar.GetAllowedClientHeaders()}, {&x.clientOnSuccess, ar.GetAllowedClientHeadersOnSuccess()}} {
			if *l.dst, err = compileList(l.src); err != nil {
				return nil, fmt.Errorf("authorization_response: %w", err)
			}
		}
	case *extauthzv3.ExtAuthz_GrpcService:
		gs := s.GrpcService
		eg := gs.GetEnvoyGrpc()
		if eg == nil {
			return nil, errors.New("grpc_service: only envoy_grpc is supported")
		}
		x.grpc, x.cluster, x.authority = true, eg.GetClusterName(), eg.GetAuthority()
		if x.authority == "" {
			x.authority = eg.GetClusterName()
		}
		x.timeout = gs.GetTimeout().AsDuration()
	default:
		return nil, errors.New("no http_service or grpc_service")
	}
	if x.cluster == "" {
		return nil, errors.New("no cluster")
	}
	if x.timeout <= 0 {
		x.timeout = 200 * time.Millisecond // Envoy's default
	}
	return x, nil
}

// stringList is a compiled ListStringMatcher.
type stringList struct{ ms []stringMatch }

type stringMatch struct {
	exact, prefix, suffix, contains string
	kind                            byte // e p s c r
	re                              *regexp.Regexp
	ignoreCase                      bool
}

func compileList(l *matcherv3.ListStringMatcher) (*stringList, error) {
	if l == nil {
		return nil, nil
	}
	out := &stringList{}
	for _, p := range l.GetPatterns() {
		m := stringMatch{ignoreCase: p.GetIgnoreCase()}
		switch mp := p.GetMatchPattern().(type) {
		case *matcherv3.StringMatcher_Exact:
			m.kind, m.exact = 'e', mp.Exact
		case *matcherv3.StringMatcher_Prefix:
			m.kind, m.prefix = 'p', mp.Prefix
		case *matcherv3.StringMatcher_Suffix:
			m.kind, m.suffix = 's', mp.Suffix
		case *matcherv3.StringMatcher_Contains:
			m.kind, m.contains = 'c', mp.Contains
		case *matcherv3.StringMatcher_SafeRegex:
			re, err := regexp.Compile("^(?:" + mp.SafeRegex.GetRegex() + ")$")
			if err != nil {
				return nil, err
			}
			m.kind, m.re = 'r', re
		default:
			return nil, fmt.Errorf("string matcher %T is not supported", mp)
		}
		out.ms = append(out.ms, m)
	}
	return out, nil
}

func (m *stringMatch) match(s string) bool {
	v := func(x string) string { return x }
	if m.ignoreCase {
		v = strings.ToLower
	}
	switch m.kind {
	case 'e':
		return v(s) == v(m.exact)
	case 'p':
		return strings.HasPrefix(v(s), v(m.prefix))
	case 's':
		return strings.HasSuffix(v(s), v(m.suffix))
	case 'c':
		return strings.Contains(v(s), v(m.contains))
	case 'r':
		return m.re.MatchString(s)
	}
	return false
}

func (l *stringList) match(s string) bool {
	if l == nil {
		return false
	}
	for i := range l.ms {
		if l.ms[i].match(s) {
			return true
		}
	}
	return false
}

// metadataMatch is the MetadataMatcher form Istio uses: a filter
// namespace, a key path, a string matcher on the value.
type metadataMatch struct {
	filter string
	path   []string
	value  stringMatch
	invert bool
}

func compileMetadataMatch(m *matcherv3.MetadataMatcher) (*metadataMatch, error) {
	out := &metadataMatch{filter: m.GetFilter(), invert: m.GetInvert()}
	for _, p := range m.GetPath() {
		out.path = append(out.path, p.GetKey())
	}
	sm := m.GetValue().GetStringMatch()
	if sm == nil || len(out.path) == 0 {
		return nil, errors.New("only a string match on a key path is supported")
	}
	l, err := compileList(&matcherv3.ListStringMatcher{Patterns: []*matcherv3.StringMatcher{sm}})
	if err != nil {
		return nil, err
	}
	out.value = l.ms[0]
	return out, nil
}

func (m *metadataMatch) matches(meta map[string]*structpb.Struct) bool {
	st := meta[m.filter]
	var v *structpb.Value
	for i, k := range m.path {
		if st == nil {
			return m.invert
		}
		v = st.GetFields()[k]
		if i < len(m.path)-1 {
			st = v.GetStructValue()
		}
	}
	s, ok := v.GetKind().(*structpb.Value_StringValue)
	return (ok && m.value.match(s.StringValue)) != m.invert
}

// authzVerdict is the provider's answer.
type authzVerdict struct {
	allowed bool
	err     error // no usable answer: status_on_error / failure_mode_allow
	status  int
	header  http.Header // denied: to the client; allowed: to upstream
	// toClient (allowed) are added to the upstream's response.
	toClient http.Header
	remove   []string // allowed (gRPC): headers to remove upstream
	body     []byte
}

// extAuthorize runs one ext_authz filter on a request: false when it
// answered the client.
func (p *Proxy) extAuthorize(ex *exchange, r *http.Request, x *extAuthz, meta map[string]*structpb.Struct) bool {
	if x.enabled != nil && !x.enabled.matches(meta) {
		return true
	}
	var body []byte
	if x.body != nil && r.Body != nil && r.Body != http.NoBody {
		max := int64(x.body.GetMaxRequestBytes())
		b, err := io.ReadAll(io.LimitReader(r.Body, max+1))
		if err != nil {
			localReply(ex, http.StatusBadRequest, bodyBadRequest)
			return false
		}
		if int64(len(b)) > max && !x.body.GetAllowPartialMessage() {
			localReply(ex, http.StatusRequestEntityTooLarge, "Payload Too Large")
			return false
		}
		rest := r.Body
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(b), rest), rest}
		if int64(len(b)) > max {
			b = b[:max]
		}
		body = b
	}
	ctx, cancel := context.WithTimeout(r.Context(), x.timeout)
	defer cancel()
	var v authzVerdict
	if x.grpc {
		v = p.checkGRPC(ctx, ex, r, x, body)
	} else {
		v = p.checkHTTP(ctx, ex, r, x, body)
	}
	switch {
	case v.err != nil && x.failOpen:
		p.log.Debug("ext_authz error, failure_mode_allow", "cluster", x.cluster, "err", v.err)
		return true
	case v.err != nil:
		p.log.Debug("ext_authz error", "cluster", x.cluster, "err", v.err)
		ex.flags |= flagUAEX
		ex.details = "ext_authz_error"
		ex.WriteHeader(x.statusOnError)
		return false
	case v.allowed:
		for _, k := range v.remove {
			r.Header.Del(k)
		}
		for k, vs := range v.header {
			r.Header[k] = vs
		}
		if len(v.toClient) > 0 {
			ex.authzResponse = v.toClient
		}
		return true
	}
	ex.flags |= flagUAEX
	ex.details = "ext_authz_denied"
	h := ex.Header()
	for k, vs := range v.header {
		h[k] = vs
	}
	h["Content-Length"] = []string{strconv.Itoa(len(v.body))}
	ex.WriteHeader(v.status)
	_, _ = ex.Write(v.body)
	return false
}

// checkHTTP asks an HTTP authorization service, as Envoy's raw HTTP client:
// the original method, path_prefix+path, :authority, and the allowed
// headers (plus Authorization, always), no body unless with_request_body.
func (p *Proxy) checkHTTP(ctx context.Context, ex *exchange, r *http.Request, x *extAuthz, body []byte) authzVerdict {
	cl := ex.rt.clusters[x.cluster]
	if cl == nil {
		return authzVerdict{err: fmt.Errorf("cluster %s not found", x.cluster)}
	}
	ep := cl.Pick(netip.AddrPort{})
	if ep == nil {
		return authzVerdict{err: fmt.Errorf("cluster %s: no healthy upstream", x.cluster)}
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, "http://"+ep.Addr, bytes.NewReader(body))
	if err != nil {
		return authzVerdict{err: err}
	}
	req.URL.Opaque = x.pathPrefix + r.URL.RequestURI()
	req.Host = r.Host
	req.ContentLength = int64(len(body))
	if len(body) == 0 {
		req.Body = http.NoBody
	}
	for k, vs := range r.Header {
		lk := strings.ToLower(k)
		if lk == "authorization" || x.allowedHeaders.match(lk) {
			req.Header[k] = vs
		}
	}
	for _, kv := range x.headersToAdd {
		req.Header.Set(kv[0], kv[1])
	}
	resp, err := cl.Transport.RoundTrip(req)
	if err != nil {
		return authzVerdict{err: err}
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode >= 500 {
		return authzVerdict{err: fmt.Errorf("authorization server answered %d", resp.StatusCode)}
	}
	if resp.StatusCode == http.StatusOK {
		v := authzVerdict{allowed: true, header: http.Header{}, toClient: http.Header{}}
		for k, vs := range resp.Header {
			if x.upstreamHeaders.match(strings.ToLower(k)) {
				v.header[k] = vs
			}
			if x.clientOnSuccess.match(strings.ToLower(k)) {
				v.toClient[k] = vs
			}
		}
		return v
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return authzVerdict{err: err}
	}
	v := authzVerdict{status: resp.StatusCode, header: http.Header{}, body: b}
	for k, vs := range resp.Header {
		lk := strings.ToLower(k)
		switch {
		case lk == "content-length", lk == "host":
		case x.clientHeaders == nil, x.clientHeaders.match(lk), lk == "www-authenticate", lk == "location":
			v.header[k] = vs
		}
	}
	return v
}

// checkGRPC asks a gRPC authorization service (Authorization/Check).
func (p *Proxy) checkGRPC(ctx context.Context, ex *exchange, r *http.Request, x *extAuthz, body []byte) authzVerdict {
	conn, err := p.authzConn(x.cluster, x.authority)
	if err != nil {
		return authzVerdict{err: err}
	}
	dst := ex.conn.dest()
	headers := map[string]string{":authority": r.Host, ":method": r.Method, ":path": r.URL.RequestURI()}
	for k, vs := range r.Header {
		headers[strings.ToLower(k)] = strings.Join(vs, ",")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	hr := &authv3.AttributeContext_HttpRequest{
		Id: r.Header.Get("X-Request-Id"), Method: r.Method, Headers: headers, Path: r.URL.RequestURI(),
		Host: r.Host, Scheme: scheme, Protocol: r.Proto, Size: r.ContentLength,
	}
	if body != nil {
		if x.body.GetPackAsBytes() {
			hr.RawBody = body
		} else {
			hr.Body = string(body)
		}
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: authzSockAddr(ex.conn.remote), Principal: peerPrincipal(r)},
		Destination: &authv3.AttributeContext_Peer{Address: authzSockAddr(dst)},
		Request:     &authv3.AttributeContext_Request{Time: timestamppb.Now(), Http: hr},
	}}
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, req)
	if err != nil {
		return authzVerdict{err: err}
	}
	if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
		v := authzVerdict{allowed: true, header: http.Header{}, remove: resp.GetOkResponse().GetHeadersToRemove()}
		for _, h := range resp.GetOkResponse().GetHeaders() {
			k := http.CanonicalHeaderKey(h.GetHeader().GetKey())
			// Envoy's ext_authz still reads the deprecated append (unset:
			// overwrite), as authorization servers send it.
			if h.GetAppend().GetValue() { //nolint:staticcheck // see above
				v.header[k] = append(append(v.header[k], r.Header[k]...), h.GetHeader().GetValue())
			} else {
				v.header[k] = append(v.header[k], h.GetHeader().GetValue())
			}
		}
		for _, h := range resp.GetOkResponse().GetResponseHeadersToAdd() {
			if v.toClient == nil {
				v.toClient = http.Header{}
			}
			v.toClient.Add(h.GetHeader().GetKey(), h.GetHeader().GetValue())
		}
		return v
	}
	d := resp.GetDeniedResponse()
	v := authzVerdict{status: int(d.GetStatus().GetCode()), header: http.Header{}, body: []byte(d.GetBody())}
	if v.status == 0 {
		v.status = http.StatusForbidden
	}
	for _, h := range d.GetHeaders() {
		v.header.Add(h.GetHeader().GetKey(), h.GetHeader().GetValue())
	}
	return v
}

func authzSockAddr(a netip.AddrPort) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: a.Addr().Unmap().String(), PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(a.Port())},
	}}}
}

func peerPrincipal(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 || len(r.TLS.PeerCertificates[0].URIs) == 0 {
		return ""
	}
	return r.TLS.PeerCertificates[0].URIs[0].String()
}

// authzConns are the proxy's gRPC connections to authorization services,
// one per cluster, closed when the proxy stops (closeAuthzConns). Each
// dial picks an endpoint of the cluster as the proxy has it then.
type authzConns struct {
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func (p *Proxy) authzConn(cluster, authority string) (*grpc.ClientConn, error) {
	p.authz.mu.Lock()
	defer p.authz.mu.Unlock()
	if c := p.authz.conns[cluster]; c != nil {
		return c, nil
	}
	dial := func(ctx context.Context, _ string) (net.Conn, error) {
		cl := p.rt.Load().clusters[cluster]
		if cl == nil {
			return nil, fmt.Errorf("cluster %s not found", cluster)
		}
		ep := cl.Pick(netip.AddrPort{})
		if ep == nil {
			return nil, fmt.Errorf("cluster %s: no healthy upstream", cluster)
		}
		return cl.Dial(ctx, ep)
	}
	c, err := grpc.NewClient("passthrough:///"+authority, grpc.WithContextDialer(dial),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority(authority))
	if err != nil {
		return nil, fmt.Errorf("ext_authz grpc client for %s: %w", cluster, err)
	}
	if p.authz.conns == nil {
		p.authz.conns = map[string]*grpc.ClientConn{}
	}
	p.authz.conns[cluster] = c
	return c, nil
}

func (p *Proxy) closeAuthzConns() {
	p.authz.mu.Lock()
	defer p.authz.mu.Unlock()
	for k, c := range p.authz.conns {
		_ = c.Close()
		delete(p.authz.conns, k)
	}
}
