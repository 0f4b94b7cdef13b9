package rbac

import (
	"fmt"
	"testing"

	rbacpb "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
)

// benchEngine is an ALLOW filter of n Istio rules, each from its own policy:
// from namespace nsI and principal sa/client-I, to GET or HEAD on /api/vI/*
// or /items/{*}, port 8080. Every rule's permission matches the benchmark
// request, so each rule gets as far as its principals (the namespace regex);
// only the last rule matches. That is the worst case: all n rules run.
func benchEngine(tb testing.TB, n int) *Engine {
	ps := map[string]*rbacpb.Policy{}
	for i := 0; i < n; i++ {
		ps[fmt.Sprintf("ns[foo]-policy[p%03d]-rule[0]", i)] = rule(
			[]*rbacpb.Permission{methods("GET", "HEAD"), paths(fmt.Sprintf("/api/v%d/*", n-1), "/items/{*}"), ports(8080)},
			[]*rbacpb.Principal{namespaces(fmt.Sprintf("ns%d", i)), principals(fmt.Sprintf("cluster.local/ns/ns%d/sa/client-%d", i, i))},
		)
	}
	e, err := Compile(httpFilter(rbacpb.RBAC_ALLOW, ps))
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

func benchRequest(n int) Request {
	r := mtls(fmt.Sprintf("spiffe://cluster.local/ns/ns%d/sa/client-%d", n-1, n-1))
	r.Path = fmt.Sprintf("/api/v%d/orders?page=2", n-1)
	return r
}

func benchAllowed(b *testing.B, n int) {
	e := benchEngine(b, n)
	r := benchRequest(n)
	if d := e.Allowed(&r); !d.Allowed || d.Policy != fmt.Sprintf("ns[foo]-policy[p%03d]-rule[0]", n-1) {
		b.Fatalf("benchmark request: %+v", d)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		e.Allowed(&r)
	}
}

func BenchmarkAllowed10(b *testing.B)  { benchAllowed(b, 10) }
func BenchmarkAllowed100(b *testing.B) { benchAllowed(b, 100) }

// TestAllowedDoesNotAllocate holds the benchmark's goal as a test: no
// allocation per request, with shadow rules and metadata in play.
func TestAllowedDoesNotAllocate(t *testing.T) {
	e := benchEngine(t, 100)
	e.shadow = e.rules
	r := benchRequest(100)
	r.Metadata = jwt(map[string]any{"iss": "i", "sub": "s", "aud": []any{"a"}})
	if a := testing.AllocsPerRun(100, func() { e.Allowed(&r) }); a != 0 {
		t.Errorf("%v allocations per request, want 0", a)
	}
}
