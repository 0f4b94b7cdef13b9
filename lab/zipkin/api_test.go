package zipkin

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openzipkin/zipkin-go/model"
	"github.com/openzipkin/zipkin-go/proto/zipkin_proto3"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// fixtureNow is a minute after the fixtures' first span.
var fixtureNow = time.UnixMicro(1767225600000000).Add(time.Minute)

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// serve starts the API on loopback over a store holding the fixtures.
func serve(t testing.TB, opts Options, fixtures ...string) (string, *Store) {
	t.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return fixtureNow }
	}
	st := New(opts)
	srv := httptest.NewServer(Handler(st, nil))
	t.Cleanup(srv.Close)
	for _, f := range fixtures {
		post(t, srv.URL, "application/json", "", readFixture(t, f), http.StatusAccepted)
	}
	return srv.URL, st
}

func post(t testing.TB, url, ctype, enc string, body []byte, want int) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/api/v2/spans", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if enc != "" {
		req.Header.Set("Content-Encoding", enc)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("POST /api/v2/spans (%s, %q): status %d, want %d: %s", ctype, enc, resp.StatusCode, want, b)
	}
	return string(b)
}

func get(t testing.TB, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// TestAPIGolden checks every query endpoint's answer, as Zipkin's API
// documents its shape (zipkin2-api.yaml), against testdata/golden.
func TestAPIGolden(t *testing.T) {
	base, _ := serve(t, Options{AutocompleteKeys: []string{"istio.canonical_service", "http.method"}},
		"bookinfo-trace.json", "more-traces.json")
	endTs := "1767225720000" // fixtureNow + 1 min, in ms
	for _, tc := range []struct {
		name, path string
		status     int
	}{
		{"services", "/api/v2/services", 200},
		{"spans", "/api/v2/spans?serviceName=reviews.default", 200},
		{"spans-uppercase", "/api/v2/spans?serviceName=Reviews.Default", 200},
		{"remote-services", "/api/v2/remoteServices?serviceName=productpage.default", 200},
		{"trace-128", "/api/v2/trace/6d1f0e8a4c2b9a7e3f5d1c0b8a9e7f61", 200},
		// strictTraceId (Zipkin's default): the low half alone is another
		// trace id, and finds only spans reported with that 64-bit id.
		{"trace-low-half", "/api/v2/trace/3f5d1c0b8a9e7f61", 404},
		{"trace-64", "/api/v2/trace/3f5d1c0b8a9e7f62", 200},
		{"trace-64-padded", "/api/v2/trace/00000000000000003f5d1c0b8a9e7f62", 200},
		{"trace-bad", "/api/v2/trace/xyz", 400},
		{"trace-many", "/api/v2/traceMany?traceIds=3f5d1c0b8a9e7f62,6d1f0e8a4c2b9a7e3f5d1c0b8a9e7f61,0000000000000001", 200},
		{"traces-service", "/api/v2/traces?serviceName=ratings.default&endTs=" + endTs, 200},
		{"traces-limit", "/api/v2/traces?limit=1&endTs=" + endTs, 200},
		// Istio's tracing integration test queries by span name alone.
		{"traces-istio-spanname", "/api/v2/traces?limit=100&spanName=productpage.default.svc.cluster.local:9080/*&endTs=" + endTs, 200},
		{"traces-annotation", "/api/v2/traces?annotationQuery=error%20and%20http.status_code=503&endTs=" + endTs, 200},
		{"traces-annotation-service", "/api/v2/traces?serviceName=productpage.default&annotationQuery=error&endTs=" + endTs, 200},
		{"traces-min-duration", "/api/v2/traces?serviceName=reviews.default&minDuration=30000&endTs=" + endTs, 200},
		{"traces-duration-window", "/api/v2/traces?minDuration=1000&maxDuration=1000&endTs=" + endTs, 200},
		{"traces-lookback", "/api/v2/traces?endTs=1767225605000&lookback=5000", 200},
		{"traces-max-without-min", "/api/v2/traces?maxDuration=10", 400},
		{"dependencies", "/api/v2/dependencies?endTs=" + endTs + "&lookback=3600000", 200},
		{"dependencies-no-endts", "/api/v2/dependencies", 400},
		{"autocomplete-keys", "/api/v2/autocompleteKeys", 200},
		{"autocomplete-values", "/api/v2/autocompleteValues?key=istio.canonical_service", 200},
		{"autocomplete-values-unconfigured", "/api/v2/autocompleteValues?key=http.url", 200},
		{"health", "/health", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := get(t, base+tc.path)
			if status != tc.status {
				t.Fatalf("GET %s: status %d, want %d: %s", tc.path, status, tc.status, body)
			}
			if status != 200 {
				if len(bytes.TrimSpace(body)) == 0 {
					t.Fatalf("GET %s: status %d with no message", tc.path, status)
				}
				return
			}
			var v any
			if err := json.Unmarshal(body, &v); err != nil {
				t.Fatalf("GET %s: not JSON: %v: %s", tc.path, err, body)
			}
			pretty, _ := json.MarshalIndent(v, "", " ")
			golden := filepath.Join("testdata", "golden", tc.name+".json")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, append(pretty, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestAPIGolden -update to create it)", err)
			}
			if got := string(pretty) + "\n"; got != string(want) {
				t.Errorf("GET %s differs from %s:\n%s", tc.path, golden, got)
			}
		})
	}
}

// TestTraceQueryCounts pins the query semantics independently of golden
// files: how many traces and spans each query finds.
func TestTraceQueryCounts(t *testing.T) {
	base, _ := serve(t, Options{}, "bookinfo-trace.json", "more-traces.json")
	endTs := "&endTs=1767225720000"
	for _, tc := range []struct {
		query string
		spans []int // spans of each trace returned, newest first (by latest span)
	}{
		{"", []int{8, 1, 3}},
		{"serviceName=productpage.default", []int{8, 3}},
		{"serviceName=istio-ingressgateway.istio-system", []int{8}},
		{"serviceName=nobody", nil},
		{"spanName=ratings.default.svc.cluster.local:9080/*", []int{8, 3}},
		{"spanName=all", []int{8, 1, 3}},
		{"annotationQuery=error", []int{3}},
		{"annotationQuery=http.method=POST", []int{1}},
		{"annotationQuery=http.method=GET%20and%20response_flags=UF", []int{3}},
		{"annotationQuery=http.method", []int{8, 1, 3}},
		// serviceName constrains the tags: the error is on reviews' span.
		{"serviceName=productpage.default&annotationQuery=error", nil},
		{"serviceName=reviews.default&annotationQuery=error", []int{3}},
		{"minDuration=40000", []int{8}},
		{"minDuration=1&maxDuration=1000", []int{1, 3}},
		// A limit counts low-64-bit buckets, as Zipkin's: the bucket holding
		// two strict traces comes back whole.
		{"limit=1", []int{8, 1}},
		{"limit=2", []int{8, 1}},
		{"limit=3", []int{8, 1, 3}},
		// The bucket is tested as a whole first (Zipkin's request.test on the
		// low-id group): its root, the gateway span at T0, is out of range.
		{"lookback=115000", []int{3}},
		{"lookback=55000", nil},
	} {
		t.Run(tc.query, func(t *testing.T) {
			status, body := get(t, base+"/api/v2/traces?"+tc.query+endTs)
			if status != 200 {
				t.Fatalf("status %d: %s", status, body)
			}
			var traces [][]json.RawMessage
			if err := json.Unmarshal(body, &traces); err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, tr := range traces {
				got = append(got, len(tr))
			}
			if !equalInts(got, tc.spans) {
				t.Errorf("traces?%s: span counts %v, want %v", tc.query, got, tc.spans)
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestPostFormats: JSON, proto3 (encoded by zipkin-go's own serializer) and
// gzip are taken with 202; a bad payload is refused with 400 and a message
// that says what was wrong.
func TestPostFormats(t *testing.T) {
	fixture := readFixture(t, "bookinfo-trace.json")
	var spans []*model.SpanModel
	if err := json.Unmarshal(fixture, &spans); err != nil {
		t.Fatal(err)
	}
	proto, err := zipkin_proto3.SpanSerializer{}.Serialize(spans)
	if err != nil {
		t.Fatal(err)
	}
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(b)
		_ = zw.Close()
		return buf.Bytes()
	}
	for _, tc := range []struct {
		name, ctype, enc string
		body             []byte
		status           int
		msg              string // in the 400's body
	}{
		{"json", "application/json", "", fixture, 202, ""},
		{"json-charset", "application/json; charset=utf-8", "", fixture, 202, ""},
		{"no-content-type", "", "", fixture, 202, ""},
		{"json-gzip", "application/json", "gzip", gz(fixture), 202, ""},
		{"proto3", "application/x-protobuf", "", proto, 202, ""},
		{"proto3-gzip", "application/x-protobuf", "gzip", gz(proto), 202, ""},
		{"not-json", "application/json", "", []byte("{not json"), 400, "decoding Zipkin v2 JSON"},
		{"object-not-list", "application/json", "", []byte(`{"traceId":"a","id":"b"}`), 400, "decoding Zipkin v2 JSON"},
		{"no-trace-id", "application/json", "", []byte(`[{"id":"000000000000000b","name":"x"}]`), 400, "valid traceId required"},
		{"no-span-id", "application/json", "", []byte(`[{"traceId":"000000000000000a","name":"x"}]`), 400, "valid span id required"},
		{"bad-proto", "application/x-protobuf", "", []byte{0xff, 0xff, 0xff}, 400, "proto3"},
		{"bad-gzip", "application/json", "gzip", fixture, 400, "gzip"},
		{"thrift", "application/x-thrift", "", []byte{1}, 400, "unsupported Content-Type"},
		{"brotli", "application/json", "br", fixture, 400, "unsupported Content-Encoding"},
		// A small gzip body that inflates past the bound is refused, not
		// inflated into memory.
		{"gzip-bomb", "application/json", "gzip", gz(bytes.Repeat([]byte(" "), maxBody+1)), 400, "smaller batches"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base, st := serve(t, Options{})
			msg := post(t, base, tc.ctype, tc.enc, tc.body, tc.status)
			n, _ := st.Len()
			if tc.status == 202 {
				if n != len(spans) {
					t.Errorf("stored %d spans, want %d", n, len(spans))
				}
				status, body := get(t, base+"/api/v2/trace/6d1f0e8a4c2b9a7e3f5d1c0b8a9e7f61")
				var got []*model.SpanModel
				if status != 200 || json.Unmarshal(body, &got) != nil || len(got) != len(spans) {
					t.Errorf("trace read back: status %d, %s", status, body)
				}
				return
			}
			if n != 0 {
				t.Errorf("a refused POST stored %d spans", n)
			}
			if !strings.Contains(msg, tc.msg) {
				t.Errorf("400 says %q, want it to mention %q", msg, tc.msg)
			}
		})
	}
}

// TestDuplicateReport: a reporter's retry of the same batch is kept once.
func TestDuplicateReport(t *testing.T) {
	base, st := serve(t, Options{}, "bookinfo-trace.json", "bookinfo-trace.json")
	if n, _ := st.Len(); n != 8 {
		t.Errorf("after the same batch twice: %d spans, want 8", n)
	}
	_, body := get(t, base+"/api/v2/trace/6d1f0e8a4c2b9a7e3f5d1c0b8a9e7f61")
	var got []json.RawMessage
	if err := json.Unmarshal(body, &got); err != nil || len(got) != 8 {
		t.Errorf("trace: %d spans (%v), want 8", len(got), err)
	}
}

// TestProtoWithoutKindOrTimestamp: proto3 has no absent fields; a span
// without kind or timestamp must read back as JSON without them, not fail
// to encode (zipkin-go refuses a timestamp at the epoch).
func TestProtoWithoutKindOrTimestamp(t *testing.T) {
	one := []*model.SpanModel{{
		SpanContext: model.SpanContext{TraceID: model.TraceID{Low: 0x1234}, ID: 0x99},
		Name:        "Local-Work",
	}}
	body, err := zipkin_proto3.SpanSerializer{}.Serialize(one)
	if err != nil {
		t.Fatal(err)
	}
	base, _ := serve(t, Options{})
	post(t, base, "application/x-protobuf", "", body, http.StatusAccepted)
	status, got := get(t, base+"/api/v2/trace/1234")
	want := `[{"traceId":"0000000000001234","id":"0000000000000099","name":"local-work"}]`
	if status != 200 || string(got) != want {
		t.Errorf("GET trace: %d %s\nwant 200 %s", status, got, want)
	}
}
