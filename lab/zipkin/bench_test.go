package zipkin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/openzipkin/zipkin-go/model"
)

// envoyBatches returns n batches of the bookinfo fixture's 8 Envoy-shaped
// spans, each batch a new trace (fresh ids), as the proxies report them.
func envoyBatches(b *testing.B, n int) [][]*model.SpanModel {
	var tmpl []*model.SpanModel
	if err := json.Unmarshal(readFixture(b, "bookinfo-trace.json"), &tmpl); err != nil {
		b.Fatal(err)
	}
	out := make([][]*model.SpanModel, n)
	for i := range n {
		batch := make([]*model.SpanModel, len(tmpl))
		for k, s := range tmpl {
			c := *s
			c.TraceID.Low += uint64(i)
			c.ID += model.ID(i) << 20
			if s.ParentID != nil {
				p := *s.ParentID + model.ID(i)<<20
				c.ParentID = &p
			}
			c.Timestamp = s.Timestamp.Add(time.Duration(i) * time.Millisecond)
			c.Tags = copyTags(s.Tags)
			c.Tags["guid:x-request-id"] = fmt.Sprintf("%08x-7b3d-9e2f-8a6b-1c5d3e7f9a0b", i)
			ep := *s.LocalEndpoint
			c.LocalEndpoint = &ep
			batch[k] = &c
		}
		out[i] = batch
	}
	return out
}

// BenchmarkIngest is the store's ingest rate (spans/s), at its bound so
// every batch also evicts.
func BenchmarkIngest(b *testing.B) {
	// 160k spans cycling through a store bounded at 100k.
	batches := envoyBatches(b, 20000)
	st := New(Options{MaxSpans: 100000})
	runtime.GC() // the setup's garbage is not the store's cost
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		st.Accept(batches[i%len(batches)])
	}
	b.ReportMetric(float64(b.N*8)/b.Elapsed().Seconds(), "spans/s")
}

// BenchmarkIngestHTTP is the whole POST path: JSON decoding of Envoy's
// batch of 8 spans, the store, the 202, over loopback.
func BenchmarkIngestHTTP(b *testing.B) {
	batches := envoyBatches(b, 1000)
	bodies := make([][]byte, len(batches))
	for i, bt := range batches {
		var err error
		if bodies[i], err = json.Marshal(bt); err != nil {
			b.Fatal(err)
		}
	}
	st := New(Options{MaxSpans: 100000})
	srv := httptest.NewServer(Handler(st, nil))
	defer srv.Close()
	c := srv.Client()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		resp, err := c.Post(srv.URL+"/api/v2/spans", "application/json", bytes.NewReader(bodies[i%len(bodies)]))
		if err != nil {
			b.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	b.ReportMetric(float64(b.N*8)/b.Elapsed().Seconds(), "spans/s")
}

// BenchmarkMemory reports the heap the store holds per 100k Envoy-shaped
// spans, decoded from JSON bodies as the API does.
func BenchmarkMemory(b *testing.B) {
	var bodies [][]byte
	for _, bt := range envoyBatches(b, 100000/8) {
		body, err := json.Marshal(bt)
		if err != nil {
			b.Fatal(err)
		}
		bodies = append(bodies, body)
	}
	b.ResetTimer()
	for range b.N {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		st := New(Options{MaxSpans: 100000})
		for _, body := range bodies {
			spans, err := DecodeSpans(bytes.NewReader(body), "application/json", "")
			if err != nil {
				b.Fatal(err)
			}
			st.Accept(spans)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		n, _ := st.Len()
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n)*100000/(1<<20), "MB/100k-spans")
		runtime.KeepAlive(st)
	}
	runtime.KeepAlive(bodies)
}
