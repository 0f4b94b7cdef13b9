package console

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/meshlab/meshlab/lab/zipkin/jaegertest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// The fixture's spans lie in this window (2026-01-01T00:00:00Z + 2 min).
const spansWindow = "startMicros=1767225500000000&endMicros=1767225720000000"

// postSpans sends the fixture's spans to a Zipkin v2 collector, as a
// proxy's tracer does.
func postSpans(t *testing.T, collector string) {
	t.Helper()
	b, err := os.ReadFile("testdata/spans.json")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(collector+"/api/v2/spans", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("POST spans: %s", resp.Status)
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run with -update after checking):\n%s", path, got)
	}
}

type tracesAnswer struct {
	Data   []Trace  `json:"data"`
	Errors []string `json:"errors"`
}

func TestTracesFromZipkin(t *testing.T) {
	l := startLab(t)
	postSpans(t, l.zipkinURL)
	srv := l.console(t, Options{})
	base := srv.URL + "/kiali/api/namespaces/bookinfo/"

	// The conversion, whole: µs times, tags as a map, the root, errors.
	code, body, _ := call(t, http.MethodGet, base+"apps/reviews/traces?"+spansWindow, nil, nil)
	if code != http.StatusOK {
		t.Fatalf("traces: %d %s", code, body)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, body, "", "  "); err != nil {
		t.Fatal(err)
	}
	golden(t, "reviews-traces.json", pretty.Bytes())

	for _, tc := range []struct {
		name, path string
		want       []string // trace IDs
		errors     []bool
	}{
		{"app", "apps/reviews/traces?" + spansWindow, []string{"463ac35c9f6413ad48485a3953bb6124", "5af7183fb1d4cf5f"}, []bool{true, false}},
		{"service", "services/reviews/traces?" + spansWindow, []string{"463ac35c9f6413ad48485a3953bb6124", "5af7183fb1d4cf5f"}, []bool{true, false}},
		{"workload by its pods", "workloads/reviews-v1/traces?" + spansWindow, []string{"5af7183fb1d4cf5f"}, []bool{false}},
		{"errors only", "apps/reviews/traces?errorsOnly=true&" + spansWindow, []string{"463ac35c9f6413ad48485a3953bb6124"}, []bool{true}},
		{"min duration in µs", "apps/reviews/traces?minDuration=20000&" + spansWindow, []string{"463ac35c9f6413ad48485a3953bb6124"}, []bool{true}},
		{"min duration as Go", "apps/reviews/traces?minDuration=20ms&" + spansWindow, []string{"463ac35c9f6413ad48485a3953bb6124"}, []bool{true}},
		{"other app", "apps/ratings/traces?" + spansWindow, nil, nil},
		{"outside the window", "apps/reviews/traces?startMicros=1767225000000000&endMicros=1767225100000000", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a tracesAnswer
			getJSONT(t, base+tc.path, &a)
			var ids []string
			var errs []bool
			sort.Slice(a.Data, func(i, j int) bool { return a.Data[i].TraceID < a.Data[j].TraceID })
			for _, tr := range a.Data {
				ids, errs = append(ids, tr.TraceID), append(errs, tr.Error)
			}
			if strings.Join(ids, ",") != strings.Join(tc.want, ",") || len(errs) != len(tc.errors) {
				t.Fatalf("traces %v, want %v (errors %v)", ids, tc.want, a.Errors)
			}
			for i := range errs {
				if errs[i] != tc.errors[i] {
					t.Errorf("trace %s error = %v, want %v", ids[i], errs[i], tc.errors[i])
				}
			}
		})
	}

	var tr Trace
	getJSONT(t, srv.URL+"/kiali/api/traces/463ac35c9f6413ad48485a3953bb6124", &tr)
	if len(tr.Spans) != 3 || tr.RootService != "productpage.bookinfo" || tr.Duration != 50000 || tr.StartTime != 1767225600000000 || !tr.Error {
		t.Errorf("trace = %+v", tr)
	}
	if sp := tr.Spans[2]; sp.Tags["response_flags"] != "UF" || sp.Kind != "server" || sp.ParentSpanID != "a000000000000002" || !sp.Error {
		t.Errorf("reviews span = %+v", sp)
	}
	if sp := tr.Spans[1]; !sp.Error || sp.Tags["error"] != "" {
		t.Errorf("a client span with status 503 and no error tag: error = %v", sp.Error)
	}

	for _, tc := range []struct {
		path  string
		code  int
		param string
	}{
		{"/kiali/api/traces/00000000000000000000000000000bad", http.StatusNotFound, "trace"},
		{"/kiali/api/traces/not-hex", http.StatusBadRequest, "trace id"},
		{"/kiali/api/namespaces/bookinfo/apps/reviews/traces?limit=0", http.StatusBadRequest, "limit"},
		{"/kiali/api/namespaces/bookinfo/apps/reviews/traces?startMicros=x", http.StatusBadRequest, "startMicros"},
		{"/kiali/api/namespaces/bookinfo/apps/reviews/traces?startMicros=2&endMicros=1", http.StatusBadRequest, "startMicros"},
		{"/kiali/api/namespaces/bookinfo/apps/reviews/traces?errorsOnly=yes", http.StatusBadRequest, "errorsOnly"},
		{"/kiali/api/namespaces/bookinfo/apps/reviews/traces?minDuration=-1s", http.StatusBadRequest, "minDuration"},
	} {
		code, body, _ := call(t, http.MethodGet, srv.URL+tc.path, nil, nil)
		if code != tc.code || !strings.HasPrefix(errorText(body), tc.param) {
			t.Errorf("GET %s: %d %s, want %d naming %s", tc.path, code, body, tc.code, tc.param)
		}
	}
}

// A trace store that does not answer is an error in the answer, not a
// failed page.
func TestTracesStoreDown(t *testing.T) {
	l := startLab(t)
	srv := l.console(t, Options{TracingURL: "http://" + freeAddr(t)})
	var a tracesAnswer
	getJSONT(t, srv.URL+"/kiali/api/namespaces/bookinfo/apps/reviews/traces", &a)
	if len(a.Data) != 0 || len(a.Errors) != 1 || !strings.Contains(a.Errors[0], "reviews.bookinfo") {
		t.Errorf("answer = %+v, want no data and an error naming the service", a)
	}
}

// Jaeger's query API gives the same traces as the Zipkin API for the
// same spans (run scripts/jaeger-testenv to have a Jaeger here).
func TestTracesFromJaeger(t *testing.T) {
	j := jaegertest.Start(t)
	l := startLab(t)
	postSpans(t, "http://"+j.ZipkinAddr)
	srv := l.console(t, Options{TracingProvider: "jaeger", TracingURL: j.QueryURL})
	var a tracesAnswer
	for range 100 { // the collector stores asynchronously
		getJSONT(t, srv.URL+"/kiali/api/namespaces/bookinfo/apps/reviews/traces?"+spansWindow, &a)
		if len(a.Data) == 2 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(a.Data) != 2 {
		t.Fatalf("jaeger traces = %+v", a)
	}
	var tr Trace
	getJSONT(t, srv.URL+"/kiali/api/traces/463ac35c9f6413ad48485a3953bb6124", &tr)
	if len(tr.Spans) != 3 || tr.RootService != "productpage.bookinfo" || !tr.Error || tr.Duration != 50000 {
		t.Fatalf("trace = %+v", tr)
	}
	// The same reading of each span as from Zipkin: parent, kind, tags,
	// and error from error=true or a 5xx status alone.
	for _, tc := range []struct {
		i                    int
		parent, kind, status string
		err                  bool
	}{
		{0, "", "server", "200", false},
		{1, "a000000000000001", "client", "503", true},
		{2, "a000000000000002", "server", "503", true},
	} {
		sp := tr.Spans[tc.i]
		if sp.ParentSpanID != tc.parent || sp.Kind != tc.kind || sp.Tags["http.status_code"] != tc.status || sp.Error != tc.err || sp.StartTime != 1767225600000000+int64(tc.i)*1000 {
			t.Errorf("span %d = %+v, want parent %q kind %s status %s error %v", tc.i, sp, tc.parent, tc.kind, tc.status, tc.err)
		}
	}
	if tr.Spans[2].Tags["response_flags"] != "UF" {
		t.Errorf("reviews span tags = %v", tr.Spans[2].Tags)
	}
}
