package cmd

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/local"
)

// forwarder is a lab.Runtime answering PortForward as told, recording
// what it was asked.
type forwarder struct {
	lab.Runtime // every other method panics: dashboard calls none
	asked       []lab.PortForwardOptions
	fw          lab.Forward
	err         error
}

func (f *forwarder) PortForward(_ context.Context, o lab.PortForwardOptions) (lab.Forward, error) {
	f.asked = append(f.asked, o)
	return f.fw, f.err
}

func runDashboard(t *testing.T, rt lab.Runtime, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	saved := openRuntime
	openRuntime = func(*cli.Context) (lab.Runtime, error) { return rt, nil }
	defer func() { openRuntime = saved }()
	var out, errOut bytes.Buffer
	app := &cli.App{Name: "meshlab", Writer: &out, ErrWriter: &errOut, ExitErrHandler: func(*cli.Context, error) {},
		Commands: []*cli.Command{Dashboard()}}
	err = app.Run(Intersperse(app, append([]string{"meshlab", "dashboard"}, args...)))
	return out.String(), errOut.String(), err
}

func TestDashboard(t *testing.T) {
	// Where a held kiali forward goes: a port nothing answers on, so the
	// console's page is Kiali's default web root.
	dead := httptest.NewServer(http.NotFoundHandler())
	fwd := dead.URL + "/"
	dead.Close()
	held := 0
	tests := []struct {
		name    string
		fw      lab.Forward
		fwErr   error
		args    []string
		asked   lab.PortForwardOptions
		want    string // stdout
		wantErr string
		held    int
	}{
		{"local: the published console URL, with its web root", lab.Forward{URL: "http://127.0.0.1:20001/dashboards/kiali/"}, nil,
			[]string{"kiali"}, lab.PortForwardOptions{Namespace: "istio-system", Service: "kiali", Port: 20001, Address: "127.0.0.1"},
			"http://127.0.0.1:20001/dashboards/kiali/\n", "", 0},
		{"kube: a forward, held, on Kiali's web root", lab.Forward{URL: fwd, Wait: func() error { held++; return nil }}, nil,
			[]string{"kiali"}, lab.PortForwardOptions{Namespace: "istio-system", Service: "kiali", Port: 20001, Address: "127.0.0.1"},
			fwd + "kiali/\n", "", 1},
		{"kube: another local port and address", lab.Forward{URL: "http://0.0.0.0:19090/", Wait: func() error { held++; return nil }}, nil,
			[]string{"prometheus", "--port", "19090", "--address", "0.0.0.0"}, lab.PortForwardOptions{Namespace: "istio-system", Service: "prometheus", Port: 9090, Address: "0.0.0.0", LocalPort: 19090},
			"http://0.0.0.0:19090/\n", "", 1},
		{"json", lab.Forward{URL: "http://127.0.0.1:9411/"}, nil,
			[]string{"zipkin", "-o", "json"}, lab.PortForwardOptions{Namespace: "istio-system", Service: "zipkin", Port: 9411, Address: "127.0.0.1"},
			"{\n  \"url\": \"http://127.0.0.1:9411/\"\n}\n", "", 0},
		{"a broken forward fails the command", lab.Forward{URL: fwd, Wait: func() error { return errors.New("lost the pod") }}, nil,
			[]string{"kiali"}, lab.PortForwardOptions{Namespace: "istio-system", Service: "kiali", Port: 20001, Address: "127.0.0.1"},
			fwd + "kiali/\n", "lost the pod", 0},
		{"the runtime's refusal, named", lab.Forward{}, errors.New("kiali is not published on the host: the lab was started with --kiali-port 0"),
			[]string{"kiali"}, lab.PortForwardOptions{Namespace: "istio-system", Service: "kiali", Port: 20001, Address: "127.0.0.1"},
			"", "dashboard kiali: kiali is not published on the host: the lab was started with --kiali-port 0", 0},
		{"unknown dashboard", lab.Forward{}, nil, []string{"grafana"}, lab.PortForwardOptions{}, "", `dashboard "grafana": want one of kiali, prometheus, zipkin`, 0},
		{"no name", lab.Forward{}, nil, nil, lab.PortForwardOptions{}, "", "dashboard: name one of kiali, prometheus, zipkin", 0},
		{"bad output", lab.Forward{}, nil, []string{"kiali", "-o", "yaml"}, lab.PortForwardOptions{}, "", `--output "yaml": want one of text, json`, 0},
		{"bad port", lab.Forward{}, nil, []string{"kiali", "--port", "-1"}, lab.PortForwardOptions{}, "", "--port -1: want a port", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			held = 0
			rt := &forwarder{fw: tt.fw, err: tt.fwErr}
			out, _, err := runDashboard(t, rt, tt.args...)
			if tt.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want one with %q", err, tt.wantErr)
			}
			if out != tt.want {
				t.Errorf("printed %q, want %q", out, tt.want)
			}
			if tt.asked.Service == "" {
				if len(rt.asked) != 0 {
					t.Errorf("asked the runtime %+v; want nothing asked", rt.asked)
				}
			} else if len(rt.asked) != 1 || rt.asked[0] != tt.asked {
				t.Errorf("asked the runtime %+v, want %+v", rt.asked, tt.asked)
			}
			if held != tt.held {
				t.Errorf("held the forward %d times, want %d", held, tt.held)
			}
		})
	}
}

// TestDashboardWebRoot: through a forward, the console's page is where its
// root redirects (a kind lab's --kiali-web-root), else Kiali's /kiali/.
func TestDashboardWebRoot(t *testing.T) {
	redirecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			http.Redirect(w, r, "/dashboards/kiali/", http.StatusFound)
			return
		}
		http.NotFound(w, r)
	}))
	defer redirecting.Close()
	silent := httptest.NewServer(http.NotFoundHandler())
	defer silent.Close()
	for _, c := range []struct{ base, want string }{
		{redirecting.URL + "/", redirecting.URL + "/dashboards/kiali/\n"},
		{silent.URL + "/", silent.URL + "/kiali/\n"},
	} {
		rt := &forwarder{fw: lab.Forward{URL: c.base, Wait: func() error { return nil }}}
		out, _, err := runDashboard(t, rt, "kiali")
		if err != nil || out != c.want {
			t.Errorf("forward to %s: %v, printed %q, want %q", c.base, err, out, c.want)
		}
	}
}

// TestDashboardBrowser: --browser hands the URL to xdg-open, and a machine
// without one keeps the printed URL with a warning.
func TestDashboardBrowser(t *testing.T) {
	dir := t.TempDir()
	got := filepath.Join(dir, "opened")
	script := filepath.Join(dir, "fake-xdg-open")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$1\" > "+got+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	saved := browserCommand
	defer func() { browserCommand = saved }()

	browserCommand = script
	rt := &forwarder{fw: lab.Forward{URL: "http://127.0.0.1:20001/kiali/"}}
	if _, _, err := runDashboard(t, rt, "kiali", "--browser"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(got); err != nil || strings.TrimSpace(string(b)) != "http://127.0.0.1:20001/kiali/" {
		t.Errorf("the browser was handed %q (%v), want the console's URL", b, err)
	}

	browserCommand = filepath.Join(dir, "no-such-opener")
	out, errOut, err := runDashboard(t, rt, "kiali", "--browser")
	if err != nil || out != "http://127.0.0.1:20001/kiali/\n" || !strings.Contains(errOut, "not found; open http://127.0.0.1:20001/kiali/ yourself") {
		t.Errorf("without a browser: %v, printed %q, warned %q", err, out, errOut)
	}
}

// TestDashboardLocal: on the local runtime, the dashboard is the URL the
// lab's record publishes, and an unpublished one names the flag.
func TestDashboardLocal(t *testing.T) {
	dir := t.TempDir()
	st := lab.Status{Runtime: "local", Phase: lab.PhaseRunning, PID: os.Getpid(), StartedAt: time.Now(),
		URLs: lab.URLs{Kiali: "http://127.0.0.1:20001/kiali/", Prometheus: "http://127.0.0.1:9090/"}}
	if err := lab.WriteStatus(dir, st); err != nil {
		t.Fatal(err)
	}
	rt, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args    []string
		want    string
		wantErr string
	}{
		{[]string{"kiali"}, "http://127.0.0.1:20001/kiali/\n", ""},
		{[]string{"prometheus", "--port", "19090"}, "http://127.0.0.1:9090/\n", ""},
		{[]string{"zipkin"}, "", "dashboard zipkin: zipkin is not published on the host: the lab was started with --zipkin-port 0; start it again with it published: meshlab down && sudo meshlab up --zipkin-port 9411"},
		{[]string{"kiali", "-n", "default"}, "", "service default/kiali: the local runtime publishes only kiali, prometheus and zipkin of istio-system"},
	} {
		out, _, err := runDashboard(t, rt, tt.args...)
		if tt.wantErr == "" && err != nil {
			t.Errorf("%v: %v", tt.args, err)
		}
		if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%v: error %v, want one with %q", tt.args, err, tt.wantErr)
		}
		if out != tt.want {
			t.Errorf("%v: printed %q, want %q", tt.args, out, tt.want)
		}
	}

	// No lab: the runtime says so.
	rt, err = local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := runDashboard(t, rt, "kiali"); !errors.Is(err, lab.ErrNotUp) {
		t.Errorf("no lab: %v, want ErrNotUp", err)
	}
}

func TestDashboardURL(t *testing.T) {
	for _, c := range []struct{ base, path, want string }{
		{"http://127.0.0.1:20001/", "/kiali/", "http://127.0.0.1:20001/kiali/"},
		{"http://127.0.0.1:20001", "/kiali/", "http://127.0.0.1:20001/kiali/"},
		{"http://127.0.0.1:20001/dashboards/kiali/", "/kiali/", "http://127.0.0.1:20001/dashboards/kiali/"},
		{"http://[::1]:9090/", "/", "http://[::1]:9090/"},
	} {
		if got := dashboardURL(c.base, c.path); got != c.want {
			t.Errorf("dashboardURL(%q, %q) = %q, want %q", c.base, c.path, got, c.want)
		}
	}
}
