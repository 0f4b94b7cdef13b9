// Package upstream owns the proxy's clusters: their endpoints, load
// balancing, connect timeouts and the pooled HTTP transports that carry
// requests to them.
package upstream

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
)

// Istio's inbound passthrough cluster: the proxy connects to
// 127.0.0.1:<original port> rather than the original address.
const InboundPassthrough = "InboundPassthroughClusterIpv4"

const defaultConnectTimeout = 5 * time.Second

// Endpoint is one upstream host.
type Endpoint struct {
	// Addr is host:port, ready to dial.
	Addr string
	// Active counts requests and connections in flight.
	Active atomic.Int64
	// Total counts requests and connections made to it.
	Total atomic.Uint64
	// Fails counts connect failures.
	Fails atomic.Uint64
}

// Cluster is a runtime cluster. Its configuration is fixed; its endpoints
// change with EDS.
type Cluster struct {
	Name           string
	Config         *clusterv3.Cluster
	ConnectTimeout time.Duration
	// OriginalDst clusters dial the connection's original destination.
	OriginalDst bool
	HTTP2       bool
	policy      clusterv3.Cluster_LbPolicy

	endpoints atomic.Pointer[[]*Endpoint]
	rr        atomic.Uint64
	// Transport pools HTTP connections to the cluster's endpoints.
	Transport *http.Transport
	dialer    net.Dialer

	// Stats.
	RequestsTotal atomic.Uint64
	ConnectFails  atomic.Uint64
	NoHealthy     atomic.Uint64
}

// New builds a cluster from c (endpoints come from SetEndpoints).
func New(c *clusterv3.Cluster) (*Cluster, error) {
	cl := &Cluster{
		Name:           c.GetName(),
		Config:         c,
		ConnectTimeout: defaultConnectTimeout,
		policy:         c.GetLbPolicy(),
	}
	if ct := c.GetConnectTimeout(); ct != nil {
		cl.ConnectTimeout = ct.AsDuration()
	}
	switch c.GetType() {
	case clusterv3.Cluster_STATIC, clusterv3.Cluster_EDS, clusterv3.Cluster_STRICT_DNS, clusterv3.Cluster_LOGICAL_DNS:
	case clusterv3.Cluster_ORIGINAL_DST:
		cl.OriginalDst = true
	default:
		return nil, fmt.Errorf("cluster %q: unsupported discovery type %s", c.GetName(), c.GetType())
	}
	if c.GetClusterType() != nil {
		return nil, fmt.Errorf("cluster %q: custom cluster types are not supported", c.GetName())
	}
	switch cl.policy {
	case clusterv3.Cluster_ROUND_ROBIN, clusterv3.Cluster_RANDOM, clusterv3.Cluster_LEAST_REQUEST, clusterv3.Cluster_CLUSTER_PROVIDED:
	default:
		// Other policies (ring hash, maglev) degrade to round robin.
		cl.policy = clusterv3.Cluster_ROUND_ROBIN
	}
	if c.GetTransportSocket() != nil {
		return nil, fmt.Errorf("cluster %q: transport sockets (TLS) are not supported", c.GetName())
	}
	h2, err := wantsHTTP2(c)
	if err != nil {
		return nil, fmt.Errorf("cluster %q: %w", c.GetName(), err)
	}
	cl.HTTP2 = h2
	if la := c.GetLoadAssignment(); la != nil {
		cl.SetEndpoints(la)
	} else {
		cl.endpoints.Store(new([]*Endpoint))
	}
	cl.dialer = net.Dialer{Timeout: cl.ConnectTimeout, KeepAlive: 30 * time.Second}
	cl.Transport = &http.Transport{
		DialContext:           cl.dialHTTP,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       time.Hour,
		ResponseHeaderTimeout: 0,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		Protocols:             new(http.Protocols),
	}
	if h2 {
		cl.Transport.Protocols.SetUnencryptedHTTP2(true)
	} else {
		cl.Transport.Protocols.SetHTTP1(true)
	}
	return cl, nil
}

// wantsHTTP2 reads the cluster's upstream protocol, from the deprecated
// http2_protocol_options or the envoy.extensions.upstreams.http.v3 options.
func wantsHTTP2(c *clusterv3.Cluster) (bool, error) {
	if c.GetHttp2ProtocolOptions() != nil {
		return true, nil
	}
	a, ok := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
	if !ok {
		return false, nil
	}
	var o httpv3.HttpProtocolOptions
	if err := a.UnmarshalTo(&o); err != nil {
		return false, fmt.Errorf("decode http protocol options: %w", err)
	}
	if e := o.GetExplicitHttpConfig(); e != nil {
		return e.GetHttp2ProtocolOptions() != nil, nil
	}
	// use_downstream_protocol and auto fall back to HTTP/1.1 here.
	return false, nil
}

// Same reports whether c would build the same cluster as cl.
func (cl *Cluster) Same(c *clusterv3.Cluster) bool {
	return proto.Equal(cl.Config, c)
}

// SetEndpoints replaces the endpoints from a load assignment, skipping
// hosts marked unhealthy, draining or timed out.
func (cl *Cluster) SetEndpoints(la *endpointv3.ClusterLoadAssignment) {
	old := cl.endpoints.Load()
	byAddr := map[string]*Endpoint{}
	if old != nil {
		for _, e := range *old {
			byAddr[e.Addr] = e
		}
	}
	var eps []*Endpoint
	for _, le := range la.GetEndpoints() {
		for _, lb := range le.GetLbEndpoints() {
			switch lb.GetHealthStatus() {
			case corev3.HealthStatus_UNHEALTHY, corev3.HealthStatus_DRAINING, corev3.HealthStatus_TIMEOUT:
				continue
			}
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			if sa == nil {
				continue
			}
			addr := net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))
			e := byAddr[addr]
			if e == nil {
				e = &Endpoint{Addr: addr}
			}
			eps = append(eps, e)
		}
	}
	cl.endpoints.Store(&eps)
}

// Endpoints returns the current endpoints.
func (cl *Cluster) Endpoints() []*Endpoint {
	return *cl.endpoints.Load()
}

// Pick chooses an endpoint by the cluster's policy. For original
// destination clusters it returns the original destination (orig), which
// must then be valid. It returns nil when there is no healthy upstream.
func (cl *Cluster) Pick(orig netip.AddrPort) *Endpoint {
	if cl.OriginalDst {
		if !orig.IsValid() {
			return nil
		}
		if cl.Name == InboundPassthrough {
			orig = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), orig.Port())
		}
		return &Endpoint{Addr: orig.String()}
	}
	eps := *cl.endpoints.Load()
	switch len(eps) {
	case 0:
		return nil
	case 1:
		return eps[0]
	}
	switch cl.policy {
	case clusterv3.Cluster_RANDOM:
		return eps[rand.IntN(len(eps))]
	case clusterv3.Cluster_LEAST_REQUEST:
		// Envoy's default: the better of two random choices.
		a, b := eps[rand.IntN(len(eps))], eps[rand.IntN(len(eps))]
		if b.Active.Load() < a.Active.Load() {
			return b
		}
		return a
	default:
		return eps[(cl.rr.Add(1)-1)%uint64(len(eps))]
	}
}

// Dial connects to e within the cluster's connect timeout.
func (cl *Cluster) Dial(ctx context.Context, e *Endpoint) (net.Conn, error) {
	c, err := cl.dialer.DialContext(ctx, "tcp", e.Addr)
	if err != nil {
		cl.ConnectFails.Add(1)
		e.Fails.Add(1)
	}
	return c, err
}

func (cl *Cluster) dialHTTP(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := cl.dialer.DialContext(ctx, network, addr)
	if err != nil {
		cl.ConnectFails.Add(1)
	}
	return c, err
}

// Close drops the cluster's idle pooled connections; requests in flight
// finish on theirs.
func (cl *Cluster) Close() {
	cl.Transport.CloseIdleConnections()
}
