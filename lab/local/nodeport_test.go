package local

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshlab/meshlab/controlplane/registry"
)

// The node's addresses in these tests: two, as the lab has 127.0.0.1 and
// the bridge's address. Pods are other loopback addresses.
var testHostAddrs = []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.9")}

// backend is a pod's server: it greets each connection with its name, then
// echoes lines, so a test knows which pod a connection reached and that
// the connection is still alive.
func backend(t *testing.T, ip string, port int, name string) int {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("backend %s: %v", name, err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { _ = c.Close() }()
				if _, err := fmt.Fprintln(c, name); err != nil {
					return
				}
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := io.WriteString(c, name+" "+line); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// freePort is a port nothing listens on at any of addrs.
func freePort(t *testing.T, addrs ...netip.Addr) uint32 {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", net.JoinHostPort(addrs[0].String(), "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		lns := []net.Listener{ln}
		ok := true
		for _, a := range addrs[1:] {
			l, err := net.Listen("tcp", net.JoinHostPort(a.String(), strconv.Itoa(port)))
			if err != nil {
				ok = false
				break
			}
			lns = append(lns, l)
		}
		for _, l := range lns {
			_ = l.Close()
		}
		if ok {
			return uint32(port)
		}
	}
	t.Fatal("no port free on every address")
	return 0
}

func nodePortService(name string, nodePort, target uint32) registry.Service {
	return registry.Service{Name: name, Namespace: "default", Type: "NodePort", Selector: map[string]string{"app": name},
		Ports: []registry.Port{{Name: "http", Port: 9080, TargetPort: target, NodePort: nodePort}}}
}

func workload(name, ns, ip, app string, ready bool) registry.Workload {
	return registry.Workload{Name: name, Namespace: ns, IP: netip.MustParseAddr(ip), Labels: map[string]string{"app": app}, Ready: ready}
}

func startNodePorts(t *testing.T) *nodePorts {
	t.Helper()
	n := newNodePorts(testHostAddrs, slog.New(slog.DiscardHandler))
	t.Cleanup(n.Close)
	return n
}

// conn is a client connection through a nodePort, with the name of the
// pod that greeted it ("" when the connection was closed without one).
type conn struct {
	c    net.Conn
	r    *bufio.Reader
	from string
}

func dialNode(t *testing.T, host netip.Addr, port uint32) (*conn, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", net.JoinHostPort(host.String(), strconv.Itoa(int(port))), 2*time.Second)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	greeting, err := r.ReadString('\n')
	if err != nil {
		return &conn{c: c, r: r}, nil
	}
	return &conn{c: c, r: r, from: strings.TrimSuffix(greeting, "\n")}, nil
}

// echo checks the connection is still relayed to its pod.
func (c *conn) echo(t *testing.T, what string) {
	t.Helper()
	if _, err := io.WriteString(c.c, what+"\n"); err != nil {
		t.Fatalf("connection to %s: write: %v", c.from, err)
	}
	got, err := c.r.ReadString('\n')
	if want := c.from + " " + what + "\n"; err != nil || got != want {
		t.Fatalf("connection to %s: answer %q, %v; want %q", c.from, got, err, want)
	}
}

func refused(t *testing.T, host netip.Addr, port uint32) bool {
	t.Helper()
	c, err := net.DialTimeout("tcp", net.JoinHostPort(host.String(), strconv.Itoa(int(port))), 2*time.Second)
	if err == nil {
		_ = c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// TestNodePortsRouting: connections through either host address reach the
// Service's ready endpoints in turn; unready pods and pods of another
// namespace get none; with no ready endpoint a connection is closed at once.
func TestNodePortsRouting(t *testing.T) {
	tests := []struct {
		name      string
		workloads []registry.Workload
		want      map[string]int // greeting -> connections, of 8
	}{
		{"two ready endpoints share", []registry.Workload{
			workload("reviews-a", "default", "127.0.0.2", "reviews", true),
			workload("reviews-b", "default", "127.0.0.3", "reviews", true),
		}, map[string]int{"127.0.0.2": 4, "127.0.0.3": 4}},
		{"unready endpoint gets none", []registry.Workload{
			workload("reviews-a", "default", "127.0.0.2", "reviews", true),
			workload("reviews-b", "default", "127.0.0.3", "reviews", false),
		}, map[string]int{"127.0.0.2": 8}},
		{"another namespace's pod is not an endpoint", []registry.Workload{
			workload("reviews-a", "default", "127.0.0.2", "reviews", true),
			workload("reviews-b", "other", "127.0.0.3", "reviews", true),
		}, map[string]int{"127.0.0.2": 8}},
		{"no ready endpoint: closed at once", []registry.Workload{
			workload("reviews-a", "default", "127.0.0.2", "reviews", false),
		}, map[string]int{"": 8}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := backend(t, "127.0.0.2", 0, "127.0.0.2")
			backend(t, "127.0.0.3", target, "127.0.0.3")
			nodePort := freePort(t, testHostAddrs...)
			n := startNodePorts(t)
			snap := registry.Snapshot{
				Services: []registry.Service{
					nodePortService("reviews", nodePort, uint32(target)),
					// A ClusterIP Service is not published.
					{Name: "ratings", Namespace: "default", Selector: map[string]string{"app": "reviews"},
						Ports: []registry.Port{{Port: 9080, TargetPort: uint32(target)}}},
				},
				Workloads: tt.workloads,
			}
			if err := n.Sync(context.Background(), snap); err != nil {
				t.Fatal(err)
			}
			got := map[string]int{}
			for i := range 8 {
				start := time.Now()
				c, err := dialNode(t, testHostAddrs[i%2], nodePort)
				var from string
				switch {
				case err == nil:
					from = c.from
					_ = c.c.Close()
				case errors.Is(err, syscall.ECONNRESET):
					// Reset before the dial returned: closed, with no greeting.
				default:
					t.Fatalf("dial %s:%d: %v", testHostAddrs[i%2], nodePort, err)
				}
				if d := time.Since(start); from == "" && d > time.Second {
					t.Errorf("connection without endpoint closed after %v, want at once", d)
				}
				got[from]++
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("connections per pod = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestNodePortsSync follows one nodePort through Syncs: an unchanged
// snapshot keeps an open connection alive, a changed target re-routes new
// connections only, a removed Service's port closes, and Close ends
// everything it started.
func TestNodePortsSync(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	oldTarget := backend(t, "127.0.0.2", 0, "old")
	newTarget := backend(t, "127.0.0.2", 0, "new")
	nodePort := freePort(t, testHostAddrs...)
	workloads := []registry.Workload{workload("reviews-a", "default", "127.0.0.2", "reviews", true)}
	snap := func(gen uint64, svcs ...registry.Service) registry.Snapshot {
		return registry.Snapshot{Services: svcs, Workloads: workloads, Generation: gen}
	}
	n := newNodePorts(testHostAddrs, slog.New(slog.DiscardHandler))
	defer n.Close()
	ctx := context.Background()

	if err := n.Sync(ctx, snap(1, nodePortService("reviews", nodePort, uint32(oldTarget)))); err != nil {
		t.Fatal(err)
	}
	first, err := dialNode(t, testHostAddrs[0], nodePort)
	if err != nil || first.from != "old" {
		t.Fatalf("first connection: %v, reached %q, want old", err, first.from)
	}
	first.echo(t, "hello")
	// The same listeners throughout: a port that stays is never closed and
	// reopened, which would refuse connections in between.
	listeners := func() []net.Listener {
		n.mu.Lock()
		defer n.mu.Unlock()
		return slices.Clone(n.ports[nodePort].lns)
	}
	published := listeners()

	// Unchanged (apart from the generation): the open connection goes on.
	for gen := uint64(2); gen < 4; gen++ {
		if err := n.Sync(ctx, snap(gen, nodePortService("reviews", nodePort, uint32(oldTarget)))); err != nil {
			t.Fatal(err)
		}
		first.echo(t, "still there "+strconv.FormatUint(gen, 10))
		if !slices.Equal(listeners(), published) {
			t.Error("an unchanged Sync replaced the port's listeners")
		}
	}

	// A new target: new connections go there, the open one stays.
	if err := n.Sync(ctx, snap(4, nodePortService("reviews", nodePort, uint32(newTarget)))); err != nil {
		t.Fatal(err)
	}
	for _, h := range testHostAddrs {
		c, err := dialNode(t, h, nodePort)
		if err != nil || c.from != "new" {
			t.Errorf("after the target changed, a connection via %s: %v, reached %q, want new", h, err, c.from)
		}
	}
	first.echo(t, "after the change")
	if !slices.Equal(listeners(), published) {
		t.Error("a new target replaced the port's listeners")
	}

	// The Service gone: its port refuses on every host address.
	if err := n.Sync(ctx, snap(5)); err != nil {
		t.Fatal(err)
	}
	for _, h := range testHostAddrs {
		if !refused(t, h, nodePort) {
			t.Errorf("%s:%d still accepts after its Service was removed", h, nodePort)
		}
	}

	n.Close()
	if _, err := first.r.ReadString('\n'); err == nil {
		t.Error("a relayed connection outlived Close")
	}
	if err := n.Sync(ctx, snap(6, nodePortService("reviews", nodePort, uint32(oldTarget)))); err == nil {
		t.Error("Sync after Close succeeded")
	}
	// Every goroutine of the nodePorts has ended (the backends' are the
	// test's, ended by its cleanup, so count them out: 1 + 1 per conn).
	_ = first.c.Close()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > goroutines+2+2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > goroutines+2+2 {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines after Close, %d before (and 2 backends):\n%s", g, goroutines, buf[:runtime.Stack(buf, true)])
	}
}

// TestNodePortsPortHeld: a nodePort another program holds is reported with
// the Service and address, the other Services' ports work meanwhile, and
// the next Sync publishes it once it is free.
func TestNodePortsPortHeld(t *testing.T) {
	target := backend(t, "127.0.0.2", 0, "127.0.0.2")
	held, free := freePort(t, testHostAddrs...), freePort(t, testHostAddrs...)
	other, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(held))))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Close() }()
	n := startNodePorts(t)
	snap := registry.Snapshot{
		Services: []registry.Service{nodePortService("held", held, uint32(target)), nodePortService("reviews", free, uint32(target))},
		Workloads: []registry.Workload{
			workload("held-a", "default", "127.0.0.2", "held", true), workload("reviews-a", "default", "127.0.0.2", "reviews", true),
		},
	}
	err = n.Sync(context.Background(), snap)
	want := fmt.Sprintf("nodePort %d of Service default/held: listen 127.0.0.1:%d: address already in use", held, held)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Sync: %v, want an error containing %q", err, want)
	}
	for _, h := range testHostAddrs {
		if c, err := dialNode(t, h, free); err != nil || c.from != "127.0.0.2" {
			t.Errorf("the free nodePort via %s: %v, reached %q", h, err, c.from)
		}
	}
	// All or none: the held port is not half published on the other address.
	if !refused(t, testHostAddrs[1], held) {
		t.Errorf("%s:%d accepts though the port could not be published everywhere", testHostAddrs[1], held)
	}

	_ = other.Close()
	if err := n.Sync(context.Background(), snap); err != nil {
		t.Fatalf("Sync once the port is free: %v", err)
	}
	for _, h := range testHostAddrs {
		if c, err := dialNode(t, h, held); err != nil || c.from != "127.0.0.2" {
			t.Errorf("the freed nodePort via %s: %v, reached %q", h, err, c.from)
		}
	}
}

// TestNodePortsConflict: two Services claiming one nodePort get an error
// naming both; the first (in the snapshot's order) keeps the port.
func TestNodePortsConflict(t *testing.T) {
	a := backend(t, "127.0.0.2", 0, "a")
	b := backend(t, "127.0.0.3", 0, "b")
	nodePort := freePort(t, testHostAddrs...)
	n := startNodePorts(t)
	err := n.Sync(context.Background(), registry.Snapshot{
		Services: []registry.Service{nodePortService("a", nodePort, uint32(a)), nodePortService("b", nodePort, uint32(b))},
		Workloads: []registry.Workload{
			workload("a-1", "default", "127.0.0.2", "a", true), workload("b-1", "default", "127.0.0.3", "b", true),
		},
	})
	want := fmt.Sprintf("nodePort %d of Service default/b: already allocated to Service default/a", nodePort)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Sync: %v, want an error containing %q", err, want)
	}
	if c, err := dialNode(t, testHostAddrs[0], nodePort); err != nil || c.from != "a" {
		t.Errorf("the contested nodePort: %v, reached %q, want a", err, c.from)
	}
}
