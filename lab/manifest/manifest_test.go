package manifest

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	in := `apiVersion: v1
kind: Service
metadata:
  name: ratings
spec:
  ports:
  - port: 9080
    name: http
  selector:
    app: ratings
---
# a comment-only document is skipped
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ratings-v1
  namespace: other
spec:
  selector:
    matchLabels: {app: ratings}
  template:
    metadata:
      labels: {app: ratings, version: v1}
    spec:
      containers:
      - name: ratings
        command: ["/meshlab", "sample", "bookinfo", "ratings"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts: [ratings]
`
	objs, err := Parse("in.yaml", []byte(in), "book-demo")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs.Services) != 1 || objs.Services[0].Namespace != "book-demo" || objs.Services[0].Spec.Ports[0].Port != 9080 {
		t.Errorf("services = %+v", objs.Services)
	}
	if len(objs.Deployments) != 1 || objs.Deployments[0].Namespace != "other" {
		t.Errorf("deployments = %+v", objs.Deployments)
	}
	if len(objs.Other) != 1 || objs.Other[0].Kind != "VirtualService" || objs.Other[0].Index != 2 {
		t.Errorf("other = %+v", objs.Other)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"unknown field", "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  portz: []\n", `in.yaml: document 0 (Service): error unmarshaling JSON: while decoding JSON: json: unknown field "portz"`},
		{"no kind", "apiVersion: v1\nmetadata: {name: a}\n", "in.yaml: document 0: want a Kubernetes object with apiVersion and kind"},
		{"second document", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: apps/v1\nkind: Deployment\nspec: {replicas: many}\n", "in.yaml: document 1 (Deployment)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("in.yaml", []byte(tt.in), "default")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v; want it to contain %q", err, tt.want)
			}
		})
	}
}
