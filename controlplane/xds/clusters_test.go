package xds

import (
	"math"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
)

func policy(t *testing.T, js string) *networking.TrafficPolicy {
	t.Helper()
	if js == "" {
		return nil
	}
	var tp networking.TrafficPolicy
	if err := protojson.Unmarshal([]byte(js), &tp); err != nil {
		t.Fatalf("parse %s: %v", js, err)
	}
	return &tp
}

// TestMergeSubsetTrafficPolicy follows Istio's MergeSubsetTrafficPolicy:
// subset fields override the rule's one by one; a port-level entry
// replaces the policy it sits in wholesale.
func TestMergeSubsetTrafficPolicy(t *testing.T) {
	const (
		top      = `{"loadBalancer": {"simple": "RANDOM"}, "connectionPool": {"tcp": {"maxConnections": 7}}, "portLevelSettings": [{"port": {"number": 9080}, "outlierDetection": {"consecutive5xxErrors": 9}}]}`
		subsetLB = `{"loadBalancer": {"simple": "ROUND_ROBIN"}}`
		subsetPL = `{"connectionPool": {"tcp": {"maxConnections": 1}}, "portLevelSettings": [{"port": {"number": 9080}, "loadBalancer": {"simple": "LEAST_REQUEST"}}]}`
	)
	tests := []struct {
		name        string
		top, subset string
		port        uint32
		want        string
	}{
		{"no policies", "", "", 9080, ""},
		{"rule only", top, "", 9091, `{"loadBalancer": {"simple": "RANDOM"}, "connectionPool": {"tcp": {"maxConnections": 7}}, "portLevelSettings": [{"port": {"number": 9080}, "outlierDetection": {"consecutive5xxErrors": 9}}]}`},
		{"rule port level replaces the rule", top, "", 9080, `{"outlierDetection": {"consecutive5xxErrors": 9}}`},
		{"subset only", "", subsetLB, 9080, subsetLB},
		{"subset overrides one field", top, subsetLB, 9091, `{"loadBalancer": {"simple": "ROUND_ROBIN"}, "connectionPool": {"tcp": {"maxConnections": 7}}}`},
		{"subset over rule port level", top, subsetLB, 9080, `{"loadBalancer": {"simple": "ROUND_ROBIN"}, "outlierDetection": {"consecutive5xxErrors": 9}}`},
		{"subset port level replaces all", top, subsetPL, 9080, `{"loadBalancer": {"simple": "LEAST_REQUEST"}}`},
		{"subset port level elsewhere", top, subsetPL, 9091, `{"loadBalancer": {"simple": "RANDOM"}, "connectionPool": {"tcp": {"maxConnections": 1}}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := mergeSubsetTrafficPolicy(policy(t, tc.top), policy(t, tc.subset), tc.port)
			if want := policy(t, tc.want); !proto.Equal(got, want) {
				t.Errorf("merged %v, want %v", got, want)
			}
		})
	}
}

func TestApplyTrafficPolicy(t *testing.T) {
	tests := []struct {
		name   string
		policy string
		check  func(t *testing.T, c *clusterv3.Cluster)
	}{
		{"istio defaults", "", func(t *testing.T, c *clusterv3.Cluster) {
			th := c.GetCircuitBreakers().GetThresholds()[0]
			if c.GetLbPolicy() != clusterv3.Cluster_LEAST_REQUEST || th.GetMaxConnections().GetValue() != math.MaxUint32 || th.GetMaxRetries().GetValue() != math.MaxUint32 || !th.GetTrackRemaining() {
				t.Errorf("want LEAST_REQUEST and unlimited thresholds, got %v %v", c.GetLbPolicy(), th)
			}
			if c.GetOutlierDetection() != nil || c.GetCommonLbConfig() != nil || c.GetTypedExtensionProtocolOptions() != nil {
				t.Error("want no outlier detection, common lb config or protocol options")
			}
		}},
		{"connection pool", `{"connectionPool": {"tcp": {"maxConnections": 1, "connectTimeout": "1s", "tcpKeepalive": {"time": "60s"}}, "http": {"http1MaxPendingRequests": 2, "http2MaxRequests": 3, "maxRetries": 4, "maxRequestsPerConnection": 5, "idleTimeout": "6s"}}}`,
			func(t *testing.T, c *clusterv3.Cluster) {
				th := c.GetCircuitBreakers().GetThresholds()[0]
				if th.GetMaxConnections().GetValue() != 1 || th.GetMaxPendingRequests().GetValue() != 2 || th.GetMaxRequests().GetValue() != 3 || th.GetMaxRetries().GetValue() != 4 {
					t.Errorf("thresholds %v", th)
				}
				if c.GetConnectTimeout().AsDuration().Seconds() != 1 || c.GetUpstreamConnectionOptions().GetTcpKeepalive().GetKeepaliveTime().GetValue() != 60 {
					t.Errorf("connect timeout %v, keepalive %v", c.GetConnectTimeout(), c.GetUpstreamConnectionOptions())
				}
				var o httpv3.HttpProtocolOptions
				if err := c.GetTypedExtensionProtocolOptions()[httpProtocolOptionsKey].UnmarshalTo(&o); err != nil {
					t.Fatal(err)
				}
				// Envoy validates the options when it loads them: the
				// upstream protocol is required.
				if err := o.Validate(); err != nil {
					t.Errorf("http protocol options invalid: %v", err)
				}
				if o.GetCommonHttpProtocolOptions().GetMaxRequestsPerConnection().GetValue() != 5 || o.GetCommonHttpProtocolOptions().GetIdleTimeout().AsDuration().Seconds() != 6 {
					t.Errorf("common options %v", o.GetCommonHttpProtocolOptions())
				}
			}},
		{"max connection duration, tcp idle timeout", `{"connectionPool": {"tcp": {"maxConnectionDuration": "30s", "idleTimeout": "7s"}}}`,
			func(t *testing.T, c *clusterv3.Cluster) {
				o := protocolOptions(t, c)
				if o.GetCommonHttpProtocolOptions().GetMaxConnectionDuration().AsDuration().Seconds() != 30 || o.GetCommonHttpProtocolOptions().GetIdleTimeout().AsDuration().Seconds() != 7 {
					t.Errorf("common options %v", o.GetCommonHttpProtocolOptions())
				}
				if o.GetExplicitHttpConfig().GetHttpProtocolOptions() == nil {
					t.Errorf("want explicit HTTP/1.1, got %v", o.GetUpstreamProtocolOptions())
				}
			}},
		{"h2 upgrade", `{"connectionPool": {"http": {"h2UpgradePolicy": "UPGRADE"}}}`,
			func(t *testing.T, c *clusterv3.Cluster) {
				if o := protocolOptions(t, c); o.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil || o.GetCommonHttpProtocolOptions() != nil {
					t.Errorf("want explicit HTTP/2 alone, got %v", o)
				}
			}},
		{"h2 do not upgrade", `{"connectionPool": {"http": {"h2UpgradePolicy": "DO_NOT_UPGRADE"}}}`,
			func(t *testing.T, c *clusterv3.Cluster) {
				if c.GetTypedExtensionProtocolOptions() != nil {
					t.Errorf("want no protocol options, got %v", c.GetTypedExtensionProtocolOptions())
				}
			}},
		{"use client protocol", `{"connectionPool": {"http": {"useClientProtocol": true, "idleTimeout": "5s"}}}`,
			func(t *testing.T, c *clusterv3.Cluster) {
				o := protocolOptions(t, c)
				d := o.GetUseDownstreamProtocolConfig()
				if d.GetHttpProtocolOptions() == nil || d.GetHttp2ProtocolOptions() == nil || o.GetCommonHttpProtocolOptions().GetIdleTimeout().AsDuration().Seconds() != 5 {
					t.Errorf("want use_downstream_protocol_config with idle timeout, got %v", o)
				}
			}},
		{"h2 upgrade wins over client protocol", `{"connectionPool": {"http": {"useClientProtocol": true, "h2UpgradePolicy": "UPGRADE"}}}`,
			func(t *testing.T, c *clusterv3.Cluster) {
				if o := protocolOptions(t, c); o.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
					t.Errorf("want explicit HTTP/2, got %v", o)
				}
			}},
		{"outlier detection", `{"outlierDetection": {"consecutive5xxErrors": 1, "interval": "10s", "baseEjectionTime": "60s", "maxEjectionPercent": 100}}`,
			func(t *testing.T, c *clusterv3.Cluster) {
				od := c.GetOutlierDetection()
				if od.GetConsecutive_5Xx().GetValue() != 1 || od.GetEnforcingConsecutive_5Xx().GetValue() != 100 || od.GetEnforcingSuccessRate() == nil || od.GetEnforcingSuccessRate().GetValue() != 0 ||
					od.GetMaxEjectionPercent().GetValue() != 100 || od.GetConsecutiveGatewayFailure() != nil {
					t.Errorf("outlier detection %v", od)
				}
				if p := c.GetCommonLbConfig().GetHealthyPanicThreshold(); p == nil || p.GetValue() != 0 {
					t.Errorf("panic threshold %v, want 0 (off)", p)
				}
			}},
		{"passthrough", `{"loadBalancer": {"simple": "PASSTHROUGH"}}`, func(t *testing.T, c *clusterv3.Cluster) {
			if c.GetType() != clusterv3.Cluster_ORIGINAL_DST || c.GetLbPolicy() != clusterv3.Cluster_CLUSTER_PROVIDED || c.GetEdsClusterConfig() != nil {
				t.Errorf("want an ORIGINAL_DST cluster, got %v", c)
			}
		}},
		{"ring hash default size", `{"loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}}}`, func(t *testing.T, c *clusterv3.Cluster) {
			if c.GetLbPolicy() != clusterv3.Cluster_RING_HASH || c.GetRingHashLbConfig().GetMinimumRingSize().GetValue() != 1024 {
				t.Errorf("want RING_HASH with 1024, got %v %v", c.GetLbPolicy(), c.GetRingHashLbConfig())
			}
		}},
		{"maglev", `{"loadBalancer": {"consistentHash": {"useSourceIp": true, "maglev": {"tableSize": 1021}}}}`, func(t *testing.T, c *clusterv3.Cluster) {
			if c.GetLbPolicy() != clusterv3.Cluster_MAGLEV || c.GetMaglevLbConfig().GetTableSize().GetValue() != 1021 {
				t.Errorf("want MAGLEV 1021, got %v %v", c.GetLbPolicy(), c.GetMaglevLbConfig())
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := edsCluster("outbound|9080||reviews.default.svc.cluster.local")
			applyTrafficPolicy(c, policy(t, tc.policy))
			if err := c.Validate(); err != nil {
				t.Fatalf("invalid cluster: %v", err)
			}
			tc.check(t, c)
		})
	}
}

// protocolOptions decodes the cluster's upstream HTTP options, which Envoy
// validates when it loads them.
func protocolOptions(t *testing.T, c *clusterv3.Cluster) *httpv3.HttpProtocolOptions {
	t.Helper()
	a := c.GetTypedExtensionProtocolOptions()[httpProtocolOptionsKey]
	if a == nil {
		t.Fatal("no http protocol options")
	}
	var o httpv3.HttpProtocolOptions
	if err := a.UnmarshalTo(&o); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Errorf("http protocol options invalid: %v", err)
	}
	return &o
}
