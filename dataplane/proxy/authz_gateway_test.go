package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestGatewayAuthorizationPolicy: policies selecting the ingress gateway,
// translated by the control plane and run by the router's connection
// manager (use_remote_address, as Istio's gateways): a DENY on a path,
// an ALLOW on remoteIpBlocks that X-Forwarded-For cannot spoof (no trusted
// proxies: remote.ip is the connection's peer), Envoy's 403.
func TestGatewayAuthorizationPolicy(t *testing.T) {
	const policies = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-local, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: ALLOW
  rules: [{from: [{source: {remoteIpBlocks: ["127.0.0.0/8"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: not-this-gateway, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: egressgateway}}
  action: DENY
  rules: [{}]
`
	addr, _ := authzGateway(t, policies, "", appEcho(t), nil)
	c := &http.Client{Timeout: 10 * time.Second}
	for _, tc := range []struct {
		path, xff string
		want      int
	}{
		{"/ip", "", 200},
		{"/ip", "10.9.9.9", 200}, // XFF is not trusted: the peer (127.0.0.1) is remote.ip
		{"/admin", "", 403},
	} {
		var hdr []string
		if tc.xff != "" {
			hdr = []string{"X-Forwarded-For", tc.xff}
		}
		code, body, _ := get(t, c, addr, "app.example.com", tc.path, hdr...)
		if code != tc.want || (code == 403 && body != "RBAC: access denied") {
			t.Errorf("GET %s (XFF %q): %d %q, want %d", tc.path, tc.xff, code, body, tc.want)
		}
	}

	// The ALLOW names an address the client does not have: denied, and
	// claiming it in X-Forwarded-For does not help.
	addr2, _ := authzGateway(t, strings.ReplaceAll(policies, "127.0.0.0/8", "10.9.9.9"), "", appEcho(t), nil)
	for _, xff := range []string{"", "10.9.9.9"} {
		var hdr []string
		if xff != "" {
			hdr = []string{"X-Forwarded-For", xff}
		}
		if code, _, _ := get(t, c, addr2, "app.example.com", "/ip", hdr...); code != 403 {
			t.Errorf("GET /ip (XFF %q) with ALLOW remoteIpBlocks 10.9.9.9: %d, want 403", xff, code)
		}
	}

	// Behind one trusted proxy (gatewayTopology.numTrustedProxies: 1) the
	// client is the last X-Forwarded-For entry, as Envoy's
	// xff_num_trusted_hops makes it.
	addr3, _ := authzGateway(t, strings.ReplaceAll(policies, "127.0.0.0/8", "10.9.9.9"), "defaultConfig: {gatewayTopology: {numTrustedProxies: 1}}", appEcho(t), nil)
	for _, tc := range []struct {
		xff  string
		want int
	}{{"", 403}, {"10.9.9.9", 200}, {"10.9.9.9, 10.1.1.1", 403}, {"10.1.1.1, 10.9.9.9", 200}} {
		var hdr []string
		if tc.xff != "" {
			hdr = []string{"X-Forwarded-For", tc.xff}
		}
		if code, _, _ := get(t, c, addr3, "app.example.com", "/ip", hdr...); code != tc.want {
			t.Errorf("numTrustedProxies 1, GET /ip (XFF %q): %d, want %d", tc.xff, code, tc.want)
		}
	}
}

// TestDryRunStats: a dry-run DENY (istio.io/dry-run) never denies but
// counts what it would have done under Envoy's shadow stat names, next to
// the enforced ALLOW's rbac.allowed/denied, on /stats and
// /stats/prometheus.
func TestDryRunStats(t *testing.T) {
	const policies = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: dry-deny-headers
  namespace: istio-system
  annotations: {istio.io/dry-run: "true"}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/headers"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-get, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  rules: [{to: [{operation: {methods: ["GET"]}}]}]
`
	addr, tp := authzGateway(t, policies, "", appEcho(t), nil)
	c := &http.Client{Timeout: 10 * time.Second}
	for i, path := range []string{"/headers", "/headers", "/ip"} {
		if code, _, _ := get(t, c, addr, "app.example.com", path); code != 200 {
			t.Errorf("request %d GET %s: %d, want 200 (the DENY is a dry run)", i, path, code)
		}
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/ip", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "app.example.com"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("POST /ip: %d, want 403 from the ALLOW", resp.StatusCode)
	}

	scrape := func(path string) string {
		rec := httptest.NewRecorder()
		tp.AdminHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		b, _ := io.ReadAll(rec.Body)
		return string(b)
	}
	stats := scrape("/stats")
	for _, want := range []string{
		"http.outbound_0.0.0.0_8080.rbac.allowed: 3\n",
		"http.outbound_0.0.0.0_8080.rbac.denied: 1\n",
		"http.outbound_0.0.0.0_8080.rbac.istio_dry_run_deny_shadow_denied: 2\n",
		"http.outbound_0.0.0.0_8080.rbac.istio_dry_run_deny_shadow_allowed: 2\n",
	} {
		if !strings.Contains(stats, want) {
			t.Errorf("/stats lacks %q:\n%s", want, stats)
		}
	}
	prom := scrape("/stats/prometheus")
	for _, want := range []string{
		`envoy_http_outbound_0_0_0_0_8080_rbac{authz_enforce_result="allowed"} 3`,
		`envoy_http_outbound_0_0_0_0_8080_rbac{authz_enforce_result="denied"} 1`,
		`envoy_http_outbound_0_0_0_0_8080_rbac{authz_dry_run_action="deny",authz_dry_run_result="denied"} 2`,
		`envoy_http_outbound_0_0_0_0_8080_rbac{authz_dry_run_action="deny",authz_dry_run_result="allowed"} 2`,
	} {
		if !strings.Contains(prom, want) {
			t.Errorf("/stats/prometheus lacks %q", want)
		}
	}
}
