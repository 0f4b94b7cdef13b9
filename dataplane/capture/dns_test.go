package capture

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

func TestInstallDNSRejects(t *testing.T) {
	for _, to := range []string{"127.0.0.1:53", "0.0.0.0:53", "198.18.0.1:0", "[fd00::1]:53"} {
		if err := InstallDNS(netip.MustParseAddrPort(to)); err == nil || !strings.Contains(err.Error(), to) {
			t.Errorf("InstallDNS(%s) = %v, want an error naming it", to, err)
		}
	}
	// The host's namespace is refused before anything is written (checked
	// on its own: a broken guard must not take over this machine's DNS).
	if os.Geteuid() == 0 {
		if err := onThread(notInitNetns); err == nil {
			t.Error("notInitNetns() in the host's namespace = nil, want an error")
		}
	}
}

// A pod's DNS query to any resolver — its resolv.conf's, or a loopback one
// such as systemd-resolved's 127.0.0.53 — reaches the DNS on the peer, and
// the answer comes back as if from the resolver asked.
func TestInstallDNS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("dns capture test needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) to create network namespaces; run with sudo")
	}
	hostBefore, err := os.ReadFile(routeLocalnet)
	if err != nil {
		t.Fatal(err)
	}
	pod := newNetns(t, fmt.Sprintf("mldns-pod-%d", os.Getpid()))
	peer := newNetns(t, fmt.Sprintf("mldns-peer-%d", os.Getpid()))
	linkPair(t, pod, peer)
	dnsAddr := netip.AddrPortFrom(peerIP, 53)
	seen := startEchoDNS(t, peer, dnsAddr)

	for i := 0; i < 2; i++ { // the second install replaces the first
		if err := inNetns(pod, func() error { return InstallDNS(dnsAddr) }); err != nil {
			t.Fatalf("InstallDNS #%d: %v", i+1, err)
		}
	}
	var podValue []byte
	if err := inNetns(pod, func() (err error) { podValue, err = os.ReadFile(routeLocalnet); return err }); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(podValue)) != "1" {
		t.Errorf("route_localnet in the pod = %q, want 1", podValue)
	}
	if hostAfter, err := os.ReadFile(routeLocalnet); err != nil || string(hostAfter) != string(hostBefore) {
		t.Errorf("host's route_localnet %q -> %q (%v): InstallDNS changed the host", hostBefore, hostAfter, err)
	}

	for _, network := range []string{"udp4", "tcp4"} {
		for _, resolver := range []string{"10.255.255.53", "127.0.0.53", "127.0.0.1", peerIP.String()} {
			t.Run(network+" to "+resolver, func(t *testing.T) {
				got, err := askFromPod(pod, network, netip.AddrPortFrom(netip.MustParseAddr(resolver), 53), "q-"+network+"-"+resolver, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if want := "answer:q-" + network + "-" + resolver; got != want {
					t.Fatalf("answer %q, want %q", got, want)
				}
				// The DNS saw the pod's address, never a loopback one: the
				// cluster DNS finds the pod's namespace by it.
				if from := <-seen; from != podIP {
					t.Errorf("the DNS saw the query from %s, want the pod's %s", from, podIP)
				}
			})
		}
	}

	// Without route_localnet, the loopback resolver's queries are lost:
	// the setting is what makes 127.0.0.53 work.
	if err := inNetns(pod, func() error { return os.WriteFile(routeLocalnet, []byte("0\n"), 0o644) }); err != nil {
		t.Fatal(err)
	}
	if got, err := askFromPod(pod, "udp4", netip.MustParseAddrPort("127.0.0.53:53"), "lost", time.Second); err == nil {
		t.Errorf("answer %q without route_localnet, want none", got)
	}
}

// startEchoDNS stands in for the cluster DNS in namespace ns: it answers
// each UDP datagram and each TCP connection's first message with
// "answer:<message>" and reports the client's address on the channel.
func startEchoDNS(t *testing.T, ns string, addr netip.AddrPort) <-chan netip.Addr {
	t.Helper()
	seen := make(chan netip.Addr, 16)
	var pc net.PacketConn
	var ln net.Listener
	err := inNetns(ns, func() (err error) {
		if pc, err = net.ListenPacket("udp4", addr.String()); err != nil {
			return err
		}
		ln, err = net.Listen("tcp4", addr.String())
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	done := make(chan struct{}, 2)
	go func() {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			seen <- from.(*net.UDPAddr).AddrPort().Addr()
			if _, err := pc.WriteTo(append([]byte("answer:"), buf[:n]...), from); err != nil {
				return
			}
		}
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			seen <- c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
			buf := make([]byte, 512)
			c.SetDeadline(time.Now().Add(5 * time.Second))
			n, _ := c.Read(buf)
			c.Write(append([]byte("answer:"), buf[:n]...))
			c.Close()
		}
	}()
	t.Cleanup(func() { pc.Close(); ln.Close(); <-done; <-done })
	return seen
}

// askFromPod sends msg from namespace ns to resolver and returns the
// answer, which must come from the resolver's address.
func askFromPod(ns, network string, resolver netip.AddrPort, msg string, wait time.Duration) (string, error) {
	var c net.Conn
	if err := inNetns(ns, func() (err error) { c, err = net.DialTimeout(network, resolver.String(), wait); return err }); err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	if network == "tcp4" {
		b, err := io.ReadAll(io.LimitReader(c, 512))
		if len(b) > 0 {
			err = nil // the DNS closes after its answer
		}
		return string(b), err
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}
