package analyze

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/meshlab/meshlab/controlplane/registry"
)

const samples = "../../samples/bookinfo/"

// load reads files as `meshlab analyze -f` does, with bookinfo's manifest
// as the registry.
func load(t *testing.T, files ...string) *Files {
	t.Helper()
	f := &Files{}
	for _, name := range append([]string{samples + "bookinfo.yaml"}, files...) {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f.Add(filepath.Base(name), data, "")
	}
	return f
}

func run(f *Files) []Message {
	msgs := Run(Input{Resources: f.Resources, Services: f.Services, Workloads: f.Workloads, Origins: f.Origins, Lines: f.Lines})
	return append(f.Schema, msgs...)
}

func TestAnalyze(t *testing.T) {
	tests := []struct {
		name  string
		files []string
		want  []string
	}{{
		// As istioctl says of Istio's own samples: destination-rule-all.yaml
		// names subsets (ratings v2, v2-mysql, …) no bookinfo pod has.
		name: "bookinfo samples",
		files: []string{samples + "networking/bookinfo-gateway.yaml", samples + "networking/destination-rule-all.yaml",
			samples + "networking/virtual-service-all-v1.yaml"},
		want: []string{
			`Error [IST0173] (DestinationRule default/details destination-rule-all.yaml:60) spec.subsets[1]: The Subset v2 defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).`,
			`Error [IST0173] (DestinationRule default/ratings destination-rule-all.yaml:40) spec.subsets[1]: The Subset v2 defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).`,
			`Error [IST0173] (DestinationRule default/ratings destination-rule-all.yaml:43) spec.subsets[2]: The Subset v2-mysql defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).`,
			`Error [IST0173] (DestinationRule default/ratings destination-rule-all.yaml:46) spec.subsets[3]: The Subset v2-mysql-vm defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).`,
		},
	}, {
		name: "bookinfo routing samples are clean",
		files: []string{samples + "networking/bookinfo-gateway.yaml", "testdata/destination-rule-bookinfo.yaml",
			samples + "networking/virtual-service-all-v1.yaml", samples + "networking/virtual-service-reviews-jason-v2-v3.yaml"},
	}, {
		name:  "route to an undefined subset",
		files: []string{"testdata/subset-not-found.yaml"},
		want: []string{
			`Error [IST0101] (VirtualService default/reviews subset-not-found.yaml:31) spec.http[0].route[1].destination.subset: Referenced host+subset in destinationrule not found: "reviews+v9"`,
		},
	}, {
		name:  "unknown hosts",
		files: []string{"testdata/unknown-host.yaml"},
		want: []string{
			`Warning [MLB0002] (VirtualService default/reviewz unknown-host.yaml:8) spec.hosts[0]: host "reviewz" is neither a Service nor a ServiceEntry host, so no sidecar routes by this VirtualService`,
			`Error [IST0101] (VirtualService default/reviewz unknown-host.yaml:12) spec.http[0].route[0].destination.host: Referenced host not found: "reviewz"`,
		},
	}, {
		name:  "gateway that does not exist",
		files: []string{"testdata/gateway-not-found.yaml"},
		want: []string{
			`Error [IST0101] (VirtualService default/productpage gateway-not-found.yaml:27) spec.gateways[1]: Referenced gateway not found: "istio-system/no-such-gateway"`,
			`Warning [IST0132] (VirtualService default/productpage gateway-not-found.yaml:23) spec.hosts: one or more host [shop.example.com] defined in VirtualService default/productpage not found in Gateway default/book-gateway.`,
		},
	}, {
		name:  "weights that do not add up to 100",
		files: []string{"testdata/weights.yaml"},
		want: []string{
			`Error [IST0106] (VirtualService default/reviews weights.yaml:24) spec.http[0].route: Schema validation error: total destination weight 90 != 100`,
		},
	}, {
		name:  "conflicting VirtualServices",
		files: []string{"testdata/conflicting-mesh.yaml"},
		want: []string{
			`Error [IST0109] (VirtualService default/reviews conflicting-mesh.yaml:9) spec.hosts[0]: The VirtualServices default/reviews,default/reviews-jason associated with mesh gateway define the same host reviews.default.svc.cluster.local which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.`,
			`Error [IST0109] (VirtualService default/reviews-jason conflicting-mesh.yaml:21) spec.hosts[0]: The VirtualServices default/reviews,default/reviews-jason associated with mesh gateway define the same host reviews.default.svc.cluster.local which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.`,
			`Warning [MLB0001] (VirtualService default/shop-a conflicting-mesh.yaml:43) spec.hosts[0]: The VirtualServices default/shop-a,default/shop-b bound to gateway default/gw define the same host shop.example.com; their routes are merged in creation order, so which rule matches first is undefined. Merge them into a single resource.`,
			`Warning [MLB0001] (VirtualService default/shop-b conflicting-mesh.yaml:54) spec.hosts[0]: The VirtualServices default/shop-a,default/shop-b bound to gateway default/gw define the same host shop.example.com; their routes are merged in creation order, so which rule matches first is undefined. Merge them into a single resource.`,
		},
	}, {
		name:  "subset that selects no pods",
		files: []string{"testdata/subset-no-pods.yaml"},
		want: []string{
			`Error [IST0173] (DestinationRule default/reviews subset-no-pods.yaml:12) spec.subsets[1]: The Subset v4 defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).`,
		},
	}, {
		name:  "service with several ports needs a destination port",
		files: []string{"testdata/multi-port.yaml"},
		want: []string{
			`Error [IST0112] (VirtualService default/httpbin multi-port.yaml:23) spec.http[0].route[0].destination.port: This VirtualService routes to a service "httpbin" that exposes multiple ports [8000 8001]. Specifying a port in the destination is required to disambiguate.`,
		},
	}, {
		name:  "schema errors of the walkthrough",
		files: []string{"../config/testdata/invalid/reviews-vs-header.yaml"},
		want: []string{
			`Error [IST0106] (VirtualService book-demo/reviews-vs reviews-vs-header.yaml:22) spec.http[0].match[1].header: Schema validation error: unknown field "header"; did you mean "headers"?`,
		},
	}, {
		name:  "config every proxy would reject",
		files: []string{"../config/testdata/invalid/proxies-reject.yaml"},
		want: []string{
			`Error [IST0106] (VirtualService default/reviews proxies-reject.yaml:12) spec.http[0].match[0].uri.regex: Schema validation error: invalid regex "(": error parsing regexp: missing closing ): ` + "`" + `(` + "`" + `; proxies use RE2 syntax (https://github.com/google/re2/wiki/Syntax)`,
			`Error [IST0106] (VirtualService default/reviews proxies-reject.yaml:13) spec.http[0].match[1].headers["x-id\r\nx-evil"]: Schema validation error: invalid header name "x-id\r\nx-evil": must be an HTTP token (letters, digits and !#$%&'*+-.^_` + "`" + `|~)`,
			`Error [IST0106] (VirtualService default/reviews proxies-reject.yaml:17) spec.http[0].match[1].headers[x-version].regex: Schema validation error: invalid regex "a{1001}": error parsing regexp: invalid repeat count: ` + "`" + `{1001}` + "`" + `; proxies use RE2 syntax (https://github.com/google/re2/wiki/Syntax)`,
			`Error [IST0106] (ServiceEntry default/everything proxies-reject.yaml:28) spec.hosts[0]: Schema validation error: invalid host "*": a ServiceEntry cannot be for every host`,
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, m := range run(load(t, tt.files...)) {
				got = append(got, m.String())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("messages:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestAnalyzeWithoutOrigins is the API the control plane's callers use:
// resources from the store, services from the registry, no files.
func TestAnalyzeWithoutOrigins(t *testing.T) {
	f := load(t, "testdata/subset-not-found.yaml")
	msgs := Analyze(f.Resources, []registry.Service{{Name: "reviews", Namespace: "default", Ports: []registry.Port{{Port: 9080}}}})
	if len(msgs) != 1 {
		t.Fatalf("got %d messages, want 1: %v", len(msgs), msgs)
	}
	want := `Error [IST0101] (VirtualService default/reviews) spec.http[0].route[1].destination.subset: Referenced host+subset in destinationrule not found: "reviews+v9"`
	if got := msgs[0].String(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if lvl, ok := Worst(msgs); !ok || lvl != Error {
		t.Errorf("Worst = %v, %v; want Error, true", lvl, ok)
	}
}

func TestMessageJSON(t *testing.T) {
	msgs := run(load(t, "testdata/subset-not-found.yaml"))
	b, err := json.Marshal(msgs)
	if err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("got %s", b)
	}
	for k, v := range map[string]any{
		"code":             "IST0101",
		"level":            "Error",
		"origin":           "VirtualService default/reviews",
		"reference":        "subset-not-found.yaml:31",
		"field":            "spec.http[0].route[1].destination.subset",
		"documentationUrl": "https://istio.io/latest/docs/reference/config/analysis/ist0101/",
		"message":          `Referenced host+subset in destinationrule not found: "reviews+v9"`,
	} {
		if got[0][k] != v {
			t.Errorf("%s = %v, want %v", k, got[0][k], v)
		}
	}
}

func TestFieldLine(t *testing.T) {
	data := []byte("# comment\n---\napiVersion: v1\nkind: List\nitems:\n- kind: A\n  spec:\n    x: [1, 2]\n- kind: B\n  spec:\n    headers:\n      end-user: {exact: jason}\n")
	nodes, starts := yamlDocuments(data)
	if len(nodes) != 2 || starts[0] != 6 || starts[1] != 9 {
		t.Fatalf("documents start at %v, want [6 9]", starts)
	}
	for _, tt := range []struct {
		doc   int
		field string
		want  int
	}{{0, "", 6}, {0, "spec.x[1]", 8}, {0, "spec.y", 7}, {1, "spec.headers[end-user]", 12}, {1, "spec.headers[end-user].exact", 12}} {
		if got := fieldLine(nodes[tt.doc], tt.field); got != tt.want {
			t.Errorf("doc %d %q: line %d, want %d", tt.doc, tt.field, got, tt.want)
		}
	}
}

func TestOverlay(t *testing.T) {
	stored := load(t, "testdata/destination-rule-bookinfo.yaml", "testdata/weights.yaml").Resources
	files := load(t, "testdata/subset-not-found.yaml").Resources
	got := Overlay(stored, files)
	keys := map[string]int{}
	for _, r := range got {
		keys[r.Key()]++
	}
	// productpage, ratings and details DestinationRules stay; reviews' DR and
	// VS come from the file.
	want := map[string]int{
		"DestinationRule/default/productpage": 1, "DestinationRule/default/ratings": 1, "DestinationRule/default/details": 1,
		"DestinationRule/default/reviews": 1, "VirtualService/default/reviews": 1,
	}
	if len(keys) != len(want) {
		t.Fatalf("keys %v, want %v", keys, want)
	}
	for k, n := range want {
		if keys[k] != n {
			t.Errorf("%s appears %d times, want %d", k, keys[k], n)
		}
	}
	msgs := Analyze(got, nil)
	var subset bool
	for _, m := range msgs {
		subset = subset || strings.Contains(m.Text, `"reviews+v9"`)
		if m.Code == SchemaValidationError.Code {
			t.Errorf("the stored reviews VirtualService (weights 50+40) should be replaced by the file's: %v", m)
		}
	}
	if !subset {
		t.Errorf("the file's reviews VirtualService (to v9) should be analyzed: %v", msgs)
	}
}

// TestAnalyzeNoRegistry: with no Service known at all, hosts are not
// judged, but subsets, gateways and weights still are.
func TestAnalyzeNoRegistry(t *testing.T) {
	f := &Files{}
	for _, name := range []string{"testdata/unknown-host.yaml", "testdata/subset-not-found.yaml", "testdata/weights.yaml"} {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f.Add(filepath.Base(name), data, "")
	}
	var codes []string
	for _, m := range run(f) {
		codes = append(codes, m.Code+" "+m.Field)
	}
	want := "IST0106 spec.http[0].route"
	if strings.Join(codes, "\n") != want {
		t.Errorf("messages:\n%s\nwant:\n%s", strings.Join(codes, "\n"), want)
	}
}

// TestServiceSelector: a manifest's Service selects the pods its selector
// names; one without a selector, or with one the API server would refuse
// (a value that is not a string), selects none rather than a part of it.
func TestServiceSelector(t *testing.T) {
	for _, tc := range []struct {
		name, selector string
		want           map[string]string
	}{
		{"labels", "\n  selector: {app: reviews, version: v1}", map[string]string{"app": "reviews", "version": "v1"}},
		{"none", "", nil},
		{"malformed", "\n  selector: {app: reviews, version: 1}", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f Files
			f.Add("svc.yaml", []byte("apiVersion: v1\nkind: Service\nmetadata: {name: reviews}\nspec:\n  ports: [{port: 9080}]"+tc.selector+"\n"), "")
			if len(f.Services) != 1 {
				t.Fatalf("services %+v, want one", f.Services)
			}
			if got := f.Services[0].Selector; !reflect.DeepEqual(got, tc.want) {
				t.Errorf("selector %#v, want %#v", got, tc.want)
			}
		})
	}
}
