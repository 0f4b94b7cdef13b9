package lab

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestStateDir(t *testing.T) {
	home, _ := os.UserHomeDir()
	tests := []struct {
		name, flag, env, xdg, want string
	}{
		{"flag wins", "/tmp/a", "/tmp/b", "/tmp/c", "/tmp/a"},
		{"env next", "", "/tmp/b", "/tmp/c", "/tmp/b"},
		{"xdg next", "", "", "/tmp/c", "/tmp/c/meshlab"},
		{"home last", "", "", "", filepath.Join(home, ".local/state/meshlab")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("MESHLAB_STATE_DIR", tt.env)
			t.Setenv("XDG_STATE_HOME", tt.xdg)
			got, err := StateDir(tt.flag)
			if err != nil || got != tt.want {
				t.Errorf("StateDir(%q) = %q, %v; want %q", tt.flag, got, err, tt.want)
			}
		})
	}
}

func TestStatusRoundTripAndLiveness(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadStatus(dir); !errors.Is(err, ErrNotUp) {
		t.Fatalf("no status file: got %v, want ErrNotUp", err)
	}
	st := Status{Runtime: "local", Phase: PhaseRunning, PID: os.Getpid(),
		Pods: []Pod{{Namespace: "default", Name: "ratings-v1-abc", Deployment: "ratings-v1", Labels: map[string]string{"app": "ratings"}, Ready: true}}}
	if err := WriteStatus(dir, st); err != nil {
		t.Fatal(err)
	}
	got, err := ReadStatus(dir)
	if err != nil || got.Pods[0].Name != "ratings-v1-abc" {
		t.Fatalf("ReadStatus = %+v, %v", got, err)
	}
	st.PID = 1 << 30 // no such process
	if err := WriteStatus(dir, st); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadStatus(dir); !errors.Is(err, ErrNotUp) {
		t.Errorf("status of a dead runtime: got %v, want ErrNotUp", err)
	}
}

func TestFindPod(t *testing.T) {
	st := Status{Pods: []Pod{
		{Namespace: "default", Name: "reviews-v1-1-aaaaa", Deployment: "reviews-v1", Labels: map[string]string{"app": "reviews"}, Ready: false},
		{Namespace: "default", Name: "reviews-v2-2-bbbbb", Deployment: "reviews-v2", Labels: map[string]string{"app": "reviews"}, Ready: true},
		{Namespace: "book-demo", Name: "ratings-v1-3-ccccc", Deployment: "ratings-v1", Labels: map[string]string{"app": "ratings"}, Ready: true},
	}}
	tests := []struct {
		ns, name, want string
		wantErr        bool
	}{
		{"default", "reviews-v1-1-aaaaa", "reviews-v1-1-aaaaa", false},
		{"default", "reviews-v1", "reviews-v1-1-aaaaa", false},
		{"default", "reviews", "reviews-v2-2-bbbbb", false}, // the first ready pod of the app
		{"book-demo", "ratings", "ratings-v1-3-ccccc", false},
		{"default", "ratings", "", true},
	}
	for _, tt := range tests {
		p, err := st.FindPod(tt.ns, tt.name)
		if (err != nil) != tt.wantErr || p.Name != tt.want {
			t.Errorf("FindPod(%q, %q) = %q, %v; want %q (error %v)", tt.ns, tt.name, p.Name, err, tt.want, tt.wantErr)
		}
	}
}
