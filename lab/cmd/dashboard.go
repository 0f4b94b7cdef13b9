package cmd

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/meshlab/meshlab/lab"
)

// dashboards are what `meshlab dashboard` opens, as `istioctl dashboard`:
// each addon's Service in istio-system, its port and the path a person
// opens on it.
var dashboards = map[string]struct {
	port int
	path string
}{
	"kiali":      {KialiPort, KialiWebRoot + "/"},
	"prometheus": {9090, "/"},
	"zipkin":     {9411, "/"},
}

func dashboardNames() string {
	names := make([]string, 0, len(dashboards))
	for n := range dashboards {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// browserCommand opens a URL in a browser (a var for tests).
var browserCommand = "xdg-open"

// Dashboard is `meshlab dashboard NAME`.
func Dashboard() *cli.Command {
	return &cli.Command{
		Name:      "dashboard",
		Aliases:   []string{"dash"},
		Usage:     "reach the lab's console or an addon: kiali, prometheus or zipkin (as istioctl dashboard)",
		ArgsUsage: "kiali|prometheus|zipkin",
		Description: `Prints the URL of the lab's console (kiali) or of its Prometheus or trace
store (zipkin), whatever the runtime. The local runtime publishes them on the
host itself (up's --kiali-port, --prometheus-port, --zipkin-port), so the URL
is printed at once. On kind (or a cluster meshlab was installed on) the
Service is port-forwarded, as kubectl port-forward, to --address:--port on
this machine; the command then holds the forward until Ctrl-C.

Examples:
   meshlab dashboard kiali
   meshlab dashboard kiali --browser          # and open it with xdg-open
   meshlab dashboard prometheus --port 19090  # kind: forward to another local port
   meshlab dashboard zipkin -o json           # {"url": "http://127.0.0.1:9411/"}`,
		Flags: []cli.Flag{
			stateDirFlag,
			&cli.IntFlag{Name: "port", Aliases: []string{"p"}, Usage: "local port of the forward (default: the Service's: kiali 20001, prometheus 9090, zipkin 9411); kind/kube"},
			&cli.StringFlag{Name: "address", Value: "127.0.0.1", Usage: "local address of the forward; kind/kube"},
			&cli.BoolFlag{Name: "browser", Usage: "open the URL with xdg-open as well"},
			&cli.StringFlag{Name: "namespace", Aliases: []string{"n"}, Value: "istio-system", Usage: "namespace of the addon's Service"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "output format: text or json"},
			&cli.StringFlag{Name: "kubeconfig", Usage: "kube runtime: the kubeconfig `FILE` (default $KUBECONFIG, else ~/.kube/config)"},
		},
		Action: func(c *cli.Context) error {
			out, err := checkOutput(c, "text", "json")
			if err != nil {
				return err
			}
			if c.NArg() != 1 {
				return cli.Exit(fmt.Sprintf("dashboard: name one of %s, e.g. meshlab dashboard kiali", dashboardNames()), 2)
			}
			name := c.Args().First()
			d, ok := dashboards[name]
			if !ok {
				return cli.Exit(fmt.Sprintf("dashboard %q: want one of %s", name, dashboardNames()), 2)
			}
			if p := c.Int("port"); p < 0 || p > 65535 {
				return cli.Exit(fmt.Sprintf("--port %d: want a port (1-65535)", p), 2)
			}
			rt, err := openRuntime(c)
			if err != nil {
				return err
			}
			fw, err := rt.PortForward(c.Context, lab.PortForwardOptions{
				Namespace: c.String("namespace"), Service: name, Port: d.port,
				Address: c.String("address"), LocalPort: c.Int("port"),
			})
			if err != nil {
				return fmt.Errorf("dashboard %s: %w", name, err)
			}
			path := d.path
			if fw.Wait != nil && path != "/" {
				// A forward reaches the console's root, which redirects
				// to its web root (a kind lab's --kiali-web-root).
				path = webRootAt(c.Context, fw.URL, path)
			}
			u := dashboardURL(fw.URL, path)
			if out == "json" {
				if err := writeJSON(c.App.Writer, map[string]string{"url": u}); err != nil {
					return err
				}
			} else {
				fmt.Fprintln(c.App.Writer, u)
				if fw.Wait != nil {
					fmt.Fprintln(c.App.ErrWriter, "Forwarding; Ctrl-C stops it.")
				}
			}
			if c.Bool("browser") {
				openBrowser(c, u)
			}
			if fw.Wait == nil {
				return nil
			}
			return fw.Wait()
		},
	}
}

// dashboardURL is the page a person opens: the runtime's URL when it
// carries a path of its own (the local console's web root), else path on
// it.
func dashboardURL(base, path string) string {
	u, err := url.Parse(base)
	if err != nil || (u.Path != "" && u.Path != "/") {
		return base
	}
	u.Path = path
	return u.String()
}

// webRootAt asks the server at base where its root redirects (the
// console's web root), def when it does not say.
func webRootAt(ctx context.Context, base, def string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base, nil)
	if err != nil {
		return def
	}
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Do(req)
	if err != nil {
		return def
	}
	_ = resp.Body.Close() // only the status and Location matter
	loc := resp.Header.Get("Location")
	if resp.StatusCode/100 != 3 || !strings.HasPrefix(loc, "/") || strings.HasPrefix(loc, "//") {
		return def
	}
	return loc
}

// openBrowser opens u with xdg-open when there is one; a machine without
// a desktop keeps the printed URL.
func openBrowser(c *cli.Context, u string) {
	bin, err := exec.LookPath(browserCommand)
	if err != nil {
		fmt.Fprintf(c.App.ErrWriter, "warning: --browser: %s not found; open %s yourself\n", browserCommand, u)
		return
	}
	// xdg-open hands the URL to the browser and returns at once; the
	// bound only keeps a stuck one from holding the forward back.
	ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, bin, u).CombinedOutput(); err != nil {
		fmt.Fprintf(c.App.ErrWriter, "warning: --browser: %s %s: %v %s\n", bin, u, err, strings.TrimSpace(string(out)))
	}
}
