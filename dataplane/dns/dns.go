// Package dns owns meshlab's DNS server. In the sidecar it is Istio's DNS
// proxying: it answers A queries for the mesh's hostnames with their
// service VIPs, read from the proxy's xDS configuration, so that
// applications resolve services without a cluster DNS. In the local
// runtime the same server is the cluster DNS (what CoreDNS is to a
// cluster) for pods without a sidecar: it answers from a Resolve function
// per querying pod and forwards other names to the host's nameservers.
package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"golang.org/x/net/dns/dnsmessage"
)

// TTL of every answer, in seconds.
const TTL = 30

// Table maps lower-case names without the trailing dot to addresses.
type Table map[string]netip.Addr

// BuildTable reads the mesh's names from route configurations (every
// non-IP domain of a virtual host maps to the virtual host's IP domain) and
// from TCP listeners named <vip>_<port> (the host of their
// outbound|port||host stat prefix or cluster, and its short forms, map to
// <vip>). ServiceEntry hosts come the same way, with their addresses or
// the 240.240.0.0/16 ones the control plane allocates, as Istio's DNS
// proxy answers with auto-allocated addresses.
func BuildTable(routes map[string]*routev3.RouteConfiguration, listeners map[string]*listenerv3.Listener) Table {
	t := Table{}
	for _, rc := range routes {
		for _, vh := range rc.GetVirtualHosts() {
			var vip netip.Addr
			for _, d := range vh.GetDomains() {
				if a, err := netip.ParseAddr(stripPort(d)); err == nil && a.Is4() {
					vip = a
					break
				}
			}
			if !vip.IsValid() {
				continue
			}
			for _, d := range vh.GetDomains() {
				h := strings.ToLower(stripPort(d))
				if h == "" || strings.Contains(h, "*") {
					continue
				}
				if _, err := netip.ParseAddr(h); err == nil {
					continue
				}
				t[h] = vip
			}
		}
	}
	for name, l := range listeners {
		i := strings.LastIndexByte(name, '_')
		if i < 0 {
			continue
		}
		vip, err := netip.ParseAddr(name[:i])
		if err != nil || vip.IsUnspecified() {
			continue
		}
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				var tp tcpv3.TcpProxy
				if f.GetTypedConfig() == nil || f.GetTypedConfig().UnmarshalTo(&tp) != nil {
					continue
				}
				// The stat prefix names the service's own cluster even when
				// tcp routes send elsewhere or split by weight (and for
				// ServiceEntry hosts); older configurations only name the
				// cluster.
				parts := strings.Split(tp.GetStatPrefix(), "|")
				if len(parts) != 4 || parts[0] != "outbound" || parts[3] == "" {
					parts = strings.Split(tp.GetCluster(), "|")
				}
				if len(parts) != 4 || parts[3] == "" || strings.Contains(parts[3], "*") {
					continue
				}
				for _, n := range shortForms(strings.ToLower(parts[3])) {
					t[n] = vip
				}
			}
		}
	}
	return t
}

// shortForms of name.ns.svc.cluster.local: itself, name, name.ns and
// name.ns.svc.
func shortForms(host string) []string {
	out := []string{host}
	labels := strings.Split(host, ".")
	if len(labels) >= 3 && labels[2] == "svc" {
		out = append(out, labels[0], labels[0]+"."+labels[1], labels[0]+"."+labels[1]+".svc")
	}
	return out
}

func stripPort(d string) string {
	if i := strings.LastIndexByte(d, ':'); i >= 0 && !strings.Contains(d[:i], ":") {
		return d[:i]
	}
	return d
}

// ClusterTTL is the TTL of answers from a Server's Resolve function: a
// headless Service's endpoints change with readiness, and CoreDNS's
// kubernetes plugin answers with 5 seconds for the same reason.
const ClusterTTL = 5

// ClusterDomain is the zone a Server with a Resolve function is the
// authority for: unknown names in it are NXDOMAIN, never forwarded.
const ClusterDomain = "cluster.local"

// DefaultUpstreamTimeout bounds the wait for one upstream's answer to a
// forwarded query. Stub resolvers retry (glibc and Go after 5s), so a lost
// answer costs the client one retry, not the query.
const DefaultUpstreamTimeout = 2 * time.Second

// maxForwards bounds the UDP queries being forwarded at once; beyond it a
// query is dropped and its client retries, as from a busy resolver.
const maxForwards = 64

// Server answers DNS over UDP and TCP: from its current table (the
// sidecar's DNS proxy) or, when Resolve is set, from Resolve (the lab's
// cluster DNS). Set the exported fields before Serve.
type Server struct {
	table atomic.Pointer[Table]
	log   *slog.Logger

	// Resolve, when set, answers instead of the table: the addresses of
	// name (lower case, no trailing dot) for a query from the client at
	// from, and whether the name exists at all. A known name gets one A
	// record per IPv4 address (none: NODATA); an unknown one in
	// ClusterDomain gets NXDOMAIN.
	Resolve func(from netip.Addr, name string) ([]netip.Addr, bool)
	// Upstreams receive, over UDP and in order, the queries for unknown
	// names outside ClusterDomain, and their answers are relayed unchanged
	// (CoreDNS's `forward . /etc/resolv.conf`). None: such names are
	// NXDOMAIN.
	Upstreams []netip.AddrPort
	// UpstreamTimeout is the wait for each upstream (DefaultUpstreamTimeout
	// when 0).
	UpstreamTimeout time.Duration
}

// NewServer returns a server with an empty table.
func NewServer(log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	s := &Server{log: log}
	s.table.Store(&Table{})
	return s
}

// Update replaces the table.
func (s *Server) Update(t Table) { s.table.Store(&t) }

// Lookup returns the address of name (any case, trailing dot or not).
func (s *Server) Lookup(name string) (netip.Addr, bool) {
	a, ok := (*s.table.Load())[strings.TrimSuffix(strings.ToLower(name), ".")]
	return a, ok
}

// ListenAndServe serves on addr (UDP and TCP) until ctx ends.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return fmt.Errorf("listen dns udp %s: %w", addr, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		_ = pc.Close()
		return fmt.Errorf("listen dns tcp %s: %w", addr, err)
	}
	return s.Serve(ctx, pc, ln)
}

// Serve answers on pc and ln until ctx ends, then closes them and returns
// once every query it was answering or forwarding is done.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn, ln net.Listener) error {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		s.serveUDP(ctx, pc, &wg)
	}()
	go func() {
		defer wg.Done()
		s.serveTCP(ctx, ln, &wg)
	}()
	<-ctx.Done()
	// Closing is how the serve loops are stopped; their errors say nothing new.
	_ = pc.Close()
	_ = ln.Close()
	wg.Wait()
	return nil
}

func (s *Server) serveUDP(ctx context.Context, pc net.PacketConn, wg *sync.WaitGroup) {
	forwards := make(chan struct{}, maxForwards)
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		resp, forward, err := s.reply(addrOf(from), buf[:n])
		if err != nil {
			s.log.Debug("dns query", "from", from, "err", err)
			continue
		}
		if forward {
			select {
			case forwards <- struct{}{}:
			default:
				s.log.Debug("dns query dropped: too many being forwarded", "from", from)
				continue
			}
			q := append([]byte(nil), buf[:n]...)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-forwards }()
				resp, err := s.forward(ctx, q)
				if err != nil {
					s.log.Debug("dns forward", "from", from, "err", err)
					return
				}
				if _, err := pc.WriteTo(resp, from); err != nil {
					s.log.Debug("dns answer", "to", from, "err", err)
				}
			}()
			continue
		}
		if _, err := pc.WriteTo(resp, from); err != nil {
			// The resolver retries; nothing else can be done for this query.
			s.log.Debug("dns answer", "to", from, "err", err)
		}
	}
}

func (s *Server) serveTCP(ctx context.Context, ln net.Listener, wg *sync.WaitGroup) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { _ = c.Close() }()
			stop := context.AfterFunc(ctx, func() { _ = c.Close() })
			defer stop()
			from := addrOf(c.RemoteAddr())
			for {
				// Without the idle deadline a silent client holds the
				// goroutine forever; failing to set it means c is closed.
				if err := c.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
					return
				}
				var l [2]byte
				if _, err := io.ReadFull(c, l[:]); err != nil {
					return
				}
				q := make([]byte, binary.BigEndian.Uint16(l[:]))
				if _, err := io.ReadFull(c, q); err != nil {
					return
				}
				resp, forward, err := s.reply(from, q)
				if err == nil && forward {
					resp, err = s.forward(ctx, q)
				}
				if err != nil {
					s.log.Debug("dns query", "from", from, "err", err)
					return
				}
				out := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(resp)), uint16(len(resp)))
				if _, err := c.Write(append(out, resp...)); err != nil {
					return
				}
			}
		}()
	}
}

// addrOf is the IP of a UDP or TCP peer address (invalid for others).
func addrOf(a net.Addr) netip.Addr {
	var ip netip.Addr
	switch a := a.(type) {
	case *net.UDPAddr:
		ip = a.AddrPort().Addr()
	case *net.TCPAddr:
		ip = a.AddrPort().Addr()
	}
	return ip.Unmap()
}

// Answer builds the response to one query message from a client whose
// address is not known.
func (s *Server) Answer(query []byte) ([]byte, error) {
	resp, forward, err := s.reply(netip.Addr{}, query)
	if err == nil && forward {
		return s.forward(context.Background(), query)
	}
	return resp, err
}

// reply builds the response to a query from the client at from, or says
// that the query is to be forwarded upstream.
func (s *Server) reply(from netip.Addr, query []byte) (resp []byte, forward bool, err error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, false, fmt.Errorf("parse dns header: %w", err)
	}
	q, err := p.Question()
	if err != nil {
		return nil, false, fmt.Errorf("parse dns question: %w", err)
	}
	name := strings.TrimSuffix(strings.ToLower(q.Name.String()), ".")
	var addrs []netip.Addr
	known := false
	ttl := uint32(TTL)
	if s.Resolve != nil {
		addrs, known = s.Resolve(from, name)
		ttl = ClusterTTL
		if !known && len(s.Upstreams) > 0 && name != ClusterDomain && !strings.HasSuffix(name, "."+ClusterDomain) {
			return nil, true, nil
		}
	} else if a, ok := s.Lookup(name); ok {
		addrs, known = []netip.Addr{a}, true
	} else if len(s.Upstreams) > 0 {
		return nil, true, nil
	}
	rh := dnsmessage.Header{ID: h.ID, Response: true, OpCode: h.OpCode, RecursionDesired: h.RecursionDesired, RecursionAvailable: true, Authoritative: true}
	if !known {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), rh)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, false, err
	}
	if err := b.Question(q); err != nil {
		return nil, false, err
	}
	if known && q.Type == dnsmessage.TypeA && q.Class == dnsmessage.ClassINET {
		if err := b.StartAnswers(); err != nil {
			return nil, false, err
		}
		for _, a := range addrs {
			if !a.Is4() {
				continue
			}
			rr := dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: ttl}
			if err := b.AResource(rr, dnsmessage.AResource{A: a.As4()}); err != nil {
				return nil, false, err
			}
		}
	}
	resp, err = b.Finish()
	return resp, false, err
}

// forward relays query to each upstream in turn until one answers.
func (s *Server) forward(ctx context.Context, query []byte) ([]byte, error) {
	if len(s.Upstreams) == 0 {
		return nil, errors.New("forward dns query: no upstream nameservers")
	}
	timeout := s.UpstreamTimeout
	if timeout <= 0 {
		timeout = DefaultUpstreamTimeout
	}
	var errs []error
	for _, up := range s.Upstreams {
		resp, err := exchange(ctx, up, query, timeout)
		if err == nil {
			return resp, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("forward dns query: %w", errors.Join(errs...))
}

// exchange sends query to one upstream over UDP and waits at most timeout
// (or until ctx ends) for the response with the query's ID.
func exchange(ctx context.Context, up netip.AddrPort, query []byte, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", up.String())
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", up, err)
	}
	defer func() { _ = c.Close() }()
	// The deadline ends the read at the timeout; closing ends it when ctx
	// is cancelled earlier (the server stopping).
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	deadline, _ := ctx.Deadline()
	if err := c.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("upstream %s: %w", up, err)
	}
	if _, err := c.Write(query); err != nil {
		return nil, fmt.Errorf("upstream %s: %w", up, err)
	}
	buf := make([]byte, 65535)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: %w", up, err)
		}
		// A stray or late datagram is not the answer: keep waiting.
		if n >= 12 && buf[0] == query[0] && buf[1] == query[1] && buf[2]&0x80 != 0 {
			return append([]byte(nil), buf[:n]...), nil
		}
	}
}

// ResolvConf returns the nameservers of a resolv.conf file (port 53), the
// upstreams a cluster DNS forwards to. IPv6 link-local nameservers keep
// their zone.
func ResolvConf(path string) ([]netip.AddrPort, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read nameservers: %w", err)
	}
	var out []netip.AddrPort
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil {
			continue // as glibc does: a bad line is skipped
		}
		out = append(out, netip.AddrPortFrom(a.Unmap(), 53))
	}
	return out, nil
}
