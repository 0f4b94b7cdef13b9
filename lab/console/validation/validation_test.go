package validation

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/meshlab/meshlab/controlplane/config"
	"github.com/meshlab/meshlab/controlplane/registry"
	"github.com/meshlab/meshlab/lab/console/wizard"
)

// bookinfo is the registry the fixtures are checked against: reviews
// v1–v3, ratings and productpage in book-demo, the ingress gateway in
// istio-system.
func bookinfo() ([]registry.Service, []registry.Workload) {
	http := []registry.Port{{Name: "http", Port: 9080}}
	svcs := []registry.Service{
		{Name: "reviews", Namespace: "book-demo", VIP: netip.MustParseAddr("10.96.0.10"), Ports: http, Selector: map[string]string{"app": "reviews"}},
		{Name: "ratings", Namespace: "book-demo", VIP: netip.MustParseAddr("10.96.0.11"), Ports: http, Selector: map[string]string{"app": "ratings"}},
		{Name: "productpage", Namespace: "book-demo", VIP: netip.MustParseAddr("10.96.0.12"), Ports: http, Selector: map[string]string{"app": "productpage"}},
		{Name: "istio-ingressgateway", Namespace: "istio-system", VIP: netip.MustParseAddr("10.96.0.2"), Ports: []registry.Port{{Name: "http2", Port: 80, TargetPort: 8080}}, Selector: map[string]string{"istio": "ingressgateway"}},
	}
	wl := func(name, ns string, labels ...string) registry.Workload {
		l := map[string]string{}
		for i := 0; i < len(labels); i += 2 {
			l[labels[i]] = labels[i+1]
		}
		return registry.Workload{Name: name, Namespace: ns, Labels: l, Ready: true, ServiceAccount: "bookinfo-" + l["app"]}
	}
	wls := []registry.Workload{
		wl("reviews-v1-7f9c", "book-demo", "app", "reviews", "version", "v1"),
		wl("reviews-v2-5d8b", "book-demo", "app", "reviews", "version", "v2"),
		wl("reviews-v3-6c4f", "book-demo", "app", "reviews", "version", "v3"),
		wl("ratings-v1-59d6", "book-demo", "app", "ratings", "version", "v1"),
		wl("productpage-v1-6b74", "book-demo", "app", "productpage", "version", "v1"),
		wl("istio-ingressgateway-5c7b", "istio-system", "istio", "ingressgateway", "app", "istio-ingressgateway"),
	}
	return svcs, wls
}

// checks flattens the results to "Kind/ns/name CODE severity path" lines.
func checks(res map[string]*Result) []string {
	var out []string
	for key, r := range res {
		valid := true
		for _, c := range r.Checks {
			out = append(out, fmt.Sprintf("%s %s %s %s", key, c.Code, c.Severity, c.Path))
			if c.Severity == Error {
				valid = false
			}
			if !strings.HasPrefix(c.Message, messages[c.Code]) || messages[c.Code] == "" {
				out = append(out, fmt.Sprintf("%s %s: message %q does not start with the code's title", key, c.Code, c.Message))
			}
		}
		if r.Valid != valid {
			out = append(out, fmt.Sprintf("%s valid=%v with checks %v", key, r.Valid, r.Checks))
		}
	}
	sort.Strings(out)
	return out
}

// TestValidate runs each fixture of testdata/<name>.yaml; its
// "# want: <key> <code> <severity> <path>" comments are every check it
// must produce, and nothing else may be reported.
func TestValidate(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	svcs, wls := bookinfo()
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, line := range strings.Split(string(data), "\n") {
				if w, ok := strings.CutPrefix(line, "# want: "); ok {
					want = append(want, strings.TrimSpace(w))
				}
			}
			sort.Strings(want)
			rs, err := config.Parse(f, data)
			if err != nil {
				t.Fatal(err)
			}
			res := Validate(rs, svcs, wls)
			if len(res) != len(rs) {
				t.Errorf("%d results for %d resources", len(res), len(rs))
			}
			got := checks(res)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("checks:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
				for _, r := range res {
					for _, c := range r.Checks {
						t.Logf("%s/%s %s: %s", r.Namespace, r.Name, c.Code, c.Message)
					}
				}
			}
		})
	}
}

// The mTLS conflict says what fails, and where.
func TestMTLSMessage(t *testing.T) {
	data, err := os.ReadFile("testdata/kia0207-dr-disable-ns-strict.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := config.Parse("f.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	svcs, wls := bookinfo()
	res := Validate(rs, svcs, wls)["DestinationRule/book-demo/reviews"]
	if res == nil || len(res.Checks) != 1 {
		t.Fatalf("result %+v", res)
	}
	for _, want := range []string{"DISABLE", "reviews.book-demo.svc.cluster.local port 9080", "book-demo/default (STRICT)", "only mTLS", "503"} {
		if !strings.Contains(res.Checks[0].Message, want) {
			t.Errorf("message %q lacks %q", res.Checks[0].Message, want)
		}
	}
}

// What the wizards write for bookinfo raises nothing: every action, with
// the advanced options that add a Gateway and a PeerAuthentication.
func TestWizardOutputIsValid(t *testing.T) {
	svcs, wls := bookinfo()
	for _, action := range wizard.Actions {
		for _, adv := range []*wizard.Advanced{nil, {
			TLS:                &wizard.TLS{Mode: "ISTIO_MUTUAL"},
			OutlierDetection:   &wizard.OutlierDetection{},
			Gateway:            &wizard.Gateway{Hosts: []string{"bookinfo.example.com"}, Mesh: true},
			PeerAuthentication: &wizard.PeerAuthentication{Mode: "STRICT"},
		}} {
			objs, err := wizard.Generate(wizard.Request{Action: action, Namespace: "book-demo", Service: "reviews", Versions: []string{"v1", "v2", "v3"}, Advanced: adv})
			if err != nil {
				t.Fatal(err)
			}
			data, err := wizard.YAML(objs)
			if err != nil {
				t.Fatal(err)
			}
			rs, err := config.Parse(action+".yaml", data)
			if err != nil {
				t.Fatal(err)
			}
			if got := checks(Validate(rs, svcs, wls)); len(got) > 0 {
				t.Errorf("%s (advanced %v): %s", action, adv != nil, strings.Join(got, "\n  "))
			}
		}
	}
}
