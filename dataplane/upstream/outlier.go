package upstream

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
)

// detector is Envoy's outlier detection for consecutive 5xx and
// consecutive gateway errors (success-rate detection is off, as Istio
// configures it). A host reaching a threshold is ejected at once, if
// max_ejection_percent allows; every interval, hosts whose ejection time
// (base_ejection_time times their ejection count, at most
// max_ejection_time) has passed come back, and hosts not ejected earn one
// ejection off their multiplier.
//
// Envoy runs the interval on a timer; here the intervals that passed are
// swept, each at its own time, by the next pick. Only picks observe the
// healthy set, so the two are indistinguishable from outside, and no
// goroutine outlives the cluster.
type detector struct {
	consecutive5xx, enforcing5xx         uint32
	consecutiveGateway, enforcingGateway uint32
	interval, base, max                  time.Duration
	maxEjectionPercent                   float64

	next atomic.Int64 // when the next interval ends, unix nanoseconds
}

func newDetector(od *clusterv3.OutlierDetection, now time.Time) *detector {
	d := &detector{
		consecutive5xx: 5, enforcing5xx: 100,
		consecutiveGateway: 5, enforcingGateway: 0,
		interval: 10 * time.Second, base: 30 * time.Second, max: 300 * time.Second,
		maxEjectionPercent: 10,
	}
	if v := od.GetConsecutive_5Xx(); v != nil {
		d.consecutive5xx = v.GetValue()
	}
	if v := od.GetEnforcingConsecutive_5Xx(); v != nil {
		d.enforcing5xx = v.GetValue()
	}
	if v := od.GetConsecutiveGatewayFailure(); v != nil {
		d.consecutiveGateway = v.GetValue()
	}
	if v := od.GetEnforcingConsecutiveGatewayFailure(); v != nil {
		d.enforcingGateway = v.GetValue()
	}
	if v := od.GetInterval(); v != nil && v.AsDuration() > 0 {
		d.interval = v.AsDuration()
	}
	if v := od.GetBaseEjectionTime(); v != nil && v.AsDuration() > 0 {
		d.base = v.AsDuration()
	}
	if v := od.GetMaxEjectionTime(); v != nil && v.AsDuration() > 0 {
		d.max = v.AsDuration()
	}
	if v := od.GetMaxEjectionPercent(); v != nil {
		d.maxEjectionPercent = float64(min(v.GetValue(), 100))
	}
	d.next.Store(now.Add(d.interval).UnixNano())
	return d
}

// Observe reports an upstream response code from e to outlier detection.
func (cl *Cluster) Observe(e *Endpoint, code int) {
	d := cl.od
	if d == nil || e == nil {
		return
	}
	if code < 500 || code > 599 {
		// Loads first, so that healthy traffic does not write shared lines.
		if e.consecutive5xx.Load() != 0 {
			e.consecutive5xx.Store(0)
		}
		if e.consecutiveGateway.Load() != 0 {
			e.consecutiveGateway.Store(0)
		}
		return
	}
	if code == 502 || code == 503 || code == 504 {
		if e.consecutiveGateway.Add(1) == d.consecutiveGateway {
			cl.eject(e, d.enforcingGateway, &e.consecutiveGateway)
		}
	} else {
		e.consecutiveGateway.Store(0)
	}
	if e.consecutive5xx.Add(1) == d.consecutive5xx {
		cl.eject(e, d.enforcing5xx, &e.consecutive5xx)
	}
}

// DownstreamBody is a request body that can tell when reading it failed
// on the client's side: a malformed chunked body, a client that left
// mid-upload. Such a failure is the downstream's: Envoy's connection
// manager resets the stream (DPE, DC) and outlier detection never hears of
// it, so a client cannot eject a healthy host.
type DownstreamBody interface {
	DownstreamFailed() bool
}

// downstreamFailed reports whether req's body failed on the client's side.
func downstreamFailed(req *http.Request) bool {
	b, ok := req.Body.(DownstreamBody)
	return ok && b.DownstreamFailed()
}

// observeResult maps a round trip's outcome to the code Envoy reports
// for it: locally originated failures count as 503 (connect failure,
// reset) or 504 (timeout); a downstream cancellation or a request body the
// client failed to send counts as nothing.
func (cl *Cluster) observeResult(e *Endpoint, req *http.Request, resp *http.Response, err error) {
	switch {
	case err == nil:
		cl.Observe(e, resp.StatusCode)
	case errors.Is(err, context.Canceled) || downstreamFailed(req):
	case errors.Is(err, context.DeadlineExceeded):
		cl.Observe(e, http.StatusGatewayTimeout)
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			cl.Observe(e, http.StatusGatewayTimeout)
			return
		}
		cl.Observe(e, http.StatusServiceUnavailable)
	}
}

// eject ejects e when enforcement and max_ejection_percent allow, and
// resets the counter that tripped either way, as Envoy does.
func (cl *Cluster) eject(e *Endpoint, enforcing uint32, counter *atomic.Uint32) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	counter.Store(0)
	d := cl.od
	if e.ejected.Load() || enforcing == 0 || rand.Uint32N(100) >= enforcing {
		return
	}
	all := *cl.endpoints.Load()
	ejected := 0
	found := false
	for _, h := range all {
		if h.ejected.Load() {
			ejected++
		}
		found = found || h == e
	}
	if !found {
		return // removed by EDS meanwhile
	}
	if 100*float64(ejected+1)/float64(len(all)) > d.maxEjectionPercent {
		return
	}
	e.ejected.Store(true)
	e.ejectedAt = cl.now()
	e.backoff++
	e.Ejections.Add(1)
	cl.rebuild()
}

// sweep runs the intervals that ended by now.
func (cl *Cluster) sweep() {
	d := cl.od
	now := cl.now()
	if now.UnixNano() < d.next.Load() {
		return
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	next := d.next.Load()
	changed := false
	for i := 0; next <= now.UnixNano(); i++ {
		if i == 1000 {
			// Long idle: the intervals left change nothing a thousand
			// intervals did not, but for multipliers; skip to now.
			next = now.UnixNano()
		}
		changed = cl.interval(time.Unix(0, next)) || changed
		next += int64(d.interval)
	}
	d.next.Store(next)
	if changed {
		cl.rebuild()
	}
}

// interval is one run of Envoy's interval timer at time at; mu held.
func (cl *Cluster) interval(at time.Time) (changed bool) {
	d := cl.od
	for _, e := range *cl.endpoints.Load() {
		if !e.ejected.Load() {
			if e.backoff > 0 {
				e.backoff--
			}
			continue
		}
		if at.Sub(e.ejectedAt) >= min(d.base*time.Duration(e.backoff), max(d.base, d.max)) {
			e.ejected.Store(false)
			changed = true
		}
	}
	return changed
}

// endpointByAddr finds a current endpoint by its address.
func (cl *Cluster) endpointByAddr(addr string) *Endpoint {
	for _, e := range *cl.endpoints.Load() {
		if e.Addr == addr {
			return e
		}
	}
	return nil
}
