package proxy

import (
	"io"
	"net"
	"net/netip"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
)

// BenchmarkTCPProxy is one long TCP connection through a tcp_proxy chain
// to an echo server: each op sends 64 KiB and reads it back, so the
// figure is the proxy's copying in both directions.
func BenchmarkTCPProxy(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	cp := newBenchControlPlane(b)
	cp.set("1", &listenerv3.Listener{Name: "tcp", Address: sockAddr("127.0.0.1", 0),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{tcpFilter("echo")}}}},
		staticCluster("echo", netip.MustParseAddrPort(ln.Addr().String())))
	p := startProxy(b, cp.addr, nil)
	c, err := net.Dial("tcp", p.addr(b, "tcp"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 64<<10)
	in := make([]byte, 64<<10)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		go c.Write(buf)
		if _, err := io.ReadFull(c, in); err != nil {
			b.Fatal(err)
		}
	}
}
