package kube

import (
	"testing"

	"sigs.k8s.io/yaml"
)

// TestIndexPath: server-side apply names list items by their keys; errors
// name them by index, as the rest of Kubernetes does.
func TestIndexPath(t *testing.T) {
	var obj map[string]any
	if err := yaml.Unmarshal([]byte(`
spec:
  ports:
  - {name: http, port: 80}
  - {name: grpc, port: 8000, protocol: UDP}
  - {name: grpc, port: 8000}
  finalizers: [a, "b c"]
  template:
    spec:
      containers:
      - {name: app}
      - {name: "we]ird", image: x}
`), &obj); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ path, want string }{
		{".spec.ports[port=8000,protocol=\"TCP\"].protcol", "spec.ports[2].protcol"}, // protocol defaulted
		{".spec.ports[port=8000,protocol=\"UDP\"].name", "spec.ports[1].name"},
		{".spec.ports[1].name", "spec.ports[1].name"},
		{".spec.finalizers[=\"b c\"]", "spec.finalizers[1]"},
		{".spec.template.spec.containers[name=\"we]ird\"].imag", "spec.template.spec.containers[1].imag"},
		{".spec.ports[port=9]", "spec.ports[port=9]"}, // no such item: kept as written
		{".spec.nope[0].x", "spec.nope[0].x"},
		{".spec.replicas", "spec.replicas"},
	} {
		if got := indexPath(obj, tt.path); got != tt.want {
			t.Errorf("indexPath(%s) = %s; want %s", tt.path, got, tt.want)
		}
	}
}
