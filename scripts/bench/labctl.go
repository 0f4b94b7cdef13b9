package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/local"
	"github.com/meshlab/meshlab/lab/podnet"
)

// labCtl drives one lab through the meshlab binary, as a person would.
type labCtl struct {
	bin   string // the meshlab binary
	state string // its state directory
	ports [3]int // http, https, api
	// env is added to the binary's environment; timeout bounds each
	// command (3 minutes when zero).
	env     []string
	timeout time.Duration
}

func buildMeshlab(ctx context.Context, root, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, ".")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build meshlab: %w\n%s", err, b)
	}
	return nil
}

// labBusy says why no lab can start here now: only one lab at a time owns
// bridge mlab0, and another person's must not be torn down.
func labBusy() error {
	if _, err := net.InterfaceByName(local.Network.Bridge); err == nil {
		return fmt.Errorf("bridge %s exists: another lab is running on this machine (wait for it, or run with -wait-lab)", local.Network.Bridge)
	}
	return nil
}

// labLock is the machine-wide lock lab tests take turns on the pod network
// with (lab/labtest.LockFile); the harness takes it too while it has a lab.
const labLock = "/run/meshlab/e2e.lock"

// acquireLab waits, bounded, for the pod network to be free: the lab lock
// held by no one and no other lab's bridge. release gives the lock back.
func acquireLab(ctx context.Context, max time.Duration) (release func(), err error) {
	if err := os.MkdirAll(filepath.Dir(labLock), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(labLock, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(max)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			if err = labBusy(); err == nil {
				// Closing the lock file releases the flock; nothing was
				// written to it.
				return func() { _ = f.Close() }, nil
			}
			// Were the unlock to fail, the next Flock on this same file
			// description just re-takes it, and Close below releases it.
			_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		} else {
			err = fmt.Errorf("lab tests hold %s", labLock)
		}
		if time.Now().After(deadline) {
			_ = f.Close()
			return nil, fmt.Errorf("%w (wait longer with -wait-lab)", err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

func (l *labCtl) run(ctx context.Context, args ...string) (string, error) {
	timeout := l.timeout
	if timeout == 0 {
		timeout = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, l.bin, args...)
	cmd.Env = append(append(os.Environ(), l.env...), "MESHLAB_STATE_DIR="+l.state)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("meshlab %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

func (l *labCtl) upArgs(extra ...string) []string {
	return append([]string{"up", "--runtime", "local",
		"--http-port", strconv.Itoa(l.ports[0]), "--https-port", strconv.Itoa(l.ports[1]), "--api-port", strconv.Itoa(l.ports[2])}, extra...)
}

func (l *labCtl) up(ctx context.Context, extra ...string) (string, error) {
	return l.run(ctx, l.upArgs(extra...)...)
}

func (l *labCtl) down(ctx context.Context) error {
	_, err := l.run(ctx, "down")
	return err
}

func (l *labCtl) status() (lab.Status, error) { return lab.ReadStatus(l.state) }

func (l *labCtl) apiAddr() string { return "127.0.0.1:" + strconv.Itoa(l.ports[2]) }

// api is a client of the lab's control plane with the lab's credential.
func (l *labCtl) api() (*api.Client, error) {
	tok, err := lab.ReadAPIToken(l.state)
	if err != nil {
		return nil, err
	}
	cl := api.NewClient(l.apiAddr())
	cl.Token = tok
	return cl, nil
}

// containerPID is the pid of a container of a pod found by Deployment name.
func containerPID(st lab.Status, ns, deploy, container string) (lab.Pod, int, error) {
	p, err := st.FindPod(ns, deploy)
	if err != nil {
		return p, 0, err
	}
	for _, c := range p.Containers {
		if c.Name == container && c.Running && c.PID > 0 {
			return p, c.PID, nil
		}
	}
	return p, 0, fmt.Errorf("pod %s/%s has no running container %s", p.Namespace, p.Name, container)
}

// nsCommand runs argv inside a pod's network namespace through the
// binary's ns-exec: a network namespace is per thread, so a multi-threaded
// program such as fortio must be started inside it, not entered.
func (l *labCtl) nsCommand(ctx context.Context, netns string, argv ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, l.bin, append([]string{"ns-exec", "--net", netns, "--"}, argv...)...)
	// A container's environment, not the caller's: no proxy variables.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=/root"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// podGet fetches url from inside a pod's network namespace (the socket is
// made on a thread in the namespace, then lives on there), with Host header
// host when it is not empty.
func podGet(ctx context.Context, netns, url, host string, out io.Writer) error {
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := podnet.Do(netns, func() error {
				var err error
				c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		}}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if host != "" {
		req.Host = host
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return fmt.Errorf("GET %s in %s: %w", url, filepath.Base(netns), err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s in %s: %s", url, filepath.Base(netns), resp.Status)
	}
	if out == nil {
		out = io.Discard
	}
	_, err = io.Copy(out, resp.Body)
	return err
}

// waitPodGet retries podGet until it answers 200 or the bound passes.
func waitPodGet(ctx context.Context, netns, url, host string, max time.Duration) error {
	deadline := time.Now().Add(max)
	for {
		gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := podGet(gctx, netns, url, host, nil)
		cancel()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ensurePackages installs the Debian packages of the comparison proxies when
// their binaries are missing.
func ensurePackages(ctx context.Context) error {
	var want []string
	if _, err := exec.LookPath("nginx"); err != nil {
		want = append(want, "nginx-light")
	}
	if _, err := exec.LookPath("haproxy"); err != nil {
		want = append(want, "haproxy")
	}
	if len(want) == 0 {
		return nil
	}
	install := func() error {
		cmd := exec.CommandContext(ctx, "apt-get", append([]string{"install", "-y", "--no-install-recommends"}, want...)...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("apt-get install %s: %w\n%s", strings.Join(want, " "), err, tailText(string(out), 10))
		}
		return nil
	}
	if err := install(); err == nil {
		return nil
	}
	if out, err := exec.CommandContext(ctx, "apt-get", "update").CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get update: %w\n%s", err, tailText(string(out), 10))
	}
	// nginx-light is gone from newer Debian releases; nginx is the same
	// server with more modules.
	if err := install(); err != nil {
		for i, w := range want {
			if w == "nginx-light" {
				want[i] = "nginx"
			}
		}
		return install()
	}
	return nil
}

func tailText(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func versionOf(argv ...string) string {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

// nginxConf is nginx as a plain reverse proxy: one worker, no access log,
// keep-alive to the upstream.
func nginxConf(dir, upstream string) string {
	return fmt.Sprintf(`worker_processes 1;
master_process off;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/tmp-body;
  proxy_temp_path %[1]s/tmp-proxy;
  fastcgi_temp_path %[1]s/tmp-fastcgi;
  uwsgi_temp_path %[1]s/tmp-uwsgi;
  scgi_temp_path %[1]s/tmp-scgi;
  upstream backend {
    server %[2]s;
    keepalive 64;
  }
  server {
    listen 8080;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`, dir, upstream)
}

// haproxyConf is haproxy as a plain reverse proxy: one thread, keep-alive
// both ways, connections to the server reused.
func haproxyConf(upstream string) string {
	return fmt.Sprintf(`global
  nbthread 1
  maxconn 4096
defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend fe
  bind :8080
  default_backend be
backend be
  server s1 %s
`, upstream)
}

// proc is a comparison proxy the harness started and owns.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startProxy starts a comparison proxy in a pod; the caller stops it.
func (l *labCtl) startProxy(ctx context.Context, netns, logPath string, argv ...string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := l.nsCommand(ctx, netns, argv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The proxy writes its log through its own descriptor; ours only hands
	// it over, and stop's signal makes a non-zero exit the expected one.
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		_ = cmd.Wait()
		_ = logf.Close()
	}()
	return p, nil
}

// stop ends the proxy's process group: SIGTERM, then SIGKILL after 5s.
func (p *proc) stop() {
	if p == nil {
		return
	}
	// The group may be gone already; done says when it is.
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }
