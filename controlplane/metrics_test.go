package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/types/known/structpb"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/controlplane/registry"
	"github.com/meshlab/meshlab/dataplane/xdsclient"
)

// scrapeMetrics reads /metrics as Prometheus would.
func scrapeMetrics(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// series is one metric with its labels, "name{k=v,...}"; its value is a
// counter's or gauge's value, or a histogram's sample count. Absent: -1.
func value(fams map[string]*dto.MetricFamily, series string) float64 {
	name, labels, _ := strings.Cut(strings.TrimSuffix(series, "}"), "{")
	f := fams[name]
	if f == nil {
		return -1
	}
	for _, m := range f.GetMetric() {
		var got []string
		for _, l := range m.GetLabel() {
			got = append(got, l.GetName()+"="+l.GetValue())
		}
		sort.Strings(got)
		want := []string{}
		if labels != "" {
			want = strings.Split(labels, ",")
		}
		sort.Strings(want)
		if !slices.Equal(got, want) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	return -1
}

// TestIstiodMetrics runs a control plane on loopback with a real xDS
// client as its proxy and checks that each of istiod's series moves when
// its event happens, through /metrics as Prometheus reads it.
func TestIstiodMetrics(t *testing.T) {
	keySrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/keys" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA","alg":"HS256"}]}`))
	}))
	defer keySrv.Close()
	xdsAddr := freeLoopback(t)
	dir := t.TempDir()
	s, err := New(Options{StateDir: dir, XDSAddr: xdsAddr, HTTPAddr: "127.0.0.1:0", Version: "1.24.6-meshlab"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() { cancel(); <-done; s.Close() }()
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	cl := api.NewClient(hs.URL)
	cl.Token = testToken(t, dir)
	wh := httptest.NewServer(s.WebhookHandler())
	defer wh.Close()

	// The proxy: meshlab's own xDS client, NACKing listeners on demand.
	var nackLDS atomic.Bool
	md, _ := structpb.NewStruct(map[string]any{"NAMESPACE": "default", "ISTIO_VERSION": "1.24.6",
		"LABELS": map[string]any{"app": "productpage", "version": "v1"}})
	proxyCtx, stopProxy := context.WithCancel(ctx)
	proxyDone := make(chan struct{})
	px := xdsclient.New(xdsclient.Config{Address: xdsAddr,
		Node: &corev3.Node{Id: "sidecar~198.18.0.10~productpage-v1-0.default~default.svc.cluster.local", Metadata: md},
		Check: func(_ *xdsclient.Snapshot, typeURL string) error {
			if typeURL == resource.ListenerType && nackLDS.Load() {
				return errors.New("listener refused by the test")
			}
			return nil
		}, MinBackoff: 10 * time.Millisecond})

	apply := func(y string) {
		t.Helper()
		docs, err := api.Documents("test.yaml", []byte(y), "default")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Apply(ctx, api.ApplyRequest{Documents: docs}); err != nil {
			t.Fatal(err)
		}
	}
	put := func(name, app string, ready bool, ip string) {
		t.Helper()
		if err := cl.PutWorkload(ctx, registry.Workload{Name: name, Namespace: "default", IP: netip.MustParseAddr(ip),
			Labels: map[string]string{"app": app, "version": "v1"}, Ready: ready}); err != nil {
			t.Fatal(err)
		}
	}
	review := func(vs string) {
		t.Helper()
		body, _ := json.Marshal(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{UID: "1", Operation: admissionv1.Create, Namespace: "default", Name: "r",
				Kind:     metav1.GroupVersionKind{Group: "networking.istio.io", Version: "v1", Kind: "VirtualService"},
				Resource: metav1.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"},
				Object:   runtime.RawExtension{Raw: []byte(vs)}},
		})
		resp, err := http.Post(wh.URL+"/validate", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}

	const reviews = `apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v1}}]}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
`
	const noInstances = "pilot_eds_no_instances{cluster=outbound|9080||reviews.default.svc.cluster.local}"
	steps := []struct {
		name string
		do   func()
		// moves are series that must grow by at least the value; equal
		// are gauges that must then read exactly the value (-1: absent).
		moves, equal map[string]float64
	}{{
		name: "a proxy connects",
		do: func() {
			go func() { defer close(proxyDone); _ = px.Run(proxyCtx) }()
		},
		moves: map[string]float64{
			"pilot_xds_pushes{type=cds}": 1, "pilot_xds_pushes{type=lds}": 1,
			"pilot_xds_push_time{type=cds}": 1, "pilot_xds_push_time{type=lds}": 1,
			"pilot_xds_config_size_bytes{type=cds}": 1, "pilot_xds_config_size_bytes{type=lds}": 1,
			"pilot_xds_send_time": 2,
		},
		equal: map[string]float64{"pilot_xds{version=1.24.6}": 1},
	}, {
		name: "Istio config and a Service applied",
		do:   func() { apply(reviews) },
		moves: map[string]float64{
			"pilot_k8s_cfg_events{event=add,type=VirtualService}": 1, "pilot_k8s_cfg_events{event=add,type=DestinationRule}": 1,
			"pilot_inbound_updates{type=config}": 2, "pilot_inbound_updates{type=svc}": 1,
			"pilot_push_triggers{type=config}": 1, "pilot_push_triggers{type=service}": 1,
			"galley_validation_passed{group=networking.istio.io,resource=virtualservices,version=v1}":  1,
			"galley_validation_passed{group=networking.istio.io,resource=destinationrules,version=v1}": 1,
			"pilot_proxy_convergence_time": 1, "pilot_proxy_queue_time": 1, "pilot_pushcontext_init_seconds": 1,
			"pilot_debounce_time": 1, "pilot_xds_pushes{type=rds}": 1, "pilot_xds_pushes{type=eds}": 1,
		},
		equal: map[string]float64{"pilot_virt_services": 1, "pilot_services": 1, noInstances: 1,
			"pilot_destrule_subsets": 0, "pilot_vservice_dup_domain": 0, "pilot_duplicate_envoy_clusters": 0, "pilot_conflict_inbound_listener": 0},
	}, {
		name: "config updated and deleted",
		do: func() {
			apply(strings.Replace(reviews, "subset: v1}}]}]", "subset: v1}, weight: 100}]}]", 1))
			if _, err := cl.Delete(ctx, []string{"VirtualService/default/reviews"}); err != nil {
				t.Fatal(err)
			}
		},
		moves: map[string]float64{"pilot_k8s_cfg_events{event=update,type=VirtualService}": 1, "pilot_k8s_cfg_events{event=delete,type=VirtualService}": 1},
		equal: map[string]float64{"pilot_virt_services": 0},
	}, {
		name: "invalid config refused by the API",
		do: func() {
			// As a client that skipped its own check would send it.
			bad := api.Document{Source: "bad.yaml", Object: []byte(`{"apiVersion":"networking.istio.io/v1","kind":"VirtualService",` +
				`"metadata":{"name":"bad","namespace":"default"},"spec":{"http":[{"route":[{"destination":{"host":"reviews"}}]}]}}`)}
			if _, err := cl.Apply(ctx, api.ApplyRequest{Documents: []api.Document{bad}}); err == nil {
				t.Fatal("an invalid VirtualService was applied")
			}
		},
		moves: map[string]float64{"galley_validation_failed{group=networking.istio.io,reason=invalid_resource,resource=virtualservices,version=v1}": 1},
	}, {
		name: "the validating webhook",
		do: func() {
			review(`{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"r","namespace":"default"},"spec":{"hosts":["r"]}}`)
			review(`{"apiVersion":"networking.istio.io/v1","kind":"VirtualService","metadata":{"name":"r","namespace":"default"},"spec":{"hosts":["r"],"htp":[]}}`)
		},
		moves: map[string]float64{
			"galley_validation_passed{group=networking.istio.io,resource=virtualservices,version=v1}":                         1,
			"galley_validation_failed{group=networking.istio.io,reason=invalid_resource,resource=virtualservices,version=v1}": 1,
		},
	}, {
		name:  "a workload becomes the Service's endpoint",
		do:    func() { put("reviews-v1-0", "reviews", true, "198.18.0.11") },
		moves: map[string]float64{"pilot_inbound_updates{type=eds}": 1, "pilot_push_triggers{type=endpoint}": 1},
		equal: map[string]float64{noInstances: -1},
	}, {
		name: "duplicates and conflicts",
		do: func() {
			apply(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews-again, namespace: default}
spec:
  host: reviews.default.svc.cluster.local
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-a, namespace: default}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-b, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  http: [{route: [{destination: {host: reviews}}]}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews-se, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: DNS
---
apiVersion: v1
kind: Service
metadata: {name: reviews-tcp, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: tcp-raw, port: 9081, targetPort: 9080}]
`)
		},
		equal: map[string]float64{"pilot_destrule_subsets": 1, "pilot_vservice_dup_domain": 1, "pilot_duplicate_envoy_clusters": 1,
			"pilot_conflict_inbound_listener": 1, "pilot_virt_services": 2, "pilot_services": 3},
	}, {
		name: "JWKS fetched and failed",
		do: func() {
			apply(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  jwtRules:
  - {issuer: fetched, jwksUri: ` + keySrv.URL + `/keys}
  - {issuer: missing, jwksUri: ` + keySrv.URL + `/missing}
`)
		},
		moves: map[string]float64{"pilot_jwks_resolver_network_fetch_success_total": 1, "pilot_jwks_resolver_network_fetch_fail_total": 1},
	}, {
		name: "the proxy NACKs",
		do: func() {
			nackLDS.Store(true)
			apply("apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: default}\nspec:\n  selector: {app: db}\n  ports: [{name: tcp, port: 7000}]\n")
		},
		moves: map[string]float64{"pilot_total_xds_rejects{type=lds}": 1},
	}, {
		name:  "the proxy goes",
		do:    func() { stopProxy(); <-proxyDone },
		equal: map[string]float64{"pilot_xds{version=1.24.6}": -1},
	}}

	for _, st := range steps {
		before := scrapeMetrics(t, hs.URL)
		st.do()
		deadline := time.Now().Add(15 * time.Second)
		for {
			after := scrapeMetrics(t, hs.URL)
			var bad []string
			for series, n := range st.moves {
				if d := value(after, series) - max(value(before, series), 0); d < n {
					bad = append(bad, fmt.Sprintf("%s moved by %v, want at least %v", series, d, n))
				}
			}
			for series, v := range st.equal {
				if got := value(after, series); got != v {
					bad = append(bad, fmt.Sprintf("%s = %v, want %v", series, got, v))
				}
			}
			if len(bad) == 0 {
				break
			}
			if time.Now().After(deadline) {
				sort.Strings(bad)
				t.Fatalf("%s:\n  %s", st.name, strings.Join(bad, "\n  "))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	fams := scrapeMetrics(t, hs.URL)
	// What never moves but is always there.
	for series, check := range map[string]func(float64) bool{
		"pilot_info{version=1.24.6-meshlab}":        func(v float64) bool { return v == 1 },
		"citadel_server_root_cert_expiry_timestamp": func(v float64) bool { return v > float64(time.Now().Unix()) },
		"process_cpu_seconds_total":                 func(v float64) bool { return v > 0 },
		"go_goroutines":                             func(v float64) bool { return v > 0 },
		"pilot_xds_pushes{type=lds}":                func(v float64) bool { return v >= 2 },
		"pilot_proxy_convergence_time":              func(v float64) bool { return v >= 1 },
		"pilot_total_xds_internal_errors":           func(v float64) bool { return v == 0 },
		"pilot_xds_push_context_errors":             func(v float64) bool { return v == 0 },
	} {
		if v := value(fams, series); !check(v) {
			t.Errorf("%s = %v", series, v)
		}
	}
	// Istio's types and buckets, as dashboards query them.
	for name, want := range map[string]struct {
		typ     dto.MetricType
		buckets string
	}{
		"pilot_proxy_convergence_time":   {dto.MetricType_HISTOGRAM, "[0.1 0.5 1 3 5 10 20 30 +Inf]"},
		"pilot_xds_push_time":            {dto.MetricType_HISTOGRAM, "[0.01 0.1 1 3 5 10 20 30 +Inf]"},
		"pilot_proxy_queue_time":         {dto.MetricType_HISTOGRAM, "[0.1 0.5 1 3 5 10 20 30 +Inf]"},
		"pilot_pushcontext_init_seconds": {dto.MetricType_HISTOGRAM, "[0.01 0.1 0.5 1 3 5 +Inf]"},
		"pilot_xds_config_size_bytes":    {dto.MetricType_HISTOGRAM, "[1 10000 1e+06 4e+06 1e+07 4e+07 +Inf]"},
		"pilot_xds_pushes":               {dto.MetricType_COUNTER, ""},
		"pilot_k8s_cfg_events":           {dto.MetricType_COUNTER, ""},
		"pilot_services":                 {dto.MetricType_GAUGE, ""},
	} {
		f := fams[name]
		if f == nil || f.GetType() != want.typ {
			t.Errorf("%s: %v, want a %v", name, f.GetType(), want.typ)
			continue
		}
		if want.buckets != "" {
			var b []float64
			for _, bk := range f.GetMetric()[0].GetHistogram().GetBucket() {
				b = append(b, bk.GetUpperBound())
			}
			if fmt.Sprint(b) != want.buckets {
				t.Errorf("%s buckets %v, want %s", name, b, want.buckets)
			}
		}
	}
}

// A push whose input cannot be read counts as a push context error.
func TestPushContextErrors(t *testing.T) {
	s, err := New(Options{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	if v := value(scrapeMetrics(t, hs.URL), "pilot_xds_push_context_errors"); v != 0 {
		t.Fatalf("before: %v", v)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s.push(context.Background())
	if v := value(scrapeMetrics(t, hs.URL), "pilot_xds_push_context_errors"); v != 1 {
		t.Fatalf("after a push on a closed store: %v, want 1", v)
	}
}
