package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	"sigs.k8s.io/yaml"
)

func TestParseFixtures(t *testing.T) {
	files, err := filepath.Glob("testdata/*/*")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{ // documents in each file that must parse clean
		"golden/destinationrule.yaml":               1,
		"valid/authorization-policy.yaml":           2,
		"valid/destination-rule.yaml":               3,
		"valid/gateway.yaml":                        3,
		"valid/list.yaml":                           2,
		"valid/peer-authentication.yaml":            2,
		"valid/request-authentication.yaml":         2,
		"valid/service-entry.yaml":                  3,
		"valid/sidecar.yaml":                        3,
		"valid/stream.json":                         2,
		"valid/virtual-service.yaml":                3,
		"valid/telemetry.yaml":                      3,
		"walkthrough/authorization-policy.yaml":     1,
		"walkthrough/calc-circuit-breaker.yaml":     2,
		"walkthrough/http-book-gateway.yaml":        1,
		"walkthrough/kiali-reviews.yaml":            2,
		"walkthrough/peer-authentication.yaml":      1,
		"walkthrough/productpage.yaml":              2,
		"walkthrough/reviews-destinationrule.yaml":  1,
		"walkthrough/reviews-nodeport-service.yaml": 1,
		"walkthrough/service-entry.yaml":            2,
	}
	seen := 0
	for _, f := range files {
		rel := strings.TrimPrefix(filepath.ToSlash(f), "testdata/")
		if strings.HasPrefix(rel, "invalid/") || strings.HasPrefix(rel, "fuzz/") || strings.HasPrefix(rel, "kube/") {
			continue
		}
		seen++
		t.Run(rel, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			rs, err := Parse(filepath.Base(f), data)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			n, ok := want[rel]
			if !ok {
				t.Fatalf("fixture %s has no expected document count in this test", rel)
			}
			if len(rs) != n {
				t.Fatalf("Parse returned %d resources, want %d", len(rs), n)
			}
			for _, r := range rs {
				roundTrip(t, r)
			}
		})
	}
	if seen != len(want) {
		t.Errorf("found %d valid fixtures, want %d", seen, len(want))
	}
}

// roundTrip checks that Marshal then Unmarshal, and Marshal to YAML then
// Parse, give back the same resource.
func roundTrip(t *testing.T, r Resource) {
	t.Helper()
	r.Revision = 7
	doc, err := Marshal(r)
	if err != nil {
		t.Fatalf("Marshal %s: %v", r.Key(), err)
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Unmarshal(b)
	if err != nil {
		t.Fatalf("Unmarshal %s: %v\n%s", r.Key(), err, b)
	}
	sameResource(t, back, r)

	y, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := Parse("roundtrip.yaml", y)
	if err != nil || len(rs) != 1 {
		t.Fatalf("Parse of marshalled %s: %d resources, %v\n%s", r.Key(), len(rs), err, y)
	}
	// What get -o yaml prints and apply reads back keeps the revision it
	// was read at: apply's precondition (optimistic concurrency).
	sameResource(t, rs[0], r)
}

func sameResource(t *testing.T, got, want Resource) {
	t.Helper()
	if !proto.Equal(got.Spec, want.Spec) {
		t.Errorf("%s: spec changed:\n got %v\nwant %v", want.Key(), got.Spec, want.Spec)
	}
	got.Spec, want.Spec = nil, nil
	if len(got.Labels) == 0 && len(want.Labels) == 0 {
		got.Labels, want.Labels = nil, nil
	}
	if len(got.Annotations) == 0 && len(want.Annotations) == 0 {
		got.Annotations, want.Annotations = nil, nil
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s: metadata changed:\n got %+v\nwant %+v", want.Key(), got, want)
	}
}

func TestParseEveryKindInEveryVersion(t *testing.T) {
	for _, k := range Kinds {
		var got []string
		files, _ := filepath.Glob("testdata/valid/*.yaml")
		for _, f := range files {
			data, _ := os.ReadFile(f)
			rs, err := Parse(f, data)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rs {
				if r.Kind == k.Kind {
					got = append(got, strings.TrimPrefix(r.APIVersion, k.Group+"/"))
				}
			}
		}
		for _, v := range k.Versions {
			if !slices.Contains(got, v) {
				t.Errorf("no valid fixture for %s in %s/%s", k.Kind, k.Group, v)
			}
		}
	}
}

// TestParseValues checks that values are read as Istio means them, not
// just accepted.
func TestParseValues(t *testing.T) {
	data, err := os.ReadFile("testdata/walkthrough/calc-circuit-breaker.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := Parse("calc-circuit-breaker.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	dr := rs[0].Spec.(*networking.DestinationRule)
	od := dr.GetTrafficPolicy().GetOutlierDetection()
	if got := od.GetBaseEjectionTime().AsDuration().String(); got != "1m0s" {
		t.Errorf("baseEjectionTime = %s, want 1m0s", got)
	}
	if got := od.GetConsecutive_5XxErrors().GetValue(); got != 1 {
		t.Errorf("consecutive5xxErrors = %d, want 1", got)
	}
	if rs[0].Namespace != "spring" || rs[0].Name != "calc-destination-rule" {
		t.Errorf("identity = %s", rs[0].Key())
	}

	data, err = os.ReadFile("testdata/walkthrough/service-entry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rs, err = Parse("service-entry.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].Namespace != "default" {
		t.Errorf("namespace = %q, want the default", rs[0].Namespace)
	}
	if got := rs[0].Spec.(*networking.ServiceEntry).GetLocation(); got != networking.ServiceEntry_MESH_EXTERNAL {
		t.Errorf("location = %v", got)
	}
}

func TestParseErrors(t *testing.T) {
	const vsHead = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\n"
	const route = "  http:\n  - route:\n    - destination:\n        host: reviews\n"
	const paHead = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p, namespace: foo}\n"
	const gwHead = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  servers:\n  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*\"]\n"
	const drHead = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\n"
	const telHead = "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: t}\n"
	tests := []struct {
		name    string
		file    string // a fixture under testdata/, or
		input   string // inline input, named in.yaml
		wantErr string
	}{{
		name:    "walkthrough: unknown field header",
		file:    "invalid/reviews-vs-header.yaml",
		wantErr: `reviews-vs-header.yaml: document 1 (VirtualService book-demo/reviews-vs): spec.http[0].match[1].header: unknown field "header"; did you mean "headers"?`,
	}, {
		name:    "walkthrough: headers given as a list",
		file:    "invalid/reviews-vs-headers-list.yaml",
		wantErr: `reviews-vs-headers-list.yaml: document 1 (VirtualService book-demo/reviews-vs): spec.http[0].match[0].headers: expected an object (map of header name to StringMatch), got a list`,
	}, {
		name:    "walkthrough: NodePort Service with a misspelt field",
		file:    "invalid/reviews-nodeport-misspelt.yaml",
		wantErr: `reviews-nodeport-misspelt.yaml: document 1 (Service book-demo/reviews-nodeport): spec.ports[0].nodeport: unknown field`,
	}, {
		name:    "Telemetry: selector and targetRef",
		input:   telHead + "spec:\n  selector: {matchLabels: {app: a}}\n  targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: g}\n",
		wantErr: `in.yaml: document 1 (Telemetry default/t): spec: only one of targetRefs or selector can be set`,
	}, {
		name:    "Telemetry: sampling over 100",
		input:   telHead + "spec:\n  tracing:\n  - randomSamplingPercentage: 101\n",
		wantErr: `in.yaml: document 1 (Telemetry default/t): spec.tracing[0].randomSamplingPercentage: must be in range [0.0, 100.0], got 101`,
	}, {
		name:    "Telemetry: provider without a name",
		input:   telHead + "spec:\n  metrics:\n  - providers: [{}]\n",
		wantErr: `in.yaml: document 1 (Telemetry default/t): spec.metrics[0].providers[0].name: may not be empty`,
	}, {
		name:    "Telemetry: empty literal tag",
		input:   telHead + "spec:\n  tracing:\n  - customTags:\n      a: {literal: {value: \"\"}}\n",
		wantErr: `in.yaml: document 1 (Telemetry default/t): spec.tracing[0].customTags[a].literal.value: literal tag value may not be empty`,
	}, {
		name:    "Telemetry: empty header tag",
		input:   telHead + "spec:\n  tracing:\n  - customTags:\n      a: {header: {defaultValue: x}}\n",
		wantErr: `in.yaml: document 1 (Telemetry default/t): spec.tracing[0].customTags[a].header.name: header tag name may not be empty`,
	}, {
		name:    "Telemetry: empty access log filter",
		input:   telHead + "spec:\n  accessLogging:\n  - filter: {expression: \" \"}\n",
		wantErr: `in.yaml: document 1 (Telemetry default/t): spec.accessLogging[0].filter.expression: must be a non-empty CEL expression`,
	}, {
		name:    "Telemetry: UPSERT without a value",
		input:   telHead + "spec:\n  metrics:\n  - overrides:\n    - tagOverrides: {a: {operation: UPSERT}}\n",
		wantErr: `in.yaml: document 1 (Telemetry default/t): spec.metrics[0].overrides[0].tagOverrides[a].value: must be set when operation is UPSERT`,
	}, {
		name:    "Telemetry: misspelt field",
		input:   telHead + "spec:\n  tracing:\n  - randomSamplingPercent: 10\n",
		wantErr: `in.yaml: document 1 (Telemetry default/t): spec.tracing[0].randomSamplingPercent: unknown field "randomSamplingPercent"; did you mean "randomSamplingPercentage"?`,
	}, {
		name:    "Telemetry: unknown metric",
		input:   telHead + "spec:\n  metrics:\n  - overrides:\n    - match: {metric: REQUESTS}\n",
		wantErr: `in.yaml: document 1 (Telemetry default/t): spec.metrics[0].overrides[0].match.metric: invalid value "REQUESTS"; expected one of "ALL_METRICS", "REQUEST_COUNT", "REQUEST_DURATION", "REQUEST_SIZE", "RESPONSE_SIZE", "TCP_OPENED_CONNECTIONS", "TCP_CLOSED_CONNECTIONS", "TCP_SENT_BYTES", "TCP_RECEIVED_BYTES", "GRPC_REQUEST_MESSAGES", "GRPC_RESPONSE_MESSAGES"`,
	}, {
		name:    "bad enum value",
		input:   "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default}\nspec:\n  mtls:\n    mode: STRIKT\n",
		wantErr: `in.yaml: document 1 (PeerAuthentication default/default): spec.mtls.mode: invalid value "STRIKT"; expected one of "UNSET", "DISABLE", "PERMISSIVE", "STRICT"; did you mean "STRICT"?`,
	}, {
		name:    "bad duration",
		input:   vsHead + "spec:\n  hosts: [reviews]\n" + route + "    timeout: 10 seconds\n",
		wantErr: `in.yaml: document 1 (VirtualService default/reviews): spec.http[0].timeout: invalid duration "10 seconds"; expected a number with a unit, e.g. "5s", "100ms", "1m"`,
	}, {
		name:    "duration as a number",
		input:   vsHead + "spec:\n  hosts: [reviews]\n" + route + "    timeout: 10\n",
		wantErr: `in.yaml: document 1 (VirtualService default/reviews): spec.http[0].timeout: expected a duration string such as "5s" or "100ms", got a number (10)`,
	}, {
		name:    "string where a list belongs",
		input:   vsHead + "spec:\n  hosts: reviews\n" + route,
		wantErr: `in.yaml: document 1 (VirtualService default/reviews): spec.hosts: expected a list of strings, got a string ("reviews")`,
	}, {
		name:    "object where a list of objects belongs",
		input:   vsHead + "spec:\n  hosts: [reviews]\n  http:\n    route:\n      destination: {host: reviews}\n",
		wantErr: `in.yaml: document 1 (VirtualService default/reviews): spec.http: expected a list of HTTPRoute objects, got an object`,
	}, {
		name:    "wrapper given a negative number",
		input:   "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec:\n  host: r\n  trafficPolicy:\n    outlierDetection:\n      consecutive5xxErrors: -1\n",
		wantErr: `in.yaml: document 1 (DestinationRule default/r): spec.trafficPolicy.outlierDetection.consecutive5xxErrors: expected a non-negative integer, got -1`,
	}, {
		name:    "boolean wrapper given a string",
		input:   vsHead + "spec:\n  hosts: [reviews]\n" + route + "    retries:\n      attempts: 2\n      retryRemoteLocalities: \"yes\"\n",
		wantErr: `in.yaml: document 1 (VirtualService default/reviews): spec.http[0].retries.retryRemoteLocalities: expected a boolean (true or false), got a string ("yes")`,
	}, {
		name:    "two members of a oneof",
		input:   vsHead + "spec:\n  hosts: [reviews]\n  http:\n  - match:\n    - uri: {exact: /a, prefix: /b}\n    route:\n    - destination: {host: reviews}\n",
		wantErr: `in.yaml: document 1 (VirtualService default/reviews): spec.http[0].match[0].uri: only one of "exact", "prefix", "regex" may be set, got "exact" and "prefix"`,
	}, {
		name:    "unknown top-level field",
		input:   vsHead + "specs:\n  hosts: [reviews]\n",
		wantErr: `in.yaml: document 1 (VirtualService default/reviews): specs: unknown field "specs"; did you mean "spec"?`,
	}, {
		name:    "missing name",
		input:   "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  namespace: istio-system\nspec: {}\n",
		wantErr: `in.yaml: document 1 (Gateway): metadata.name: required`,
	}, {
		name:    "name is not DNS-1123",
		input:   "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: My_Gateway\nspec: {}\n",
		wantErr: `in.yaml: document 1 (Gateway default/My_Gateway): metadata.name: invalid name "My_Gateway": must be lowercase letters, digits, '-' and '.', starting and ending with a letter or digit (RFC 1123)`,
	}, {
		name:    "version not served",
		input:   "apiVersion: security.istio.io/v1alpha3\nkind: PeerAuthentication\nmetadata: {name: default}\nspec: {}\n",
		wantErr: `in.yaml: document 1 (PeerAuthentication default/default): apiVersion: security.istio.io/v1alpha3 does not serve PeerAuthentication; use security.istio.io/v1, security.istio.io/v1beta1`,
	}, {
		name:    "Istio kind meshlab does not support",
		input:   "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: f}\nspec: {}\n",
		wantErr: `in.yaml: document 1 (EnvoyFilter default/f): kind EnvoyFilter of networking.istio.io is not supported by meshlab; it accepts VirtualService, DestinationRule, Gateway, ServiceEntry, Sidecar, PeerAuthentication, AuthorizationPolicy, RequestAuthentication, Telemetry`,
	}, {
		name:    "label value that YAML reads as a number",
		input:   "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: r\n  labels: {version: 2}\nspec: {host: r}\n",
		wantErr: `in.yaml: document 1 (DestinationRule default/r): metadata.labels[version]: expected a string, got a number (2); quote it`,
	}, {
		name:  "VirtualService without hosts and a destination without host",
		input: vsHead + "spec:\n  http:\n  - route:\n    - destination: {subset: v1}\n      weight: -5\n",
		wantErr: "in.yaml: document 1 (VirtualService default/reviews): spec.hosts: required: a VirtualService needs at least one host\n" +
			"in.yaml: document 1 (VirtualService default/reviews): spec.http[0].route[0].destination.host: required: a route destination needs a host\n" +
			"in.yaml: document 1 (VirtualService default/reviews): spec.http[0].route[0].weight: must not be negative, got -5",
	}, {
		name:    "Gateway server without port or hosts",
		input:   "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  servers:\n  - hosts: []\n",
		wantErr: "in.yaml: document 1 (Gateway default/gw): spec.servers[0].port: required\nin.yaml: document 1 (Gateway default/gw): spec.servers[0].hosts: required: a server needs at least one host (\"*\" for any)",
	}, {
		name:    "Gateway without servers",
		input:   "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  selector: {istio: ingressgateway}\n",
		wantErr: `in.yaml: document 1 (Gateway default/gw): spec.servers: required: a Gateway needs at least one server`,
	}, {
		name:  "DestinationRule without host, with duplicate and empty subsets",
		input: "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec:\n  subsets:\n  - name: v1\n  - name: v1\n  - labels: {a: b}\n",
		wantErr: "in.yaml: document 1 (DestinationRule default/r): spec.host: required: a DestinationRule needs a host\n" +
			"in.yaml: document 1 (DestinationRule default/r): spec.subsets[1].name: duplicate subset name \"v1\" (also spec.subsets[0])\n" +
			"in.yaml: document 1 (DestinationRule default/r): spec.subsets[2].name: required: a subset needs a name",
	}, {
		name: "every bad document is reported, counting from 1",
		input: vsHead + "spec:\n  hosts: [reviews]\n" + route +
			"---\n# a comment-only document is not counted\n---\n" +
			"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: r, subset: []}\n" +
			"---\napiVersion: v1\nkind: Pod\nmetadata: {name: c}\n",
		wantErr: "in.yaml: document 2 (DestinationRule default/r): spec.subset: unknown field \"subset\"; did you mean \"subsets\"?\n" +
			"in.yaml: document 3 (Pod default/c): kind Pod (v1) is not a kind meshlab accepts; it takes Istio's VirtualService, DestinationRule, Gateway, ServiceEntry, Sidecar, PeerAuthentication, AuthorizationPolicy, RequestAuthentication, Telemetry and Kubernetes' v1 Namespace, v1 ServiceAccount, v1 ConfigMap, v1 Secret, v1 Service, apps/v1 Deployment",
	}, {
		name:    "regex RE2 refuses: unbalanced parenthesis",
		input:   vsHead + "spec:\n  hosts: [reviews]\n  http:\n  - match:\n    - uri: {regex: \"(\"}\n" + "    route:\n    - destination:\n        host: reviews\n",
		wantErr: `in.yaml: document 1 (VirtualService default/reviews): spec.http[0].match[0].uri.regex: invalid regex "(": error parsing regexp: missing closing ): ` + "`(`" + `; proxies use RE2 syntax (https://github.com/google/re2/wiki/Syntax)`,
	}, {
		name:    "regex over RE2's repeat limit",
		input:   vsHead + "spec:\n  hosts: [reviews]\n  http:\n  - match:\n    - headers:\n        x-id: {regex: \"a{1001}\"}\n" + "    route:\n    - destination:\n        host: reviews\n",
		wantErr: `in.yaml: document 1 (VirtualService default/reviews): spec.http[0].match[0].headers[x-id].regex: invalid regex "a{1001}": error parsing regexp: invalid repeat count: ` + "`{1001}`" + `; proxies use RE2 syntax (https://github.com/google/re2/wiki/Syntax)`,
	}, {
		name:    "regex with \\C, which the proxies refuse",
		input:   vsHead + "spec:\n  hosts: [reviews]\n  http:\n  - match:\n    - queryParams:\n        q: {regex: '\\C'}\n" + "    route:\n    - destination:\n        host: reviews\n",
		wantErr: `in.yaml: document 1 (VirtualService default/reviews): spec.http[0].match[0].queryParams[q].regex: invalid regex "\\C": error parsing regexp: invalid escape sequence: ` + "`\\C`" + `; proxies use RE2 syntax (https://github.com/google/re2/wiki/Syntax)`,
	}, {
		name:    "regex over the RE2 program size proxies accept",
		input:   vsHead + "spec:\n  hosts: [reviews]\n  http:\n  - match:\n    - uri: {regex: \"" + strings.Repeat("[a-z]{1000}", 40) + "\"}\n" + "    route:\n    - destination:\n        host: reviews\n",
		wantErr: `in.yaml: document 1 (VirtualService default/reviews): spec.http[0].match[0].uri.regex: regex "` + strings.Repeat("[a-z]{1000}", 40) + `" is too complex: its program has 40002 instructions, proxies accept at most 32768 (re2.max_program_size)`,
	}, {
		name:    "regex longer than Istio allows",
		input:   vsHead + "spec:\n  hosts: [reviews]\n  http:\n  - match:\n    - uri: {regex: \"" + strings.Repeat("a", 1025) + "\"}\n" + "    route:\n    - destination:\n        host: reviews\n",
		wantErr: `in.yaml: document 1 (VirtualService default/reviews): spec.http[0].match[0].uri.regex: regex is too large: 1025 bytes, at most 1024 are allowed`,
	}, {
		name:    "empty regex in a rewrite",
		input:   vsHead + "spec:\n  hosts: [reviews]\n" + route + "    rewrite:\n      uriRegexRewrite: {match: \"\", rewrite: /x}\n",
		wantErr: `in.yaml: document 1 (VirtualService default/reviews): spec.http[0].rewrite.uriRegexRewrite.match: regex must not be empty`,
	}, {
		name:    "header name with CR LF in a match",
		input:   vsHead + "spec:\n  hosts: [reviews]\n  http:\n  - match:\n    - headers:\n        \"x-a\\r\\nx-b\": {exact: v}\n" + "    route:\n    - destination:\n        host: reviews\n",
		wantErr: `in.yaml: document 1 (VirtualService default/reviews): spec.http[0].match[0].headers["x-a\r\nx-b"]: invalid header name "x-a\r\nx-b": must be an HTTP token (letters, digits and !#$%&'*+-.^_` + "`|~)",
	}, {
		name:    "header name with a space in withoutHeaders",
		input:   vsHead + "spec:\n  hosts: [reviews]\n  http:\n  - match:\n    - withoutHeaders:\n        \"x a\": {exact: v}\n" + "    route:\n    - destination:\n        host: reviews\n",
		wantErr: `in.yaml: document 1 (VirtualService default/reviews): spec.http[0].match[0].withoutHeaders["x a"]: invalid header name "x a": must be an HTTP token (letters, digits and !#$%&'*+-.^_` + "`|~)",
	}, {
		name: "header operations with bad names and values",
		input: vsHead + "spec:\n  hosts: [reviews]\n" + route +
			"    headers:\n      request:\n        set: {\"x-a\\n\": v}\n        add: {x-b: \"v\\r\\nx-evil: 1\"}\n      response:\n        remove: [\"bad header\"]\n        set: {x-c: \"50%\"}\n",
		wantErr: "in.yaml: document 1 (VirtualService default/reviews): spec.http[0].headers.request.set[\"x-a\\n\"]: invalid header name \"x-a\\n\": must be an HTTP token (letters, digits and !#$%&'*+-.^_`|~)\n" +
			"in.yaml: document 1 (VirtualService default/reviews): spec.http[0].headers.request.add[x-b]: invalid header value \"v\\r\\nx-evil: 1\": control characters (CR, LF, NUL...) are not allowed\n" +
			"in.yaml: document 1 (VirtualService default/reviews): spec.http[0].headers.response.set[x-c]: invalid header value \"50%\": a % must start a %COMMAND% or be escaped as %%\n" +
			"in.yaml: document 1 (VirtualService default/reviews): spec.http[0].headers.response.remove[0]: invalid header name \"bad header\": must be an HTTP token (letters, digits and !#$%&'*+-.^_`|~)",
	}, {
		name:    "destination header operation with a bad name",
		input:   vsHead + "spec:\n  hosts: [reviews]\n" + route + "      headers:\n        request:\n          remove: [\"x:y\"]\n",
		wantErr: `in.yaml: document 1 (VirtualService default/reviews): spec.http[0].route[0].headers.request.remove[0]: invalid header name "x:y": must be an HTTP token (letters, digits and !#$%&'*+-.^_` + "`|~)",
	}, {
		name:    "fault abort status Envoy refuses",
		input:   vsHead + "spec:\n  hosts: [reviews]\n" + route + "    fault:\n      abort: {httpStatus: 700, percentage: {value: 10}}\n",
		wantErr: `in.yaml: document 1 (VirtualService default/reviews): spec.http[0].fault.abort.httpStatus: must be an HTTP status between 200 and 599, got 700`,
	}, {
		name:  "hosts proxies cannot take as domains",
		input: vsHead + "spec:\n  hosts: [\"rev\\niews\", \"a.*.com\", \"*\"]\n  http:\n  - route:\n    - destination: {host: \"*\"}\n    mirror: {host: \"x_y\"}\n",
		wantErr: "in.yaml: document 1 (VirtualService default/reviews): spec.hosts[0]: invalid host \"rev\\niews\": label \"rev\\niews\" must be lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 (RFC 1123); only the first label may be a wildcard\n" +
			"in.yaml: document 1 (VirtualService default/reviews): spec.hosts[1]: invalid host \"a.*.com\": label \"*\" must be lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 (RFC 1123); only the first label may be a wildcard\n" +
			"in.yaml: document 1 (VirtualService default/reviews): spec.hosts[2]: wildcard host * is not allowed for virtual services bound to the mesh gateway\n" +
			"in.yaml: document 1 (VirtualService default/reviews): spec.http[0].route[0].destination.host: invalid destination host \"*\"\n" +
			"in.yaml: document 1 (VirtualService default/reviews): spec.http[0].mirror.host: invalid host \"x_y\": label \"x_y\" must be lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 (RFC 1123); only the first label may be a wildcard",
	}, {
		name:  "Gateway hosts with a bad namespace or host",
		input: "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"Bad_NS/x.com\", \"./a b.com\", \"*/*\", \"./*.example.com\"]\n",
		wantErr: "in.yaml: document 1 (Gateway default/gw): spec.servers[0].hosts[0]: invalid namespace \"Bad_NS\" in \"Bad_NS/x.com\": want \"*\", \".\" or a namespace name\n" +
			"in.yaml: document 1 (Gateway default/gw): spec.servers[0].hosts[1]: invalid host \"a b.com\": label \"a b\" must be lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 (RFC 1123); only the first label may be a wildcard",
	}, {
		name:    "a host in upper case, which proxies would take for another in lower case",
		input:   "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: api}\nspec:\n  hosts: [API.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n",
		wantErr: `in.yaml: document 1 (ServiceEntry default/api): spec.hosts[0]: invalid host "API.example.com": label "API" must be lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 (RFC 1123); only the first label may be a wildcard`,
	}, {
		name: "traffic policy values Envoy refuses or a cast would turn huge",
		input: "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec:\n  host: r\n  trafficPolicy:\n" +
			"    loadBalancer: {consistentHash: {httpHeaderName: x, ringHash: {minimumRingSize: 9999999999}}}\n" +
			"    outlierDetection: {maxEjectionPercent: 250}\n    connectionPool: {tcp: {maxConnections: -5}}\n" +
			"  subsets:\n  - name: v1\n    trafficPolicy:\n      portLevelSettings:\n      - port: {number: 80}\n        outlierDetection: {minHealthPercent: -1}\n",
		wantErr: "in.yaml: document 1 (DestinationRule default/r): spec.trafficPolicy.outlierDetection.maxEjectionPercent: must be a percentage between 0 and 100, got 250\n" +
			"in.yaml: document 1 (DestinationRule default/r): spec.trafficPolicy.connectionPool.tcp.maxConnections: must not be negative, got -5\n" +
			"in.yaml: document 1 (DestinationRule default/r): spec.trafficPolicy.loadBalancer.consistentHash.ringHash.minimumRingSize: must be at most 8388608, got 9999999999\n" +
			"in.yaml: document 1 (DestinationRule default/r): spec.subsets[0].trafficPolicy.portLevelSettings[0].outlierDetection.minHealthPercent: must be a percentage between 0 and 100, got -1",
	}, {
		name:    "ServiceEntry for every host",
		input:   "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: all}\nspec:\n  hosts: [\"*\"]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n",
		wantErr: `in.yaml: document 1 (ServiceEntry default/all): spec.hosts[0]: invalid host "*": a ServiceEntry cannot be for every host`,
	}, {
		name:    "YAML syntax error",
		input:   vsHead + "spec:\n  hosts: [reviews\n",
		wantErr: "in.yaml: document 1: invalid YAML: yaml: line 6: did not find expected ',' or ']'",
	}, {
		name:    "a scalar document",
		input:   "just a string\n",
		wantErr: `in.yaml: document 1: expected an object with apiVersion, kind, metadata and spec, got a string ("just a string")`,
	}, {
		name:    "PeerAuthentication portLevelMtls without a selector",
		input:   paHead + "spec:\n  mtls: {mode: STRICT}\n  portLevelMtls:\n    8080: {mode: DISABLE}\n",
		wantErr: `in.yaml: document 1 (PeerAuthentication foo/p): spec.portLevelMtls: a mesh or namespace PeerAuthentication (no selector) cannot have port level mTLS: add spec.selector.matchLabels naming the workload`,
	}, {
		name:    "PeerAuthentication port 0",
		input:   paHead + "spec:\n  selector: {matchLabels: {app: httpbin}}\n  portLevelMtls:\n    0: {mode: DISABLE}\n",
		wantErr: `in.yaml: document 1 (PeerAuthentication foo/p): spec.portLevelMtls[0]: port must be in range 1..65535`,
	}, {
		name:    "PeerAuthentication empty portLevelMtls",
		input:   paHead + "spec:\n  selector: {matchLabels: {app: httpbin}}\n  portLevelMtls: {}\n",
		wantErr: `in.yaml: document 1 (PeerAuthentication foo/p): spec.portLevelMtls: port level mTLS, if defined, must have at least one element`,
	}, {
		name:    "PeerAuthentication bad selector label",
		input:   paHead + "spec:\n  selector: {matchLabels: {\"bad key!\": x}}\n",
		wantErr: `in.yaml: document 1 (PeerAuthentication foo/p): spec.selector.matchLabels[bad key!]: invalid label key: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')`,
	}, {
		name:  "DestinationRule MUTUAL without certificates",
		input: drHead + "spec:\n  host: r\n  trafficPolicy:\n    tls: {mode: MUTUAL}\n",
		wantErr: `in.yaml: document 1 (DestinationRule default/r): spec.trafficPolicy.tls.clientCertificate: client certificate required for mutual tls (or set credentialName)
in.yaml: document 1 (DestinationRule default/r): spec.trafficPolicy.tls.privateKey: private key required for mutual tls (or set credentialName)`,
	}, {
		name:    "DestinationRule credentialName with files, on a subset's port",
		input:   drHead + "spec:\n  host: r\n  subsets:\n  - name: v1\n    labels: {version: v1}\n    trafficPolicy:\n      portLevelSettings:\n      - port: {number: 443}\n        tls: {mode: SIMPLE, credentialName: c, caCertificates: /ca.pem}\n",
		wantErr: `in.yaml: document 1 (DestinationRule default/r): spec.subsets[0].trafficPolicy.portLevelSettings[0].tls.credentialName: cannot specify client certificates or CA certificate or CA CRL if credentialName is set`,
	}, {
		name:    "DestinationRule insecureSkipVerify with SANs",
		input:   drHead + "spec:\n  host: r\n  trafficPolicy:\n    tls: {mode: SIMPLE, insecureSkipVerify: true, subjectAltNames: [r.example.com]}\n",
		wantErr: `in.yaml: document 1 (DestinationRule default/r): spec.trafficPolicy.tls.insecureSkipVerify: cannot specify caCertificates or credentialName or subjectAltNames when insecureSkipVerify is set true`,
	}, {
		name:    "DestinationRule port-level settings without a port",
		input:   drHead + "spec:\n  host: r\n  trafficPolicy:\n    portLevelSettings:\n    - tls: {mode: DISABLE}\n",
		wantErr: `in.yaml: document 1 (DestinationRule default/r): spec.trafficPolicy.portLevelSettings[0].port: required: a port-level traffic policy must have a port`,
	}, {
		name:    "Gateway ISTIO_MUTUAL with a certificate",
		input:   gwHead + "    tls: {mode: ISTIO_MUTUAL, serverCertificate: /c.pem}\n",
		wantErr: `in.yaml: document 1 (Gateway default/gw): spec.servers[0].tls.serverCertificate: ISTIO_MUTUAL TLS cannot have an associated serverCertificate: the gateway's own workload certificate is used`,
	}, {
		name:    "Gateway MUTUAL without a CA bundle",
		input:   gwHead + "    tls: {mode: MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem}\n",
		wantErr: `in.yaml: document 1 (Gateway default/gw): spec.servers[0].tls.caCertificates: MUTUAL TLS requires a client CA bundle (or credentialName)`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name, data := "in.yaml", []byte(tt.input)
			if tt.file != "" {
				var err error
				name = filepath.Base(tt.file)
				if data, err = os.ReadFile(filepath.Join("testdata", tt.file)); err != nil {
					t.Fatal(err)
				}
			}
			rs, err := Parse(name, data)
			if err == nil {
				t.Fatalf("Parse succeeded with %d resources, want error %q", len(rs), tt.wantErr)
			}
			if rs != nil {
				t.Errorf("Parse returned %d resources with an error, want none", len(rs))
			}
			if got := err.Error(); got != tt.wantErr {
				t.Errorf("error:\n got %s\nwant %s", got, tt.wantErr)
			}
			var list ErrorList
			if !asErrorList(err, &list) || len(list) == 0 || list[0].File != name {
				t.Errorf("error is %T, want an ErrorList naming %s", err, name)
			}
		})
	}
}

func asErrorList(err error, out *ErrorList) bool {
	l, ok := err.(ErrorList)
	*out = l
	return ok
}

func TestErrorFields(t *testing.T) {
	data, err := os.ReadFile("testdata/invalid/reviews-vs-header.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse("reviews-vs-header.yaml", append([]byte("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]\n---\n"), data...))
	list, ok := err.(ErrorList)
	if !ok || len(list) != 1 {
		t.Fatalf("got %v, want one error", err)
	}
	want := Error{File: "reviews-vs-header.yaml", Doc: 1, Kind: "VirtualService", Namespace: "book-demo", Name: "reviews-vs",
		Field: "spec.http[0].match[1].header", Msg: `unknown field "header"; did you mean "headers"?`}
	if *list[0] != want {
		t.Errorf("got %+v\nwant %+v", *list[0], want)
	}
}

func TestParseInNamespace(t *testing.T) {
	in := "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: a}\nspec: {host: a}\n" +
		"---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: b, namespace: other}\nspec: {host: b}\n"
	tests := []struct{ namespace, wantA, wantB string }{
		{"", "default", "other"},
		{"bookinfo", "bookinfo", "other"},
	}
	for _, tt := range tests {
		rs, err := ParseInNamespace("in.yaml", []byte(in), tt.namespace)
		if err != nil {
			t.Fatal(err)
		}
		if rs[0].Namespace != tt.wantA || rs[1].Namespace != tt.wantB {
			t.Errorf("ParseInNamespace(%q): namespaces %s, %s; want %s, %s", tt.namespace, rs[0].Namespace, rs[1].Namespace, tt.wantA, tt.wantB)
		}
	}
}

func TestProtoNamesAccepted(t *testing.T) {
	in := "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\nspec:\n  hosts: [r]\n  http:\n  - route:\n    - destination: {host: r}\n    retries: {attempts: 2, per_try_timeout: 250ms}\n"
	rs, err := Parse("in.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	got := rs[0].Spec.(*networking.VirtualService).GetHttp()[0].GetRetries().GetPerTryTimeout().AsDuration().String()
	if got != "250ms" {
		t.Errorf("perTryTimeout = %s, want 250ms", got)
	}
}

func TestUnmarshal(t *testing.T) {
	tests := []struct {
		name        string
		doc         string
		wantRev     uint64
		wantErr     string
		wantCreated string // RFC 3339, "" for none
	}{
		{"stored document", `{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"r","namespace":"ns","resourceVersion":"12","creationTimestamp":"2026-03-01T12:00:05Z"},"spec":{"host":"r"}}`, 12, "", "2026-03-01T12:00:05Z"},
		{"API server's object", `{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"p","namespace":"ns","resourceVersion":"8812","creationTimestamp":"2026-03-01T13:00:05+01:00","uid":"u","generation":1},"spec":{}}`, 8812, "", "2026-03-01T12:00:05Z"},
		{"null creationTimestamp", `{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"r","creationTimestamp":null},"spec":{"host":"r"}}`, 0, "", ""},
		{"bad creationTimestamp", `{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"r","creationTimestamp":"yesterday"},"spec":{"host":"r"}}`, 0,
			`DestinationRule default/r: metadata.creationTimestamp: expected an RFC 3339 time such as 2024-05-01T12:00:00Z, got a string ("yesterday")`, ""},
		{"numeric creationTimestamp", `{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"r","creationTimestamp":1},"spec":{"host":"r"}}`, 0,
			`DestinationRule default/r: metadata.creationTimestamp: expected an RFC 3339 time such as 2024-05-01T12:00:00Z, got a number (1)`, ""},
		{"64-bit integers as strings", `{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"r"},"spec":{"host":"r","trafficPolicy":{"loadBalancer":{"consistentHash":{"httpHeaderName":"x","minimumRingSize":"1024"}}}}}`, 0, "", ""},
		{"not JSON", `{"apiVersion":`, 0, "invalid JSON: unexpected EOF", ""},
		{"bad field", `{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"r"},"spec":{"hots":"r"}}`, 0,
			`DestinationRule default/r: spec.hots: unknown field "hots"; did you mean "host"?`, ""},
		{"bad resourceVersion", `{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"r","resourceVersion":"x"},"spec":{"host":"r"}}`, 0,
			`DestinationRule default/r: metadata.resourceVersion: expected a decimal revision, got "x"`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Unmarshal([]byte(tt.doc))
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error = %v, want %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Revision != tt.wantRev {
				t.Errorf("Revision = %d, want %d", r.Revision, tt.wantRev)
			}
			created := ""
			if !r.CreationTimestamp.IsZero() {
				created = r.CreationTimestamp.Format(time.RFC3339)
			}
			if created != tt.wantCreated {
				t.Errorf("CreationTimestamp = %q, want %q", created, tt.wantCreated)
			}
			if created == "" {
				return
			}
			// What the store writes back reads the same.
			doc, err := Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			again, err := Unmarshal(b)
			if err != nil || !again.CreationTimestamp.Equal(r.CreationTimestamp) {
				t.Errorf("round trip: %v (%v), want %v; document %s", again.CreationTimestamp, err, r.CreationTimestamp, b)
			}
		})
	}
}

func TestMarshal(t *testing.T) {
	r := Resource{
		APIVersion: "networking.istio.io/v1", Kind: DestinationRule, Namespace: "default", Name: "reviews",
		Labels: map[string]string{"app": "reviews"}, Revision: 3,
		Spec: &networking.DestinationRule{Host: "reviews", Subsets: []*networking.Subset{{Name: "v1", Labels: map[string]string{"version": "v1"}}}},
	}
	doc, err := Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/golden/destinationrule.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("Marshal:\n%s\nwant (testdata/golden/destinationrule.yaml):\n%s", got, want)
	}
	if _, err := Marshal(Resource{Kind: Gateway, Name: "x", Namespace: "y"}); err == nil {
		t.Error("Marshal without a spec succeeded")
	}
}

func TestIsIstioKind(t *testing.T) {
	tests := []struct {
		apiVersion, kind string
		want             bool
	}{
		{"networking.istio.io/v1", "VirtualService", true},
		{"security.istio.io/v1beta1", "AuthorizationPolicy", true},
		{"networking.istio.io/v1alpha3", "EnvoyFilter", true},
		{"telemetry.istio.io/v1", "Telemetry", true},
		{"v1", "Service", false},
		{"apps/v1", "Deployment", false},
		{"gateway.networking.k8s.io/v1", "HTTPRoute", false},
		{"networking.istio.io/v1", "", false},
		{"", "VirtualService", false},
	}
	for _, tt := range tests {
		if got := IsIstioKind(tt.apiVersion, tt.kind); got != tt.want {
			t.Errorf("IsIstioKind(%q, %q) = %v, want %v", tt.apiVersion, tt.kind, got, tt.want)
		}
	}
}

func TestLookupKind(t *testing.T) {
	tests := []struct {
		name string
		want Kind // "" = not found
	}{
		{"VirtualService", VirtualService},
		{"virtualservice", VirtualService},
		{"VirtualServices", VirtualService},
		{"vs", VirtualService},
		{"VS", VirtualService},
		{"virtualservices.networking.istio.io", VirtualService},
		{"dr", DestinationRule},
		{"gw", Gateway},
		{"gateways", Gateway},
		{"se", ServiceEntry},
		{"sidecar", Sidecar},
		{"pa", PeerAuthentication},
		{"authorizationpolicies", AuthorizationPolicy},
		{"RequestAuthentication", RequestAuthentication},
		{"service", ""},
		{"pods", ""},
		{"", ""},
		{"virtualservices.security.istio.io", ""},
	}
	for _, tt := range tests {
		info, ok := LookupKind(tt.name)
		if ok != (tt.want != "") || info.Kind != tt.want {
			t.Errorf("LookupKind(%q) = %q, %v; want %q", tt.name, info.Kind, ok, tt.want)
		}
	}
}

func TestSplit(t *testing.T) {
	data, err := os.ReadFile("testdata/valid/list.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data = append(data, []byte("---\napiVersion: v1\nkind: Service\nmetadata: {name: ratings}\n")...)
	docs, err := Split(data)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range docs {
		got = append(got, d.Kind)
		if _, err := Unmarshal(d.JSON); IsIstioKind(d.APIVersion, d.Kind) && err != nil {
			t.Errorf("document %d does not unmarshal: %v", d.Index, err)
		}
	}
	if want := []string{"VirtualService", "DestinationRule", "Service"}; !slices.Equal(got, want) {
		t.Errorf("kinds = %v, want %v", got, want)
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{{"header", "headers", 1}, {"", "abc", 3}, {"kitten", "sitting", 3}, {"same", "same", 0}}
	for _, tt := range tests {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}
