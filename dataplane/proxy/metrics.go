package proxy

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/meshlab/meshlab/dataplane/telemetry"
)

// clusterService is the destination service of a cluster as Istio's
// stats filter names it: the first of the services istiod lists in the
// cluster's "istio" metadata, else what the outbound cluster's name
// (outbound|port|subset|host) says, else the cluster's own name
// (PassthroughCluster, BlackHoleCluster).
func clusterService(m *telemetry.Metrics, name string, c *clusterv3.Cluster) *telemetry.Service {
	if svcs := c.GetMetadata().GetFilterMetadata()["istio"].GetFields()["services"].GetListValue().GetValues(); len(svcs) > 0 {
		f := svcs[0].GetStructValue().GetFields()
		return m.Service(f["host"].GetStringValue(), f["name"].GetStringValue(), f["namespace"].GetStringValue())
	}
	parts := strings.Split(name, "|")
	if len(parts) == 4 && parts[0] == "inbound" {
		return m.Service("", "", "")
	}
	if len(parts) != 4 || parts[0] != "outbound" {
		return m.Service("", name, "")
	}
	host := parts[3]
	// <name>.<namespace>.svc.<domain> is a Kubernetes service; any other
	// host (a ServiceEntry's) is its own name.
	if n, rest, ok := strings.Cut(host, "."); ok {
		if ns, rest, ok := strings.Cut(rest, "."); ok && strings.HasPrefix(rest, "svc.") {
			return m.Service(host, n, ns)
		}
	}
	return m.Service(host, host, "")
}

// inMesh reports whether requests to svc carry the metadata exchange:
// only to Kubernetes services, so that a workload's name and labels are
// not sent to hosts outside the mesh.
func inMesh(svc *telemetry.Service) bool {
	return svc != nil && svc.Namespace != telemetry.Unknown
}

// record adds a finished request to the proxy's Istio metrics: reported
// by the destination on an inbound listener, else by the source (a
// client sidecar or a gateway).
func (p *Proxy) record(ex *exchange, r *http.Request, d time.Duration) {
	peer := ex.peer
	if peer == nil {
		peer = telemetry.UnknownPeer
	}
	k := telemetry.Request{Service: ex.service, Code: ex.status, GRPCStatus: -1, Flags: "-"}
	if ex.conn.inbound {
		k.Reporter, k.Source, k.Destination = telemetry.Destination, peer, p.node.Peer
		k.Security = telemetry.SecurityNone
		if id := ex.conn.id; id.mutualTLS() {
			// Istio's stats filter: mutual_tls when the connection has
			// both a peer and a local URI SAN, the principals those.
			if id.peerURI != "" && id.localURI != "" {
				k.Security = telemetry.SecurityMutualTLS
			}
			k.Source = p.metrics.WithPrincipal(peer, id.peerURI)
			k.Destination = p.metrics.WithPrincipal(p.node.Peer, id.localURI)
		}
	} else {
		// Reported by the source: connection_security_policy stays
		// "unknown", as Istio's; the principals are the upstream
		// connection's, when it was TLS.
		k.Reporter, k.Source, k.Destination = telemetry.Source, p.node.Peer, peer
		if ex.upTLS != nil && len(ex.upTLS.PeerCertificates) > 0 {
			k.Destination = p.metrics.WithCertPrincipal(peer, ex.upTLS.PeerCertificates[0])
			if cert, err := p.creds.Certificate(sdsDefault); err == nil {
				k.Source = p.metrics.WithPrincipal(p.node.Peer, localURI(cert))
			}
		}
	}
	if ex.flags != 0 {
		k.Flags = ex.flags.String()
	}
	h := ex.hcm
	if h == nil {
		h = ex.conn.chain.http
	}
	var dims telemetry.Dims
	withDims := false
	if sc := h.stats; sc != nil {
		if sc.hostFallback && k.Reporter == telemetry.Source && (k.Service == nil || k.Service.Host == telemetry.Unknown) && r.Host != "" {
			// Istio's stats filter names a destination it cannot tell
			// by the request's host.
			k.Service = p.metrics.HostService(r.Host)
		}
		withDims = sc.httpDims(&k, &dims, r, ex, d)
	}
	if ct := r.Header["Content-Type"]; len(ct) > 0 && strings.HasPrefix(ct[0], "application/grpc") {
		k.GRPC = true
		if v := ex.Header()["Grpc-Status"]; len(v) > 0 {
			if n, err := strconv.Atoi(v[0]); err == nil {
				k.GRPCStatus = n
			}
		}
	}
	if withDims {
		p.metrics.RecordRequestDims(k, &dims, d, requestSize(r), responseSize(ex))
		return
	}
	p.metrics.RecordRequest(k, d, requestSize(r), responseSize(ex))
}

// requestSize is the request's size as HTTP/1.1 puts it on the wire:
// request line, headers and body (Envoy's request.total_size).
func requestSize(r *http.Request) int64 {
	n := int64(len(r.Method) + len(r.RequestURI) + len(" HTTP/1.1\r\n") + len("Host: \r\n") + len(r.Host) + 2)
	n += headerSize(r.Header)
	if r.ContentLength > 0 {
		n += r.ContentLength
	}
	return n
}

// responseSize is the response's status line, headers and body.
func responseSize(ex *exchange) int64 {
	return int64(len("HTTP/1.1 200 OK\r\n")+2) + headerSize(ex.Header()) + ex.bytes
}

func headerSize(h http.Header) int64 {
	var n int
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return int64(n)
}
