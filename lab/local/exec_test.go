package local

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshlab/meshlab/lab"
)

// TestMain lets the test binary be exec's helper, as meshlab is.
// TestExec runs commands through the real helper (entering this process's
// own network namespace, so nothing of the machine changes): as the
// container's user, with a container's environment, and the command's exit
// code comes back, a signal's as a shell reports it.
func TestExec(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("exec switches to the container's user: needs root")
	}
	dir := t.TempDir()
	st := lab.Status{Runtime: "local", Phase: lab.PhaseRunning, PID: os.Getpid(), Pods: []lab.Pod{
		{Namespace: "foo", Name: "sleep-5d8f7c-abcde", Deployment: "sleep", Ready: true, Netns: fmt.Sprintf("/proc/%d/ns/net", os.Getpid()),
			Containers: []lab.Container{{Name: "istio-proxy", Running: true, UID: 1337, GID: 1337}, {Name: "sleep", Running: true, UID: 65534, GID: 65534}}}}}
	if err := lab.WriteStatus(dir, st); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	l, err := Open(dir, WithBinary(self))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		container, script string
		want              string
		code              int
	}{
		{"", `id -u; echo "$POD_NAMESPACE/$POD_NAME $HOME"; exit 3`, "65534\nfoo/sleep-5d8f7c-abcde /\n", 3},
		{"istio-proxy", "id -u", "1337\n", 0},
		{"", "kill -TERM $$", "", 143},
	}
	for _, tt := range tests {
		t.Run(tt.script, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code, err := l.Exec(context.Background(), lab.ExecOptions{Namespace: "foo", Pod: "deploy/sleep", Container: tt.container,
				Command: []string{"sh", "-c", tt.script}, Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut})
			if err != nil || code != tt.code || out.String() != tt.want {
				t.Errorf("exec %q = %d, %v, %q (stderr %q); want %d, %q", tt.script, code, err, out.String(), errOut.String(), tt.code, tt.want)
			}
		})
	}
}

func TestFindPod(t *testing.T) {
	pod := func(name, deploy, app string, ready, terminating bool, age time.Duration) lab.Pod {
		return lab.Pod{Namespace: "foo", Name: name, Deployment: deploy, Labels: map[string]string{"app": app},
			Ready: ready, Terminating: terminating, CreatedAt: t0.Add(-age)}
	}
	st := lab.Status{Pods: []lab.Pod{
		pod("httpbin-aaa-1", "httpbin", "httpbin", true, true, 3*time.Minute), // leaving
		pod("httpbin-bbb-1", "httpbin", "httpbin", false, false, time.Second),
		pod("httpbin-bbb-2", "httpbin", "httpbin", true, false, 2*time.Second),
		pod("sleep-ccc-1", "sleep", "sleep", false, false, time.Minute),
		pod("sleep-ccc-2", "sleep", "sleep", false, false, 10*time.Second), // the newest
		pod("reviews-v1-ddd-1", "reviews-v1", "reviews", true, false, time.Minute),
	}}
	tests := []struct {
		ref     string
		want    string
		wantErr string
	}{
		{"httpbin-bbb-1", "httpbin-bbb-1", ""},
		{"pod/httpbin-bbb-1", "httpbin-bbb-1", ""},
		{"deploy/httpbin", "httpbin-bbb-2", ""}, // the first ready one that is not leaving
		{"deployment/httpbin", "httpbin-bbb-2", ""},
		{"deploy/sleep", "sleep-ccc-2", ""}, // none ready: the newest
		{"reviews-v1", "reviews-v1-ddd-1", ""},
		{"reviews", "reviews-v1-ddd-1", ""}, // the app's name, as before
		{"deploy/nope", "", "deployment foo/nope has no pods; see `meshlab get deployments -n foo`"},
		{"pod/nope", "", "pod foo/nope not found"},
		{"svc/httpbin", "", "want a pod name, pod/NAME or deploy/NAME"},
		{"nope", "", `pod "nope" not found in namespace "foo"`},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			p, err := findPod(st, "foo", tt.ref)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || p.Name != tt.want {
				t.Fatalf("= %s, %v; want %s", p.Name, err, tt.want)
			}
		})
	}
}

func TestPickContainer(t *testing.T) {
	p := lab.Pod{Namespace: "foo", Name: "x", Containers: []lab.Container{{Name: "istio-proxy"}, {Name: "app"}}}
	for want, name := range map[string]string{"": "app", "istio-proxy": "istio-proxy", "app": "app"} {
		if c, err := pickContainer(p, want); err != nil || c.Name != name {
			t.Errorf("pickContainer(%q) = %s, %v; want %s", want, c.Name, err, name)
		}
	}
	if _, err := pickContainer(p, "nope"); err == nil || !strings.Contains(err.Error(), "has no container \"nope\"; it has istio-proxy, app") {
		t.Errorf("pickContainer(nope): %v", err)
	}
}

// syncBuffer is written by follow and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestFollow: a followed log shows what was there, then what is appended
// (also by the container after a restart, which appends), and the new file
// when it is replaced or truncated; it ends when ctx ends or the pod is gone.
func TestFollow(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	write := func(flag int, s string) {
		t.Helper()
		f, err := os.OpenFile(path, flag|os.O_WRONLY|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	waitFor := func(out *syncBuffer, want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for out.String() != want {
			if time.Now().After(deadline) {
				t.Fatalf("followed output %q, want %q", out.String(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	write(os.O_TRUNC, "one\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	var gone sync.Mutex
	isGone := false
	done := make(chan error, 1)
	go func() {
		done <- follow(ctx, path, &out, func() bool { gone.Lock(); defer gone.Unlock(); return isGone }, 5*time.Millisecond)
	}()
	waitFor(&out, "one\n")
	write(os.O_APPEND, "two\n")
	waitFor(&out, "one\ntwo\n")
	write(os.O_APPEND, "--- restarted\nthree\n") // the supervisor appends after a restart
	waitFor(&out, "one\ntwo\n--- restarted\nthree\n")

	// Replaced by a new file.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	write(os.O_TRUNC, "fresh\n")
	waitFor(&out, "one\ntwo\n--- restarted\nthree\nfresh\n")
	// Truncated in place.
	write(os.O_TRUNC, "x\n")
	waitFor(&out, "one\ntwo\n--- restarted\nthree\nfresh\nx\n")

	gone.Lock()
	isGone = true
	gone.Unlock()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not end once the pod was gone")
	}

	// And it ends with ctx.
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { done <- follow(ctx2, path, &syncBuffer{}, func() bool { return false }, 5*time.Millisecond) }()
	cancel2()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not end with its context")
	}
}

// TestLogs: Logs finds the container through the lab's record, as the
// runtime writes it, and copies its log.
func TestLogs(t *testing.T) {
	dir := t.TempDir()
	logs := map[string]string{"istio-proxy": "[proxy] ready\n", "httpbin": "serving on :8080\n"}
	var cs []lab.Container
	for _, n := range []string{"istio-proxy", "httpbin"} {
		p := filepath.Join(dir, n+".log")
		if err := os.WriteFile(p, []byte(logs[n]), 0o600); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, lab.Container{Name: n, Running: true, Log: p})
	}
	st := lab.Status{Runtime: "local", Phase: lab.PhaseRunning, PID: os.Getpid(), Pods: []lab.Pod{
		{Namespace: "foo", Name: "httpbin-5d8f7c-abcde", Deployment: "httpbin", Ready: true, Containers: cs}}}
	if err := lab.WriteStatus(dir, st); err != nil {
		t.Fatal(err)
	}
	l, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ pod, container, want string }{
		{"deploy/httpbin", "", logs["httpbin"]},
		{"deploy/httpbin", "istio-proxy", logs["istio-proxy"]},
		{"httpbin-5d8f7c-abcde", "", logs["httpbin"]},
	} {
		var out bytes.Buffer
		if err := l.Logs(context.Background(), lab.LogOptions{Namespace: "foo", Pod: tt.pod, Container: tt.container, Out: &out}); err != nil {
			t.Fatal(err)
		}
		if out.String() != tt.want {
			t.Errorf("logs %s -c %q = %q, want %q", tt.pod, tt.container, out.String(), tt.want)
		}
	}
	pods, err := l.Pods(context.Background(), "foo")
	if err != nil || len(pods) != 1 || pods[0].Name != "httpbin-5d8f7c-abcde" {
		t.Errorf("Pods(foo) = %v, %v", pods, err)
	}
	if pods, err := l.Pods(context.Background(), "bar"); err != nil || len(pods) != 0 {
		t.Errorf("Pods(bar) = %v, %v; want none", pods, err)
	}
}
