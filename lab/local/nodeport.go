package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/meshlab/meshlab/controlplane/registry"
)

// nodePorts publishes NodePort Services on the host, as kube-proxy does on
// a node: every nodePort of every NodePort Service is listened on at each
// host address, and each connection goes straight to a ready endpoint's
// pod IP and target port, where the pod's inbound capture sees it as
// traffic from outside the mesh. It is a user-space relay, like publish,
// for the same reason: no DNAT on loopback, no route_localnet flipped.
//
// Sync makes the listeners match a registry snapshot. A port whose Service
// and addresses stay the same keeps its listeners, and connections already
// relayed are never cut by a Sync: only new connections see new endpoints.
type nodePorts struct {
	hostAddrs []netip.Addr
	log       *slog.Logger

	// ctx is the relays' and accept loops' owner; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	ports  map[uint32]*nodePort // by nodePort number
	warned map[string]bool      // UDP ports already logged as unsupported
	closed bool
}

// nodePort is one published port: its listeners, one per host address, and
// where new connections go.
type nodePort struct {
	lns []net.Listener
	// route is swapped by Sync and read at every accept.
	route atomic.Pointer[nodeRoute]
	next  atomic.Uint64 // round robin over route.targets
}

// nodeRoute is the Service a nodePort belongs to and its ready endpoints'
// pod IP and target port.
type nodeRoute struct {
	service string // namespace/name, for logs
	targets []netip.AddrPort
}

func newNodePorts(hostAddrs []netip.Addr, log *slog.Logger) *nodePorts {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &nodePorts{
		hostAddrs: slices.Clone(hostAddrs),
		log:       log,
		ctx:       ctx,
		cancel:    cancel,
		ports:     map[uint32]*nodePort{},
		warned:    map[string]bool{},
	}
}

// Sync opens a listener on every host address for every TCP nodePort of
// the snapshot's NodePort Services, points each at the Service's ready
// endpoints, and closes the ports no Service has any more. A port it cannot
// open is reported in the error (all such ports, joined) and tried again at
// the next Sync; the others work meanwhile. ctx bounds this call only: what
// Sync starts runs until Close.
func (n *nodePorts) Sync(ctx context.Context, snap registry.Snapshot) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errors.New("publish nodePorts: already closed")
	}

	want := map[uint32]*nodeRoute{}
	var errs []error
	for _, svc := range snap.Services {
		if svc.Type != "NodePort" {
			continue
		}
		var endpoints []registry.Workload
		for _, p := range svc.Ports {
			if p.NodePort == 0 {
				continue
			}
			if p.Protocol != "" && !strings.EqualFold(p.Protocol, "TCP") {
				// Said once: Sync runs at every registry change.
				if key := fmt.Sprintf("%s/%d", svc.Key(), p.NodePort); !n.warned[key] {
					n.warned[key] = true
					n.log.Warn("the local runtime publishes TCP nodePorts only; this one is not published",
						"service", svc.Key(), "nodePort", p.NodePort, "protocol", p.Protocol)
				}
				continue
			}
			if prev, ok := want[p.NodePort]; ok {
				errs = append(errs, fmt.Errorf("nodePort %d of Service %s: already allocated to Service %s; choose another nodePort",
					p.NodePort, svc.Key(), prev.service))
				continue
			}
			if endpoints == nil {
				endpoints = snap.Endpoints(svc)
			}
			r := &nodeRoute{service: svc.Key()}
			for _, w := range endpoints {
				r.targets = append(r.targets, netip.AddrPortFrom(w.IP, uint16(p.Target())))
			}
			want[p.NodePort] = r
		}
	}

	for number, np := range n.ports {
		if _, ok := want[number]; !ok {
			n.log.Info("nodePort closed", "nodePort", number, "service", np.route.Load().service)
			np.close()
			delete(n.ports, number)
		}
	}
	// In port order, so errors and logs come out the same way each time.
	numbers := make([]uint32, 0, len(want))
	for number := range want {
		numbers = append(numbers, number)
	}
	slices.Sort(numbers)
	for _, number := range numbers {
		r := want[number]
		if np, ok := n.ports[number]; ok {
			np.route.Store(r)
			continue
		}
		np, err := n.open(ctx, number, r)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		n.ports[number] = np
		n.log.Info("nodePort published", "nodePort", number, "service", r.service, "endpoints", len(r.targets))
	}
	return errors.Join(errs...)
}

// open listens on number at every host address, all or none, so that a
// port is either fully published or retried whole at the next Sync.
func (n *nodePorts) open(ctx context.Context, number uint32, r *nodeRoute) (*nodePort, error) {
	np := &nodePort{}
	np.route.Store(r)
	for _, a := range n.hostAddrs {
		addr := net.JoinHostPort(a.String(), strconv.FormatUint(uint64(number), 10))
		ln, err := new(net.ListenConfig).Listen(ctx, "tcp", addr)
		if err != nil {
			np.close()
			// The errno alone ("address already in use") reads better
			// after our own "listen ADDR" than net's "listen tcp ADDR: bind: ...".
			var se *os.SyscallError
			if errors.As(err, &se) {
				err = se.Err
			}
			return nil, fmt.Errorf("nodePort %d of Service %s: listen %s: %w (free the port or give the Service another nodePort)",
				number, r.service, addr, err)
		}
		np.lns = append(np.lns, ln)
	}
	for _, ln := range np.lns {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.accept(ln, np)
		}()
	}
	return np, nil
}

func (n *nodePorts) accept(ln net.Listener, np *nodePort) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				n.log.Warn("accept on nodePort", "addr", ln.Addr().String(), "err", err)
			}
			return
		}
		to, ok := np.pick()
		if !ok {
			// No ready endpoint: reset at once, as kube-proxy's REJECT
			// refuses, rather than hold the client until it times out.
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = c.Close()
			continue
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			relay(n.ctx, c, to.String())
		}()
	}
}

// pick chooses the next ready endpoint, round robin at accept time.
func (np *nodePort) pick() (netip.AddrPort, bool) {
	r := np.route.Load()
	if len(r.targets) == 0 {
		return netip.AddrPort{}, false
	}
	i := np.next.Add(1) - 1
	return r.targets[i%uint64(len(r.targets))], true
}

// close stops new connections; relayed ones go on until they end or the
// nodePorts is closed, as established flows outlive a kube-proxy rule.
func (np *nodePort) close() {
	for _, ln := range np.lns {
		_ = ln.Close()
	}
}

// Close closes every listener and relayed connection and waits for their
// goroutines.
func (n *nodePorts) Close() {
	n.mu.Lock()
	n.closed = true
	for number, np := range n.ports {
		np.close()
		delete(n.ports, number)
	}
	n.mu.Unlock()
	n.cancel()
	n.wg.Wait()
}
