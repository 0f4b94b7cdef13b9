package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/meshlab/meshlab/controlplane/api"
	"github.com/meshlab/meshlab/lab"
	"github.com/meshlab/meshlab/lab/podnet"
)

func testRegistry(t *testing.T) api.Registry {
	t.Helper()
	b, err := os.ReadFile("testdata/dns-registry.json")
	if err != nil {
		t.Fatal(err)
	}
	var reg api.Registry
	if err := json.Unmarshal(b, &reg); err != nil {
		t.Fatal(err)
	}
	return reg
}

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

// The names a Kubernetes pod resolves through its search list, relative
// to the pod's namespace for a bare Service name; headless Services
// answer with their ready endpoints in their own namespace.
func TestDNSNames(t *testing.T) {
	n := newDNSNames(testRegistry(t))
	tests := []struct {
		ns, name string
		want     []netip.Addr
		known    bool
	}{
		{"", "httpbin.foo.svc.cluster.local", addrs("198.19.0.20"), true},
		{"", "httpbin.foo.svc", addrs("198.19.0.20"), true},
		{"", "httpbin.foo", addrs("198.19.0.20"), true},
		{"legacy", "httpbin.foo", addrs("198.19.0.20"), true},
		{"legacy", "httpbin", addrs("198.19.0.21"), true},
		{"foo", "httpbin", addrs("198.19.0.20"), true},
		{"", "httpbin", nil, false},
		{"bar", "httpbin", nil, false},
		{"foo", "db", addrs("198.18.0.30", "198.18.0.31"), true},
		{"", "db.foo.svc.cluster.local", addrs("198.18.0.30", "198.18.0.31"), true},
		{"", "empty.foo", nil, true},
		{"", "pending.foo.svc.cluster.local", nil, true},
		{"", "httpbin.foo.cluster.local", nil, false},
		{"foo", "httpbin.svc", nil, false},
		{"foo", "httpbin.svc.cluster.local", nil, false},
		{"", "nope.foo.svc.cluster.local", nil, false},
		{"", "a.httpbin.foo.svc.cluster.local", nil, false},
		{"foo", "cluster.local", nil, false},
		{"", "www.example.com", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.ns+"/"+tt.name, func(t *testing.T) {
			got, known := n.resolve(tt.ns, tt.name)
			if known != tt.known || !slices.Equal(got, tt.want) {
				t.Errorf("resolve(%q, %q) = %v, %v; want %v, %v", tt.ns, tt.name, got, known, tt.want, tt.known)
			}
		})
	}
}

// A client's namespace is its pod's; the registry's workloads stand in
// for pods the runtime does not run.
func TestPodNamespace(t *testing.T) {
	r := &Runtime{pods: []*pod{{Pod: lab.Pod{Namespace: "legacy", Name: "sleep-1", IP: "198.18.0.5"}}}}
	n := newDNSNames(testRegistry(t))
	for ip, want := range map[string]string{"198.18.0.5": "legacy", "198.18.0.6": "bar", "198.18.0.99": "", "127.0.0.1": ""} {
		if got := r.podNamespace(netip.MustParseAddr(ip), n); got != want {
			t.Errorf("podNamespace(%s) = %q, want %q", ip, got, want)
		}
	}
}

// A pod without a sidecar resolves Services, short names in its own
// namespace, headless Services' ready endpoints and the world's names
// (through the host's nameservers, here a stand-in on loopback) the way a
// program does: Go's resolver and glibc's, reading the host's
// /etc/resolv.conf as the pod does, its query sent on by podDNS's capture
// to the cluster DNS on the bridge's host address.
//
// The "node" is a network namespace of its own with the lab's bridge and
// gateway address, so nothing of this machine's network changes.
func TestClusterDNSInPod(t *testing.T) {
	if err := podnet.Check(); err != nil {
		t.Skipf("cluster DNS test: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var regMu sync.Mutex
	reg := testRegistry(t)
	cp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != api.PathRegistry {
			http.NotFound(w, req)
			return
		}
		regMu.Lock()
		defer regMu.Unlock()
		if err := json.NewEncoder(w).Encode(reg); err != nil {
			t.Error(err)
		}
	}))
	defer cp.Close()
	upstream := startTestUpstream(t)

	node := newTestNetns(t, fmt.Sprintf("mlabdns-node-%d", os.Getpid()))
	n := Network
	n.Bridge, n.NetnsPrefix, n.SysctlRecord = "mlabdns0", "mlabdns-", ""
	podIP := netip.MustParseAddr("198.18.0.5")
	podName := fmt.Sprintf("pod-%d", os.Getpid())
	var np podnet.Pod
	err := podnet.Do(node, func() (err error) {
		if err := n.EnsureBridge(ctx); err != nil {
			return err
		}
		np, err = n.AddPod(ctx, podName, podIP)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := podnet.Do(node, func() error { return n.DelPod(context.Background(), podName) }); err != nil {
			t.Errorf("delete pod: %v", err)
		}
	})

	r := &Runtime{log: slog.New(slog.NewTextHandler(io.Discard, nil)), cp: api.NewClient(cp.URL)}
	r.pods = []*pod{{Pod: lab.Pod{Namespace: "legacy", Name: "sleep-1", IP: podIP.String(), Netns: np.NetnsPath}}}
	dnsCtx, stopDNS := context.WithCancel(ctx)
	err = podnet.Do(node, func() error {
		return r.serveClusterDNS(dnsCtx, netip.AddrPortFrom(Network.Gateway, 53), []netip.AddrPort{upstream})
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { stopDNS(); r.wg.Wait() }()
	if err := podDNS(np.NetnsPath); err != nil {
		t.Fatal(err)
	}
	if err := r.podServices(np.NetnsPath); err != nil {
		t.Fatal(err)
	}
	// httpbin-1 of the registry, serving on its target port.
	epName := fmt.Sprintf("ep-%d", os.Getpid())
	var ep podnet.Pod
	if err := podnet.Do(node, func() (err error) { ep, err = n.AddPod(ctx, epName, netip.MustParseAddr("198.18.0.21")); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := podnet.Do(node, func() error { return n.DelPod(context.Background(), epName) }); err != nil {
			t.Errorf("delete pod: %v", err)
		}
	})
	var httpbinLn net.Listener
	if err := podnet.Do(ep.NetnsPath, func() (err error) { httpbinLn, err = net.Listen("tcp4", ":80"); return err }); err != nil {
		t.Fatal(err)
	}
	httpbin := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		host, _, _ := net.SplitHostPort(req.RemoteAddr)
		fmt.Fprintf(w, "httpbin-1 saw %s", host)
	})}
	go httpbin.Serve(httpbinLn)
	defer httpbin.Close()

	// resolverIn resolves as a program in the pod does; via, when set,
	// replaces the resolv.conf nameserver (a loopback resolver).
	resolverIn := func(via string) *net.Resolver {
		return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			if via != "" {
				address = via
			}
			var c net.Conn
			// The socket is made in the pod; the resolver's goroutines
			// then use it from any thread.
			err := podnet.Do(np.NetnsPath, func() (err error) {
				var d net.Dialer
				c, err = d.DialContext(ctx, network, address)
				return err
			})
			return c, err
		}}
	}
	lookup := func(res *net.Resolver, name string) ([]string, error) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		ips, err := res.LookupNetIP(ctx, "ip", name)
		var out []string
		for _, ip := range ips {
			out = append(out, ip.String())
		}
		sort.Strings(out)
		return out, err
	}
	system := resolverIn("")
	// The registry is read right after the DNS starts.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := lookup(system, "httpbin.foo"); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("httpbin.foo never resolved: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	tests := []struct {
		name string
		want []string // nil: not found
	}{
		{"httpbin.foo", []string{"198.19.0.20"}},
		{"httpbin.foo.svc", []string{"198.19.0.20"}},
		{"httpbin.foo.svc.cluster.local", []string{"198.19.0.20"}},
		{"HTTPBIN.foo.svc.cluster.local.", []string{"198.19.0.20"}},
		{"httpbin", []string{"198.19.0.21"}}, // the pod's own namespace: legacy
		{"db.foo", []string{"198.18.0.30", "198.18.0.31"}},
		{"nope.foo.svc.cluster.local", nil},
		{"www.example.com", []string{"192.0.2.77"}}, // forwarded upstream
	}
	for _, via := range []string{"", "127.0.0.53:53"} {
		res := system
		label := "resolv.conf"
		if via != "" {
			res, label = resolverIn(via), via
		}
		for _, tt := range tests {
			t.Run("go via "+label+" "+tt.name, func(t *testing.T) {
				got, err := lookup(res, tt.name)
				if tt.want == nil {
					var dnsErr *net.DNSError
					if err == nil || !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
						t.Fatalf("lookup %s = %v, %v; want not found", tt.name, got, err)
					}
					return
				}
				if err != nil || !slices.Equal(got, tt.want) {
					t.Fatalf("lookup %s = %v, %v; want %v", tt.name, got, err, tt.want)
				}
			})
		}
	}

	// The issue's own check: a legacy pod reaches httpbin.foo by name,
	// through its VIP, as itself; legacy's httpbin has no endpoints.
	httpGet := func(url string) (string, error) {
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				var c net.Conn
				err := podnet.Do(np.NetnsPath, func() (err error) {
					c, err = (&net.Dialer{Resolver: system}).DialContext(ctx, "tcp4", addr)
					return err
				})
				return c, err
			}}}
		defer client.CloseIdleConnections()
		resp, err := client.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	curl, curlErr := exec.LookPath("curl")
	nsenter, nsenterErr := exec.LookPath("nsenter")
	curlIn := func(url string) (string, error) {
		cmdCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(cmdCtx, nsenter, "--net="+np.NetnsPath, curl, "-sS", "--noproxy", "*", "--max-time", "10", url).CombinedOutput()
		return string(out), err
	}
	const wantBody = "httpbin-1 saw 198.18.0.5"
	t.Run("go http httpbin.foo:8000", func(t *testing.T) {
		if body, err := httpGet("http://httpbin.foo:8000/ip"); err != nil || body != wantBody {
			t.Fatalf("GET = %q, %v; want %q", body, err, wantBody)
		}
		if body, err := httpGet("http://httpbin:8000/ip"); err == nil || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("GET legacy's httpbin = %q, %v; want connection refused", body, err)
		}
	})
	if curlErr == nil && nsenterErr == nil {
		t.Run("curl httpbin.foo:8000", func(t *testing.T) {
			if out, err := curlIn("http://httpbin.foo:8000/ip"); err != nil || out != wantBody {
				t.Fatalf("curl = %q, %v; want %q", out, err, wantBody)
			}
			if out, err := curlIn("http://httpbin:8000/ip"); err == nil || !strings.Contains(out, "onnect") {
				t.Fatalf("curl legacy's httpbin = %q, %v; want a refused connection", out, err)
			}
		})
	} else {
		t.Logf("no curl or nsenter (%v, %v): curl not tried", curlErr, nsenterErr)
	}

	// glibc's getaddrinfo, what curl uses, through the host's nsswitch and
	// resolv.conf inside the pod's namespace.
	if nsenterErr == nil {
		for _, tt := range tests {
			if tt.want == nil {
				continue
			}
			t.Run("glibc "+tt.name, func(t *testing.T) {
				cmdCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
				defer cancel()
				out, err := exec.CommandContext(cmdCtx, nsenter, "--net="+np.NetnsPath, "getent", "ahostsv4", tt.name).CombinedOutput()
				if err != nil {
					t.Fatalf("getent ahostsv4 %s in the pod: %v\n%s", tt.name, err, out)
				}
				got := map[string]bool{}
				for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
					if f := strings.Fields(line); len(f) > 0 {
						got[f[0]] = true
					}
				}
				if len(got) != len(tt.want) {
					t.Fatalf("getent = %q, want %v", out, tt.want)
				}
				for _, w := range tt.want {
					if !got[w] {
						t.Fatalf("getent = %q, want %v", out, tt.want)
					}
				}
			})
		}
	} else {
		t.Log("no nsenter: glibc's resolver not tried")
	}

	// A pod becoming ready is in the headless Service's answer as soon
	// as the runtime asks for a refresh.
	t.Run("refresh", func(t *testing.T) {
		regMu.Lock()
		for i := range reg.Workloads {
			if reg.Workloads[i].Name == "db-2" {
				reg.Workloads[i].Ready = true
			}
		}
		regMu.Unlock()
		start := time.Now()
		r.refreshDNS()
		want := []string{"198.18.0.30", "198.18.0.31", "198.18.0.32"}
		for {
			got, err := lookup(system, "db.foo")
			if err == nil && slices.Equal(got, want) {
				break
			}
			if time.Since(start) > dnsRefresh/2 {
				t.Fatalf("db.foo = %v, %v %v after refreshDNS; want %v", got, err, time.Since(start), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Logf("new endpoint answered %v after refreshDNS", time.Since(start).Round(time.Millisecond))
	})
	// An endpoint that stops being ready leaves the VIP as it leaves DNS.
	t.Run("refresh VIPs", func(t *testing.T) {
		setReady := func(ready bool) {
			regMu.Lock()
			defer regMu.Unlock()
			for i := range reg.Workloads {
				if reg.Workloads[i].Name == "httpbin-1" {
					reg.Workloads[i].Ready = ready
				}
			}
		}
		for _, ready := range []bool{false, true} {
			setReady(ready)
			start := time.Now()
			r.refreshDNS()
			for {
				body, err := httpGet("http://httpbin.foo:8000/ip")
				if ready && err == nil && body == wantBody {
					break
				}
				if !ready && err != nil && strings.Contains(err.Error(), "connection refused") {
					break
				}
				if time.Since(start) > dnsRefresh/2 {
					t.Fatalf("ready %v: GET = %q, %v after %v", ready, body, err, time.Since(start))
				}
				time.Sleep(5 * time.Millisecond)
			}
			t.Logf("endpoint ready=%v reflected in the VIP %v after refreshDNS", ready, time.Since(start).Round(time.Millisecond))
		}
	})

	// What a lookup costs a pod (A and AAAA, Go's resolver).
	const rounds = 200
	start := time.Now()
	for i := 0; i < rounds; i++ {
		if _, err := lookup(system, "httpbin.foo.svc.cluster.local"); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d lookups of httpbin.foo.svc.cluster.local from the pod: %v each", rounds, time.Since(start)/rounds)
}

// startTestUpstream stands in for the host's nameserver on loopback (the
// forwarder dials from the runtime's namespace, the host's): it knows
// www.example.com only.
func startTestUpstream(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var m dnsmessage.Message
			if err := m.Unpack(buf[:n]); err != nil || len(m.Questions) != 1 {
				continue
			}
			q := m.Questions[0]
			m.Response, m.RecursionAvailable, m.Authoritative = true, true, true
			m.Additionals = nil
			switch {
			case !strings.EqualFold(q.Name.String(), "www.example.com."):
				m.RCode = dnsmessage.RCodeNameError
			case q.Type == dnsmessage.TypeA:
				m.Answers = []dnsmessage.Resource{{
					Header: dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 60},
					Body:   &dnsmessage.AResource{A: [4]byte{192, 0, 2, 77}},
				}}
			}
			out, err := m.Pack()
			if err != nil {
				continue
			}
			if _, err := pc.WriteTo(out, from); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// newTestNetns creates a named network namespace with lo up, deleted
// when the test ends, and returns its path.
func newTestNetns(t *testing.T, name string) string {
	t.Helper()
	_ = netns.DeleteNamed(name) // a leftover of an interrupted run
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread leaves with the goroutine
		h, err := netns.NewNamed(name)
		if err != nil {
			errc <- err
			return
		}
		defer h.Close()
		// Up, as a host's lo is: the node's own clients talk over it.
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	return podnet.NetnsDir + "/" + name
}

// startClusterDNS binds the bridge's host address, port 53, and answers
// there for cluster.local itself (never forwarded: this test must not
// reach the host's real nameservers); a second one finds the port taken
// and says so.
func TestStartClusterDNS(t *testing.T) {
	if err := podnet.Check(); err != nil {
		t.Skipf("cluster DNS test: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	node := newTestNetns(t, fmt.Sprintf("mlabdns-start-%d", os.Getpid()))
	n := Network
	n.Bridge, n.NetnsPrefix, n.SysctlRecord = "mlabdns0", "mlabdns-", ""
	// No control plane: names stay empty, the DNS answers all the same.
	r := &Runtime{log: slog.New(slog.NewTextHandler(io.Discard, nil)), cp: api.NewClient("127.0.0.1:1")}
	err := podnet.Do(node, func() error {
		if err := n.EnsureBridge(ctx); err != nil {
			return err
		}
		return r.startClusterDNS(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); r.wg.Wait() }()
	again := &Runtime{log: r.log, cp: r.cp}
	if err := podnet.Do(node, func() error { return again.startClusterDNS(ctx) }); err == nil || !strings.Contains(err.Error(), "port 53") {
		t.Errorf("second startClusterDNS = %v, want the port taken", err)
	}
	for _, network := range []string{"udp", "tcp"} {
		var c net.Conn
		if err := podnet.Do(node, func() (err error) {
			c, err = net.Dial(network, netip.AddrPortFrom(Network.Gateway, 53).String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 9, RecursionDesired: true})
		b.StartQuestions()
		b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("nope.foo.svc.cluster.local."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
		q, err := b.Finish()
		if err != nil {
			t.Fatal(err)
		}
		if network == "tcp" {
			q = append([]byte{byte(len(q) >> 8), byte(len(q))}, q...)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(q); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1500)
		k, err := c.Read(buf)
		if err != nil {
			t.Fatalf("%s: no answer: %v", network, err)
		}
		if network == "tcp" {
			buf = buf[2:k]
		} else {
			buf = buf[:k]
		}
		var m dnsmessage.Message
		if err := m.Unpack(buf); err != nil || m.ID != 9 || m.RCode != dnsmessage.RCodeNameError || !m.Authoritative {
			t.Errorf("%s: answer %+v (%v), want an authoritative NXDOMAIN", network, m.Header, err)
		}
	}
}
