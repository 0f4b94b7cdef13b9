package health

import (
	"math"
	"testing"
)

func codes(kv ...any) map[string]float64 {
	m := map[string]float64{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = float64(kv[i+1].(int))
	}
	return m
}

func TestRequestsEvaluate(t *testing.T) {
	http := func(m map[string]float64) map[string]map[string]float64 {
		return map[string]map[string]float64{"http": m}
	}
	grpc := func(m map[string]float64) map[string]map[string]float64 {
		return map[string]map[string]float64{"grpc": m}
	}
	for _, tt := range []struct {
		name string
		r    Requests
		want Status
		pct  float64
	}{
		{"no traffic", Requests{}, NA, 0},
		{"zero rates", Requests{Inbound: http(codes("200", 0))}, NA, 0},
		{"all 200", Requests{Inbound: http(codes("200", 100))}, Healthy, 0},
		{"one 5xx in a thousand degrades", Requests{Inbound: http(codes("200", 999, "503", 1))}, Degraded, 0.1},
		{"10 % 5xx fails", Requests{Inbound: http(codes("200", 90, "500", 5, "503", 5))}, Failure, 10},
		{"9.9 % 5xx degrades", Requests{Inbound: http(codes("200", 901, "500", 99))}, Degraded, 9.9},
		{"5 % 4xx is healthy", Requests{Inbound: http(codes("200", 95, "404", 5))}, Healthy, 0},
		{"10 % 4xx degrades", Requests{Inbound: http(codes("200", 90, "404", 10))}, Degraded, 10},
		{"20 % 4xx fails", Requests{Outbound: http(codes("200", 80, "403", 20))}, Failure, 20},
		{"no response fails at 10 %", Requests{Outbound: http(codes("200", 9, "-", 1))}, Failure, 10},
		{"grpc unavailable", Requests{Inbound: grpc(codes("0", 95, "14", 5))}, Degraded, 5},
		{"grpc 10 % fails", Requests{Inbound: grpc(codes("0", 90, "2", 10))}, Failure, 10},
		{"grpc 17 is no error code", Requests{Inbound: grpc(codes("0", 90, "17", 10))}, Healthy, 0},
		{"worst of directions", Requests{Inbound: http(codes("200", 99, "500", 1)), Outbound: http(codes("200", 50, "500", 50))}, Failure, 50},
		{"worst degraded picks the larger share", Requests{Inbound: http(codes("200", 85, "500", 2, "404", 13))}, Degraded, 13},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, pct := tt.r.Evaluate(DefaultTolerances())
			if s != tt.want || math.Abs(pct-tt.pct) > 1e-9 {
				t.Errorf("Evaluate = %s, %v; want %s, %v", s, pct, tt.want, tt.pct)
			}
		})
	}
}

// Kiali's own config spelling of codes ("5XX") means the same.
func TestToleranceKialiSpelling(t *testing.T) {
	tol := []Tolerance{{Code: "5XX", Protocol: "http", Direction: ".*", Degraded: 1, Failure: 50}}
	r := Requests{Inbound: map[string]map[string]float64{"http": codes("200", 98, "503", 2)}}
	if s, pct := r.Evaluate(tol); s != Degraded || pct != 2 {
		t.Errorf("2 %% 503 against 5XX 1/50: %s %v, want Degraded 2", s, pct)
	}
}

func TestToleranceDirection(t *testing.T) {
	tol := []Tolerance{{Code: `4\d\d`, Protocol: "http", Direction: "inbound", Degraded: 20, Failure: 30}}
	r := Requests{Outbound: map[string]map[string]float64{"http": codes("200", 1, "404", 9)}}
	if s, _ := r.Evaluate(tol); s != Healthy {
		t.Errorf("an inbound-only tolerance judged outbound traffic: %s", s)
	}
	r = Requests{Inbound: r.Outbound}
	if s, _ := r.Evaluate(tol); s != Failure {
		t.Errorf("inbound 90 %% 404: %s, want Failure", s)
	}
}

func TestWorkloadStatusEvaluate(t *testing.T) {
	for _, tt := range []struct {
		w    WorkloadStatus
		want Status
	}{
		{WorkloadStatus{DesiredReplicas: 0}, NotReady},
		{WorkloadStatus{DesiredReplicas: 2, CurrentReplicas: 2}, Failure},
		{WorkloadStatus{DesiredReplicas: 2, CurrentReplicas: 2, AvailableReplicas: 1, SyncedProxies: 1}, Degraded},
		{WorkloadStatus{DesiredReplicas: 2, CurrentReplicas: 2, AvailableReplicas: 2, SyncedProxies: 1}, Degraded},
		{WorkloadStatus{DesiredReplicas: 2, CurrentReplicas: 2, AvailableReplicas: 2, SyncedProxies: 2}, Healthy},
		{WorkloadStatus{DesiredReplicas: 1, CurrentReplicas: 1, AvailableReplicas: 1, SyncedProxies: -1}, Healthy},
	} {
		if got := tt.w.Evaluate(); got != tt.want {
			t.Errorf("%+v: %s, want %s", tt.w, got, tt.want)
		}
	}
}

func TestWorst(t *testing.T) {
	for _, tt := range []struct {
		in   []Status
		want Status
	}{
		{nil, NA},
		{[]Status{NA, Healthy}, Healthy},
		{[]Status{Healthy, NotReady}, NotReady},
		{[]Status{Degraded, NotReady, Healthy}, Degraded},
		{[]Status{Healthy, Failure, Degraded}, Failure},
	} {
		if got := Worst(tt.in...); got != tt.want {
			t.Errorf("Worst(%v) = %s, want %s", tt.in, got, tt.want)
		}
	}
}
