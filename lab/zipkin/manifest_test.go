package zipkin

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshlab/meshlab/lab/kube/kubetest"
)

// TestManifestAppliesToKubeAPIServer applies the manifest to a real
// kube-apiserver with strict field validation, as the kind runtime does.
func TestManifestAppliesToKubeAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiserver")
	}
	env := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := env.KubectlRun(ctx, nil, "create", "namespace", "istio-system"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := env.KubectlRun(ctx, Manifest, "apply", "--validate=strict", "-f", "-"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, q := range []struct{ args, want string }{
		{"get deployment zipkin -n istio-system -o jsonpath={.spec.template.spec.containers[0].ports[0].name}:{.spec.template.spec.containers[0].ports[0].containerPort}", "http-query:9411"},
		{"get service zipkin -n istio-system -o jsonpath={.spec.ports[0].name}:{.spec.ports[0].port}:{.spec.ports[0].targetPort}", "http-query:9411:9411"},
		{"get service tracing -n istio-system -o jsonpath={.spec.ports[0].name}:{.spec.ports[0].port}:{.spec.ports[0].targetPort}", "http-query:80:9411"},
	} {
		out, err := env.KubectlRun(ctx, nil, strings.Fields(q.args)...)
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", q.args, err, out)
		}
		if out != q.want {
			t.Errorf("kubectl %s = %q, want %q", q.args, out, q.want)
		}
	}
}

// TestManifestRunsThisMode: the container's args are a valid `meshlab
// zipkin` command line (the image's entrypoint is the binary), the probe
// is the mode's /health on its port, and the Services select the pod.
func TestManifestRunsThisMode(t *testing.T) {
	var dep appsv1.Deployment
	var svcs []corev1.Service
	for _, doc := range strings.Split(string(Manifest), "\n---\n") {
		var meta struct {
			Kind string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatal(err)
		}
		switch meta.Kind {
		case "Deployment":
			if err := yaml.UnmarshalStrict([]byte(doc), &dep); err != nil {
				t.Fatal(err)
			}
		case "Service":
			var s corev1.Service
			if err := yaml.UnmarshalStrict([]byte(doc), &s); err != nil {
				t.Fatal(err)
			}
			svcs = append(svcs, s)
		default:
			t.Errorf("unexpected kind %q in the manifest", meta.Kind)
		}
	}
	if dep.Name != "zipkin" || dep.Namespace != "istio-system" || len(svcs) != 2 {
		t.Fatalf("manifest has deployment %s/%s and %d services; want istio-system/zipkin and 2", dep.Namespace, dep.Name, len(svcs))
	}
	c := dep.Spec.Template.Spec.Containers[0]
	// Parse the args with the mode's own flags: an unknown or misspelt flag fails.
	cmd := Command()
	cmd.Action = func(*cli.Context) error { return nil }
	app := &cli.App{Commands: []*cli.Command{cmd}}
	if err := app.Run(append([]string{"meshlab"}, c.Args...)); err != nil {
		t.Errorf("the container's args %v are not a valid command line: %v", c.Args, err)
	}
	if c.ReadinessProbe.HTTPGet.Path != "/health" || c.ReadinessProbe.HTTPGet.Port.IntValue() != 9411 {
		t.Errorf("readiness probe %+v, want /health on 9411", c.ReadinessProbe.HTTPGet)
	}
	for _, s := range svcs {
		if s.Spec.Selector["app"] != dep.Spec.Template.Labels["app"] {
			t.Errorf("service %s selects %v, the pod is labelled %v", s.Name, s.Spec.Selector, dep.Spec.Template.Labels)
		}
	}
}
