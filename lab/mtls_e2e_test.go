package lab_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/meshlab/meshlab/lab/labtest"
)

// How a request from one sleep to one httpbin must end.
const (
	viaMTLS  = "mtls"  // 200, and httpbin saw the client's SPIFFE identity in XFCC
	viaPlain = "plain" // 200, and no identity reached httpbin
	refused  = "fail"  // no answer: the server's sidecar closed the connection
)

// TestMutualTLS is issue 11's reachability matrix on a real local lab, after
// Istio's TestReachability: namespaces foo and bar in the mesh, legacy out
// of it, each with Istio's sleep and httpbin; PeerAuthentication at mesh,
// namespace, workload and port level, DestinationRule TLS settings and auto
// mTLS; every cell checked by an actual request and by the identity the
// server's side saw. Then the walkthrough's security chapter as written.
func TestMutualTLS(t *testing.T) {
	labtest.Skip(t)
	l := labtest.New(t, "..")
	const httpPort = "18087"
	// Bookinfo where the walkthrough has it.
	l.MustRun("up", "--bookinfo-namespace", "book-demo", "--http-port", httpPort, "--https-port", "18450", "--api-port", "25019")
	l.MustRun("apply", "-f", "testdata/sandbox/namespaces.yaml")
	nss := []string{"foo", "bar", "legacy"}
	for _, ns := range nss {
		l.MustRun("apply", "-n", ns, "-f", "../samples/sleep/sleep.yaml", "-f", "../samples/httpbin/httpbin.yaml", "--wait")
	}
	for _, ns := range nss {
		labtest.Eventually(t, "sleep and httpbin ready in "+ns, func() bool {
			out, err := l.Run("get", "pods", "-n", ns)
			return err == nil && strings.Count(out, "Running") == 2 && !strings.Contains(out, "0/")
		})
	}

	// call sends one request from sleep in from to httpbin in to and says
	// how it ended.
	call := func(from, to string) (string, string) {
		out, err := l.Run("exec", "-n", from, "deploy/sleep", "-c", "sleep", "--", "curl", "-sS", "-m", "5",
			"-w", "\n%{http_code}", fmt.Sprintf("http://httpbin.%s:8000/headers", to))
		body, code := "", ""
		if i := strings.LastIndex(out, "\n"); i >= 0 {
			body, code = out[:i], strings.TrimSpace(out[i+1:])
		}
		if err != nil || code != "200" {
			return refused, out
		}
		var h struct{ Headers map[string]string }
		if err := json.Unmarshal([]byte(body), &h); err != nil {
			return "bad body", out
		}
		xfcc := h.Headers["X-Forwarded-Client-Cert"]
		if xfcc == "" {
			return viaPlain, out
		}
		if want := "URI=spiffe://cluster.local/ns/" + from + "/sa/sleep"; !strings.Contains(xfcc, want) {
			return "xfcc without " + want, out
		}
		return viaMTLS, out
	}
	// expect: every cell of the matrix, by (from, to); mesh is foo and
	// bar, "*" any namespace.
	type cells map[[2]string]string
	matrix := func(meshToMesh, legacyToMesh, toLegacy string) cells {
		c := cells{}
		for _, from := range nss {
			for _, to := range nss {
				switch {
				case to == "legacy":
					c[[2]string{from, to}] = toLegacy
				case from == "legacy":
					c[[2]string{from, to}] = legacyToMesh
				default:
					c[[2]string{from, to}] = meshToMesh
				}
			}
		}
		return c
	}
	with := func(c cells, over cells) cells {
		out := cells{}
		for k, v := range c {
			out[k] = v
		}
		for k, v := range over {
			out[k] = v
		}
		return out
	}
	base := matrix(viaMTLS, viaPlain, viaPlain)
	for _, sc := range []struct {
		name  string
		files []string
		want  cells
	}{
		{"auto mTLS, no policy", nil, base},
		{"mesh STRICT", []string{"global-strict.yaml"}, matrix(viaMTLS, refused, viaPlain)},
		{"mesh PERMISSIVE", []string{"global-permissive.yaml"}, base},
		{"namespace STRICT", []string{"foo-strict.yaml"}, with(base, cells{{"legacy", "foo"}: refused})},
		{"workload STRICT", []string{"httpbin-strict.yaml"}, with(base, cells{{"legacy", "foo"}: refused})},
		// The port override wins for httpbin's container port, and auto
		// mTLS follows the server's mode: plaintext from everyone.
		{"workload STRICT, port DISABLE", []string{"httpbin-strict-port-disable.yaml"},
			with(base, cells{{"foo", "foo"}: viaPlain, {"bar", "foo"}: viaPlain})},
		{"namespace DISABLE", []string{"foo-disable.yaml"}, with(base, cells{{"foo", "foo"}: viaPlain, {"bar", "foo"}: viaPlain})},
		{"mesh STRICT, namespace DISABLE", []string{"global-strict.yaml", "foo-disable.yaml"},
			with(matrix(viaMTLS, refused, viaPlain), cells{{"foo", "foo"}: viaPlain, {"bar", "foo"}: viaPlain, {"legacy", "foo"}: viaPlain})},
		// A DestinationRule wins over auto mTLS, even when it is wrong.
		{"DR ISTIO_MUTUAL to a plaintext server", []string{"dr-legacy-istio-mutual.yaml"},
			with(base, cells{{"foo", "legacy"}: refused, {"bar", "legacy"}: refused})},
		{"DR DISABLE to a STRICT server", []string{"foo-strict.yaml", "dr-foo-disable.yaml"},
			with(base, cells{{"foo", "foo"}: refused, {"bar", "foo"}: refused, {"legacy", "foo"}: refused})},
	} {
		t.Run(sc.name, func(t *testing.T) {
			args := []string{"apply", "--wait"}
			for _, f := range sc.files {
				args = append(args, "-f", "testdata/mtls/"+f)
			}
			if len(sc.files) > 0 {
				l.MustRun(args...)
				defer func() {
					args[0] = "delete"
					args = append(args[:1], args[2:]...)
					l.MustRun(args...)
				}()
			}
			for _, from := range nss {
				for _, to := range nss {
					want := sc.want[[2]string{from, to}]
					var got, out string
					// Policies reach sidecars asynchronously, as in Istio.
					for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
						if got, out = call(from, to); got == want || time.Now().After(deadline) {
							break
						}
					}
					if got != want {
						t.Errorf("sleep.%s → httpbin.%s: %s, want %s\n%s", from, to, got, want, out)
					}
				}
			}
			if sc.name == "mesh STRICT" {
				// The gateway is a mesh client too: bookinfo still answers.
				labtest.Get(t, "http://127.0.0.1:"+httpPort+"/productpage")
			}
		})
	}

	// Principals exist only over mTLS: an ALLOW for sleep.bar's identity
	// lets it in and no one else, plaintext clients included.
	t.Run("AuthorizationPolicy principals", func(t *testing.T) {
		l.MustRun("apply", "--wait", "-f", "testdata/mtls/allow-bar-principal.yaml")
		defer l.MustRun("delete", "-f", "testdata/mtls/allow-bar-principal.yaml")
		for from, want := range map[string]string{"bar": viaMTLS, "foo": refused, "legacy": refused} {
			var got, out string
			for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
				if got, out = call(from, "foo"); got == want || time.Now().After(deadline) {
					break
				}
			}
			if got != want {
				t.Errorf("sleep.%s → httpbin.foo under an ALLOW for bar's principal: %s, want %s\n%s", from, got, want, out)
			}
			if from == "foo" && !strings.Contains(out, "RBAC: access denied") {
				t.Errorf("sleep.foo denied without Envoy's RBAC body:\n%s", out)
			}
		}
	})

	// What the destination's sidecar reports: mutual_tls and both
	// principals, as Istio's stats plugin does.
	t.Run("metrics", func(t *testing.T) {
		if got, _ := call("bar", "foo"); got != viaMTLS {
			t.Fatalf("sleep.bar → httpbin.foo: %s", got)
		}
		stats := l.MustRun("exec", "-n", "foo", "deploy/httpbin", "-c", "istio-proxy", "--", "curl", "-sS", "http://127.0.0.1:15090/stats/prometheus")
		for _, want := range []string{`connection_security_policy="mutual_tls"`,
			`source_principal="spiffe://cluster.local/ns/bar/sa/sleep"`,
			`destination_principal="spiffe://cluster.local/ns/foo/sa/httpbin"`} {
			found := false
			for _, line := range strings.Split(stats, "\n") {
				if strings.HasPrefix(line, "istio_requests_total{") && strings.Contains(line, `reporter="destination"`) &&
					strings.Contains(line, `source_workload_namespace="bar"`) && strings.Contains(line, want) {
					found = true
				}
			}
			if !found {
				t.Errorf("httpbin.foo's istio_requests_total from bar has no %s", want)
			}
		}
	})

	// The walkthrough, as written: bookinfo in book-demo, the NodePort
	// Service reaching reviews from the host; STRICT closes the plaintext
	// curl with exit 56 and no bytes while the mesh keeps working.
	t.Run("walkthrough", func(t *testing.T) {
		l.MustRun("apply", "-f", "testdata/mtls/walkthrough.yaml")
		labtest.Eventually(t, "reviews on nodePort 30123", func() bool {
			out, err := exec.Command("curl", "-sS", "-m", "2", "http://127.0.0.1:30123/reviews/0").Output()
			return err == nil && strings.Contains(string(out), `"id":"0"`)
		})
		l.MustRun("apply", "--wait", "-f", "testdata/mtls/walkthrough-strict.yaml")
		var out []byte
		var err error
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			out, err = exec.Command("curl", "-sS", "-m", "2", "http://127.0.0.1:30123/reviews/0").CombinedOutput()
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.ExitCode() == 56 || time.Now().After(deadline) {
				break
			}
		}
		if !strings.Contains(string(out), "(56)") {
			t.Fatalf("curl under STRICT: %v\n%s\nwant curl: (56) Recv failure: Connection reset by peer", err, out)
		}
		// productpage → reviews → ratings and the gateway → productpage
		// are mesh traffic: mutual TLS, still 200, with reviews' stars.
		page := labtest.Get(t, "http://127.0.0.1:"+httpPort+"/productpage")
		if !strings.Contains(page, "Reviewer1") {
			t.Errorf("productpage under STRICT lacks reviews:\n%s", page)
		}
	})
}
