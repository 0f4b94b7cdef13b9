package graph

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
)

// recorder keeps Prometheus's answers by request, so a benchmark can
// replay them: the console's side measured without Prometheus's engine
// sharing its heap.
type recorder struct {
	rt      http.RoundTripper
	mu      sync.Mutex
	answers map[string][]byte
}

func requestKey(r *http.Request) (string, error) {
	if r.Body == nil {
		return r.URL.RawQuery, nil
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return "", err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return r.URL.Path + "?" + r.URL.RawQuery + "&" + string(body), nil
}

func (rec *recorder) RoundTrip(r *http.Request) (*http.Response, error) {
	key, err := requestKey(r)
	if err != nil {
		return nil, err
	}
	resp, err := rec.rt.RoundTrip(r)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.Header.Del("Content-Encoding")
	rec.mu.Lock()
	rec.answers[key] = body
	rec.mu.Unlock()
	return resp, nil
}

// replay serves the recorded answers over loopback HTTP.
func (rec *recorder) replay(tb testing.TB) promv1.API {
	tb.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, err := requestKey(r)
		rec.mu.Lock()
		body, ok := rec.answers[key]
		rec.mu.Unlock()
		if err != nil || !ok {
			http.Error(w, `{"status":"error","errorType":"bad_data","error":"not recorded"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	tb.Cleanup(srv.Close)
	client, err := api.NewClient(api.Config{Address: srv.URL})
	if err != nil {
		tb.Fatal(err)
	}
	return promv1.NewAPI(client)
}
