package controlplane

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshlab/meshlab/controlplane/api"
)

const applyBody = `{"documents":[{"source":"x.yaml","index":0,"object":{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"r","namespace":"default"},"spec":{"hosts":["r"],"http":[{"route":[{"destination":{"host":"r"}}]}]}}}]}`

// TestAPIAuth is the API as a pod, a local user or a web page meets it:
// every call that changes the mesh or reads its config or secrets needs the
// token; bodies are JSON only; the Host must name the API; no CORS.
func TestAPIAuth(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Options{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	token := testToken(t, dir)
	h := s.Handler()

	const (
		none  = ""
		good  = "good"
		wrong = "wrong"
	)
	tests := []struct {
		name        string
		method      string
		url         string // host and path
		token       string
		contentType string
		body        string
		origin      string
		want        int
	}{
		// Open, as on istiod's 15014.
		{name: "metrics open", method: "GET", url: "http://127.0.0.1:15014/metrics", want: 200},
		{name: "ready open", method: "GET", url: "http://198.18.0.2:15014/ready", want: 200},
		{name: "version open", method: "GET", url: "http://localhost:15014/version", want: 200},
		{name: "CA root open", method: "GET", url: "http://istiod.istio-system.svc:15014" + PathCARoot, want: 200},

		// Mutating calls.
		{name: "apply without token", method: "POST", url: "http://istiod.istio-system:15014" + api.PathApply, contentType: "application/json", body: applyBody, want: 401},
		{name: "apply with wrong token", method: "POST", url: "http://istiod:15014" + api.PathApply, token: wrong, contentType: "application/json", body: applyBody, want: 401},
		{name: "apply as text/plain without token", method: "POST", url: "http://127.0.0.1:15014" + api.PathApply, contentType: "text/plain", body: applyBody, want: 401},
		{name: "apply as text/plain with token", method: "POST", url: "http://127.0.0.1:15014" + api.PathApply, token: good, contentType: "text/plain", body: applyBody, want: 415},
		{name: "apply as form with token", method: "POST", url: "http://127.0.0.1:15014" + api.PathApply, token: good, contentType: "application/x-www-form-urlencoded", body: applyBody, want: 415},
		{name: "apply without content type", method: "POST", url: "http://127.0.0.1:15014" + api.PathApply, token: good, body: applyBody, want: 415},
		{name: "apply", method: "POST", url: "http://127.0.0.1:15014" + api.PathApply, token: good, contentType: "application/json; charset=utf-8", body: applyBody, want: 200},
		{name: "delete without token", method: "POST", url: "http://127.0.0.1:15014" + api.PathDelete, contentType: "application/json", body: `{"keys":["VirtualService/default/r"]}`, want: 401},
		{name: "put service without token", method: "PUT", url: "http://127.0.0.1:15014" + api.PathServices, contentType: "application/json", body: `{"name":"x","namespace":"default"}`, want: 401},
		{name: "put workload without token", method: "PUT", url: "http://127.0.0.1:15014" + api.PathWorkloads, contentType: "application/json", body: `{"name":"x","namespace":"default","ip":"198.18.0.9"}`, want: 401},
		{name: "delete all workloads without token", method: "DELETE", url: "http://127.0.0.1:15014" + api.PathWorkloads, want: 401},
		{name: "put secret without token", method: "PUT", url: "http://127.0.0.1:15014" + api.PathSecrets, contentType: "application/json", body: `{}`, want: 401},
		{name: "delete secret without token", method: "DELETE", url: "http://127.0.0.1:15014" + api.PathSecrets + "?namespace=istio-system&name=x", want: 401},

		// Reads of secrets, config, registry, proxies.
		{name: "secrets without token", method: "GET", url: "http://127.0.0.1:15014" + api.PathSecrets, want: 401},
		{name: "secrets", method: "GET", url: "http://127.0.0.1:15014" + api.PathSecrets, token: good, want: 200},
		{name: "resources without token", method: "GET", url: "http://127.0.0.1:15014" + api.PathResources, want: 401},
		{name: "registry without token", method: "GET", url: "http://127.0.0.1:15014" + api.PathRegistry, want: 401},
		{name: "proxies without token", method: "GET", url: "http://127.0.0.1:15014" + api.PathProxies, want: 401},
		{name: "config dump without token", method: "GET", url: "http://127.0.0.1:15014" + api.PathConfigDump + "?proxy=x", want: 401},
		{name: "wait without token", method: "GET", url: "http://127.0.0.1:15014" + api.PathWaitSync + "?revision=0", want: 401},
		{name: "resources", method: "GET", url: "http://[::1]:15014" + api.PathResources, token: good, want: 200},

		// DNS rebinding: a name of the attacker's that resolves to us.
		{name: "rebound name", method: "POST", url: "http://evil.example:15014" + api.PathApply, token: good, contentType: "application/json", body: applyBody, want: 421},
		{name: "rebound name metrics", method: "GET", url: "http://attacker.localhost.example/metrics", want: 421},
		{name: "lookalike service name", method: "GET", url: "http://istiod.istio-system.svc.evil:15014/ready", want: 421},

		// CORS: a preflight gets nothing that lets the page go on.
		{name: "preflight", method: "OPTIONS", url: "http://127.0.0.1:15014" + api.PathApply, origin: "http://evil.example", want: 405},
		{name: "cross-origin read", method: "GET", url: "http://127.0.0.1:15014" + api.PathResources, token: good, origin: "http://evil.example", want: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.url, strings.NewReader(tt.body))
			switch tt.token {
			case good:
				req.Header.Set("Authorization", "Bearer "+token)
			case wrong:
				req.Header.Set("Authorization", "Bearer "+strings.Repeat("0", len(token)))
			}
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
				req.Header.Set("Access-Control-Request-Method", "POST")
				req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("%s %s = %d %s; want %d", tt.method, tt.url, rec.Code, rec.Body.String(), tt.want)
			}
			for k := range rec.Header() {
				if strings.HasPrefix(strings.ToLower(k), "access-control-") {
					t.Errorf("answer has CORS header %s: %v", k, rec.Header()[k])
				}
			}
			if tt.want == http.StatusUnauthorized {
				body := rec.Body.String()
				if !strings.Contains(rec.Header().Get("Content-Type"), "application/json") || !strings.Contains(body, filepath.Join(dir, TokenFile)) || !strings.Contains(body, "--token") {
					t.Errorf("a 401 should be JSON and say where the token is and how to send it: %s", body)
				}
				if rec.Header().Get("WWW-Authenticate") == "" {
					t.Error("a 401 without WWW-Authenticate")
				}
			}
		})
	}
	if l, err := s.Store().List("VirtualService", ""); err != nil || len(l) != 1 {
		t.Fatalf("only the authorised apply should have stored: %d resources, %v", len(l), err)
	}
}

func TestTokenFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "api-token")
	target := filepath.Join(dir, "victim")
	if err := os.WriteFile(target, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A link planted where the token goes: the link goes, the target stays.
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	tok, err := WriteTokenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != "keep me" {
		t.Fatalf("the link's target was written: %q", b)
	}
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file %v, %v; want a regular 0600 file", fi.Mode(), err)
	}
	a, err := ReadTokenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if a.Authorize(t.Context(), tok, accessWriteConfig) != nil || a.Authorize(t.Context(), tok[:len(tok)-1], accessWriteConfig) == nil {
		t.Error("the token read back does not authorise exactly the token written")
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadTokenFile(path); err == nil {
		t.Error("a token file others can read was accepted")
	}
}
