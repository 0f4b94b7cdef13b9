// Package wizard owns the console's service wizards: from what a user chose
// in a dialog (a Request) it writes the Istio objects Kiali's service actions
// write — a DestinationRule with one subset per version, a VirtualService
// named and hosted for the service, and optionally a Gateway and a
// PeerAuthentication — labelled kiali_wizard: <action> so they can be found
// and deleted as a group. It only generates; applying is the control plane
// API's job, so a preview and an apply show the same YAML.
package wizard

// Label marks every object a wizard writes, with the action as its value;
// deleting a service's wizard objects selects on it.
const Label = "kiali_wizard"

// RelatedAnnotation on the DestinationRule names the PeerAuthentication the
// same wizard run wrote ("PeerAuthentication/<service>"), as Kiali does, so
// the pair can be found from either side.
const RelatedAnnotation = "kiali_wizard_related"

// The actions, as Kiali names them.
const (
	RequestRouting     = "request_routing"
	FaultInjection     = "fault_injection"
	TrafficShifting    = "traffic_shifting"
	TCPTrafficShifting = "tcp_traffic_shifting"
	RequestTimeouts    = "request_timeouts"
)

// Actions lists the actions in the order Kiali's menu shows them.
var Actions = []string{RequestRouting, FaultInjection, TrafficShifting, TCPTrafficShifting, RequestTimeouts}

// Request is what the wizard dialog posts. Only the fields of its action
// are read: Weights for the shifting actions (and as the single rule of
// request routing when Rules is empty), Rules for request routing, Fault
// for fault injection, Timeouts for request timeouts. Advanced applies to
// every action.
type Request struct {
	Action     string    `json:"action"`
	Namespace  string    `json:"namespace"`
	Service    string    `json:"service"`
	APIVersion string    `json:"apiVersion"` // "v1" (Kiali 2.x, the default) or "v1beta1" (Kiali 1.80)
	Versions   []string  `json:"versions"`   // the service's workloads' version labels; one subset each
	Weights    []Weight  `json:"weights"`    // nil = equal split, the remainder on the last version (33/33/34)
	Rules      []Rule    `json:"rules"`      // request routing, in order; a rule without matches is a default route
	Fault      *Fault    `json:"fault"`      // nil = delay 5s and abort 503, both at 100 %
	Timeouts   *Timeouts `json:"timeouts"`   // nil = timeout 2s and retries 3 × 2s on gateway-error,connect-failure,refused-stream
	Advanced   *Advanced `json:"advanced"`
}

// Weight routes Weight percent of the requests to Version. A mirrored
// weight is instead the percentage of requests copied to that version
// (mirrorPercentage); at most one weight of a route is mirrored, and the
// others must add up to 100.
type Weight struct {
	Version string `json:"version"`
	Weight  int    `json:"weight"`
	Mirror  bool   `json:"mirror"`
}

// Rule is one HTTP route of request routing. Its matches are ANDed into
// one match block, as Kiali's rule editor does; a rule without matches
// catches everything, so it belongs last. Fault, Timeout and Retries are
// set on the route only when given (no defaults inside a rule).
type Rule struct {
	Matches []Match  `json:"matches"`
	Weights []Weight `json:"weights"` // nil = the default split
	Fault   *Fault   `json:"fault"`
	Timeout string   `json:"timeout"` // a duration such as "2s"; "" = none
	Retries *Retries `json:"retries"`
}

// Match is one condition of a rule: Field is headers, uri, scheme, method
// or authority; Name is the header's name (headers only); Op is exact,
// prefix or regex (RE2).
type Match struct {
	Field string `json:"field"`
	Name  string `json:"name,omitempty"`
	Op    string `json:"op"`
	Value string `json:"value"`
}

// Fault is the fault injected into the route. A nil Delay or Abort is not
// injected; inside one, zero fields take Kiali's defaults (5s, 503, 100 %).
type Fault struct {
	Delay *Delay `json:"delay"`
	Abort *Abort `json:"abort"`
}

// Delay holds requests for FixedDelay on Percentage percent of them.
type Delay struct {
	FixedDelay string  `json:"fixedDelay"`
	Percentage float64 `json:"percentage"`
}

// Abort answers HTTPStatus on Percentage percent of the requests.
type Abort struct {
	HTTPStatus int     `json:"httpStatus"`
	Percentage float64 `json:"percentage"`
}

// Timeouts is the request timeouts action: Timeout "" sets no timeout and
// a nil Retries no retry policy (to drop both, don't run the action).
type Timeouts struct {
	Timeout string   `json:"timeout"`
	Retries *Retries `json:"retries"`
}

// Retries is a route's retry policy; zero fields take Kiali's defaults
// (3 attempts, 2s per try, gateway-error,connect-failure,refused-stream).
type Retries struct {
	Attempts      int    `json:"attempts"`
	PerTryTimeout string `json:"perTryTimeout"`
	RetryOn       string `json:"retryOn"`
}

// Advanced are the wizard's "Advanced Options". Every field is optional.
type Advanced struct {
	// Hosts replaces the VirtualService's hosts (default: the service's FQDN).
	Hosts              []string            `json:"hosts"`
	TLS                *TLS                `json:"tls"`
	LoadBalancer       *LoadBalancer       `json:"loadBalancer"`
	ConnectionPool     *ConnectionPool     `json:"connectionPool"`
	OutlierDetection   *OutlierDetection   `json:"outlierDetection"`
	Gateway            *Gateway            `json:"gateway"`
	PeerAuthentication *PeerAuthentication `json:"peerAuthentication"`
}

// TLS is the DestinationRule's trafficPolicy.tls: Mode DISABLE, SIMPLE,
// MUTUAL (with the three files) or ISTIO_MUTUAL; UNSET writes nothing.
type TLS struct {
	Mode              string `json:"mode"`
	ClientCertificate string `json:"clientCertificate,omitempty"`
	PrivateKey        string `json:"privateKey,omitempty"`
	CACertificates    string `json:"caCertificates,omitempty"`
}

// LoadBalancer is either Simple (ROUND_ROBIN, LEAST_REQUEST, RANDOM,
// PASSTHROUGH, LEAST_CONN) or ConsistentHash.
type LoadBalancer struct {
	Simple         string          `json:"simple,omitempty"`
	ConsistentHash *ConsistentHash `json:"consistentHash,omitempty"`
}

// ConsistentHash hashes on exactly one of a header, a cookie or the source IP.
type ConsistentHash struct {
	HTTPHeaderName string  `json:"httpHeaderName,omitempty"`
	HTTPCookie     *Cookie `json:"httpCookie,omitempty"`
	UseSourceIP    bool    `json:"useSourceIp,omitempty"`
}

// Cookie is the cookie consistent hashing reads (and Envoy sets, with TTL).
type Cookie struct {
	Name string `json:"name"`
	Path string `json:"path,omitempty"`
	TTL  string `json:"ttl"`
}

// ConnectionPool is the DestinationRule's connectionPool; a zero value
// takes Kiali's dialog defaults (1 connection, 1 pending request), which
// trip the circuit breaker under any concurrency — what the dialog is for.
type ConnectionPool struct {
	MaxConnections           int32  `json:"maxConnections"`
	ConnectTimeout           string `json:"connectTimeout,omitempty"`
	HTTP1MaxPendingRequests  int32  `json:"http1MaxPendingRequests"`
	HTTP2MaxRequests         int32  `json:"http2MaxRequests,omitempty"`
	MaxRequestsPerConnection int32  `json:"maxRequestsPerConnection,omitempty"`
	MaxRetries               int32  `json:"maxRetries,omitempty"`
}

// OutlierDetection is the DestinationRule's outlierDetection; a zero value
// ejects a host after 1 consecutive 5xx (Kiali's dialog default).
type OutlierDetection struct {
	Consecutive5xxErrors uint32 `json:"consecutive5xxErrors"`
	Interval             string `json:"interval,omitempty"`
	BaseEjectionTime     string `json:"baseEjectionTime,omitempty"`
	MaxEjectionPercent   int32  `json:"maxEjectionPercent,omitempty"`
}

// Gateway exposes the VirtualService through an ingress gateway: a new
// Gateway "<service>-gateway" selecting istio: ingressgateway on Port
// (default 80) for Hosts (default "*"), or Existing ("namespace/name")
// when set. Mesh keeps the VirtualService applying to sidecars too.
type Gateway struct {
	Existing string   `json:"existing,omitempty"`
	Port     uint32   `json:"port,omitempty"`
	Hosts    []string `json:"hosts,omitempty"`
	Mesh     bool     `json:"mesh"`
}

// PeerAuthentication creates a workload PeerAuthentication for the
// service's pods (selector app: App, default the service name) with Mode
// UNSET, DISABLE, PERMISSIVE or STRICT.
type PeerAuthentication struct {
	Mode string `json:"mode"`
	App  string `json:"app,omitempty"`
}

// Object is one generated Istio object; Document is the whole object as
// Kiali writes it, including the nulls Kiali sends to clear fields
// (metadata.annotations, spec.trafficPolicy, spec.gateways).
type Object struct {
	Kind      string         `json:"kind"`
	Namespace string         `json:"namespace"`
	Name      string         `json:"name"`
	Document  map[string]any `json:"document"`
}

// Kiali's defaults.
const (
	DefaultDelay         = "5s"
	DefaultAbortStatus   = 503
	DefaultPercentage    = 100.0
	DefaultTimeout       = "2s"
	DefaultAttempts      = 3
	DefaultPerTryTimeout = "2s"
	DefaultRetryOn       = "gateway-error,connect-failure,refused-stream"
	DefaultGatewayPort   = 80
)
