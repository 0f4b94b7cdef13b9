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

// jwtFilter compiles an HCM's jwt_authn filter into its place among the
// authorization steps; one per connection manager, as Istio sends.
func (h *hcm) jwtFilter(f *hcmv3.HttpFilter) error {
	for _, s := range h.authz {
		if s.jwt != nil {
			return fmt.Errorf("a second jwt_authn filter is not supported")
		}
	}
	var cfg jwtv3.JwtAuthentication
	if err := f.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
		return err
	}
	jf, err := jwtauthn.Compile(&cfg)
	if err != nil {
		return err
	}
	h.authz = append(h.authz, httpAuthz{jwt: jf})
	return nil
}

// authenticate runs jwt_authn on a request; false when it answered it. A
// refused token gets Envoy's local reply: 401 (403 for audiences) with
// jwt_verify_lib's message as the body and the WWW-Authenticate
// challenge. A verified one leaves its payload on ex for RBAC.
func authenticate(ex *exchange, r *http.Request, f *jwtauthn.Filter) bool {
	res := f.Verify(r, time.Now())
	if res.Denied() {
		ex.details = res.ResponseDetail()
		ex.Header()["Www-Authenticate"] = []string{res.WWWAuthenticate(r)}
		localReply(ex, res.Code(), res.Status.String())
		return false
	}
	ex.jwt = res.Metadata
	return true
}
