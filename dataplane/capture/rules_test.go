package capture

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Options)
		wantErr bool
	}{
		{"defaults", func(*Options) {}, false},
		{"ipv4 exclusion", func(o *Options) { o.ExcludeOutboundCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} }, false},
		{"ipv6 exclusion", func(o *Options) { o.ExcludeOutboundCIDRs = []netip.Prefix{netip.MustParsePrefix("fd00::/8")} }, true},
		{"no outbound port", func(o *Options) { o.OutboundPort = 0 }, true},
		{"no dns port", func(o *Options) { o.DNSPort = 0 }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultOptions()
			tt.mutate(&o)
			if err := o.validate(); (err != nil) != tt.wantErr {
				t.Fatalf("validate() = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

// The throwaway topology: namespace "pod" (with capture) and namespace
// "peer", joined by a veth pair. Nothing leaves these two namespaces.
var (
	podIP  = netip.MustParseAddr("198.18.255.2")
	peerIP = netip.MustParseAddr("198.18.255.3")
	vip    = netip.MustParseAddrPort("198.19.0.10:9080")
)

func TestCapture(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("capture test needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) to create network namespaces; run with sudo")
	}
	pod := newNetns(t, fmt.Sprintf("mlcapt-pod-%d", os.Getpid()))
	peer := newNetns(t, fmt.Sprintf("mlcapt-peer-%d", os.Getpid()))
	linkPair(t, pod, peer)

	opts := DefaultOptions()
	for i := 0; i < 2; i++ { // the second Install replaces the first
		if err := inNetns(pod, func() error { return Install(opts) }); err != nil {
			t.Fatalf("Install #%d: %v", i+1, err)
		}
	}
	var installed bool
	if err := inNetns(pod, func() (err error) { installed, err = Installed(); return err }); err != nil || !installed {
		t.Fatalf("Installed() = %v, %v; want true", installed, err)
	}
	if err := inNetns(peer, func() (err error) { installed, err = Installed(); return err }); err != nil || installed {
		t.Fatalf("Installed() in peer = %v, %v; want false", installed, err)
	}

	outbound := listenTCP(t, pod, "0.0.0.0:15001")
	inbound := listenTCP(t, pod, "0.0.0.0:15006")
	health := listenTCP(t, pod, "0.0.0.0:15021")
	peerApp := listenTCP(t, peer, netip.AddrPortFrom(peerIP, 9080).String())

	t.Run("outbound to a VIP lands on 15001", func(t *testing.T) {
		c := dialTCP(t, pod, vip, 0)
		expectAccepted(t, outbound, c, vip)
	})
	t.Run("outbound TCP DNS lands on 15053", func(t *testing.T) {
		dns := listenTCP(t, pod, "0.0.0.0:15053")
		dst := netip.AddrPortFrom(vip.Addr(), 53)
		expectAccepted(t, dns, dialTCP(t, pod, dst, 0), dst)
	})
	t.Run("proxy uid is not captured", func(t *testing.T) {
		dst := netip.AddrPortFrom(peerIP, 9080)
		expectDirect(t, peerApp, dialTCP(t, pod, dst, opts.ProxyUID), dst)
		// The same destination from another uid is captured.
		expectAccepted(t, outbound, dialTCP(t, pod, dst, 0), dst)
	})
	t.Run("inbound lands on 15006", func(t *testing.T) {
		dst := netip.AddrPortFrom(podIP, 9080)
		expectAccepted(t, inbound, dialTCP(t, peer, dst, 0), dst)
	})
	t.Run("excluded inbound port is not captured", func(t *testing.T) {
		dst := netip.AddrPortFrom(podIP, 15021)
		expectDirect(t, health, dialTCP(t, peer, dst, 0), dst)
	})
	// A resolver anywhere, loopback included (systemd-resolved's 127.0.0.53),
	// is answered by the sidecar's DNS.
	for _, resolver := range []netip.Addr{vip.Addr(), netip.MustParseAddr("127.0.0.53")} {
		t.Run("UDP DNS to "+resolver.String()+" lands on 15053", func(t *testing.T) {
			var pc net.PacketConn
			if err := inNetns(pod, func() (err error) { pc, err = net.ListenPacket("udp4", "0.0.0.0:15053"); return err }); err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			var c net.Conn
			if err := inNetns(pod, func() (err error) { c, err = net.Dial("udp4", netip.AddrPortFrom(resolver, 53).String()); return err }); err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write([]byte("query")); err != nil {
				t.Fatal(err)
			}
			pc.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 64)
			n, _, err := pc.ReadFrom(buf)
			if err != nil || string(buf[:n]) != "query" {
				t.Fatalf("read on 15053 = %q, %v; want the query", buf[:n], err)
			}
		})
	}

	if err := inNetns(pod, Remove); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if err := inNetns(pod, Remove); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	if err := inNetns(pod, func() (err error) { installed, err = Installed(); return err }); err != nil || installed {
		t.Fatalf("Installed() after Remove = %v, %v; want false", installed, err)
	}
}

// expectAccepted accepts one connection on l, checks it is the client's c
// and that its original destination is want.
func expectAccepted(t *testing.T, l *net.TCPListener, c *net.TCPConn, want netip.AddrPort) {
	t.Helper()
	got := accept(t, l, c)
	dst, err := OriginalDst(got)
	if err != nil {
		t.Fatal(err)
	}
	if dst != want {
		t.Fatalf("OriginalDst = %s, want %s", dst, want)
	}
}

// expectDirect accepts the uncaptured connection c on l, addressed to want.
// (SO_ORIGINAL_DST has nothing to say here: a namespace without NAT rules
// tracks no connections.)
func expectDirect(t *testing.T, l *net.TCPListener, c *net.TCPConn, want netip.AddrPort) {
	t.Helper()
	got := accept(t, l, c)
	if got.LocalAddr().String() != want.String() {
		t.Fatalf("accepted on %s, want %s", got.LocalAddr(), want)
	}
}

func accept(t *testing.T, l *net.TCPListener, c *net.TCPConn) *net.TCPConn {
	t.Helper()
	l.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := l.AcceptTCP()
	if err != nil {
		t.Fatalf("accept on %s: %v", l.Addr(), err)
	}
	t.Cleanup(func() { got.Close() })
	if got.RemoteAddr().String() != c.LocalAddr().String() {
		t.Fatalf("accepted %s on %s, want the client %s", got.RemoteAddr(), l.Addr(), c.LocalAddr())
	}
	return got
}

func newNetns(t *testing.T, name string) string {
	t.Helper()
	_ = netns.DeleteNamed(name) // a leftover of an interrupted run
	err := onThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return err
		}
		defer orig.Close()
		h, err := netns.NewNamed(name)
		if err != nil {
			return err
		}
		h.Close()
		return netns.Set(orig)
	})
	if err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	return "/run/netns/" + name
}

// onThread runs fn on a locked thread that is thrown away afterwards, so a
// namespace or credential change in fn never leaks to other goroutines.
func onThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		errc <- fn()
	}()
	return <-errc
}

func inNetns(path string, fn func() error) error {
	return onThread(func() error {
		h, err := netns.GetFromPath(path)
		if err != nil {
			return err
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			return fmt.Errorf("setns %s: %w", path, err)
		}
		return fn()
	})
}

func linkPair(t *testing.T, podNS, peerNS string) {
	t.Helper()
	podH, err := netns.GetFromPath(podNS)
	if err != nil {
		t.Fatal(err)
	}
	defer podH.Close()
	peerH, err := netns.GetFromPath(peerNS)
	if err != nil {
		t.Fatal(err)
	}
	defer peerH.Close()
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: "eth0", Namespace: netlink.NsFd(podH)},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(peerH),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("add veth pair: %v", err)
	}
	for _, end := range []struct {
		ns   netns.NsHandle
		addr netip.Addr
		gw   netip.Addr
	}{{podH, podIP, peerIP}, {peerH, peerIP, netip.Addr{}}} {
		h, err := netlink.NewHandleAt(end.ns)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		for _, name := range []string{"lo", "eth0"} {
			l, err := h.LinkByName(name)
			if err != nil {
				t.Fatal(err)
			}
			if name == "eth0" {
				a := &netlink.Addr{IPNet: &net.IPNet{IP: end.addr.AsSlice(), Mask: net.CIDRMask(24, 32)}}
				if err := h.AddrAdd(l, a); err != nil {
					t.Fatal(err)
				}
			}
			if err := h.LinkSetUp(l); err != nil {
				t.Fatal(err)
			}
			if name == "eth0" && end.gw.IsValid() {
				if err := h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: end.gw.AsSlice()}); err != nil {
					t.Fatalf("default route: %v", err)
				}
			}
		}
	}
}

func listenTCP(t *testing.T, ns, addr string) *net.TCPListener {
	t.Helper()
	var l net.Listener
	if err := inNetns(ns, func() (err error) { l, err = net.Listen("tcp4", addr); return err }); err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	t.Cleanup(func() { l.Close() })
	return l.(*net.TCPListener)
}

// dialTCP connects from namespace ns; a non-zero uid makes the socket belong
// to that uid (the effective uid is switched on a throwaway thread only).
func dialTCP(t *testing.T, ns string, dst netip.AddrPort, uid uint32) *net.TCPConn {
	t.Helper()
	var c net.Conn
	err := inNetns(ns, func() (err error) {
		if uid != 0 {
			// setresuid(-1, uid, -1) on this thread alone; the Go wrapper
			// would switch every thread of the test.
			if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), uintptr(uid), ^uintptr(0)); e != 0 {
				return fmt.Errorf("setresuid: %w", e)
			}
		}
		c, err = net.DialTimeout("tcp4", dst.String(), 10*time.Second)
		return err
	})
	if err != nil {
		t.Fatalf("dial %s (uid %d): %v", dst, uid, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}
