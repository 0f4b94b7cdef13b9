package controlplane

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/meshlab/meshlab/controlplane/csr"
)

// Access is what one API call does, in the terms a Kubernetes authorizer
// decides on: a verb on a resource of an API group. The static token of the
// local runtime allows every Access; the kube authenticator asks the cluster
// whether the caller may do the same to the Kubernetes object it stands for.
type Access struct {
	Verb     string // get, list, update, delete
	Group    string // "" is the core group
	Resource string // plural
}

// The calls of the API, by what they touch. Istio's config kinds live in two
// groups; one check on VirtualServices stands for all of them, as whoever may
// change routing may change the rest in practice (the API applies batches
// that mix kinds, and is for the lab, not for multi-tenant clusters).
var (
	accessWriteConfig   = Access{Verb: "update", Group: "networking.istio.io", Resource: "virtualservices"}
	accessReadConfig    = Access{Verb: "list", Group: "networking.istio.io", Resource: "virtualservices"}
	accessWriteRegistry = Access{Verb: "update", Group: "", Resource: "services"}
	accessReadRegistry  = Access{Verb: "list", Group: "", Resource: "services"}
	accessWriteSecrets  = Access{Verb: "update", Group: "", Resource: "secrets"}
	accessReadSecrets   = Access{Verb: "list", Group: "", Resource: "secrets"}
)

// Authenticator decides whether the bearer token of a request may make a
// call. It answers nil, or an error wrapping ErrUnauthenticated (no or a bad
// credential: 401) or ErrForbidden (a known caller that may not: 403).
type Authenticator interface {
	Authorize(ctx context.Context, token string, a Access) error
	// Hint says how to get a credential; it ends every 401.
	Hint() string
}

// Errors of an Authenticator. A refused credential is one error for the API
// and the certificate service, whose token checks the API shares.
var (
	ErrUnauthenticated = csr.ErrUnauthenticated
	ErrForbidden       = errors.New("forbidden")
)

// TokenAuth is the local runtime's credential: one random token, which the
// lab writes 0600 into its state directory and the CLI sends.
type TokenAuth struct {
	token []byte
	file  string // where the token came from, for the hint
}

// MinTokenLen is the shortest token TokenAuth accepts: 128 bits in hex.
const MinTokenLen = 32

// NewTokenAuth checks a token for length; file is only named in hints.
func NewTokenAuth(token, file string) (*TokenAuth, error) {
	token = strings.TrimSpace(token)
	if len(token) < MinTokenLen {
		return nil, fmt.Errorf("API token: want at least %d characters, got %d", MinTokenLen, len(token))
	}
	return &TokenAuth{token: []byte(token), file: file}, nil
}

// ReadTokenFile reads the API token of a token file, refusing one that
// other users may read (the token is the key to the whole mesh).
func ReadTokenFile(path string) (*TokenAuth, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("read API token file: %w", err)
	}
	defer func() { _ = f.Close() }() // read only: nothing to lose
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read API token file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("read API token file %s: want a regular file only its owner can read (0600), found %v", path, fi.Mode())
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return nil, fmt.Errorf("read API token file %s: %w", path, err)
	}
	return NewTokenAuth(string(b), path)
}

// Authorize compares in constant time, so the time of a refusal does not
// tell how much of a guess was right.
func (a *TokenAuth) Authorize(_ context.Context, token string, _ Access) error {
	if token == "" {
		return fmt.Errorf("%w: no bearer token", ErrUnauthenticated)
	}
	if subtle.ConstantTimeCompare([]byte(token), a.token) != 1 {
		return fmt.Errorf("%w: the bearer token is not this control plane's", ErrUnauthenticated)
	}
	return nil
}

// Hint says where the lab keeps the token.
func (a *TokenAuth) Hint() string {
	where := "the token file the control plane was started with (--api-token-file)"
	if a.file != "" {
		where = a.file
	}
	return "send `Authorization: Bearer <token>` with the token in " + where +
		"; the meshlab CLI does so for the lab in its state directory when run as the user that ran `meshlab up`, else pass --token or MESHLAB_TOKEN"
}

// apiHostNames are the names the API is served under: loopback, and the
// istiod Service as pods and the cluster name it. Any IP literal is also
// accepted: DNS rebinding needs a name the attacker controls, and an IP
// in Host means the page's own origin is that address.
var apiHostNames = map[string]bool{
	"localhost":                             true,
	"istiod":                                true,
	"istiod.istio-system":                   true,
	"istiod.istio-system.svc":               true,
	"istiod.istio-system.svc.cluster.local": true,
}

// hostAllowed reports whether a Host header (with or without port) names
// this API.
func hostAllowed(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "" {
		return false
	}
	if net.ParseIP(host) != nil {
		return true
	}
	return apiHostNames[host]
}

// protect is what every request to the API passes first: the Host must name
// the API (else 421: a browser that a rebinding DNS name points at us gets
// nothing), and no CORS header is ever sent, so a preflight fails and a
// page of another origin can read nothing.
func protect(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hostAllowed(r.Host) {
			writeError(w, http.StatusMisdirectedRequest, fmt.Sprintf("Host %q is not a name of this API; use its IP address, localhost or the istiod Service's name", r.Host))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// guard wraps one call of the API: the caller's bearer token must allow
// Access, and a body must be JSON (a cross-site form or a text/plain POST,
// which a browser sends without preflight, is refused before it is read).
func (s *Server) guard(a Access, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token, _ := bearer(r)
		if err := s.auth.Authorize(r.Context(), token, a); err != nil {
			switch {
			case errors.Is(err, ErrForbidden):
				writeError(w, http.StatusForbidden, err.Error())
			case errors.Is(err, ErrUnauthenticated):
				w.Header().Set("WWW-Authenticate", `Bearer realm="meshlab"`)
				writeError(w, http.StatusUnauthorized, "this call needs a credential: "+err.Error(), s.auth.Hint())
			default:
				writeError(w, http.StatusServiceUnavailable, "check the credential: "+err.Error())
			}
			return
		}
		if r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch {
			mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if err != nil || mt != "application/json" {
				writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q: the API takes application/json only", r.Header.Get("Content-Type")))
				return
			}
		}
		h(w, r)
	}
}

// bearer is the token of an `Authorization: Bearer` header.
func bearer(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// TokenFile is the token a control plane started without one makes in its
// state directory.
const TokenFile = "api-token"

// authenticator picks the Authenticator of opts (see Options.Auth).
func authenticator(opts Options) (Authenticator, error) {
	switch {
	case opts.Auth != nil:
		return opts.Auth, nil
	case opts.Kube != nil:
		return NewKubeAuth(opts.Kube)
	case opts.APITokenFile != "":
		return ReadTokenFile(opts.APITokenFile)
	}
	path := filepath.Join(opts.StateDir, TokenFile)
	if a, err := ReadTokenFile(path); err == nil {
		return a, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if _, err := WriteTokenFile(path); err != nil {
		return nil, err
	}
	opts.Logger.Info("API token made; clients send it as a bearer token", "file", path)
	return ReadTokenFile(path)
}

// WriteTokenFile makes a new random API token (256 bits, hex) and writes it
// to path, readable by its owner only. Whatever was at path goes first
// (unlinking a symlink removes the link, not its target), and the file is
// created exclusively without following links, so a link planted between
// the two cannot redirect the write.
func WriteTokenFile(path string) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make API token: %w", err)
	}
	token := hex.EncodeToString(b)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("replace API token file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return "", fmt.Errorf("write API token file: %w", err)
	}
	if _, err := f.WriteString(token + "\n"); err != nil {
		_ = f.Close() // the write error is the one to report
		return "", fmt.Errorf("write API token file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("write API token file %s: %w", path, err)
	}
	return token, nil
}
