package cmd

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
	appsv1 "k8s.io/api/apps/v1"

	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/console"
	"github.com/meshlab/meshlab/lab/kube/install"
	"github.com/meshlab/meshlab/lab/local"
	"github.com/meshlab/meshlab/lab/process"
)

// parseKiali reads args as `meshlab kiali` does, without serving.
func parseKiali(t *testing.T, args ...string) (console.Options, error) {
	t.Helper()
	var o console.Options
	var oerr error
	var errOut bytes.Buffer
	app := &cli.App{Name: "meshlab", ErrWriter: &errOut, Writer: &errOut, Flags: kialiFlags(), Action: func(c *cli.Context) error {
		o, oerr = kialiOptions(c)
		return nil
	}}
	if err := app.Run(append([]string{"kiali"}, args...)); err != nil {
		return o, err
	}
	return o, oerr
}

func TestKialiOptions(t *testing.T) {
	tok := filepath.Join(t.TempDir(), "api-token")
	if err := os.WriteFile(tok, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	defaults := console.Options{
		Listen: ":20001", WebRoot: "/kiali", ControlPlaneURL: "http://istiod.istio-system:15014",
		PrometheusURL: "http://prometheus.istio-system:9090", TracingProvider: "zipkin",
		TracingURL: "http://zipkin.istio-system:9411", AuthStrategy: "anonymous", Cluster: "Kubernetes",
	}
	with := func(f func(*console.Options)) console.Options { o := defaults; f(&o); return o }
	tests := []struct {
		name    string
		args    []string
		want    console.Options
		wantErr string
	}{
		{"defaults are Kiali's and the lab's addons", nil, defaults, ""},
		{"walkthrough web root, trailing slash dropped", []string{"--web-root", "/dashboards/kiali/"},
			with(func(o *console.Options) { o.WebRoot = "/dashboards/kiali" }), ""},
		{"root web root", []string{"--web-root", "/"}, with(func(o *console.Options) { o.WebRoot = "/" }), ""},
		{"jaeger", []string{"--tracing-provider", "jaeger", "--tracing-url", "http://tracing.istio-system:16686/"},
			with(func(o *console.Options) {
				o.TracingProvider, o.TracingURL = "jaeger", "http://tracing.istio-system:16686"
			}), ""},
		{"token strategy with the lab's token", []string{"--auth-strategy", "token", "--token-file", tok},
			with(func(o *console.Options) { o.AuthStrategy, o.TokenFile = "token", tok }), ""},
		{"token strategy with a token of its own", []string{"--auth-strategy", "token", "--auth-token-file", tok},
			with(func(o *console.Options) { o.AuthStrategy, o.AuthTokenFile = "token", tok }), ""},
		{"host addons", []string{"--listen", "127.0.0.1:20002", "--controlplane-url", "http://127.0.0.1:15014",
			"--prometheus-url", "https://127.0.0.1:9090", "--cluster", "east"},
			with(func(o *console.Options) {
				o.Listen, o.ControlPlaneURL, o.PrometheusURL, o.Cluster = "127.0.0.1:20002", "http://127.0.0.1:15014", "https://127.0.0.1:9090", "east"
			}), ""},

		{"listen without port", []string{"--listen", "20001"}, console.Options{}, `--listen "20001": want HOST:PORT`},
		{"relative web root", []string{"--web-root", "kiali"}, console.Options{}, `--web-root "kiali": want an absolute URL path`},
		{"unclean web root", []string{"--web-root", "/a/../kiali"}, console.Options{}, `--web-root "/a/../kiali": want a clean path`},
		{"web root with a query", []string{"--web-root", "/kiali?x"}, console.Options{}, `--web-root "/kiali?x"`},
		{"prometheus without scheme", []string{"--prometheus-url", "prometheus:9090"}, console.Options{}, `--prometheus-url "prometheus:9090": want an http:// or https:// URL`},
		{"control plane not http", []string{"--controlplane-url", "grpc://istiod:15010"}, console.Options{}, `--controlplane-url "grpc://istiod:15010"`},
		{"tracing url empty", []string{"--tracing-url", ""}, console.Options{}, `--tracing-url ""`},
		{"tempo is not an API", []string{"--tracing-provider", "tempo"}, console.Options{}, `--tracing-provider "tempo": want zipkin or jaeger`},
		{"unknown strategy", []string{"--auth-strategy", "openid"}, console.Options{}, `--auth-strategy "openid": want anonymous or token`},
		{"token strategy without a token", []string{"--auth-strategy", "token"}, console.Options{}, "--auth-strategy token: give the token"},
		{"missing token file", []string{"--token-file", "/nonexistent/api-token"}, console.Options{}, "--token-file: stat /nonexistent/api-token"},
		{"no cluster", []string{"--cluster", ""}, console.Options{}, "--cluster: want the cluster name"},
		{"two runtimes", []string{"--state-dir", "/tmp/x", "--in-cluster"}, console.Options{}, "--state-dir and --in-cluster: give one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseKiali(t, tt.args...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Log == nil {
				t.Error("no logger")
			}
			got.Log = nil
			if got != tt.want {
				t.Errorf("options\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestKialiRuntime: --state-dir is the local runtime's read side of that
// lab, --in-cluster a pod's cluster (refused, by flag, outside a pod),
// neither is none.
func TestKialiRuntime(t *testing.T) {
	run := func(args ...string) (lab.Runtime, error) {
		var rt lab.Runtime
		var rerr error
		app := &cli.App{Name: "meshlab", ErrWriter: &bytes.Buffer{}, Flags: kialiFlags(), Action: func(c *cli.Context) error {
			rt, rerr = kialiRuntime(c)
			return nil
		}}
		if err := app.Run(append([]string{"kiali"}, args...)); err != nil {
			t.Fatal(err)
		}
		return rt, rerr
	}
	dir := t.TempDir()
	tok := filepath.Join(dir, lab.APITokenFile)
	if err := os.WriteFile(tok, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rt, err := run("--state-dir", dir, "--token-file", tok)
	if err != nil || rt == nil || rt.Name() != "local" {
		t.Errorf("--state-dir: %v, %v; want the local runtime", rt, err)
	}
	if _, err := run("--state-dir", dir, "--token-file", filepath.Join(dir, "gone")); err == nil || !strings.Contains(err.Error(), "--token-file") {
		t.Errorf("--state-dir with a missing token file: %v; want an error naming --token-file", err)
	}
	if os.Getenv("KUBERNETES_SERVICE_HOST") == "" {
		if _, err := run("--in-cluster"); err == nil || !strings.Contains(err.Error(), "--in-cluster") {
			t.Errorf("--in-cluster outside a pod: %v; want an error naming --in-cluster", err)
		}
	}
	if rt, err := run(); rt != nil || err != nil {
		t.Errorf("neither: %v, %v; want no runtime", rt, err)
	}
}

// consoleAddonOf builds the kiali addon as lab-daemon does from up's flags.
func consoleAddonOf(t *testing.T, dir string, args ...string) (local.Addon, error) {
	t.Helper()
	var a local.Addon
	var aerr error
	app := &cli.App{Name: "meshlab", Flags: upFlags, Action: func(c *cli.Context) error {
		a, aerr = consoleAddon(c, dir)
		return nil
	}}
	if err := app.Run(append([]string{"lab-daemon"}, args...)); err != nil {
		t.Fatal(err)
	}
	return a, aerr
}

// TestConsoleAddon: the local runtime's kiali pod is a root lab component
// with the state directory read-only at its own path, on 20001 named
// http-kiali, ready on the web root's healthz, published as up says, and
// its arguments are ones `meshlab kiali` takes.
func TestConsoleAddon(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, lab.APITokenFile), []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name                   string
		args                   []string
		hostPort               int
		ready, url, auth, root string
	}{
		{"defaults", nil, 20001, "/kiali/healthz", "http://127.0.0.1:20001/kiali/", "anonymous", "/kiali"},
		{"walkthrough web root", []string{"--kiali-web-root", "/dashboards/kiali"}, 20001, "/dashboards/kiali/healthz", "http://127.0.0.1:20001/dashboards/kiali/", "anonymous", "/dashboards/kiali"},
		{"unpublished", []string{"--kiali-port", "0"}, 0, "/kiali/healthz", "", "anonymous", "/kiali"},
		{"other port", []string{"--kiali-port", "30001"}, 30001, "/kiali/healthz", "http://127.0.0.1:30001/kiali/", "anonymous", "/kiali"},
		{"loopback v6", []string{"--host-addr", "::1"}, 20001, "/kiali/healthz", "http://[::1]:20001/kiali/", "anonymous", "/kiali"},
		{"published beyond loopback: token", []string{"--host-addr", "0.0.0.0"}, 20001, "/kiali/healthz", "http://0.0.0.0:20001/kiali/", "token", "/kiali"},
		{"a LAN address: token", []string{"--host-addr", "192.168.1.20"}, 20001, "/kiali/healthz", "http://192.168.1.20:20001/kiali/", "token", "/kiali"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := consoleAddonOf(t, dir, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if a.Name != "kiali" || a.Port != 20001 || a.PortName != "http-kiali" || a.HostPort != tt.hostPort || a.ReadyPath != tt.ready {
				t.Errorf("addon %s port %d (%s) host port %d ready %s; want kiali 20001 (http-kiali) %d %s",
					a.Name, a.Port, a.PortName, a.HostPort, a.ReadyPath, tt.hostPort, tt.ready)
			}
			if !a.Root {
				t.Error("the console does not run as root: it could not read lab.json, the pods' logs or the API token")
			}
			if want := (process.Mount{Source: dir, Target: dir, ReadOnly: true}); len(a.Mounts) != 1 || a.Mounts[0] != want {
				t.Errorf("mounts %+v; want the state directory read-only at %s", a.Mounts, dir)
			}
			host := "127.0.0.1"
			for i, s := range tt.args {
				if s == "--host-addr" {
					host = tt.args[i+1]
				}
			}
			if got := local.AddonURL(host, a); got != tt.url {
				t.Errorf("URL %q, want %q", got, tt.url)
			}
			args := a.Args("/var/lib/meshlab/kiali")
			if args[0] != "kiali" {
				t.Fatalf("args %v: not the kiali mode", args)
			}
			o, err := parseKiali(t, args[1:]...)
			if err != nil {
				t.Fatalf("meshlab kiali refuses the addon's args %v: %v", args, err)
			}
			if o.WebRoot != tt.root || o.AuthStrategy != tt.auth || o.TokenFile != filepath.Join(dir, lab.APITokenFile) ||
				o.ControlPlaneURL != "http://istiod.istio-system:15014" || o.PrometheusURL != "http://prometheus.istio-system:9090" ||
				o.TracingURL != "http://zipkin.istio-system:9411" || o.Listen != ":20001" {
				t.Errorf("the addon's console options %+v", o)
			}
			if i := slices.Index(args, "--state-dir"); i < 0 || args[i+1] != dir {
				t.Errorf("args %v: want --state-dir %s (the runtime's read side)", args, dir)
			}
		})
	}
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"--kiali-web-root", "kiali"}, `--kiali-web-root "kiali"`},
		{[]string{"--kiali-web-root", "/x//kiali"}, `--kiali-web-root "/x//kiali": want a clean path`},
		{[]string{"--kiali-port", "70000"}, "--kiali-port 70000: want a port"},
	} {
		if _, err := consoleAddonOf(t, dir, bad.args...); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%v: %v; want an error with %q", bad.args, err, bad.want)
		}
	}
}

// TestInstalledConsoleArgs: the kube installer's kiali Deployment runs
// arguments `meshlab kiali` takes, with the in-cluster runtime.
func TestInstalledConsoleArgs(t *testing.T) {
	objs, err := install.Objects(install.Options{Image: "meshlab.local/meshlab:test", KialiWebRoot: "/dashboards/kiali"})
	if err != nil {
		t.Fatal(err)
	}
	var d *appsv1.Deployment
	for _, o := range objs {
		if x, ok := o.(*appsv1.Deployment); ok && x.Name == install.Kiali {
			d = x
		}
	}
	if d == nil {
		t.Fatal("the install has no kiali Deployment")
	}
	cmd := d.Spec.Template.Spec.Containers[0].Command
	if cmd[1] != "kiali" {
		t.Fatalf("command %v: not the kiali mode", cmd)
	}
	// The pod's service account token, which the control plane's API
	// reviews; a file of this test's stands in for it.
	args := slices.Clone(cmd[2:])
	const sa = "--token-file=/var/run/secrets/kubernetes.io/serviceaccount/token"
	i := slices.Index(args, sa)
	if i < 0 {
		t.Fatalf("command %v: want %s", cmd, sa)
	}
	args[i] = "--token-file=" + filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(args[i][len("--token-file="):], []byte("a service account token"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := parseKiali(t, args...)
	if err != nil {
		t.Fatalf("meshlab kiali refuses the Deployment's args %v: %v", cmd, err)
	}
	if o.WebRoot != "/dashboards/kiali" || o.Listen != ":20001" || o.AuthStrategy != "anonymous" || !slices.Contains(cmd, "--in-cluster") {
		t.Errorf("the Deployment's console options %+v (command %v)", o, cmd)
	}
	if install.KialiPort != KialiPort || install.KialiWebRoot != KialiWebRoot {
		t.Errorf("the installer's port/web root %d %s differ from the command's %d %s", install.KialiPort, install.KialiWebRoot, KialiPort, KialiWebRoot)
	}
}
