package proxy

import (
	"fmt"
	"net/http"
	"time"

	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/meshlab/meshlab/dataplane/jwtauthn"
)

// The connection manager's jwt_authn filter (RequestAuthentication, as
// Istio configures it): tokens verified before the RBAC filters that
// follow it, whose request principal and request.auth.* rules match the
// payload it writes to the stream's dynamic metadata.

// jwtFilter compiles an HCM's jwt_authn filter; one per connection
// manager, as Istio sends.
func (h *hcm) jwtFilter(f *hcmv3.HttpFilter) error {
	if h.jwt != nil {
		return fmt.Errorf("a second jwt_authn filter is not supported")
	}
	var cfg jwtv3.JwtAuthentication
	if err := f.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
		return err
	}
	jf, err := jwtauthn.Compile(&cfg)
	if err != nil {
		return err
	}
	h.jwt, h.jwtAt = jf, len(h.rbac)
	return nil
}

// authenticateAndAuthorize runs the HCM's jwt_authn and RBAC filters in
// chain order; false when one answered the request. A refused token gets
// Envoy's local reply: 401 (403 for audiences) with jwt_verify_lib's
// message as the body and the WWW-Authenticate challenge.
func authenticateAndAuthorize(ex *exchange, r *http.Request, h *hcm) bool {
	if h.jwt == nil {
		return len(h.rbac) == 0 || authorize(ex, r, h.rbac)
	}
	if h.jwtAt > 0 && !authorize(ex, r, h.rbac[:h.jwtAt]) {
		return false
	}
	res := h.jwt.Verify(r, time.Now())
	if res.Denied() {
		ex.details = res.ResponseDetail()
		ex.Header()["Www-Authenticate"] = []string{res.WWWAuthenticate(r)}
		localReply(ex, res.Code(), res.Status.String())
		return false
	}
	ex.jwt = res.Metadata
	return len(h.rbac) == h.jwtAt || authorize(ex, r, h.rbac[h.jwtAt:])
}
