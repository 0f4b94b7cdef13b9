package wizard

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/meshlab/meshlab/controlplane/config"
)

// FuzzGenerate posts what a browser could post: whatever the request, the
// wizard either refuses it with a field named, or writes objects that the
// control plane takes as they are — the console never offers YAML that
// `apply` would then refuse.
func FuzzGenerate(f *testing.F) {
	for _, r := range cases() {
		b, err := json.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"action":"traffic_shifting","namespace":"book-demo","service":"reviews","versions":["v1","v2","v3"],"weights":[{"version":"v1","weight":0},{"version":"v2","weight":50},{"version":"v3","weight":50}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var r Request
		if json.Unmarshal(body, &r) != nil {
			return
		}
		objs, err := Generate(r)
		if err != nil {
			if msg := err.Error(); msg == "" || !strings.Contains(msg, ":") {
				t.Fatalf("an error that names no field: %q", msg)
			}
			return
		}
		data, err := YAML(objs)
		if err != nil {
			t.Fatalf("YAML of generated objects: %v", err)
		}
		rs, err := config.Parse("wizard.yaml", data)
		if err != nil {
			t.Fatalf("the wizard wrote what the control plane cannot parse: %v\n%s", err, data)
		}
		for _, res := range rs {
			if err := config.Validate(res); err != nil {
				t.Fatalf("the wizard wrote what the control plane refuses: %s: %v\n%s", res.Key(), err, data)
			}
		}
	})
}
