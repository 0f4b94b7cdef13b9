package console

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshlab/meshlab/controlplane"
	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/controlplane/inject"
	"github.com/meshlab/meshlab/controlplane/registry"
	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/zipkin"
)

// testLab is a real control plane and trace store on loopback, with a
// bookinfo-like mesh registered and configured.
type testLab struct {
	cp        *api.Client
	cpURL     string
	tokenFile string
	xdsAddr   string
	zipkin    *zipkin.Store
	zipkinURL string
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// fixtureConfig is the mesh's Istio config: a DestinationRule with a
// subset that selects no pod (KIA0203, IST0173) and a VirtualService
// routing to a subset no DestinationRule defines (IST0101).
const fixtureConfig = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v9
    labels: {version: v9}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v4}
`

func startLab(t testing.TB) *testLab {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cpDir := t.TempDir()
	l := &testLab{xdsAddr: freeAddr(t)}
	apiAddr := freeAddr(t)
	s, err := controlplane.New(controlplane.Options{StateDir: cpDir, XDSAddr: l.xdsAddr, HTTPAddr: apiAddr,
		Version: "1.0-test", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("control plane Serve: %v", err)
		}
		_ = s.Close()
	})
	token, err := lab.ReadAPIToken(cpDir)
	if err != nil {
		t.Fatal(err)
	}
	l.tokenFile = filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(l.tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l.cpURL = "http://" + apiAddr
	l.cp = api.NewClient(l.cpURL)
	l.cp.Token = token
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	for {
		if _, err := l.cp.Version(wctx); err == nil {
			break
		}
		select {
		case <-wctx.Done():
			t.Fatal("the control plane did not answer within 20s")
		case <-time.After(20 * time.Millisecond):
		}
	}
	l.register(t)
	l.zipkin = zipkin.New(zipkin.Options{})
	zs := httptest.NewServer(zipkin.Handler(l.zipkin, nil))
	t.Cleanup(zs.Close)
	l.zipkinURL = zs.URL
	return l
}

// register puts bookinfo's services and pods into the registry and its
// config into the store.
func (l *testLab) register(t testing.TB) {
	t.Helper()
	ctx := t.Context()
	svc := func(name string) {
		if _, err := l.cp.PutService(ctx, registry.Service{Name: name, Namespace: "bookinfo", Selector: map[string]string{"app": name},
			Ports: []registry.Port{{Name: "http", Port: 9080}}}); err != nil {
			t.Fatal(err)
		}
	}
	ip := 10
	pod := func(app, version string, sidecar bool) {
		ip++
		hash := "5d8f7b9c4"
		ann := map[string]string{}
		containers := []registry.Container{{Name: app}}
		if sidecar {
			ann[inject.StatusAnnotation] = `{"containers":["istio-proxy"]}`
			containers = append(containers, registry.Container{Name: "istio-proxy"})
		}
		w := registry.Workload{Name: app + "-" + version + "-" + hash + "-x" + version, Namespace: "bookinfo",
			IP: netip.AddrFrom4([4]byte{198, 18, 0, byte(ip)}), Ready: true, ServiceAccount: "bookinfo-" + app,
			Labels: map[string]string{"app": app, "version": version, "pod-template-hash": hash},
			Pod: &registry.Pod{Annotations: ann, Phase: "Running", ControllerKind: "ReplicaSet",
				ControllerName: app + "-" + version + "-" + hash, Containers: containers}}
		if err := l.cp.PutWorkload(ctx, w); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []string{"productpage", "reviews", "ratings", "details"} {
		svc(s)
	}
	pod("productpage", "v1", true)
	pod("details", "v1", false)
	for _, v := range []string{"v1", "v2", "v3"} {
		pod("reviews", v, true)
	}
	pod("ratings", "v1", true)
	docs, err := api.Documents("fixture.yaml", []byte(fixtureConfig), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.cp.Apply(ctx, api.ApplyRequest{Documents: docs}); err != nil {
		t.Fatal(err)
	}
}

// console serves a console over the lab on an httptest server.
func (l *testLab) console(t testing.TB, o Options) *httptest.Server {
	t.Helper()
	o.ControlPlaneURL, o.TokenFile = l.cpURL, l.tokenFile
	if o.TracingURL == "" {
		o.TracingURL = l.zipkinURL
	}
	h, err := NewHandler(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// call makes one request and returns the status and body.
func call(t testing.TB, method, url string, body io.Reader, hdr map[string]string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b, resp.Header
}

// getJSONT fetches url and decodes a 200 answer into out.
func getJSONT(t testing.TB, url string, out any) {
	t.Helper()
	code, body, _ := call(t, http.MethodGet, url, nil, nil)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		t.Fatalf("GET %s: %v\n%s", url, err, body)
	}
}

func errorText(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil {
		return string(body)
	}
	return e.Error
}

func mustContain(t testing.TB, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s: %q lacks %q", what, got, w)
		}
	}
}
