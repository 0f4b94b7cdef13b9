package router

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/anypb"
)

// Envoy's retry back-off when the policy sets none: 25ms base, ten times
// that at most.
const (
	DefaultRetryBaseInterval = 25 * time.Millisecond
	defaultHostSelection     = 1
)

// RetryOn is a set of Envoy retry conditions (x-envoy-retry-on names).
type RetryOn uint32

// Envoy's retry conditions.
const (
	Retry5xx RetryOn = 1 << iota
	RetryGatewayError
	RetryReset
	RetryConnectFailure
	RetryRetriable4xx
	RetryRefusedStream
	RetryRetriableStatusCodes
	RetryResetBeforeRequest
	RetryGRPCCancelled
	RetryGRPCDeadlineExceeded
	RetryGRPCInternal
	RetryGRPCResourceExhausted
	RetryGRPCUnavailable
)

var retryOnNames = map[string]RetryOn{
	"5xx":                    Retry5xx,
	"gateway-error":          RetryGatewayError,
	"reset":                  RetryReset,
	"connect-failure":        RetryConnectFailure,
	"retriable-4xx":          RetryRetriable4xx,
	"refused-stream":         RetryRefusedStream,
	"retriable-status-codes": RetryRetriableStatusCodes,
	"reset-before-request":   RetryResetBeforeRequest,
	"cancelled":              RetryGRPCCancelled,
	"deadline-exceeded":      RetryGRPCDeadlineExceeded,
	"internal":               RetryGRPCInternal,
	"resource-exhausted":     RetryGRPCResourceExhausted,
	"unavailable":            RetryGRPCUnavailable,
}

// Failure is how an attempt failed without a response.
type Failure int

// Attempt failures.
const (
	NoFailure Failure = iota
	// ConnectFailure: no connection to the endpoint (refused, connect
	// timeout).
	ConnectFailure
	// ResetFailure: the connection broke before a response.
	ResetFailure
	// PerTryTimeout: the attempt outlived the per-try timeout.
	PerTryTimeout
)

// RetryPolicy is Envoy's route retry policy, compiled.
type RetryPolicy struct {
	On          RetryOn
	StatusCodes []int
	NumRetries  int
	PerTry      time.Duration
	BackOffBase time.Duration
	BackOffMax  time.Duration
	// AvoidPrevious is the previous_hosts predicate: a retry picks an
	// endpoint not tried yet, up to HostSelectionAttempts picks.
	AvoidPrevious         bool
	HostSelectionAttempts int
}

// Retryable reports whether Envoy retries an attempt that ended with
// status (0 when there was no response) and grpcStatus ("" when absent),
// or failed with f.
func (p *RetryPolicy) Retryable(status int, grpcStatus string, f Failure) bool {
	if p == nil {
		return false
	}
	if f != NoFailure {
		// Envoy counts a reset or per-try timeout as a 5xx for 5xx and
		// gateway-error.
		if p.On&(Retry5xx|RetryGatewayError|RetryReset) != 0 {
			return true
		}
		return f == ConnectFailure && p.On&(RetryConnectFailure|RetryResetBeforeRequest) != 0
	}
	switch {
	case p.On&Retry5xx != 0 && status >= 500:
		return true
	case p.On&RetryGatewayError != 0 && (status == 502 || status == 503 || status == 504):
		return true
	case p.On&RetryRetriable4xx != 0 && status == 409:
		return true
	}
	if p.On&RetryRetriableStatusCodes != 0 {
		for _, c := range p.StatusCodes {
			if c == status {
				return true
			}
		}
	}
	if grpcStatus != "" {
		switch {
		case grpcStatus == "1" && p.On&RetryGRPCCancelled != 0,
			grpcStatus == "4" && p.On&RetryGRPCDeadlineExceeded != 0,
			grpcStatus == "13" && p.On&RetryGRPCInternal != 0,
			grpcStatus == "8" && p.On&RetryGRPCResourceExhausted != 0,
			grpcStatus == "14" && p.On&RetryGRPCUnavailable != 0:
			return true
		}
	}
	return false
}

// BackOff is Envoy's fully jittered exponential back-off before retry n
// (1 for the first): uniform in [0, min(base*(2^n-1), max)).
func (p *RetryPolicy) BackOff(n int) time.Duration {
	ceil := p.BackOffBase * time.Duration((uint64(1)<<min(n, 20))-1)
	if ceil > p.BackOffMax || ceil <= 0 {
		ceil = p.BackOffMax
	}
	if ceil <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(ceil)))
}

func compileRetry(rp *routev3.RetryPolicy) (*RetryPolicy, error) {
	p := &RetryPolicy{NumRetries: 1, BackOffBase: DefaultRetryBaseInterval, HostSelectionAttempts: defaultHostSelection}
	if rp.GetNumRetries() != nil {
		p.NumRetries = int(rp.GetNumRetries().GetValue())
	}
	for _, on := range strings.Split(rp.GetRetryOn(), ",") {
		on = strings.TrimSpace(on)
		if on == "" {
			continue
		}
		bit, ok := retryOnNames[on]
		if !ok {
			// Envoy ignores conditions it does not know.
			continue
		}
		p.On |= bit
	}
	for _, c := range rp.GetRetriableStatusCodes() {
		p.StatusCodes = append(p.StatusCodes, int(c))
	}
	p.PerTry = rp.GetPerTryTimeout().AsDuration()
	if b := rp.GetRetryBackOff(); b != nil {
		p.BackOffBase = b.GetBaseInterval().AsDuration()
		if b.GetMaxInterval() != nil {
			p.BackOffMax = b.GetMaxInterval().AsDuration()
		}
	}
	if p.BackOffMax == 0 {
		p.BackOffMax = 10 * p.BackOffBase
	}
	for _, h := range rp.GetRetryHostPredicate() {
		if h.GetName() == "envoy.retry_host_predicates.previous_hosts" {
			p.AvoidPrevious = true
		}
	}
	if n := rp.GetHostSelectionRetryMaxAttempts(); n > 0 {
		p.HostSelectionAttempts = int(n)
	}
	return p, nil
}

// Redirect is a compiled redirect action.
type Redirect struct {
	Scheme, Host, Path, PrefixRewrite string
	Port                              uint32
	StripQuery                        bool
	Code                              int
}

func compileRedirect(a *routev3.RedirectAction) *Redirect {
	rd := &Redirect{Host: a.GetHostRedirect(), Port: a.GetPortRedirect(), StripQuery: a.GetStripQuery(), Code: http.StatusMovedPermanently}
	if a.GetHttpsRedirect() {
		rd.Scheme = "https"
	}
	if s := a.GetSchemeRedirect(); s != "" {
		rd.Scheme = s
	}
	rd.Path = a.GetPathRedirect()
	rd.PrefixRewrite = a.GetPrefixRewrite()
	switch a.GetResponseCode() {
	case routev3.RedirectAction_FOUND:
		rd.Code = http.StatusFound
	case routev3.RedirectAction_SEE_OTHER:
		rd.Code = http.StatusSeeOther
	case routev3.RedirectAction_TEMPORARY_REDIRECT:
		rd.Code = http.StatusTemporaryRedirect
	case routev3.RedirectAction_PERMANENT_REDIRECT:
		rd.Code = http.StatusPermanentRedirect
	}
	return rd
}

// Location is the redirect's Location for a request to scheme://host with
// path and rawQuery, as Envoy builds it: each part replaced if the action
// says so; a new port (or a new scheme whose default port the host names)
// replaces the host's port.
func (rd *Redirect) Location(rt *Route, scheme, host, path, rawQuery string) string {
	newScheme := scheme
	if rd.Scheme != "" {
		newScheme = rd.Scheme
	}
	h := host
	if rd.Host != "" {
		h = rd.Host
	}
	name, port := splitHostPort(h)
	switch {
	case rd.Port != 0:
		port = strconv.FormatUint(uint64(rd.Port), 10)
	case rd.Scheme != "" && port == defaultPort(scheme):
		// The old scheme's default port means nothing under the new one.
		port = ""
	}
	if port == defaultPort(newScheme) {
		port = ""
	}
	p := path
	switch {
	case rd.Path != "":
		p = rd.Path
		if i := strings.IndexByte(p, '?'); i >= 0 {
			p, rawQuery = p[:i], p[i+1:]
		}
	case rd.PrefixRewrite != "":
		if m := rt.MatchedPrefix(); m != "" && len(path) >= len(m) {
			p = rd.PrefixRewrite + path[len(m):]
		}
	}
	var b strings.Builder
	b.WriteString(newScheme)
	b.WriteString("://")
	b.WriteString(name)
	if port != "" {
		b.WriteByte(':')
		b.WriteString(port)
	}
	b.WriteString(p)
	if rawQuery != "" && !rd.StripQuery {
		b.WriteByte('?')
		b.WriteString(rawQuery)
	}
	return b.String()
}

func defaultPort(scheme string) string {
	switch scheme {
	case "http":
		return "80"
	case "https":
		return "443"
	}
	return ""
}

func splitHostPort(h string) (string, string) {
	i := strings.LastIndexByte(h, ':')
	if i < 0 || strings.IndexByte(h[i:], ']') >= 0 {
		return h, ""
	}
	return h[:i], h[i+1:]
}

// HeaderOps are Envoy header mutations: removals first, then additions
// in order.
type HeaderOps struct {
	Remove []string
	Add    []HeaderAdd
}

// HeaderAdd is one header_value_option.
type HeaderAdd struct {
	Key, Value string
	Action     corev3.HeaderValueOption_HeaderAppendAction
	// values is []string{Value}, built once and shared by every request
	// the header is set on. Its capacity is 1, so a later append copies
	// it instead of writing into it.
	values []string
}

func compileHeaderOps(add []*corev3.HeaderValueOption, remove []string) HeaderOps {
	var o HeaderOps
	for _, r := range remove {
		o.Remove = append(o.Remove, http.CanonicalHeaderKey(r))
	}
	for _, a := range add {
		action := a.GetAppendAction()
		//nolint:staticcheck // the deprecated append field still decides when set
		if ap := a.GetAppend(); ap != nil && action == corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD && !ap.GetValue() {
			action = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		}
		if a.GetHeader().GetValue() == "" && !a.GetKeepEmptyValue() {
			continue
		}
		v := a.GetHeader().GetValue()
		o.Add = append(o.Add, HeaderAdd{Key: http.CanonicalHeaderKey(a.GetHeader().GetKey()), Value: v, Action: action, values: []string{v}[:1:1]})
	}
	return o
}

// shared is the header's value slice; a HeaderAdd built by hand (tests)
// has none and gets a new one.
func (a *HeaderAdd) shared() []string {
	if a.values == nil {
		return []string{a.Value}
	}
	return a.values
}

// Empty reports whether o changes nothing.
func (o *HeaderOps) Empty() bool { return len(o.Remove) == 0 && len(o.Add) == 0 }

// Apply mutates h.
func (o *HeaderOps) Apply(h http.Header) {
	for _, k := range o.Remove {
		delete(h, k)
	}
	for _, a := range o.Add {
		_, present := h[a.Key]
		switch a.Action {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			if present {
				h[a.Key] = append(h[a.Key], a.Value)
			} else {
				h[a.Key] = a.shared()
			}
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			if !present {
				h[a.Key] = a.shared()
			}
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			h[a.Key] = a.shared()
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			if present {
				h[a.Key] = a.shared()
			}
		}
	}
}

// Fault is a route's envoy.filters.http.fault configuration.
type Fault struct {
	Delay        time.Duration
	DelayPercent uint32 // per million
	HasDelay     bool
	AbortStatus  int
	AbortPercent uint32 // per million
}

// Sample draws whether something enabled for perMillion of requests
// happens to this one.
func Sample(perMillion uint32) bool {
	if perMillion >= 1_000_000 {
		return true
	}
	return perMillion > 0 && rand.Uint32N(1_000_000) < perMillion
}

// perMillion converts a FractionalPercent; unset is 0%, as Envoy's fault
// filter takes it.
func perMillion(p *typev3.FractionalPercent) uint32 {
	if p == nil {
		return 0
	}
	n := uint64(p.GetNumerator())
	switch p.GetDenominator() {
	case typev3.FractionalPercent_HUNDRED:
		n *= 10_000
	case typev3.FractionalPercent_TEN_THOUSAND:
		n *= 100
	}
	return uint32(min(n, 1_000_000))
}

func compileFault(cfg map[string]*anypb.Any) (*Fault, error) {
	a, ok := cfg[wellknown.Fault]
	if !ok {
		return nil, nil
	}
	var hf faultv3.HTTPFault
	if err := a.UnmarshalTo(&hf); err != nil {
		return nil, fmt.Errorf("decode %s per-route config: %w", wellknown.Fault, err)
	}
	f := &Fault{}
	if d := hf.GetDelay(); d != nil {
		if d.GetHeaderDelay() != nil {
			return nil, fmt.Errorf("fault: header-controlled delays are not supported")
		}
		f.HasDelay = true
		f.Delay = d.GetFixedDelay().AsDuration()
		f.DelayPercent = perMillion(d.GetPercentage())
	}
	if ab := hf.GetAbort(); ab != nil {
		switch ab.GetErrorType().(type) {
		case *faultv3.FaultAbort_HttpStatus:
			f.AbortStatus = int(ab.GetHttpStatus())
			f.AbortPercent = perMillion(ab.GetPercentage())
		default:
			return nil, fmt.Errorf("fault: only http_status aborts are supported")
		}
	}
	if !f.HasDelay && f.AbortStatus == 0 {
		return nil, nil
	}
	return f, nil
}

// Mirror is one request_mirror_policy.
type Mirror struct {
	Cluster string
	Percent uint32 // per million
}

func compileMirrors(ms []*routev3.RouteAction_RequestMirrorPolicy) []Mirror {
	var out []Mirror
	for _, m := range ms {
		pct := uint32(1_000_000)
		if rf := m.GetRuntimeFraction(); rf != nil {
			pct = perMillion(rf.GetDefaultValue())
		}
		out = append(out, Mirror{Cluster: m.GetCluster(), Percent: pct})
	}
	return out
}

// ShadowHost is Envoy's mirror authority: the host with "-shadow"
// appended before any port.
func ShadowHost(h string) string {
	name, port := splitHostPort(h)
	if port == "" {
		return h + "-shadow"
	}
	return name + "-shadow:" + port
}

// RegexRewrite is a compiled regex_rewrite.
type RegexRewrite struct {
	re  *regexp.Regexp
	sub string
}

// envoySubst turns RE2/Envoy's \N substitutions into Go's ${N}.
var envoySubst = regexp.MustCompile(`\\([0-9])`)

func compileRegexRewrite(r *routev3.RouteAction) (*RegexRewrite, error) {
	rr := r.GetRegexRewrite()
	if rr == nil {
		return nil, nil
	}
	re, err := regexp.Compile(rr.GetPattern().GetRegex())
	if err != nil {
		return nil, fmt.Errorf("compile regex_rewrite %q: %w", rr.GetPattern().GetRegex(), err)
	}
	return &RegexRewrite{re: re, sub: envoySubst.ReplaceAllString(rr.GetSubstitution(), `$${$1}`)}, nil
}

// Rewrite applies the rewrite to every match in path.
func (r *RegexRewrite) Rewrite(path string) string { return r.re.ReplaceAllString(path, r.sub) }
