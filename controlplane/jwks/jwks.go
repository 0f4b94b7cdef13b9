// Package jwks fetches the JSON Web Key Sets RequestAuthentications name
// by jwksUri (or by their issuer's OpenID discovery), as istiod's
// JwksResolver does (pilot/pkg/model/jwks_resolver.go, Istio 1.24): the
// control plane fetches, caches and refreshes them, and inlines them in
// the proxies' jwt_authn config (PILOT_JWT_ENABLE_REMOTE_JWKS=false, the
// default). A set it could not fetch is left out, which the translation
// turns into Istio's fake JWKS: every token fails, requests without one
// pass.
//
// Behaviour kept from Istio: the first fetch of a set happens on the push
// that needs it, once, bounded by the rule's timeout (5 s default); a
// failure there is retried in the background at once; every refresh
// interval (PILOT_JWT_PUB_KEY_REFRESH_INTERVAL, 20 min) each cached set is
// fetched again with up to 7 retries a second apart, and a changed set
// triggers a push; after a failed refresh the interval drops to 1 min and
// doubles on each further failure up to 60 min; a set unused or not
// refreshed for a week is evicted; a failed refresh keeps the last good
// set. HTTP without keep-alives; https with the system roots.
package jwks

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/meshlab/meshlab/controlplane/xds"
)

// Istio's defaults (pilot/pkg/features, jwks_resolver.go).
const (
	DefaultRefreshInterval   = 20 * time.Minute
	RefreshIntervalOnFailure = time.Minute
	refreshIntervalCeiling   = 60 * time.Minute
	EvictionDuration         = 7 * 24 * time.Hour
	retryInterval            = time.Second
	refreshRetries           = 7
	// maxBody bounds what a key server may send: Istio reads it all;
	// meshlab stops a hostile or broken one at 1 MiB.
	maxBody = 1 << 20
)

// Options tune a Resolver; zero values are Istio's.
type Options struct {
	RefreshInterval  time.Duration // default 20 min
	RefreshOnFailure time.Duration // default 1 min
	RetryInterval    time.Duration // default 1 s
	Eviction         time.Duration // default a week
	Client           *http.Client  // default: no keep-alives, TLS ≥ 1.2 with the system roots
	Logger           *slog.Logger
	// OnChange is called after a refresh changed a cached set (or
	// fetched one the push could not): the caller pushes again.
	OnChange func()
	// Fetched is told the outcome of every network fetch, retries
	// included (istiod's pilot_jwks_resolver_network_fetch_*_total).
	Fetched func(err error)
}

type entry struct {
	keys          string // "" until fetched
	lastRefreshed time.Time
	lastUsed      time.Time
	timeout       time.Duration
}

// Resolver caches key sets by (issuer, jwksUri).
type Resolver struct {
	opts    Options
	mu      sync.Mutex
	entries map[xds.JWKSKey]*entry
	retry   chan struct{}
	now     func() time.Time
}

// New returns a Resolver; Run refreshes it.
func New(opts Options) *Resolver {
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = DefaultRefreshInterval
	}
	if opts.RefreshOnFailure <= 0 {
		opts.RefreshOnFailure = RefreshIntervalOnFailure
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = retryInterval
	}
	if opts.Eviction <= 0 {
		opts.Eviction = EvictionDuration
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Transport: &http.Transport{
			Proxy:             http.ProxyFromEnvironment,
			DisableKeepAlives: true,
			TLSClientConfig:   &tls.Config{MinVersion: tls.VersionTLS12},
		}}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.OnChange == nil {
		opts.OnChange = func() {}
	}
	if opts.Fetched == nil {
		opts.Fetched = func(error) {}
	}
	return &Resolver{opts: opts, entries: map[xds.JWKSKey]*entry{}, retry: make(chan struct{}, 1), now: time.Now}
}

// Resolve returns the key sets for reqs that are known, fetching the ones
// never seen (concurrently, each within its timeout, no retry: a push
// must not wait long). What failed is absent from the result and fetched
// again in the background.
func (r *Resolver) Resolve(ctx context.Context, reqs []xds.JWKSRequest) map[xds.JWKSKey]string {
	out := map[xds.JWKSKey]string{}
	now := r.now()
	var missing []xds.JWKSRequest
	r.mu.Lock()
	for _, q := range reqs {
		if e, ok := r.entries[q.JWKSKey]; ok {
			e.lastUsed, e.timeout = now, q.Timeout
			if e.keys != "" {
				out[q.JWKSKey] = e.keys
			}
			continue
		}
		missing = append(missing, q)
	}
	r.mu.Unlock()
	if len(missing) == 0 {
		return out
	}
	keys := make([]string, len(missing))
	var wg sync.WaitGroup
	for i, q := range missing {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := r.fetch(ctx, q.JWKSKey, q.Timeout, 0)
			if err != nil {
				r.opts.Logger.Warn("JWKS not fetched yet; its tokens fail until it is (Istio's fake JWKS is inlined)", "issuer", q.Issuer, "jwksUri", q.URI, "err", err)
				return
			}
			keys[i] = k
		}()
	}
	wg.Wait()
	failed := false
	r.mu.Lock()
	for i, q := range missing {
		r.entries[q.JWKSKey] = &entry{keys: keys[i], lastRefreshed: now, lastUsed: now, timeout: q.Timeout}
		if keys[i] == "" {
			failed = true
			continue
		}
		out[q.JWKSKey] = keys[i]
	}
	r.mu.Unlock()
	if failed {
		select {
		case r.retry <- struct{}{}:
		default:
		}
	}
	return out
}

// Run refreshes the cache until ctx ends.
func (r *Resolver) Run(ctx context.Context) {
	interval := r.opts.RefreshInterval
	t := time.NewTimer(interval)
	defer t.Stop()
	lastFailed := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.retry:
			// Only what the push could not fetch; the ticker keeps its pace.
			r.refresh(ctx, true)
		case <-t.C:
			failed := r.refresh(ctx, false)
			switch {
			case failed && lastFailed:
				interval = min(interval*2, refreshIntervalCeiling)
			case failed:
				interval = r.opts.RefreshOnFailure
			default:
				interval = r.opts.RefreshInterval
			}
			lastFailed = failed
			t.Reset(interval)
		}
	}
}

// refresh fetches the cached sets again (onlyMissing: those never
// fetched), evicting stale ones; it reports whether any fetch failed.
func (r *Resolver) refresh(ctx context.Context, onlyMissing bool) bool {
	now := r.now()
	type job struct {
		key xds.JWKSKey
		e   entry
	}
	var jobs []job
	r.mu.Lock()
	for k, e := range r.entries {
		if onlyMissing && e.keys != "" {
			continue
		}
		if now.Sub(e.lastUsed) >= r.opts.Eviction || now.Sub(e.lastRefreshed) >= r.opts.Eviction {
			delete(r.entries, k)
			continue
		}
		jobs = append(jobs, job{k, *e})
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	var mu sync.Mutex
	failed, changed := false, false
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys, err := r.fetch(ctx, j.key, j.e.timeout, refreshRetries)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = true
				r.opts.Logger.Warn("refresh JWKS", "issuer", j.key.Issuer, "jwksUri", j.key.URI, "err", err)
				// Never fetched: forgotten, so that the next push tries
				// again itself (Istio deletes the entry too). A set fetched
				// before stays as it was.
				if j.e.keys == "" {
					r.mu.Lock()
					if e, ok := r.entries[j.key]; ok && e.keys == "" {
						delete(r.entries, j.key)
					}
					r.mu.Unlock()
				}
				return
			}
			r.mu.Lock()
			if e, ok := r.entries[j.key]; ok {
				if !sameJWKS(e.keys, keys) {
					changed = true
				}
				e.keys, e.lastRefreshed = keys, now
			}
			r.mu.Unlock()
		}()
	}
	wg.Wait()
	if changed {
		r.opts.OnChange()
	}
	return failed
}

// sameJWKS compares two sets as JSON values (key order and spacing do
// not count), as Istio's compareJWKSResponse.
func sameJWKS(a, b string) bool {
	if a == b {
		return true
	}
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// fetch gets a key set: from the jwksUri, or from the URI the issuer's
// OpenID discovery document names.
func (r *Resolver) fetch(ctx context.Context, k xds.JWKSKey, timeout time.Duration, retries int) (string, error) {
	uri := k.URI
	if uri == "" {
		doc, err := r.get(ctx, strings.TrimSuffix(k.Issuer, "/")+"/.well-known/openid-configuration", timeout, retries)
		if err != nil {
			return "", fmt.Errorf("discover the jwks_uri of issuer %q: %w", k.Issuer, err)
		}
		var d struct {
			JWKSURI string `json:"jwks_uri"`
		}
		if err := json.Unmarshal(doc, &d); err != nil || d.JWKSURI == "" {
			return "", fmt.Errorf("issuer %q: no jwks_uri in its OpenID configuration", k.Issuer)
		}
		uri = d.JWKSURI
	}
	b, err := r.get(ctx, uri, timeout, retries)
	if err != nil {
		return "", err
	}
	if len(b) == 0 {
		return "", fmt.Errorf("fetch %s: empty response", uri)
	}
	return string(b), nil
}

func (r *Resolver) get(ctx context.Context, uri string, timeout time.Duration, retries int) ([]byte, error) {
	b, err := r.getRetrying(ctx, uri, timeout, retries)
	r.opts.Fetched(err)
	return b, err
}

func (r *Resolver) getRetrying(ctx context.Context, uri string, timeout time.Duration, retries int) ([]byte, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("parse %q: %w", uri, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("fetch %q: URI scheme %q is not supported", uri, u.Scheme)
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	// The whole fetch, retries included, is bounded by the timeout, as
	// Istio's context.
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	once := func() ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
		if err != nil {
			return nil, err
		}
		resp, err := r.opts.Client.Do(req)
		if err != nil {
			return nil, err
		}
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
		if err != nil {
			return nil, err
		}
		if len(body) > maxBody {
			return nil, fmt.Errorf("response larger than %d bytes", maxBody)
		}
		if resp.StatusCode < 200 || resp.StatusCode >= 300 {
			msg := strconv.Quote(string(body))
			if len(msg) > 100 {
				msg = msg[:100] + "(truncated)"
			}
			return nil, fmt.Errorf("status %d, message %s", resp.StatusCode, msg)
		}
		return body, nil
	}
	var last error
	for i := 0; i <= retries; i++ {
		b, err := once()
		if err == nil {
			return b, nil
		}
		last = err
		if i == retries {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("fetch %s: %w", uri, errors.Join(last, ctx.Err()))
		case <-time.After(r.opts.RetryInterval):
		}
	}
	return nil, fmt.Errorf("fetch %s: %w", uri, last)
}
