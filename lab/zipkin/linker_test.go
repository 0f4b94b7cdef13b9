package zipkin

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/openzipkin/zipkin-go/model"
)

// span builds a span for the linker's tables: id, parent (0: root), kind,
// local and remote service, error tag.
func span(id, parent uint64, kind model.Kind, local, remote string, isErr bool) *model.SpanModel {
	s := &model.SpanModel{
		SpanContext: model.SpanContext{TraceID: model.TraceID{Low: 1}, ID: model.ID(id)},
		Kind:        kind,
		Timestamp:   time.UnixMicro(1767225600000000 + int64(id)),
	}
	if parent != 0 {
		p := model.ID(parent)
		s.ParentID = &p
	}
	if local != "" {
		s.LocalEndpoint = &model.Endpoint{ServiceName: local}
	}
	if remote != "" {
		s.RemoteEndpoint = &model.Endpoint{ServiceName: remote}
	}
	if isErr {
		s.Tags = map[string]string{"error": "true"}
	}
	return s
}

// TestDependencyLinks follows Zipkin's DependencyLinker on the trace shapes
// a mesh produces.
func TestDependencyLinks(t *testing.T) {
	var bookinfo []*model.SpanModel
	if err := json.Unmarshal(readFixture(t, "bookinfo-trace.json"), &bookinfo); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		spans []*model.SpanModel
		want  []DependencyLink
	}{
		{"bookinfo through the gateway (Istio: own ids, no remoteEndpoint)", bookinfo, []DependencyLink{
			{Parent: "istio-ingressgateway.istio-system", Child: "productpage.default", CallCount: 1},
			{Parent: "productpage.default", Child: "details.default", CallCount: 1},
			{Parent: "productpage.default", Child: "reviews.default", CallCount: 1},
			{Parent: "reviews.default", Child: "ratings.default", CallCount: 1},
		}},
		{"error on the server span", []*model.SpanModel{
			span(1, 0, model.Client, "a", "", false),
			span(2, 1, model.Server, "b", "", true),
		}, []DependencyLink{{Parent: "a", Child: "b", CallCount: 1, ErrorCount: 1}}},
		{"error only on the client span counts for its server child", []*model.SpanModel{
			span(1, 0, model.Client, "a", "", true),
			span(2, 1, model.Server, "b", "", false),
		}, []DependencyLink{{Parent: "a", Child: "b", CallCount: 1, ErrorCount: 1}}},
		{"a leaf client names its uninstrumented server", []*model.SpanModel{
			span(1, 0, model.Server, "a", "", false),
			span(2, 1, model.Client, "a", "mysql", true),
		}, []DependencyLink{{Parent: "a", Child: "mysql", CallCount: 1, ErrorCount: 1}}},
		{"a leaf client without a remote name links nothing", []*model.SpanModel{
			span(1, 0, model.Server, "a", "", false),
			span(2, 1, model.Client, "a", "", false),
		}, []DependencyLink{}},
		{"root server with a known caller", []*model.SpanModel{
			span(1, 0, model.Server, "b", "a", false),
		}, []DependencyLink{{Parent: "a", Child: "b", CallCount: 1}}},
		// B3 shared span context (not Istio's setting): the server reuses the
		// client's id; Zipkin merges by id and links once.
		{"shared span: server reusing the client's id", []*model.SpanModel{
			span(1, 0, model.Client, "a", "", false),
			span(1, 0, model.Server, "b", "", false),
		}, []DependencyLink{{Parent: "a", Child: "b", CallCount: 1}}},
		{"the same report twice links once", []*model.SpanModel{
			span(1, 0, model.Client, "a", "", false),
			span(2, 1, model.Server, "b", "", false),
			span(2, 1, model.Server, "b", "", false),
		}, []DependencyLink{{Parent: "a", Child: "b", CallCount: 1}}},
		{"producer and consumer through a broker", []*model.SpanModel{
			span(1, 0, model.Producer, "a", "kafka", false),
			span(2, 1, model.Consumer, "b", "kafka", false),
		}, []DependencyLink{{Parent: "a", Child: "kafka", CallCount: 1}, {Parent: "kafka", Child: "b", CallCount: 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLinker()
			l.putTrace(tc.spans)
			got := l.links()
			sortLinks(got)
			sortLinks(tc.want)
			if !slices.Equal(got, tc.want) {
				t.Errorf("links:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func sortLinks(l []DependencyLink) {
	slices.SortFunc(l, func(a, b DependencyLink) int {
		if a.Parent != b.Parent {
			if a.Parent < b.Parent {
				return -1
			}
			return 1
		}
		if a.Child < b.Child {
			return -1
		}
		if a.Child > b.Child {
			return 1
		}
		return 0
	})
}
