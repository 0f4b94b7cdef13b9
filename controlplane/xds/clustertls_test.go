package xds

import (
	"strings"
	"testing"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
)

// TestIstioMutualSocketBytes checks the shortcut istioMutualSocket takes:
// the cached encoding with the SNI appended is the message
// istioMutualUpstream builds with that SNI, byte for byte, so proxies
// and config dumps see exactly Istio's context.
func TestIstioMutualSocketBytes(t *testing.T) {
	x := newIndex(Input{})
	for _, tt := range []struct {
		sni  string
		sans []string
		h2   bool
	}{
		{"outbound_.9080_._.reviews.default.svc.cluster.local", []string{"spiffe://cluster.local/ns/default/sa/reviews"}, false},
		{"outbound_.9080_.v1_.reviews.default.svc.cluster.local", []string{"spiffe://cluster.local/ns/default/sa/reviews"}, false},
		{"custom", nil, true},
		{"", []string{"a", "spiffe://cluster.local/ns/a/sa/b"}, false},
	} {
		got := x.istioMutualSocket(istioTLSKey{sans: strings.Join(tt.sans, "\n"), h2: tt.h2}, tt.sni, tt.sans).GetTypedConfig()
		want, err := proto.Marshal(istioMutualUpstream(tt.sni, tt.sans, tt.h2))
		if err != nil {
			t.Fatal(err)
		}
		if string(got.GetValue()) != string(want) {
			t.Errorf("sni %q: cached encoding differs from the whole message's", tt.sni)
		}
		var ctx tlsv3.UpstreamTlsContext
		if err := got.UnmarshalTo(&ctx); err != nil || ctx.GetSni() != tt.sni {
			t.Errorf("sni %q: decodes to sni %q (%v)", tt.sni, ctx.GetSni(), err)
		}
	}
}
