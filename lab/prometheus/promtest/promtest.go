// Package promtest starts the lab's Prometheus (Prometheus's own config
// loader, scrape manager, TSDB, engine and HTTP API, as `meshlab
// prometheus` runs them) on loopback for one test, so that code which
// queries Prometheus is tested against the real thing.
package promtest

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"

	"github.com/meshlab/meshlab/lab/prometheus"
)

// Start runs Prometheus with config (prometheus.yml's text) over the TSDB
// in dataDir ("" for a fresh one; a test may have written blocks there
// first) until the test ends, and returns a client of its API and its
// base URL.
func Start(t testing.TB, config, dataDir string) (promv1.API, string) {
	t.Helper()
	dir := t.TempDir()
	if dataDir == "" {
		dataDir = filepath.Join(dir, "data")
	}
	file := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(file, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := prometheus.Start(ctx, prometheus.Options{ConfigFile: file, StoragePath: dataDir,
		ListenAddress: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		cancel()
		t.Fatalf("start Prometheus: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := s.Wait(); err != nil {
			t.Errorf("Prometheus: %v", err)
		}
	})
	base := "http://" + s.Addr()
	c, err := api.NewClient(api.Config{Address: base})
	if err != nil {
		t.Fatal(err)
	}
	return promv1.NewAPI(c), base
}
