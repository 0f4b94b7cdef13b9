package capture

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestInstallServicesRejects(t *testing.T) {
	for _, s := range []ServiceNAT{
		{VIP: netip.MustParseAddrPort("[fd00::1]:80"), Protocol: unix.IPPROTO_TCP},
		{VIP: netip.MustParseAddrPort("198.19.0.1:80"), Protocol: unix.IPPROTO_ICMP},
		{VIP: netip.MustParseAddrPort("198.19.0.1:80"), Protocol: unix.IPPROTO_TCP, Endpoints: []netip.AddrPort{netip.MustParseAddrPort("198.18.0.2:0")}},
	} {
		if err := InstallServices([]ServiceNAT{s}); err == nil {
			t.Errorf("InstallServices(%+v) = nil, want an error", s)
		}
	}
}

// A pod without a sidecar reaches a Service's VIP as through kube-proxy:
// every endpoint gets its share of connections, from the pod's own
// address; UDP answers come back from the VIP; a Service without
// endpoints refuses; other destinations are left alone.
func TestInstallServices(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("services test needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) to create network namespaces; run with sudo")
	}
	pod := newNetns(t, fmt.Sprintf("mlsvc-pod-%d", os.Getpid()))
	peer := newNetns(t, fmt.Sprintf("mlsvc-peer-%d", os.Getpid()))
	linkPair(t, pod, peer)

	var eps []netip.AddrPort
	accepted := make(chan netip.AddrPort, 1024)
	for _, port := range []uint16{9080, 9081, 9082} {
		ep := netip.AddrPortFrom(peerIP, port)
		eps = append(eps, ep)
		l := listenTCP(t, peer, ep.String())
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				if c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr() != podIP {
					t.Errorf("endpoint %s accepted from %s, want the pod's %s", ep, c.RemoteAddr(), podIP)
				}
				accepted <- ep
				c.Write([]byte(strconv.Itoa(int(port))))
				c.Close()
			}
		}()
	}
	var udp net.PacketConn
	udpEP := netip.AddrPortFrom(peerIP, 5353)
	if err := inNetns(peer, func() (err error) { udp, err = net.ListenPacket("udp4", udpEP.String()); return err }); err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := udp.ReadFrom(buf)
			if err != nil {
				return
			}
			udp.WriteTo(append([]byte("echo:"), buf[:n]...), from)
		}
	}()

	tcpVIP := netip.MustParseAddrPort("198.19.0.10:80")
	udpVIP := netip.MustParseAddrPort("198.19.0.11:53")
	emptyVIP := netip.MustParseAddrPort("198.19.0.12:80")
	emptyUDPVIP := netip.MustParseAddrPort("198.19.0.12:53")
	install := func(eps []netip.AddrPort) {
		t.Helper()
		svcs := []ServiceNAT{
			{VIP: tcpVIP, Protocol: unix.IPPROTO_TCP, Endpoints: eps},
			{VIP: udpVIP, Protocol: unix.IPPROTO_UDP, Endpoints: []netip.AddrPort{udpEP}},
			{VIP: emptyVIP, Protocol: unix.IPPROTO_TCP},
			{VIP: emptyUDPVIP, Protocol: unix.IPPROTO_UDP},
		}
		if err := inNetns(pod, func() error { return InstallServices(svcs) }); err != nil {
			t.Fatal(err)
		}
	}
	dial := func(network string, dst netip.AddrPort) (net.Conn, error) {
		var c net.Conn
		err := inNetns(pod, func() (err error) { c, err = net.DialTimeout(network, dst.String(), 5*time.Second); return err })
		return c, err
	}
	// connect dials the VIP and returns the endpoint that answered.
	connect := func(dst netip.AddrPort) netip.AddrPort {
		t.Helper()
		c, err := dial("tcp4", dst)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		select {
		case ep := <-accepted:
			return ep
		case <-time.After(5 * time.Second):
			t.Fatalf("no endpoint accepted a connection to %s", dst)
		}
		return netip.AddrPort{}
	}

	install(eps)
	t.Run("uniform over the endpoints", func(t *testing.T) {
		const n = 300
		got := map[netip.AddrPort]int{}
		for i := 0; i < n; i++ {
			got[connect(tcpVIP)]++
		}
		// Each expects 100 (sd 8): below 50 is not chance.
		for _, ep := range eps {
			if got[ep] < 50 {
				t.Errorf("%d connections: %v; want about %d on each endpoint", n, got, n/len(eps))
			}
		}
		t.Logf("%d connections over 3 endpoints: %v", n, got)
	})
	t.Run("UDP answer from the VIP", func(t *testing.T) {
		c, err := dial("udp4", udpVIP)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("q")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != "echo:q" {
			t.Fatalf("answer %q, %v; want echo:q", buf[:n], err)
		}
	})
	t.Run("no endpoints refuses", func(t *testing.T) {
		start := time.Now()
		if c, err := dial("tcp4", emptyVIP); !errors.Is(err, syscall.ECONNREFUSED) {
			if c != nil {
				c.Close()
			}
			t.Errorf("dial %s = %v, want connection refused", emptyVIP, err)
		}
		c, err := dial("udp4", emptyUDPVIP)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("q"))
		if _, err := c.Read(make([]byte, 8)); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("UDP to %s: %v, want connection refused", emptyUDPVIP, err)
		}
		if el := time.Since(start); el > 2*time.Second {
			t.Errorf("refused after %v, want at once", el)
		}
	})
	t.Run("other destinations untouched", func(t *testing.T) {
		for i := 0; i < 10; i++ {
			if got := connect(eps[2]); got != eps[2] {
				t.Fatalf("a connection to %s reached %s", eps[2], got)
			}
		}
	})
	t.Run("replaced with one endpoint", func(t *testing.T) {
		install(eps[1:2])
		for i := 0; i < 20; i++ {
			if got := connect(tcpVIP); got != eps[1] {
				t.Fatalf("connection reached %s, want the only endpoint %s", got, eps[1])
			}
		}
	})
}
