package samples

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/meshlab/meshlab/lab/kube/kubetest"
)

// TestManifestsApplyToKubeAPIServer applies every workload manifest to a
// real kube-apiserver with strict field validation, as the kind runtime
// does: the manifests are Kubernetes' own, not only meshlab's reading of them.
func TestManifestsApplyToKubeAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiserver")
	}
	env := kubetest.Start(t)
	tests := []struct {
		name        string
		manifest    []byte
		deployments []string
	}{
		{"bookinfo", BookinfoManifest(), []string{"details-v1", "productpage-v1", "ratings-v1", "reviews-v1", "reviews-v2", "reviews-v3"}},
		{"httpbin", HTTPBinManifest(), []string{"httpbin"}},
		{"sleep", SleepManifest(), []string{"sleep"}},
		{"curl", CurlManifest(), []string{"curl"}},
		{"helloworld", HelloworldManifest(), []string{"helloworld-v1", "helloworld-v2"}},
		{"tcp-echo", TCPEchoManifest(), []string{"tcp-echo"}},
		{"tcp-echo-services", TCPEchoServicesManifest(), []string{"tcp-echo-v1", "tcp-echo-v2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			ns := "sample-" + tt.name
			if out, err := env.KubectlRun(ctx, nil, "create", "namespace", ns); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if out, err := env.KubectlRun(ctx, tt.manifest, "apply", "--validate=strict", "-n", ns, "-f", "-"); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			out, err := env.KubectlRun(ctx, nil, "get", "deployments", "-n", ns, "-o", "jsonpath={.items[*].metadata.name}")
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if got, want := out, strings.Join(tt.deployments, " "); got != want {
				t.Errorf("deployments = %q, want %q", got, want)
			}
		})
	}
}
