package local

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshlab/meshlab/lab"
)

// TestConsoleUpArgs: up hands the console's port and web root to the
// runtime process, 0 (unpublished) included.
func TestConsoleUpArgs(t *testing.T) {
	for _, c := range []struct {
		o          lab.UpOptions
		port, root string
	}{
		{lab.UpOptions{KialiPort: 20001, KialiWebRoot: "/kiali"}, "20001", "/kiali"},
		{lab.UpOptions{KialiPort: 0, KialiWebRoot: "/dashboards/kiali"}, "0", "/dashboards/kiali"},
		{lab.UpOptions{KialiPort: 30001}, "30001", ""},
	} {
		args := daemonArgs("/tmp/x", c.o)
		get := func(name string) string {
			if i := slices.Index(args, name); i >= 0 && i+1 < len(args) {
				return args[i+1]
			}
			return ""
		}
		if get("--kiali-port") != c.port || get("--kiali-web-root") != c.root {
			t.Errorf("%+v: daemon args %v; want --kiali-port %s and --kiali-web-root %q", c.o, args, c.port, c.root)
		}
	}
}

func TestAddonURL(t *testing.T) {
	for _, c := range []struct {
		host string
		a    Addon
		want string
	}{
		{"127.0.0.1", Addon{HostPort: 20001, URLPath: "/kiali/"}, "http://127.0.0.1:20001/kiali/"},
		{"127.0.0.1", Addon{HostPort: 9090}, "http://127.0.0.1:9090/"},
		{"::1", Addon{HostPort: 9411}, "http://[::1]:9411/"},
		{"127.0.0.1", Addon{HostPort: 0, URLPath: "/kiali/"}, ""},
	} {
		if got := AddonURL(c.host, c.a); got != c.want {
			t.Errorf("AddonURL(%s, %+v) = %q, want %q", c.host, c.a, got, c.want)
		}
	}
}

// TestStatusShowsConsole: `status` and `up` print the console's URL with
// the other URLs, and `status -o json` carries it.
func TestStatusShowsConsole(t *testing.T) {
	st := lab.Status{Runtime: "local", Phase: lab.PhaseRunning, PID: os.Getpid(), StartedAt: time.Now(),
		URLs: lab.URLs{ProductPage: "http://127.0.0.1:8080/productpage", ControlPlane: "127.0.0.1:15014",
			Prometheus: "http://127.0.0.1:9090/", Zipkin: "http://127.0.0.1:9411/", Kiali: "http://127.0.0.1:20001/kiali/"}}
	var out bytes.Buffer
	if err := (StatusReport{Up: true, Status: st, Dir: "/tmp/lab"}).Print(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "\nkiali:         http://127.0.0.1:20001/kiali/\n") {
		t.Errorf("status does not show the console:\n%s", out.String())
	}
	b, err := json.Marshal(StatusReport{Up: true, Status: st})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		URLs map[string]string `json:"urls"`
	}
	if err := json.Unmarshal(b, &got); err != nil || got.URLs["kiali"] != "http://127.0.0.1:20001/kiali/" {
		t.Errorf("status -o json urls %v (%v); want kiali", got.URLs, err)
	}
	st.URLs.Kiali = ""
	out.Reset()
	printURLs(&out, st, "/tmp/lab")
	if strings.Contains(out.String(), "kiali") {
		t.Errorf("an unpublished console is shown:\n%s", out.String())
	}
}
