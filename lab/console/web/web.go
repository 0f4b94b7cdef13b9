// Package web owns the console's browser UI: a single-page application of
// plain HTML, CSS and JavaScript modules (no build step) plus the vendored
// npm builds of cytoscape and cytoscape-dagre, embedded in the binary and
// served by Handler. The API it calls lives in package console; every fetch
// the UI makes is relative to the page so the console works under any web
// root (/kiali/, /dashboards/kiali/).
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"
)

//go:embed ui vendor
var files embed.FS

// asset is one servable file, prepared once: the UI is immutable for the
// life of the binary, so hashing and Content-Type detection happen at start.
type asset struct {
	body  []byte
	gz    []byte // gzip of body, nil when it would not save bytes
	ctype string
	etag  string
	hash  string // first 12 hex digits of the sha256, used as ?v= on vendor URLs
}

// compress gzips text assets once at start: cytoscape shrinks to a third,
// which is what makes the first load quick through a gateway.
func compress(b []byte) []byte {
	if len(b) < 1024 {
		return nil
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil
	}
	if _, err := zw.Write(b); err != nil {
		return nil
	}
	if err := zw.Close(); err != nil || buf.Len() >= len(b) {
		return nil
	}
	return buf.Bytes()
}

// site maps URL paths (no leading slash; "" = index.html) to assets.
type site map[string]*asset

var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".json": "application/json",
}

func contentType(name string) string {
	if t, ok := contentTypes[path.Ext(name)]; ok {
		return t
	}
	return "text/plain; charset=utf-8" // LICENSE, VERSIONS
}

// contentSecurityPolicy keeps the page to its own scripts and API: the UI
// shows what others wrote (YAML, logs, span tags), so even a slip into
// markup could not load or run anything. Styles stay inline-capable because
// cytoscape and the charts position elements with style attributes.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'self'; form-action 'self'; object-src 'none'"

// vendorRef matches the vendor URLs index.html names, so each gets its
// content hash appended and can be cached for a year.
var vendorRef = regexp.MustCompile(`(src|href)="(vendor/[^"?]+)"`)

// loadOnce shares the prepared assets between handlers: they never change,
// and gzip at best compression is the costly part of start-up.
var loadOnce = sync.OnceValues(load)

func load() (site, error) {
	s := site{}
	add := func(urlPath, name string, body []byte) {
		sum := sha256.Sum256(body)
		h := hex.EncodeToString(sum[:])
		s[urlPath] = &asset{body: body, gz: compress(body), ctype: contentType(name), etag: `"` + h[:20] + `"`, hash: h[:12]}
	}
	walk := func(root, prefix string) error {
		return fs.WalkDir(files, root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := files.ReadFile(p)
			if err != nil {
				return err
			}
			u := prefix + strings.TrimPrefix(p, root+"/")
			add(u, u, b)
			return nil
		})
	}
	if err := walk("ui", ""); err != nil {
		return nil, err
	}
	if err := walk("vendor", "vendor/"); err != nil {
		return nil, err
	}
	idx, ok := s["index.html"]
	if !ok {
		return nil, fs.ErrNotExist
	}
	body := vendorRef.ReplaceAllFunc(idx.body, func(m []byte) []byte {
		sub := vendorRef.FindSubmatch(m)
		a, ok := s[string(sub[2])]
		if !ok {
			return m
		}
		return []byte(string(sub[1]) + `="` + string(sub[2]) + "?v=" + a.hash + `"`)
	})
	add("", "index.html", body)
	delete(s, "index.html")
	return s, nil
}

// Handler serves the SPA: index.html at "/" (never cached, so a new binary's
// UI is picked up at once), the UI's own modules and styles revalidated by
// ETag, and vendor files requested with their content hash (?v=) cached for
// a year. Mount it under the web root with http.StripPrefix.
func Handler() http.Handler {
	s, err := loadOnce()
	if err != nil {
		// The files are embedded at build time; a missing index.html is a
		// build defect, not a runtime condition.
		panic("console web assets: " + err.Error())
	}
	return s
}

func (s site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed: the console's UI files are read-only", http.StatusMethodNotAllowed)
		return
	}
	p := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	if p == "index.html" {
		p = ""
	}
	a, ok := s[p]
	if !ok {
		http.NotFound(w, r)
		return
	}
	body, etag := a.body, a.etag
	h := w.Header()
	if a.gz != nil {
		h.Set("Vary", "Accept-Encoding")
		if acceptsGzip(r) {
			body, etag = a.gz, strings.TrimSuffix(a.etag, `"`)+`-gz"`
			h.Set("Content-Encoding", "gzip")
		}
	}
	h.Set("Content-Type", a.ctype)
	h.Set("X-Content-Type-Options", "nosniff")
	if p == "" {
		h.Set("Content-Security-Policy", contentSecurityPolicy)
	}
	h.Set("ETag", etag)
	switch {
	case strings.HasPrefix(p, "vendor/") && r.URL.Query().Get("v") == a.hash:
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	default:
		h.Set("Cache-Control", "no-cache")
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" && inm == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && strings.ReplaceAll(strings.TrimSpace(q), " ", "") != "q=0" {
			return true
		}
	}
	return false
}
