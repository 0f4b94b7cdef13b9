package health

import (
	"fmt"
	"testing"

	"github.com/prometheus/common/model"
)

// BenchmarkFold folds a namespace of 1,000 workloads calling each other
// over 3,000 edges, each reported by both proxies with three codes: 18,000
// samples, about what Kiali's two rate queries return for such a mesh.
func BenchmarkFold(b *testing.B) {
	var vec model.Vector
	for e := range 3000 {
		src, dst := fmt.Sprintf("w%d-v1", e%1000), fmt.Sprintf("w%d-v1", (e*7+1)%1000)
		for _, rep := range []string{"source", "destination"} {
			for _, code := range []string{"200", "503", "0"} {
				vec = append(vec, &model.Sample{Value: 1, Metric: model.Metric{
					"reporter": model.LabelValue(rep), "request_protocol": "http", "response_code": model.LabelValue(code),
					"source_workload": model.LabelValue(src), "source_workload_namespace": "big", "source_canonical_service": model.LabelValue(src[:len(src)-3]),
					"destination_workload": model.LabelValue(dst), "destination_workload_namespace": "big", "destination_canonical_service": model.LabelValue(dst[:len(dst)-3]),
					"destination_service_name": model.LabelValue(dst[:len(dst)-3]), "destination_service_namespace": "big",
				}})
			}
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if got := Fold("big", vec); len(got.Workloads) != 1000 {
			b.Fatalf("%d workloads", len(got.Workloads))
		}
	}
}
