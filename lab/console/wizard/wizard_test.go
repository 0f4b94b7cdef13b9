package wizard

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/meshlab/meshlab/controlplane/config"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

var bookinfoVersions = []string{"v1", "v2", "v3"}

func reviews(action string) Request {
	return Request{Action: action, Namespace: "book-demo", Service: "reviews", Versions: bookinfoVersions}
}

// cases are the requests whose YAML is kept under testdata/golden: every
// action with its defaults, and each advanced option.
func cases() map[string]Request {
	c := map[string]Request{}
	for _, a := range Actions {
		c[a+"-defaults"] = reviews(a)
	}
	rr := reviews(RequestRouting)
	rr.Rules = []Rule{
		{
			Matches: []Match{{Field: "headers", Name: "end-user", Op: "exact", Value: "jason"}, {Field: "uri", Op: "prefix", Value: "/api"}},
			Weights: []Weight{{Version: "v2", Weight: 100}, {Version: "v3", Weight: 20, Mirror: true}},
			Fault:   &Fault{Delay: &Delay{FixedDelay: "7s", Percentage: 10}},
			Timeout: "10s",
			Retries: &Retries{Attempts: 2},
		},
		{Matches: []Match{{Field: "method", Op: "exact", Value: "POST"}, {Field: "authority", Op: "regex", Value: "reviews(:9080)?"}, {Field: "scheme", Op: "exact", Value: "http"}},
			Weights: []Weight{{Version: "v1", Weight: 100}}, Fault: &Fault{Abort: &Abort{HTTPStatus: 500, Percentage: 50}}},
		{Weights: []Weight{{Version: "v1", Weight: 100}}},
	}
	c["request_routing-rules"] = rr
	ts := reviews(TrafficShifting)
	ts.APIVersion = "v1beta1"
	ts.Weights = []Weight{{Version: "v1", Weight: 80}, {Version: "v2", Weight: 20}, {Version: "v3", Weight: 50, Mirror: true}}
	ts.Advanced = &Advanced{
		TLS:                &TLS{Mode: "ISTIO_MUTUAL"},
		LoadBalancer:       &LoadBalancer{ConsistentHash: &ConsistentHash{HTTPCookie: &Cookie{Name: "user", TTL: "0s"}}},
		ConnectionPool:     &ConnectionPool{},
		OutlierDetection:   &OutlierDetection{Interval: "1s", BaseEjectionTime: "3m", MaxEjectionPercent: 100},
		Gateway:            &Gateway{Hosts: []string{"bookinfo.example.com"}, Mesh: true},
		PeerAuthentication: &PeerAuthentication{Mode: "STRICT"},
	}
	c["traffic_shifting-advanced"] = ts
	fi := reviews(FaultInjection)
	fi.Fault = &Fault{Abort: &Abort{HTTPStatus: 418, Percentage: 12.5}}
	fi.Advanced = &Advanced{TLS: &TLS{Mode: "MUTUAL", ClientCertificate: "/etc/certs/cert.pem", PrivateKey: "/etc/certs/key.pem", CACertificates: "/etc/certs/ca.pem"},
		LoadBalancer: &LoadBalancer{Simple: "LEAST_REQUEST"}, Gateway: &Gateway{Existing: "istio-system/ingress"}}
	c["fault_injection-abort-mutual"] = fi
	to := reviews(RequestTimeouts)
	to.Timeouts = &Timeouts{Timeout: "500ms"}
	to.Weights = []Weight{{Version: "v3", Weight: 100}}
	to.Advanced = &Advanced{TLS: &TLS{Mode: "DISABLE"}, LoadBalancer: &LoadBalancer{ConsistentHash: &ConsistentHash{UseSourceIP: true}},
		PeerAuthentication: &PeerAuthentication{Mode: "PERMISSIVE", App: "reviews-app"}}
	c["request_timeouts-timeout-only"] = to
	tcp := reviews(TCPTrafficShifting)
	tcp.Versions = []string{"v1", "v2"}
	tcp.Advanced = &Advanced{Hosts: []string{"reviews"}, LoadBalancer: &LoadBalancer{ConsistentHash: &ConsistentHash{HTTPHeaderName: "x-user"}}}
	c["tcp_traffic_shifting-two"] = tcp
	return c
}

func generateYAML(t *testing.T, r Request) []byte {
	t.Helper()
	objs, err := Generate(r)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	out, err := YAML(objs)
	if err != nil {
		t.Fatalf("YAML: %v", err)
	}
	return out
}

func TestGolden(t *testing.T) {
	for name, r := range cases() {
		t.Run(name, func(t *testing.T) {
			got := generateYAML(t, r)
			path := filepath.Join("testdata", "golden", name+".yaml")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to write it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs (run with -update if intended):\ngot:\n%s\nwant:\n%s", path, got, want)
			}
		})
	}
}

// decodeAll parses a YAML stream and drops null fields, so Kiali's `~`
// and an absent field compare equal.
func decodeAll(t *testing.T, data []byte) []any {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []any
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if v != nil {
			docs = append(docs, dropNulls(v))
		}
	}
}

func dropNulls(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range v {
			if e != nil {
				out[k] = dropNulls(e)
			}
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = dropNulls(e)
		}
		return out
	}
	return v
}

// The walkthrough's 0/50/50 split of reviews, done with the request
// routing wizard as Kiali 1.80 (v1beta1), writes the YAML it prints.
func TestWalkthroughSplit(t *testing.T) {
	want, err := os.ReadFile("testdata/walkthrough-reviews.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		r    Request
	}{
		{"request weights", Request{Action: RequestRouting, Namespace: "book-demo", Service: "reviews", APIVersion: "v1beta1", Versions: bookinfoVersions,
			Weights: []Weight{{Version: "v1", Weight: 0}, {Version: "v2", Weight: 50}, {Version: "v3", Weight: 50}}}},
		{"one rule", Request{Action: RequestRouting, Namespace: "book-demo", Service: "reviews", APIVersion: "v1beta1", Versions: bookinfoVersions,
			Rules: []Rule{{Weights: []Weight{{Version: "v1", Weight: 0}, {Version: "v2", Weight: 50}, {Version: "v3", Weight: 50}}}}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := generateYAML(t, tt.r)
			g, w := decodeAll(t, got), decodeAll(t, want)
			if !reflect.DeepEqual(g, w) {
				t.Errorf("generated:\n%s\nwant (semantically):\n%s", got, want)
			}
			// Kiali writes the nulls that clear fields; so do we.
			for _, null := range []string{"annotations: null", "trafficPolicy: null", "gateways: null"} {
				if !strings.Contains(string(got), null) {
					t.Errorf("no %q in\n%s", null, got)
				}
			}
		})
	}
	// v1 differs only in apiVersion.
	r := Request{Action: RequestRouting, Namespace: "book-demo", Service: "reviews", Versions: bookinfoVersions,
		Weights: []Weight{{Version: "v1", Weight: 0}, {Version: "v2", Weight: 50}, {Version: "v3", Weight: 50}}}
	got := strings.ReplaceAll(string(generateYAML(t, r)), "networking.istio.io/v1\n", "networking.istio.io/v1beta1\n")
	if !reflect.DeepEqual(decodeAll(t, []byte(got)), decodeAll(t, want)) {
		t.Errorf("v1 generated, apiVersion aside, differs:\n%s", got)
	}
}

// Everything a wizard writes is accepted by the control plane: it parses
// and validates as `meshlab apply` would, with the label on every object.
func TestGeneratedObjectsApply(t *testing.T) {
	for name, r := range cases() {
		t.Run(name, func(t *testing.T) {
			objs, err := Generate(r)
			if err != nil {
				t.Fatal(err)
			}
			data, err := YAML(objs)
			if err != nil {
				t.Fatal(err)
			}
			rs, err := config.Parse(name+".yaml", data)
			if err != nil {
				t.Fatalf("Parse: %v\n%s", err, data)
			}
			if len(rs) != len(objs) {
				t.Fatalf("parsed %d resources, generated %d", len(rs), len(objs))
			}
			for i, res := range rs {
				if err := config.Validate(res); err != nil {
					t.Errorf("Validate %s: %v", res.Key(), err)
				}
				if res.Labels[Label] != r.Action {
					t.Errorf("%s labels %v, want %s: %s", res.Key(), res.Labels, Label, r.Action)
				}
				if want := objs[i].Kind + "/" + objs[i].Namespace + "/" + objs[i].Name; res.Key() != want {
					t.Errorf("object %d is %s, Object says %s", i, res.Key(), want)
				}
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	weights := func(doc map[string]any, proto string) []any {
		var out []any
		for _, d := range doc["spec"].(map[string]any)[proto].([]any)[0].(map[string]any)["route"].([]any) {
			out = append(out, d.(map[string]any)["weight"])
		}
		return out
	}
	for _, tt := range []struct {
		versions []string
		want     []any
	}{
		{[]string{"v1"}, []any{100}},
		{[]string{"v1", "v2"}, []any{50, 50}},
		{[]string{"v1", "v2", "v3"}, []any{33, 33, 34}},
		{[]string{"a", "b", "c", "d", "e", "f", "g"}, []any{14, 14, 14, 14, 14, 14, 16}},
	} {
		for _, a := range []string{TrafficShifting, TCPTrafficShifting, RequestRouting} {
			proto := "http"
			if a == TCPTrafficShifting {
				proto = "tcp"
			}
			objs, err := Generate(Request{Action: a, Namespace: "ns", Service: "s", Versions: tt.versions})
			if err != nil {
				t.Fatal(err)
			}
			if got := weights(objs[1].Document, proto); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%s over %v: weights %v, want %v", a, tt.versions, got, tt.want)
			}
		}
	}
	objs, err := Generate(reviews(FaultInjection))
	if err != nil {
		t.Fatal(err)
	}
	route := objs[1].Document["spec"].(map[string]any)["http"].([]any)[0].(map[string]any)
	wantFault := map[string]any{
		"delay": map[string]any{"percentage": map[string]any{"value": 100.0}, "fixedDelay": "5s"},
		"abort": map[string]any{"percentage": map[string]any{"value": 100.0}, "httpStatus": 503},
	}
	if !reflect.DeepEqual(route["fault"], wantFault) {
		t.Errorf("fault %v, want %v", route["fault"], wantFault)
	}
	objs, err = Generate(reviews(RequestTimeouts))
	if err != nil {
		t.Fatal(err)
	}
	route = objs[1].Document["spec"].(map[string]any)["http"].([]any)[0].(map[string]any)
	wantRetries := map[string]any{"attempts": 3, "perTryTimeout": "2s", "retryOn": "gateway-error,connect-failure,refused-stream"}
	if route["timeout"] != "2s" || !reflect.DeepEqual(route["retries"], wantRetries) {
		t.Errorf("timeout %v retries %v, want 2s and %v", route["timeout"], route["retries"], wantRetries)
	}
}

func TestErrors(t *testing.T) {
	with := func(f func(*Request)) Request {
		r := reviews(TrafficShifting)
		f(&r)
		return r
	}
	for _, tt := range []struct {
		name string
		r    Request
		want []string
	}{
		{"negative weight", with(func(r *Request) {
			r.Weights = []Weight{{Version: "v1", Weight: 105}, {Version: "v2", Weight: -5}}
		}), []string{"weights[0].weight: 105, want 0..100", "weights[1].weight: -5, want 0..100"}},
		{"sum", with(func(r *Request) { r.Weights = []Weight{{Version: "v1", Weight: 40}, {Version: "v2", Weight: 50}} }), []string{"weights: sum is 90, want 100"}},
		{"no versions", with(func(r *Request) { r.Versions = nil }), []string{"versions: none; the service has no workloads with a version label"}},
		{"unknown version", with(func(r *Request) { r.Weights = []Weight{{Version: "v9", Weight: 100}} }), []string{`weights[0].version: "v9" is not a version of the service (v1, v2, v3)`}},
		{"twice", with(func(r *Request) {
			r.Weights = []Weight{{Version: "v1", Weight: 50}, {Version: "v1", Weight: 50}}
		}), []string{`weights[1].version: "v1" also at weights[0]`}},
		{"two mirrors", with(func(r *Request) {
			r.Weights = []Weight{{Version: "v1", Weight: 100}, {Version: "v2", Weight: 5, Mirror: true}, {Version: "v3", Weight: 5, Mirror: true}}
		}), []string{"weights[2].mirror: a second mirrored version"}},
		{"tcp mirror", with(func(r *Request) {
			r.Action = TCPTrafficShifting
			r.Weights = []Weight{{Version: "v1", Weight: 100}, {Version: "v2", Weight: 5, Mirror: true}}
		}), []string{"weights: TCP routes cannot mirror"}},
		{"action", with(func(r *Request) { r.Action = "shift" }), []string{`action: "shift", want one of request_routing`}},
		{"identity", with(func(r *Request) { r.Namespace, r.Service, r.APIVersion = "", "Re_views", "v2" }),
			[]string{"namespace: required", `service: "Re_views"`, `apiVersion: "v2", want v1 or v1beta1`}},
		{"match", with(func(r *Request) {
			r.Action = RequestRouting
			r.Rules = []Rule{{Matches: []Match{{Field: "path", Op: "exact", Value: "/"}, {Field: "uri", Op: "glob", Value: "/"},
				{Field: "headers", Op: "exact", Value: "x"}, {Field: "uri", Op: "regex", Value: "("}}}}
		}), []string{`rules[0].matches[0].field: "path"`, `rules[0].matches[1].op: "glob", want exact, prefix or regex`,
			"rules[0].matches[2].name: required for a header match", `rules[0].matches[3].value: regex "("`, "rules[0].matches[3].field: uri matched twice"}},
		{"catch-all first", with(func(r *Request) {
			r.Action = RequestRouting
			r.Rules = []Rule{{}, {Matches: []Match{{Field: "uri", Op: "prefix", Value: "/a"}}}}
		}), []string{"rules[0].matches: none, so the rule catches every request"}},
		{"fault", with(func(r *Request) {
			r.Action = FaultInjection
			r.Fault = &Fault{Delay: &Delay{FixedDelay: "soon", Percentage: 120}, Abort: &Abort{HTTPStatus: 99}}
		}), []string{`fault.delay.fixedDelay: "soon" is not a duration`, "fault.delay.percentage: 120, want 0..100", "fault.abort.httpStatus: 99"}},
		{"empty fault", with(func(r *Request) { r.Action = FaultInjection; r.Fault = &Fault{} }), []string{"fault: neither delay nor abort"}},
		{"timeouts", with(func(r *Request) {
			r.Action = RequestTimeouts
			r.Timeouts = &Timeouts{Timeout: "0s", Retries: &Retries{Attempts: -1, PerTryTimeout: "x"}}
		}), []string{`timeouts.timeout: "0s", want at least 1ms`, "timeouts.retries.attempts: -1", `timeouts.retries.perTryTimeout: "x"`}},
		{"advanced", with(func(r *Request) {
			r.Advanced = &Advanced{TLS: &TLS{Mode: "MUTUAL"}, LoadBalancer: &LoadBalancer{Simple: "FASTEST"},
				OutlierDetection: &OutlierDetection{MaxEjectionPercent: 101}, Gateway: &Gateway{Existing: "ingress"},
				PeerAuthentication: &PeerAuthentication{Mode: "ON"}}
		}), []string{"advanced.tls.clientCertificate: required with mode MUTUAL", `advanced.loadBalancer.simple: "FASTEST"`,
			"advanced.outlierDetection.maxEjectionPercent: 101", `advanced.gateway.existing: "ingress", want namespace/name`,
			`advanced.peerAuthentication.mode: "ON"`}},
		{"hash", with(func(r *Request) {
			r.Advanced = &Advanced{LoadBalancer: &LoadBalancer{ConsistentHash: &ConsistentHash{HTTPHeaderName: "x", UseSourceIP: true}}}
		}), []string{"advanced.loadBalancer.consistentHash: set exactly one"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := Generate(tt.r)
			if err == nil {
				t.Fatalf("no error, generated %d objects", len(objs))
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
}

// The dialog posts JSON; its camelCase fields reach Generate.
func TestRequestJSON(t *testing.T) {
	body := `{"action":"request_routing","namespace":"book-demo","service":"reviews","apiVersion":"v1beta1",
	  "versions":["v1","v2","v3"],
	  "rules":[{"matches":[{"field":"headers","name":"end-user","op":"exact","value":"jason"}],"weights":[{"version":"v2","weight":100}],
	            "fault":{"abort":{"httpStatus":500,"percentage":50}},"timeout":"3s","retries":{"attempts":5,"perTryTimeout":"1s","retryOn":"5xx"}},
	           {"weights":[{"version":"v1","weight":90},{"version":"v3","weight":10},{"version":"v2","weight":25,"mirror":true}]}],
	  "advanced":{"tls":{"mode":"ISTIO_MUTUAL"},"loadBalancer":{"consistentHash":{"useSourceIp":true}},
	              "connectionPool":{"maxConnections":10,"http1MaxPendingRequests":5},"outlierDetection":{"consecutive5xxErrors":3,"interval":"10s"},
	              "gateway":{"port":8080,"hosts":["reviews.example.com"]},"peerAuthentication":{"mode":"PERMISSIVE"}}}`
	var r Request
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatal(err)
	}
	out := string(generateYAML(t, r))
	for _, want := range []string{
		"apiVersion: networking.istio.io/v1beta1", "end-user:\n", "exact: jason", "httpStatus: 500", "timeout: 3s", "attempts: 5", "retryOn: 5xx",
		"weight: 90", "mirrorPercentage:\n        value: 25", "useSourceIp: true", "maxConnections: 10", "http1MaxPendingRequests: 5",
		"consecutive5xxErrors: 3", "number: 8080", "- reviews.example.com", "mode: PERMISSIVE", "apiVersion: security.istio.io/v1beta1",
		"kiali_wizard_related: PeerAuthentication/reviews", "- book-demo/reviews-gateway",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
}
