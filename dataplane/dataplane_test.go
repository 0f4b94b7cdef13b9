package dataplane

import (
	"context"
	"net"
	"testing"
	"time"
)

func TestWorkloadName(t *testing.T) {
	for pod, want := range map[string]string{
		"reviews-v1-7f9c8d6b5d-x2k4p": "reviews-v1",
		"ratings-0":                   "ratings",
		"productpage":                 "productpage",
		"istio-ingressgateway-0":      "istio-ingressgateway",
	} {
		if got := workloadName(pod); got != want {
			t.Errorf("workloadName(%q) = %q, want %q", pod, got, want)
		}
	}
}

func TestNode(t *testing.T) {
	n, err := Options{NodeID: "sidecar~1.2.3.4~a.b~b.svc.cluster.local", Metadata: map[string]string{"NAMESPACE": "b"}, Labels: map[string]string{"app": "a"}}.Node()
	if err != nil {
		t.Fatal(err)
	}
	f := n.GetMetadata().GetFields()
	if f["NAMESPACE"].GetStringValue() != "b" || f["LABELS"].GetStructValue().GetFields()["app"].GetStringValue() != "a" {
		t.Errorf("metadata = %v", n.GetMetadata())
	}
	if b := f["PROXY_BOOT_ID"].GetStringValue(); len(b) != 16 {
		t.Errorf("PROXY_BOOT_ID = %q, want 16 hex digits", b)
	}
	if _, ok := f["PROXY_CONFIG"]; ok {
		t.Errorf("PROXY_CONFIG sent without one: %v", f["PROXY_CONFIG"])
	}

	// The pod's ProxyConfig goes as an object, as Istio's agent sends it.
	n, err = Options{NodeID: "sidecar~1.2.3.4~a.b~b.svc.cluster.local", ProxyConfig: `{"tracing":{"sampling":50}}`}.Node()
	if err != nil {
		t.Fatal(err)
	}
	pc := n.GetMetadata().GetFields()["PROXY_CONFIG"].GetStructValue()
	if got := pc.GetFields()["tracing"].GetStructValue().GetFields()["sampling"].GetNumberValue(); got != 50 {
		t.Errorf("PROXY_CONFIG = %v, want tracing.sampling 50", pc)
	}
}

// TestRunStops runs the whole proxy against a control plane that is not
// there (it keeps retrying) and checks that it shuts down when asked.
func TestRunStops(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Mode: ModeSidecar, NodeID: "sidecar~127.0.0.1~p.ns~ns.svc.cluster.local", DiscoveryAddress: addr, XDSPlaintext: true,
			AdminAddr: "127.0.0.1:0", ReadyAddr: "127.0.0.1:0", StatsAddr: "-", DNSAddr: "127.0.0.1:0", StatusAddr: "127.0.0.1:0", DrainTimeout: time.Second})
	}()
	time.Sleep(100 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v, want nil after cancel", err)
	}
}
