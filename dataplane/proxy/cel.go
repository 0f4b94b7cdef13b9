package proxy

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/textproto"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/google/cel-go/cel"
	celast "github.com/google/cel-go/common/ast"
	celenv "github.com/google/cel-go/common/env"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/overloads"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/interpreter"
)

// CEL as Envoy evaluates it (source/extensions/filters/common/expr):
// an expression is parsed (a parse error refuses the configuration), not
// type-checked, and evaluated against Envoy's attribute vocabulary —
// request, response, source, destination, connection, upstream and xds
// (and Istio's node) — each a map whose entries are computed only when
// the expression reads them. An attribute the proxy does not know, or
// one that has no value for this request (a header not sent, the response
// code of a request that got none, request.path or response.code of a
// TCP connection), is absent, and reading it is an error, as in Envoy:
// the access log filter then does not match and the dimension is
// "unknown".

// celOptions are the CEL features an evaluator enables; Envoy's and
// Istio's differ.
type celOptions struct {
	// comprehensions: the macros that loop (all, exists, exists_one,
	// map, filter).
	comprehensions bool
	// stringConversion is string(x); stringConcat is string + string,
	// listConcat list + list. Neither evaluator has the strings extension
	// (split, join, ...).
	stringConversion, stringConcat, listConcat bool
	// nodeRoot: the proxy's Node is the root "node" too (Istio's stats
	// filter adds it to Envoy's xds.node).
	nodeRoot bool
}

// envoyFilterCEL is Envoy's expression builder for an access log filter
// without cel_config (source/extensions/filters/common/expr/evaluator.cc
// createBuilder): no comprehensions, no string conversion, no string or
// list concatenation (its cel_config may enable the first two).
var envoyFilterCEL = celOptions{}

// istioStatsCEL is Istio's stats filter's builder: the interpreter's
// defaults, which allow all of them.
var istioStatsCEL = celOptions{comprehensions: true, stringConversion: true, stringConcat: true, listConcat: true, nodeRoot: true}

var celEnvs sync.Map // celOptions → *cel.Env

// celEnv is the environment of o: the standard functions and macros, less
// what o disables.
func celEnv(o celOptions) (*cel.Env, error) {
	if e, ok := celEnvs.Load(o); ok {
		return e.(*cel.Env), nil
	}
	sub := celenv.NewLibrarySubset()
	if !o.stringConversion {
		sub.AddExcludedFunctions(celenv.NewFunction(overloads.TypeConvertString))
	}
	opts := []cel.EnvOption{}
	if !o.stringConcat || !o.listConcat {
		// Unchecked, + dispatches on its operands, not on its declared
		// overloads: it is replaced by one that refuses what o disables,
		// at evaluation, as Envoy's runtime finds no overload for it.
		sub.AddExcludedFunctions(celenv.NewFunction(operators.Add))
		opts = append(opts, celAdd(o))
	}
	// The roots, as dyn, for the checker (see compileCELUncached).
	for k, name := range celRootNames {
		if celRootKind(k) != celNode || o.nodeRoot {
			opts = append(opts, cel.Variable(name, cel.DynType))
		}
	}
	// The Node proto, so that node.metadata['CLUSTER_ID'] reads it.
	opts = append(opts, cel.Types(&corev3.Node{}))
	e, err := cel.NewCustomEnv(append(opts, cel.StdLib(cel.StdLibSubset(sub)))...)
	if err != nil {
		return nil, err
	}
	celEnvs.Store(o, e)
	return e, nil
}

// celAdd is the + of o.
func celAdd(o celOptions) cel.EnvOption {
	bin := func(id string, l, r, out *cel.Type) cel.FunctionOpt {
		return cel.Overload(id, []*cel.Type{l, r}, out)
	}
	fns := []cel.FunctionOpt{
		bin(overloads.AddBytes, cel.BytesType, cel.BytesType, cel.BytesType),
		bin(overloads.AddDouble, cel.DoubleType, cel.DoubleType, cel.DoubleType),
		bin(overloads.AddDurationDuration, cel.DurationType, cel.DurationType, cel.DurationType),
		bin(overloads.AddDurationTimestamp, cel.DurationType, cel.TimestampType, cel.TimestampType),
		bin(overloads.AddTimestampDuration, cel.TimestampType, cel.DurationType, cel.TimestampType),
		bin(overloads.AddInt64, cel.IntType, cel.IntType, cel.IntType),
		bin(overloads.AddUint64, cel.UintType, cel.UintType, cel.UintType),
	}
	if o.stringConcat {
		fns = append(fns, bin(overloads.AddString, cel.StringType, cel.StringType, cel.StringType))
	}
	if o.listConcat {
		a := cel.ListType(cel.TypeParamType("A"))
		fns = append(fns, bin(overloads.AddList, a, a, a))
	}
	fns = append(fns, cel.SingletonBinaryBinding(func(l, r ref.Val) ref.Val {
		switch l.(type) {
		case types.String:
			if !o.stringConcat {
				return types.NewErr("no matching overload for '_+_' applied to (string, string): string concatenation is disabled")
			}
		case traits.Lister:
			if !o.listConcat {
				return types.NewErr("no matching overload for '_+_' applied to (list, list): list concatenation is disabled")
			}
		}
		return l.(traits.Adder).Add(r)
	}, traits.AdderType))
	return cel.Function(operators.Add, fns...)
}

// celExpr is a compiled expression and the proxy's Node it reads as
// xds.node (and node).
type celExpr struct {
	src  string
	prg  cel.Program
	o    celOptions
	node ref.Val
}

// compileCEL parses expr and plans its evaluation, once per
// configuration. What Envoy's builder refuses is the configuration's
// error: a parse error, a comprehension where o disables them, a call of
// a function o does not have. Nothing is type-checked, as in Envoy.
func compileCEL(expr string, o celOptions, node *corev3.Node) (*celExpr, error) {
	k := celKey{expr, o}
	celCache.mu.Lock()
	c := celCache.m[k]
	celCache.mu.Unlock()
	if c == nil {
		var err error
		if c, err = compileCELUncached(expr, o); err != nil {
			return nil, err
		}
		celCache.mu.Lock()
		if len(celCache.m) >= maxCELCache {
			clear(celCache.m)
		}
		celCache.m[k] = c
		celCache.mu.Unlock()
	}
	if node == nil {
		return c, nil
	}
	env, err := celEnv(o)
	if err != nil {
		return nil, fmt.Errorf("CEL environment: %w", err)
	}
	withNode := *c
	withNode.node = env.CELTypeAdapter().NativeToValue(node)
	return &withNode, nil
}

// celCache keeps the compiled expressions across builds: a listener
// update recompiles every access log and stats filter of the listener,
// and compiling costs ~150µs an expression where a lookup costs nothing
// (a program is immutable and safe for concurrent evaluation).
var celCache = struct {
	mu sync.Mutex
	m  map[celKey]*celExpr
}{m: map[celKey]*celExpr{}}

// maxCELCache bounds the cache; past it, it starts over.
const maxCELCache = 1024

type celKey struct {
	expr string
	o    celOptions
}

func compileCELUncached(expr string, o celOptions) (*celExpr, error) {
	env, err := celEnv(o)
	if err != nil {
		return nil, fmt.Errorf("CEL environment: %w", err)
	}
	parsed, iss := env.Parse(expr)
	if iss.Err() != nil {
		return nil, fmt.Errorf("CEL expression %q: %w", expr, iss.Err())
	}
	fns := env.Functions()
	var bad error
	celast.PostOrderVisit(parsed.NativeRep().Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		if bad != nil {
			return
		}
		switch e.Kind() {
		case celast.ComprehensionKind:
			if !o.comprehensions {
				bad = fmt.Errorf("comprehensions (all, exists, map, filter) are disabled in this CEL evaluator, as in Envoy's")
			}
		case celast.CallKind:
			if name := e.AsCall().FunctionName(); fns[name] == nil {
				bad = fmt.Errorf("no function %s", name)
			}
		}
	}))
	if bad != nil {
		return nil, fmt.Errorf("CEL expression %q: %w", expr, bad)
	}
	// Envoy does not type-check. An expression the checker takes (with
	// every root dyn) is planned from its checked form, which reads
	// request.url_path as root and key, no more; one it does not (1 +
	// 'a', an unknown root) runs unchecked and fails as it runs, as in
	// Envoy.
	ast := parsed
	if checked, iss := env.Check(parsed); iss.Err() == nil {
		ast = checked
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, fmt.Errorf("CEL expression %q: %w", expr, err)
	}
	return &celExpr{src: expr, prg: prg, o: o}, nil
}

// eval evaluates c for the request or connection of e and hands the
// result to f while the activation is still valid (values such as
// request.headers point into it). A nil or error value is an error.
func (c *celExpr) eval(e *logEntry, f func(ref.Val)) {
	v := celVarsPool.Get().(*celVars)
	// A copy, so that e itself need not live on the heap.
	v.e = *e
	v.node, v.nodeRoot = c.node, c.o.nodeRoot
	out, _, err := c.prg.Eval(v)
	if err != nil || out == nil || types.IsError(out) || types.IsUnknown(out) {
		out = nil
	}
	f(out)
	v.e = logEntry{}
	v.node = nil
	v.reqH = celHeaders{}
	v.respH = celHeaders{}
	celVarsPool.Put(v)
}

// matches is the access log filter's verdict: true only for a true
// bool; an error or any other value is false (Envoy's
// CELAccessLogExtensionFilter::evaluate).
func (c *celExpr) matches(e *logEntry) bool {
	ok := false
	c.eval(e, func(v ref.Val) {
		b, isBool := v.(types.Bool)
		ok = isBool && bool(b)
	})
	return ok
}

// label is the dimension's value as Istio's stats filter prints it
// (Envoy's Filters::Common::Expr::print); "" on an error, which the
// metrics turn into "unknown" as Istio does.
func (c *celExpr) label(e *logEntry) string {
	s := ""
	c.eval(e, func(v ref.Val) {
		if v != nil {
			s = celPrint(v)
		}
	})
	return s
}

// celPrint is Envoy's print(CelValue).
func celPrint(v ref.Val) string {
	switch x := v.(type) {
	case types.Bool:
		return strconv.FormatBool(bool(x))
	case types.Int:
		return strconv.FormatInt(int64(x), 10)
	case types.Uint:
		return strconv.FormatUint(uint64(x), 10)
	case types.Double:
		// absl::StrCat of a double: six significant digits.
		return strconv.FormatFloat(float64(x), 'g', 6, 64)
	case types.String:
		return string(x)
	case types.Bytes:
		return string(x)
	case types.Duration:
		return abslDuration(x.Duration)
	case types.Timestamp:
		return x.UTC().Format("2006-01-02T15:04:05.999999999-07:00")
	case types.Null:
		return "NULL"
	}
	switch v.Type() {
	case types.MapType:
		return "map value"
	case types.ListType:
		return "list value"
	}
	return v.Type().TypeName() + " value"
}

// abslDuration is absl::FormatDuration: Go's form without its zero
// units ("1h", not "1h0m0s"), "us" for microseconds, "0" for zero.
func abslDuration(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	s := strings.Replace(d.String(), "µs", "us", 1)
	if d.Abs() < time.Second {
		return s
	}
	if h, rest, ok := strings.Cut(s, "h"); ok && strings.HasPrefix(rest, "0m") {
		s = h + "h" + rest[2:]
	}
	if strings.HasSuffix(s, "m0s") || strings.HasSuffix(s, "h0s") {
		s = s[:len(s)-2]
	}
	return s
}

// celRootKind is one of Envoy's top-level attribute names.
type celRootKind uint8

const (
	celRequest celRootKind = iota
	celResponse
	celSource
	celDestination
	celConnection
	celUpstream
	celXDS
	celNode
	numCELRoots
)

var celRootNames = [numCELRoots]string{"request", "response", "source", "destination", "connection", "upstream", "xds", "node"}

func celRootOf(name string) (celRootKind, bool) {
	switch name {
	case "request":
		return celRequest, true
	case "response":
		return celResponse, true
	case "source":
		return celSource, true
	case "destination":
		return celDestination, true
	case "connection":
		return celConnection, true
	case "upstream":
		return celUpstream, true
	case "xds":
		return celXDS, true
	case "node":
		return celNode, true
	}
	return 0, false
}

// celVars is the activation of one evaluation: the request's or
// connection's log entry, and the maps the expression may read, kept
// here (and the whole pooled) so that handing them to CEL allocates
// nothing.
type celVars struct {
	e logEntry
	// node is the proxy's Node as a CEL message (nil: none); nodeRoot
	// makes it the root "node" too.
	node     ref.Val
	nodeRoot bool
	roots    [numCELRoots]celRoot
	reqH     celHeaders
	respH    celHeaders
}

var celVarsPool = sync.Pool{New: func() any {
	v := &celVars{}
	for i := range v.roots {
		v.roots[i] = celRoot{v: v, kind: celRootKind(i)}
	}
	return v
}}

// ResolveName is the activation's lookup: the roots only, so an
// attribute is always a map lookup, whose failure is "no such key" as
// Envoy's. (Unchecked, cel-go asks for "request.url_path" first; to
// answer it would make has(request.url_path) the value, not true.)
func (v *celVars) ResolveName(name string) (any, bool) {
	k, ok := celRootOf(name)
	if !ok {
		return nil, false
	}
	if k == celNode {
		if !v.nodeRoot || v.node == nil {
			return nil, false
		}
		return v.node, true
	}
	return &v.roots[k], true
}

func (v *celVars) Parent() interpreter.Activation { return nil }

// attr is attribute root.field of the entry; false when it has none.
func (v *celVars) attr(root celRootKind, field string) (ref.Val, bool) {
	e := &v.e
	switch root {
	case celRequest:
		return v.requestAttr(field)
	case celResponse:
		return v.responseAttr(field)
	case celSource:
		return addrAttr(e.ci.remote.String(), field)
	case celDestination:
		if e.ci.orig.IsValid() {
			return addrAttr(e.ci.orig.String(), field)
		}
		return addrAttr(e.ci.local.String(), field)
	case celConnection:
		return connectionAttr(e.ci, field)
	case celUpstream:
		return upstreamAttr(e, field)
	case celXDS:
		if field == "node" && v.node != nil {
			return v.node, true
		}
		return xdsAttr(e, field)
	}
	return nil, false
}

func (v *celVars) requestAttr(field string) (ref.Val, bool) {
	e := &v.e
	// What a TCP connection has too (Envoy's RequestWrapper reads them
	// from the stream info, not the headers).
	switch field {
	case "time":
		return types.Timestamp{Time: e.start}, true
	case "duration":
		return types.Duration{Duration: time.Since(e.start)}, true
	case "size":
		if e.r == nil {
			return types.Int(e.received), true
		}
		return types.Int(max(e.r.ContentLength, 0)), true
	case "total_size":
		if e.r == nil {
			return types.Int(e.received), true
		}
		return types.Int(requestSize(e.r)), true
	}
	r := e.r
	if r == nil {
		return nil, false
	}
	switch field {
	case "path":
		return types.String(r.RequestURI), true
	case "url_path":
		p, _, _ := strings.Cut(r.RequestURI, "?")
		return types.String(p), true
	case "query":
		_, q, _ := strings.Cut(r.RequestURI, "?")
		return types.String(q), true
	case "host":
		return types.String(r.Host), true
	case "scheme":
		return types.String(requestScheme(r, e.ci)), true
	case "method":
		return types.String(r.Method), true
	case "headers":
		v.reqH.h, v.reqH.r, v.reqH.ci = r.Header, r, e.ci
		return &v.reqH, true
	case "referer":
		return headerAttr(r.Header, "Referer")
	case "useragent":
		return headerAttr(r.Header, "User-Agent")
	case "id":
		return headerAttr(r.Header, "X-Request-Id")
	case "protocol":
		return types.String(requestProtocol(r)), true
	}
	return nil, false
}

func requestScheme(r *http.Request, ci *connInfo) string {
	if r.TLS != nil || (ci != nil && ci.id != nil) {
		return "https"
	}
	return "http"
}

// requestProtocol is Envoy's protocol name: HTTP/1.0, HTTP/1.1, HTTP/2.
func requestProtocol(r *http.Request) string {
	if r.ProtoMajor == 2 {
		return "HTTP/2"
	}
	return r.Proto
}

func (v *celVars) responseAttr(field string) (ref.Val, bool) {
	e := &v.e
	ex := e.ex
	if ex == nil {
		// A TCP connection: no response, but its flags and the bytes sent.
		switch field {
		case "flags":
			return types.Int(envoyFlagBits(parseFlags(e.flags))), true
		case "size", "total_size":
			return types.Int(e.sent), true
		}
		return nil, false
	}
	switch field {
	case "code":
		if ex.status == 0 {
			return nil, false
		}
		return types.Int(ex.status), true
	case "code_details":
		d := ex.details
		if d == "" && ex.status != 0 {
			d = "via_upstream"
		}
		if d == "" {
			return nil, false
		}
		return types.String(d), true
	case "flags":
		return types.Int(envoyFlagBits(ex.flags)), true
	case "grpc_status":
		if s := first(ex.Header()["Grpc-Status"]); s != "" {
			if n, err := strconv.Atoi(s); err == nil {
				return types.Int(n), true
			}
		}
		return nil, false
	case "headers":
		v.respH.h = ex.Header()
		return &v.respH, true
	case "trailers":
		// The proxy keeps no response trailers apart: an empty map, as
		// Envoy's for a response without any.
		v.respH.h = nil
		return &v.respH, true
	case "size":
		return types.Int(ex.bytes), true
	case "total_size":
		return types.Int(responseSize(ex)), true
	}
	return nil, false
}

// addrAttr is source.* or destination.*: address is ip:port.
func addrAttr(addr, field string) (ref.Val, bool) {
	switch field {
	case "address":
		return types.String(addr), true
	case "port":
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, false
		}
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, false
		}
		return types.Int(n), true
	}
	return nil, false
}

func connectionAttr(ci *connInfo, field string) (ref.Val, bool) {
	switch field {
	case "mtls":
		return types.Bool(ci.id.mutualTLS()), true
	case "requested_server_name":
		return types.String(ci.sni), true
	}
	id := ci.id
	if id == nil {
		// Envoy: the TLS attributes of a plaintext connection are absent.
		return nil, false
	}
	switch field {
	case "tls_version":
		return types.String(id.version), true
	case "subject_peer_certificate":
		return types.String(id.subject), true
	case "uri_san_peer_certificate":
		return firstAttr(id.uriSANs)
	case "dns_san_peer_certificate":
		return firstAttr(id.dnsSANs)
	case "uri_san_local_certificate":
		if id.localURI == "" {
			return nil, false
		}
		return types.String(id.localURI), true
	case "sha256_peer_certificate_digest":
		if id.hash == "" {
			return nil, false
		}
		return types.String(id.hash), true
	}
	return nil, false
}

func upstreamAttr(e *logEntry, field string) (ref.Val, bool) {
	ep := e.ep
	var cs *tls.ConnectionState
	if e.ex != nil {
		ep, cs = e.ex.endpoint, e.ex.upTLS
		if field == "transport_failure_reason" && e.ex.transportFailure != "" {
			return types.String(e.ex.transportFailure), true
		}
	}
	switch field {
	case "address", "port":
		if ep == nil {
			return nil, false
		}
		return addrAttr(ep.Addr, field)
	}
	if cs == nil {
		return nil, false
	}
	switch field {
	case "tls_version":
		return types.String(tlsVersionName(cs.Version)), true
	}
	if len(cs.PeerCertificates) == 0 {
		return nil, false
	}
	c := cs.PeerCertificates[0]
	switch field {
	case "subject_peer_certificate":
		return types.String(c.Subject.String()), true
	case "uri_san_peer_certificate":
		if len(c.URIs) == 0 {
			return nil, false
		}
		return types.String(c.URIs[0].String()), true
	case "dns_san_peer_certificate":
		return firstAttr(c.DNSNames)
	case "sha256_peer_certificate_digest":
		sum := sha256.Sum256(c.Raw)
		return types.String(hex.EncodeToString(sum[:])), true
	}
	return nil, false
}

func xdsAttr(e *logEntry, field string) (ref.Val, bool) {
	switch field {
	case "cluster_name":
		name := e.cluster
		if e.ex != nil {
			name = ""
			if e.ex.cluster != nil {
				name = e.ex.cluster.Name
			}
		}
		if name == "" {
			return nil, false
		}
		return types.String(name), true
	case "route_name":
		if e.ex == nil || e.ex.route == nil {
			return nil, false
		}
		return types.String(e.ex.route.Name), true
	case "listener_direction":
		// envoy.config.core.v3.TrafficDirection: INBOUND 1, OUTBOUND 2.
		if e.ci.inbound {
			return types.Int(1), true
		}
		return types.Int(2), true
	case "filter_chain_name":
		if e.ci.chain == nil {
			return nil, false
		}
		return types.String(e.ci.chain.name), true
	}
	return nil, false
}

func firstAttr(vs []string) (ref.Val, bool) {
	if len(vs) == 0 {
		return nil, false
	}
	return types.String(vs[0]), true
}

// headerAttr is a header's value, several joined with "," as Envoy
// joins them; absent when the header was not sent.
func headerAttr(h http.Header, key string) (ref.Val, bool) {
	vs := h[key]
	switch len(vs) {
	case 0:
		return nil, false
	case 1:
		return types.String(vs[0]), true
	}
	return types.String(strings.Join(vs, ",")), true
}

// envoyFlagBits are the flags as Envoy's legacy ResponseFlag bit set,
// the value of response.flags.
func envoyFlagBits(f responseFlags) int64 {
	var bits int64
	for i, b := range envoyFlagBit {
		if f&(1<<i) != 0 {
			bits |= b
		}
	}
	return bits
}

// envoyFlagBit is Envoy's bit of each of flagNames.
var envoyFlagBit = [len(flagNames)]int64{
	0x2,      // UH NoHealthyUpstream
	0x4,      // UT UpstreamRequestTimeout
	0x20,     // UF UpstreamConnectionFailure
	0x40,     // UC UpstreamConnectionTermination
	0x100,    // NR NoRouteFound
	0x200,    // DI DelayInjected
	0x400,    // FI FaultInjected
	0x4000,   // DC DownstreamConnectionTermination
	0x8000,   // URX UpstreamRetryLimitExceeded
	0x80,     // UO UpstreamOverflow
	0x800000, // UPE UpstreamProtocolError
	0x40000,  // DPE DownstreamProtocolError
	0x10000,  // SI StreamIdleTimeout
	0x1000,   // UAEX UnauthorizedExternalService
}

// parseFlags reads a TCP connection's flags string (e.g. "UF").
func parseFlags(s string) responseFlags {
	var f responseFlags
	for n := range strings.SplitSeq(s, ",") {
		for i, name := range flagNames {
			if n == name {
				f |= 1 << i
			}
		}
	}
	return f
}

// celRoot is one top-level attribute map, computed as it is read.
type celRoot struct {
	v    *celVars
	kind celRootKind
}

func (m *celRoot) Find(key ref.Val) (ref.Val, bool) {
	s, ok := key.(types.String)
	if !ok {
		return nil, false
	}
	return m.v.attr(m.kind, string(s))
}

func (m *celRoot) Get(key ref.Val) ref.Val          { return mapGet(m, key) }
func (m *celRoot) Contains(key ref.Val) ref.Val     { return mapContains(m, key) }
func (m *celRoot) Iterator() traits.Iterator        { return emptyIterator() }
func (m *celRoot) Size() ref.Val                    { return types.Int(0) }
func (m *celRoot) Type() ref.Type                   { return types.MapType }
func (m *celRoot) Value() any                       { return m }
func (m *celRoot) Equal(o ref.Val) ref.Val          { return types.Bool(o == ref.Val(m)) }
func (m *celRoot) ConvertToType(t ref.Type) ref.Val { return convertMap(m, t) }
func (m *celRoot) ConvertToNative(t reflect.Type) (any, error) {
	return nil, fmt.Errorf("CEL attribute map: no conversion to %v", t)
}

// celHeaders is request.headers or response.headers: lookups are by
// lower-case name, as Envoy's header map, and a request's pseudo
// headers are there too.
type celHeaders struct {
	h  http.Header
	r  *http.Request
	ci *connInfo
}

func (m *celHeaders) Find(key ref.Val) (ref.Val, bool) {
	s, ok := key.(types.String)
	if !ok {
		return nil, false
	}
	name := string(s)
	if m.r != nil && strings.HasPrefix(name, ":") {
		switch strings.ToLower(name) {
		case ":method":
			return types.String(m.r.Method), true
		case ":path":
			return types.String(m.r.RequestURI), true
		case ":authority":
			return types.String(m.r.Host), true
		case ":scheme":
			return types.String(requestScheme(m.r, m.ci)), true
		}
		return nil, false
	}
	if m.r != nil && strings.EqualFold(name, "host") {
		// Envoy's HTTP/1 codec turns Host into :authority; Go keeps it apart.
		return nil, false
	}
	return headerAttr(m.h, textproto.CanonicalMIMEHeaderKey(name))
}

func (m *celHeaders) Get(key ref.Val) ref.Val      { return mapGet(m, key) }
func (m *celHeaders) Contains(key ref.Val) ref.Val { return mapContains(m, key) }
func (m *celHeaders) Iterator() traits.Iterator    { return emptyIterator() }
func (m *celHeaders) Size() ref.Val                { return types.Int(len(m.h)) }
func (m *celHeaders) Type() ref.Type               { return types.MapType }
func (m *celHeaders) Value() any                   { return m }
func (m *celHeaders) Equal(o ref.Val) ref.Val      { return types.Bool(o == ref.Val(m)) }
func (m *celHeaders) ConvertToType(t ref.Type) ref.Val {
	return convertMap(m, t)
}
func (m *celHeaders) ConvertToNative(t reflect.Type) (any, error) {
	return nil, fmt.Errorf("CEL header map: no conversion to %v", t)
}

type finder interface {
	Find(ref.Val) (ref.Val, bool)
}

func mapGet(m finder, key ref.Val) ref.Val {
	if v, ok := m.Find(key); ok {
		return v
	}
	return types.NewErr("no such key: %v", key)
}

func mapContains(m finder, key ref.Val) ref.Val {
	_, ok := m.Find(key)
	return types.Bool(ok)
}

func convertMap(m ref.Val, t ref.Type) ref.Val {
	if t == types.TypeType {
		return types.MapType
	}
	if t == types.MapType {
		return m
	}
	return types.NewErr("type conversion error from map to '%s'", t)
}

// emptyIterator: Envoy's attribute maps list no keys either.
func emptyIterator() traits.Iterator {
	return types.NewStringList(types.DefaultTypeAdapter, nil).Iterator()
}
