package xds

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// A gateway that subscribes over ADS to the secrets its listeners name
// (as Envoy does for SDS configs with `ads: {}`) gets them, only from its
// own namespace, and a changed secret comes with the next version.
func TestServerSDS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(nil)
	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- s.Serve(serveCtx, lis) }()
	defer func() { stop(); <-served }()

	in, proxies := loadFixture(t, "testdata/cases/gateway-tls.json")
	if err := s.Update(ctx, in, "1.0"); err != nil {
		t.Fatal(err)
	}
	c := newADSClient(ctx, t, lis.Addr().String(), proxies["gateway"])
	c.until(s)
	p, err := ParseNodeID(proxies["gateway"])
	if err != nil {
		t.Fatal(err)
	}
	res, err := Build(in, p)
	if err != nil {
		t.Fatal(err)
	}
	names := sdsNames(res[resource.ListenerType])
	want := []string{"kubernetes://cred-cert", "kubernetes://cred-cert-cacert", "kubernetes://merged-cert"}
	if !slices.Equal(names, want) {
		t.Fatalf("listeners name secrets %q, want %q", names, want)
	}
	c.types[resource.SecretType] = &clientType{}
	c.subscribe(resource.SecretType, names)
	c.until(s)
	for _, n := range want {
		if !c.types[resource.SecretType].resources[n] {
			t.Errorf("secret %s not served; got %v", n, c.types[resource.SecretType].resources)
		}
	}

	in.Secrets[0].Cert = []byte("rotated")
	if err := s.Update(ctx, in, "1.1"); err != nil {
		t.Fatal(err)
	}
	c.until(s)
	if err := s.WaitSynced(ctx, "1.1"); err != nil {
		t.Fatal(err)
	}
}
