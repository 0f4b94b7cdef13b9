package dns

import (
	"context"
	"net"
	"net/netip"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"golang.org/x/net/dns/dnsmessage"
	"google.golang.org/protobuf/types/known/anypb"
)

func testTable(t *testing.T) Table {
	tp, err := anypb.New(&tcpv3.TcpProxy{StatPrefix: "x", ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: "outbound|3306||mysql.db.svc.cluster.local"}})
	if err != nil {
		t.Fatal(err)
	}
	routes := map[string]*routev3.RouteConfiguration{"9080": {Name: "9080", VirtualHosts: []*routev3.VirtualHost{
		{Name: "reviews.default.svc.cluster.local:9080", Domains: []string{"reviews.default.svc.cluster.local", "reviews.default.svc.cluster.local:9080",
			"reviews", "reviews:9080", "reviews.default", "198.19.0.10", "198.19.0.10:9080"}},
		{Name: "allow_any", Domains: []string{"*"}},
	}}}
	listeners := map[string]*listenerv3.Listener{"198.19.0.11_3306": {Name: "198.19.0.11_3306", FilterChains: []*listenerv3.FilterChain{{
		Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.tcp_proxy", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tp}}}}}}}
	return BuildTable(routes, listeners)
}

func query(t *testing.T, network, addr, name string, typ dnsmessage.Type) dnsmessage.Message {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 7, RecursionDesired: true})
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
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if network == "tcp" {
		buf = buf[2:n]
	} else {
		buf = buf[:n]
	}
	var m dnsmessage.Message
	if err := m.Unpack(buf); err != nil {
		t.Fatal(err)
	}
	if m.ID != 7 {
		t.Errorf("id %d, want 7", m.ID)
	}
	return m
}

func TestServer(t *testing.T) {
	s := NewServer(nil)
	s.Update(testTable(t))
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx, pc, ln); close(done) }()
	defer func() { cancel(); <-done }()

	tests := []struct {
		name  string
		typ   dnsmessage.Type
		rcode dnsmessage.RCode
		want  string // A answer, "" for none
	}{
		{"reviews.default.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, "198.19.0.10"},
		{"REVIEWS.default.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, "198.19.0.10"},
		{"reviews.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, "198.19.0.10"},
		{"reviews.default.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, "198.19.0.10"},
		{"mysql.db.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, "198.19.0.11"},
		{"mysql.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, "198.19.0.11"},
		{"mysql.db.svc.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, "198.19.0.11"},
		{"reviews.", dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, ""},
		{"unknown.example.com.", dnsmessage.TypeA, dnsmessage.RCodeNameError, ""},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tt := range tests {
			t.Run(network+" "+tt.name+" "+tt.typ.String(), func(t *testing.T) {
				m := query(t, network, map[string]string{"udp": pc.LocalAddr().String(), "tcp": ln.Addr().String()}[network], tt.name, tt.typ)
				if m.RCode != tt.rcode {
					t.Errorf("rcode %v, want %v", m.RCode, tt.rcode)
				}
				var got string
				for _, a := range m.Answers {
					if r, ok := a.Body.(*dnsmessage.AResource); ok {
						got = netip.AddrFrom4(r.A).String()
						if a.Header.TTL != TTL {
							t.Errorf("ttl %d, want %d", a.Header.TTL, TTL)
						}
					}
				}
				if got != tt.want || len(m.Answers) > 1 {
					t.Errorf("answers %v, want %q", m.Answers, tt.want)
				}
			})
		}
	}
}
