package dns

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// clusterResolve stands in for the lab's registry: a ClusterIP Service, a
// headless one with two ready endpoints and one without any, and a short
// name only the client 127.0.0.1 knows (its namespace's Service).
func clusterResolve(from netip.Addr, name string) ([]netip.Addr, bool) {
	switch name {
	case "reviews.default.svc.cluster.local":
		return []netip.Addr{netip.MustParseAddr("198.19.0.10")}, true
	case "db.data.svc.cluster.local":
		return []netip.Addr{netip.MustParseAddr("198.18.0.7"), netip.MustParseAddr("198.18.0.8")}, true
	case "empty.data.svc.cluster.local":
		return nil, true
	case "reviews":
		if from == netip.MustParseAddr("127.0.0.1") {
			return []netip.Addr{netip.MustParseAddr("198.19.0.10")}, true
		}
	}
	return nil, false
}

// fakeUpstream is a nameserver on loopback that answers every A query
// with 192.0.2.77, or stays silent; it counts what it receives.
type fakeUpstream struct {
	addr    netip.AddrPort
	queries atomic.Int32
}

func startUpstream(t *testing.T, silent bool) *fakeUpstream {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &fakeUpstream{addr: pc.LocalAddr().(*net.UDPAddr).AddrPort()}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			u.queries.Add(1)
			if silent {
				continue
			}
			var m dnsmessage.Message
			if err := m.Unpack(buf[:n]); err != nil || len(m.Questions) != 1 {
				continue
			}
			m.Response = true
			m.Answers = []dnsmessage.Resource{{
				Header: dnsmessage.ResourceHeader{Name: m.Questions[0].Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 60},
				Body:   &dnsmessage.AResource{A: [4]byte{192, 0, 2, 77}},
			}}
			out, err := m.Pack()
			if err != nil {
				continue
			}
			if _, err := pc.WriteTo(out, from); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { pc.Close(); wg.Wait() })
	return u
}

// serve runs s on loopback until the test ends and returns its UDP and
// TCP addresses.
func serve(t *testing.T, s *Server) map[string]string {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx, pc, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return map[string]string{"udp": pc.LocalAddr().String(), "tcp": ln.Addr().String()}
}

// exchangeWithin sends one query and waits at most wait for its answer;
// ok is false when none came.
func exchangeWithin(t *testing.T, network, addr, name string, typ dnsmessage.Type, wait time.Duration) (m dnsmessage.Message, ok bool) {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 0x5a5a, RecursionDesired: true})
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET})
	msg, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if network == "tcp" {
		msg = append([]byte{byte(len(msg) >> 8), byte(len(msg))}, msg...)
	}
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		return m, false
	}
	if network == "tcp" {
		buf = buf[2:n]
	} else {
		buf = buf[:n]
	}
	if err := m.Unpack(buf); err != nil {
		t.Fatal(err)
	}
	if m.ID != 0x5a5a {
		t.Errorf("id %#x, want 0x5a5a", m.ID)
	}
	return m, true
}

func aAnswers(t *testing.T, m dnsmessage.Message, ttl uint32) []string {
	t.Helper()
	var got []string
	for _, a := range m.Answers {
		if r, ok := a.Body.(*dnsmessage.AResource); ok {
			got = append(got, netip.AddrFrom4(r.A).String())
			if a.Header.TTL != ttl {
				t.Errorf("ttl %d, want %d", a.Header.TTL, ttl)
			}
		}
	}
	return got
}

// A Server with Resolve answers per client and with every address,
// keeps cluster.local to itself and forwards the rest upstream.
func TestResolveAndForward(t *testing.T) {
	up := startUpstream(t, false)
	s := NewServer(nil)
	s.Resolve = clusterResolve
	s.Upstreams = []netip.AddrPort{up.addr}
	addrs := serve(t, s)

	tests := []struct {
		name     string
		typ      dnsmessage.Type
		rcode    dnsmessage.RCode
		want     []string
		ttl      uint32
		upstream bool // answered by the upstream
	}{
		{"reviews.default.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, []string{"198.19.0.10"}, ClusterTTL, false},
		{"Reviews.Default.SVC.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, []string{"198.19.0.10"}, ClusterTTL, false},
		{"db.data.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, []string{"198.18.0.7", "198.18.0.8"}, ClusterTTL, false},
		{"db.data.svc.cluster.local.", dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, nil, 0, false},
		{"empty.data.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, nil, 0, false},
		// The client is 127.0.0.1, whose namespace has reviews.
		{"reviews.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, []string{"198.19.0.10"}, ClusterTTL, false},
		{"nope.default.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeNameError, nil, 0, false},
		{"cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeNameError, nil, 0, false},
		{"www.example.com.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, []string{"192.0.2.77"}, 60, true},
		{"nope.default.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, []string{"192.0.2.77"}, 60, true},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tt := range tests {
			t.Run(network+" "+tt.name+" "+tt.typ.String(), func(t *testing.T) {
				before := up.queries.Load()
				m, ok := exchangeWithin(t, network, addrs[network], tt.name, tt.typ, 5*time.Second)
				if !ok {
					t.Fatal("no answer")
				}
				if m.RCode != tt.rcode {
					t.Errorf("rcode %v, want %v", m.RCode, tt.rcode)
				}
				if got := aAnswers(t, m, tt.ttl); !slices.Equal(got, tt.want) {
					t.Errorf("answers %v, want %v", got, tt.want)
				}
				if asked := up.queries.Load() > before; asked != tt.upstream {
					t.Errorf("upstream asked: %v, want %v", asked, tt.upstream)
				}
			})
		}
	}
}

// Without upstreams, a name Resolve does not know is NXDOMAIN anywhere.
func TestResolveWithoutUpstream(t *testing.T) {
	s := NewServer(nil)
	s.Resolve = clusterResolve
	addrs := serve(t, s)
	m, ok := exchangeWithin(t, "udp", addrs["udp"], "www.example.com.", dnsmessage.TypeA, 5*time.Second)
	if !ok || m.RCode != dnsmessage.RCodeNameError {
		t.Fatalf("answer %v (%v), want NXDOMAIN", m.RCode, ok)
	}
}

// A silent upstream costs one timeout, then the next one answers; with
// every upstream silent the client gets nothing and the forward ends.
func TestForwardTimeout(t *testing.T) {
	silent, answering := startUpstream(t, true), startUpstream(t, false)
	const timeout = 300 * time.Millisecond
	s := NewServer(nil)
	s.Resolve = clusterResolve
	s.UpstreamTimeout = timeout
	s.Upstreams = []netip.AddrPort{silent.addr, answering.addr}
	addrs := serve(t, s)
	start := time.Now()
	m, ok := exchangeWithin(t, "udp", addrs["udp"], "www.example.com.", dnsmessage.TypeA, 5*time.Second)
	if !ok || !slices.Equal(aAnswers(t, m, 60), []string{"192.0.2.77"}) {
		t.Fatalf("answer %v (%v), want the second upstream's", m.Answers, ok)
	}
	if el := time.Since(start); el < timeout || el > timeout+2*time.Second {
		t.Errorf("answered after %v, want one upstream timeout (%v) and a little", el, timeout)
	}
	if silent.queries.Load() != 1 || answering.queries.Load() != 1 {
		t.Errorf("queries: silent %d, answering %d; want 1 each", silent.queries.Load(), answering.queries.Load())
	}

	s2 := NewServer(nil)
	s2.Resolve = clusterResolve
	s2.UpstreamTimeout = timeout
	s2.Upstreams = []netip.AddrPort{silent.addr}
	addrs2 := serve(t, s2)
	if _, ok := exchangeWithin(t, "tcp", addrs2["tcp"], "www.example.com.", dnsmessage.TypeA, 3*timeout); ok {
		t.Fatal("an answer without any upstream answering")
	}
}

// Stopping the server ends the forwards it is waiting on, long before
// their upstream timeout: Serve owns them.
func TestServeStopsForwards(t *testing.T) {
	silent := startUpstream(t, true)
	s := NewServer(nil)
	s.Resolve = clusterResolve
	s.UpstreamTimeout = time.Hour
	s.Upstreams = []netip.AddrPort{silent.addr}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx, pc, ln); close(done) }()
	for _, network := range []string{"udp", "tcp"} {
		addr := map[string]string{"udp": pc.LocalAddr().String(), "tcp": ln.Addr().String()}[network]
		exchangeWithin(t, network, addr, "www.example.com.", dnsmessage.TypeA, 100*time.Millisecond)
	}
	deadline := time.Now().Add(5 * time.Second)
	for silent.queries.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if silent.queries.Load() != 2 {
		t.Fatalf("upstream got %d queries, want 2 being forwarded", silent.queries.Load())
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Serve still waiting on its forwards 5s after its context ended")
	}
}

func TestResolvConf(t *testing.T) {
	got, err := ResolvConf("testdata/resolv.conf")
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.AddrPort{
		netip.MustParseAddrPort("127.0.0.53:53"),
		netip.MustParseAddrPort("10.255.255.53:53"),
		netip.MustParseAddrPort("[fe80::1%eth0]:53"),
	}
	if !slices.Equal(got, want) {
		t.Errorf("ResolvConf = %v, want %v", got, want)
	}
	if _, err := ResolvConf("testdata/missing"); err == nil {
		t.Error("no error for a missing file")
	}
}
