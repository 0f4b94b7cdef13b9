package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/lab/console/graph"
	"github.com/meshlab/meshlab/lab/console/wizard"
)

func TestWebRootAndHealthz(t *testing.T) {
	l := startLab(t)
	for _, tc := range []struct {
		root, path string
		code       int
		location   string
	}{
		{"", "/", http.StatusFound, "/kiali/"},
		{"", "/kiali", http.StatusFound, "/kiali/"},
		{"", "/kiali/healthz", http.StatusOK, ""},
		{"/dashboards/kiali/", "/", http.StatusFound, "/dashboards/kiali/"},
		{"/dashboards/kiali", "/dashboards/kiali", http.StatusFound, "/dashboards/kiali/"},
		{"/dashboards/kiali", "/dashboards/kiali/healthz", http.StatusOK, ""},
		{"/dashboards/kiali", "/kiali/healthz", http.StatusNotFound, ""},
		{"/", "/healthz", http.StatusOK, ""},
	} {
		t.Run(tc.root+tc.path, func(t *testing.T) {
			srv := l.console(t, Options{WebRoot: tc.root})
			code, body, hdr := call(t, http.MethodGet, srv.URL+tc.path, nil, nil)
			if code != tc.code {
				t.Fatalf("GET %s: %d %s, want %d", tc.path, code, body, tc.code)
			}
			if got := hdr.Get("Location"); got != tc.location {
				t.Errorf("Location %q, want %q", got, tc.location)
			}
			if tc.code == http.StatusOK && string(body) != "ok" {
				t.Errorf("healthz says %q", body)
			}
		})
	}
}

// The UI's files are served under the web root, index.html at its "/".
func TestWebUIUnderRoot(t *testing.T) {
	l := startLab(t)
	for _, root := range []string{"/kiali", "/dashboards/kiali"} {
		srv := l.console(t, Options{WebRoot: root})
		code, body, hdr := call(t, http.MethodGet, srv.URL+root+"/", nil, nil)
		if code != http.StatusOK || !strings.Contains(strings.ToLower(string(body)), "<html") {
			t.Errorf("GET %s/: %d %.200s", root, code, body)
		}
		if hdr.Get("X-Frame-Options") != "DENY" {
			t.Errorf("GET %s/: X-Frame-Options %q", root, hdr.Get("X-Frame-Options"))
		}
	}
}

func TestNamespacesAndLists(t *testing.T) {
	l := startLab(t)
	srv := l.console(t, Options{})
	var nss []namespaceInfo
	getJSONT(t, srv.URL+"/kiali/api/namespaces", &nss)
	if len(nss) != 1 || nss[0].Name != "bookinfo" || !nss[0].Injected {
		t.Fatalf("namespaces = %+v, want bookinfo, injected", nss)
	}

	for _, tc := range []struct {
		kind    string
		name    string
		sidecar bool
		want    listItem
	}{
		{"workloads", "reviews-v2", true, listItem{Versions: []string{"v2"}, Services: []string{"reviews"}}},
		{"workloads", "details-v1", false, listItem{Versions: []string{"v1"}, Services: []string{"details"}}},
		{"apps", "reviews", true, listItem{Versions: []string{"v1", "v2", "v3"}, Workloads: []string{"reviews-v1", "reviews-v2", "reviews-v3"}}},
		{"services", "reviews", true, listItem{Workloads: []string{"reviews-v1", "reviews-v2", "reviews-v3"}}},
		{"services", "details", false, listItem{Workloads: []string{"details-v1"}}},
	} {
		t.Run(tc.kind+"/"+tc.name, func(t *testing.T) {
			var list struct{ Items []listItem }
			getJSONT(t, srv.URL+"/kiali/api/namespaces/bookinfo/"+tc.kind, &list)
			var it *listItem
			for i := range list.Items {
				if list.Items[i].Name == tc.name {
					it = &list.Items[i]
				}
			}
			if it == nil {
				t.Fatalf("%s has no %s: %+v", tc.kind, tc.name, list.Items)
			}
			if it.IstioSidecar != tc.sidecar {
				t.Errorf("istioSidecar = %v, want %v", it.IstioSidecar, tc.sidecar)
			}
			if tc.want.Versions != nil && fmt.Sprint(it.Versions) != fmt.Sprint(tc.want.Versions) {
				t.Errorf("versions = %v, want %v", it.Versions, tc.want.Versions)
			}
			if tc.want.Workloads != nil && fmt.Sprint(it.Workloads) != fmt.Sprint(tc.want.Workloads) {
				t.Errorf("workloads = %v, want %v", it.Workloads, tc.want.Workloads)
			}
			if tc.want.Services != nil && fmt.Sprint(it.Services) != fmt.Sprint(tc.want.Services) {
				t.Errorf("services = %v, want %v", it.Services, tc.want.Services)
			}

			var d struct {
				Pods        []podInfo
				IstioConfig []configRef `json:"istioConfig"`
			}
			getJSONT(t, srv.URL+"/kiali/api/namespaces/bookinfo/"+tc.kind+"/"+tc.name, &d)
			if len(d.Pods) == 0 {
				t.Errorf("details have no pods")
			}
			for _, p := range d.Pods {
				if p.IstioSidecar != tc.sidecar || p.IP == "" || p.Status != "Running" {
					t.Errorf("pod %+v: want sidecar %v, an IP, Running", p, tc.sidecar)
				}
			}
			if strings.Contains(tc.name, "reviews") {
				got := fmt.Sprint(d.IstioConfig)
				mustContain(t, "istioConfig", got, "DestinationRule reviews bookinfo", "VirtualService reviews bookinfo")
			}
		})
	}
	code, body, _ := call(t, http.MethodGet, srv.URL+"/kiali/api/namespaces/bookinfo/workloads/nope", nil, nil)
	if code != http.StatusNotFound {
		t.Errorf("unknown workload: %d %s, want 404", code, body)
	}
}

func TestIstioConfigValidations(t *testing.T) {
	l := startLab(t)
	srv := l.console(t, Options{})
	var cfg struct {
		Items   []configItem
		Summary map[string]int
	}
	getJSONT(t, srv.URL+"/kiali/api/istio/config?namespaces=bookinfo&validate=true", &cfg)
	byKey := map[string]configItem{}
	for _, it := range cfg.Items {
		byKey[it.Kind+"/"+it.Namespace+"/"+it.Name] = it
	}
	vs, ok := byKey["VirtualService/bookinfo/reviews"]
	if !ok {
		t.Fatalf("no VirtualService reviews in %v", cfg.Items)
	}
	mustContain(t, "VirtualService yaml", vs.YAML, "kind: VirtualService", "subset: v4")
	var codes []string
	for _, a := range vs.Validation.Analyzer {
		codes = append(codes, a.Code+"@"+a.Field)
	}
	mustContain(t, "VirtualService analyzer", strings.Join(codes, " "), "IST0101@spec.http[0].route[0].destination")
	if vs.Validation.Valid {
		t.Errorf("a VirtualService with an IST0101 error is valid")
	}
	if cfg.Summary["errors"] == 0 {
		t.Errorf("summary = %v, want errors", cfg.Summary)
	}
	code, body, _ := call(t, http.MethodGet, srv.URL+"/kiali/api/istio/config?validate=maybe", nil, nil)
	if code != http.StatusBadRequest || !strings.Contains(errorText(body), "validate") {
		t.Errorf("validate=maybe: %d %s", code, body)
	}

	var one configItem
	getJSONT(t, srv.URL+"/kiali/api/namespaces/bookinfo/istio/destinationrules/reviews", &one)
	if one.Kind != "DestinationRule" || one.Validation == nil {
		t.Fatalf("one object: %+v", one)
	}
	t.Run("KIA", func(t *testing.T) {
		var kia []string
		for _, c := range one.Validation.Checks {
			kia = append(kia, c.Code)
		}
		mustContain(t, "DestinationRule checks", strings.Join(kia, " "), "KIA0203")
	})
}

func TestPutIstioObject(t *testing.T) {
	l := startLab(t)
	srv := l.console(t, Options{})
	path := srv.URL + "/kiali/api/namespaces/bookinfo/istio/virtualservices/reviews"
	before, err := l.cp.List(t.Context(), "VirtualService", "bookinfo", "reviews")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, body string
		code       int
		wants      []string
	}{
		{"bad weight", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: lots
`, http.StatusBadRequest, []string{"console", "spec.http[0].route[0].weight"}},
		{"unknown field", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  htp: []
`, http.StatusBadRequest, []string{"spec.htp"}},
		{"not YAML", "kind: [", http.StatusBadRequest, []string{"console"}},
		{"other name", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: bookinfo}
spec: {hosts: [ratings]}
`, http.StatusBadRequest, []string{"VirtualService/bookinfo/ratings", "path"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := call(t, http.MethodPut, path, strings.NewReader(tc.body), nil)
			if code != tc.code {
				t.Fatalf("PUT: %d %s, want %d", code, body, tc.code)
			}
			mustContain(t, "error", errorText(body), tc.wants...)
			after, err := l.cp.List(t.Context(), "", "bookinfo", "")
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range after.Items {
				r, err := config.Unmarshal(it)
				if err != nil {
					t.Fatal(err)
				}
				if r.Name == "ratings" {
					t.Errorf("a refused PUT stored %s", r.Key())
				}
			}
			now, err := l.cp.List(t.Context(), "VirtualService", "bookinfo", "reviews")
			if err != nil {
				t.Fatal(err)
			}
			if string(now.Items[0]) != string(before.Items[0]) {
				t.Errorf("a refused PUT changed the VirtualService:\n%s\nwas\n%s", now.Items[0], before.Items[0])
			}
		})
	}
	good := `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
`
	code, body, _ := call(t, http.MethodPut, path, strings.NewReader(good), nil)
	if code != http.StatusOK {
		t.Fatalf("PUT a valid VirtualService: %d %s", code, body)
	}
	mustContain(t, "PUT answer", string(body), `"key":"VirtualService/bookinfo/reviews"`, `"op":"configured"`)
	var one configItem
	getJSONT(t, path, &one)
	mustContain(t, "stored yaml", one.YAML, "subset: v1")

	code, body, _ = call(t, http.MethodDelete, path, nil, nil)
	if code != http.StatusOK {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	if code, _, _ := call(t, http.MethodGet, path, nil, nil); code != http.StatusNotFound {
		t.Errorf("GET after DELETE: %d, want 404", code)
	}
}

func TestApplyRefusesAsApply(t *testing.T) {
	l := startLab(t)
	srv := l.console(t, Options{})
	for _, tc := range []struct {
		name, body string
		wants      []string
	}{
		{"not JSON", `yaml: x`, []string{"body"}},
		{"empty", `{"yaml": ""}`, []string{"yaml"}},
		{"bad document", `{"yaml": "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: x, namespace: bookinfo}\nspec: {host: 7}\n"}`,
			[]string{"console", "document 1", "spec.host"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := call(t, http.MethodPost, srv.URL+"/kiali/api/meshlab/apply", strings.NewReader(tc.body), nil)
			if code != http.StatusBadRequest {
				t.Fatalf("%d %s, want 400", code, body)
			}
			mustContain(t, "error", errorText(body), tc.wants...)
		})
	}
}

// The wizard's objects go through generate, apply and delete, and the
// control plane has them in between and not after; another service's
// group stays.
func TestWizardRoundTrip(t *testing.T) {
	l := startLab(t)
	srv := l.console(t, Options{})
	labelled := func() []string {
		list, err := l.cp.List(t.Context(), "all", "", "")
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, it := range list.Items {
			r, err := config.Unmarshal(it)
			if err != nil {
				t.Fatal(err)
			}
			if r.Labels[wizard.Label] != "" {
				keys = append(keys, r.Key())
			}
		}
		return keys
	}
	generate := func(t *testing.T, req string) []objectRef {
		t.Helper()
		var gen struct {
			YAML    string      `json:"yaml"`
			Objects []objectRef `json:"objects"`
		}
		code, body, _ := call(t, http.MethodPost, srv.URL+"/kiali/api/meshlab/wizard", strings.NewReader(req), nil)
		if code != http.StatusOK {
			t.Fatalf("wizard: %d %s", code, body)
		}
		if err := json.Unmarshal(body, &gen); err != nil {
			t.Fatal(err)
		}
		mustContain(t, "wizard yaml", gen.YAML, "kiali_wizard: ")
		ab, _ := json.Marshal(map[string]string{"yaml": gen.YAML})
		code, body, _ = call(t, http.MethodPost, srv.URL+"/kiali/api/meshlab/apply", strings.NewReader(string(ab)), nil)
		if code != http.StatusOK {
			t.Fatalf("apply: %d %s\n%s", code, body, gen.YAML)
		}
		return gen.Objects
	}
	keys := func(objs []objectRef) []string {
		var out []string
		for _, o := range objs {
			out = append(out, o.Kind+"/"+o.Namespace+"/"+o.Name)
		}
		return out
	}
	// ratings' group must outlive every deletion of reviews'.
	ratings := keys(generate(t, `{"action":"request_routing","namespace":"bookinfo","service":"ratings","versions":["v1"]}`))
	for _, tc := range []struct {
		name, req string
		kinds     []string
	}{
		{"traffic shifting 0/50/50", `{"action":"traffic_shifting","namespace":"bookinfo","service":"reviews","apiVersion":"v1","versions":["v1","v2","v3"],
			"weights":[{"version":"v1","weight":0},{"version":"v2","weight":50},{"version":"v3","weight":50}]}`, []string{"DestinationRule", "VirtualService"}},
		{"fault injection with a gateway and STRICT mTLS", `{"action":"fault_injection","namespace":"bookinfo","service":"reviews","apiVersion":"v1beta1","versions":["v1","v2","v3"],
			"advanced":{"gateway":{"port":80,"hosts":["*"]},"peerAuthentication":{"mode":"STRICT"}}}`, []string{"DestinationRule", "VirtualService", "Gateway", "PeerAuthentication"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := generate(t, tc.req)
			var kinds []string
			for _, o := range objs {
				kinds = append(kinds, o.Kind)
			}
			if strings.Join(kinds, ",") != strings.Join(tc.kinds, ",") {
				t.Errorf("objects %v, want kinds %v", objs, tc.kinds)
			}
			stored := strings.Join(labelled(), " ")
			mustContain(t, "stored after apply", stored, keys(objs)...)
			code, body, _ := call(t, http.MethodDelete, srv.URL+"/kiali/api/namespaces/bookinfo/services/reviews/wizard", nil, nil)
			if code != http.StatusOK {
				t.Fatalf("wizard delete: %d %s", code, body)
			}
			left := strings.Join(labelled(), " ")
			for _, k := range keys(objs) {
				if strings.Contains(left, k) {
					t.Errorf("after the wizard delete, still stored: %s", k)
				}
			}
			mustContain(t, "ratings' group after deleting reviews'", left, ratings...)
		})
	}
	code, _, _ := call(t, http.MethodDelete, srv.URL+"/kiali/api/namespaces/bookinfo/services/reviews/wizard", nil, nil)
	if code != http.StatusNotFound {
		t.Errorf("wizard delete with nothing left: %d, want 404", code)
	}
	// Bad input for the wizard names the field.
	bad := `{"action":"traffic_shifting","namespace":"bookinfo","service":"reviews","versions":["v1","v2"],
		"weights":[{"version":"v1","weight":10},{"version":"v2","weight":10}]}`
	code, body, _ := call(t, http.MethodPost, srv.URL+"/kiali/api/meshlab/wizard", strings.NewReader(bad), nil)
	if code != http.StatusBadRequest || !strings.Contains(errorText(body), "weights") {
		t.Errorf("weights summing to 20: %d %s, want 400 naming weights", code, body)
	}
	code, body, _ = call(t, http.MethodPost, srv.URL+"/kiali/api/meshlab/wizard", strings.NewReader(`{"action":"x","colour":"red"}`), nil)
	if code != http.StatusBadRequest || !strings.Contains(errorText(body), "colour") {
		t.Errorf("an unknown field: %d %s, want 400 naming it", code, body)
	}
}

func TestTokenStrategy(t *testing.T) {
	l := startLab(t)
	srv := l.console(t, Options{AuthStrategy: "token"})
	token, err := readToken(l.tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	base := srv.URL + "/kiali/api/"
	form := func(tok string) *strings.Reader { return strings.NewReader(url.Values{"token": {tok}}.Encode()) }
	formHdr := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}

	// Log in, and keep the cookie the console sets.
	code, body, hdr := call(t, http.MethodPost, base+"authenticate", form(token), formHdr)
	if code != http.StatusOK {
		t.Fatalf("authenticate: %d %s", code, body)
	}
	setCookie := hdr.Get("Set-Cookie")
	mustContain(t, "Set-Cookie", setCookie, cookieName+"=", "HttpOnly", "SameSite=Strict", "Path=/kiali/")
	cookie := strings.SplitN(setCookie, ";", 2)[0]

	apply := `{"yaml":"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ratings, namespace: bookinfo}\nspec: {host: ratings}\n"}`
	for _, tc := range []struct {
		name, method, path, body string
		hdr                      map[string]string
		code                     int
	}{
		{"no token", "GET", "namespaces", "", nil, http.StatusUnauthorized},
		{"wrong bearer", "GET", "namespaces", "", map[string]string{"Authorization": "Bearer nope"}, http.StatusUnauthorized},
		{"wrong cookie", "GET", "namespaces", "", map[string]string{"Cookie": cookieName + "=nope"}, http.StatusUnauthorized},
		{"auth info is open", "GET", "auth/info", "", nil, http.StatusOK},
		{"bearer", "GET", "namespaces", "", map[string]string{"Authorization": "Bearer " + token}, http.StatusOK},
		{"cookie", "GET", "namespaces", "", map[string]string{"Cookie": cookie}, http.StatusOK},
		{"mutation without token", "POST", "meshlab/apply", apply, nil, http.StatusUnauthorized},
		{"GET cannot apply", "GET", "meshlab/apply?yaml=x", "", map[string]string{"Cookie": cookie}, http.StatusMethodNotAllowed},
		{"GET cannot delete", "GET", "namespaces/bookinfo/services/reviews/wizard", "", map[string]string{"Cookie": cookie}, http.StatusMethodNotAllowed},
		{"cross-site origin", "POST", "meshlab/apply", apply, map[string]string{"Cookie": cookie, "Origin": "http://evil.example"}, http.StatusForbidden},
		{"cross-site fetch", "DELETE", "namespaces/bookinfo/istio/destinationrules/reviews", "", map[string]string{"Cookie": cookie, "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"same-site sibling", "DELETE", "namespaces/bookinfo/istio/destinationrules/reviews", "", map[string]string{"Authorization": "Bearer " + token, "Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
		{"cross-site login", "POST", "authenticate", "token=" + token, map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://evil.example"}, http.StatusForbidden},
		{"wrong token login", "POST", "authenticate", "token=nope", formHdr, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body *strings.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			} else {
				body = strings.NewReader("")
			}
			code, got, _ := call(t, tc.method, base+tc.path, body, tc.hdr)
			if code != tc.code {
				t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, code, got, tc.code)
			}
		})
	}
	// Nothing refused above was stored, and the DR the cross-site DELETE aimed at is there.
	list, err := l.cp.List(t.Context(), "DestinationRule", "bookinfo", "")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.Items); n != 1 || !strings.Contains(string(list.Items[0]), `"reviews"`) {
		t.Errorf("DestinationRules after refused calls: %s", list.Items)
	}
	// Same-origin apply with the cookie works.
	code, body, _ = call(t, http.MethodPost, base+"meshlab/apply", strings.NewReader(apply),
		map[string]string{"Cookie": cookie, "Origin": srv.URL, "Sec-Fetch-Site": "same-origin"})
	if code != http.StatusOK {
		t.Errorf("same-origin apply with the cookie: %d %s", code, body)
	}
	var info authInfo
	getJSONT(t, base+"auth/info", &info)
	if info.Strategy != "token" || info.Authenticated {
		t.Errorf("auth/info without a token = %+v", info)
	}
	code, _, hdr = call(t, http.MethodGet, base+"logout", nil, map[string]string{"Cookie": cookie})
	if code != http.StatusOK || !strings.Contains(hdr.Get("Set-Cookie"), "Max-Age=0") {
		t.Errorf("logout: %d, Set-Cookie %q", code, hdr.Get("Set-Cookie"))
	}
}

func TestAnonymousAndBadOptions(t *testing.T) {
	l := startLab(t)
	srv := l.console(t, Options{})
	var info authInfo
	getJSONT(t, srv.URL+"/kiali/api/auth/info", &info)
	if info.Strategy != "anonymous" || !info.Authenticated {
		t.Errorf("auth/info = %+v", info)
	}
	// An anonymous console answers only when asked by a name a DNS
	// rebinding cannot send; the body here is empty, so a request that
	// passes the guard is a 400.
	for _, tc := range []struct {
		host string
		code int
	}{
		{"evil.example.com", http.StatusForbidden},
		{"evil.example.com:20001", http.StatusForbidden},
		{"127.0.0.1:20001", http.StatusBadRequest},
		{"[::1]:20001", http.StatusBadRequest},
		{"localhost:20001", http.StatusBadRequest},
		{"kiali.istio.local", http.StatusBadRequest},
		{"kiali.istio-system.svc:20001", http.StatusBadRequest},
		{"kiali", http.StatusBadRequest},
	} {
		code, body, _ := call(t, http.MethodPost, srv.URL+"/kiali/api/meshlab/apply", strings.NewReader(`{}`), map[string]string{"Host": tc.host})
		if code != tc.code {
			t.Errorf("apply with Host %s: %d %s, want %d", tc.host, code, body, tc.code)
		}
	}
	// Reads as well: logs and config are not for a rebound page either.
	if code, body, _ := call(t, http.MethodGet, srv.URL+"/kiali/api/namespaces", nil, map[string]string{"Host": "evil.example.com"}); code != http.StatusForbidden {
		t.Errorf("a read under a public name: %d %s, want 403", code, body)
	}
	code, _, hdr := call(t, http.MethodGet, srv.URL+"/kiali/api/namespaces", nil, map[string]string{"Host": "127.0.0.1:20001"})
	if code != http.StatusOK || hdr.Get("X-Frame-Options") != "DENY" || !strings.Contains(hdr.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Errorf("a read: %d, frame headers %q %q", code, hdr.Get("X-Frame-Options"), hdr.Get("Content-Security-Policy"))
	}
	for _, o := range []struct {
		o    Options
		want string
	}{
		{Options{ControlPlaneURL: "http://x", AuthStrategy: "ldap"}, "auth strategy"},
		{Options{ControlPlaneURL: "http://x", TracingProvider: "tempo2"}, "tracing provider"},
		{Options{}, "control plane URL"},
		{Options{ControlPlaneURL: "http://x", AuthStrategy: "token"}, "token file"},
		{Options{ControlPlaneURL: "http://x", TokenFile: "/nonexistent/token"}, "/nonexistent/token"},
	} {
		_, err := NewHandler(t.Context(), o.o)
		if err == nil || !strings.Contains(err.Error(), o.want) {
			t.Errorf("NewHandler(%+v) = %v, want an error about %s", o.o, err, o.want)
		}
	}
}

func TestGraphParams(t *testing.T) {
	l := startLab(t)
	srv := l.console(t, Options{})
	for _, tc := range []struct{ query, param string }{
		{"", "namespaces"},
		{"namespaces=Book_Info", "namespaces"},
		{"namespaces=bookinfo&graphType=cloud", "graphType"},
		{"namespaces=bookinfo&duration=soon", "duration"},
		{"namespaces=bookinfo&duration=-5m", "duration"},
		{"namespaces=bookinfo&injectServiceNodes=maybe", "injectServiceNodes"},
		{"namespaces=bookinfo&idleEdges=2", "idleEdges"},
		{"namespaces=bookinfo&responseTime=42", "responseTime"},
		{"namespaces=bookinfo&throughput=bits", "throughput"},
		{"namespaces=bookinfo&queryTime=yesterday", "queryTime"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			code, body, _ := call(t, http.MethodGet, srv.URL+"/kiali/api/namespaces/graph?"+tc.query, nil, nil)
			if code != http.StatusBadRequest {
				t.Fatalf("%d %s, want 400", code, body)
			}
			if e := errorText(body); !strings.HasPrefix(e, tc.param) || !strings.Contains(e, "want") && !strings.Contains(e, "required") && !strings.Contains(e, "not a namespace") {
				t.Errorf("error %q: want it to name %s and what it takes", e, tc.param)
			}
		})
	}
	code, body, _ := call(t, http.MethodGet, srv.URL+"/kiali/api/namespaces/bookinfo/workloads/reviews-v1/graph?duration=x", nil, nil)
	if code != http.StatusBadRequest || !strings.HasPrefix(errorText(body), "duration") {
		t.Errorf("node graph with a bad duration: %d %s", code, body)
	}
	t.Run("built", func(t *testing.T) {
		var g graph.Config
		getJSONT(t, srv.URL+"/kiali/api/namespaces/graph?namespaces=bookinfo&graphType=versionedApp&duration=60s", &g)
		if g.GraphType != "versionedApp" || g.Duration != 60 {
			t.Errorf("graph = type %q duration %d", g.GraphType, g.Duration)
		}
		if g.EmptyReason == nil || g.EmptyReason.Code != "prometheus-unreachable" {
			t.Errorf("a graph with no Prometheus: emptyReason = %+v", g.EmptyReason)
		}
	})
}

func TestRunShutsDown(t *testing.T) {
	l := startLab(t)
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Listen: addr, ControlPlaneURL: l.cpURL, TokenFile: l.tokenFile})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/kiali/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("the console never answered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if c, err := http.Get("http://" + addr + "/kiali/healthz"); err == nil {
		c.Body.Close()
		t.Errorf("the console still answers after Run returned")
	}
}
