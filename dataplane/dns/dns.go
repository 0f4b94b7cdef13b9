// Package dns owns the proxy's DNS server (Istio's DNS proxying): it
// answers A queries for the mesh's hostnames with their service VIPs, read
// from the proxy's xDS configuration, so that applications resolve
// services without a cluster DNS.
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

// Server answers DNS over UDP and TCP from its current table.
type Server struct {
	table atomic.Pointer[Table]
	log   *slog.Logger
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

// Serve answers on pc and ln until ctx ends, then closes them.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn, ln net.Listener) error {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		s.serveUDP(pc)
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

func (s *Server) serveUDP(pc net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		resp, err := s.Answer(buf[:n])
		if err != nil {
			s.log.Debug("dns query", "from", from, "err", err)
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
				resp, err := s.Answer(q)
				if err != nil {
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

// Answer builds the response to one query message.
func (s *Server) Answer(query []byte) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, fmt.Errorf("parse dns header: %w", err)
	}
	q, err := p.Question()
	if err != nil {
		return nil, fmt.Errorf("parse dns question: %w", err)
	}
	rh := dnsmessage.Header{ID: h.ID, Response: true, OpCode: h.OpCode, RecursionDesired: h.RecursionDesired, RecursionAvailable: true, Authoritative: true}
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), rh)
	b.EnableCompression()
	addr, known := s.Lookup(q.Name.String())
	if !known {
		rh.RCode = dnsmessage.RCodeNameError
		b = dnsmessage.NewBuilder(make([]byte, 0, 512), rh)
	}
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if known && q.Type == dnsmessage.TypeA && q.Class == dnsmessage.ClassINET {
		if err := b.StartAnswers(); err != nil {
			return nil, err
		}
		rr := dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: TTL}
		if err := b.AResource(rr, dnsmessage.AResource{A: addr.As4()}); err != nil {
			return nil, err
		}
	}
	return b.Finish()
}
