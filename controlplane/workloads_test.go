package controlplane

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshlab/meshlab/controlplane/api"
)

const sandboxApp = `apiVersion: v1
kind: Namespace
metadata:
  name: foo
  labels: {istio-injection: enabled}
---
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: foo}
spec:
  selector: {app: httpbin}
  ports:
  - {name: http, port: 8000, targetPort: 80}
---
apiVersion: v1
kind: Service
metadata: {name: reviews-nodeport, namespace: foo}
spec:
  type: NodePort
  selector: {app: reviews}
  ports:
  - {port: 9080, targetPort: 9080, nodePort: 30123}
---
apiVersion: v1
kind: Service
metadata: {name: auto, namespace: foo}
spec:
  type: NodePort
  selector: {app: auto}
  ports:
  - {name: http, port: 80}
---
apiVersion: v1
kind: Service
metadata: {name: headless, namespace: foo}
spec:
  clusterIP: None
  selector: {app: headless}
  ports:
  - {name: tcp, port: 9000}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: httpbin, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  template:
    metadata: {labels: {app: httpbin}}
    spec:
      containers:
      - name: httpbin
        image: meshlab.local/meshlab:dev
        command: ["/meshlab", "sample", "httpbin"]
`

// TestWorkloadKinds: the local runtime's Kubernetes objects go through the
// same all-or-nothing apply as Istio config, the control plane does the API
// server's part (namespace must exist, nodePorts allocated and kept,
// creation time kept) and the registry follows the stored Services (VIPs,
// headless, nodePorts), across a restart too.
func TestWorkloadKinds(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	_, cl := newTestServer(t, dir)

	// A Deployment in a namespace nobody made: refused, with file, document and field.
	docs, err := api.Documents("app.yaml", []byte(sandboxApp), "default")
	if err != nil {
		t.Fatal(err)
	}
	_, err = cl.Apply(ctx, api.ApplyRequest{Documents: docs[1:]})
	var ae *api.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusUnprocessableEntity ||
		!strings.Contains(err.Error(), `app.yaml: document 6 (Deployment foo/httpbin): metadata.namespace: namespace "foo" not found`) {
		t.Fatalf("apply without its namespace: %v; want 422 naming document 6's namespace", err)
	}
	if l, _ := cl.List(ctx, "services", "", ""); len(l.Items) != 0 {
		t.Fatalf("a refused batch stored %d services", len(l.Items))
	}

	res, err := cl.Apply(ctx, api.ApplyRequest{Documents: docs})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Changes) != 6 || res.Changes[0].Key != "Namespace//foo" || res.Changes[5].Op != "created" {
		t.Fatalf("apply: %+v", res)
	}
	reg, err := cl.Registry(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]int{}
	for i, s := range reg.Services {
		byName[s.Name] = i
	}
	httpbin := reg.Services[byName["httpbin"]]
	if !httpbin.VIP.IsValid() || httpbin.Ports[0].Target() != 80 {
		t.Fatalf("httpbin in the registry: %+v", httpbin)
	}
	if h := reg.Services[byName["headless"]]; !h.Headless || h.VIP.IsValid() {
		t.Fatalf("headless in the registry: %+v", h)
	}
	if np := reg.Services[byName["reviews-nodeport"]]; np.Type != "NodePort" || np.Ports[0].NodePort != 30123 {
		t.Fatalf("reviews-nodeport in the registry: %+v", np)
	}
	auto := reg.Services[byName["auto"]]
	if auto.Ports[0].NodePort != 30000 {
		t.Fatalf("auto's nodePort = %d, want the lowest free one, 30000", auto.Ports[0].NodePort)
	}

	// Re-applied as written (no nodePort), the allocated port and the
	// creation time stay, so nothing changes.
	list, err := cl.List(ctx, "svc", "foo", "auto")
	if err != nil || !strings.Contains(compact(list.Items[0]), `"nodePort":30000`) || !strings.Contains(compact(list.Items[0]), `"creationTimestamp"`) {
		t.Fatalf("get svc auto: %s, %v", list.Items, err)
	}
	time.Sleep(1100 * time.Millisecond) // a new creation time would differ
	again, err := cl.Apply(ctx, api.ApplyRequest{Documents: docs})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range again.Changes {
		if c.Op != "unchanged" {
			t.Fatalf("re-apply changed %s (%s)", c.Key, c.Op)
		}
	}

	// Another Service asking for a taken nodePort: refused, naming the owner.
	clash := strings.Replace(sandboxApp[strings.Index(sandboxApp, "apiVersion: v1\nkind: Service\nmetadata: {name: reviews-nodeport"):], "name: reviews-nodeport", "name: other", 1)
	clash = clash[:strings.Index(clash, "---")]
	cd, err := api.Documents("clash.yaml", []byte(clash), "default")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Apply(ctx, api.ApplyRequest{Documents: cd}); err == nil ||
		!strings.Contains(err.Error(), "clash.yaml: document 1 (Service foo/other): spec.ports[0].nodePort: Invalid value: 30123: provided port is already allocated (to Service foo/reviews-nodeport)") {
		t.Fatalf("a taken nodePort: %v", err)
	}

	// Deleting the namespace deletes what is in it, and frees the VIPs.
	if _, err := cl.Delete(ctx, []string{"namespace//default"}); err == nil || !strings.Contains(err.Error(), "system namespace") {
		t.Fatalf("delete namespace default: %v", err)
	}
	del, err := cl.Delete(ctx, []string{"ns//foo"})
	if err != nil || len(del.Changes) != 6 {
		t.Fatalf("delete namespace foo: %+v, %v; want it and its 5 objects deleted", del, err)
	}
	reg, err = cl.Registry(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(reg.Services) != 0 {
		t.Fatalf("services left after their namespace went: %+v", reg.Services)
	}
}
