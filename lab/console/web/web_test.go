package web

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"regexp"
	"strings"
	"testing"
)

// assetBudget bounds the bytes the console embeds (UI plus vendored
// builds): the issue asks for assets "under a few MB"; cytoscape alone is
// ~430 KB, so 1.5 MB leaves room without letting a framework slip in.
const assetBudget = 1500 * 1024

func get(t *testing.T, h http.Handler, target string, hdr map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

var (
	refAttr   = regexp.MustCompile(`(?:src|href)="([^"#:]+)"`)
	importRef = regexp.MustCompile(`(?m)(?:^import|from)\s+['"](\./[^'"]+)['"]`)
)

// TestHandlerServesIndexAndEveryReferencedAsset walks index.html's script and
// style references and the modules' relative imports, as a browser would.
func TestHandlerServesIndexAndEveryReferencedAsset(t *testing.T) {
	h := Handler()
	res := get(t, h, "/", nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /: status %d", res.StatusCode)
	}
	if got := res.Header.Get("Content-Type"); got != "text/html; charset=utf-8" {
		t.Errorf("GET /: Content-Type %q", got)
	}
	if got := res.Header.Get("Cache-Control"); got != "no-cache" {
		t.Errorf("GET /: Cache-Control %q, want no-cache", got)
	}
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("GET /: Content-Security-Policy %q does not keep scripts to the console", csp)
	}
	body, _ := io.ReadAll(res.Body)
	refs := refAttr.FindAllStringSubmatch(string(body), -1)
	if len(refs) < 4 {
		t.Fatalf("index.html references %d assets, want the stylesheet, two vendor scripts and the app module", len(refs))
	}
	wantType := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
	seen := map[string]bool{}
	queue := []string{}
	for _, r := range refs {
		queue = append(queue, r[1])
	}
	for len(queue) > 0 {
		ref := queue[0]
		queue = queue[1:]
		if seen[ref] {
			continue
		}
		seen[ref] = true
		res := get(t, h, "/"+ref, nil)
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET /%s: status %d", ref, res.StatusCode)
			continue
		}
		p := strings.SplitN(ref, "?", 2)[0]
		if want := wantType[path.Ext(p)]; res.Header.Get("Content-Type") != want {
			t.Errorf("GET /%s: Content-Type %q, want %q", ref, res.Header.Get("Content-Type"), want)
		}
		if res.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET /%s: no nosniff", ref)
		}
		cc := res.Header.Get("Cache-Control")
		switch {
		case strings.HasPrefix(ref, "vendor/"):
			if !strings.Contains(ref, "?v=") || !strings.Contains(cc, "immutable") {
				t.Errorf("vendor %s: want a ?v= hash and a long immutable cache, got Cache-Control %q", ref, cc)
			}
		default:
			if cc != "no-cache" {
				t.Errorf("%s: Cache-Control %q, want no-cache (our own files change with the binary)", ref, cc)
			}
		}
		if path.Ext(p) == ".js" && !strings.HasPrefix(p, "vendor/") {
			b, _ := io.ReadAll(res.Body)
			for _, m := range importRef.FindAllStringSubmatch(string(b), -1) {
				queue = append(queue, path.Join(path.Dir(p), m[1]))
			}
		}
	}
	for _, m := range []string{"js/graph.js", "js/wizard.js", "js/traces.js", "js/istio.js", "js/overview.js", "js/lists.js", "js/mesh.js", "js/charts.js", "js/core.js"} {
		if !seen[m] {
			t.Errorf("module %s is not reachable from index.html", m)
		}
	}
}

func TestHandlerCachingAndErrors(t *testing.T) {
	h := Handler()
	s := h.(site)
	cy := s["vendor/cytoscape/cytoscape.min.js"]
	tests := []struct {
		name, target, method string
		hdr                  map[string]string
		status               int
		cache                string
	}{
		{"index by name", "/index.html", "GET", nil, 200, "no-cache"},
		{"vendor with its hash", "/vendor/cytoscape/cytoscape.min.js?v=" + cy.hash, "GET", nil, 200, "public, max-age=31536000, immutable"},
		{"vendor with a stale hash revalidates", "/vendor/cytoscape/cytoscape.min.js?v=000000000000", "GET", nil, 200, "no-cache"},
		{"etag match", "/app.css", "GET", map[string]string{"If-None-Match": s["app.css"].etag}, 304, "no-cache"},
		{"unknown path", "/nope.js", "GET", nil, 404, ""},
		{"no escape from the tree", "/../web.go", "GET", nil, 404, ""},
		{"read-only", "/", "POST", nil, 405, ""},
		{"head", "/", "HEAD", nil, 200, "no-cache"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.target, nil)
			for k, v := range tc.hdr {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d", rec.Code, tc.status)
			}
			if tc.cache != "" && rec.Header().Get("Cache-Control") != tc.cache {
				t.Errorf("Cache-Control %q, want %q", rec.Header().Get("Cache-Control"), tc.cache)
			}
		})
	}
}

// TestVendorVersions checks vendor/VERSIONS against the files on disk, so a
// hand edit of a vendored build (or a forgotten scripts/console-vendor run)
// fails here.
func TestVendorVersions(t *testing.T) {
	f, err := os.Open("vendor/VERSIONS")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	listed := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 5 {
			t.Errorf("VERSIONS line %q: want file package version licence sha256", line)
			continue
		}
		file, pkg, version, licence, sum := fields[0], fields[1], fields[2], fields[3], fields[4]
		listed[file] = true
		b, err := os.ReadFile("vendor/" + file)
		if err != nil {
			t.Errorf("%s (%s %s): %v", file, pkg, version, err)
			continue
		}
		got := sha256.Sum256(b)
		if hex.EncodeToString(got[:]) != sum {
			t.Errorf("%s: sha256 %x, VERSIONS says %s; run scripts/console-vendor", file, got, sum)
		}
		if licence != "MIT" {
			t.Errorf("%s: licence %s, the vendored packages are MIT", file, licence)
		}
		if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(version) {
			t.Errorf("%s: version %q is not a release", file, version)
		}
	}
	if !strings.HasPrefix(mustVersion(t, "cytoscape/cytoscape.min.js"), "3.35.") {
		t.Errorf("cytoscape is not 3.35.x")
	}
	// Every vendored file is listed, and every package has its licence.
	err = fs.WalkDir(os.DirFS("vendor"), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || p == "VERSIONS" {
			return err
		}
		if !listed[p] {
			t.Errorf("vendor/%s is not in VERSIONS", p)
		}
		if strings.HasSuffix(p, ".js") && !listed[path.Dir(p)+"/LICENSE"] {
			t.Errorf("vendor/%s has no LICENSE next to it", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func mustVersion(t *testing.T, file string) string {
	b, err := os.ReadFile("vendor/VERSIONS")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 5 && f[0] == file {
			return f[2]
		}
	}
	return ""
}

func TestHandlerGzip(t *testing.T) {
	h := Handler()
	tests := []struct {
		name, accept string
		gzipped      bool
	}{
		{"browser", "gzip, deflate, br", true},
		{"no encoding", "", false},
		{"gzip refused", "gzip;q=0, br", false},
		{"only br", "br", false},
	}
	want, err := files.ReadFile("vendor/cytoscape/cytoscape.min.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := get(t, h, "/vendor/cytoscape/cytoscape.min.js", map[string]string{"Accept-Encoding": tc.accept})
			if res.Header.Get("Vary") != "Accept-Encoding" {
				t.Errorf("Vary %q", res.Header.Get("Vary"))
			}
			var r io.Reader = res.Body
			if gz := res.Header.Get("Content-Encoding") == "gzip"; gz != tc.gzipped {
				t.Fatalf("Content-Encoding %q, want gzip %v", res.Header.Get("Content-Encoding"), tc.gzipped)
			} else if gz {
				zr, err := gzip.NewReader(res.Body)
				if err != nil {
					t.Fatal(err)
				}
				r = zr
			}
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("body differs from the vendored file (%d bytes, want %d)", len(got), len(want))
			}
		})
	}
}

func TestAssetBudget(t *testing.T) {
	total := 0
	for p, a := range Handler().(site) {
		if strings.HasSuffix(p, ".map") {
			t.Errorf("%s: source maps are not embedded", p)
		}
		total += len(a.body)
	}
	gz := 0
	for _, a := range Handler().(site) {
		if a.gz != nil {
			gz += len(a.gz)
		} else {
			gz += len(a.body)
		}
	}
	t.Logf("embedded UI: %d bytes, %d bytes as served gzipped", total, gz)
	if total > assetBudget {
		t.Errorf("embedded UI is %d bytes, budget %d", total, assetBudget)
	}
}

// BenchmarkHandlerIndex serves index.html as a browser asks for it.
func BenchmarkHandlerIndex(b *testing.B) {
	h := Handler()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
}

// BenchmarkLoad is the start-up cost of preparing the assets (hashing and
// gzip), paid once per process.
func BenchmarkLoad(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := load(); err != nil {
			b.Fatal(err)
		}
	}
}
