package console

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/local"
)

// With the local runtime (a real local.Lab over a lab record and the real
// control plane), pods come with their containers' state, logs are read,
// and changes go through the runtime's Apply and Delete.
func TestLocalRuntime(t *testing.T) {
	l := startLab(t)
	dir := t.TempDir()
	appLog, proxyLog := filepath.Join(dir, "reviews.log"), filepath.Join(dir, "istio-proxy.log")
	var b strings.Builder
	for i := 1; i <= 600; i++ {
		fmt.Fprintf(&b, "reviews line %d\n", i)
	}
	if err := os.WriteFile(appLog, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(proxyLog, []byte("envoy started\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The record names this process as the lab's runtime, so it is "up".
	st := lab.Status{Runtime: "local", Phase: "ready", PID: os.Getpid(), StartedAt: time.Now(), Pods: []lab.Pod{{
		Namespace: "bookinfo", Name: "reviews-v2-5d8f7b9c4-xv2", Deployment: "reviews-v2", IP: "198.18.0.14", Phase: "Running", Ready: true,
		Labels:     map[string]string{"app": "reviews", "version": "v2", "pod-template-hash": "5d8f7b9c4"},
		Containers: []lab.Container{{Name: "reviews", Running: true, Log: appLog}, {Name: "istio-proxy", Running: true, Log: proxyLog}},
		CreatedAt:  time.Now(), TemplateHash: "5d8f7b9c4"}}}
	if err := lab.WriteStatus(dir, st); err != nil {
		t.Fatal(err)
	}
	rt, err := local.Open(dir, local.WithControlPlane(l.cpURL, l.cp.Token))
	if err != nil {
		t.Fatal(err)
	}
	srv := l.console(t, Options{Runtime: rt})
	base := srv.URL + "/kiali/api/namespaces/bookinfo/"

	t.Run("logs", func(t *testing.T) {
		for _, tc := range []struct {
			query      string
			code       int
			n          int
			last, want string
		}{
			{"container=reviews", http.StatusOK, 500, "reviews line 600", ""},
			{"container=reviews&tailLines=3", http.StatusOK, 3, "reviews line 600", ""},
			{"container=istio-proxy", http.StatusOK, 1, "envoy started", ""},
			{"container=reviews&tailLines=0", http.StatusBadRequest, 0, "", "tailLines"},
			{"container=reviews&tailLines=lots", http.StatusBadRequest, 0, "", "tailLines"},
			{"container=nginx", http.StatusNotFound, 0, "", "nginx"},
		} {
			t.Run(tc.query, func(t *testing.T) {
				code, body, _ := call(t, http.MethodGet, base+"pods/reviews-v2-5d8f7b9c4-xv2/logs?"+tc.query, nil, nil)
				if code != tc.code {
					t.Fatalf("%d %s, want %d", code, body, tc.code)
				}
				if tc.want != "" {
					mustContain(t, "error", errorText(body), tc.want)
					return
				}
				var a struct{ Entries []struct{ Message string } }
				getJSONT(t, base+"pods/reviews-v2-5d8f7b9c4-xv2/logs?"+tc.query, &a)
				if len(a.Entries) != tc.n || a.Entries[len(a.Entries)-1].Message != tc.last {
					t.Errorf("%d entries ending %+v, want %d ending %q", len(a.Entries), a.Entries[len(a.Entries)-1], tc.n, tc.last)
				}
			})
		}
		code, body, _ := call(t, http.MethodGet, base+"pods/nope/logs", nil, nil)
		if code != http.StatusNotFound {
			t.Errorf("logs of a pod that does not exist: %d %s", code, body)
		}
	})

	t.Run("pods", func(t *testing.T) {
		var d struct{ Pods []podInfo }
		getJSONT(t, base+"workloads/reviews-v2", &d)
		if len(d.Pods) != 1 {
			t.Fatalf("pods = %+v", d.Pods)
		}
		var names []string
		for _, c := range d.Pods[0].Containers {
			names = append(names, fmt.Sprintf("%s:%v", c.Name, c.Ready))
		}
		if got := strings.Join(names, " "); !strings.Contains(got, "reviews:true") || !strings.Contains(got, "istio-proxy:true") {
			t.Errorf("containers from the runtime = %s", got)
		}
	})

	t.Run("namespaces", func(t *testing.T) {
		var nss []namespaceInfo
		getJSONT(t, srv.URL+"/kiali/api/namespaces", &nss)
		var names []string
		for _, n := range nss {
			names = append(names, n.Name)
		}
		mustContain(t, "namespaces", strings.Join(names, " "), "bookinfo", "default", "istio-system")
	})

	t.Run("apply and delete through the runtime", func(t *testing.T) {
		apply := `{"yaml":"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ratings}\nspec: {host: ratings}\n","namespace":"bookinfo"}`
		code, body, _ := call(t, http.MethodPost, srv.URL+"/kiali/api/meshlab/apply", strings.NewReader(apply), nil)
		if code != http.StatusOK {
			t.Fatalf("apply: %d %s", code, body)
		}
		mustContain(t, "apply", string(body), `"key":"DestinationRule/bookinfo/ratings"`, `"op":"created"`)
		code, body, _ = call(t, http.MethodDelete, base+"istio/dr/ratings", nil, nil)
		if code != http.StatusOK {
			t.Fatalf("delete: %d %s", code, body)
		}
		code, body, _ = call(t, http.MethodDelete, base+"istio/dr/ratings", nil, nil)
		if code != http.StatusNotFound && code != http.StatusBadRequest {
			t.Errorf("delete again: %d %s, want a refusal", code, body)
		}
	})
}
