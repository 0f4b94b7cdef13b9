package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshlab/meshlab/lab"
)

// TestKindUpReadsManifestsFirst: a manifest that cannot be read fails up
// before a cluster is made.
func TestKindUpReadsManifestsFirst(t *testing.T) {
	p := &fakeProvider{}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("kind: ConfigMap\n---\n\tnot: [yaml\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := NewKind(dir, KindDeps{Provider: p, Subnets: newRun(t, 2).opts.Subnets})
	for _, m := range []string{filepath.Join(dir, "missing.yaml"), bad} {
		err := r.Up(context.Background(), lab.UpOptions{Manifests: []string{m}})
		if err == nil || !strings.Contains(err.Error(), filepath.Base(m)) {
			t.Errorf("up with manifest %s: %v; want an error naming it", m, err)
		}
	}
	if len(p.calls) != 0 {
		t.Errorf("up with a bad manifest asked kind: %q", p.calls)
	}
}

// TestKindUpRefusesWorkloadCertTTL: the kind install does not pass a
// certificate lifetime on, so up refuses one instead of leaving 24h
// certificates behind a user who asked for seconds, and asks kind nothing.
func TestKindUpRefusesWorkloadCertTTL(t *testing.T) {
	p := &fakeProvider{}
	dir := t.TempDir()
	r := NewKind(dir, KindDeps{Provider: p, Subnets: newRun(t, 2).opts.Subnets})
	err := r.Up(context.Background(), lab.UpOptions{WorkloadCertTTL: 30 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "--workload-cert-ttl") || !strings.Contains(err.Error(), "SECRET_TTL") {
		t.Errorf("up --runtime kind --workload-cert-ttl 30s: %v; want a refusal naming the flag and Istio's SECRET_TTL", err)
	}
	if len(p.calls) != 0 {
		t.Errorf("a refused up asked kind: %q", p.calls)
	}
}

// TestKindDown: down of a kind lab deletes its cluster and record (and,
// with purge, the state directory); a cluster meshlab was only installed
// on is neither up'd nor down'd.
func TestKindDown(t *testing.T) {
	for _, purge := range []bool{false, true} {
		dir := filepath.Join(t.TempDir(), "state")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(Record{Runtime: "kind", Cluster: "meshlab", Context: "kind-meshlab"})
		if err := os.WriteFile(filepath.Join(dir, RecordFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
		p := &fakeProvider{clusters: []string{"meshlab", "other"}}
		r := NewKind(dir, KindDeps{Provider: p})
		var out bytes.Buffer
		if err := r.Down(context.Background(), lab.DownOptions{Purge: purge, Out: &out}); err != nil {
			t.Fatalf("down (purge %v): %v", purge, err)
		}
		if !slices.Equal(p.clusters, []string{"other"}) {
			t.Errorf("clusters after down: %q", p.clusters)
		}
		_, err := os.Stat(filepath.Join(dir, RecordFile))
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the record after down: %v", err)
		}
		if _, err := os.Stat(dir); purge != errors.Is(err, os.ErrNotExist) {
			t.Errorf("state directory after down (purge %v): %v", purge, err)
		}
		t.Logf("down (purge %v):\n%s", purge, out.String())
	}

	r, err := Open(t.TempDir(), filepath.Join(t.TempDir(), "no-kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Down(context.Background(), lab.DownOptions{}); err == nil || !strings.Contains(err.Error(), "meshlab uninstall") {
		t.Errorf("down of an installed cluster: %v", err)
	}
	if err := r.Up(context.Background(), lab.UpOptions{}); err == nil || !strings.Contains(err.Error(), "up --runtime kind") {
		t.Errorf("up of an installed cluster: %v", err)
	}
}
